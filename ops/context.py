"""What a `matchstats` command needs, built on first use so that each command asks only
for the configuration it uses: a dead-letter command runs without a database, a
migration without any queue."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from contextlib import ExitStack

from matchstats.db.conninfo import resolve_conninfo
from matchstats.db.jobs import JobStore
from matchstats.db.refresh import RefreshStore
from ops.aws import Aws
from ops.settings import OpsSettings
from ops.sqs import OpsQueues
from ops.store import OpsStore, closing_connections


class Context:
    """The parsed arguments, the settings, and the clients and stores made from them."""

    def __init__(self, args: argparse.Namespace, aws: Aws, environ: Mapping[str, str]):
        self.args = args
        self.aws = aws
        stack_name: str | None = getattr(args, "stack", None)
        info = aws.stack(stack_name) if stack_name else None
        self.settings = OpsSettings.resolve(
            environ,
            stack_name=stack_name,
            stack_outputs=info.outputs if info else None,
            stack_parameters=info.parameters if info else None,
        )
        self._exit = ExitStack()
        self._store: OpsStore | None = None
        self._refresh_store: RefreshStore | None = None
        self._jobs: JobStore | None = None

    def close(self) -> None:
        self._exit.close()

    @property
    def queues(self) -> OpsQueues:
        return OpsQueues(self.aws.sqs, self.aws.sqs_probe)

    @property
    def store(self) -> OpsStore:
        self._connect()
        assert self._store is not None
        return self._store

    @property
    def refresh_store(self) -> RefreshStore:
        self._connect()
        assert self._refresh_store is not None
        return self._refresh_store

    @property
    def jobs(self) -> JobStore:
        self._connect()
        assert self._jobs is not None
        return self._jobs

    def _connect(self) -> None:
        if self._store is not None:
            return
        database = self.settings.database()
        connections = self._exit.enter_context(
            closing_connections(
                lambda: resolve_conninfo(database, fetch_secret=self.aws.fetch_secret_json),
                pooler=database.db_pooler,
                schema=database.db_schema,
            )
        )
        self._store = OpsStore(connections)
        self._refresh_store = RefreshStore(connections)
        self._jobs = JobStore(connections)
