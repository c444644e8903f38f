"""The points logic (matchstats.points) branch by branch, without a database or a network:
the stores and SQS are the in-memory fakes of tests/fakes.py."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from matchstats.config import PointsSettings
from matchstats.errors import DatabaseUnavailableError
from matchstats.messages import RefreshReason, RefreshScope, parse_refresh_message
from matchstats.models import PointsOutcomeKind, ReceivedMessage
from matchstats.outcomes import Disposition
from matchstats.points import (
    MAX_LOCK_WAIT_MS,
    POST_COMMIT_RESERVE_MS,
    PointsBatchResult,
    PointsDependencies,
    calculate_points,
)
from matchstats.queues import ERROR_KIND_ATTRIBUTE, REASON_ATTRIBUTE
from testkit.events import received_messages
from tests.fakes import InMemoryJobStore, InMemoryPointsStore, InMemoryQueues

POINTS_QUEUE = "http://sqs.local/PointsQueue"
REFRESH_QUEUE = "http://sqs.local/RefreshQueue"
DEAD_LETTER_QUEUE = "http://sqs.local/PointsDeadLetterQueue"
SETTINGS = PointsSettings.from_env(
    {
        "DATABASE_URL": "postgresql://unused",
        "POINTS_QUEUE_URL": POINTS_QUEUE,
        "REFRESH_QUEUE_URL": REFRESH_QUEUE,
        "DEAD_LETTER_QUEUE_URL": DEAD_LETTER_QUEUE,
        "REFRESH_DELAY_SECONDS": "2",
    }
)


@dataclass
class World:
    store: InMemoryPointsStore = field(default_factory=InMemoryPointsStore)
    jobs: InMemoryJobStore = field(default_factory=InMemoryJobStore)
    queues: InMemoryQueues = field(default_factory=InMemoryQueues)

    def run(self, batch: list[ReceivedMessage], remaining_ms: int = 120_000) -> PointsBatchResult:
        deps = PointsDependencies(
            settings=SETTINGS, store=self.store, jobs=self.jobs, queues=self.queues
        )
        return calculate_points(batch, deps, remaining_ms=lambda: remaining_ms)

    def sent_to(self, url: str) -> list[str]:
        return [m.body for queue, m in self.queues.sent if queue == url]

    def backoffs(self) -> list[int]:
        return [t.visibility_timeout_s for url, t in self.queues.retries if url == POINTS_QUEUE]


def dispositions(result: PointsBatchResult) -> dict[str, Disposition]:
    return {message_id: r.disposition for message_id, r in result.records.items()}


def test_a_committed_batch_completes_and_asks_for_one_delayed_refresh() -> None:
    # Given two messages for completed matches, with 30 s of the invocation left
    world = World()

    # When the batch runs
    result = world.run(received_messages({"matchId": 1}, {"matchId": "2"}), remaining_ms=30_000)

    # Then both complete, as changed
    assert dispositions(result) == {"m0": Disposition.COMPLETED, "m1": Disposition.COMPLETED}
    assert result.matches_changed == 2
    # ...the store had the time left minus the reserve, and at most 10 s for locks
    [write] = world.store.writes
    assert write["statement_timeout_ms"] == 30_000 - POST_COMMIT_RESERVE_MS
    assert write["lock_timeout_ms"] == MAX_LOCK_WAIT_MS
    assert [job.subject for job in write["jobs"]] == ["match 1", "match 2"]
    # ...and one refresh request went out, delayed, stamped with the commit's clock
    [body] = world.sent_to(REFRESH_QUEUE)
    request = parse_refresh_message(body)
    assert (request.scope, request.reason) == (RefreshScope.ALL, RefreshReason.POINTS)
    assert request.requested_at == world.store.committed_at
    [(_, sent)] = world.queues.sent
    assert sent.delay_seconds == 2
    assert result.refresh_message_id is not None
    # ...nothing was retried, and the history was written by the batch's own statement
    assert world.queues.retries == []
    assert world.jobs.recorded == []


def test_too_little_time_left_starts_nothing_and_retries_the_batch() -> None:
    # Given only 5.5 s of the invocation left (under the 5 s reserve plus 1 s of SQL)
    world = World()

    # When the batch runs
    result = world.run(received_messages({"matchId": 1}, "not json"), remaining_ms=5_500)

    # Then nothing was written and both messages wait their 5 s backoff
    assert world.store.writes == []
    assert dispositions(result) == {"m0": Disposition.RETRY, "m1": Disposition.RETRY}
    assert world.backoffs() == [5, 5]
    # ...and the history says why, each run under its subject
    assert [(r.subject, r.status.value) for _, r in world.jobs.recorded] == [
        ("match 1", "failed"),
        ("match ?", "failed"),
    ]
    assert all("ms of the invocation left" in (r.error or "") for _, r in world.jobs.recorded)


def test_a_database_failure_retries_the_batch_with_the_backoff_of_each_receive() -> None:
    # Given a database that cannot be reached, and a batch on its second receive
    error = DatabaseUnavailableError("database unavailable: connection refused")
    world = World(store=InMemoryPointsStore(fail_with=error))

    # When the batch runs
    result = world.run(received_messages({"matchId": 1}, {"matchId": 2}, receive_count=2))

    # Then both are retried after 10 s, and no refresh was asked for
    assert set(dispositions(result).values()) == {Disposition.RETRY}
    assert world.backoffs() == [10, 10]
    assert world.sent_to(REFRESH_QUEUE) == []
    assert [r.error for _, r in world.jobs.recorded] == [str(error)] * 2


def test_the_last_allowed_receive_fails_without_waiting_so_sqs_dead_letters_it_now() -> None:
    world = World(store=InMemoryPointsStore(fail_with=DatabaseUnavailableError("down")))
    world.run(received_messages({"matchId": 1}, receive_count=3))
    assert world.backoffs() == [0]


def test_messages_that_can_never_succeed_go_to_the_dead_letter_queue_with_their_reason() -> None:
    # Given one good match, one unknown, one completed without scores, and one bad body
    outcomes = {2: PointsOutcomeKind.MATCH_NOT_FOUND, 3: PointsOutcomeKind.MISSING_SCORES}
    world = World(store=InMemoryPointsStore(outcomes))

    # When the batch runs
    result = world.run(received_messages({"matchId": 1}, {"matchId": 2}, {"matchId": 3}, "{"))

    # Then the three are dead-lettered at once, each with its kind, and not retried
    assert dispositions(result) == {
        "m0": Disposition.COMPLETED,
        "m1": Disposition.DEAD_LETTERED,
        "m2": Disposition.DEAD_LETTERED,
        "m3": Disposition.DEAD_LETTERED,
    }
    dead = [m for url, m in world.queues.sent if url == DEAD_LETTER_QUEUE]
    assert [(m.body, (m.attributes or {})[ERROR_KIND_ATTRIBUTE]) for m in dead] == [
        ('{"matchId": 2}', "match_not_found"),
        ('{"matchId": 3}', "missing_scores"),
        ("{", "invalid_message"),
    ]
    assert all((m.attributes or {})[REASON_ATTRIBUTE] for m in dead)
    assert world.queues.retries == []
    # ...and the good one still asked for its refresh
    assert len(world.sent_to(REFRESH_QUEUE)) == 1


def test_a_batch_of_nothing_but_poison_asks_for_no_refresh() -> None:
    world = World()
    result = world.run(received_messages("nope", {"matchId": 0}))
    assert set(dispositions(result).values()) == {Disposition.DEAD_LETTERED}
    assert world.sent_to(REFRESH_QUEUE) == []


def test_an_unreachable_dead_letter_queue_retries_the_poison_with_backoff() -> None:
    # Given a dead-letter queue that cannot be reached (the others can)
    world = World(queues=InMemoryQueues(unreachable=[DEAD_LETTER_QUEUE]))

    # When a batch with a poison message runs
    result = world.run(received_messages({"matchId": 1}, "poison"))

    # Then the poison is retried after 5 s, its reason kept in the error, and the good
    # message completed
    assert dispositions(result) == {"m0": Disposition.COMPLETED, "m1": Disposition.RETRY}
    error = result.records["m1"].error
    assert "invalid_message" in str(error)
    assert "dead-letter queue unreachable" in str(error)
    assert world.backoffs() == [5]


def test_a_poison_message_too_large_to_copy_is_left_to_sqs_redrive_at_once() -> None:
    # Given a poison body of more than SQS's 1 MiB with our reason attributes
    world = World()
    huge = "x" * 1_048_570

    # When the batch runs
    result = world.run(received_messages(huge))

    # Then it fails with visibility 0, so SQS moves it to the dead-letter queue now
    assert dispositions(result) == {"m0": Disposition.LEFT_TO_REDRIVE}
    assert world.backoffs() == [0]
    assert [url for url, _ in world.queues.sent] == []


def test_points_committed_but_no_refresh_request_retries_the_committed_messages() -> None:
    # Given a refresh queue that cannot be reached after the commit
    world = World(queues=InMemoryQueues(unreachable=[REFRESH_QUEUE]))

    # When the batch runs
    result = world.run(received_messages({"matchId": 1}, {"matchId": 2}, "bad"))

    # Then the committed two are retried (recomputing is a no-op; the retry asks again)
    assert dispositions(result) == {
        "m0": Disposition.RETRY,
        "m1": Disposition.RETRY,
        "m2": Disposition.DEAD_LETTERED,
    }
    assert world.backoffs() == [5, 5]
    assert result.refresh_message_id is None
    assert [r.subject for _, r in world.jobs.recorded] == ["match 1", "match 2"]


@pytest.mark.parametrize("remaining_ms", [5_500, 3_900])
def test_a_failure_with_no_time_left_for_history_still_settles_the_batch(
    remaining_ms: int, caplog: pytest.LogCaptureFixture
) -> None:
    # Given too little time for the history after the failure (less than 2 s once 2 s
    # are kept back)
    world = World()

    # When the batch cannot start
    result = world.run(received_messages({"matchId": 1}), remaining_ms=remaining_ms)

    # Then the message is retried; the history is written only when there is time
    assert dispositions(result) == {"m0": Disposition.RETRY}
    if remaining_ms - 2_000 < 2_000:
        assert world.jobs.budgets == []
        assert "no time left" in caplog.text
    else:
        assert world.jobs.budgets == [min(3_000, remaining_ms - 2_000)]


def test_history_that_cannot_be_written_changes_no_outcome(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a database down for the batch and for its history alike
    down = DatabaseUnavailableError("down")
    world = World(store=InMemoryPointsStore(fail_with=down), jobs=InMemoryJobStore(fail_with=down))

    # When the batch runs, Then it is retried, and the log says the history is missing
    result = world.run(received_messages({"matchId": 1}))
    assert dispositions(result) == {"m0": Disposition.RETRY}
    assert "jobs not recorded in job_history" in caplog.text
