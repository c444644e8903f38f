"""The points rule (SPEC sections 2 and 4) as a property of the real SQL on PostgreSQL.

Hypothesis plays the application against a handful of matches: it changes scores,
statuses and line-ups (each change bumps score_version, as the application does), and
delivers points messages in batches, in any order, with duplicates, stale messages and
poison mixed in. PointsStore.write_batch (the points SQL, one transaction per batch) runs
each batch. Whatever the sequence:

- after a batch, every match it named whose row is valid has exactly the match_points
  the row implies (testkit.oracle recomputes them in Python), and a match completed
  without scores keeps the rows it had: reported, never guessed;
- each record's outcome is its own (ok, match_not_found, invalid_message,
  missing_scores), and `changed` and the change counter move only when rows changed;
- once the message of each match's last change has been delivered, match_points
  equals the oracle for the whole table, and so do both standings after the refresh
  that follows, in either standings mode (materialized views or incremental tables).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from matchstats.db.connection import ConnectionProvider
from matchstats.db.points import PointsStore
from matchstats.db.refresh import RefreshStore
from matchstats.messages import REFRESHABLE_VIEWS, RefreshMessage, RefreshReason
from matchstats.models import PointsJob, PointsOutcomeKind, StandingsMode
from matchstats.refresh import decide
from testkit.oracle import (
    MatchPointsRow,
    actual_competitor_stats,
    actual_match_points,
    actual_standings,
    expected_competitor_stats,
    expected_match_points,
    expected_standings,
)
from tests.conftest import truncate_all
from tests.integration.property_support import database_examples, insert_competitors, lineups

MAX_MATCHES = 3
COMPETITORS = 3
UNKNOWN_MATCH_ID = 9_000_000_000
STATUSES = ("scheduled", "live", "completed", "cancelled")

PROPERTY_SETTINGS = database_examples(100)


# --- what the application does ----------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """The application changes one match (and bumps its score_version)."""

    match: int  # index into the example's matches
    status: str
    home_score: int | None
    away_score: int | None
    # Indices into the example's competitors, or None to keep the line-up.
    lineup: tuple[int, int] | None


@dataclass(frozen=True)
class Delivery:
    """One batch of points messages: match indices, "unknown" or "invalid"."""

    entries: tuple[int | str, ...]


scores = st.none() | st.integers(0, 9)


def changes(matches: int) -> st.SearchStrategy[Change]:
    return st.builds(
        Change,
        match=st.integers(0, matches - 1),
        status=st.sampled_from(STATUSES),
        # Mostly both scores, sometimes one missing (a completed one is bad data).
        home_score=st.integers(0, 9) | scores,
        away_score=st.integers(0, 9) | scores,
        lineup=lineups(COMPETITORS),
    )


def deliveries(matches: int) -> st.SearchStrategy[Delivery]:
    entry = st.integers(0, matches - 1) | st.sampled_from(["unknown", "invalid"])
    return st.lists(entry, min_size=1, max_size=10).map(lambda e: Delivery(tuple(e)))


@st.composite
def histories(draw: st.DrawFn) -> tuple[int, tuple[int, int, int], list[Change | Delivery]]:
    matches = draw(st.integers(1, MAX_MATCHES))
    rules = draw(st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(-1, 5)))
    steps = draw(st.lists(changes(matches) | deliveries(matches), max_size=20))
    return matches, rules, steps


# --- the database side -------------------------------------------------------------------


@dataclass
class World:
    conn: psycopg.Connection
    store: PointsStore
    match_ids: list[int]
    competitor_ids: list[int]
    jobs: Iterator[int]

    def apply(self, change: Change) -> None:
        match_id = self.match_ids[change.match]
        home, away = (
            (self.competitor_ids[change.lineup[0]], self.competitor_ids[change.lineup[1]])
            if change.lineup
            else (None, None)
        )
        self.conn.execute(
            "UPDATE matches SET status = %s, home_score = %s, away_score = %s,"
            " home_id = coalesce(%s, home_id), away_id = coalesce(%s, away_id),"
            " score_version = score_version + 1,"
            " completed_at = CASE WHEN %s = 'completed' THEN now() END"
            " WHERE id = %s",
            (
                change.status,
                change.home_score,
                change.away_score,
                home,
                away,
                change.status,
                match_id,
            ),
        )

    def missing_scores(self, match_id: int) -> bool:
        row = self.conn.execute(
            "SELECT status = 'completed' AND (home_score IS NULL OR away_score IS NULL)"
            " FROM matches WHERE id = %s",
            (match_id,),
        ).fetchone()
        return row is not None and bool(row[0])

    def job(self, entry: int | str) -> PointsJob:
        job_id = f"job-{next(self.jobs)}"
        if entry == "invalid":
            return PointsJob(job_id=job_id, match_id=None, attempts=1, parse_error="bad body")
        match_id = UNKNOWN_MATCH_ID if entry == "unknown" else self.match_ids[int(entry)]
        return PointsJob(job_id=job_id, match_id=match_id, attempts=1)


def rows_of(rows: set[MatchPointsRow], match_id: int) -> set[MatchPointsRow]:
    return {row for row in rows if row[0] == match_id}


def deliver(world: World, delivery: Delivery) -> set[int]:
    """Runs one batch and checks what it must hold; returns the match ids it brought in
    line with their rows."""
    jobs = [world.job(entry) for entry in delivery.entries]
    before = actual_match_points(world.conn)
    bad = {j.match_id for j in jobs if j.match_id and world.missing_scores(j.match_id)}

    write = world.store.write_batch(
        jobs, started_at=datetime.now(UTC), statement_timeout_ms=10_000, lock_timeout_ms=5_000
    )

    after = actual_match_points(world.conn)
    expected = expected_match_points(world.conn)
    outcomes = {row.job_id: row for row in write.outcomes}
    assert set(outcomes) == {job.job_id for job in jobs}
    settled: set[int] = set()
    for job in jobs:
        outcome = outcomes[job.job_id]
        if job.match_id is None:
            assert outcome.outcome is PointsOutcomeKind.INVALID_MESSAGE
        elif job.match_id == UNKNOWN_MATCH_ID:
            assert outcome.outcome is PointsOutcomeKind.MATCH_NOT_FOUND
        elif job.match_id in bad:
            # Bad data is reported, and the rows it had are left as they were
            assert outcome.outcome is PointsOutcomeKind.MISSING_SCORES
            assert rows_of(after, job.match_id) == rows_of(before, job.match_id)
        else:
            # The match now has exactly the rows its current row implies
            assert outcome.outcome is PointsOutcomeKind.OK
            assert rows_of(after, job.match_id) == rows_of(expected, job.match_id)
            assert outcome.changed == (
                rows_of(after, job.match_id) != rows_of(before, job.match_id)
            )
            settled.add(job.match_id)
        if outcome.outcome is not PointsOutcomeKind.OK:
            assert not outcome.changed
    # A match outside the batch is untouched, and the change counter moved only on change
    assert after - {r for r in after if r[0] in settled} == before - {
        r for r in before if r[0] in settled
    }
    assert (write.keys_changed > 0) == (after != before)
    return settled


@pytest.fixture(scope="module")
def connections(database_url: str) -> Iterator[ConnectionProvider]:
    provider = ConnectionProvider(lambda: database_url)
    yield provider
    provider.close()


@pytest.fixture(scope="module")
def store(connections: ConnectionProvider) -> PointsStore:
    return PointsStore(connections)


def refresh_for_points(conn: psycopg.Connection, connections: ConnectionProvider) -> None:
    """Both views refreshed as RefreshViewsFunction does for a points request made now."""
    now = conn.execute("SELECT clock_timestamp()").fetchone()
    assert now is not None
    request = RefreshMessage(reason=RefreshReason.POINTS, requested_at=now[0])
    for view_name in REFRESHABLE_VIEWS:
        RefreshStore(connections).refresh_view(
            view_name,
            lambda state: decide(state, [request]),
            statement_timeout_ms=10_000,
            lock_timeout_ms=5_000,
        )


@PROPERTY_SETTINGS
@given(history=histories(), data=st.data())
def test_any_sequence_of_changes_and_deliveries_ends_in_what_the_final_rows_imply(
    database_url: str,
    standings_mode: StandingsMode,
    connections: ConnectionProvider,
    store: PointsStore,
    history: tuple[int, tuple[int, int, int], list[Change | Delivery]],
    data: st.DataObject,
) -> None:
    matches, (win, draw, loss), steps = history
    with psycopg.connect(database_url, autocommit=True) as conn:
        # Given a competition with these points rules, three competitors, a few matches
        truncate_all(conn)
        competition_id = conn.execute(
            "INSERT INTO competitions (name, points_win, points_draw, points_loss)"
            " VALUES ('Property League', %s, %s, %s) RETURNING id",
            (win, draw, loss),
        ).fetchone()[0]  # type: ignore[index]
        competitor_ids = insert_competitors(conn, COMPETITORS)
        match_ids = [
            conn.execute(
                "INSERT INTO matches (competition_id, home_id, away_id, status)"
                " VALUES (%s, %s, %s, 'scheduled') RETURNING id",
                (competition_id, competitor_ids[i % 2], competitor_ids[2]),
            ).fetchone()[0]  # type: ignore[index]
            for i in range(matches)
        ]
        world = World(conn, store, match_ids, competitor_ids, itertools.count())
        # ...whose latest change is not yet delivered (each change sends a message)
        undelivered: set[int] = set()

        # When the application changes matches and batches of messages are delivered,
        # old and new, duplicated, in any order, with poison among them
        for step in steps:
            if isinstance(step, Change):
                world.apply(step)
                undelivered.add(match_ids[step.match])
            else:
                undelivered -= deliver(world, step)
        # ...and the last change of a match left with bad data is a fix of it
        for index, match_id in enumerate(match_ids):
            if world.missing_scores(match_id):
                world.apply(Change(index, "completed", 1, 1, None))
                undelivered.add(match_id)
        # ...then every message not yet delivered arrives, in any order and batching
        final = data.draw(st.permutations([match_ids.index(m) for m in sorted(undelivered)]))
        cut = data.draw(st.integers(0, len(final)))
        for batch in (final[:cut], final[cut:]):
            if batch:
                deliver(world, Delivery(tuple(batch)))

        # Then match_points is exactly what the final match rows imply, and no
        # (match, competitor) has more than one row
        assert actual_match_points(conn) == expected_match_points(conn)
        assert conn.execute(
            "SELECT count(*) = count(DISTINCT (match_id, competitor_id)) FROM match_points"
        ).fetchone() == (True,)
        # ...and after the refresh that follows, both standings equal the oracle
        refresh_for_points(conn, connections)
        assert actual_standings(conn) == expected_standings(conn)
        assert actual_competitor_stats(conn) == expected_competitor_stats(conn)
