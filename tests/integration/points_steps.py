"""How the points tests deliver messages to CalculatePointsFunction: invoked directly with
a Lambda context, with a batch received from PointsQueue as the event source mapping
hands it over, or behind an event source mapping."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from calculate_points import app
from devstack.esm import EventSourceMapping
from devstack.lambda_context import LambdaContext
from devstack.lambda_sqs import batch_item_failures, lambda_sqs_record
from tests.template_queues import TemplateQueues

FUNCTION_TIMEOUT_S = 120


def context(timeout_s: float = FUNCTION_TIMEOUT_S) -> LambdaContext:
    return LambdaContext.for_invocation("CalculatePointsFunction", timeout_s)


def receive_batch(stack: TemplateQueues, count: int) -> list[dict[str, Any]]:
    """Receives exactly `count` messages from PointsQueue as one batch."""
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while len(messages) < count and time.monotonic() < deadline:
        messages += stack.sqs.receive_message(
            QueueUrl=stack.urls["PointsQueue"],
            MaxNumberOfMessages=min(10, count - len(messages)),
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            WaitTimeSeconds=1,
        ).get("Messages", [])
    assert len(messages) == count, f"received {len(messages)} of {count} messages"
    return messages


def invoke_batch(
    stack: TemplateQueues, messages: list[dict[str, Any]], timeout_s: float = 120
) -> set[str]:
    """Invokes the handler as the event source mapping would and deletes the successes;
    returns the ids of the records the handler reported failed."""
    event = {
        "Records": [lambda_sqs_record(m, stack.arns["PointsQueue"], "us-east-1") for m in messages]
    }
    response = app.lambda_handler(event, context(timeout_s))
    ids = [m["MessageId"] for m in messages]
    failed = batch_item_failures(response, ids)
    assert failed is not None, f"invalid batch response {response}"
    stack.delete("PointsQueue", [m for m in messages if m["MessageId"] not in failed])
    return set(failed)


def mapping(
    stack: TemplateQueues, handler: Callable[..., Any], concurrency: int = 5
) -> EventSourceMapping:
    return EventSourceMapping(
        stack.sqs,
        stack.urls["PointsQueue"],
        stack.arns["PointsQueue"],
        handler,
        batch_size=10,
        batching_window_s=0.2,
        maximum_concurrency=concurrency,
        function_name="CalculatePointsFunction",
        timeout_s=FUNCTION_TIMEOUT_S,
    )
