"""A points batch that cannot finish in the invocation's remaining time, end to end
through moto's SQS and the local event source mapping: it stops its SQL before the Lambda
deadline, writes nothing, and its records come back after the 5 s backoff and complete.

test_points_failures.py shows the first half (nothing written, both records failed);
this follows the same records through their redelivery.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from calculate_points import app
from devstack.esm import EventSourceMapping
from devstack.lambda_context import LambdaContext
from devstack.lambda_sqs import batch_item_failures
from matchstats.points import POST_COMMIT_RESERVE_MS
from testkit.events import points_bodies
from testkit.oracle import actual_match_points, expected_match_points
from testkit.seed import complete_matches, create_season
from tests.conftest import truncate_all
from tests.integration.conftest import FunctionEnvironment
from tests.template_queues import TemplateQueues

# A function timeout this short leaves the SQL a budget of 3 s (8 s less the 5 s kept back
# for what follows a commit), so a lock held longer than that cannot be waited out.
SHORT_TIMEOUT_S = 8.0
FIRST_BACKOFF_S = 5


@pytest.fixture
def points_env(
    function_env: FunctionEnvironment, database_url: str, db: psycopg.Connection
) -> TemplateQueues:
    """CalculatePointsFunction's environment from template.yaml, on fresh queues and tables,
    connected directly (the conftest's points_env would also run it behind PgBouncer)."""
    truncate_all(db)
    return function_env("CalculatePointsFunction", database_url, "none")


@dataclass(frozen=True)
class Invocation:
    started: float
    seconds: float
    receive_counts: list[str]
    failed: frozenset[str]
    records: int
    rows_after: int


class RecordingHandler:
    """The real handler, noting each invocation and how many match_points rows it left."""

    def __init__(self, database_url: str) -> None:
        self._database_url = database_url
        self.invocations: list[Invocation] = []
        self.first_done = threading.Event()

    def __call__(self, event: dict[str, Any], context: LambdaContext) -> Any:
        started = time.monotonic()
        response = app.lambda_handler(event, context)
        seconds = time.monotonic() - started
        with psycopg.connect(self._database_url) as conn:
            rows = conn.execute("SELECT count(*) FROM match_points").fetchone()
        ids = [record["messageId"] for record in event["Records"]]
        failed = batch_item_failures(response, ids)
        assert failed is not None, response
        self.invocations.append(
            Invocation(
                started=started,
                seconds=seconds,
                receive_counts=[
                    r["attributes"]["ApproximateReceiveCount"] for r in event["Records"]
                ],
                failed=failed,
                records=len(ids),
                rows_after=rows[0] if rows else -1,
            )
        )
        self.first_done.set()
        return response


def test_a_batch_out_of_time_writes_nothing_and_its_records_complete_on_redelivery(
    points_env: TemplateQueues, db: psycopg.Connection, database_url: str
) -> None:
    # Given two completed matches, one of them locked by another points transaction
    season = create_season(db, competitions=1, competitors_per_competition=4)
    locked, free = season.match_ids[:2]
    complete_matches(db, [locked, free], random.Random(7))
    blocker = psycopg.connect(database_url)
    blocker.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('matchstats.points:' || %s, 0))",
        (locked,),
    )
    # ...and the function under a mapping whose invocations have 8 s, one at a time
    handler = RecordingHandler(database_url)
    mapping = EventSourceMapping(
        points_env.sqs,
        points_env.urls["PointsQueue"],
        points_env.arns["PointsQueue"],
        handler,
        batch_size=10,
        batching_window_s=1,
        maximum_concurrency=1,
        function_name="CalculatePointsFunction",
        timeout_s=SHORT_TIMEOUT_S,
    )

    # When the messages of both arrive while the lock is held
    points_env.send("PointsQueue", points_bodies(locked, free))
    with mapping:
        assert handler.first_done.wait(30), "the batch was never delivered"
        # ...and the other transaction then commits, releasing the lock
        blocker.rollback()
        blocker.close()
        mapping.drain(timeout_s=40)
    first, *rest = handler.invocations

    # Then the first invocation gave up inside its deadline, failing both records ...
    assert first.records == 2
    # (the SQL had 3 s; the rest of the 5 s kept back is spare for a loaded machine)
    assert first.seconds < SHORT_TIMEOUT_S - POST_COMMIT_RESERVE_MS / 1000 / 2, first
    assert len(first.failed) == 2
    # ...having written nothing, not even the match that was not locked
    assert first.rows_after == 0
    # ...and the same two records came back once, after the 5 s backoff, and completed
    assert [(r.receive_counts, len(r.failed)) for r in rest] == [(["2", "2"], 0)]
    assert rest[0].started - (first.started + first.seconds) >= FIRST_BACKOFF_S - 0.5
    assert mapping.stats.handler_errors == 0  # no invocation ran past its deadline
    # ...so both matches have exactly the points their rows imply
    assert actual_match_points(db) == expected_match_points(db)
    assert len(actual_match_points(db)) == 4
    # ...nothing was dead-lettered, and one refresh was requested (after the commit only)
    assert points_env.depth("PointsQueue") == {"visible": 0, "in_flight": 0, "delayed": 0}
    assert points_env.depth("PointsDeadLetterQueue")["visible"] == 0
    assert len(points_env.drain_all("RefreshQueue")) == 1
    # ...and the job history tells the story: failed on the lock, then completed
    history = db.execute("SELECT status, attempts, error FROM job_history ORDER BY id").fetchall()
    assert [(status, attempts) for status, attempts, _ in history] == [
        ("failed", 1),
        ("failed", 1),
        ("completed", 2),
        ("completed", 2),
    ]
    assert all("lock" in error or "timeout" in error for _, _, error in history[:2]), history
