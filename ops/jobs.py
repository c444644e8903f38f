"""What became of a job run, for `matchstats jobs` and the console: a refresh request's
outcome (executed, covered, unchanged), or for a failed run whether its message waits
for another attempt (and when), or went to the dead-letter queue.

The next attempt is not stored anywhere: a consumer that fails a message transiently
sets its visibility timeout to the backoff of matchstats.queues.backoff_seconds (5 s
after the first receive, 10 s after the second), so the message is received again that
long after the failed run finished. After the last allowed receive (the queue's
maxReceiveCount, 3) SQS moves it to the dead-letter queue instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from matchstats.errors import InvalidMessageError, MatchNotFoundError, MissingScoresError
from matchstats.models import JobHistoryRow, JobStatus
from matchstats.queues import backoff_seconds
from ops.settings import QueueName
from ops.store import JobRun

# The template's redrive maxReceiveCount of both queues (SPEC section 5).
MAX_RECEIVE_COUNT = 3
# Failures a consumer dead-letters at once, with the reason attached (SPEC section 4).
PERMANENT_KINDS = frozenset(
    {
        InvalidMessageError.kind,
        MatchNotFoundError.kind,
        MissingScoresError.kind,
    }
)
SOURCE_QUEUES = {"points": QueueName.POINTS, "refresh": QueueName.REFRESH}


class Fate(StrEnum):
    COMPLETED = "completed"
    RETRY = "retry"  # failed transiently; its message comes back after the backoff
    DEAD_LETTERED = "dead-lettered"  # failed permanently, or on its last allowed receive
    SUPERSEDED = "retried"  # failed, and a later run of the same message exists


@dataclass(frozen=True)
class JobFate:
    fate: Fate
    # For RETRY: when the message becomes visible again (the database clock of the run
    # plus the backoff), so when the next attempt starts at the earliest.
    next_attempt_at: datetime | None = None


def fate_of(
    run: JobHistoryRow,
    later_runs: int = 0,
    max_receive_count: int = MAX_RECEIVE_COUNT,
) -> JobFate:
    """What became of `run`, given how many runs of the same message came after it."""
    if run.status is JobStatus.COMPLETED:
        return JobFate(Fate.COMPLETED)
    if later_runs:
        return JobFate(Fate.SUPERSEDED)
    if run.error_kind in PERMANENT_KINDS or run.attempts >= max_receive_count:
        return JobFate(Fate.DEAD_LETTERED)
    delay = backoff_seconds(run.attempts, max_receive_count)
    return JobFate(Fate.RETRY, run.finished_at + timedelta(seconds=delay))


def fates(rows: Sequence[JobRun]) -> dict[int, JobFate]:
    """fate_of each row (by its id). The later runs are those the history held when the
    rows were read (`later_runs`), not only those among `rows`: a list of failed runs, or
    the newest few, leaves out the retry that succeeded."""
    latest: dict[tuple[str, str], int] = {}
    for row in rows:
        key = (row.job_type, row.job_id)
        latest[key] = max(latest.get(key, row.id), row.id)
    return {
        row.id: fate_of(
            row,
            later_runs=max(row.later_runs, int(latest[(row.job_type, row.job_id)] > row.id)),
        )
        for row in rows
    }


def describe_fate(run: JobHistoryRow, fate: JobFate, now: datetime) -> str:
    """One cell: the refresh outcome, the next attempt, or where the message went."""
    if fate.fate is Fate.COMPLETED:
        return run.outcome.value if run.outcome else "completed"
    if fate.fate is Fate.RETRY and fate.next_attempt_at is not None:
        seconds = (fate.next_attempt_at - now).total_seconds()
        when = fate.next_attempt_at.strftime("%H:%M:%S")
        if seconds > 0:
            return f"retry {run.attempts + 1} of {MAX_RECEIVE_COUNT} at {when} (in {seconds:.0f} s)"
        return f"retry {run.attempts + 1} of {MAX_RECEIVE_COUNT} due since {when}"
    if fate.fate is Fate.DEAD_LETTERED:
        return "dead-lettered"
    return "retried"


@dataclass(frozen=True)
class PendingRetry:
    run: JobRun
    queue: QueueName
    next_attempt_at: datetime


def pending_retries(rows: Sequence[JobRun]) -> list[PendingRetry]:
    """The failed runs, among `rows`, whose message waits out its backoff for another
    attempt, soonest first: in SQS they count as in flight until then."""
    pending = []
    by_id = fates(rows)
    for row in rows:
        fate = by_id[row.id]
        if fate.fate is Fate.RETRY and fate.next_attempt_at is not None:
            pending.append(PendingRetry(row, SOURCE_QUEUES[row.job_type], fate.next_attempt_at))
    return sorted(pending, key=lambda retry: retry.next_attempt_at)
