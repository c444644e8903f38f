"""The refresh logic (matchstats.refresh) branch by branch, without a database or a network:
the stores and SQS are the in-memory fakes of tests/fakes.py. The decision rules alone
(covered, unchanged, forced) are in test_refresh_decision.py."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from matchstats.config import RefreshSettings
from matchstats.errors import DatabaseUnavailableError, DeadlineError
from matchstats.messages import REFRESHABLE_VIEWS
from matchstats.models import ReceivedMessage, RefreshOutcome, ViewState
from matchstats.outcomes import Disposition
from matchstats.refresh import (
    LOCK_WAIT_MS,
    RESERVE_MS,
    RefreshBatchResult,
    RefreshDependencies,
    ViewDecision,
    refresh_views,
)
from testkit.events import received_messages
from tests.fakes import InMemoryJobStore, InMemoryQueues, InMemoryRefreshStore

REFRESH_QUEUE = "http://sqs.local/RefreshQueue"
DEAD_LETTER_QUEUE = "http://sqs.local/RefreshDeadLetterQueue"
SETTINGS = RefreshSettings.from_env(
    {
        "DATABASE_URL": "postgresql://unused",
        "REFRESH_QUEUE_URL": REFRESH_QUEUE,
        "DEAD_LETTER_QUEUE_URL": DEAD_LETTER_QUEUE,
    }
)
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
STANDINGS, STATS = REFRESHABLE_VIEWS


def view_state(
    view: str,
    *,
    last_started: datetime | None = T0,
    last_seq: int | None = 5,
    seq: int = 6,
    populated: bool = True,
) -> ViewState:
    return ViewState(
        view_name=view,
        last_started_at=last_started,
        # The change log is empty exactly when the view includes the latest change.
        changes_pending=last_seq != seq,
        populated=populated,
        now=T0 + timedelta(seconds=10),
    )


def request(
    scope: str = "all",
    reason: str = "points",
    at: datetime = T0 + timedelta(seconds=1),
    force: bool = False,
) -> str:
    return json.dumps(
        {"scope": scope, "reason": reason, "requestedAt": at.isoformat(), "force": force}
    )


@dataclass
class World:
    store: InMemoryRefreshStore = field(
        default_factory=lambda: InMemoryRefreshStore({v: view_state(v) for v in REFRESHABLE_VIEWS})
    )
    jobs: InMemoryJobStore = field(default_factory=InMemoryJobStore)
    queues: InMemoryQueues = field(default_factory=InMemoryQueues)

    def run(self, batch: list[ReceivedMessage], remaining_ms: int = 120_000) -> RefreshBatchResult:
        deps = RefreshDependencies(
            settings=SETTINGS, store=self.store, jobs=self.jobs, queues=self.queues
        )
        return refresh_views(batch, deps, remaining_ms=lambda: remaining_ms)

    def backoffs(self) -> list[int]:
        return [t.visibility_timeout_s for url, t in self.queues.retries if url == REFRESH_QUEUE]

    def history(self) -> list[tuple[str, str, str | None]]:
        return [
            (r.subject, r.status.value, r.outcome.value if r.outcome else None)
            for _, r in self.jobs.recorded
        ]


def decisions(result: RefreshBatchResult) -> dict[str, ViewDecision]:
    return {view.view_name: view.decision for view in result.views}


def test_requests_with_changes_refresh_each_view_once_and_say_how_stale_it_was() -> None:
    # Given three points requests for every view, made after the last refreshes started
    world = World()
    at = T0 + timedelta(seconds=1)

    # When they arrive in one batch with 60 s left
    result = world.run(received_messages(request(at=at), request(at=at), request(at=at)), 60_000)

    # Then each view is refreshed once, for all three requests
    assert decisions(result) == {STANDINGS: ViewDecision.EXECUTED, STATS: ViewDecision.EXECUTED}
    assert [(r.view_name, r.requests_covered, r.concurrently) for r in world.store.refreshed] == [
        (STANDINGS, 3, True),
        (STATS, 3, True),
    ]
    # ...within the time left minus the reserve, waiting at most 5 s for the view's lock
    assert {c["statement_timeout_ms"] for c in world.store.calls} == {60_000 - RESERVE_MS}
    assert {c["lock_timeout_ms"] for c in world.store.calls} == {LOCK_WAIT_MS}
    # ...freshness runs from the request's commit to the refresh's end (9 s + 40 ms)
    assert {view.freshness_ms for view in result.views} == {9_040}
    # ...and each request completed, its history saying its refresh was executed
    assert set(r.disposition for r in result.records.values()) == {Disposition.COMPLETED}
    assert world.history() == [("refresh all (points)", "completed", "executed")] * 3


def test_requests_made_before_the_last_refresh_started_are_covered() -> None:
    world = World()
    result = world.run(received_messages(request(at=T0 - timedelta(seconds=1))))
    assert decisions(result) == {STANDINGS: ViewDecision.COVERED, STATS: ViewDecision.COVERED}
    assert world.store.refreshed == []
    assert world.history() == [("refresh all (points)", "completed", "covered")]


def test_a_scheduled_request_with_nothing_changed_is_unchanged_unless_forced() -> None:
    # Given views that include every change (last_change_seq == current)
    unchanged = {v: view_state(v, last_seq=6, seq=6) for v in REFRESHABLE_VIEWS}

    # When the schedule asks, Then nothing is refreshed
    world = World(store=InMemoryRefreshStore(unchanged))
    result = world.run(received_messages(request(reason="schedule")))
    assert set(decisions(result).values()) == {ViewDecision.UNCHANGED}
    assert world.history() == [("refresh all (schedule)", "completed", "unchanged")]

    # When an operator forces it, Then both are refreshed all the same
    forced = World(store=InMemoryRefreshStore(unchanged))
    result = forced.run(received_messages(request(reason="manual", force=True)))
    assert set(decisions(result).values()) == {ViewDecision.EXECUTED}
    assert all(r.forced for r in forced.store.refreshed)


def test_an_unpopulated_view_is_filled_with_a_plain_refresh_once() -> None:
    states = {v: view_state(v, last_started=None, populated=False) for v in REFRESHABLE_VIEWS}
    world = World(store=InMemoryRefreshStore(states))
    world.run(received_messages(request(scope=STATS, reason="api")))
    assert [(r.view_name, r.concurrently) for r in world.store.refreshed] == [(STATS, False)]


def test_too_little_time_left_refreshes_nothing_and_retries_the_requests() -> None:
    # Given 5.5 s left: under the 5 s reserve plus 1 s of SQL
    world = World()

    # When a batch arrives
    result = world.run(received_messages(request(), request(scope=STATS)), remaining_ms=5_500)

    # Then no view was touched, both views failed on the deadline, both requests wait 5 s
    assert world.store.calls == []
    assert set(decisions(result).values()) == {ViewDecision.FAILED}
    assert all(isinstance(r.error, DeadlineError) for r in result.records.values())
    assert world.backoffs() == [5, 5]


def test_a_view_that_fails_retries_only_the_requests_that_name_it() -> None:
    # Given competitor_stats' refresh failing (its lock timed out), standings working
    error = DatabaseUnavailableError("database unavailable [55P03]: lock timeout")
    store = InMemoryRefreshStore(
        {v: view_state(v) for v in REFRESHABLE_VIEWS}, fail_with={STATS: error}
    )
    world = World(store=store)

    # When a request for all views and one for the standings only arrive (second receive)
    result = world.run(received_messages(request(), request(scope=STANDINGS), receive_count=2))

    # Then the standings were refreshed; the request naming competitor_stats is retried
    assert decisions(result) == {STANDINGS: ViewDecision.EXECUTED, STATS: ViewDecision.FAILED}
    assert result.records["m0"].disposition is Disposition.RETRY
    assert result.records["m0"].error is error
    assert result.records["m1"].disposition is Disposition.COMPLETED
    assert world.backoffs() == [10]
    # ...and the history has the completed one and the failed one, with its error
    assert sorted((r.status.value, r.error) for _, r in world.jobs.recorded) == [
        ("completed", None),
        ("failed", str(error)),
    ]


def test_an_invalid_request_is_dead_lettered_and_the_others_still_refresh() -> None:
    world = World()
    result = world.run(received_messages(request(), json.dumps({"scope": "everything"})))
    assert result.records["m1"].disposition is Disposition.DEAD_LETTERED
    assert result.records["m0"].disposition is Disposition.COMPLETED
    dead = [m for url, m in world.queues.sent if url == DEAD_LETTER_QUEUE]
    assert [m.body for m in dead] == ['{"scope": "everything"}']
    assert ("refresh ?", "failed", None) in world.history()


def test_an_invalid_request_is_retried_while_the_dead_letter_queue_is_unreachable() -> None:
    world = World(queues=InMemoryQueues(unreachable=[DEAD_LETTER_QUEUE]))
    result = world.run(received_messages("not json"))
    assert result.records["m0"].disposition is Disposition.RETRY
    assert "dead-letter queue unreachable" in str(result.records["m0"].error)
    assert world.backoffs() == [5]


def test_a_request_too_large_to_dead_letter_is_left_to_sqs_redrive() -> None:
    world = World()
    result = world.run(received_messages("y" * 1_048_570))
    assert result.records["m0"].disposition is Disposition.LEFT_TO_REDRIVE
    assert world.backoffs() == [0]
    assert [(s, st) for s, st, _ in world.history()] == [("refresh ?", "failed")]


def test_a_request_covered_for_one_view_and_refreshed_for_the_other_counts_as_executed() -> None:
    # Given competitor_stats refreshed after the request, the standings not
    states = {
        STANDINGS: view_state(STANDINGS),
        STATS: view_state(STATS, last_started=T0 + timedelta(seconds=5)),
    }
    world = World(store=InMemoryRefreshStore(states))

    # When the request arrives
    result = world.run(received_messages(request()))

    # Then one view was refreshed, the other covered, and the request executed
    assert decisions(result) == {STANDINGS: ViewDecision.EXECUTED, STATS: ViewDecision.COVERED}
    [(_, record)] = world.jobs.recorded
    assert record.outcome is RefreshOutcome.EXECUTED
    assert record.view_outcomes == {
        STANDINGS: RefreshOutcome.EXECUTED,
        STATS: RefreshOutcome.COVERED,
    }
