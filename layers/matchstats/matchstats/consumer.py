"""What every SQS consumer of matchstats does with a failed message: a permanent failure
goes to the dead-letter queue with its reason; a transient one waits out its backoff."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from matchstats.db.jobs import JobStore
from matchstats.errors import PermanentError, TransientError
from matchstats.models import JobRecord, JobStatus, ReceivedMessage
from matchstats.observability import logger
from matchstats.queues import (
    OutgoingMessage,
    PartialSendError,
    Queues,
    RetryTicket,
    backoff_seconds,
    dead_letter_attributes,
)


def dead_letter(
    queues: Queues,
    dead_letter_queue_url: str,
    failures: Sequence[tuple[ReceivedMessage, PermanentError]],
) -> set[str]:
    """Copies each message, body untouched, to the dead-letter queue with its reason in
    message attributes. Returns the ids of the messages that could not be copied."""
    if not failures:
        return set()
    outgoing = []
    for index, (message, error) in enumerate(failures):
        attributes = dict(message.attributes)
        attributes["matchstats.sourceMessageId"] = message.message_id
        attributes["matchstats.receiveCount"] = str(message.receive_count)
        outgoing.append(
            OutgoingMessage(
                entry_id=str(index),
                body=message.body,
                attributes=dead_letter_attributes(error.kind, str(error), attributes),
            )
        )
    try:
        queues.send_batch(dead_letter_queue_url, outgoing)
    except PartialSendError as exc:
        logger.warning(
            "dead letters not sent; those messages are retried", extra={"error": str(exc)}
        )
        return {failures[int(entry_id)][0].message_id for entry_id in exc.failed}
    for message, error in failures:
        logger.error(
            "message dead-lettered",
            extra={
                "message_id": message.message_id,
                "error_kind": error.kind,
                "reason": str(error),
            },
        )
    return set()


def schedule_backoff(
    queues: Queues, queue_url: str, messages: Sequence[ReceivedMessage], max_receive_count: int
) -> None:
    """Sets each failed message's visibility to its backoff (5 s, then 10 s)."""
    if not messages:
        return
    tickets = [
        RetryTicket(
            entry_id=str(index),
            receipt_handle=message.receipt_handle,
            visibility_timeout_s=backoff_seconds(message.receive_count, max_receive_count),
        )
        for index, message in enumerate(messages)
    ]
    not_changed = queues.retry_later(queue_url, tickets)
    if not_changed:
        logger.warning(
            "backoff not set; those messages wait out the queue's visibility timeout",
            extra={"count": len(not_changed)},
        )


def record_failures(
    jobs: JobStore,
    job_type: str,
    failures: Sequence[tuple[ReceivedMessage, str, TransientError]],
    *,
    started_at: datetime,
) -> None:
    """Records (message, subject, error) runs as failed jobs, if the database lets us:
    the history is a convenience, and the retry is already arranged."""
    try:
        jobs.record(
            job_type,
            [
                JobRecord(
                    job_id=message.message_id,
                    subject=subject,
                    status=JobStatus.FAILED,
                    attempts=message.receive_count,
                    error=str(error),
                )
                for message, subject, error in failures
            ],
            started_at=started_at,
        )
    except TransientError as exc:
        logger.warning("failed jobs not recorded in job_history", extra={"error": str(exc)})
