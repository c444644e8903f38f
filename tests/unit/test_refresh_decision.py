"""When a batch of refresh requests must refresh a view, judged on database times only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from matchstats.messages import RefreshMessage, RefreshReason
from matchstats.models import ViewState
from matchstats.refresh import ViewDecision, decide, skip_reason

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def state(
    *, last_started: datetime | None, last_seq: int | None, seq: int, now: datetime
) -> ViewState:
    return ViewState(
        view_name="competition_standings",
        last_started_at=last_started,
        # The change log is empty exactly when the view includes the latest change.
        changes_pending=last_seq != seq,
        populated=True,
        now=now,
    )


def points_request(at: datetime, force: bool = False) -> RefreshMessage:
    return RefreshMessage(reason=RefreshReason.POINTS, requested_at=at, force=force)


def test_a_request_made_before_the_last_refresh_started_is_covered() -> None:
    view = state(last_started=T0, last_seq=5, seq=6, now=T0 + timedelta(seconds=9))
    assert (
        skip_reason(view, [points_request(T0 - timedelta(milliseconds=1))]) is ViewDecision.COVERED
    )


def test_a_request_made_after_the_last_refresh_started_with_changes_executes() -> None:
    view = state(last_started=T0, last_seq=5, seq=6, now=T0 + timedelta(seconds=9))
    record = decide(
        view, [points_request(T0 - timedelta(seconds=1)), points_request(T0 + timedelta(seconds=1))]
    )
    assert record is not None
    assert (record.requests_covered, record.started_at) == (2, view.now)
    assert record.oldest_request_at == T0 - timedelta(seconds=1)


def test_nothing_changed_since_the_last_refresh_started_is_skipped_unless_forced() -> None:
    view = state(last_started=T0, last_seq=6, seq=6, now=T0 + timedelta(seconds=9))
    late = T0 + timedelta(seconds=5)
    assert skip_reason(view, [points_request(late)]) is ViewDecision.UNCHANGED
    assert skip_reason(view, [points_request(late, force=True)]) is ViewDecision.EXECUTED


def test_a_schedule_request_counts_as_made_when_read_never_by_its_senders_clock() -> None:
    # Given a scheduler whose clock claims the request is older than the last refresh
    view = state(last_started=T0, last_seq=5, seq=6, now=T0 + timedelta(seconds=9))
    skewed = RefreshMessage(reason=RefreshReason.SCHEDULE, requested_at=T0 - timedelta(hours=1))

    # Then the refresher uses its database clock instead, and refreshes the changes
    assert skip_reason(view, [skewed]) is ViewDecision.EXECUTED


def test_a_view_never_refreshed_by_matchstats_is_refreshed() -> None:
    view = state(last_started=None, last_seq=None, seq=0, now=T0)
    assert skip_reason(view, [points_request(T0)]) is ViewDecision.EXECUTED
