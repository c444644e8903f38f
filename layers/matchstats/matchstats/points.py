"""Points logic: a batch of points messages becomes match_points, dead letters for
what can never succeed, retries for what may, and one refresh request.

The rule itself (who gets how many points, what a void removes) is SQL, in
db/sql/compute_points.sql; this module decides what happens to each message around it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from matchstats.config import PointsSettings
from matchstats.errors import (
    DeadlineError,
    InvalidMessageError,
    MatchNotFoundError,
    MissingScoresError,
    PermanentError,
    TransientError,
)
from matchstats.failures import (
    dead_letter,
    history_budget_ms,
    record_failures,
    release_for_redrive,
    retry_unfinished,
    schedule_backoff,
)
from matchstats.messages import RefreshReason, RefreshScope, parse_points_message
from matchstats.models import PointsBatchWrite, PointsJob, PointsOutcomeKind, ReceivedMessage
from matchstats.observability import logger
from matchstats.outcomes import BatchResult, Disposition, RecordResult
from matchstats.queues import Queues
from matchstats.refresh_requests import enqueue_refresh
from matchstats.stores import JobRecorder, PointsWriter

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
    store: PointsWriter
    jobs: JobRecorder
    queues: Queues
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class _Batch:
    """One invocation's batch and what it needs along the way."""

    messages: Sequence[ReceivedMessage]
    deps: PointsDependencies
    remaining_ms: Callable[[], int]
    started_at: datetime
    result: PointsBatchResult

    def retry(self, messages: Sequence[ReceivedMessage], error: TransientError) -> None:
        """Fails `messages` as transient: backoff, and a failed run in job_history."""
        for message in messages:
            self.result.records[message.message_id] = RecordResult(Disposition.RETRY, error)
        settings = self.deps.settings
        schedule_backoff(
            self.deps.queues, settings.points_queue_url, messages, settings.max_receive_count
        )
        record_failures(
            self.deps.jobs,
            "points",
            [(message, to_job(message).subject, error) for message in messages],
            started_at=self.started_at,
            budget_ms=history_budget_ms(self.remaining_ms()),
        )


def calculate_points(
    messages: Sequence[ReceivedMessage],
    deps: PointsDependencies,
    *,
    remaining_ms: Callable[[], int],
) -> PointsBatchResult:
    """Brings match_points in line with the batch's matches and asks for one refresh.

    Returns each message's outcome; never raises: an error of any type leaves the
    messages it did not settle to be retried with backoff (failures.retry_unfinished).
    """
    batch = _Batch(messages, deps, remaining_ms, deps.now(), PointsBatchResult())
    try:
        _calculate(batch)
    except Exception as exc:
        retry_unfinished(
            batch.result,
            messages,
            exc,
            queues=deps.queues,
            queue_url=deps.settings.points_queue_url,
            max_receive_count=deps.settings.max_receive_count,
        )
    return batch.result


def _calculate(batch: _Batch) -> None:
    budget_ms = batch.remaining_ms() - POST_COMMIT_RESERVE_MS
    try:
        if budget_ms < MIN_STATEMENT_BUDGET_MS:
            raise DeadlineError(
                f"only {batch.remaining_ms()} ms of the invocation left; not starting the batch"
            )
        write = batch.deps.store.write_batch(
            [to_job(message) for message in batch.messages],
            started_at=batch.started_at,
            statement_timeout_ms=budget_ms,
            lock_timeout_ms=min(MAX_LOCK_WAIT_MS, budget_ms),
        )
    except TransientError as exc:
        logger.warning("points batch not written; retrying", extra={"error": str(exc)})
        batch.retry(batch.messages, exc)
        return
    by_id = {message.message_id: message for message in batch.messages}
    _dead_letter(write, by_id, batch)
    _request_refresh(write, by_id, batch)


def to_job(message: ReceivedMessage) -> PointsJob:
    """The message as the points SQL takes it: its match id, or why it has none."""
    match_id: int | None = None
    parse_error: str | None = None
    try:
        match_id = parse_points_message(message.body).match_id
    except InvalidMessageError as exc:
        parse_error = str(exc)
    return PointsJob(
        job_id=message.message_id,
        match_id=match_id,
        attempts=message.receive_count,
        parse_error=parse_error,
        body=message.body,
    )


def _dead_letter(write: PointsBatchWrite, by_id: dict[str, ReceivedMessage], batch: _Batch) -> None:
    """Messages that can never succeed go to the dead-letter queue with their reason."""
    failures = [
        (by_id[row.job_id], _PERMANENT_BY_OUTCOME[row.outcome](row.error or row.outcome.value))
        for row in write.outcomes
        if row.outcome is not PointsOutcomeKind.OK
    ]
    settings = batch.deps.settings
    dead_letters = dead_letter(batch.deps.queues, settings.dead_letter_queue_url, failures)
    unsent: list[ReceivedMessage] = []
    left: list[ReceivedMessage] = []
    for message, error in failures:
        if message.message_id in dead_letters.not_sent:
            unsent.append(message)
            outcome = RecordResult(
                Disposition.RETRY,
                TransientError(f"{error.kind} ({error}); dead-letter queue unreachable"),
            )
        elif message.message_id in dead_letters.left_to_redrive:
            # Its reason is already in job_history: the batch's statement wrote it.
            left.append(message)
            outcome = RecordResult(Disposition.LEFT_TO_REDRIVE, error)
        else:
            outcome = RecordResult(Disposition.DEAD_LETTERED, error)
        batch.result.records[message.message_id] = outcome
    queues = batch.deps.queues
    schedule_backoff(queues, settings.points_queue_url, unsent, settings.max_receive_count)
    release_for_redrive(queues, settings.points_queue_url, left)


def _request_refresh(
    write: PointsBatchWrite, by_id: dict[str, ReceivedMessage], batch: _Batch
) -> None:
    """One delayed refresh request for the committed matches, carrying the database clock
    read after the commit; the matches complete only once it is sent."""
    done = [row for row in write.outcomes if row.outcome is PointsOutcomeKind.OK]
    if not done:
        return
    settings = batch.deps.settings
    # Sent even when nothing changed: this may be the redelivery of a batch whose first
    # refresh request was lost after its commit.
    try:
        batch.result.refresh_message_id = enqueue_refresh(
            settings.refresh_queue_url,
            scope=RefreshScope.ALL,
            reason=RefreshReason.POINTS,
            requested_at=write.committed_at,
            delay_seconds=settings.refresh_delay_seconds,
            queues=batch.deps.queues,
        )
    except TransientError as exc:
        # The points are committed, but nothing has asked for them to be shown. Retrying
        # the records recomputes (a no-op) and asks again; the schedule is the backstop.
        logger.warning("refresh request not sent; retrying the batch", extra={"error": str(exc)})
        batch.retry([by_id[row.job_id] for row in done], exc)
        return
    for row in done:
        batch.result.records[row.job_id] = RecordResult(Disposition.COMPLETED, changed=row.changed)
    # Debug, not info: every batch's outcome is already in job_history and the function's
    # metrics, and formatting this line was a sixth of the handler's own Python time.
    logger.debug(
        "points batch committed",
        extra={
            "completed": len(done),
            "changed": sum(1 for row in done if row.changed),
            "refresh_message_id": batch.result.refresh_message_id,
            "requested_at": write.committed_at.isoformat(),
        },
    )
