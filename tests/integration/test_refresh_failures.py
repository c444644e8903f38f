"""The refresh pipeline's failures against the real PostgreSQL and moto's SQS: invalid
requests dead-lettered with their reasons (or left to redrive when too large), points
whose refresh request was lost caught up by the schedule, and only the failed record of
a batch redelivered."""

from __future__ import annotations

import json
import random
import time
from dataclasses import replace
from typing import Any

import psycopg
import pytest

from devstack.esm import EventSourceMapping
from devstack.lambda_context import LambdaContext
from matchstats.messages import RefreshReason, RefreshScope
from refresh_views import app
from scheduled_refresh import app as scheduled_refresh
from testkit.events import load_event, sqs_event
from testkit.oracle import (
    actual_competitor_stats,
    actual_standings,
    expected_competitor_stats,
    expected_standings,
)
from testkit.seed import complete_matches
from tests.fakes import BYTES_PER_MESSAGE as MAX_SQS_MESSAGE_BYTES
from tests.fakes import InMemoryQueues
from tests.integration.refresh_steps import (
    compute_points,
    context,
    play_season,
    request_body,
)
from tests.template_queues import TemplateQueues, function_environment


def test_an_invalid_refresh_request_is_dead_lettered_with_its_reason(
    refresh_env: TemplateQueues, db: psycopg.Connection
) -> None:
    # Given a refresh request with an unknown scope, beside a good one
    bad = json.dumps(
        {"scope": "everything", "reason": "api", "requestedAt": "2026-11-28T12:00:00Z"}
    )
    event = sqs_event([bad, request_body(db, RefreshReason.API)])

    # When the batch is processed
    response = app.lambda_handler(event, context())

    # Then nothing is retried, and the bad one is in the dead-letter queue with its reason
    assert response == {"batchItemFailures": []}
    (dead,) = refresh_env.drain_all("RefreshDeadLetterQueue")
    assert dead["Body"] == bad
    reason = dead["MessageAttributes"]["matchstats.reason"]["StringValue"]
    assert reason.startswith("scope: Input should be 'all', 'competition_standings'")


def test_large_invalid_requests_are_dead_lettered_or_left_to_redrive_with_their_reasons(
    refresh_env: TemplateQueues, db: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    # Given the function with the real database and an SQS that enforces SQS's real size
    # limits, attributes counted (moto counts bodies only)
    queues = InMemoryQueues()
    deps = replace(app.dependencies(), queues=queues)
    # ...and one batch of eight non-JSON requests of 150,000 bytes (1.2 MB together) and
    # one 50 bytes under SQS's 1 MiB, which leaves no room for the reason's attributes
    large = [letter * 150_000 for letter in "ABCDEFGH"]
    event = sqs_event([*large, "X" * (MAX_SQS_MESSAGE_BYTES - 50)], template="refresh-views.json")
    ids = [record["messageId"] for record in event["Records"]]

    # When the batch is processed
    response = app.lambda_handler(event, context(), deps=deps)

    # Then the eight are in the dead-letter queue with their reason, on this first receive
    reason = "body is not valid JSON (expected value at line 1 column 1)"
    dead = [message for url, message in queues.sent if url == deps.settings.dead_letter_queue_url]
    assert sorted(message.body for message in dead) == large
    assert {message.attributes and message.attributes["matchstats.reason"] for message in dead} == {
        reason
    }
    # ...the ninth is failed and visible again at once, for SQS redrive to move
    assert response == {"batchItemFailures": [{"itemIdentifier": ids[8]}]}
    assert [(url, ticket.visibility_timeout_s) for url, ticket in queues.retries] == [
        (refresh_env.urls["RefreshQueue"], 0)
    ]
    # ...and every one's reason is in job_history under its message id
    rows = db.execute(
        "SELECT job_id, status, error FROM job_history WHERE job_type = 'refresh'"
    ).fetchall()
    assert sorted(rows) == sorted((job_id, "failed", reason) for job_id in ids)
    # ...and the ninth's in a log line that says it was left to redrive
    (line,) = [r for r in caplog.records if getattr(r, "message_id", None) == ids[8]]
    assert "left to SQS redrive" in line.getMessage()
    assert getattr(line, "reason", None) == reason


def test_points_whose_refresh_request_was_lost_are_caught_up_by_the_schedule(
    refresh_env: TemplateQueues,
    db: psycopg.Connection,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given fresh views, then points committed whose refresh request never reached the queue
    match_ids = play_season(db, database_url, competitions=1, competitors_per_competition=6)
    app.lambda_handler(sqs_event([request_body(db, RefreshReason.SCHEDULE)]), context())
    late = [
        m
        for m in match_ids
        if m not in {r for (r,) in db.execute("SELECT match_id FROM match_points")}
    ]
    complete_matches(db, late, random.Random(10))
    compute_points(database_url, late)
    assert actual_standings(db) != expected_standings(db)

    # When the schedule fires (the real function, through its sample event) ...
    for name, value in function_environment(
        refresh_env, database_url, "ScheduledRefreshFunction"
    ).items():
        monkeypatch.setenv(name, value)
    scheduled_refresh.dependencies.cache_clear()
    scheduled_refresh.lambda_handler(
        load_event("scheduled-refresh.json"),
        LambdaContext.for_invocation("ScheduledRefreshFunction", 30),
    )
    # ...and the refresher consumes what it queued
    (request,) = refresh_env.drain_all("RefreshQueue")
    assert json.loads(request["Body"])["reason"] == "schedule"
    response = app.lambda_handler(sqs_event([request["Body"]]), context())

    # Then the views have caught up with every committed point
    assert response == {"batchItemFailures": []}
    assert actual_standings(db) == expected_standings(db)
    assert actual_competitor_stats(db) == expected_competitor_stats(db)


def test_through_the_event_source_mapping_only_the_failed_record_is_redelivered(
    refresh_env: TemplateQueues, db: psycopg.Connection, database_url: str
) -> None:
    # Given a played season, and another refresher holding competition_standings' lock
    play_season(db, database_url, competitions=1, competitors_per_competition=4)
    calls: list[tuple[list[str], dict[str, Any]]] = []

    def recording_handler(event: dict[str, Any], ctx: LambdaContext) -> Any:
        response = app.lambda_handler(event, ctx)
        calls.append(([json.loads(r["body"])["scope"] for r in event["Records"]], response))
        return response

    standings = request_body(db, RefreshReason.API, RefreshScope.COMPETITION_STANDINGS)
    stats = request_body(db, RefreshReason.API, RefreshScope.COMPETITOR_STATS)
    with psycopg.connect(database_url) as holder:
        holder.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('matchstats.refresh:' || %s, 0))",
            ("competition_standings",),
        )
        # When one batch asks for each view
        refresh_env.send("RefreshQueue", [standings, stats])
        mapping = EventSourceMapping(
            refresh_env.sqs,
            refresh_env.urls["RefreshQueue"],
            refresh_env.arns["RefreshQueue"],
            recording_handler,
            batch_size=10,
            batching_window_s=1,
            maximum_concurrency=2,
            function_name="RefreshViewsFunction",
            timeout_s=120,
        )
        with mapping:
            deadline = time.monotonic() + 15
            while not calls and time.monotonic() < deadline:
                time.sleep(0.1)
            holder.rollback()  # the other refresher finishes
            mapping.drain(timeout_s=30)
            stats_after = mapping.stats

    # Then the first batch failed only the standings request, which came back and succeeded
    first_scopes, first_response = calls[0]
    assert sorted(first_scopes) == ["competition_standings", "competitor_stats"]
    assert len(first_response["batchItemFailures"]) == 1
    assert [scopes for scopes, _ in calls[1:]] == [["competition_standings"]]
    assert calls[-1][1] == {"batchItemFailures": []}
    assert (stats_after.records_succeeded, stats_after.records_failed) == (2, 1)
    assert actual_standings(db) == expected_standings(db)
