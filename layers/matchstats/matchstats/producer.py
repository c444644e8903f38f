"""What the application's scoring Lambda imports to ask for points:

    from matchstats.producer import enqueue_points_calculation
    enqueue_points_calculation(match.id, score_version=match.score_version)

Send after the transaction that changed the match has committed, so the consumer
reads the new row.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from matchstats.errors import ConfigurationError
from matchstats.messages import PointsMessage
from matchstats.queues import OutgoingMessage, Queues, SQSClient

QUEUE_URL_ENV = "POINTS_QUEUE_URL"


def enqueue_points_calculation(
    match_id: int,
    *,
    score_version: int | None = None,
    queue_url: str | None = None,
    sqs_client: SQSClient | None = None,
) -> str:
    """Sends one points message and returns its SQS message id."""
    url = _queue_url(queue_url)
    message = PointsMessage(match_id=match_id, score_version=score_version)
    return Queues(sqs_client).send(url, OutgoingMessage(entry_id="0", body=message.to_body()))


def enqueue_points_calculations(
    matches: Iterable[int | tuple[int, int | None]],
    *,
    queue_url: str | None = None,
    sqs_client: SQSClient | None = None,
) -> list[str]:
    """Sends many points messages with SendMessageBatch (10 a call); takes match ids or
    (match id, score version) pairs and returns the message ids in the same order.

    Raises PartialSendError naming the entries (by position) that could not be sent;
    its `sent` maps the positions that were.
    """
    url = _queue_url(queue_url)
    messages = []
    for position, item in enumerate(matches):
        match_id, score_version = item if isinstance(item, tuple) else (item, None)
        body = PointsMessage(match_id=match_id, score_version=score_version).to_body()
        messages.append(OutgoingMessage(entry_id=str(position), body=body))
    sent = Queues(sqs_client).send_batch(url, messages)
    return [sent[message.entry_id] for message in messages]


def _queue_url(queue_url: str | None) -> str:
    url = queue_url or os.environ.get(QUEUE_URL_ENV)
    if not url:
        raise ConfigurationError(f"no points queue: pass queue_url or set {QUEUE_URL_ENV}")
    return url
