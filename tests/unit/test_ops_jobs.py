"""What `matchstats jobs`, `status` and the console say became of a job run (ops.jobs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from matchstats.models import JobStatus
from ops.jobs import Fate, fates, pending_retries
from ops.store import JobRun

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def run(row_id: int, status: JobStatus, attempts: int, later_runs: int = 0) -> JobRun:
    finished = T0 + timedelta(seconds=10 * row_id)
    return JobRun(
        id=row_id,
        job_type="refresh",
        job_id="message-1",
        subject="refresh all (api)",
        status=status,
        attempts=attempts,
        error="database unavailable: canceling statement due to lock timeout"
        if status is JobStatus.FAILED
        else None,
        error_kind="database_unavailable" if status is JobStatus.FAILED else None,
        started_at=finished - timedelta(seconds=2),
        finished_at=finished,
        duration_ms=2000,
        later_runs=later_runs,
    )


def test_a_failed_run_whose_retry_was_not_read_with_it_was_retried() -> None:
    # Given a failed first run, read alone (as `jobs --failed` reads it) though the
    # history holds the retry that succeeded after it
    failed = run(1, JobStatus.FAILED, attempts=1, later_runs=1)

    # When its fate is judged
    by_id = fates([failed])

    # Then it was retried, and no retry waits
    assert by_id[1].fate is Fate.SUPERSEDED
    assert pending_retries([failed]) == []


def test_a_failed_run_without_a_later_run_waits_for_its_retry() -> None:
    # Given a failed first run and nothing after it
    failed = run(1, JobStatus.FAILED, attempts=1)

    # When its fate is judged
    fate = fates([failed])[1]

    # Then its message comes back after the 5 s backoff
    assert fate.fate is Fate.RETRY
    assert fate.next_attempt_at == failed.finished_at + timedelta(seconds=5)


def test_later_runs_among_the_rows_count_too() -> None:
    # Given both runs of a job, read together
    rows = [run(2, JobStatus.COMPLETED, attempts=2), run(1, JobStatus.FAILED, attempts=1)]

    # When their fates are judged
    by_id = fates(rows)

    # Then the first was retried and the second completed
    assert (by_id[1].fate, by_id[2].fate) == (Fate.SUPERSEDED, Fate.COMPLETED)
