"""Data access for points: the only code that runs the points SQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from psycopg.rows import dict_row

from matchstats.db.connection import BEGIN, ConnectionProvider, Limits, storable
from matchstats.db.sql import load_sql
from matchstats.models import PointsBatchWrite, PointsJob, PointsOutcomeRow


class PointsStore:
    """stores.PointsWriter on PostgreSQL."""

    def __init__(self, connections: ConnectionProvider):
        self._connections = connections

    def write_batch(
        self,
        jobs: Sequence[PointsJob],
        *,
        started_at: datetime,
        statement_timeout_ms: int,
        lock_timeout_ms: int,
    ) -> PointsBatchWrite:
        """Computes and writes the batch's points in one transaction, sent as one pipeline."""
        match_ids = [job.match_id for job in jobs]
        limits = Limits(statement_timeout_ms=statement_timeout_ms, lock_timeout_ms=lock_timeout_ms)
        with self._connections.session(limits) as conn:
            # The whole transaction and the clock reading after it go out as one pipeline
            # with one sync: one network round trip per batch. BEGIN and COMMIT are sent
            # as statements because psycopg's transaction() block syncs on each.
            text = storable(conn)
            with conn.pipeline():
                conn.execute(BEGIN)
                conn.execute(*self._connections.settings_statement(limits))
                conn.execute(load_sql("lock_matches"), {"match_ids": match_ids})
                outcome_cursor = conn.cursor(row_factory=dict_row)
                outcome_cursor.execute(
                    load_sql("compute_points"),
                    {
                        "job_ids": [job.job_id for job in jobs],
                        "match_ids": match_ids,
                        "subjects": [job.subject for job in jobs],
                        "attempts": [job.attempts for job in jobs],
                        "errors": [text(job.parse_error) for job in jobs],
                        "bodies": [text(job.body) for job in jobs],
                        "started_at": started_at,
                    },
                )
                conn.execute(b"COMMIT")
                clock_cursor = conn.execute(load_sql("database_clock"))
            rows = outcome_cursor.fetchall()
            clock_row = clock_cursor.fetchone()
        assert clock_row is not None
        return PointsBatchWrite(
            outcomes=[PointsOutcomeRow.model_validate(row) for row in rows],
            committed_at=clock_row[0],
            keys_changed=rows[0]["keys_changed"] if rows else 0,
        )
