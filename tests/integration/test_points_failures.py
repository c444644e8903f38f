"""The points pipeline's failures against the real PostgreSQL and moto's SQS: poison records
dead-lettered with their reasons while the rest commit, messages too large to copy with a
reason left to SQS redrive, an unreachable database backed off, a statement out of time
writing nothing, and a refresh request that could not be sent retried."""

from __future__ import annotations

import json
import random
import time
from dataclasses import replace
from typing import Any

import psycopg
import pytest

from calculate_points import app
from devstack.lambda_context import LambdaContext
from devstack.processes import free_port
from testkit.events import points_bodies, sqs_event
from testkit.oracle import actual_match_points, expected_match_points
from testkit.seed import complete_matches, create_season
from tests.conftest import direct_only
from tests.fakes import BYTES_PER_MESSAGE as MAX_SQS_MESSAGE_BYTES
from tests.fakes import InMemoryQueues
from tests.integration.points_steps import (
    context,
    invoke_batch,
    mapping,
    receive_batch,
)
from tests.template_queues import TemplateQueues


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


def test_a_body_that_names_its_match_twice_is_dead_lettered_and_scores_neither(
    points_env: TemplateQueues, db: psycopg.Connection
) -> None:
    # Given two completed matches, and a body naming both under one key (which one it
    # means depends on the reader: pydantic and json.loads keep the last)
    season = create_season(db, competitions=1, competitors_per_competition=4)
    first, second = season.match_ids[:2]
    complete_matches(db, [first, second], random.Random(7))
    body = f'{{"matchId": {first}, "matchId": {second}}}'
    points_env.send("PointsQueue", [body])
    messages = receive_batch(points_env, 1)

    # When it is processed
    failed = invoke_batch(points_env, messages)

    # Then it is not retried, no points are written for either match ...
    assert failed == set()
    assert actual_match_points(db) == set()
    # ...and it waits in the dead-letter queue as an invalid message naming the key
    [dead] = points_env.drain_all("PointsDeadLetterQueue")
    assert dead["Body"] == body
    assert (
        dead["MessageAttributes"]["matchstats.errorKind"]["StringValue"],
        dead["MessageAttributes"]["matchstats.reason"]["StringValue"],
    ) == ("invalid_message", 'body: duplicate key "matchId" (a key may appear once per object)')


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
