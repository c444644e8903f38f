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
        "cannot switch the standings to incremental: a refresh or another switch held the"
        " standings for longer than 0.3 s. Nothing was changed"
    ) in switched.err
    assert_unchanged(db)


def waiting_on_locks(db: psycopg.Connection) -> int:
    row = db.execute(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    ).fetchone()
    assert row is not None
    return int(row[0])


def wait_until(check: Callable[[], bool], limit_s: float = 10.0) -> None:
    deadline = time.monotonic() + limit_s
    while not check():
        assert time.monotonic() < deadline, "timed out waiting for the switches to queue"
        time.sleep(0.02)


def test_of_two_switches_at_once_one_rebuilds_and_the_other_has_nothing_to_switch(
    capsys: pytest.CaptureFixture[str],
    stack: TemplateQueues,
    db: psycopg.Connection,
    database_url: str,
) -> None:
    # Given materialized views on show, and a refresh holding the standings for a moment
    season_on_show(capsys, db, database_url, StandingsMode.MATERIALIZED_VIEW, (1, 6, 13))

    def switch() -> bool:
        connections = ConnectionProvider(lambda: database_url)
        try:
            return OpsStore(connections).set_standings_mode(StandingsMode.INCREMENTAL)
        finally:
            connections.close()

    with psycopg.connect(database_url) as refresh, ThreadPoolExecutor(2) as pool:
        refresh.execute(REFRESH_LOCK, ("competition_standings",))

        # When two operators switch to incremental mode at once, both queued behind it
        first = pool.submit(switch)
        wait_until(lambda: waiting_on_locks(db) == 1)
        second = pool.submit(switch)
        wait_until(lambda: waiting_on_locks(db) == 2)
        refresh.commit()
        switched = sorted([first.result(timeout=30), second.result(timeout=30)])

    # Then exactly one of them switched (and says "rebuilt"); the other found the mode
    # already incremental (and says so), and the tables are whole
    assert switched == [False, True]
    assert kinds(db)["competition_standings"] == "r"
    assert standings_equal_the_matches(db)
