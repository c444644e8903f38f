"""The refresh pipeline against the real PostgreSQL and moto's SQS: views equal to a
recomputation, coalesced concurrent refreshes that never block readers, each refresh
announced. Its failures: test_refresh_failures.py."""

from __future__ import annotations

import random
import statistics
import threading
import time
from typing import Any

import psycopg

from devstack.esm import EventSourceMapping
from matchstats.db.connection import ConnectionProvider
from matchstats.db.refresh import RefreshStore
from matchstats.messages import RefreshMessage, RefreshReason, RefreshScope
from matchstats.models import ViewState
from matchstats.refresh import decide
from refresh_views import app
from testkit.events import load_event, sqs_event
from testkit.oracle import (
    actual_competitor_stats,
    actual_standings,
    expected_competitor_stats,
    expected_standings,
    expected_table_order,
)
from testkit.seed import complete_matches
from tests.integration.refresh_steps import (
    VIEWS,
    compute_points,
    context,
    database_now,
    play_season,
    refresh_count,
    request_body,
)
from tests.template_queues import TemplateQueues


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
