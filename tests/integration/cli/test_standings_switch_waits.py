"""`matchstats migrate --standings` when it has to wait: behind readers that never leave
its swap a moment, behind a refresh that holds the standings, and beside another switch.
Each case says what happened in one line and leaves the standings whole."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

import ops.store
from matchstats.db.connection import ConnectionProvider, Limits
from matchstats.models import StandingsMode
from ops.store import OpsStore
from tests.integration.cli.steps import cli
from tests.integration.cli.test_standings_modes import (
    assert_unchanged,
    kinds,
    season_on_show,
    standings_equal_the_matches,
)
from tests.template_queues import TemplateQueues
from tests.waiting import sessions_waiting_on_locks, wait_for

# The lock wait the operator's switch is given here, instead of its 30 s.
SHORT_WAIT = Limits(statement_timeout_ms=0, lock_timeout_ms=300)
REFRESH_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('matchstats.refresh:' || %s, 0))"


@pytest.fixture
def short_lock_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ops.store, "MIGRATION_LIMITS", SHORT_WAIT)


def test_a_switch_starved_by_readers_says_so_and_changes_nothing(
    capsys: pytest.CaptureFixture[str],
    stack: TemplateQueues,
    db: psycopg.Connection,
    database_url: str,
    short_lock_wait: None,
) -> None:
    # Given materialized views on show, and a report reading competition_table for longer
    # than the switch may wait for its locks
    season_on_show(capsys, db, database_url, StandingsMode.MATERIALIZED_VIEW, (1, 6, 11))
    with psycopg.connect(database_url) as report:
        report.execute("SELECT count(*) FROM competition_table").fetchone()

        # When the operator switches to incremental mode
        switched = cli(capsys, "migrate", "--standings", "incremental")

    # Then the command fails with one line saying the readers kept the swap waiting, for
    # how long, and that nothing changed; not a bare lock timeout
    assert switched.code == 1
    assert len(switched.err.strip().splitlines()) == 1
    assert "cannot switch the standings to incremental: readers of competition_table" in (
        switched.err
    )
    assert "in 0.3 s (it gives way to them). Nothing was changed" in switched.err
    assert "end the session that keeps a transaction open on them" in switched.err
    assert "standings are now" not in switched.out
    assert_unchanged(db)


def test_a_switch_behind_a_long_refresh_says_so_and_changes_nothing(
    capsys: pytest.CaptureFixture[str],
    stack: TemplateQueues,
    db: psycopg.Connection,
    database_url: str,
    short_lock_wait: None,
) -> None:
    # Given materialized views on show, and a refresh of competition_standings running
    # for longer than the switch may wait
    season_on_show(capsys, db, database_url, StandingsMode.MATERIALIZED_VIEW, (1, 6, 12))
    with psycopg.connect(database_url) as refresh:
        refresh.execute(REFRESH_LOCK, ("competition_standings",))

        # When the operator switches to incremental mode
        switched = cli(capsys, "migrate", "--standings", "incremental")

    # Then the command names the refresh as what it waited for, and nothing changed
    assert switched.code == 1
    assert len(switched.err.strip().splitlines()) == 1
    assert (
        "cannot switch the standings to incremental: a lock it needs was held for longer"
        " than 0.3 s, by a refresh, another switch"
    ) in switched.err
    assert "Nothing was changed; run it again when it is done." in switched.err
    assert_unchanged(db)


def switch_to_incremental(database_url: str) -> bool:
    """`matchstats migrate --standings incremental`'s switch; whether it switched."""
    connections = ConnectionProvider(lambda: database_url)
    try:
        return OpsStore(connections).set_standings_mode(StandingsMode.INCREMENTAL)
    finally:
        connections.close()


def test_of_two_switches_at_once_one_rebuilds_and_the_other_has_nothing_to_switch(
    capsys: pytest.CaptureFixture[str],
    stack: TemplateQueues,
    db: psycopg.Connection,
    database_url: str,
) -> None:
    # Given materialized views on show, and a refresh holding the standings for a moment
    season_on_show(capsys, db, database_url, StandingsMode.MATERIALIZED_VIEW, (1, 6, 13))

    with psycopg.connect(database_url) as refresh, ThreadPoolExecutor(2) as pool:
        refresh.execute(REFRESH_LOCK, ("competition_standings",))

        # When two operators switch to incremental mode at once, both queued behind it
        first = pool.submit(switch_to_incremental, database_url)
        wait_for(lambda: sessions_waiting_on_locks(db) == 1, what="a switch to queue")
        second = pool.submit(switch_to_incremental, database_url)
        wait_for(lambda: sessions_waiting_on_locks(db) == 2, what="both switches to queue")
        refresh.commit()
        switched = sorted([first.result(timeout=30), second.result(timeout=30)])

    # Then exactly one of them switched (and says "rebuilt"); the other found the mode
    # already incremental (and says so), and the tables are whole
    assert switched == [False, True]
    assert kinds(db)["competition_standings"] == "r"
    assert standings_equal_the_matches(db)


def test_a_switch_by_the_function_and_one_by_the_command_at_once_do_not_deadlock(
    capsys: pytest.CaptureFixture[str],
    stack: TemplateQueues,
    db: psycopg.Connection,
    database_url: str,
) -> None:
    # Given materialized views on show, and a refresh holding the standings for a moment
    season_on_show(capsys, db, database_url, StandingsMode.MATERIALIZED_VIEW, (1, 6, 14))
    with (
        psycopg.connect(database_url) as refresh,
        psycopg.connect(database_url, autocommit=True) as by_hand,
        ThreadPoolExecutor(2) as pool,
    ):
        refresh.execute(REFRESH_LOCK, ("competition_standings",))

        # When someone calls the switch's function by hand, and the command switches too,
        # both queued behind the refresh
        function = pool.submit(
            by_hand.execute, "SELECT matchstats_set_standings_mode('incremental', force => true)"
        )
        wait_for(lambda: sessions_waiting_on_locks(db) == 1, what="a switch to queue")
        command = pool.submit(switch_to_incremental, database_url)
        wait_for(lambda: sessions_waiting_on_locks(db) == 2, what="both switches to queue")
        refresh.commit()

        # Then both finish, one after the other, in the order they asked: no deadlock
        function.result(timeout=30)
        assert command.result(timeout=30) is False
    assert kinds(db)["competition_standings"] == "r"
    assert standings_equal_the_matches(db)


def switch_by_the_function(database_url: str) -> bool:
    """matchstats_set_standings_mode called by hand; whether it switched."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT matchstats_set_standings_mode('incremental')").fetchone()
    return row == ("incremental",)


@pytest.mark.parametrize(
    "switch", [switch_to_incremental, switch_by_the_function], ids=["command", "function"]
)
def test_a_switch_waits_for_the_refresh_bookkeeping_before_its_swap_not_after(
    capsys: pytest.CaptureFixture[str],
    stack: TemplateQueues,
    db: psycopg.Connection,
    database_url: str,
    switch: Callable[[str], bool],
) -> None:
    # Given materialized views on show, and a session holding the refresh bookkeeping rows
    # (view_refresh_state) that the switch updates
    season_on_show(capsys, db, database_url, StandingsMode.MATERIALIZED_VIEW, (1, 6, 15))
    errors: list[str] = []
    with (
        psycopg.connect(database_url) as holder,
        psycopg.connect(database_url, autocommit=True) as reader,
        ThreadPoolExecutor(1) as pool,
    ):
        holder.execute("SELECT * FROM view_refresh_state FOR UPDATE")
        reader.execute("SET lock_timeout = 200")

        # When the operator switches while it holds them, and the app reads meanwhile
        switched = pool.submit(switch, database_url)
        wait_for(lambda: sessions_waiting_on_locks(db) == 1, what="a switch to queue")
        for _ in range(5):
            try:
                reader.execute("SELECT count(*) FROM competition_table").fetchone()
            except psycopg.errors.LockNotAvailable as exc:
                errors.append(str(exc))
            time.sleep(0.05)
        holder.commit()

        # Then the switch waited before its swap: every read went through, then it switched
        assert errors == []
        assert switched.result(timeout=30) is True
    assert kinds(db)["competition_standings"] == "r"
    assert standings_equal_the_matches(db)
