"""Data access for job history rows written outside a batch transaction."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from matchstats.db.connection import BEGIN, ConnectionProvider, Limits, storable
from matchstats.db.sql import load_sql
from matchstats.models import JobRecord

# History is a convenience written beside the real work: it never waits long.
DEFAULT_BUDGET_MS = 3_000


class JobStore:
    """stores.JobRecorder on PostgreSQL."""

    def __init__(self, connections: ConnectionProvider):
        self._connections = connections

    def record(
        self,
        job_type: str,
        records: Sequence[JobRecord],
        *,
        started_at: datetime,
        budget_ms: int = DEFAULT_BUDGET_MS,
    ) -> None:
        """Records job runs in one transaction sent as one pipeline, within `budget_ms`
        (the retention trigger of migration 0007 trims the history). Raises
        DatabaseUnavailableError when it cannot."""
        if not records:
            return
        limits = Limits(statement_timeout_ms=budget_ms, lock_timeout_ms=budget_ms)
        with self._connections.session(limits) as conn, conn.pipeline():
            text = storable(conn)
            conn.execute(BEGIN)
            conn.execute(*self._connections.settings_statement(limits))
            conn.execute(
                load_sql("record_jobs"),
                {
                    "job_type": job_type,
                    "job_ids": [r.job_id for r in records],
                    "subjects": [r.subject for r in records],
                    "statuses": [r.status.value for r in records],
                    "attempts": [r.attempts for r in records],
                    "errors": [text(r.error) for r in records],
                    "error_kinds": [r.error_kind for r in records],
                    "bodies": [text(r.body) for r in records],
                    "outcomes": [r.outcome.value if r.outcome else None for r in records],
                    "view_outcomes": [
                        json.dumps(r.view_outcomes) if r.view_outcomes is not None else None
                        for r in records
                    ],
                    "started_at": started_at,
                },
            )
            conn.execute(b"COMMIT")
