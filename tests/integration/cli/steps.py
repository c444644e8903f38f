"""The steps the `matchstats` command's tests share: running the command as the operator
does, and playing the app and the points function to give it something to show."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from calculate_points import app
from devstack.esm import EventSourceMapping
from devstack.lambda_context import LambdaContext
from matchstats.queues import pack_requests
from ops.aws import Aws
from ops.cli import main
from testkit.events import points_bodies, sqs_event
from testkit.seed import Season, create_season
from tests.template_queues import TemplateQueues

QUEUES = ("PointsQueue", "PointsDeadLetterQueue", "RefreshQueue", "RefreshDeadLetterQueue")
# What must never reach the operator's terminal as is: C0 and C1 controls but tab and
# newline, DEL, bidirectional controls, and lone surrogates (undecodable bytes of argv).
UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


def cli(capsys: pytest.CaptureFixture[str], *argv: str, aws: Aws | None = None) -> Run:
    capsys.readouterr()  # drop what earlier steps (handlers' logs) printed
    code = main(list(argv), aws=aws)
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


def assert_printable(*runs: Run) -> None:
    """No run wrote a control character, a bidirectional control or a lone surrogate."""
    for run in runs:
        assert not UNPRINTABLE.search(run.out), run.out
        assert not UNPRINTABLE.search(run.err), run.err


def season(db: psycopg.Connection, competitions: int = 1, teams: int = 8) -> Season:
    return create_season(db, competitions=competitions, competitors_per_competition=teams)


def invoke_points(bodies: list[str]) -> None:
    """CalculatePointsFunction invoked directly, 10 records an event, as Lambda would."""
    for start in range(0, len(bodies), 10):
        context = LambdaContext.for_invocation("CalculatePointsFunction", 120)
        app.lambda_handler(sqs_event(bodies[start : start + 10]), context)


def consume_points(stack: TemplateQueues) -> None:
    """CalculatePointsFunction behind its event source mapping until PointsQueue is empty."""
    with EventSourceMapping(
        stack.sqs,
        stack.urls["PointsQueue"],
        stack.arns["PointsQueue"],
        app.lambda_handler,
        maximum_concurrency=2,
        function_name="CalculatePointsFunction",
        timeout_s=120,
    ) as mapping:
        mapping.drain(timeout_s=30)


def dead_letter_points(db: psycopg.Connection, match_ids: list[int]) -> None:
    """The app marks matches completed before their scores are in (bad data); the points
    function dead-letters each message with the reason attached."""
    db.execute(
        "UPDATE matches SET status = 'completed', score_version = score_version + 1"
        " WHERE id = ANY(%s)",
        (match_ids,),
    )
    invoke_points(points_bodies(*match_ids))


def peek(stack: TemplateQueues, queue: str) -> list[dict[str, Any]]:
    """Every message on `queue`, made visible again afterwards (for a dead-letter queue,
    whose receive counts do not matter)."""
    messages: list[dict[str, Any]] = []
    while batch := stack.sqs.receive_message(
        QueueUrl=stack.urls[queue],
        MaxNumberOfMessages=10,
        VisibilityTimeout=30,
        MessageAttributeNames=["All"],
    ).get("Messages", []):
        messages.extend(batch)
    for request in pack_requests(messages):
        stack.sqs.change_message_visibility_batch(
            QueueUrl=stack.urls[queue],
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for i, m in enumerate(request)
            ],
        )
    return messages


def bodies(messages: list[dict[str, Any]]) -> list[str]:
    return [m["Body"] for m in messages]
