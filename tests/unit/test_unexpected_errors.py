"""No exception of any type escapes an SQS handler as an invocation error (SPEC section 4):
an error nobody foresaw fails the batch's unsettled records as transient, with the 5 s /
10 s backoff and a log line naming it, instead of the whole batch waiting out the 720 s
visibility timeout. What was already settled (dead-lettered, committed) stays settled."""

from __future__ import annotations

import json
from typing import Any

import pytest

from calculate_points import app as points_app
from devstack.lambda_context import LambdaContext
from matchstats.config import PointsSettings, RefreshSettings
from matchstats.points import PointsDependencies
from matchstats.refresh import RefreshDependencies
from refresh_views import app as refresh_app
from testkit.events import points_bodies, sqs_event
from tests.fakes import ExplodingQueues, InMemoryJobStore, InMemoryPointsStore, InMemoryQueues

POINTS_QUEUE = "http://sqs.local/PointsQueue"
REFRESH_QUEUE = "http://sqs.local/RefreshQueue"
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


def points_deps(store: InMemoryPointsStore, queues: InMemoryQueues) -> PointsDependencies:
    settings = PointsSettings.from_env(
        {
            "DATABASE_URL": "postgresql://unused",
            "POINTS_QUEUE_URL": POINTS_QUEUE,
            "REFRESH_QUEUE_URL": REFRESH_QUEUE,
            "DEAD_LETTER_QUEUE_URL": "http://sqs.local/PointsDeadLetterQueue",
        }
    )
    return PointsDependencies(
        settings=settings, store=store, jobs=InMemoryJobStore(), queues=queues
    )


def invoke_points(event: dict[str, Any], deps: PointsDependencies) -> dict[str, Any]:
    context = LambdaContext.for_invocation("CalculatePointsFunction", 120)
    return points_app.lambda_handler(event, context, deps=deps)


def failed_ids(response: dict[str, Any]) -> set[str]:
    return {item["itemIdentifier"] for item in response["batchItemFailures"]}


@pytest.mark.parametrize(
    "error",
    [
        NotImplementedError("can't parse timestamptz with DateStyle 'SQL, DMY'"),
        RuntimeError("anything"),
        ValueError("anything else"),
    ],
    ids=["NotImplementedError", "RuntimeError", "ValueError"],
)
def test_an_unexpected_error_retries_the_whole_batch_with_backoff(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a points store that raises an error of a type nobody handles
    queues = InMemoryQueues()
    event = sqs_event(points_bodies(1, 2, 3), receive_count=2)

    # When a batch of three arrives (their second receive)
    response = invoke_points(event, points_deps(InMemoryPointsStore(fail_with=error), queues))

    # Then the handler returns instead of raising, reporting all three for retry
    ids = {record["messageId"] for record in event["Records"]}
    assert failed_ids(response) == ids
    # ...each with its backoff (10 s after the second receive), not the 720 s timeout
    assert (
        sorted((url, t.visibility_timeout_s) for url, t in queues.retries)
        == [(POINTS_QUEUE, 10)] * 3
    )
    # ...and a log line names what happened
    assert type(error).__name__ in caplog.text
    assert "unexpected error" in caplog.text


def test_after_an_unexpected_error_what_was_settled_stays_settled() -> None:
    # Given a batch with a poison message, whose points commit, and whose refresh request
    # then blows up with an error nobody foresaw
    queues = ExplodingQueues(REFRESH_QUEUE)
    event = sqs_event([*points_bodies(1, 2), "not json"])
    poison_id = event["Records"][2]["messageId"]

    # When it is processed
    response = invoke_points(event, points_deps(InMemoryPointsStore(), queues))

    # Then the poison went to the dead-letter queue once and is not retried
    dead = [message for url, message in queues.sent if "DeadLetter" in url]
    assert [message.body for message in dead] == ["not json"]
    assert poison_id not in failed_ids(response)
    # ...and the two whose refresh was never requested are retried with backoff
    assert failed_ids(response) == {r["messageId"] for r in event["Records"][:2]}
    assert [t.visibility_timeout_s for _, t in queues.retries] == [5, 5]


class RaisingRefreshStore:
    def refresh_view(self, view_name: str, decide: Any, **_: Any) -> Any:
        raise NotImplementedError("can't parse timestamptz with DateStyle 'SQL, DMY'")


def test_the_refresh_handler_retries_its_batch_after_an_unexpected_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a refresh store that raises an error nobody handles
    queues = InMemoryQueues()
    settings = RefreshSettings.from_env(
        {
            "DATABASE_URL": "postgresql://unused",
            "REFRESH_QUEUE_URL": REFRESH_QUEUE,
            "DEAD_LETTER_QUEUE_URL": "http://sqs.local/RefreshDeadLetterQueue",
        }
    )
    deps = RefreshDependencies(
        settings=settings,
        store=RaisingRefreshStore(),
        jobs=InMemoryJobStore(),
        queues=queues,
    )
    body = json.dumps({"scope": "all", "reason": "schedule", "requestedAt": "2026-12-01T00:00Z"})
    event = sqs_event([body, body], template="refresh-views.json")

    # When the batch is processed
    context = LambdaContext.for_invocation("RefreshViewsFunction", 120)
    response = refresh_app.lambda_handler(event, context, deps=deps)

    # Then both requests are retried after 5 s, and the log names the error
    assert failed_ids(response) == {record["messageId"] for record in event["Records"]}
    assert [(url, t.visibility_timeout_s) for url, t in queues.retries] == [(REFRESH_QUEUE, 5)] * 2
    assert "NotImplementedError" in caplog.text
