"""Redrive for the operator: move a dead-letter queue's messages back to the queue they
came from, by SQS's message move task where the endpoint runs one, else by copy.

Moving is at-least-once: a message is deleted from the dead-letter queue only after
SendMessageBatch confirmed its copy on the source queue, chunk by chunk of up to 10 (sent
in as many requests as SQS's 1 MiB a request takes, attributes counted). An interruption
between the send and the delete leaves a copy in both queues, and the next redrive sends
it once more. The consumers tolerate that: points are recomputed from the match's current
row (idempotent), and refresh requests coalesce.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from matchstats.errors import QueueUnavailableError
from matchstats.queues import message_size, pack_requests
from ops.aws import queue_label
from ops.sqs import MoveTask, MoveTaskUnsupportedError, OpsQueues, OutgoingCopy, QueueMessage

# Our attributes describe one dead-lettering; they are not sent back with the message.
OWN_ATTRIBUTE_PREFIX = "matchstats."
# How long a message being moved stays hidden if the command dies before it could
# delete it or make it visible again.
REDRIVE_HOLD_S = 60
_MOVE_TASK_POLL_S = 1.0
_FINISHED_TASK_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED"})

Progress = Callable[[int, int], None]
Notify = Callable[[str], None]


class RedriveMethod(StrEnum):
    AUTO = "auto"  # a move task where the endpoint runs one, else copy
    MOVE_TASK = "move-task"  # SQS StartMessageMoveTask: SQS moves them, server side
    COPY = "copy"  # receive, SendMessageBatch, DeleteMessageBatch, up to 10 at a time


@dataclass(frozen=True)
class RedriveResult:
    method: RedriveMethod
    moved: int
    total: int
    # Copied to the source but still in the dead-letter queue (their delete failed):
    # they reappear there after the hold and a later redrive sends them again.
    left_behind: int = 0


class RedriveInterruptedError(Exception):
    def __init__(self, message: str, *, moved: int, total: int, maybe_duplicated: int = 0):
        super().__init__(message)
        self.moved = moved
        self.total = total
        self.maybe_duplicated = maybe_duplicated


def redrive(
    queues: OpsQueues,
    dead_letter_url: str,
    source_url: str,
    *,
    limit: int | None = None,
    method: RedriveMethod = RedriveMethod.AUTO,
    progress: Progress = lambda done, total: None,
    notify: Notify = lambda text: None,
    hold_s: int = REDRIVE_HOLD_S,
    sleep: Callable[[float], None] = time.sleep,
) -> RedriveResult:
    """Moves dead-lettered messages back to `source_url`. A move task moves them all, so
    `limit` always takes the copy path."""
    if limit is not None and method is RedriveMethod.MOVE_TASK:
        raise ValueError("a move task cannot be limited; use the copy method")
    if method is RedriveMethod.MOVE_TASK or (method is RedriveMethod.AUTO and limit is None):
        try:
            return _redrive_by_move_task(
                queues, dead_letter_url, source_url, progress, notify, sleep
            )
        except MoveTaskUnsupportedError as exc:
            if method is RedriveMethod.MOVE_TASK:
                raise QueueUnavailableError(f"no message move task here: {exc}") from exc
            notify(f"no message move task here ({exc}); moving by receive, send, delete")
    return _CopyRun(queues, dead_letter_url, source_url, hold_s, progress).run(limit)


def _redrive_by_move_task(
    queues: OpsQueues,
    dead_letter_url: str,
    source_url: str,
    progress: Progress,
    notify: Notify,
    sleep: Callable[[float], None],
) -> RedriveResult:
    source_arn = queues.arn(dead_letter_url)
    running = next(
        (task for task in queues.list_move_tasks(source_arn) if task.status == "RUNNING"), None
    )
    if running is not None:
        # SQS runs one task per queue; a second start would fail, so follow this one.
        notify(f"a move task is already running on {queue_label(dead_letter_url)}; following it")
        handle = running.handle
    else:
        if queues.depth(dead_letter_url).visible == 0:
            return RedriveResult(RedriveMethod.MOVE_TASK, moved=0, total=0)
        handle = queues.start_move_task(source_arn, queues.arn(source_url))
    task: MoveTask | None = None
    try:
        while True:
            task = next((t for t in queues.list_move_tasks(source_arn) if t.handle == handle), task)
            if task is not None:
                progress(task.moved, task.to_move if task.to_move is not None else task.moved)
                if task.status in _FINISHED_TASK_STATES:
                    break
            sleep(_MOVE_TASK_POLL_S)
    except KeyboardInterrupt:
        moved = task.moved if task else 0
        total = task.to_move if task and task.to_move is not None else moved
        raise RedriveInterruptedError(
            f"stopped following the move task after {moved} of {total} messages; it keeps"
            " running in SQS, and running this command again follows it",
            moved=moved,
            total=total,
        ) from None
    assert task is not None
    if task.status != "COMPLETED":
        raise QueueUnavailableError(
            f"the move task from {queue_label(dead_letter_url)} ended {task.status}"
            f" after {task.moved} messages: {task.failure_reason or 'no reason given'}"
        )
    total = task.to_move if task.to_move is not None else task.moved
    return RedriveResult(RedriveMethod.MOVE_TASK, moved=task.moved, total=total)


class _CopyRun:
    """Receive up to 10, send their copies in one batch, delete what was confirmed sent.

    Moves at most the messages the queue held when it started (or `limit`): a message a
    consumer dead-letters again meanwhile waits for the next redrive instead of cycling.
    """

    def __init__(
        self,
        queues: OpsQueues,
        dead_letter_url: str,
        source_url: str,
        hold_s: int,
        progress: Progress,
    ) -> None:
        self._queues = queues
        self._dlq = dead_letter_url
        self._source = source_url
        self._hold_s = hold_s
        self._progress = progress
        self.moved = 0
        self.left_behind = 0
        # The chunk in hand: received, and of those, confirmed on the source queue.
        self._received: list[QueueMessage] = []
        self._confirmed: list[QueueMessage] = []
        # The messages of the SendMessageBatch request under way: sent or not, unknown.
        self._in_flight: list[QueueMessage] = []

    def run(self, limit: int | None) -> RedriveResult:
        available = self._queues.depth(self._dlq).visible
        total = available if limit is None else min(limit, available)
        self._progress(0, total)
        try:
            while self.moved + self.left_behind < total:
                wanted = total - self.moved - self.left_behind
                self._received = self._queues.receive(
                    self._dlq, wanted, visibility_timeout_s=self._hold_s, wait_s=1
                )
                if not self._received:
                    break
                self._move_chunk()
                self._progress(self.moved, total)
        except KeyboardInterrupt:
            raise self._interrupted(total) from None
        except QueueUnavailableError:
            self._queues.release(self._dlq, self._received)
            raise
        return RedriveResult(
            RedriveMethod.COPY, moved=self.moved, total=total, left_behind=self.left_behind
        )

    def _move_chunk(self) -> None:
        """Sends the received messages' copies in as many SendMessageBatch requests as
        SQS's limits take (pack_requests), then deletes the confirmed ones."""
        by_entry = {str(index): message for index, message in enumerate(self._received)}
        copies = [
            OutgoingCopy(entry_id, message.body, forwarded_attributes(message))
            for entry_id, message in by_entry.items()
        ]
        failed: dict[str, str] = {}
        try:
            for request in pack_requests(copies, lambda c: message_size(c.body, c.attributes)):
                self._in_flight = [by_entry[copy.entry_id] for copy in request]
                sent, refused = self._queues.send_batch(self._source, request)
                self._in_flight = []
                self._confirmed += [by_entry[entry_id] for entry_id in sorted(sent, key=int)]
                failed.update(refused)
        except QueueUnavailableError:
            # Copies confirmed by earlier requests are safe on the source: delete them;
            # the rest, the failed request's possibly sent, are released by run().
            confirmed_ids = {message.message_id for message in self._confirmed}
            self._received = [m for m in self._received if m.message_id not in confirmed_ids]
            self._in_flight = []
            self._delete_confirmed()
            raise
        self._delete_confirmed()
        if failed:
            refused_messages = [by_entry[entry_id] for entry_id in failed]
            self._queues.release(self._dlq, refused_messages)
            self._received = []
            first = next(iter(failed.values()))
            raise QueueUnavailableError(
                f"{queue_label(self._source)} refused {len(failed)} message(s) ({first});"
                f" they stay in {queue_label(self._dlq)}"
            )
        self._received = []

    def _delete_confirmed(self) -> None:
        not_deleted = self._queues.delete_batch(self._dlq, self._confirmed)
        self.moved += len(self._confirmed) - len(not_deleted)
        self.left_behind += len(not_deleted)
        self._confirmed = []

    def _interrupted(self, total: int) -> RedriveInterruptedError:
        """Settles the chunk in hand: confirmed copies are deleted from the dead-letter
        queue (they are safe on the source), the rest made visible there again. Copies
        whose send was under way when interrupted may exist on the source as well."""
        confirmed_ids = {message.message_id for message in self._confirmed}
        if self._confirmed:
            self._delete_confirmed()
        unsettled = [m for m in self._received if m.message_id not in confirmed_ids]
        self._queues.release(self._dlq, unsettled)
        maybe_duplicated = len(self._in_flight)
        maybe_duplicated += self.left_behind
        text = (
            f"moved {self.moved} of {total} messages from {queue_label(self._dlq)} to"
            f" {queue_label(self._source)}; run the command again to move the rest"
        )
        if maybe_duplicated:
            text += (
                f" ({maybe_duplicated} may be sent twice: their send was under way;"
                " the consumers tolerate duplicates)"
            )
        return RedriveInterruptedError(
            text, moved=self.moved, total=total, maybe_duplicated=maybe_duplicated
        )


def forwarded_attributes(message: QueueMessage) -> dict[str, dict[str, Any]]:
    return {
        name: {key: value for key, value in attribute.items() if key in _ATTRIBUTE_KEYS}
        for name, attribute in message.attributes.items()
        if not name.startswith(OWN_ATTRIBUTE_PREFIX)
    }


_ATTRIBUTE_KEYS = ("DataType", "StringValue", "BinaryValue")
