"""Refresh logic: a batch of refresh requests becomes at most one refresh per view, and
none when every request is already covered or nothing changed.

A request is covered by any refresh of its view that started after the request's
changes committed. Both times are database clock readings: the refresh's start is read
under the view's lock, and a points request carries the clock read after its commit.
Other requests (schedule, API, operator) count as made when the refresher reads them.

One responsibility, kept whole past 350 lines: the coalescing rule, from a batch's
requests to each view's decision and each request's settlement (parse, decide per view,
settle).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from matchstats.config import RefreshSettings
from matchstats.errors import DeadlineError, InvalidMessageError, TransientError
from matchstats.events import StandingsEvents, StandingsRefreshed
from matchstats.failures import (
    dead_letter,
    history_budget_ms,
    record_failures,
    record_history,
    release_for_redrive,
    retry_unfinished,
    schedule_backoff,
)
from matchstats.messages import (
    REFRESHABLE_VIEWS,
    RefreshMessage,
    RefreshReason,
    parse_refresh_message,
    refresh_subject,
)
from matchstats.models import (
    JobRecord,
    JobStatus,
    ReceivedMessage,
    RefreshOutcome,
    ViewRefreshDone,
    ViewRefreshRecord,
    ViewState,
)
from matchstats.observability import logger
from matchstats.outcomes import BatchResult, Disposition, RecordResult
from matchstats.queues import Queues
from matchstats.stores import JobRecorder, ViewRefresher

# Kept back for what follows the refreshes (dead letters, visibility changes).
RESERVE_MS = 5_000
MIN_STATEMENT_BUDGET_MS = 1_000
# How long a refresher waits for another one's refresh of the same view before it backs
# off through SQS (5 s, then 10 s) instead of holding a connection in a queue of waiters.
LOCK_WAIT_MS = 5_000


class ViewDecision(StrEnum):
    EXECUTED = "executed"
    COVERED = "covered"  # skipped: a refresh started after every request of the batch
    UNCHANGED = "unchanged"  # skipped: nothing changed since the last refresh started
    FAILED = "failed"


@dataclass(frozen=True)
class ViewOutcome:
    view_name: str
    decision: ViewDecision
    requests: int
    duration_ms: int | None = None
    # Refresh finished minus the oldest request it covered: how stale the view had been.
    freshness_ms: int | None = None
    # What the refresh that ran did (ViewRefreshDone), for StandingsRefreshed.
    done: ViewRefreshDone | None = None


@dataclass
class RefreshBatchResult(BatchResult):
    views: list[ViewOutcome] = field(default_factory=list)
    # None when nothing changed (no event to publish), else whether it was published.
    event_published: bool | None = None

    def views_with(self, *decisions: ViewDecision) -> list[ViewOutcome]:
        return [view for view in self.views if view.decision in decisions]


@dataclass(frozen=True)
class RefreshDependencies:
    settings: RefreshSettings
    store: ViewRefresher
    jobs: JobRecorder
    queues: Queues
    # None publishes no StandingsRefreshed event (a benchmark, a test about other things).
    events: StandingsEvents | None = None
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


@dataclass
class _Requests:
    """A batch read: the requests that parse, by message id, and the messages that do not."""

    valid: dict[str, RefreshMessage] = field(default_factory=dict)
    invalid: list[tuple[ReceivedMessage, InvalidMessageError]] = field(default_factory=list)


def refresh_views(
    messages: Sequence[ReceivedMessage],
    deps: RefreshDependencies,
    *,
    remaining_ms: Callable[[], int],
) -> RefreshBatchResult:
    """Refreshes each view the batch's requests name, at most once, unless covered or
    unchanged. Returns each message's outcome and each view's decision; never raises: an
    error of any type leaves the messages it did not settle to be retried with backoff."""
    result = RefreshBatchResult()
    try:
        started_at = deps.now()
        requests = _parse(messages)
        failed_views = _refresh_each_view(requests, deps, remaining_ms, result)
        _settle(messages, requests, failed_views, deps, remaining_ms, result, started_at)
        _tell_the_app(result, deps, remaining_ms)
    except Exception as exc:
        retry_unfinished(
            result,
            messages,
            exc,
            queues=deps.queues,
            queue_url=deps.settings.refresh_queue_url,
            max_receive_count=deps.settings.max_receive_count,
        )
    return result


def _tell_the_app(
    result: RefreshBatchResult, deps: RefreshDependencies, remaining_ms: Callable[[], int]
) -> None:
    """One StandingsRefreshed event for the views this batch changed (SPEC section 6b),
    after their commits and within the invocation's remaining time less RESERVE_MS; a
    publish that fails is logged and does not fail the batch."""
    changed = [
        (view.view_name, view.done)
        for view in result.views
        if view.done is not None and view.done.changed
    ]
    if not changed or deps.events is None:
        return
    result.event_published = deps.events.publish(
        StandingsRefreshed(
            views=[view_name for view_name, _ in changed],
            competition_ids=sorted({c for _, done in changed for c in done.competition_ids}),
            finished_at=max(done.finished_at for _, done in changed),
        ),
        budget_s=max(0, remaining_ms() - RESERVE_MS) / 1000,
    )


def _parse(messages: Sequence[ReceivedMessage]) -> _Requests:
    requests = _Requests()
    for message in messages:
        try:
            requests.valid[message.message_id] = parse_refresh_message(message.body)
        except InvalidMessageError as exc:
            requests.invalid.append((message, exc))
    return requests


def _refresh_each_view(
    requests: _Requests,
    deps: RefreshDependencies,
    remaining_ms: Callable[[], int],
    result: RefreshBatchResult,
) -> dict[str, TransientError]:
    """Decides, and runs, each view's refresh; returns the views that failed, and why."""
    failed: dict[str, TransientError] = {}
    for view_name in REFRESHABLE_VIEWS:
        asking = [r for r in requests.valid.values() if view_name in r.scope.views]
        if not asking:
            continue
        outcome = _refresh_one(view_name, asking, deps, remaining_ms)
        if isinstance(outcome, TransientError):
            failed[view_name] = outcome
            outcome = ViewOutcome(view_name, ViewDecision.FAILED, len(asking))
        result.views.append(outcome)
    return failed


def _settle(
    messages: Sequence[ReceivedMessage],
    requests: _Requests,
    failed_views: dict[str, TransientError],
    deps: RefreshDependencies,
    remaining_ms: Callable[[], int],
    result: RefreshBatchResult,
    started_at: datetime,
) -> None:
    """Each message's outcome from its views', dead letters for the invalid, backoff for
    the retried, and the batch's job history."""
    by_id = {message.message_id: message for message in messages}
    retry, completed = _settle_requests(requests.valid, by_id, failed_views, result)
    dead_lettered, unsent = _settle_invalid(requests.invalid, deps, result)
    retry += unsent
    settings = deps.settings
    schedule_backoff(
        deps.queues,
        settings.refresh_queue_url,
        [message for message, _, _ in retry],
        settings.max_receive_count,
    )
    budget_ms = history_budget_ms(remaining_ms())
    record_history(
        deps.jobs, "refresh", completed + dead_lettered, started_at=started_at, budget_ms=budget_ms
    )
    record_failures(
        deps.jobs,
        "refresh",
        retry,
        started_at=started_at,
        budget_ms=history_budget_ms(remaining_ms()),
    )


def _settle_requests(
    valid: dict[str, RefreshMessage],
    by_id: dict[str, ReceivedMessage],
    failed_views: dict[str, TransientError],
    result: RefreshBatchResult,
) -> tuple[list[tuple[ReceivedMessage, str, TransientError]], list[JobRecord]]:
    """A request completes when every view it names was refreshed, covered or unchanged;
    otherwise it is retried with the first of its views' errors."""
    decisions = {
        view.view_name: RefreshOutcome(view.decision.value)
        for view in result.views
        if view.decision is not ViewDecision.FAILED
    }
    retry: list[tuple[ReceivedMessage, str, TransientError]] = []
    completed: list[JobRecord] = []
    for message_id, request in valid.items():
        message = by_id[message_id]
        error = next((failed_views[v] for v in request.scope.views if v in failed_views), None)
        if error is not None:
            retry.append((message, refresh_subject(request), error))
            result.records[message_id] = RecordResult(Disposition.RETRY, error)
            continue
        result.records[message_id] = RecordResult(Disposition.COMPLETED)
        views = {view: decisions[view] for view in request.scope.views}
        completed.append(
            JobRecord(
                job_id=message_id,
                subject=refresh_subject(request),
                status=JobStatus.COMPLETED,
                attempts=message.receive_count,
                body=message.body,
                outcome=request_outcome(views.values()),
                view_outcomes=views,
            )
        )
    return retry, completed


def _settle_invalid(
    invalid: list[tuple[ReceivedMessage, InvalidMessageError]],
    deps: RefreshDependencies,
    result: RefreshBatchResult,
) -> tuple[list[JobRecord], list[tuple[ReceivedMessage, str, TransientError]]]:
    """Invalid requests go to the dead-letter queue (or are left to SQS redrive when too
    large to copy). Returns their failed runs for job_history, and those to retry because
    the dead-letter queue could not be reached."""
    dead_letters = dead_letter(deps.queues, deps.settings.dead_letter_queue_url, invalid)
    history: list[JobRecord] = []
    unsent: list[tuple[ReceivedMessage, str, TransientError]] = []
    for message, invalid_error in invalid:
        if message.message_id in dead_letters.not_sent:
            error = TransientError(f"{invalid_error}; dead-letter queue unreachable")
            unsent.append((message, refresh_subject(None), error))
            result.records[message.message_id] = RecordResult(Disposition.RETRY, error)
            continue
        left = message.message_id in dead_letters.left_to_redrive
        disposition = Disposition.LEFT_TO_REDRIVE if left else Disposition.DEAD_LETTERED
        result.records[message.message_id] = RecordResult(disposition, invalid_error)
        history.append(
            JobRecord(
                job_id=message.message_id,
                subject=refresh_subject(None),
                status=JobStatus.FAILED,
                attempts=message.receive_count,
                error=str(invalid_error),
                error_kind=invalid_error.kind,
                body=message.body,
            )
        )
    release_for_redrive(
        deps.queues,
        deps.settings.refresh_queue_url,
        [m for m, _ in invalid if m.message_id in dead_letters.left_to_redrive],
    )
    return history, unsent


def _refresh_one(
    view_name: str,
    requests: list[RefreshMessage],
    deps: RefreshDependencies,
    remaining_ms: Callable[[], int],
) -> ViewOutcome | TransientError:
    budget_ms = remaining_ms() - RESERVE_MS
    if budget_ms < MIN_STATEMENT_BUDGET_MS:
        return DeadlineError(
            f"only {remaining_ms()} ms of the invocation left; {view_name} not refreshed"
        )
    try:
        state, done = deps.store.refresh_view(
            view_name,
            lambda state: decide(state, requests),
            statement_timeout_ms=budget_ms,
            lock_timeout_ms=min(LOCK_WAIT_MS, budget_ms),
        )
    except TransientError as exc:
        logger.warning("view not refreshed; retrying", extra={"view": view_name, "error": str(exc)})
        return exc
    if done is None:
        decision = skip_reason(state, requests)
        logger.info(
            "refresh skipped",
            extra={"view": view_name, "decision": decision, "requests": len(requests)},
        )
        return ViewOutcome(view_name, decision, len(requests))
    oldest = min(effective_requested_at(request, state) for request in requests)
    freshness_ms = max(0, int((done.finished_at - oldest).total_seconds() * 1000))
    logger.info(
        "view refreshed",
        extra={
            "view": view_name,
            "requests": len(requests),
            "duration_ms": done.duration_ms,
            "freshness_ms": freshness_ms,
        },
    )
    return ViewOutcome(
        view_name, ViewDecision.EXECUTED, len(requests), done.duration_ms, freshness_ms, done
    )


def request_outcome(decisions: Iterable[RefreshOutcome]) -> RefreshOutcome:
    """A request's outcome from its views' decisions: executed when any of its views was
    refreshed for it, else covered when any refresh had already covered it, else
    unchanged."""
    seen = set(decisions)
    for outcome in (RefreshOutcome.EXECUTED, RefreshOutcome.COVERED):
        if outcome in seen:
            return outcome
    return RefreshOutcome.UNCHANGED


def effective_requested_at(request: RefreshMessage, state: ViewState) -> datetime:
    """The database time by which the request's changes had committed."""
    if request.reason is RefreshReason.POINTS:
        return request.requested_at
    return state.now


def skip_reason(state: ViewState, requests: Sequence[RefreshMessage]) -> ViewDecision:
    """Why this batch need not refresh the view, or EXECUTED when it must."""
    if any(request.force for request in requests) or not state.populated:
        return ViewDecision.EXECUTED
    newest = max(effective_requested_at(request, state) for request in requests)
    if state.last_started_at is not None and state.last_started_at >= newest:
        return ViewDecision.COVERED
    if not state.changes_pending:
        return ViewDecision.UNCHANGED
    return ViewDecision.EXECUTED


def decide(state: ViewState, requests: Sequence[RefreshMessage]) -> ViewRefreshRecord | None:
    """Runs under the view's lock: what to refresh, or None to skip."""
    if skip_reason(state, requests) is not ViewDecision.EXECUTED:
        return None
    return ViewRefreshRecord(
        view_name=state.view_name,
        reasons=sorted({request.reason.value for request in requests}),
        requests_covered=len(requests),
        forced=any(request.force for request in requests),
        concurrently=state.populated,
        oldest_request_at=min(effective_requested_at(request, state) for request in requests),
        started_at=state.now,
    )
