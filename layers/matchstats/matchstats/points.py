"""Points logic: a batch of points messages becomes match_points, dead letters for
what can never succeed, retries for what may, and one refresh request."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from matchstats.config import PointsSettings
from matchstats.consumer import (
    dead_letter,
    history_budget_ms,
    record_failures,
    release_for_redrive,
    retry_unfinished,
    schedule_backoff,
)
from matchstats.db.jobs import JobStore
from matchstats.db.points import PointsStore
from matchstats.errors import (
    DeadlineError,
    InvalidMessageError,
    MatchNotFoundError,
    MissingScoresError,
    PermanentError,
    TransientError,
)
from matchstats.messages import RefreshReason, RefreshScope, parse_points_message
from matchstats.models import PointsBatchWrite, PointsJob, PointsOutcomeKind, ReceivedMessage
from matchstats.observability import logger
from matchstats.outcomes import BatchResult, Disposition, RecordResult
from matchstats.queues import Queues
from matchstats.refresh_requests import enqueue_refresh

# Time kept back from the statement timeout for what follows the commit (dead letters,
# the refresh message, visibility changes), so the Lambda is never killed mid-send.
POST_COMMIT_RESERVE_MS = 5_000
# Below this there is no point starting the transaction at all.
MIN_STATEMENT_BUDGET_MS = 1_000
MAX_LOCK_WAIT_MS = 10_000

_PERMANENT_BY_OUTCOME: dict[PointsOutcomeKind, type[PermanentError]] = {
    PointsOutcomeKind.INVALID_MESSAGE: InvalidMessageError,
    PointsOutcomeKind.MATCH_NOT_FOUND: MatchNotFoundError,
    PointsOutcomeKind.MISSING_SCORES: MissingScoresError,
}


@dataclass
class PointsBatchResult(BatchResult):
    refresh_message_id: str | None = None

    @property
    def matches_changed(self) -> int:
        return sum(1 for r in self.records.values() if r.changed)


@dataclass(frozen=True)
class PointsDependencies:
    settings: PointsSettings
    store: PointsStore
    jobs: JobStore
    queues: Queues
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


def calculate_points(
    messages: Sequence[ReceivedMessage],
    deps: PointsDependencies,
    *,
    remaining_ms: Callable[[], int],
) -> PointsBatchResult:
    """Brings match_points in line with the batch's matches and asks for one refresh.

    Returns each message's outcome; never raises: an error of any type leaves the
    messages it did not settle to be retried with backoff (consumer.retry_unfinished).
    """
    result = PointsBatchResult()
    try:
        _calculate(messages, deps, remaining_ms, result)
    except Exception as exc:
        retry_unfinished(
            result,
            messages,
            exc,
            queues=deps.queues,
            queue_url=deps.settings.points_queue_url,
            max_receive_count=deps.settings.max_receive_count,
        )
    return result


def _calculate(
    messages: Sequence[ReceivedMessage],
    deps: PointsDependencies,
    remaining_ms: Callable[[], int],
    result: PointsBatchResult,
) -> None:
    started_at = deps.now()
    budget_ms = remaining_ms() - POST_COMMIT_RESERVE_MS
    try:
        if budget_ms < MIN_STATEMENT_BUDGET_MS:
            raise DeadlineError(
                f"only {remaining_ms()} ms of the invocation left; not starting the batch"
            )
        write = deps.store.write_batch(
            [_to_job(message) for message in messages],
            started_at=started_at,
            statement_timeout_ms=budget_ms,
            lock_timeout_ms=min(MAX_LOCK_WAIT_MS, budget_ms),
        )
    except TransientError as exc:
        logger.warning("points batch not written; retrying", extra={"error": str(exc)})
        _retry(messages, exc, deps, result, started_at, remaining_ms)
        return

    by_id = {message.message_id: message for message in messages}
    _dead_letter(write, by_id, deps, result)
    _request_refresh(write, by_id, deps, result, started_at, remaining_ms)


def _to_job(message: ReceivedMessage) -> PointsJob:
    try:
        parsed = parse_points_message(message.body)
    except InvalidMessageError as exc:
        return PointsJob(
            job_id=message.message_id,
            match_id=None,
            attempts=message.receive_count,
            parse_error=str(exc),
            body=message.body,
        )
    return PointsJob(
        job_id=message.message_id,
        match_id=parsed.match_id,
        attempts=message.receive_count,
        body=message.body,
    )


def _dead_letter(
    write: PointsBatchWrite,
    by_id: dict[str, ReceivedMessage],
    deps: PointsDependencies,
    result: PointsBatchResult,
) -> None:
    failures = [
        (by_id[row.job_id], _PERMANENT_BY_OUTCOME[row.outcome](row.error or row.outcome.value))
        for row in write.outcomes
        if row.outcome is not PointsOutcomeKind.OK
    ]
    dead_letters = dead_letter(deps.queues, deps.settings.dead_letter_queue_url, failures)
    unsent = []
    for message, error in failures:
        if message.message_id in dead_letters.not_sent:
            unsent.append(message)
            result.records[message.message_id] = RecordResult(
                Disposition.RETRY,
                TransientError(f"{error.kind} ({error}); dead-letter queue unreachable"),
            )
        elif message.message_id in dead_letters.left_to_redrive:
            # Its reason is already in job_history: the batch's statement wrote it.
            result.records[message.message_id] = RecordResult(Disposition.LEFT_TO_REDRIVE, error)
        else:
            result.records[message.message_id] = RecordResult(Disposition.DEAD_LETTERED, error)
    schedule_backoff(
        deps.queues, deps.settings.points_queue_url, unsent, deps.settings.max_receive_count
    )
    release_for_redrive(
        deps.queues,
        deps.settings.points_queue_url,
        [message for message, _ in failures if message.message_id in dead_letters.left_to_redrive],
    )


def _request_refresh(
    write: PointsBatchWrite,
    by_id: dict[str, ReceivedMessage],
    deps: PointsDependencies,
    result: PointsBatchResult,
    started_at: datetime,
    remaining_ms: Callable[[], int],
) -> None:
    done = [row for row in write.outcomes if row.outcome is PointsOutcomeKind.OK]
    if not done:
        return
    # Sent even when nothing changed: this may be the redelivery of a batch whose first
    # refresh request was lost after its commit.
    try:
        result.refresh_message_id = enqueue_refresh(
            deps.settings.refresh_queue_url,
            scope=RefreshScope.ALL,
            reason=RefreshReason.POINTS,
            requested_at=write.committed_at,
            delay_seconds=deps.settings.refresh_delay_seconds,
            queues=deps.queues,
        )
    except TransientError as exc:
        # The points are committed, but nothing has asked for them to be shown. Retrying
        # the records recomputes (a no-op) and asks again; the schedule is the backstop.
        logger.warning("refresh request not sent; retrying the batch", extra={"error": str(exc)})
        _retry([by_id[row.job_id] for row in done], exc, deps, result, started_at, remaining_ms)
        return
    for row in done:
        result.records[row.job_id] = RecordResult(Disposition.COMPLETED, changed=row.changed)
    logger.info(
        "points batch committed",
        extra={
            "completed": len(done),
            "changed": sum(1 for row in done if row.changed),
            "refresh_message_id": result.refresh_message_id,
            "requested_at": write.committed_at.isoformat(),
        },
    )


def _retry(
    messages: Sequence[ReceivedMessage],
    error: TransientError,
    deps: PointsDependencies,
    result: PointsBatchResult,
    started_at: datetime,
    remaining_ms: Callable[[], int],
) -> None:
    for message in messages:
        result.records[message.message_id] = RecordResult(Disposition.RETRY, error)
    schedule_backoff(
        deps.queues, deps.settings.points_queue_url, messages, deps.settings.max_receive_count
    )
    record_failures(
        deps.jobs,
        "points",
        [(message, _subject(message), error) for message in messages],
        started_at=started_at,
        budget_ms=history_budget_ms(remaining_ms()),
    )


def _subject(message: ReceivedMessage) -> str:
    try:
        return f"match {parse_points_message(message.body).match_id}"
    except InvalidMessageError:
        return "match ?"
