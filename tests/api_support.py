"""RefreshApiFunction's handler with dependencies handed in the way Powertools documents
for `Depends`: through the resolver's dependency_overrides, for one invocation; and the
requests, dependencies and answers the API tests build around it."""

from __future__ import annotations

import copy
import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from devstack.lambda_context import LambdaContext
from matchstats.api import ApiDependencies
from matchstats.config import ApiSettings
from matchstats.cron_secret import CronSecret, static_fetcher
from matchstats.messages import RefreshReason, RefreshScope, parse_refresh_message
from matchstats.observability import logger
from refresh_api import app
from testkit.events import load_event
from tests.fakes import InMemoryQueues

EVENT_FILE = "refresh-api.json"
# The placeholder that events/refresh-api.json and env.json share.
SECRET = "local-dev-cron-secret"
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/RefreshQueue"


def invoke_api(event: dict[str, Any], deps: ApiDependencies) -> dict[str, Any]:
    """The handler's raw answer to `event`, with `deps` in place of the environment's."""
    context = LambdaContext.for_invocation("RefreshApiFunction", timeout_s=10)
    app.app.dependency_overrides[app.dependencies] = lambda: deps
    try:
        return app.lambda_handler(event, context)
    finally:
        app.app.dependency_overrides.pop(app.dependencies, None)


def api_dependencies(
    queues: InMemoryQueues | None = None,
    cron_secret: CronSecret | None = None,
    *,
    secret: str = SECRET,
) -> ApiDependencies:
    """The API's dependencies with `secret` as CRON_SECRET (or `cron_secret` in its place)
    and an in-memory RefreshQueue."""
    settings = ApiSettings.from_env({"REFRESH_QUEUE_URL": QUEUE_URL, "CRON_SECRET": secret})
    return ApiDependencies(
        settings=settings,
        cron_secret=cron_secret or CronSecret(static_fetcher(secret)),
        queues=queues if queues is not None else InMemoryQueues(),
    )


_KEEP = object()


def api_event(
    *,
    method: str = "POST",
    path: str = "/cron/update-stats",
    authorization: str | object | None = _KEEP,
    body: str | object | None = _KEEP,
    content_type: str | object | None = _KEEP,
) -> dict[str, Any]:
    """events/refresh-api.json with some parts changed; None removes a header or the body."""
    event = copy.deepcopy(load_event(EVENT_FILE))
    event["httpMethod"] = event["requestContext"]["httpMethod"] = method
    event["path"] = event["resource"] = event["requestContext"]["resourcePath"] = path
    for header, value in (("Authorization", authorization), ("Content-Type", content_type)):
        if value is _KEEP:
            continue
        event["headers"].pop(header, None)
        event["multiValueHeaders"].pop(header, None)
        if value is not None:
            event["headers"][header] = value
            event["multiValueHeaders"][header] = [value]
    if body is not _KEEP:
        event["body"] = body
    return event


@dataclass
class Answer:
    status: int
    headers: dict[str, list[str]]
    body: dict[str, Any]


def invoke(event: dict[str, Any], deps: ApiDependencies) -> Answer:
    response = invoke_api(event, deps)
    return Answer(
        status=int(response["statusCode"]),
        headers=dict(response["multiValueHeaders"]),
        body=json.loads(response["body"]),
    )


def queued(queues: InMemoryQueues) -> list[tuple[RefreshScope, RefreshReason, int]]:
    """(scope, reason, delay) of every refresh request sent to RefreshQueue."""
    assert {url for url, _ in queues.sent} <= {QUEUE_URL}
    return [
        (parsed.scope, parsed.reason, message.delay_seconds)
        for _, message in queues.sent
        for parsed in [parse_refresh_message(message.body)]
    ]


@contextmanager
def every_log_line() -> Iterator[io.StringIO]:
    """Everything the function logs, at DEBUG: the Powertools logger's own handler is
    pointed at a buffer, and a handler on the root logger takes every other library's."""
    buffer = io.StringIO()
    own = logger.registered_handler
    assert isinstance(own, logging.StreamHandler)
    previous_stream = own.setStream(buffer)
    root_handler = logging.StreamHandler(buffer)
    root = logging.getLogger()
    root.addHandler(root_handler)
    watched = [logging.getLogger(name) for name in ("aws_lambda_powertools", "botocore", "")]
    levels = [(watched_logger, watched_logger.level) for watched_logger in watched]
    own_level = logger.log_level
    logger.setLevel(logging.DEBUG)
    for watched_logger in watched:
        watched_logger.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        own.setStream(previous_stream)
        root.removeHandler(root_handler)
        logger.setLevel(own_level)
        for watched_logger, level in levels:
            watched_logger.setLevel(level)
