"""Refresh logic: a batch of refresh requests becomes at most one refresh per view, and
none when every request is already covered or nothing changed.

A request is covered by any refresh of its view that started after the request's
changes committed. Both times are database clock readings: the refresh's start is read
under the view's lock, and a points request carries the clock read after its commit.
Other requests (schedule, API, operator) count as made when the refresher reads them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from matchstats.config import RefreshSettings
from matchstats.consumer import (
    dead_letter,
    history_budget_ms,
    record_failures,
    record_history,
    release_for_redrive,
    retry_unfinished,
    schedule_backoff,
)
from matchstats.db.jobs import JobStore
from matchstats.db.refresh import REFRESHABLE_VIEWS, RefreshStore
from matchstats.errors import DeadlineError, InvalidMessageError, TransientError
from matchstats.messages import RefreshMessage, RefreshReason, parse_refresh_message
from matchstats.models import (
    JobRecord,
    JobStatus,
    ReceivedMessage,
    RefreshOutcome,
    ViewRefreshRecord,
    ViewState,
)
from matchstats.observability import logger
from matchstats.outcomes import BatchResult, Disposition, RecordResult
from matchstats.queues import Queues

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


@dataclass
class RefreshBatchResult(BatchResult):
    views: list[ViewOutcome] = field(default_factory=list)

    def views_with(self, *decisions: ViewDecision) -> list[ViewOutcome]:
        return [view for view in self.views if view.decision in decisions]


@dataclass(frozen=True)
class RefreshDependencies:
    settings: RefreshSettings
    store: RefreshStore
    jobs: JobStore
    queues: Queues
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


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
        _refresh(messages, deps, remaining_ms, result)
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


def _refresh(
    messages: Sequence[ReceivedMessage],
    deps: RefreshDependencies,
    remaining_ms: Callable[[], int],
    result: RefreshBatchResult,
) -> None:
    started_at = deps.now()
    requests: dict[str, RefreshMessage] = {}
    invalid: list[tuple[ReceivedMessage, InvalidMessageError]] = []
    for message in messages:
        try:
            requests[message.message_id] = parse_refresh_message(message.body)
        except InvalidMessageError as exc:
            invalid.append((message, exc))

    failed_views: dict[str, TransientError] = {}
    for view_name in REFRESHABLE_VIEWS:
        asking = [request for request in requests.values() if view_name in request.scope.views]
        if not asking:
            continue
        outcome = _refresh_one(view_name, asking, deps, remaining_ms)
        if isinstance(outcome, TransientError):
            failed_views[view_name] = outcome
            result.views.append(ViewOutcome(view_name, ViewDecision.FAILED, len(asking)))
        else:
            result.views.append(outcome)

    by_id = {message.message_id: message for message in messages}
    decisions = {
        view.view_name: RefreshOutcome(view.decision.value)
        for view in result.views
        if view.decision is not ViewDecision.FAILED
    }
    retry: list[tuple[ReceivedMessage, str, TransientError]] = []
    completed: list[JobRecord] = []
    for message_id, request in requests.items():
        subject = f"refresh {request.scope.value} ({request.reason.value})"
        error = next((failed_views[v] for v in request.scope.views if v in failed_views), None)
        if error is not None:
            retry.append((by_id[message_id], subject, error))
            result.records[message_id] = RecordResult(Disposition.RETRY, error)
        else:
            result.records[message_id] = RecordResult(Disposition.COMPLETED)
            views = {view: decisions[view] for view in request.scope.views}
            completed.append(
                JobRecord(
                    job_id=message_id,
                    subject=subject,
                    status=JobStatus.COMPLETED,
                    attempts=by_id[message_id].receive_count,
                    body=by_id[message_id].body,
                    outcome=request_outcome(views.values()),
                    view_outcomes=views,
                )
            )

    dead_letters = dead_letter(deps.queues, deps.settings.dead_letter_queue_url, invalid)
    for message, invalid_error in invalid:
        if message.message_id in dead_letters.not_sent:
            error = TransientError(f"{invalid_error}; dead-letter queue unreachable")
            retry.append((message, "refresh ?", error))
            result.records[message.message_id] = RecordResult(Disposition.RETRY, error)
        elif message.message_id in dead_letters.left_to_redrive:
            result.records[message.message_id] = RecordResult(
                Disposition.LEFT_TO_REDRIVE, invalid_error
            )
        else:
            result.records[message.message_id] = RecordResult(
                Disposition.DEAD_LETTERED, invalid_error
            )

    schedule_backoff(
        deps.queues,
        deps.settings.refresh_queue_url,
        [message for message, _, _ in retry],
        deps.settings.max_receive_count,
    )
    release_for_redrive(
        deps.queues,
        deps.settings.refresh_queue_url,
        [message for message, _ in invalid if message.message_id in dead_letters.left_to_redrive],
    )
    # Invalid requests, dead-lettered or left to redrive, are failed runs with their reason.
    history = completed + [
        JobRecord(
            job_id=message.message_id,
            subject="refresh ?",
            status=JobStatus.FAILED,
            attempts=message.receive_count,
            error=str(error),
            error_kind=error.kind,
            body=message.body,
        )
        for message, error in invalid
        if message.message_id not in dead_letters.not_sent
    ]
    record_history(
        deps.jobs,
        "refresh",
        history,
        started_at=started_at,
        budget_ms=history_budget_ms(remaining_ms()),
    )
    record_failures(
        deps.jobs,
        "refresh",
        retry,
        started_at=started_at,
        budget_ms=history_budget_ms(remaining_ms()),
    )


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
        view_name, ViewDecision.EXECUTED, len(requests), done.duration_ms, freshness_ms
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
    if state.last_change_seq is not None and state.last_change_seq == state.current_change_seq:
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
        change_seq=state.current_change_seq,
        oldest_request_at=min(effective_requested_at(request, state) for request in requests),
        started_at=state.now,
    )
