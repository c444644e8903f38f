"""ScheduledRefreshFunction's handler with an in-memory queue: every event it may receive,
the schedule's, SAM CLI's or a person's, asks for a refresh of every view (reason
schedule), and the log says which shape it saw without repeating an unknown event's
values."""

from __future__ import annotations

import copy
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.lambda_context import LambdaContext
from matchstats.config import RefreshRequestSettings
from matchstats.errors import QueueUnavailableError
from matchstats.messages import RefreshReason, RefreshScope, parse_refresh_message
from matchstats.observability import logger
from scheduled_refresh import app
from testkit.events import load_event
from tests.fakes import InMemoryQueues

ROOT = Path(__file__).resolve().parents[2]
# Invocations that publish no metric (refusals, failures) make Powertools warn; expected.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")
EVENT_FILE = "scheduled-refresh.json"
# `sam local generate-event cloudwatch scheduled-event`, as SAM CLI prints it.
SAM_GENERATED_FILE = "scheduled-refresh-sam-generated.json"
# What `sam local invoke` sends without an event.
EMPTY_FILE = "scheduled-refresh-empty.json"
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


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Reads the function's log lines so far (Powertools JSON, as CloudWatch keeps them)."""
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    finally:
        handler.setStream(previous)


def invoke(event: Any, queues: InMemoryQueues) -> dict[str, Any]:
    context = LambdaContext.for_invocation("ScheduledRefreshFunction", timeout_s=30)
    result: dict[str, Any] = app.lambda_handler(event, context, deps=schedule_dependencies(queues))
    return result


def scheduled_event_with_only(*fields: str) -> dict[str, Any]:
    """The sample Scheduled Event cut down to `fields`, as a hand-made copy may be."""
    return {name: value for name, value in load_event(EVENT_FILE).items() if name in fields}


SECRET = "pasted-secret-value-1234"
# Every shape the schedule, SAM CLI or a person may send, with what the log says of it.
SHAPES = [
    pytest.param(
        load_event(EVENT_FILE),
        {
            "eventShape": "scheduled-event",
            "eventSource": "aws.events",
            "scheduledTime": "2026-11-28T12:00:00Z",
            "eventId": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/matchstats-ScheduledRefresh"],
        },
        id="EventBridge rule (events/scheduled-refresh.json)",
    ),
    pytest.param(
        load_event(SAM_GENERATED_FILE),
        {
            "eventShape": "scheduled-event",
            "eventSource": "aws.events",
            "scheduledTime": "1970-01-01T00:00:00Z",
            "eventId": "cdc73f9d-aea9-11e3-9d5a-835b769c0d9c",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/ExampleRule"],
        },
        id="sam local generate-event cloudwatch scheduled-event (no version)",
    ),
    pytest.param(
        scheduled_event_with_only("source", "detail-type"),
        {"eventShape": "scheduled-event", "eventSource": "aws.events"},
        id="Scheduled Event with its optional fields left out",
    ),
    pytest.param(
        scheduler_default_event(),
        {
            "eventShape": "scheduled-event",
            "eventSource": "aws.scheduler",
            "scheduledTime": "2026-11-28T12:00:00Z",
            "eventId": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
            "resources": ["arn:aws:scheduler:us-east-1:123456789012:schedule/default/refresh"],
        },
        id="EventBridge Scheduler without Input",
    ),
    pytest.param(
        scheduler_input(),
        {
            "eventShape": "scheduler-input",
            "eventSource": "matchstats.schedule",
            "scheduledTime": "2026-11-28T12:15:00Z",
            "executionId": "d32c5kddcf5bb8c3",
        },
        id="EventBridge Scheduler with the template's Input",
    ),
    pytest.param(
        scheduler_input(scheduledTime=None, executionId=None, attemptNumber="2"),
        {"eventShape": "scheduler-input", "eventSource": "matchstats.schedule"},
        id="EventBridge Scheduler, attributes missing or extra",
    ),
    pytest.param({}, {"eventShape": "empty"}, id="{} (sam local invoke without an event)"),
    pytest.param(
        load_event(EMPTY_FILE), {"eventShape": "empty"}, id="events/scheduled-refresh-empty.json"
    ),
    pytest.param(
        {"source": "aws.s3", "token": SECRET},
        {
            "eventShape": "unknown",
            "eventType": "object",
            "eventKeys": ["source", "token"],
            "eventKeyCount": 2,
        },
        id="another source",
    ),
    pytest.param(
        {**load_event(EVENT_FILE), "detail-type": "EC2 Instance State-change Notification"},
        {
            "eventShape": "unknown",
            "eventType": "object",
            "eventKeys": [
                "account",
                "detail",
                "detail-type",
                "id",
                "region",
                "resources",
                "source",
                "time",
                "version",
            ],
            "eventKeyCount": 9,
        },
        id="another EventBridge event",
    ),
    pytest.param(
        scheduler_input(scheduledTime=SECRET),
        {
            "eventShape": "unknown",
            "eventType": "object",
            "eventKeys": ["executionId", "scheduledTime", "source"],
            "eventKeyCount": 3,
        },
        id="a garbled Input",
    ),
    pytest.param(
        {f"key{n:02d}": SECRET for n in range(25)},
        {
            "eventShape": "unknown",
            "eventType": "object",
            "eventKeys": [f"key{n:02d}" for n in range(20)],
            "eventKeyCount": 25,
        },
        id="an object with many keys",
    ),
    pytest.param(
        {"x" * 100: SECRET},
        {
            "eventShape": "unknown",
            "eventType": "object",
            "eventKeys": ["x" * 64],
            "eventKeyCount": 1,
        },
        id="a long key, cut",
    ),
    pytest.param(
        scheduler_input(executionId="e" * 129),
        {
            "eventShape": "unknown",
            "eventType": "object",
            "eventKeys": ["executionId", "scheduledTime", "source"],
            "eventKeyCount": 3,
        },
        id="an Input with an overlong id",
    ),
    pytest.param([SECRET], {"eventShape": "unknown", "eventType": "array"}, id="a list"),
    pytest.param(SECRET, {"eventShape": "unknown", "eventType": "string"}, id="a string"),
    pytest.param(None, {"eventShape": "unknown", "eventType": "null"}, id="null"),
    pytest.param(42, {"eventShape": "unknown", "eventType": "number"}, id="a number"),
    pytest.param(True, {"eventShape": "unknown", "eventType": "boolean"}, id="true"),
]


@pytest.mark.parametrize(("event", "logged"), SHAPES)
def test_every_event_queues_a_refresh_of_every_view(event: Any, logged: dict[str, Any]) -> None:
    # Given an event of any shape: a schedule's, SAM CLI's, or a person's
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


@pytest.mark.parametrize(("event", "logged"), SHAPES)
def test_the_log_names_the_shape_and_the_tick_but_never_an_unknown_events_values(
    event: Any, logged: dict[str, Any], log_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    # Given an event of any shape
    # When the handler runs
    invoke(event, InMemoryQueues())

    # Then its log line says which shape it saw, with the fields that tell one tick (and
    # one retry of it) from another, or, for an unknown event, its type and keys only
    lines = log_lines()
    [line] = [line for line in lines if line["message"] == "refresh requested"]
    assert {key: line.get(key) for key in logged} == logged
    assert line["messageId"] == "message-1"
    # ...and no other field of the event
    absent = {"eventSource", "scheduledTime", "executionId", "eventId", "resources"}
    absent |= {"eventType", "eventKeys", "eventKeyCount"}
    assert [key for key in absent - set(logged) if key in line] == []
    assert SECRET not in json.dumps(lines)


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
