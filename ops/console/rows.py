"""The console's rows: what it shows and what its actions answer, as plain frozen
dataclasses that the HTML templates and the JSON endpoints (to_json) both render."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from ops import dlq
from ops.settings import DEAD_LETTER_PAIRS


@dataclass(frozen=True)
class QueueRow:
    queue: str
    visible: int | None
    in_flight: int | None
    delayed: int | None
    oldest_s: float | None
    waiting_retry: int = 0
    next_attempt_at: datetime | None = None
    next_attempt_subject: str | None = None
    problem: str | None = None


@dataclass(frozen=True)
class Decision:
    outcome: str
    at: datetime
    subject: str | None


@dataclass(frozen=True)
class ViewRow:
    view_name: str
    last_refreshed_at: datetime | None
    age_s: float | None
    took_ms: int | None
    freshness_ms: int | None
    changes_waiting: bool
    # Refresh requests in the history, by what they decided for this view.
    requests: dict[str, int]
    recent: list[Decision]


def depths_signature(depths: dict[str, int | None]) -> str:
    """`PointsDeadLetterQueue=2 RefreshDeadLetterQueue=0`; `?` for a depth not read. The
    page lists the dead letters again when the overview's signature changes."""
    return " ".join(
        f"{name}={'?' if depth is None else depth}" for name, depth in sorted(depths.items())
    )


_DEAD_LETTER_QUEUES = frozenset(pair.dead_letter.value for pair in DEAD_LETTER_PAIRS.values())


@dataclass(frozen=True)
class Overview:
    queues: list[QueueRow]
    views: list[ViewRow]
    database_problem: str | None
    read_at: datetime

    @property
    def dead_letter_depths(self) -> str:
        """The dead-letter queues' visible counts, as depths_signature spells them."""
        return depths_signature(
            {q.queue: q.visible for q in self.queues if q.queue in _DEAD_LETTER_QUEUES}
        )


@dataclass(frozen=True)
class JobRow:
    id: int
    job_type: str
    job_id: str
    subject: str | None
    status: str
    attempts: int
    outcome: str
    error_kind: str | None
    error: str | None
    finished_at: datetime
    duration_ms: int


@dataclass(frozen=True)
class DeadLetterRow:
    message_id: str
    job_id: str
    kind: str
    reason: str | None
    body: str
    receive_count: int
    source_receive_count: int | None
    sent_at: datetime | None


@dataclass(frozen=True)
class KindGroup:
    kind: str
    messages: list[DeadLetterRow]


@dataclass(frozen=True)
class DeadLetterQueue:
    queue: str  # points or refresh
    name: str  # its logical id
    groups: list[KindGroup]
    problem: str | None = None
    # ApproximateNumberOfMessages when listed: more than `total` when the listing could
    # not see them all (dlq.peek).
    approximate_total: int = 0

    @property
    def total(self) -> int:
        return sum(len(group.messages) for group in self.groups)


@dataclass(frozen=True)
class JobDetail:
    job_id: str
    job_type: str
    subject: str | None
    state: str
    body: str | None
    error_kind: str | None
    error: str | None
    view_outcomes: dict[str, str]
    runs: list[JobRow]
    # The ids of its copies in the dead-letter queue (each carries the job id as
    # matchstats.sourceMessageId).
    dead_letter_copies: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ActionResult:
    ok: bool
    message: str


def dead_letter_row(letter: dlq.DeadLetter) -> DeadLetterRow:
    return DeadLetterRow(
        message_id=letter.message_id,
        job_id=letter.source_message_id,
        kind=letter.kind,
        reason=letter.reason,
        body=letter.body,
        receive_count=letter.receive_count,
        source_receive_count=letter.source_receive_count,
        sent_at=letter.sent_at,
    )


def to_json(value: Any) -> Any:
    """Dataclasses, datetimes and lists of them as JSON-ready values."""
    if hasattr(value, "__dataclass_fields__"):
        return {key: to_json(item) for key, item in asdict(value).items()}
    if isinstance(value, dict):
        return {key: to_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value
