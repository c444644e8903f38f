"""`matchstats migrate --standings materialized-view|incremental` (SPEC section 2) and
`matchstats refresh --full`, as the operator runs them on the local stack: switching both
ways loses no row, keeps every grant and never blocks a reader; a full refresh rebuilds
the standings from match_points in either mode."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import psycopg
import pytest
from psycopg import sql

from matchstats.models import StandingsMode
from testkit.oracle import (
    actual_competitor_stats,
    actual_standings,
    expected_competitor_stats,
    expected_standings,
    expected_table_order,
)
from testkit.seed import Season, complete_matches, correct_score, void_match
from tests.integration.cli.steps import cli, season
from tests.integration.refresh_steps import compute_points
from tests.template_queues import TemplateQueues

STANDINGS_OBJECTS = ("competition_standings", "competitor_stats", "competition_table")
# What a reader of the app's pages tolerates before it gives up on a read.
READER_LOCK_TIMEOUT_MS = 200


def kinds(db: psycopg.Connection) -> dict[str, str]:
    """relkind of each standings object: m (materialized view), r (table), v (view)."""
    rows = db.execute(
        "SELECT relname, relkind FROM pg_class"
        " WHERE relname = ANY(%s) AND relnamespace = 'public'::regnamespace",
        (list(STANDINGS_OBJECTS),),
    ).fetchall()
    return {name: str(kind) for name, kind in rows}


def readable_by(db: psycopg.Connection, role: str) -> dict[str, bool]:
    return {
        name: bool(
            db.execute("SELECT has_table_privilege(%s, %s, 'SELECT')", (role, name)).fetchone()[0]  # type: ignore[index]
        )
        for name in STANDINGS_OBJECTS
    }


def standings_equal_the_matches(db: psycopg.Connection) -> bool:
    return actual_standings(db) == expected_standings(db) and (
        actual_competitor_stats(db) == expected_competitor_stats(db)
    )


def assert_unchanged(db: psycopg.Connection) -> None:
    """Still materialized views, whole, with no half-built object left behind."""
    assert kinds(db)["competition_standings"] == "m"
    assert db.execute("SELECT mode FROM standings_mode").fetchone() == ("materialized-view",)
    leftovers = db.execute("SELECT relname FROM pg_class WHERE relname LIKE '%%\\_\\_next%%'")
    assert leftovers.fetchall() == []
    assert standings_equal_the_matches(db)


def ranks(db: psycopg.Connection, competition_id: int) -> list[tuple[int, int]]:
    rows = db.execute(
        "SELECT rank, competitor_id FROM competition_table WHERE competition_id = %s",
        (competition_id,),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def assert_whole_and_readable(
    db: psycopg.Connection, mode: StandingsMode, competition_ids: list[int], reader: str
) -> None:
    """The standings are `mode`'s objects, equal to the matches, ranked by the table's
    rules, and `reader` may read all three."""
    kind = "r" if mode is StandingsMode.INCREMENTAL else "m"
    assert kinds(db) == {
        "competition_standings": kind,
        "competitor_stats": kind,
        "competition_table": "v",
    }
    assert standings_equal_the_matches(db)
    for competition_id in competition_ids:
        assert ranks(db, competition_id) == expected_table_order(db, competition_id)
    assert readable_by(db, reader) == dict.fromkeys(STANDINGS_OBJECTS, True)


def season_on_show(
    capsys: pytest.CaptureFixture[str],
    db: psycopg.Connection,
    database_url: str,
    mode: StandingsMode,
    size: tuple[int, int, int],
) -> Season:
    """A season of (competitions, teams each, random seed), every match completed, its
    points written and the standings refreshed, in `mode` (switched by the command)."""
    competitions, teams, seed = size
    assert cli(capsys, "migrate", "--standings", mode.value).code == 0
    played = season(db, competitions=competitions, teams=teams)
    complete_matches(db, played.match_ids, random.Random(seed))
    compute_points(database_url, played.match_ids)
    assert cli(capsys, "refresh", "--wait").code == 0
    return played


@pytest.fixture
def app_reader(db: psycopg.Connection) -> Iterator[str]:
    """A role of the application's that may only read the standings."""
    role = f"standings_reader_{uuid.uuid4().hex[:8]}"
    db.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
    for name in STANDINGS_OBJECTS:
        db.execute(
            sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(name), sql.Identifier(role))
        )
    yield role
    db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_switching_both_ways_loses_no_row_and_keeps_the_grants(
    capsys: pytest.CaptureFixture[str],
    stack: TemplateQueues,
    db: psycopg.Connection,
    database_url: str,
    app_reader: str,
) -> None:
    # Given materialized views refreshed over a played season, an app role that reads them
    assert cli(capsys, "migrate", "--standings", "materialized-view").code == 0
    played = season(db, competitions=2, teams=6)
    first, later = played.match_ids[:30], played.match_ids[30:40]
    complete_matches(db, first, random.Random(3))
    compute_points(database_url, first)
    assert cli(capsys, "refresh", "--wait").code == 0
    # ...and points committed since, that no refresh has shown yet (in the change log)
    complete_matches(db, later, random.Random(4))
    compute_points(database_url, later)
    assert not standings_equal_the_matches(db)

    # When the operator switches to incremental mode
    to_incremental = cli(capsys, "migrate", "--standings", "incremental")

    # Then the standings are tables holding every row, the unrefreshed points included
    assert to_incremental.code == 0, to_incremental.err
    assert "standings are now incremental: rebuilt from match_points; the switch took" in (
        to_incremental.out
    )
    # ...and the app's role still reads all three
    assert_whole_and_readable(db, StandingsMode.INCREMENTAL, played.competition_ids, app_reader)
    # ...and the incremental refresh keeps them current through a correction and a void
    correct_score(db, first[0], 7, 0)
    void_match(db, first[1])
    compute_points(database_url, first[:2])
    assert cli(capsys, "refresh", "--wait").code == 0
    assert standings_equal_the_matches(db)

    # When the operator switches back, with a change logged and not yet refreshed
    correct_score(db, first[2], 0, 5)
    compute_points(database_url, [first[2]])
    back = cli(capsys, "migrate", "--standings", "materialized-view")
    again = cli(capsys, "migrate", "--standings", "materialized-view")

    # Then they are materialized views again, with every row, readable by the app's role
    assert back.code == 0, back.err
    assert "standings are now materialized-view" in back.out
    assert "already materialized-view" in again.out
    assert_whole_and_readable(
        db, StandingsMode.MATERIALIZED_VIEW, played.competition_ids, app_reader
    )
    with psycopg.connect(database_url, autocommit=True) as as_app:
        as_app.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(app_reader)))
        shown = as_app.execute("SELECT count(*) FROM competition_table").fetchone()
    assert shown == (len(expected_standings(db)),)


@dataclass
class Readers:
    """Pages of the app reading the standings in a loop, each read giving up after
    READER_LOCK_TIMEOUT_MS waiting for a lock."""

    database_url: str
    stop: threading.Event = field(default_factory=threading.Event)
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    short_reads: list[int] = field(default_factory=list)

    def read(self) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute(f"SET lock_timeout = {READER_LOCK_TIMEOUT_MS}")
            while not self.stop.is_set():
                started = time.perf_counter()
                try:
                    table = conn.execute(
                        "SELECT * FROM competition_table WHERE competition_id = 2"
                    ).fetchall()
                    stats = conn.execute("SELECT count(*) FROM competitor_stats").fetchone()
                except psycopg.Error as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                self.latencies.append(time.perf_counter() - started)
                if len(table) != 20 or stats != (80,):
                    self.short_reads.append(len(table))


def test_readers_are_never_blocked_while_the_mode_switches(
    capsys: pytest.CaptureFixture[str],
    stack: TemplateQueues,
    db: psycopg.Connection,
    database_url: str,
) -> None:
    # Given populated materialized views of four competitions of 20
    season_on_show(capsys, db, database_url, StandingsMode.MATERIALIZED_VIEW, (4, 20, 5))
    # ...pages reading them, and a slow report holding a read of the table for a second
    readers = Readers(database_url)
    threads = [threading.Thread(target=readers.read) for _ in range(2)]
    for thread in threads:
        thread.start()
    report = psycopg.connect(database_url)
    report.execute("SELECT count(*) FROM competition_table").fetchone()
    report_ends = time.monotonic() + 1.0

    # When the operator switches to incremental mode and back while they read
    runs, took = [], []
    for mode in (StandingsMode.INCREMENTAL, StandingsMode.MATERIALIZED_VIEW):
        started = time.monotonic()
        switch = threading.Thread(
            target=lambda m=mode: runs.append(cli(capsys, "migrate", "--standings", m.value))
        )
        switch.start()
        if mode is StandingsMode.INCREMENTAL:
            time.sleep(max(0.0, report_ends - time.monotonic()))
            report.commit()  # the report ends; the switch may take its locks now
        switch.join(60)
        took.append(time.monotonic() - started)
    time.sleep(0.2)
    readers.stop.set()
    for thread in threads:
        thread.join(10)
    report.close()

    # Then both switches succeeded, and no read failed, waited its lock timeout or missed
    # a row
    assert [run.code for run in runs] == [0, 0], [run.err for run in runs]
    assert kinds(db)["competition_standings"] == "m"
    print(
        f"\nmode switches took {took[0]:.2f} s (waiting for the report) and {took[1]:.2f} s;"
        f" readers: {len(readers.latencies)} reads, max {max(readers.latencies) * 1000:.1f} ms,"
        f" {len(readers.errors)} errors"
    )
    assert readers.errors == []
    assert readers.short_reads == []
    # ...the first switch gave way to the report until it ended, rather than fail
    assert took[0] >= 0.5
    assert len(readers.latencies) > 20
    assert standings_equal_the_matches(db)


@pytest.mark.parametrize("mode", list(StandingsMode), ids=[m.value for m in StandingsMode])
def test_refresh_full_rebuilds_the_standings_in_either_mode(
    capsys: pytest.CaptureFixture[str],
    stack: TemplateQueues,
    db: psycopg.Connection,
    database_url: str,
    mode: StandingsMode,
) -> None:
    # Given refreshed standings in `mode`
    played = season_on_show(capsys, db, database_url, mode, (2, 5, 6))
    # ...then match_points changed behind the change log's back (a repair by hand)
    db.execute(
        "UPDATE match_points SET points = points + 1 WHERE match_id = %s", (played.match_ids[0],)
    )
    db.execute("DELETE FROM match_points WHERE match_id = %s", (played.match_ids[1],))
    if mode is StandingsMode.INCREMENTAL:
        # ...and the tables themselves damaged: a wrong row, a lost one, a stray key
        db.execute("UPDATE competition_standings SET points = 999 WHERE competitor_id = 1")
        db.execute("DELETE FROM competitor_stats WHERE competitor_id = 2")
        db.execute(
            "INSERT INTO competition_standings SELECT competition_id, 424242, played, won,"
            " drawn, lost, score_for, score_against, score_diff, points"
            " FROM competition_standings LIMIT 1"
        )
    unchanged = cli(capsys, "refresh", "--wait")

    # When the operator runs a full refresh
    full = cli(capsys, "refresh", "--full")

    # Then a plain refresh saw nothing logged, and the full one rebuilt both from
    # match_points: they equal a full recomputation
    assert unchanged.out.count("skipped: nothing changed") == 2
    assert full.code == 0, full.err
    assert full.out.count("executed") == 2
    for table, source in (
        ("competition_standings", "standings_source"),
        ("competitor_stats", "competitor_stats_source"),
    ):
        differ = db.execute(
            sql.SQL(
                "SELECT count(*) FROM ((TABLE {0} EXCEPT TABLE {1}) UNION ALL"
                " (TABLE {1} EXCEPT TABLE {0})) AS d"
            ).format(sql.Identifier(table), sql.Identifier(source))
        ).fetchone()
        assert differ == (0,), f"{table} differs from {source}"
    assert kinds(db)["competition_standings"] == ("r" if mode is StandingsMode.INCREMENTAL else "m")


def test_a_switch_that_cannot_swap_in_its_lock_wait_changes_nothing(
    capsys: pytest.CaptureFixture[str],
    stack: TemplateQueues,
    db: psycopg.Connection,
    database_url: str,
) -> None:
    # Given materialized views on show, and a report reading competition_table for longer
    # than the switch may wait for its locks
    season_on_show(capsys, db, database_url, StandingsMode.MATERIALIZED_VIEW, (1, 6, 8))
    with psycopg.connect(database_url) as report:
        report.execute("SELECT count(*) FROM competition_table").fetchone()

        # When a switch to incremental mode may wait 300 ms for its locks in all
        with psycopg.connect(database_url, options="-c lock_timeout=300") as switch:
            started = time.monotonic()
            with pytest.raises(psycopg.errors.LockNotAvailable):
                switch.execute("SELECT matchstats_set_standings_mode('incremental')")
            waited = time.monotonic() - started

    # Then it gave up as a lock timeout after about its wait, and left the standings as
    # they were: still materialized views, whole, with no half-built object behind
    assert 0.3 <= waited < 2.0
    assert_unchanged(db)


def test_a_switch_refused_by_an_applications_view_names_it_and_changes_nothing(
    capsys: pytest.CaptureFixture[str],
    stack: TemplateQueues,
    db: psycopg.Connection,
    database_url: str,
) -> None:
    # Given materialized views on show, and a view of the application's built on them
    season_on_show(capsys, db, database_url, StandingsMode.MATERIALIZED_VIEW, (1, 6, 8))
    db.execute("CREATE VIEW app_leaders AS SELECT * FROM competition_table WHERE rank = 1")
    try:
        # When the operator switches to incremental mode
        switched = cli(capsys, "migrate", "--standings", "incremental")

        # Then the switch is refused with one line naming the dependent view and what to do
        assert switched.code == 1
        assert "view app_leaders depends on view competition_table" in switched.err
        assert "drop it, switch, then create it again. Nothing was changed." in switched.err
        assert len(switched.err.strip().splitlines()) == 1
        # ...and nothing changed
        assert kinds(db)["competition_standings"] == "m"
        assert db.execute("SELECT mode FROM standings_mode").fetchone() == ("materialized-view",)
        assert standings_equal_the_matches(db)
    finally:
        db.execute("DROP VIEW app_leaders")
