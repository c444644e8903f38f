"""What the logic needs from the database, as Protocols: the logic modules import these,
never the PostgreSQL stores in db/, so a test can hand in an in-memory fake (tests/fakes.py)
and a reader sees each dependency's whole contract in one place.

Every method raises TransientError (matchstats.errors) when the database cannot do the
work now, and nothing else on purpose.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from matchstats.models import (
    JobRecord,
    PointsBatchWrite,
    PointsJob,
    ViewRefreshDone,
    ViewRefreshRecord,
    ViewState,
)

# Runs under the view's lock with its state: what to refresh, or None to skip.
Decision = Callable[[ViewState], ViewRefreshRecord | None]


class PointsWriter(Protocol):
    """db.points.PointsStore."""

    def write_batch(
        self,
        jobs: Sequence[PointsJob],
        *,
        started_at: datetime,
        statement_timeout_ms: int,
        lock_timeout_ms: int,
    ) -> PointsBatchWrite:
        """Brings match_points in line with the jobs' matches and records one job_history
        row per job, in one transaction; returns each job's outcome and the database clock
        read after the commit."""
        ...


class ViewRefresher(Protocol):
    """db.refresh.RefreshStore."""

    def refresh_view(
        self,
        view_name: str,
        decide: Decision,
        *,
        statement_timeout_ms: int,
        lock_timeout_ms: int,
        full: bool = False,
    ) -> tuple[ViewState, ViewRefreshDone | None]:
        """Under the view's lock, reads its state, asks `decide`, and refreshes and records
        it if told to, in one transaction. Returns the state read and the refresh done
        (None when skipped). `full` recomputes every key, not only the logged ones."""
        ...


class JobRecorder(Protocol):
    """db.jobs.JobStore."""

    def record(
        self,
        job_type: str,
        records: Sequence[JobRecord],
        *,
        started_at: datetime,
        budget_ms: int,
    ) -> None:
        """Records job runs written outside a batch transaction, within `budget_ms`."""
        ...
