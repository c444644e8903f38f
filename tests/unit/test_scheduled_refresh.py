"""ScheduledRefreshFunction's handler with an in-memory queue: every schedule payload it
may receive asks for a refresh of every view (reason schedule); anything else is refused
with an error that says what was expected."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devstack.lambda_context import LambdaContext
from matchstats.config import RefreshRequestSettings
from matchstats.errors import InvalidMessageError, QueueUnavailableError
from matchstats.messages import RefreshReason, RefreshScope, parse_refresh_message
from scheduled_refresh import app
from tests.factories import load_event
from tests.fakes import InMemoryQueues

ROOT = Path(__file__).resolve().parents[2]
# Invocations that publish no metric (refusals, failures) make Powertools warn; expected.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")
EVENT_FILE = "scheduled-refresh.json"
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/RefreshQueue"


def schedule_dependencies(queues: InMemoryQueues) -> app.ScheduleDependencies:
    settings = RefreshRequestSettings.from_env({"REFRESH_QUEUE_URL": QUEUE_URL})
    return app.ScheduleDependencies(settings=settings, queues=queues)


def scheduler_input(**changes: Any) -> dict[str, Any]:
    """What template.yaml's schedule sends, its context attributes filled in."""
    payload = {
        "source": "matchstats.schedule",
        "scheduledTime": "2026-11-28T12:15:00Z",
        "executionId": "d32c5kddcf5bb8c3",
    }
    return {**payload, **changes}


def scheduler_default_event() -> dict[str, Any]:
    """What EventBridge Scheduler sends a Lambda target when the schedule sets no Input:
    the Scheduled Event shape, from aws.scheduler, its detail the string "{}"."""
    event = copy.deepcopy(load_event(EVENT_FILE))
    event["source"] = "aws.scheduler"
    event["resources"] = ["arn:aws:scheduler:us-east-1:123456789012:schedule/default/refresh"]
    event["detail"] = "{}"
    return event


def invoke(event: dict[str, Any], queues: InMemoryQueues) -> dict[str, Any]:
    context = LambdaContext.for_invocation("ScheduledRefreshFunction", timeout_s=30)
    result: dict[str, Any] = app.lambda_handler(event, context, deps=schedule_dependencies(queues))
    return result


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(load_event(EVENT_FILE), id="EventBridge rule (events/scheduled-refresh.json)"),
        pytest.param(scheduler_input(), id="EventBridge Scheduler with the template's Input"),
        pytest.param(
            scheduler_input(scheduledTime=None, executionId=None, attemptNumber="2"),
            id="EventBridge Scheduler, attributes missing or extra",
        ),
        pytest.param(scheduler_default_event(), id="EventBridge Scheduler without Input"),
    ],
)
def test_every_schedule_payload_queues_a_refresh_of_every_view(event: dict[str, Any]) -> None:
    # Given a schedule tick in one of the shapes a schedule delivers
    queues = InMemoryQueues()

    # When the handler runs
    result = invoke(event, queues)

    # Then one refresh of every view is queued, now, for the schedule
    assert result == {"status": "enqueued", "scope": "all", "messageId": "message-1"}
    [(url, message)] = queues.sent
    request = parse_refresh_message(message.body)
    assert url == QUEUE_URL
    assert (request.scope, request.reason, request.force) == (
        RefreshScope.ALL,
        RefreshReason.SCHEDULE,
        False,
    )
    assert message.delay_seconds == 0


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        pytest.param({}, "Unable to extract tag using discriminator 'source'", id="empty"),
        pytest.param(
            {"source": "aws.s3"},
            "does not match any of the expected tags: 'matchstats.schedule', 'aws.events'",
            id="another source",
        ),
        pytest.param(
            {**load_event(EVENT_FILE), "detail-type": "EC2 Instance State-change Notification"},
            "detail-type: Input should be 'Scheduled Event'",
            id="another EventBridge event",
        ),
        pytest.param(
            scheduler_input(scheduledTime="not a time"),
            "scheduledTime: Input should be a valid datetime",
            id="a garbled Input",
        ),
        pytest.param(
            load_event("refresh-api.json"), "Unable to extract tag", id="an API Gateway event"
        ),
    ],
)
def test_an_unknown_event_is_refused_saying_what_was_expected(
    event: dict[str, Any], problem: str
) -> None:
    # Given an event that is not a schedule tick
    queues = InMemoryQueues()

    # When the handler runs, Then it fails naming both accepted shapes and the problem
    with pytest.raises(InvalidMessageError) as caught:
        invoke(event, queues)
    message = str(caught.value)
    assert message.startswith("not a schedule event (expected {'source': 'matchstats.schedule'}")
    assert "'Scheduled Event'" in message
    assert problem in message
    # ...and nothing is queued
    assert queues.sent == []


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            scheduler_input(),
            {
                "trigger": "matchstats.schedule",
                "scheduledTime": "2026-11-28T12:15:00+00:00",
                "executionId": "d32c5kddcf5bb8c3",
            },
        ),
        (
            load_event(EVENT_FILE),
            {
                "trigger": "aws.events",
                "scheduledTime": "2026-11-28T12:00:00+00:00",
                "eventId": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
            },
        ),
    ],
)
def test_the_log_names_the_tick(event: dict[str, Any], expected: dict[str, str]) -> None:
    # Given a tick in either shape
    # When it is parsed and described for the log
    described = app.describe_trigger(app.parse_trigger(event))

    # Then the log can tell one tick (and one retry of it) from another
    assert described == expected


def test_an_unreachable_queue_fails_the_invocation_so_lambda_retries_it() -> None:
    # Given a refresh queue that cannot be reached
    queues = InMemoryQueues(reachable=False)

    # When a tick arrives, Then the invocation fails (the asynchronous invoke is retried)
    with pytest.raises(QueueUnavailableError):
        invoke(load_event(EVENT_FILE), queues)


def test_the_handler_never_imports_a_database_driver() -> None:
    # Given a fresh interpreter with the Lambda layer and the functions on its path
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            str(ROOT / part) for part in ("layers/matchstats", "functions")
        ),
    }
    check = (
        "import scheduled_refresh.app, sys; assert 'psycopg' not in sys.modules, 'psycopg imported'"
    )

    # When it imports the handler
    result = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [sys.executable, "-c", check], env=environment, capture_output=True, text=True, check=False
    )

    # Then psycopg was not imported, directly or through matchstats
    assert result.returncode == 0, result.stderr
