"""Data access for view refreshes: the only code that runs the refresh SQL."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from matchstats.db.connection import ConnectionProvider, Limits
from matchstats.db.sql import load_sql
from matchstats.messages import REFRESHABLE_VIEWS
from matchstats.models import StandingsMode, ViewRefreshDone, ViewState
from matchstats.stores import Decision


def _consume_sql(view_name: str) -> bytes:
    """What empties the view's change log (migration 0008) before a materialized-view
    refresh. (Each file is named literally: test_layer_contents checks every SQL file of
    the layer is loaded.)"""
    return {
        "competition_standings": load_sql("consume_changed_standings"),
        "competitor_stats": load_sql("consume_changed_competitors"),
    }[view_name]


def _incremental_sql(view_name: str) -> bytes:
    """The one statement that maintains the view in incremental mode."""
    return {
        "competition_standings": load_sql("incremental_competition_standings"),
        "competitor_stats": load_sql("incremental_competitor_stats"),
    }[view_name]


class RefreshStore:
    """stores.ViewRefresher on PostgreSQL, in either standings mode (SPEC section 2)."""

    def __init__(self, connections: ConnectionProvider):
        self._connections = connections

    def refresh_view(
        self,
        view_name: str,
        decide: Decision,
        *,
        statement_timeout_ms: int,
        lock_timeout_ms: int,
        full: bool = False,
    ) -> tuple[ViewState, ViewRefreshDone | None]:
        """Under the view's lock, reads its state, asks `decide` whether to refresh, and
        if so refreshes and records it, all in one transaction. Returns the state read and
        the refresh done (None when `decide` skipped it).

        A materialized view is refreshed whole (REFRESH ... CONCURRENTLY); a table in
        incremental mode is brought up to date for the keys its change log names, or for
        every key when `full`.
        """
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
            if state.mode is StandingsMode.INCREMENTAL:
                change = _one(conn, _incremental_sql(view_name), {"full": full})
                changed = change["rows_changed"] > 0
            else:
                change = _one(conn, _consume_sql(view_name), {})
                # CONCURRENTLY never blocks readers, but it needs a populated view: the
                # first fill of an empty (WITH NO DATA) view takes the plain path once.
                refresh = (
                    "REFRESH MATERIALIZED VIEW CONCURRENTLY {}"
                    if record.concurrently
                    else "REFRESH MATERIALIZED VIEW {}"
                )
                conn.execute(sql.SQL(refresh).format(sql.Identifier(view_name)))
                changed = change["keys"] > 0
            done = _one(
                conn,
                load_sql("record_refresh"),
                {**record.model_dump(), "view_name": view_name, "keys_changed": change["keys"]},
            )
            return state, ViewRefreshDone(
                finished_at=done["finished_at"],
                duration_ms=done["duration_ms"],
                keys=change["keys"],
                changed=changed,
                competition_ids=list(change["competition_ids"]),
            )


def _one(conn: psycopg.Connection, query: bytes, params: dict[str, Any]) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(query, params).fetchone()
    assert row is not None, "a statement that always returns one row returned none"
    return row
