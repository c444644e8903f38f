"""The points pipeline against the real PostgreSQL and moto's SQS: a scoring message
becomes correct match_points under duplicates, reordering, corrections and voids, ids sent as
strings, and concurrent environments behind PgBouncer; one delayed refresh request follows
each batch, and the job history keeps its newest runs. Its failures: test_points_failures.py."""

from __future__ import annotations

import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from calculate_points import app
from matchstats.producer import enqueue_points_calculations
from testkit.events import load_event, points_bodies, sqs_event
from testkit.oracle import actual_match_points, expected_match_points
from testkit.seed import complete_matches, correct_score, create_season, void_match
from tests.conftest import pgbouncer_only
from tests.integration.points_steps import (
    context,
    invoke_batch,
    mapping,
    receive_batch,
)
from tests.template_queues import TemplateQueues


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
