"""How an incremental refresh reaches the standings tables when it deletes emptied keys:
by key, never by reading the whole table (issue 12: a refresh costs what changed, not
history). Each view's statement is run under EXPLAIN ANALYZE after 1,000 corrected matches,
on 400,000 match_points rows, and rolled back: once when no touched key lost its last
match (the delete has nothing to do, and must not read the table to find that out), and
once when one key did. And a row that another session updates meanwhile is still
deleted: the delete finds rows by key, not by an address that an update moves."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql

from bench.database import bulk_points, insert_fixtures
from matchstats.db.connection import ConnectionProvider
from matchstats.db.refresh import RefreshStore
from matchstats.db.sql import load_sql
from matchstats.messages import RefreshMessage, RefreshReason
from matchstats.models import StandingsMode
from matchstats.refresh import decide
from tests.conftest import switch_standings_mode, truncate_all
from tests.integration.refresh_steps import compute_points
from tests.integration.test_points_plans import nodes
from tests.waiting import sessions_waiting_on_locks, wait_for

# Two match_points rows each: 400,000 rows, about 10,500 standings rows. On much smaller
# tables the planner rightly reads the few pages whole instead of by key.
MATCHES = 200_000
CORRECTED = range(1, 200_001, 200)  # 1,000 matches across the competitions
STATEMENTS = {
    "competition_standings": "incremental_competition_standings",
    "competitor_stats": "incremental_competitor_stats",
}


@pytest.fixture(scope="module")
def incremental_history(database_url: str) -> Iterator[psycopg.Connection]:
    """400,000 match_points rows in incremental mode, analyzed, with 1,000 matches corrected
    since the last refresh (their keys in the change logs)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        truncate_all(conn)
        insert_fixtures(conn, 1, MATCHES, completed=True)
        bulk_points(conn, 1, MATCHES)
        switch_standings_mode(database_url, StandingsMode.INCREMENTAL)
        conn.execute("DELETE FROM changed_standings")
        conn.execute("DELETE FROM changed_competitors")
        conn.execute("VACUUM ANALYZE")
        conn.execute(
            "UPDATE matches SET home_score = home_score + 1, score_version = score_version + 1"
            " WHERE id = ANY(%s)",
            (list(CORRECTED),),
        )
        compute_points(database_url, list(CORRECTED))
        yield conn
        switch_standings_mode(database_url, StandingsMode.MATERIALIZED_VIEW)


def executed_plan(
    conn: psycopg.Connection, view_name: str, *, empty_one_competitor: bool
) -> tuple[list[dict[str, Any]], int]:
    """The statement's plan with what each node did, and how many of the view's keys had
    lost their last match, everything rolled back. With `empty_one_competitor`, one
    competitor first loses every match_points row (as if its matches were voided), and
    its keys are logged: one key of competitor_stats, one per competition it played in."""
    emptied = 0
    with conn.transaction(force_rollback=True):
        if empty_one_competitor:
            conn.execute(
                "CREATE TEMPORARY TABLE emptied ON COMMIT DROP AS"
                " WITH gone AS (DELETE FROM match_points"
                "  WHERE competitor_id = (SELECT min(competitor_id) FROM match_points)"
                "  RETURNING competition_id, competitor_id)"
                " SELECT DISTINCT competition_id, competitor_id FROM gone"
            )
            conn.execute(
                "INSERT INTO changed_standings (competition_id, competitor_id)"
                " SELECT competition_id, competitor_id FROM emptied"
            )
            conn.execute(
                "INSERT INTO changed_competitors (competitor_id)"
                " SELECT DISTINCT competitor_id FROM emptied"
            )
            key = "*" if view_name == "competition_standings" else "DISTINCT competitor_id"
            counted = conn.execute(f"SELECT count({key}) FROM emptied").fetchone()
            assert counted is not None
            emptied = int(counted[0])
        row = conn.execute(
            b"EXPLAIN (ANALYZE, FORMAT JSON) " + load_sql(STATEMENTS[view_name]), {"full": False}
        ).fetchone()
    assert row is not None
    loaded = json.loads(row[0]) if isinstance(row[0], str) else row[0]
    return list(nodes(loaded[0]["Plan"])), emptied


# Reads of a table that go by key: its unique index, or the row addresses found by it.
BY_KEY = {"Index Scan", "Index Only Scan", "Tid Scan"}


@pytest.mark.parametrize("view_name", list(STATEMENTS))
@pytest.mark.parametrize("voided", [False, True], ids=["none-emptied", "one-competitor-emptied"])
def test_the_delete_step_reads_the_table_only_by_the_keys_that_emptied(
    incremental_history: psycopg.Connection, view_name: str, voided: bool
) -> None:
    # Given 1,000 corrected matches, and maybe a competitor left without any match

    # When the view's incremental refresh runs
    plan, emptied = executed_plan(incremental_history, view_name, empty_one_competitor=voided)

    # Then it deleted exactly the emptied keys' rows (at least one when a competitor was)
    assert emptied > 0 or not voided
    deletes = [n for n in plan if n["Node Type"] == "ModifyTable" and n["Operation"] == "Delete"]
    table_delete = [n for n in deletes if n["Relation Name"] == view_name]
    assert len(table_delete) == 1
    assert table_delete[0]["Actual Rows"] == emptied
    # ...and every read of the table under that delete went by key: none when no key
    # emptied, never a scan of all of it
    ran = {
        n["Node Type"]
        for n in nodes(table_delete[0])
        if n.get("Relation Name") == view_name
        and "Scan" in n["Node Type"]
        and n["Actual Loops"] > 0
        and n.get("Actual Rows", 0) + n.get("Rows Removed by Filter", 0) > 0
    }
    assert ran <= BY_KEY
    if not emptied:
        assert ran == set()


def refresh_incrementally(database_url: str) -> None:
    """Both views refreshed as RefreshViewsFunction refreshes them for a forced request."""
    request = RefreshMessage(
        reason=RefreshReason.MANUAL, requested_at=datetime.now(UTC), force=True
    )
    connections = ConnectionProvider(lambda: database_url)
    try:
        for view_name in STATEMENTS:
            _, done = RefreshStore(connections).refresh_view(
                view_name,
                lambda state: decide(state, [request]),
                statement_timeout_ms=30_000,
                lock_timeout_ms=10_000,
            )
            assert done is not None
    finally:
        connections.close()


def test_an_emptied_row_that_another_session_updates_meanwhile_is_still_deleted(
    incremental_history: psycopg.Connection, database_url: str
) -> None:
    conn = incremental_history
    row = conn.execute("SELECT max(competitor_id) FROM match_points").fetchone()
    assert row is not None
    competitor = int(row[0])
    # Given a competitor whose every match went (its keys logged), so that the next
    # refresh deletes its rows of both views
    conn.execute(
        "CREATE TABLE saved_points AS SELECT * FROM match_points WHERE competitor_id = %s",
        (competitor,),
    )
    log_keys = (
        "INSERT INTO changed_standings (competition_id, competitor_id)"
        " SELECT DISTINCT competition_id, competitor_id FROM saved_points;"
        " INSERT INTO changed_competitors (competitor_id) VALUES (%s)"
    )
    try:
        conn.execute("DELETE FROM match_points WHERE competitor_id = %s", (competitor,))
        conn.execute(log_keys.split(";")[0])
        conn.execute(log_keys.split(";")[1], (competitor,))
        with psycopg.connect(database_url) as writer, ThreadPoolExecutor(1) as pool:
            # ...and another session (an operator's hand fix, say) updating those rows
            for table in STATEMENTS:
                writer.execute(
                    sql.SQL("UPDATE {} SET points = points WHERE competitor_id = %s").format(
                        sql.Identifier(table)
                    ),
                    (competitor,),
                )

            # When the refresh runs meanwhile, and the other session commits
            refreshed = pool.submit(refresh_incrementally, database_url)
            wait_for(
                lambda: sessions_waiting_on_locks(conn), what="the refresh to wait for the rows"
            )
            writer.commit()
            refreshed.result(timeout=30)

        # Then the refresh still deleted the competitor's rows of both views
        for table in STATEMENTS:
            left = conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE competitor_id = %s").format(
                    sql.Identifier(table)
                ),
                (competitor,),
            ).fetchone()
            assert left == (0,), table
    finally:
        conn.execute("INSERT INTO match_points SELECT * FROM saved_points")
        conn.execute(log_keys.split(";")[0])
        conn.execute(log_keys.split(";")[1], (competitor,))
        conn.execute("DROP TABLE saved_points")
        refresh_incrementally(database_url)
