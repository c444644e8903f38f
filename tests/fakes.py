"""In-memory stand-ins for external services, handed in through dependencies."""

from __future__ import annotations

from collections.abc import Sequence

from matchstats.errors import QueueUnavailableError
from matchstats.queues import OutgoingMessage, Queues, RetryTicket


class InMemoryQueues(Queues):
    """Queues that keep what is sent, or refuse it like an unreachable SQS."""

    def __init__(self, *, reachable: bool = True) -> None:
        self.sent: list[tuple[str, OutgoingMessage]] = []
        self.retries: list[tuple[str, RetryTicket]] = []
        self.reachable = reachable

    def send(self, queue_url: str, message: OutgoingMessage) -> str:
        if not self.reachable:
            raise QueueUnavailableError(f"cannot send to {queue_url}: connection refused")
        self.sent.append((queue_url, message))
        return f"message-{len(self.sent)}"

    def send_batch(self, queue_url: str, messages: Sequence[OutgoingMessage]) -> dict[str, str]:
        return {message.entry_id: self.send(queue_url, message) for message in messages}

    def retry_later(self, queue_url: str, tickets: Sequence[RetryTicket]) -> list[str]:
        self.retries.extend((queue_url, ticket) for ticket in tickets)
        return []
