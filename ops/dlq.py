"""Dead-letter queues for the operator: read them without consuming, and move their
selected messages back to the queue they came from, or discard them. Moving a whole queue
back is ops/redrive.py's.

Reading: SQS cannot peek. A message is read by receiving it, which hides it for a
while and adds one to its receive count; `show` makes every message it read visible
again right away. The receive count of a dead-letter message therefore also counts
the times an operator looked at it; `matchstats.receiveCount`, set when a consumer
dead-lettered it, keeps the number of deliveries on the source queue.

Moving selected messages is at-least-once, as a redrive is (ops/redrive.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from matchstats.errors import QueueUnavailableError
from matchstats.queues import (
    ERROR_KIND_ATTRIBUTE,
    REASON_ATTRIBUTE,
    SOURCE_MESSAGE_ID_ATTRIBUTE,
    SOURCE_RECEIVE_COUNT_ATTRIBUTE,
    message_size,
    pack_requests,
)
from ops.aws import queue_label
from ops.redrive import REDRIVE_HOLD_S, forwarded_attributes
from ops.sqs import OpsQueues, OutgoingCopy, QueueMessage

# The error kind of a message that carries none: SQS moved it after its last allowed
# receive failed (transient failures), keeping its message id.
RETRIES_EXHAUSTED = "retries_exhausted"
# How long a message read by `show` stays hidden if the command dies before it could
# make the message visible again.
SHOW_HOLD_S = 30
# The most receives one peek() makes.
PEEK_RECEIVES = 20


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    sent_at: datetime | None
    receive_count: int
    source_receive_count: int | None
    error_kind: str | None
    reason: str | None
    body: str
    # The message id on the source queue, which job_history knows as the job id: the
    # matchstats.sourceMessageId of a consumer's copy, or the message's own id when SQS
    # moved it (a move keeps the id).
    source_message_id: str = ""

    @property
    def kind(self) -> str:
        """The error kind to group and select by; RETRIES_EXHAUSTED when none is attached."""
        return self.error_kind or RETRIES_EXHAUSTED


@dataclass(frozen=True)
class Selection:
    """Which dead letters an action takes: all, those of one error kind, and/or the one
    whose dead-letter or source message id is `message_id`."""

    kind: str | None = None
    message_id: str | None = None
    # When given, only these dead-letter message ids (what an operator confirmed).
    confirmed_ids: frozenset[str] | None = None

    def matches(self, letter: DeadLetter) -> bool:
        if self.kind is not None and letter.kind != self.kind:
            return False
        if self.message_id is not None and self.message_id not in (
            letter.message_id,
            letter.source_message_id,
        ):
            return False
        return self.confirmed_ids is None or letter.message_id in self.confirmed_ids

    def describe(self) -> str:
        parts = []
        if self.kind is not None:
            parts.append(f"of kind {self.kind}")
        if self.message_id is not None:
            parts.append(f"with id {self.message_id}")
        return " ".join(parts) or "all"


@dataclass(frozen=True)
class ShowResult:
    messages: list[DeadLetter]
    approximate_total: int


def show(queues: OpsQueues, dead_letter_url: str, *, limit: int) -> ShowResult:
    """Reads up to `limit` messages and makes each visible again before returning."""
    total = queues.depth(dead_letter_url).visible
    seen: dict[str, DeadLetter] = {}
    received: list[QueueMessage] = []
    try:
        while len(seen) < limit:
            # A hold (not 0) so that the next receive returns other messages.
            batch = queues.receive(
                dead_letter_url,
                limit - len(seen),
                visibility_timeout_s=SHOW_HOLD_S,
                wait_s=1,
            )
            if not batch:
                break
            received.extend(batch)
            for message in batch:
                seen.setdefault(message.message_id, _dead_letter(message))
    finally:
        queues.release(dead_letter_url, received)
    return ShowResult(messages=list(seen.values()), approximate_total=total)


def peek(queues: OpsQueues, dead_letter_url: str, *, limit: int) -> ShowResult:
    """Reads up to `limit` messages without hiding any (VisibilityTimeout 0), for a
    listing that may run while a redrive or another reader works on the queue: a held
    message would be invisible to them. Without a hold SQS may answer with messages
    already seen, so the receives stop at the approximate visible count, at a receive
    that brings nothing new, or after PEEK_RECEIVES: of a queue longer than one receive
    (10) the result may hold only some, and `approximate_total` says how many there are."""
    total = queues.depth(dead_letter_url).visible
    seen: dict[str, DeadLetter] = {}
    for _ in range(PEEK_RECEIVES):
        if len(seen) >= min(total, limit):
            break
        batch = queues.receive(dead_letter_url, limit - len(seen), visibility_timeout_s=0, wait_s=1)
        new = [message for message in batch if message.message_id not in seen]
        if not new:
            break
        for message in new:
            seen[message.message_id] = _dead_letter(message)
    return ShowResult(messages=list(seen.values())[:limit], approximate_total=total)


def _dead_letter(message: QueueMessage) -> DeadLetter:
    source_count = message.string_attribute(SOURCE_RECEIVE_COUNT_ATTRIBUTE)
    return DeadLetter(
        source_message_id=(
            message.string_attribute(SOURCE_MESSAGE_ID_ATTRIBUTE) or message.message_id
        ),
        message_id=message.message_id,
        sent_at=message.sent_at,
        receive_count=message.receive_count,
        source_receive_count=int(source_count) if source_count and source_count.isdigit() else None,
        error_kind=message.string_attribute(ERROR_KIND_ATTRIBUTE),
        reason=message.string_attribute(REASON_ATTRIBUTE),
        body=message.body,
    )


# --------------------------------------------------------------------- selected messages


@dataclass(frozen=True)
class SelectedResult:
    """What an action on selected dead letters did. `done` were discarded or moved;
    `left_behind` were copied to the source but could not be deleted (they reappear in
    the dead-letter queue after the hold and a later redrive sends them again)."""

    selected: list[DeadLetter]
    done: int
    left_behind: int = 0


class _Scan:
    """Receives every message of a dead-letter queue, holding each one hidden, so that no
    message is seen twice; whatever is not settled is made visible again on exit."""

    def __init__(self, queues: OpsQueues, url: str, hold_s: int, limit: int) -> None:
        self._queues = queues
        self._url = url
        self._hold_s = hold_s
        self._limit = limit
        self.held: dict[str, QueueMessage] = {}

    def __enter__(self) -> _Scan:
        try:
            while len(self.held) < self._limit:
                batch = self._queues.receive(
                    self._url,
                    self._limit - len(self.held),
                    visibility_timeout_s=self._hold_s,
                    wait_s=1,
                )
                if not batch:
                    break
                for message in batch:
                    self.held.setdefault(message.message_id, message)
        except BaseException:
            self._queues.release(self._url, list(self.held.values()))
            raise
        return self

    def settled(self, message_ids: set[str]) -> None:
        for message_id in message_ids:
            self.held.pop(message_id, None)

    def __exit__(self, *exc_info: object) -> None:
        self._queues.release(self._url, list(self.held.values()))


MAX_SCAN = 1000


def select(
    queues: OpsQueues, dead_letter_url: str, selection: Selection, *, limit: int = MAX_SCAN
) -> list[DeadLetter]:
    """The dead letters `selection` takes (of the first `limit` read), left in place."""
    with _Scan(queues, dead_letter_url, SHOW_HOLD_S, limit) as scan:
        letters = [_dead_letter(message) for message in scan.held.values()]
    return [letter for letter in letters if selection.matches(letter)]


def discard(
    queues: OpsQueues,
    dead_letter_url: str,
    selection: Selection,
    *,
    limit: int = MAX_SCAN,
    hold_s: int = REDRIVE_HOLD_S,
) -> SelectedResult:
    """Deletes the dead letters `selection` takes; every other message read is made
    visible again. A discarded message is gone for good (that is the point: a poison
    message that no redrive can repair)."""
    with _Scan(queues, dead_letter_url, hold_s, limit) as scan:
        chosen = [m for m in scan.held.values() if selection.matches(_dead_letter(m))]
        not_deleted = queues.delete_batch(dead_letter_url, chosen)
        scan.settled({m.message_id for m in chosen} - not_deleted)
    return SelectedResult(
        selected=[_dead_letter(m) for m in chosen], done=len(chosen) - len(not_deleted)
    )


def redrive_selected(
    queues: OpsQueues,
    dead_letter_url: str,
    source_url: str,
    selection: Selection,
    *,
    limit: int = MAX_SCAN,
    hold_s: int = REDRIVE_HOLD_S,
) -> SelectedResult:
    """Moves the dead letters `selection` takes back to `source_url` (send, then delete
    what the send confirmed, a request at a time as SQS's limits take them (pack_requests):
    at-least-once, as `redrive`); every other message read is made visible again."""
    moved = left_behind = 0
    with _Scan(queues, dead_letter_url, hold_s, limit) as scan:
        chosen = [m for m in scan.held.values() if selection.matches(_dead_letter(m))]
        by_entry = {str(index): m for index, m in enumerate(chosen)}
        copies = [
            OutgoingCopy(entry_id, m.body, forwarded_attributes(m))
            for entry_id, m in by_entry.items()
        ]
        for request in pack_requests(copies, lambda c: message_size(c.body, c.attributes)):
            sent, failed = queues.send_batch(source_url, request)
            confirmed = [by_entry[entry_id] for entry_id in sorted(sent, key=int)]
            not_deleted = queues.delete_batch(dead_letter_url, confirmed)
            scan.settled({m.message_id for m in confirmed})
            moved += len(confirmed) - len(not_deleted)
            left_behind += len(not_deleted)
            if failed:
                first = next(iter(failed.values()))
                raise QueueUnavailableError(
                    f"{queue_label(source_url)} refused {len(failed)} message(s) ({first});"
                    f" they stay in {queue_label(dead_letter_url)}"
                )
    return SelectedResult(
        selected=[_dead_letter(m) for m in chosen], done=moved, left_behind=left_behind
    )
