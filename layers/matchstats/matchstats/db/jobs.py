"""Data access for job history rows written outside a batch transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import psycopg

from matchstats.db.connection import ConnectionProvider
from matchstats.db.errors import translate
from matchstats.db.sql import load_sql
from matchstats.models import JobRecord


class JobStore:
    def __init__(self, connections: ConnectionProvider):
        self._connections = connections

    def record(self, job_type: str, records: Sequence[JobRecord], *, started_at: datetime) -> None:
        """Records job runs and trims the history, in one transaction sent as one pipeline."""
        if not records:
            return
        try:
            conn = self._connections.get()
            with conn.pipeline(), conn.transaction():
                conn.execute(
                    load_sql("record_jobs"),
                    {
                        "job_type": job_type,
                        "job_ids": [r.job_id for r in records],
                        "subjects": [r.subject for r in records],
                        "statuses": [r.status.value for r in records],
                        "attempts": [r.attempts for r in records],
                        "errors": [r.error for r in records],
                        "started_at": started_at,
                    },
                )
                conn.execute(load_sql("trim_job_history"))
        except psycopg.Error as exc:
            self._connections.release_after_error()
            raise translate(exc) from exc
