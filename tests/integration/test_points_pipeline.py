"""The points pipeline against the real PostgreSQL and moto's SQS: a scoring message
becomes correct match_points under duplicates, reordering, poison, outages and timeouts."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import psycopg
import pytest

from calculate_points import app
from devstack.esm import EventSourceMapping, batch_item_failures, lambda_sqs_record
from devstack.lambda_context import LambdaContext
from devstack.postgres import free_port
from devstack.sqs import LocalSqs
from matchstats.producer import enqueue_points_calculations
from testkit.events import load_event, points_bodies, sqs_event
from testkit.oracle import actual_match_points, expected_match_points
from testkit.seed import complete_matches, correct_score, create_season, void_match
from tests.conftest import FunctionDatabase, direct_only, pgbouncer_only, truncate_all
from tests.fakes import BYTES_PER_MESSAGE as MAX_SQS_MESSAGE_BYTES
from tests.fakes import InMemoryQueues
from tests.template_queues import TemplateQueues, function_environment

FUNCTION_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def local_sqs_client() -> Iterator[Any]:
    with LocalSqs() as local:
        yield local.client()


@pytest.fixture
def points_env(
    monkeypatch: pytest.MonkeyPatch,
    local_sqs_client: Any,
    function_database: FunctionDatabase,
    db: psycopg.Connection,
) -> Iterator[TemplateQueues]:
    """CalculatePointsFunction's environment as template.yaml gives it, pointed at the local
    stack, its database reached directly or through PgBouncer (each test runs both ways);
    empty tables and queues for each test."""
    truncate_all(db)
    stack = TemplateQueues.fresh_queues(local_sqs_client)
    env = function_environment(
        stack, function_database.url, "CalculatePointsFunction", function_database.pooler
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    app.dependencies.cache_clear()
    yield stack
    app.dependencies.cache_clear()


def context(timeout_s: float = FUNCTION_TIMEOUT_S) -> LambdaContext:
    return LambdaContext.for_invocation("CalculatePointsFunction", timeout_s)


def receive_batch(stack: TemplateQueues, count: int) -> list[dict[str, Any]]:
    """Receives exactly `count` messages from PointsQueue as one batch."""
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while len(messages) < count and time.monotonic() < deadline:
        messages += stack.sqs.receive_message(
            QueueUrl=stack.urls["PointsQueue"],
            MaxNumberOfMessages=min(10, count - len(messages)),
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            WaitTimeSeconds=1,
        ).get("Messages", [])
    assert len(messages) == count, f"received {len(messages)} of {count} messages"
    return messages


def invoke_batch(
    stack: TemplateQueues, messages: list[dict[str, Any]], timeout_s: float = 120
) -> set[str]:
    """Invokes the handler as the event source mapping would and deletes the successes;
    returns the ids of the records the handler reported failed."""
    event = {
        "Records": [lambda_sqs_record(m, stack.arns["PointsQueue"], "us-east-1") for m in messages]
    }
    response = app.lambda_handler(event, context(timeout_s))
    ids = [m["MessageId"] for m in messages]
    failed = batch_item_failures(response, ids)
    assert failed is not None, f"invalid batch response {response}"
    stack.delete("PointsQueue", [m for m in messages if m["MessageId"] not in failed])
    return set(failed)


def mapping(
    stack: TemplateQueues, handler: Callable[..., Any], concurrency: int = 5
) -> EventSourceMapping:
    return EventSourceMapping(
        stack.sqs,
        stack.urls["PointsQueue"],
        stack.arns["PointsQueue"],
        handler,
        batch_size=10,
        batching_window_s=0.2,
        maximum_concurrency=concurrency,
        function_name="CalculatePointsFunction",
        timeout_s=FUNCTION_TIMEOUT_S,
    )


def test_season_with_every_message_three_times_in_shuffled_order_by_five_workers(
    points_env: TemplateQueues, db: psycopg.Connection
) -> None:
    # Given a season of 240 matches, most completed, a few corrected or voided
    rng = random.Random(20261128)
    season = create_season(db, competitions=2, competitors_per_competition=12)
    assert len(season.match_ids) >= 200
    completed = rng.sample(season.match_ids, 220)
    versions = complete_matches(db, completed, rng)
    for match_id in completed[:10]:
        versions[match_id] = correct_score(db, match_id, rng.randint(0, 4), rng.randint(0, 4))
    for match_id in completed[10:15]:
        versions[match_id] = void_match(db, match_id)
    # ...and every match's message sent three times, shuffled, through the producer helper
    deliveries = [(m, versions.get(m)) for m in season.match_ids] * 3
    rng.shuffle(deliveries)
    enqueue_points_calculations(deliveries, sqs_client=points_env.sqs)

    # When five concurrent workers consume the queue
    with mapping(points_env, app.lambda_handler, concurrency=5) as esm:
        esm.drain(timeout_s=120)
        stats = esm.stats

    # Then match_points equals a direct recomputation from matches, row for row
    assert actual_match_points(db) == expected_match_points(db)
    assert len(actual_match_points(db)) == 2 * (220 - 5)
    # ...every message was processed once, none failed, none dead-lettered
    assert stats.records_failed == 0
    assert stats.records_succeeded == len(deliveries)
    assert points_env.depth("PointsDeadLetterQueue")["visible"] == 0
    # ...and the job history kept its most recent 100 completed runs
    counts = dict(db.execute("SELECT status, count(*) FROM job_history GROUP BY status").fetchall())
    assert counts == {"completed": 100}


def test_corrections_and_voids_follow_the_current_row_whatever_the_delivery_order(
    points_env: TemplateQueues, db: psycopg.Connection
) -> None:
    # Given two completed matches and their first messages
    season = create_season(db, competitions=1, competitors_per_competition=4)
    corrected, voided = season.match_ids[:2]
    first = complete_matches(db, [corrected, voided], random.Random(1))
    old_bodies = [
        json.dumps({"matchId": corrected, "scoreVersion": first[corrected]}),
        json.dumps({"matchId": voided, "scoreVersion": first[voided]}),
    ]
    # ...then a correction to 3-3 and a void, each with its own message
    v_corrected = correct_score(db, corrected, 3, 3)
    v_voided = void_match(db, voided)
    new_bodies = [
        json.dumps({"matchId": corrected, "scoreVersion": v_corrected}),
        json.dumps({"matchId": voided, "scoreVersion": v_voided}),
    ]

    # When the new messages are processed before the old ones, and then again after
    for bodies in (new_bodies, old_bodies, new_bodies, old_bodies):
        response = app.lambda_handler(sqs_event(bodies), context())
        assert response == {"batchItemFailures": []}

    # Then the rows follow the current match rows: a draw at the new version, no void rows
    rows = db.execute(
        "SELECT match_id, result, points, score_for, score_against, score_version"
        " FROM match_points ORDER BY match_id, competitor_id"
    ).fetchall()
    assert rows == [(corrected, "D", 1, 3, 3, v_corrected), (corrected, "D", 1, 3, 3, v_corrected)]
    assert actual_match_points(db) == expected_match_points(db)


def test_poison_records_go_to_the_dead_letter_queue_with_a_reason_and_the_rest_commit(
    points_env: TemplateQueues, db: psycopg.Connection
) -> None:
    # Given 8 completed matches and one completed without scores
    season = create_season(db, competitions=1, competitors_per_competition=6)
    good = season.match_ids[:7]
    complete_matches(db, good, random.Random(2))
    no_scores = season.match_ids[7]
    db.execute("UPDATE matches SET status = 'completed' WHERE id = %s", (no_scores,))
    # ...and a batch of 10: 7 good, one invalid body, one unknown match, one without scores
    bad_json = '{"matchId": "seven"'
    bodies = [*points_bodies(*good), bad_json, *points_bodies(999_999, no_scores)]
    points_env.send("PointsQueue", bodies)
    messages = receive_batch(points_env, 10)

    # When the batch is processed
    failed = invoke_batch(points_env, messages)

    # Then no record is reported failed (nothing will be retried) ...
    assert failed == set()
    assert points_env.depth("PointsQueue") == {"visible": 0, "in_flight": 0, "delayed": 0}
    # ...the 7 good matches are committed
    assert {row[0] for row in actual_match_points(db)} == set(good)
    # ...and the 3 bad ones are in the dead-letter queue, each with its reason
    dead = points_env.drain_all("PointsDeadLetterQueue")
    reasons = {
        m["Body"]: (
            m["MessageAttributes"]["matchstats.errorKind"]["StringValue"],
            m["MessageAttributes"]["matchstats.reason"]["StringValue"],
        )
        for m in dead
    }
    assert reasons == {
        '{"matchId": "seven"': (
            "invalid_message",
            "body is not valid JSON (EOF while parsing an object at line 1 column 19)",
        ),
        '{"matchId": 999999}': ("match_not_found", "match 999999 does not exist"),
        json.dumps({"matchId": no_scores}): (
            "missing_scores",
            f"match {no_scores} is completed without both scores (home null, away null)",
        ),
    }


def test_ids_a_node_producer_sends_as_strings_compute_points_and_a_misspelled_one_dead_letters(
    points_env: TemplateQueues, db: psycopg.Connection
) -> None:
    # Given matches 42 and 43 completed (match 43 at score version 1)
    season = create_season(db, competitions=1, competitors_per_competition=8)
    assert {42, 43} <= set(season.match_ids)
    versions = complete_matches(db, [42, 43], random.Random(42))
    # ...and the bodies a Node.js scoring Lambda sends: node-postgres reads bigint columns
    # as strings, so the ids arrive as decimal strings, and one arrives zero-padded
    bodies = [
        '{"matchId": "42"}',
        f'{{"matchId": 43, "scoreVersion": "{versions[43]}"}}',
        '{"matchId": "042"}',
    ]
    points_env.send("PointsQueue", bodies)
    messages = receive_batch(points_env, 3)

    # When CalculatePointsFunction processes the batch
    failed = invoke_batch(points_env, messages)

    # Then nothing is left to retry, and matches 42 and 43 have their points
    assert failed == set()
    assert points_env.depth("PointsQueue") == {"visible": 0, "in_flight": 0, "delayed": 0}
    assert {row[0] for row in actual_match_points(db)} == {42, 43}
    assert actual_match_points(db) == expected_match_points(db)
    # ...and "042", which could be read as another number, is in the dead-letter queue
    # with a reason that names matchId
    [dead] = points_env.drain_all("PointsDeadLetterQueue")
    assert dead["Body"] == '{"matchId": "042"}'
    attributes = dead["MessageAttributes"]
    assert attributes["matchstats.errorKind"]["StringValue"] == "invalid_message"
    assert attributes["matchstats.reason"]["StringValue"] == (
        "matchId: must be a positive integer or its decimal string without sign, spaces or"
        " leading zeros"
    )


def test_eight_large_invalid_bodies_are_all_dead_lettered_on_the_first_receive(
    points_env: TemplateQueues,
) -> None:
    # Given eight non-JSON bodies of 150,000 bytes (1.2 MB together, over SQS's 1 MiB a
    # SendMessageBatch request) received as one batch
    bodies = [letter * 150_000 for letter in "ABCDEFGH"]
    points_env.send("PointsQueue", bodies)
    messages = receive_batch(points_env, 8)

    # When the batch is processed
    failed = invoke_batch(points_env, messages)

    # Then nothing is left to retry, nothing is left in PointsQueue ...
    assert failed == set()
    assert points_env.depth("PointsQueue") == {"visible": 0, "in_flight": 0, "delayed": 0}
    # ...and all eight are in the dead-letter queue, each with its kind and reason
    dead = points_env.drain_all("PointsDeadLetterQueue")
    assert sorted(m["Body"] for m in dead) == sorted(bodies)
    assert {
        (
            m["MessageAttributes"]["matchstats.errorKind"]["StringValue"],
            m["MessageAttributes"]["matchstats.reason"]["StringValue"],
        )
        for m in dead
    } == {("invalid_message", "body is not valid JSON (expected value at line 1 column 1)")}


def test_a_message_too_large_to_copy_with_any_reason_is_left_to_redrive_and_stays_findable(
    points_env: TemplateQueues, db: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    # Given the function with the real database and an SQS that enforces SQS's real size
    # limits, attributes counted (moto counts bodies only)
    queues = InMemoryQueues()
    deps = replace(app.dependencies(), queues=queues)
    # ...and a batch of two non-JSON bodies: one 50 bytes under SQS's 1 MiB, which leaves
    # no room for the reason's attributes, and a small one
    event = sqs_event(["X" * (MAX_SQS_MESSAGE_BYTES - 50), "not json"])
    too_large, small = (record["messageId"] for record in event["Records"])

    # When the batch is processed
    response = app.lambda_handler(event, context(), deps=deps)

    # Then the small one is dead-lettered with its reason, and the large one is not ...
    dead = [message for url, message in queues.sent if url == deps.settings.dead_letter_queue_url]
    assert [message.body for message in dead] == ["not json"]
    # ...but reported failed and made visible again at once, without the 5 s backoff, so
    # that SQS redrive moves it after its third receive
    assert response == {"batchItemFailures": [{"itemIdentifier": too_large}]}
    assert [(url, ticket.visibility_timeout_s) for url, ticket in queues.retries] == [
        (points_env.urls["PointsQueue"], 0)
    ]
    # ...and its reason is findable by its message id, in job_history ...
    reason = "body is not valid JSON (expected value at line 1 column 1)"
    assert db.execute(
        "SELECT status, error FROM job_history WHERE job_id = %s", (too_large,)
    ).fetchall() == [("failed", reason)]
    # ...and in a log line that says what happened to it
    (line,) = [r for r in caplog.records if getattr(r, "message_id", None) == too_large]
    assert "left to SQS redrive" in line.getMessage()
    assert (getattr(line, "error_kind", None), getattr(line, "reason", None)) == (
        "invalid_message",
        reason,
    )
    assert small not in {r["itemIdentifier"] for r in response["batchItemFailures"]}


def test_a_message_left_to_redrive_reaches_the_dead_letter_queue_after_three_quick_receives(
    points_env: TemplateQueues, db: psycopg.Connection
) -> None:
    # Given a non-JSON body too large to dead-letter with any reason, on PointsQueue
    body = "X" * (MAX_SQS_MESSAGE_BYTES - 50)
    points_env.send("PointsQueue", [body])
    receives: list[float] = []

    def recording_handler(event: dict[str, Any], ctx: LambdaContext) -> Any:
        receives.append(time.monotonic())
        return app.lambda_handler(event, ctx)

    # When the function consumes the queue until the message has left it
    with mapping(points_env, recording_handler, concurrency=1):
        deadline = time.monotonic() + 30
        while points_env.depth("PointsDeadLetterQueue")["visible"] < 1:
            assert time.monotonic() < deadline, f"not dead-lettered; receives {receives}"
            time.sleep(0.2)

    # Then SQS redrive moved it to the dead-letter queue after three receives, each
    # retried at once (a permanent failure waits for no backoff)
    (dead,) = points_env.drain_all("PointsDeadLetterQueue")
    assert dead["Body"] == body
    assert len(receives) == 3
    assert receives[-1] - receives[0] < 5
    # ...and its reason stays in job_history under its message id, once per receive
    reason = "body is not valid JSON (expected value at line 1 column 1)"
    assert db.execute(
        "SELECT status, attempts, error FROM job_history WHERE job_id = %s ORDER BY attempts",
        (dead["MessageId"],),
    ).fetchall() == [("failed", attempt, reason) for attempt in (1, 2, 3)]


# The function's database is replaced by one nobody listens on: no pooler to go through.
@direct_only
def test_database_unreachable_backs_off_5_then_10_seconds_then_dead_letters(
    points_env: TemplateQueues, db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a database nobody listens on, and three messages
    monkeypatch.setenv("DATABASE_URL", f"postgresql://postgres@127.0.0.1:{free_port()}/none")
    app.dependencies.cache_clear()
    points_env.send("PointsQueue", points_bodies(1, 2, 3))
    calls: list[tuple[float, list[str], dict[str, Any]]] = []

    def recording_handler(event: dict[str, Any], ctx: LambdaContext) -> dict[str, Any]:
        response = app.lambda_handler(event, ctx)
        counts = [r["attributes"]["ApproximateReceiveCount"] for r in event["Records"]]
        calls.append((time.monotonic(), counts, response))
        return response

    # When one worker consumes the queue until the dead-letter queue holds all three
    with mapping(points_env, recording_handler, concurrency=1):
        deadline = time.monotonic() + 40
        while points_env.depth("PointsDeadLetterQueue")["visible"] < 3:
            assert time.monotonic() < deadline, f"not dead-lettered in time; calls: {calls}"
            time.sleep(0.25)

    # Then every batch was reported failed, on receives 1, 2 and 3 ...
    assert [sorted(set(c[1])) for c in calls] == [["1"], ["2"], ["3"]]
    assert all(len(c[2]["batchItemFailures"]) == 3 for c in calls)
    # ...with the backoff of 5 s and then 10 s between them
    first_gap, second_gap = calls[1][0] - calls[0][0], calls[2][0] - calls[1][0]
    assert 5 <= first_gap < 8, first_gap
    assert 10 <= second_gap < 13, second_gap
    # ...and nothing reached the database or the refresh queue
    assert points_env.depth("RefreshQueue") == {"visible": 0, "in_flight": 0, "delayed": 0}
    assert actual_match_points(db) == set()


def test_a_statement_that_cannot_finish_in_the_remaining_time_writes_nothing(
    points_env: TemplateQueues, db: psycopg.Connection, database_url: str
) -> None:
    # Given two completed matches, one of them locked by another points transaction
    season = create_season(db, competitions=1, competitors_per_competition=4)
    locked, free = season.match_ids[:2]
    complete_matches(db, [locked, free], random.Random(3))
    with psycopg.connect(database_url) as blocker:
        blocker.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('matchstats.points:' || %s, 0))",
            (locked,),
        )
        # When a batch of both runs with only 7 s of the invocation left
        started = time.monotonic()
        response = app.lambda_handler(sqs_event(points_bodies(locked, free)), context(7))
        elapsed = time.monotonic() - started
        blocker.rollback()

    # Then it gave up before the deadline and reported both records for retry
    assert elapsed < 7 - 3, elapsed
    assert len(response["batchItemFailures"]) == 2
    # ...and wrote nothing half-way, not even the unlocked match
    assert actual_match_points(db) == set()
    failed = db.execute("SELECT error FROM job_history WHERE status = 'failed'").fetchall()
    assert len(failed) == 2
    assert all("lock" in error or "timeout" in error for (error,) in failed), failed


def test_one_delayed_refresh_message_per_batch_sent_after_commit(
    points_env: TemplateQueues, db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a refresh delay of 2 s and five completed matches
    monkeypatch.setenv("REFRESH_DELAY_SECONDS", "2")
    app.dependencies.cache_clear()
    season = create_season(db, competitions=1, competitors_per_competition=4)
    complete_matches(db, season.match_ids[:5], random.Random(4))

    # When one batch of the five is processed
    response = app.lambda_handler(sqs_event(points_bodies(*season.match_ids[:5])), context())

    # Then exactly one refresh message waits, delayed
    assert response == {"batchItemFailures": []}
    assert points_env.depth("RefreshQueue") == {"visible": 0, "in_flight": 0, "delayed": 1}
    time.sleep(2.5)
    (message,) = points_env.drain_all("RefreshQueue")
    body = json.loads(message["Body"])
    assert (body["scope"], body["reason"]) == ("all", "points")
    # ...and its requestedAt, a database clock reading, is later than every row it covers
    newest_row = db.execute("SELECT max(calculated_at) FROM match_points").fetchone()
    assert newest_row is not None
    assert db.execute(
        "SELECT %s::timestamptz > %s", (body["requestedAt"], newest_row[0])
    ).fetchone() == (True,)


def test_refresh_message_not_sent_fails_the_records_and_a_retry_sends_it(
    points_env: TemplateQueues, db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a refresh queue that cannot be reached, and two completed matches
    monkeypatch.setenv("REFRESH_QUEUE_URL", points_env.urls["RefreshQueue"] + "-missing")
    app.dependencies.cache_clear()
    season = create_season(db, competitions=1, competitors_per_competition=4)
    complete_matches(db, season.match_ids[:2], random.Random(5))
    event = sqs_event(points_bodies(*season.match_ids[:2]))

    # When the batch is processed
    first = app.lambda_handler(event, context())

    # Then both records fail (to be retried) although their points are committed
    assert len(first["batchItemFailures"]) == 2
    assert len(actual_match_points(db)) == 4

    # When the queue is back and the records are redelivered
    monkeypatch.setenv("REFRESH_QUEUE_URL", points_env.urls["RefreshQueue"])
    app.dependencies.cache_clear()
    second = app.lambda_handler(
        sqs_event(points_bodies(*season.match_ids[:2]), receive_count=2), context()
    )

    # Then they complete, the points are unchanged, and the refresh is requested
    assert second == {"batchItemFailures": []}
    assert actual_match_points(db) == expected_match_points(db)
    assert len(points_env.drain_all("RefreshQueue")) == 1


def test_job_history_keeps_the_last_100_completed_and_50_failed(
    points_env: TemplateQueues, db: psycopg.Connection
) -> None:
    # Given one completed match
    season = create_season(db, competitions=1, competitors_per_competition=4)
    match_id = season.match_ids[0]
    complete_matches(db, [match_id], random.Random(6))

    # When 15 batches of 8 good and 4 unknown-match messages are processed (120 and 60 runs)
    batches = []
    for _ in range(15):
        event = sqs_event(points_bodies(*([match_id] * 8), *range(900_001, 900_005)))
        batches.append({record["messageId"] for record in event["Records"]})
        assert app.lambda_handler(event, context()) == {"batchItemFailures": []}

    # Then exactly 100 completed and 50 failed runs remain ...
    counts = dict(db.execute("SELECT status, count(*) FROM job_history GROUP BY status").fetchall())
    assert counts == {"completed": 100, "failed": 50}
    # ...and they are the newest: all of the last batch, none of the first
    kept = {job_id for (job_id,) in db.execute("SELECT job_id FROM job_history").fetchall()}
    assert batches[-1] <= kept
    assert not batches[0] & kept


def test_the_sample_event_computes_points_through_the_handler(
    points_env: TemplateQueues, db: psycopg.Connection
) -> None:
    # Given matches 1 and 2 completed, as events/calculate-points.json expects
    season = create_season(db, competitions=1, competitors_per_competition=4)
    assert season.match_ids[:2] == [1, 2]
    complete_matches(db, [1, 2], random.Random(9))

    # When the sample event is invoked through the handler
    response = app.lambda_handler(load_event("calculate-points.json"), context())

    # Then both records complete and their points equal a recomputation
    assert response == {"batchItemFailures": []}
    assert actual_match_points(db) == expected_match_points(db)
    assert len(actual_match_points(db)) == 4


@pgbouncer_only
def test_sixty_single_message_batches_in_five_environments_behind_pgbouncer_all_complete(
    points_env: TemplateQueues, db: psycopg.Connection
) -> None:
    # Given 60 completed matches
    season = create_season(db, competitions=1, competitors_per_competition=9)
    match_ids = season.match_ids[:60]
    complete_matches(db, match_ids, random.Random(11))

    # When five warm execution environments (one connection each) process one
    # single-message batch per match, through PgBouncer in transaction mode, whose five
    # server connections their transactions take turns on
    def one_batch(match_id: int) -> dict[str, Any]:
        return app.lambda_handler(sqs_event(points_bodies(match_id)), context())  # type: ignore[no-any-return]

    with ThreadPoolExecutor(max_workers=5) as environments:
        responses = list(environments.map(one_batch, match_ids))

    # Then no batch failed (PgBouncer 1.18 keeps no prepared statement across them)
    errors = db.execute("SELECT error FROM job_history WHERE status = 'failed'").fetchall()
    failed = sum(1 for response in responses if response["batchItemFailures"])
    assert (failed, errors) == (0, []), f"{failed} of 60 batches failed: {errors[:3]}"
    # ...and every match has its points
    assert actual_match_points(db) == expected_match_points(db)
    assert len(actual_match_points(db)) == 120
