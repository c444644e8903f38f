"""`matchstats refresh --wait`: the views refreshed in this process, by the same code
and the same decision as RefreshViewsFunction, for one manual request."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from matchstats.db.jobs import JobStore
from matchstats.db.refresh import RefreshStore
from matchstats.events import StandingsEvents, StandingsRefreshed
from matchstats.messages import RefreshMessage, RefreshReason, RefreshScope
from matchstats.models import JobRecord, JobStatus, RefreshOutcome, ViewRefreshDone
from matchstats.refresh import ViewDecision, decide, request_outcome, skip_reason

# A refresh Lambda holding the view's lock finishes within its own timeout (120 s).
LOCK_WAIT_MS = 150_000


@dataclass(frozen=True)
class ViewRun:
    view_name: str
    decision: ViewDecision
    duration_ms: int | None  # the refresh itself, by the database clock; None if skipped
    done: ViewRefreshDone | None = None

    @property
    def done_ids(self) -> list[int]:
        return self.done.competition_ids if self.done is not None else []

    @property
    def finished_at(self) -> datetime:
        assert self.done is not None
        return self.done.finished_at


def refresh_now(
    store: RefreshStore,
    jobs: JobStore,
    *,
    scope: RefreshScope,
    force: bool,
    timeout_ms: int,
    full: bool = False,
    events: StandingsEvents | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[ViewRun]:
    """Refreshes each view of `scope` unless nothing changed since its last refresh (or
    `force`; `full` rebuilds every key and implies it), records the run in job_history
    like the function does, and publishes StandingsRefreshed when rows changed."""
    force = force or full
    started_at = now()
    # A manual request counts as made when the refresher reads it, by the database
    # clock (matchstats.refresh.effective_requested_at): this timestamp is the record.
    request = RefreshMessage(
        scope=scope, reason=RefreshReason.MANUAL, requested_at=started_at, force=force
    )
    runs: list[ViewRun] = []
    try:
        for view_name in scope.views:
            state, done = store.refresh_view(
                view_name,
                lambda state: decide(state, [request]),
                statement_timeout_ms=timeout_ms,
                lock_timeout_ms=min(LOCK_WAIT_MS, timeout_ms),
                full=full,
            )
            if done is None:
                runs.append(ViewRun(view_name, skip_reason(state, [request]), None))
            else:
                runs.append(ViewRun(view_name, ViewDecision.EXECUTED, done.duration_ms, done))
    finally:
        # A view that committed consumed its change log: its event is published even
        # when a later view's refresh fails, or no later refresh would tell of it.
        _publish(runs, events)
    views = {run.view_name: RefreshOutcome(run.decision.value) for run in runs}
    jobs.record(
        "refresh",
        [
            JobRecord(
                job_id=f"manual-{uuid.uuid4()}",
                subject=f"refresh {scope.value} ({RefreshReason.MANUAL.value})",
                status=JobStatus.COMPLETED,
                attempts=1,
                body=request.to_body(),
                outcome=request_outcome(views.values()),
                view_outcomes=views,
            )
        ],
        started_at=started_at,
    )
    return runs


def _publish(runs: list[ViewRun], events: StandingsEvents | None) -> None:
    changed = [run for run in runs if run.done is not None and run.done.changed]
    if changed and events is not None:
        events.publish(
            StandingsRefreshed(
                views=[run.view_name for run in changed],
                competition_ids=sorted({c for run in changed for c in run.done_ids}),
                finished_at=max(run.finished_at for run in changed),
            )
        )
