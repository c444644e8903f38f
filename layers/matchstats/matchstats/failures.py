"""What every SQS consumer of matchstats does with a failed message: a permanent failure
goes to the dead-letter queue with its reason; a transient one waits out its backoff."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from matchstats.errors import PermanentError, TransientError, UnexpectedError
from matchstats.models import JobRecord, JobStatus, ReceivedMessage
from matchstats.observability import logger
from matchstats.outcomes import BatchResult, Disposition, RecordResult
from matchstats.queues import (
    SOURCE_MESSAGE_ID_ATTRIBUTE,
    SOURCE_RECEIVE_COUNT_ATTRIBUTE,
    CopyForm,
    OutgoingMessage,
    PartialSendError,
    Queues,
    RetryTicket,
    backoff_seconds,
    dead_letter_copy,
)
from matchstats.stores import JobRecorder

# Job history written outside the batch transaction (failures.record_failures).
HISTORY_BUDGET_MS = 3_000
# Kept back for the client's grace after a statement timeout, and the SQS calls after.
HISTORY_RESERVE_MS = 2_000
# libpq needs up to 2 s to give up on a new connection.
MIN_HISTORY_BUDGET_MS = 2_000


@dataclass(frozen=True)
class DeadLetterResult:
    # Not copied (the dead-letter queue refused or was unreachable): retry with backoff.
    not_sent: set[str] = field(default_factory=set)
    # Too large to copy with any reason: fail with visibility 0 for SQS redrive to move.
    left_to_redrive: set[str] = field(default_factory=set)


def dead_letter(
    queues: Queues,
    dead_letter_queue_url: str,
    failures: Sequence[tuple[ReceivedMessage, PermanentError]],
) -> DeadLetterResult:
    """Copies each message, body untouched, to the dead-letter queue with its reason in
    message attributes: a full copy, or a reduced one where the full one would exceed
    SQS's 1 MiB (queues.dead_letter_copy). A message too large for either is left to SQS
    redrive (release_for_redrive); its reason stays in the log line written here, under
    its message id, and in job_history. Returns the message ids of both kinds of miss."""
    if not failures:
        return DeadLetterResult()
    copies: list[tuple[ReceivedMessage, PermanentError, CopyForm, OutgoingMessage]] = []
    left_to_redrive: set[str] = set()
    for index, (message, error) in enumerate(failures):
        form, copy = dead_letter_copy(
            str(index),
            message.body,
            kind=error.kind,
            reason=str(error),
            own={
                SOURCE_MESSAGE_ID_ATTRIBUTE: message.message_id,
                SOURCE_RECEIVE_COUNT_ATTRIBUTE: str(message.receive_count),
            },
            forwarded=message.attributes,
        )
        if copy is None:
            left_to_redrive.add(message.message_id)
            logger.error(
                "message too large to dead-letter with its reason; left to SQS redrive",
                extra={
                    **_described(message, error),
                    "copy": form,
                    "body_bytes": len(message.body.encode()),
                },
            )
        else:
            copies.append((message, error, form, copy))
    failed: dict[str, str] = {}
    try:
        queues.send_batch(dead_letter_queue_url, [copy for _, _, _, copy in copies])
    except PartialSendError as exc:
        failed = exc.failed
        logger.warning(
            "dead letters not sent; those messages are retried", extra={"error": str(exc)}
        )
    for message, error, form, copy in copies:
        if copy.entry_id in failed:
            continue
        text = (
            "message dead-lettered"
            if form is CopyForm.FULL
            else "message dead-lettered in a reduced copy: its own attributes dropped and"
            " its reason shortened to fit SQS's 1 MiB"
        )
        logger.error(text, extra={**_described(message, error), "copy": form})
    return DeadLetterResult(
        not_sent={message.message_id for message, _, _, copy in copies if copy.entry_id in failed},
        left_to_redrive=left_to_redrive,
    )


def _described(message: ReceivedMessage, error: PermanentError) -> dict[str, str]:
    return {"message_id": message.message_id, "error_kind": error.kind, "reason": str(error)}


def release_for_redrive(
    queues: Queues, queue_url: str, messages: Sequence[ReceivedMessage]
) -> None:
    """Makes messages left to redrive visible again at once: their failure is permanent,
    so no backoff; SQS moves them to the dead-letter queue after maxReceiveCount receives."""
    _set_visibility(queues, queue_url, [(message, 0) for message in messages])


def schedule_backoff(
    queues: Queues, queue_url: str, messages: Sequence[ReceivedMessage], max_receive_count: int
) -> None:
    """Sets each failed message's visibility to its backoff (5 s, then 10 s)."""
    _set_visibility(
        queues,
        queue_url,
        [
            (message, backoff_seconds(message.receive_count, max_receive_count))
            for message in messages
        ],
    )


def _set_visibility(
    queues: Queues, queue_url: str, timeouts: Sequence[tuple[ReceivedMessage, int]]
) -> None:
    if not timeouts:
        return
    tickets = [
        RetryTicket(
            entry_id=str(index),
            receipt_handle=message.receipt_handle,
            visibility_timeout_s=timeout_s,
        )
        for index, (message, timeout_s) in enumerate(timeouts)
    ]
    not_changed = queues.retry_later(queue_url, tickets)
    if not_changed:
        logger.warning(
            "visibility not set; those messages wait out the queue's visibility timeout",
            extra={"count": len(not_changed)},
        )


def history_budget_ms(remaining_ms: int) -> int:
    """How long job history written outside the batch transaction may take: at most
    HISTORY_BUDGET_MS, and never the last HISTORY_RESERVE_MS of the invocation."""
    return min(HISTORY_BUDGET_MS, remaining_ms - HISTORY_RESERVE_MS)


def record_history(
    jobs: JobRecorder,
    job_type: str,
    records: Sequence[JobRecord],
    *,
    started_at: datetime,
    budget_ms: int,
) -> None:
    """Records job runs within `budget_ms`, if the database lets us: the history is a
    convenience written beside the real work, whose outcome is already settled. Logs
    what it could not record, with the message ids; never raises a TransientError."""
    if not records:
        return
    if budget_ms < MIN_HISTORY_BUDGET_MS:
        logger.warning(
            "jobs not recorded in job_history: no time left",
            extra={"job_type": job_type, "message_ids": [r.job_id for r in records]},
        )
        return
    try:
        jobs.record(job_type, records, started_at=started_at, budget_ms=budget_ms)
    except TransientError as exc:
        logger.warning(
            "jobs not recorded in job_history",
            extra={
                "job_type": job_type,
                "error": str(exc),
                "message_ids": [r.job_id for r in records],
            },
        )


def record_failures(
    jobs: JobRecorder,
    job_type: str,
    failures: Sequence[tuple[ReceivedMessage, str, TransientError]],
    *,
    started_at: datetime,
    budget_ms: int,
) -> None:
    """Records (message, subject, error) runs as failed jobs (record_history)."""
    record_history(
        jobs,
        job_type,
        [
            JobRecord(
                job_id=message.message_id,
                subject=subject,
                status=JobStatus.FAILED,
                attempts=message.receive_count,
                error=str(error),
                error_kind=error.kind,
                body=message.body,
            )
            for message, subject, error in failures
        ],
        started_at=started_at,
        budget_ms=budget_ms,
    )


def retry_unfinished(
    result: BatchResult,
    messages: Sequence[ReceivedMessage],
    unexpected: Exception,
    *,
    queues: Queues,
    queue_url: str,
    max_receive_count: int,
) -> None:
    """After an error nobody foresaw (a bug, a library raising what it should not): every
    message of the batch without an outcome yet is retried with its backoff, rather than
    the invocation failing and the whole batch waiting out the queue's 720 s visibility
    timeout. Messages already settled (committed, dead-lettered) keep their outcome.
    Never raises."""
    logger.exception(
        "unexpected error; the batch's unsettled messages are retried with backoff",
        extra={"error_type": type(unexpected).__name__},
    )
    error = UnexpectedError(f"unexpected {type(unexpected).__name__}: {unexpected}")
    unsettled = [message for message in messages if message.message_id not in result.records]
    for message in unsettled:
        result.records[message.message_id] = RecordResult(Disposition.RETRY, error)
    try:
        schedule_backoff(queues, queue_url, unsettled, max_receive_count)
    except Exception:
        logger.exception("backoff not set after an unexpected error")
