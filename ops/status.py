"""What `matchstats status` reports: the queues, the views, the latest job failures.

Each part is read on its own, so an unreachable database still leaves the queue
figures on screen, and the other way round.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from matchstats.errors import MatchstatsError
from matchstats.models import JobStatus
from ops.jobs import PendingRetry, pending_retries
from ops.settings import OpsSettings, QueueName
from ops.sqs import OpsQueues, QueueDepth
from ops.store import JobRun, OpsStore, ViewStatusRow

RECENT_FAILURES = 5
RETRY_LOOKBACK = timedelta(minutes=5)
RETRY_SCAN_LIMIT = 1000

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
    recent_failures: list[JobRun]
    # Messages in flight only because they wait out a retry backoff, soonest first.
    retries: list[PendingRetry] = field(default_factory=list)

    def retries_of(self, queue: QueueName) -> list[PendingRetry]:
        return [retry for retry in self.retries if retry.queue is queue]


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
    views = store.view_status()
    # A backoff is at most 10 s and a run is recorded when it ends, so the last minutes'
    # runs hold every failure still waiting and any later run of the same message.
    now = views[0].now if views else datetime.now(UTC)
    recent = store.job_history(since=now - RETRY_LOOKBACK, limit=RETRY_SCAN_LIMIT)
    return DatabaseStatus(
        views=views,
        recent_failures=store.job_history(status=JobStatus.FAILED, limit=recent_failures),
        retries=pending_retries(recent),
    )
