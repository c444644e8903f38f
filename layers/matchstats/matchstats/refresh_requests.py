"""Asks for a materialized-view refresh by sending a RefreshMessage to RefreshQueue.

Who may trust `requestedAt`: after points it is a database clock reading taken once
the change committed, and the refresher coalesces on it. Any other sender (schedule,
API, operator) stamps its own clock for the record only; the refresher then counts
the request as made when it reads it, by the database clock, never by a Lambda's.
"""

from __future__ import annotations

from datetime import UTC, datetime

from matchstats.messages import RefreshMessage, RefreshReason, RefreshScope
from matchstats.queues import OutgoingMessage, Queues, SQSClient


def enqueue_refresh(
    queue_url: str,
    *,
    scope: RefreshScope = RefreshScope.ALL,
    reason: RefreshReason,
    requested_at: datetime | None = None,
    force: bool = False,
    delay_seconds: int = 0,
    sqs_client: SQSClient | None = None,
    queues: Queues | None = None,
) -> str:
    """Sends one refresh request and returns its SQS message id."""
    message = RefreshMessage(
        scope=scope,
        reason=reason,
        requested_at=requested_at or datetime.now(UTC),
        force=force,
    )
    sender = queues if queues is not None else Queues(sqs_client)
    return sender.send(
        queue_url,
        OutgoingMessage(entry_id="refresh", body=message.to_body(), delay_seconds=delay_seconds),
    )
