"""The refresh pipeline against the real PostgreSQL and moto's SQS: coalesced concurrent
refreshes that never block readers and never leave a change unrefreshed."""

from __future__ import annotations

import json
import random
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any

import psycopg
import pytest

from devstack.esm import EventSourceMapping
from devstack.lambda_context import LambdaContext
from devstack.sqs import LocalSqs
from matchstats.db.connection import ConnectionProvider
from matchstats.db.points import PointsStore
from matchstats.db.refresh import RefreshStore
from matchstats.messages import RefreshMessage, RefreshReason, RefreshScope
from matchstats.models import PointsJob, ViewState
from matchstats.refresh import decide
from refresh_views import app
from scheduled_refresh import app as scheduled_refresh
from testkit.events import load_event, sqs_event
from testkit.oracle import (
    actual_competitor_stats,
    actual_standings,
    expected_competitor_stats,
    expected_standings,
    expected_table_order,
)
from testkit.seed import complete_matches, create_season
from tests.conftest import FunctionDatabase, truncate_all
from tests.fakes import BYTES_PER_MESSAGE as MAX_SQS_MESSAGE_BYTES
from tests.fakes import InMemoryQueues
from tests.template_queues import TemplateQueues, function_environment

VIEWS = ("competition_standings", "competitor_stats")


@pytest.fixture(scope="module")
def local_sqs_client() -> Iterator[Any]:
    with LocalSqs() as local:
        yield local.client()


@pytest.fixture
def refresh_env(
    monkeypatch: pytest.MonkeyPatch,
    local_sqs_client: Any,
    function_database: FunctionDatabase,
    db: psycopg.Connection,
) -> Iterator[TemplateQueues]:
    """RefreshViewsFunction's environment as template.yaml gives it, pointed at the local
    stack, its database reached directly or through PgBouncer (each test runs both ways);
    empty tables, refresh state and queues for each test."""
    truncate_all(db)
    db.execute("TRUNCATE refresh_log")
    db.execute(
        "UPDATE view_refresh_state"
        " SET last_started_at = NULL, last_finished_at = NULL, last_change_seq = NULL"
    )
    stack = TemplateQueues.fresh_queues(local_sqs_client)
    env = function_environment(
        stack, function_database.url, "RefreshViewsFunction", function_database.pooler
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    app.dependencies.cache_clear()
    yield stack
    app.dependencies.cache_clear()


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


def test_a_refresh_fills_both_views_equal_to_a_recomputation(
    refresh_env: TemplateQueues, db: psycopg.Connection, database_url: str
) -> None:
    # Given a played season whose views have never been refreshed
    play_season(db, database_url, competitions=2, competitors_per_competition=8)

    # When the API asks for a refresh of everything
    response = app.lambda_handler(sqs_event([request_body(db, RefreshReason.API)]), context())

    # Then both views were refreshed once and equal a recomputation from matches
    assert response == {"batchItemFailures": []}
    assert [refresh_count(db, view) for view in VIEWS] == [1, 1]
    assert actual_standings(db) == expected_standings(db)
    assert actual_competitor_stats(db) == expected_competitor_stats(db)
    # ...and competition_table ranks them at read time by the table's rules
    for competition_id in (1, 2):
        rows = db.execute(
            "SELECT rank, competitor_id FROM competition_table WHERE competition_id = %s",
            (competition_id,),
        ).fetchall()
        assert [tuple(r) for r in rows] == expected_table_order(db, competition_id)


def test_nothing_changed_is_skipped_unless_forced(
    refresh_env: TemplateQueues, db: psycopg.Connection, database_url: str
) -> None:
    # Given views refreshed after the last change
    play_season(db, database_url, competitions=1, competitors_per_competition=4)
    app.lambda_handler(sqs_event([request_body(db, RefreshReason.SCHEDULE)]), context())

    # When the schedule asks again, and then an operator forces one view
    app.lambda_handler(sqs_event([request_body(db, RefreshReason.SCHEDULE)]), context())
    forced = request_body(db, RefreshReason.MANUAL, RefreshScope.COMPETITOR_STATS, force=True)
    app.lambda_handler(sqs_event([forced]), context())

    # Then the unforced request refreshed nothing and the forced one refreshed its view only
    assert [refresh_count(db, view) for view in VIEWS] == [1, 2]
    history = db.execute(
        "SELECT status, count(*) FROM job_history WHERE job_type = 'refresh' GROUP BY status"
    ).fetchall()
    assert dict(history) == {"completed": 3}


def test_fifty_requests_during_a_refresh_lead_to_at_most_one_more(
    refresh_env: TemplateQueues, db: psycopg.Connection, database_url: str
) -> None:
    # Given a played season with fresh views
    match_ids = play_season(db, database_url, competitions=2, competitors_per_competition=10)
    app.lambda_handler(sqs_event([request_body(db, RefreshReason.SCHEDULE)]), context())
    before = {view: refresh_count(db, view) for view in VIEWS}
    # ...and a refresh of competition_standings that has started and is still running
    started, release = threading.Event(), threading.Event()
    store = RefreshStore(ConnectionProvider(lambda: database_url))
    running_request = RefreshMessage(
        reason=RefreshReason.MANUAL, requested_at=database_now(db), force=True
    )

    def slow_decide(state: ViewState) -> Any:
        started.set()
        release.wait(10)
        return decide(state, [running_request])

    running = threading.Thread(
        target=store.refresh_view,
        args=("competition_standings", slow_decide),
        kwargs={"statement_timeout_ms": 60_000, "lock_timeout_ms": 5_000},
    )
    running.start()
    assert started.wait(10)

    # When more points commit and 50 refresh requests arrive while it runs
    rest = [m for m in match_ids if m not in set(match_ids[: len(match_ids) * 3 // 4])]
    complete_matches(db, rest[:5], random.Random(8))
    compute_points(database_url, rest[:5])
    refresh_env.send("RefreshQueue", [request_body(db) for _ in range(50)])
    mapping = EventSourceMapping(
        refresh_env.sqs,
        refresh_env.urls["RefreshQueue"],
        refresh_env.arns["RefreshQueue"],
        app.lambda_handler,
        batch_size=10,
        maximum_concurrency=2,
        function_name="RefreshViewsFunction",
        timeout_s=120,
    )
    with mapping:
        time.sleep(1.0)
        release.set()
        running.join(30)
        mapping.drain(timeout_s=60)
        stats = mapping.stats

    # Then besides the running refresh, each view was refreshed at most once more
    after = {view: refresh_count(db, view) - before[view] for view in VIEWS}
    executed_after_running = after["competition_standings"] - 1
    print(
        f"\ncoalescing: 50 requests -> standings refreshed {executed_after_running} more time(s)"
        f" after the running one, competitor_stats {after['competitor_stats']} time(s);"
        f" {stats.batches} batches, {stats.records_failed} record retries"
    )
    assert executed_after_running <= 1
    assert after["competitor_stats"] <= 1
    # ...every request was covered or executed: all 50 completed, none dead-lettered
    completed = db.execute(
        "SELECT count(*) FROM job_history WHERE job_type = 'refresh' AND status = 'completed'"
        " AND subject LIKE '%%(points)'"
    ).fetchone()
    assert completed == (50,)
    assert refresh_env.depth("RefreshDeadLetterQueue")["visible"] == 0
    # ...and after quiescence both views equal a recomputation, the late points included
    assert actual_standings(db) == expected_standings(db)
    assert actual_competitor_stats(db) == expected_competitor_stats(db)


def test_readers_are_never_blocked_by_back_to_back_refreshes(
    refresh_env: TemplateQueues, db: psycopg.Connection, database_url: str
) -> None:
    # Given a populated competition table of four competitions of 40
    play_season(db, database_url, competitions=4, competitors_per_competition=40)
    app.lambda_handler(sqs_event([request_body(db, RefreshReason.SCHEDULE)]), context())
    stop = threading.Event()
    latencies: list[float] = []
    exclusive_locks: list[Any] = []

    def reader() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            while not stop.is_set():
                started = time.perf_counter()
                rows = conn.execute(
                    "SELECT * FROM competition_table WHERE competition_id = 2"
                ).fetchall()
                latencies.append(time.perf_counter() - started)
                assert len(rows) == 40

    def lock_watcher() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            while not stop.is_set():
                exclusive_locks.extend(
                    conn.execute(
                        "SELECT c.relname, l.mode FROM pg_locks l"
                        " JOIN pg_class c ON c.oid = l.relation"
                        " WHERE c.relname = ANY(%s) AND l.mode = 'AccessExclusiveLock'",
                        (list(VIEWS),),
                    ).fetchall()
                )
                time.sleep(0.002)

    threads = [threading.Thread(target=reader), threading.Thread(target=lock_watcher)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    idle = len(latencies)

    # When ten forced refreshes of both views run back to back
    for _ in range(10):
        body = request_body(db, RefreshReason.MANUAL, force=True)
        assert app.lambda_handler(sqs_event([body]), context()) == {"batchItemFailures": []}
    stop.set()
    for thread in threads:
        thread.join(10)

    # Then no read waited 100 ms, and no ACCESS EXCLUSIVE lock was taken on a view
    during = latencies[idle:]
    print(
        f"\nreaders: {len(during)} reads during refreshes,"
        f" p50 {statistics.median(during) * 1000:.2f} ms, max {max(during) * 1000:.2f} ms"
    )
    assert len(during) > 10
    assert max(during) < 0.100
    assert exclusive_locks == []
    assert [refresh_count(db, view) for view in VIEWS] == [11, 11]


def test_every_refresh_is_announced_to_listeners(
    refresh_env: TemplateQueues, db: psycopg.Connection, database_url: str
) -> None:
    # Given an application cache listening on matchstats_refreshed
    play_season(db, database_url, competitions=1, competitors_per_competition=4)
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN matchstats_refreshed")

        # When one refresh of everything runs
        app.lambda_handler(sqs_event([request_body(db, RefreshReason.API)]), context())

        # Then the listener hears each view's name once
        heard = [n.payload for n in listener.notifies(timeout=2, stop_after=2)]
    assert sorted(heard) == sorted(VIEWS)


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


def test_the_sample_event_refreshes_through_the_handler(
    refresh_env: TemplateQueues, db: psycopg.Connection, database_url: str
) -> None:
    # Given a played season and the sample event of events/ (a points and a schedule request)
    play_season(db, database_url, competitions=1, competitors_per_competition=4)
    event = load_event("refresh-views.json")

    # When it is invoked through the handler
    response = app.lambda_handler(event, context())

    # Then both records complete and both views now hold the recomputation
    assert response == {"batchItemFailures": []}
    assert actual_standings(db) == expected_standings(db)
    assert actual_competitor_stats(db) == expected_competitor_stats(db)


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
