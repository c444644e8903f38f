"""What the network and the server do to a warm function's connection (issue 10, items 2
and 3), against the real PostgreSQL, the real handler and moto's SQS:

- a connection closed between invocations (pg_terminate_backend, a restart, a failover) is
  found dead before the batch's first statement and replaced: no receive is used up;
- a connection that goes silent in mid-batch fails the batch as transient inside the
  invocation's time, with its backoff, instead of blocking until Lambda kills it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from calculate_points import app
from devstack.esm import batch_item_failures, lambda_sqs_record
from devstack.lambda_context import LambdaContext
from devstack.oracle import actual_match_points, expected_match_points
from devstack.seed import complete_matches, create_season
from devstack.sqs import LocalSqs
from tests.conftest import truncate_all
from tests.factories import points_bodies
from tests.stack import Stack, function_environment


@pytest.fixture(scope="module")
def sqs_client() -> Iterator[Any]:
    with LocalSqs() as local:
        yield local.client()


@pytest.fixture
def stack(
    monkeypatch: pytest.MonkeyPatch, sqs_client: Any, database_url: str, db: psycopg.Connection
) -> Iterator[Stack]:
    """CalculatePointsFunction's environment as template.yaml gives it, on the local stack;
    empty tables and queues, and a cold function, for each test."""
    truncate_all(db)
    stack = Stack.fresh_queues(sqs_client)
    for name, value in function_environment(stack, database_url, "CalculatePointsFunction").items():
        monkeypatch.setenv(name, value)
    app.dependencies.cache_clear()
    yield stack
    app.dependencies.cache_clear()


def deliver(stack: Stack, timeout_s: float = 120) -> tuple[list[str], set[str], float]:
    """Receives every visible points message as one batch and invokes the handler as the
    event source mapping would. Returns the receive counts, the failed ids and the seconds
    the invocation took."""
    messages = stack.sqs.receive_message(
        QueueUrl=stack.urls["PointsQueue"],
        MaxNumberOfMessages=10,
        MessageSystemAttributeNames=["All"],
        WaitTimeSeconds=1,
    )["Messages"]
    event = {
        "Records": [lambda_sqs_record(m, stack.arns["PointsQueue"], "us-east-1") for m in messages]
    }
    started = time.monotonic()
    response = app.lambda_handler(
        event, LambdaContext.for_invocation("CalculatePointsFunction", timeout_s)
    )
    seconds = time.monotonic() - started
    failed = batch_item_failures(response, [m["MessageId"] for m in messages])
    assert failed is not None, response
    stack.delete("PointsQueue", [m for m in messages if m["MessageId"] not in failed])
    counts = [m["Attributes"]["ApproximateReceiveCount"] for m in messages]
    return counts, set(failed), seconds


def function_backends(db: psycopg.Connection) -> list[int]:
    """The server pids of the connections to this database other than the test's own."""
    rows = db.execute(
        "SELECT pid FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    ).fetchall()
    return [int(row[0]) for row in rows]


def test_a_backend_terminated_between_invocations_costs_no_receive(
    stack: Stack, db: psycopg.Connection
) -> None:
    # Given a warm function: it has processed one batch and kept its connection
    season = create_season(db, competitions=1, competitors_per_competition=4)
    first, second = season.match_ids[:2]
    complete_matches(db, [first, second], random.Random(5))
    stack.send("PointsQueue", points_bodies(first))
    assert deliver(stack)[1] == set()
    [backend] = function_backends(db)

    # When its backend is terminated between invocations (an administrator, a failover)
    db.execute("SELECT pg_terminate_backend(%s, 5000)", (backend,))
    # ...and the next batch arrives
    stack.send("PointsQueue", points_bodies(second))
    counts, failed, _ = deliver(stack)

    # Then it completed on its first receive: the dead connection was replaced before
    # anything was sent on it
    assert (counts, failed) == (["1"], set())
    assert function_backends(db) != [backend]
    assert actual_match_points(db) == expected_match_points(db)
    history = db.execute("SELECT status, attempts FROM job_history ORDER BY id").fetchall()
    assert history == [("completed", 1), ("completed", 1)]
