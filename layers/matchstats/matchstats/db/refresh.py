"""Data access for view refreshes: the only code that runs the refresh SQL."""

from __future__ import annotations

from psycopg import sql
from psycopg.rows import dict_row

from matchstats.db.connection import ConnectionProvider, Limits
from matchstats.db.sql import load_sql
from matchstats.messages import REFRESHABLE_VIEWS
from matchstats.models import ViewRefreshDone, ViewState
from matchstats.stores import Decision


class RefreshStore:
    """stores.ViewRefresher on PostgreSQL."""

    def __init__(self, connections: ConnectionProvider):
        self._connections = connections

    def refresh_view(
        self,
        view_name: str,
        decide: Decision,
        *,
        statement_timeout_ms: int,
        lock_timeout_ms: int,
    ) -> tuple[ViewState, ViewRefreshDone | None]:
        """Under the view's lock, reads its state, asks `decide` whether to refresh, and
        if so refreshes and records it, all in one transaction. Returns the state read and
        the refresh done (None when `decide` skipped it)."""
        if view_name not in REFRESHABLE_VIEWS:
            raise ValueError(f"not a refreshable view: {view_name}")
        limits = Limits(
            statement_timeout_ms=statement_timeout_ms,
            lock_timeout_ms=lock_timeout_ms,
            parallel_workers=0,
        )
        with self._connections.transaction(limits) as conn:
            conn.execute(load_sql("lock_view"), {"view_name": view_name})
            with conn.cursor(row_factory=dict_row) as cur:
                row = cur.execute(load_sql("view_state"), {"view_name": view_name}).fetchone()
            assert row is not None, f"view_refresh_state has no row for {view_name}"
            state = ViewState(view_name=view_name, **row)
            record = decide(state)
            if record is None:
                return state, None
            # CONCURRENTLY never blocks readers, but it needs a populated view: the
            # first fill of an empty (WITH NO DATA) view takes the plain path once.
            refresh = (
                "REFRESH MATERIALIZED VIEW CONCURRENTLY {}"
                if record.concurrently
                else "REFRESH MATERIALIZED VIEW {}"
            )
            conn.execute(sql.SQL(refresh).format(sql.Identifier(view_name)))
            with conn.cursor(row_factory=dict_row) as cur:
                done = cur.execute(
                    load_sql("record_refresh"),
                    {**record.model_dump(), "view_name": view_name},
                ).fetchone()
            assert done is not None
            return state, ViewRefreshDone(
                finished_at=done["finished_at"], duration_ms=done["duration_ms"]
            )
