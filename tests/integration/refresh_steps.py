"""The steps the refresh tests share: a played season whose points are written as
CalculatePointsFunction writes them, refresh requests stamped with the database clock,
and the refreshes refresh_log counts."""

from __future__ import annotations

import random
from datetime import datetime

import psycopg

from devstack.lambda_context import LambdaContext
from matchstats.db.connection import ConnectionProvider
from matchstats.db.points import PointsStore
from matchstats.messages import RefreshMessage, RefreshReason, RefreshScope
from matchstats.models import PointsJob
from testkit.seed import complete_matches, create_season

VIEWS = ("competition_standings", "competitor_stats")


def context(timeout_s: float = 120) -> LambdaContext:
    return LambdaContext.for_invocation("RefreshViewsFunction", timeout_s)


def compute_points(database_url: str, match_ids: list[int]) -> None:
    """Writes match_points as CalculatePointsFunction would (its data access, no queue)."""
    store = PointsStore(ConnectionProvider(lambda: database_url))
    jobs = [PointsJob(job_id=f"job-{m}", match_id=m, attempts=1) for m in match_ids]
    for start in range(0, len(jobs), 500):
        store.write_batch(
            jobs[start : start + 500],
            started_at=datetime.now().astimezone(),
            statement_timeout_ms=60_000,
            lock_timeout_ms=10_000,
        )


def database_now(db: psycopg.Connection) -> datetime:
    row = db.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def request_body(
    db: psycopg.Connection,
    reason: RefreshReason = RefreshReason.POINTS,
    scope: RefreshScope = RefreshScope.ALL,
    force: bool = False,
) -> str:
    return RefreshMessage(
        scope=scope, reason=reason, requested_at=database_now(db), force=force
    ).to_body()


def refresh_count(db: psycopg.Connection, view: str) -> int:
    row = db.execute("SELECT count(*) FROM refresh_log WHERE view_name = %s", (view,)).fetchone()
    assert row is not None
    return int(row[0])


def play_season(db: psycopg.Connection, database_url: str, **season: int) -> list[int]:
    created = create_season(db, **season)
    completed = created.match_ids[: len(created.match_ids) * 3 // 4]
    complete_matches(db, completed, random.Random(7))
    compute_points(database_url, completed)
    return created.match_ids
