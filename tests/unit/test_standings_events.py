"""StandingsRefreshed publishing never holds an invocation past its time: an EventBridge
endpoint that accepts connections and never answers (a VPC with no route to EventBridge
looks like this, or like a connect that never completes) costs at most the budget the
refresh logic hands the publisher, and the refresh batch still completes. Nor does it
ever raise: a client that cannot be built (no region, a malformed endpoint) or a call
that fails in any way leaves the event unpublished, with the reason kept."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError, NoRegionError

from matchstats.events import EVENTS_CLIENT_CONFIG, StandingsEvents, StandingsRefreshed
from matchstats.messages import REFRESHABLE_VIEWS
from matchstats.models import ViewRefreshDone
from matchstats.outcomes import Disposition
from matchstats.refresh import RESERVE_MS, RefreshDependencies, refresh_views
from testkit.events import received_messages
from tests.fakes import FakeClock, InMemoryRefreshStore
from tests.unit.test_refresh_logic import SETTINGS, T0, World, request, view_state

REFRESHED = StandingsRefreshed(views=["competition_standings"], competition_ids=[7], finished_at=T0)


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """An HTTP endpoint on 127.0.0.1 whose listen backlog completes TCP handshakes and
    which never accepts or answers: every request waits for its read timeout."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def events_client(endpoint_url: str) -> Any:
    return boto3.session.Session().client(
        "events",
        endpoint_url=endpoint_url,
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=EVENTS_CLIENT_CONFIG,
    )


def test_a_refresh_whose_event_cannot_be_delivered_completes_within_the_invocation(
    silent_endpoint: str,
) -> None:
    # Given a refresh that changes competition 7's standings, 21 s of invocation left
    # and an EventBridge endpoint that never answers
    world = World(
        store=InMemoryRefreshStore({v: view_state(v) for v in REFRESHABLE_VIEWS}, duration_ms=40)
    )
    changed = ViewRefreshDone(
        finished_at=T0 + timedelta(seconds=11), duration_ms=40, changed=True, competition_ids=[7]
    )
    client = events_client(silent_endpoint)
    sends: list[str] = []
    client.meta.events.register("before-send.events.PutEvents", lambda **_: sends.append("send"))
    world.store.refresh_view = _refreshing(world.store.refresh_view, changed)  # type: ignore[method-assign]
    deps = RefreshDependencies(
        settings=SETTINGS,
        store=world.store,
        jobs=world.jobs,
        queues=world.queues,
        events=StandingsEvents(client),
    )
    left_ms = RESERVE_MS + 16_000
    deadline = time.monotonic() + left_ms / 1000

    # When the batch runs
    result = refresh_views(
        received_messages(request()),
        deps,
        remaining_ms=lambda: int((deadline - time.monotonic()) * 1000),
    )

    # Then one put_events call is tried (16 s fit one call of at most 10 s, not two), the
    # event is given up, the request still completes, and the reserve is untouched
    assert result.event_published is False
    assert len(sends) == 2  # botocore's two attempts of the one call, each timing out
    assert {r.disposition for r in result.records.values()} == {Disposition.COMPLETED}
    assert deadline - time.monotonic() > RESERVE_MS / 1000


def test_no_put_events_call_starts_that_could_end_after_the_budget() -> None:
    # Given a client whose every call fails after taking 4 s (on a fake clock)
    clock = FakeClock(now=0.0)
    client = SlowFailingClient(clock, seconds=4.0)
    events = StandingsEvents(client, sleep=clock.sleep, clock=clock)

    # When publishing with 15 s of budget (one call may take up to 2 x (2 s + 3 s) = 10 s)
    published = events.publish(REFRESHED, budget_s=15.0)

    # Then it tries while a whole call still fits and stops before the budget is spent
    assert published is False
    assert client.calls == 2
    assert clock.now <= 15.0


@pytest.fixture
def no_aws_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A process with no AWS settings at all: no region, endpoint, profile or config file."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))


@pytest.mark.usefixtures("no_aws_configuration")
def test_no_region_leaves_the_event_unpublished_without_raising() -> None:
    # Given the default client, in a process that names no AWS region
    clock = FakeClock(now=0.0)
    events = StandingsEvents(sleep=clock.sleep, clock=clock)

    # When publishing
    published = events.publish(REFRESHED)

    # Then the event is given up at once (no client can be built, so nothing to retry),
    # and the reason is kept for the caller to tell
    assert published is False
    assert clock.now == 0.0
    assert isinstance(events.last_error, NoRegionError)


@pytest.mark.usefixtures("no_aws_configuration")
def test_a_malformed_endpoint_leaves_the_event_unpublished_without_raising(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the default client, with a region but an endpoint override that is no URL
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "not a url")
    events = StandingsEvents(sleep=FakeClock().sleep)

    # When publishing
    published = events.publish(REFRESHED)

    # Then the event is not published, and the reason names the endpoint
    assert published is False
    assert "Invalid endpoint" in str(events.last_error)


def test_a_call_failing_with_any_error_leaves_the_event_unpublished_without_raising() -> None:
    # Given a client whose put_events fails with an error botocore does not define
    clock = FakeClock(now=0.0)
    client = BrokenClient()
    events = StandingsEvents(client, sleep=clock.sleep, clock=clock)

    # When publishing
    published = events.publish(REFRESHED)

    # Then every attempt is made, the event is given up, and the reason is kept
    assert published is False
    assert client.calls == 3
    assert isinstance(events.last_error, TypeError)


def test_a_rejected_entry_is_retried_and_its_reason_kept() -> None:
    # Given a client that rejects every entry
    client = RejectingClient()
    events = StandingsEvents(client, sleep=FakeClock().sleep)

    # When publishing
    published = events.publish(REFRESHED)

    # Then the event is given up after every attempt, with EventBridge's reason
    assert published is False
    assert client.calls == 3
    assert str(events.last_error) == "ThrottlingException: Rate exceeded"


def test_a_publish_that_succeeds_clears_the_last_error() -> None:
    client = RejectingClient()
    events = StandingsEvents(client, sleep=FakeClock().sleep)
    assert events.publish(REFRESHED) is False
    client.rejecting = False
    assert events.publish(REFRESHED) is True
    assert events.last_error is None


def test_too_small_a_budget_tries_nothing_and_says_so() -> None:
    clock = FakeClock(now=0.0)
    client = SlowFailingClient(clock, seconds=4.0)
    assert (
        StandingsEvents(client, sleep=clock.sleep, clock=clock).publish(REFRESHED, budget_s=3.0)
        is False
    )
    assert client.calls == 0


class SlowFailingClient:
    def __init__(self, clock: FakeClock, *, seconds: float) -> None:
        self.clock = clock
        self.seconds = seconds
        self.calls = 0

    def put_events(self, **_: Any) -> dict[str, Any]:
        self.calls += 1
        self.clock.now += self.seconds
        raise EndpointConnectionError(endpoint_url="http://unreachable")


class BrokenClient:
    def __init__(self) -> None:
        self.calls = 0

    def put_events(self, **_: Any) -> dict[str, Any]:
        self.calls += 1
        raise TypeError("an error nobody foresaw")


class RejectingClient:
    def __init__(self) -> None:
        self.calls = 0
        self.rejecting = True

    def put_events(self, *, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls += 1
        if not self.rejecting:
            return {"FailedEntryCount": 0, "Entries": [{"EventId": "1"} for _ in Entries]}
        rejected = {"ErrorCode": "ThrottlingException", "ErrorMessage": "Rate exceeded"}
        return {"FailedEntryCount": len(Entries), "Entries": [rejected for _ in Entries]}


def _refreshing(refresh_view: Any, done: ViewRefreshDone) -> Any:
    """The in-memory store's refresh_view, reporting `done` for competition_standings."""

    def refresh(view_name: str, decide: Any, **kwargs: Any) -> Any:
        state, ran = refresh_view(view_name, decide, **kwargs)
        if ran is not None and view_name == "competition_standings":
            return state, done
        return state, ran

    return refresh
