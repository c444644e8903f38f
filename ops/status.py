"""What `matchstats status` reports: the queues, the views, the latest job failures.

Each part is read on its own, so an unreachable database still leaves the queue
figures on screen, and the other way round.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from matchstats.db.ops import OpsStore, ViewStatusRow
from matchstats.errors import MatchstatsError
from matchstats.models import JobHistoryRow, JobStatus
from ops.settings import OpsSettings, QueueName
from ops.sqs import OpsQueues, QueueDepth

RECENT_FAILURES = 5

OldestAges = Callable[[Sequence[str]], dict[str, float | None]]


@dataclass(frozen=True)
class QueueStatus:
    queue: QueueName
    depth: QueueDepth | None = None
    oldest_age_s: float | None = None
    problem: str | None = None


@dataclass(frozen=True)
class DatabaseStatus:
    views: list[ViewStatusRow]
    recent_failures: list[JobHistoryRow]


def queue_statuses(
    settings: OpsSettings, queues: OpsQueues, oldest_ages: OldestAges
) -> list[QueueStatus]:
    urls: dict[QueueName, str] = {}
    problems: dict[QueueName, str] = {}
    depths: dict[QueueName, QueueDepth] = {}
    for queue in QueueName:
        try:
            urls[queue] = settings.queue_url(queue)
            depths[queue] = queues.depth(urls[queue])
        except MatchstatsError as exc:
            problems[queue] = str(exc)
    ages = oldest_ages([urls[queue] for queue in depths])
    return [
        QueueStatus(
            queue,
            depth=depths.get(queue),
            oldest_age_s=ages.get(urls[queue]) if queue in depths else None,
            problem=problems.get(queue),
        )
        for queue in QueueName
    ]


def database_status(store: OpsStore, recent_failures: int = RECENT_FAILURES) -> DatabaseStatus:
    return DatabaseStatus(
        views=store.view_status(),
        recent_failures=store.job_history(status=JobStatus.FAILED, limit=recent_failures),
    )
