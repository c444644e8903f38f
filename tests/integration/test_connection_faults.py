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

import psycopg
import pytest

from calculate_points import app
from devstack.lambda_context import LambdaContext
from devstack.lambda_sqs import batch_item_failures, lambda_sqs_record
from devstack.postgres import EmbeddedPostgres
from devstack.tcp_proxy import TcpProxy
from testkit.events import points_bodies
from testkit.oracle import actual_match_points, expected_match_points
from testkit.seed import complete_matches, create_season
from tests.conftest import truncate_all
from tests.integration.conftest import FunctionEnvironment
from tests.template_queues import TemplateQueues


@pytest.fixture
def stack(
    function_env: FunctionEnvironment, database_url: str, db: psycopg.Connection
) -> TemplateQueues:
    """CalculatePointsFunction's environment as template.yaml gives it, on the local stack;
    empty tables and queues, and a cold function, for each test."""
    truncate_all(db)
    return function_env("CalculatePointsFunction", database_url, "none")


def deliver(stack: TemplateQueues, timeout_s: float = 120) -> tuple[list[str], set[str], float]:
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
    stack: TemplateQueues, db: psycopg.Connection
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


def test_a_restart_between_invocations_costs_no_receive(
    stack: TemplateQueues,
    db: psycopg.Connection,
    database_url: str,
    restartable_postgres: EmbeddedPostgres,
) -> None:
    # Given a warm function: it has processed one batch and kept its connection
    season = create_season(db, competitions=1, competitors_per_competition=4)
    first, second = season.match_ids[:2]
    complete_matches(db, [first, second], random.Random(6))
    stack.send("PointsQueue", points_bodies(first))
    assert deliver(stack)[1] == set()

    # When the server restarts between invocations (a reboot, a failover)
    db.close()
    restartable_postgres.stop_server()
    restartable_postgres.start_server()
    # ...and the next batch arrives
    stack.send("PointsQueue", points_bodies(second))
    counts, failed, _ = deliver(stack)

    # Then it completed on its first receive, on a new connection
    assert (counts, failed) == (["1"], set())
    with psycopg.connect(database_url) as after:
        assert actual_match_points(after) == expected_match_points(after)
        history = after.execute("SELECT status, attempts FROM job_history ORDER BY id").fetchall()
    assert history == [("completed", 1), ("completed", 1)]


@pytest.fixture
def proxied_stack(
    monkeypatch: pytest.MonkeyPatch, stack: TemplateQueues, database_url: str
) -> Iterator[tuple[TemplateQueues, TcpProxy]]:
    """The function's DATABASE_URL through a TCP proxy that can go silent."""
    with TcpProxy.in_front_of(database_url) as proxy:
        monkeypatch.setenv("DATABASE_URL", proxy.url(database_url))
        app.dependencies.cache_clear()
        yield stack, proxy
        proxy.resume()


def test_a_connection_that_goes_silent_fails_the_batch_inside_its_time_with_backoff(
    proxied_stack: tuple[TemplateQueues, TcpProxy], db: psycopg.Connection
) -> None:
    # Given a warm function whose connection goes through a proxy
    stack, proxy = proxied_stack
    season = create_season(db, competitions=1, competitors_per_competition=4)
    first, second = season.match_ids[:2]
    complete_matches(db, [first, second], random.Random(7))
    stack.send("PointsQueue", points_bodies(first))
    assert deliver(stack)[1] == set()

    # When the path goes silent without closing (a NAT that forgot the connection, a
    # failover that left the socket open), and a batch arrives with 15 s to run
    proxy.blackhole()
    stack.send("PointsQueue", points_bodies(second))
    counts, failed, seconds = deliver(stack, timeout_s=15)

    # Then the invocation gave up inside its 15 s, failing its record as transient
    assert counts == ["1"]
    assert len(failed) == 1
    assert seconds < 15, seconds
    # ...with the 5 s backoff, not the queue's 720 s visibility timeout
    proxy.resume()
    assert stack.depth("PointsQueue")["in_flight"] == 1
    time.sleep(6)
    assert stack.depth("PointsQueue")["visible"] == 1
    # ...and once the path is back, the redelivery completes on a new connection
    counts, failed, _ = deliver(stack)
    assert (counts, failed) == (["2"], set())
    assert actual_match_points(db) == expected_match_points(db)
