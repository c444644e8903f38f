"""Incremental standings (SPEC section 2) as a property of the real SQL on PostgreSQL.

Hypothesis plays the application against a few matches of two competitions: it completes
matches, corrects results (new scores, a new line-up, a move to the other competition)
and voids them, each change followed by its points write (PointsStore.write_batch, the
change log included). Between changes, RefreshViewsFunction's data access refreshes both
views in incremental mode as the function would for a points request, or rebuilds them
(`refresh --full`). After EVERY refresh, whether it ran or was skipped:

- competition_standings and competitor_stats equal a full recomputation (the views they
  are kept equal to, standings_source and competitor_stats_source), and so the oracle;
- the refresh says it changed rows exactly when rows changed, and names exactly the
  competitions whose standings rows changed (what StandingsRefreshed tells the app).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from matchstats.db.connection import ConnectionProvider
from matchstats.db.points import PointsStore
from matchstats.db.refresh import RefreshStore
from matchstats.messages import RefreshMessage, RefreshReason
from matchstats.models import PointsJob, StandingsMode, ViewRefreshDone
from matchstats.refresh import decide
from testkit.oracle import (
    actual_competitor_stats,
    actual_standings,
    expected_competitor_stats,
    expected_standings,
)
from tests.conftest import forget_refreshes, switch_standings_mode, truncate_all
from tests.integration.property_support import database_examples, insert_competitors, lineups

MATCHES = 4
COMPETITORS = 4
COMPETITIONS = 2

PROPERTY_SETTINGS = database_examples(60)

# --- what the application does, and when the refresher runs -------------------------------


@dataclass(frozen=True)
class Complete:
    """A match completes, or its result is corrected: new scores, maybe a new line-up or
    competition."""

    match: int
    home_score: int
    away_score: int
    lineup: tuple[int, int] | None
    competition: int | None


@dataclass(frozen=True)
class Void:
    """A match is cancelled, or set back to scheduled or live: its points go."""

    match: int
    status: str


@dataclass(frozen=True)
class Refresh:
    """RefreshViewsFunction runs for a points request; `full`: `matchstats refresh --full`."""

    full: bool


Step = Complete | Void | Refresh

steps = st.one_of(
    st.builds(
        Complete,
        match=st.integers(0, MATCHES - 1),
        home_score=st.integers(0, 4),
        away_score=st.integers(0, 4),
        lineup=lineups(COMPETITORS),
        competition=st.none() | st.integers(0, COMPETITIONS - 1),
    ),
    st.builds(
        Void,
        match=st.integers(0, MATCHES - 1),
        status=st.sampled_from(["cancelled", "scheduled", "live"]),
    ),
    # Mostly the function's refresh of what the log names, sometimes a full rebuild.
    st.builds(Refresh, full=st.sampled_from([False, False, False, True])),
)


# --- the database side ---------------------------------------------------------------------


@dataclass
class World:
    conn: psycopg.Connection
    points: PointsStore
    refresher: RefreshStore
    competition_ids: list[int]
    competitor_ids: list[int]
    match_ids: list[int]
    jobs: Iterator[int]

    def change(self, step: Complete | Void) -> None:
        """Changes the match as the application does, then writes its points."""
        match_id = self.match_ids[step.match]
        if isinstance(step, Complete):
            home, away = (
                (self.competitor_ids[step.lineup[0]], self.competitor_ids[step.lineup[1]])
                if step.lineup
                else (None, None)
            )
            competition = (
                self.competition_ids[step.competition] if step.competition is not None else None
            )
            self.conn.execute(
                "UPDATE matches SET status = 'completed', home_score = %s, away_score = %s,"
                " home_id = coalesce(%s, home_id), away_id = coalesce(%s, away_id),"
                " competition_id = coalesce(%s, competition_id),"
                " score_version = score_version + 1, completed_at = now() WHERE id = %s",
                (step.home_score, step.away_score, home, away, competition, match_id),
            )
        else:
            self.conn.execute(
                "UPDATE matches SET status = %s, score_version = score_version + 1,"
                " completed_at = NULL WHERE id = %s",
                (step.status, match_id),
            )
        self.points.write_batch(
            [PointsJob(job_id=f"job-{next(self.jobs)}", match_id=match_id, attempts=1)],
            started_at=datetime.now(UTC),
            statement_timeout_ms=10_000,
            lock_timeout_ms=5_000,
        )

    def refresh(self, view_name: str, full: bool) -> ViewRefreshDone | None:
        """The view's refresh as RefreshViewsFunction decides it for a points request made
        now (forced when `full`, as `refresh --full` is)."""
        now = self.conn.execute("SELECT clock_timestamp()").fetchone()
        assert now is not None
        request = RefreshMessage(reason=RefreshReason.POINTS, requested_at=now[0], force=full)
        _, done = self.refresher.refresh_view(
            view_name,
            lambda state: decide(state, [request]),
            statement_timeout_ms=10_000,
            lock_timeout_ms=5_000,
            full=full,
        )
        return done


def rows(conn: psycopg.Connection, relation: str) -> set[tuple[Any, ...]]:
    return {tuple(row) for row in conn.execute(f"SELECT * FROM {relation}").fetchall()}


def check_after_refresh(world: World, full: bool) -> None:
    conn = world.conn
    before_standings = actual_standings(conn)
    before_stats = actual_competitor_stats(conn)

    standings = world.refresh("competition_standings", full)
    stats = world.refresh("competitor_stats", full)

    # The tables equal a full recomputation, by the SQL views and by the oracle
    assert rows(conn, "competition_standings") == rows(conn, "standings_source")
    assert rows(conn, "competitor_stats") == rows(conn, "competitor_stats_source")
    assert actual_standings(conn) == expected_standings(conn)
    assert actual_competitor_stats(conn) == expected_competitor_stats(conn)
    # ...and each refresh told exactly what changed
    after_standings = actual_standings(conn)
    moved = {
        key[0]
        for key in before_standings.keys() | after_standings.keys()
        if before_standings.get(key) != after_standings.get(key)
    }
    assert (standings is not None and standings.changed) == bool(moved)
    assert sorted(standings.competition_ids if standings else []) == sorted(moved)
    stats_moved = actual_competitor_stats(conn) != before_stats
    assert (stats is not None and stats.changed) == stats_moved
    assert stats is None or stats.competition_ids == []


@pytest.fixture(scope="module")
def incremental_url(database_url: str) -> str:
    switch_standings_mode(database_url, StandingsMode.INCREMENTAL)
    return database_url


@pytest.fixture(scope="module")
def stores(incremental_url: str) -> Iterator[tuple[PointsStore, RefreshStore]]:
    connections = ConnectionProvider(lambda: incremental_url)
    yield PointsStore(connections), RefreshStore(connections)
    connections.close()


def given_a_season(conn: psycopg.Connection, stores: tuple[PointsStore, RefreshStore]) -> World:
    truncate_all(conn)
    forget_refreshes(conn)
    competition_ids = [
        row[0]
        for row in conn.execute(
            "INSERT INTO competitions (name, points_win, points_draw, points_loss)"
            " SELECT 'League ' || n, 3, 1, 0 FROM generate_series(1, %s) n RETURNING id",
            (COMPETITIONS,),
        ).fetchall()
    ]
    competitor_ids = insert_competitors(conn, COMPETITORS)
    match_ids = [
        row[0]
        for row in conn.execute(
            "INSERT INTO matches (competition_id, home_id, away_id, status)"
            " SELECT (%s::bigint[])[1 + n %% %s], (%s::bigint[])[1 + n %% %s],"
            " (%s::bigint[])[1 + (n + 1) %% %s], 'scheduled'"
            " FROM generate_series(0, %s - 1) n ORDER BY n RETURNING id",
            (
                competition_ids,
                COMPETITIONS,
                competitor_ids,
                COMPETITORS,
                competitor_ids,
                COMPETITORS,
                MATCHES,
            ),
        ).fetchall()
    ]
    points, refresher = stores
    return World(
        conn, points, refresher, competition_ids, competitor_ids, match_ids, itertools.count()
    )


@PROPERTY_SETTINGS
@given(history=st.lists(steps, min_size=1, max_size=25))
def test_incremental_tables_equal_a_full_recomputation_after_every_refresh(
    incremental_url: str,
    stores: tuple[PointsStore, RefreshStore],
    history: list[Step],
) -> None:
    with psycopg.connect(incremental_url, autocommit=True) as conn:
        # Given a season of two competitions in incremental mode, nothing played yet
        world = given_a_season(conn, stores)

        # When matches complete, are corrected and voided, with refreshes in between
        for step in [*history, Refresh(full=False)]:
            if isinstance(step, Refresh):
                # Then after every refresh the tables equal a full recomputation
                check_after_refresh(world, step.full)
            else:
                world.change(step)
