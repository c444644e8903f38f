"""SQS in memory, for what the benchmark measures without measuring SQS: the same
methods as matchstats.queues.Queues, a queue per URL that honours DelaySeconds, and the
receive / delete / change-visibility cycle of an event source mapping."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from matchstats.models import ReceivedMessage
from matchstats.queues import OutgoingMessage, Queues, RetryTicket, SQSClient


@dataclass(order=True)
class _Pending:
    visible_at: float
    order: int
    message_id: str = field(compare=False)
    body: str = field(compare=False)
    receive_count: int = field(compare=False, default=0)


class DelayQueue:
    """One SQS queue: a message becomes visible `delay` seconds after it is sent, and a
    received message stays in flight until it is deleted or its visibility changed."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._pending: list[_Pending] = []
        self._in_flight: dict[str, _Pending] = {}
        self._order = itertools.count()
        self._changed = threading.Condition()
        self.sent = 0

    def send(self, body: str, delay_s: float = 0.0) -> str:
        message_id = str(uuid.uuid4())
        with self._changed:
            heapq.heappush(
                self._pending,
                _Pending(self._clock() + delay_s, next(self._order), message_id, body),
            )
            self.sent += 1
            self._changed.notify_all()
        return message_id

    def receive(self, max_messages: int, wait_s: float) -> list[ReceivedMessage]:
        """Up to `max_messages` visible messages; waits up to `wait_s` for the first."""
        deadline = self._clock() + wait_s
        with self._changed:
            while True:
                now = self._clock()
                taken: list[ReceivedMessage] = []
                while self._pending and self._pending[0].visible_at <= now:
                    if len(taken) == max_messages:
                        break
                    pending = heapq.heappop(self._pending)
                    pending.receive_count += 1
                    receipt = f"{pending.message_id}/{pending.receive_count}"
                    self._in_flight[receipt] = pending
                    taken.append(
                        ReceivedMessage(
                            message_id=pending.message_id,
                            receipt_handle=receipt,
                            body=pending.body,
                            receive_count=pending.receive_count,
                        )
                    )
                if taken or now >= deadline:
                    return taken
                next_visible = self._pending[0].visible_at if self._pending else deadline
                self._changed.wait(max(0.0, min(deadline, next_visible) - now))

    def delete(self, receipt_handles: Sequence[str]) -> None:
        with self._changed:
            for receipt in receipt_handles:
                self._in_flight.pop(receipt, None)

    def change_visibility(self, receipt_handle: str, timeout_s: float) -> bool:
        with self._changed:
            pending = self._in_flight.pop(receipt_handle, None)
            if pending is None:
                return False
            pending.visible_at = self._clock() + timeout_s
            pending.order = next(self._order)
            heapq.heappush(self._pending, pending)
            self._changed.notify_all()
            return True

    @property
    def depth(self) -> int:
        """Messages not yet deleted: waiting, delayed or in flight."""
        with self._changed:
            return len(self._pending) + len(self._in_flight)


class InMemorySqs(Queues):
    """matchstats' Queues over DelayQueues, one per URL: SQS without the network."""

    def __init__(self, delay_scale: float = 1.0):
        # No boto3 client: nothing here calls SQS.
        self._delay_scale = delay_scale
        self._queues: dict[str, DelayQueue] = {}
        self._lock = threading.Lock()

    @property
    def client(self) -> SQSClient:
        raise NotImplementedError("InMemorySqs has no SQS client")

    def queue(self, queue_url: str) -> DelayQueue:
        with self._lock:
            return self._queues.setdefault(queue_url, DelayQueue())

    def send(self, queue_url: str, message: OutgoingMessage) -> str:
        return self.queue(queue_url).send(message.body, message.delay_seconds * self._delay_scale)

    def send_batch(self, queue_url: str, messages: Sequence[OutgoingMessage]) -> dict[str, str]:
        return {message.entry_id: self.send(queue_url, message) for message in messages}

    def retry_later(self, queue_url: str, tickets: Sequence[RetryTicket]) -> list[str]:
        queue = self.queue(queue_url)
        return [
            ticket.entry_id
            for ticket in tickets
            if not queue.change_visibility(
                ticket.receipt_handle, ticket.visibility_timeout_s * self._delay_scale
            )
        ]

    def sent(self, queue_url: str) -> int:
        return self.queue(queue_url).sent
