"""The two refresh triggers against moto's SQS and Secrets Manager, configured from the
environment as in AWS: the sample events in events/ put a refresh request on the
template's RefreshQueue, and the API reads a rotated secret without a redeploy."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from devstack.lambda_context import LambdaContext
from devstack.sqs import LocalSqs
from matchstats.messages import RefreshReason, RefreshScope, parse_refresh_message
from refresh_api import app as refresh_api
from scheduled_refresh import app as scheduled_refresh
from testkit.events import load_event
from tests.template_queues import TemplateQueues

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stack(
    monkeypatch: pytest.MonkeyPatch, local_sqs: LocalSqs, sqs_client: Any
) -> Iterator[TemplateQueues]:
    """Fresh copies of the template's queues, boto3 pointed at the local services, and
    both functions' cached dependencies rebuilt from the environment each test."""
    stack = TemplateQueues.fresh_queues(sqs_client)
    environment = {
        **local_sqs.environment(),
        "REFRESH_QUEUE_URL": stack.urls["RefreshQueue"],
        "POWERTOOLS_METRICS_NAMESPACE": "MatchstatsTest",
        "POWERTOOLS_SERVICE_NAME": "matchstats",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    for name in ("CRON_SECRET", "CRON_SECRET_ARN"):
        monkeypatch.delenv(name, raising=False)
    scheduled_refresh.dependencies.cache_clear()
    refresh_api.dependencies.cache_clear()
    yield stack
    scheduled_refresh.dependencies.cache_clear()
    refresh_api.dependencies.cache_clear()


def refresh_requests(stack: TemplateQueues) -> list[tuple[str, RefreshScope, RefreshReason]]:
    """(message id, scope, reason) of every request now on RefreshQueue, consumed."""
    return [
        (message["MessageId"], request.scope, request.reason)
        for message in stack.drain_all("RefreshQueue")
        for request in [parse_refresh_message(message["Body"])]
    ]


def call_api(event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    context = LambdaContext.for_invocation("RefreshApiFunction", timeout_s=10)
    response = refresh_api.lambda_handler(event, context)
    return int(response["statusCode"]), json.loads(response["body"])


def with_secret(secret: str) -> dict[str, Any]:
    event = load_event("refresh-api.json")
    event["headers"]["Authorization"] = f"Bearer {secret}"
    event["multiValueHeaders"]["Authorization"] = [f"Bearer {secret}"]
    return event


def test_the_schedule_event_puts_a_refresh_of_every_view_on_the_refresh_queue(
    stack: TemplateQueues,
) -> None:
    # Given ScheduledRefreshFunction's environment and the sample Scheduled Event
    event = load_event("scheduled-refresh.json")
    context = LambdaContext.for_invocation("ScheduledRefreshFunction", timeout_s=30)

    # When the handler runs
    result = scheduled_refresh.lambda_handler(event, context)

    # Then RefreshQueue holds exactly the request it reported, for every view
    assert result["status"] == "enqueued"
    assert refresh_requests(stack) == [
        (result["messageId"], RefreshScope.ALL, RefreshReason.SCHEDULE)
    ]


def test_the_api_event_with_the_local_secret_puts_a_refresh_on_the_refresh_queue(
    stack: TemplateQueues, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given RefreshApiFunction configured with env.json's local secret
    local = json.loads((ROOT / "env.json").read_text(encoding="utf-8"))["RefreshApiFunction"]
    monkeypatch.setenv("CRON_SECRET", local["CRON_SECRET"])

    # When the sample request (which carries the same placeholder) arrives
    status, body = call_api(load_event("refresh-api.json"))

    # Then it is accepted and RefreshQueue holds the request it reported
    assert (status, body["status"], body["scope"]) == (202, "accepted", "all")
    assert refresh_requests(stack) == [(body["messageId"], RefreshScope.ALL, RefreshReason.API)]


def test_a_secret_rotated_in_secrets_manager_is_used_without_a_redeploy(
    stack: TemplateQueues, local_sqs: LocalSqs, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the cron secret in Secrets Manager, as the deployed function reads it
    secrets = boto3.session.Session().client(
        "secretsmanager",
        endpoint_url=local_sqs.endpoint_url,
        region_name=local_sqs.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    first, rotated = uuid.uuid4().hex, uuid.uuid4().hex
    arn = secrets.create_secret(Name=f"cron-{uuid.uuid4().hex[:8]}", SecretString=first)["ARN"]
    monkeypatch.setenv("CRON_SECRET_ARN", arn)
    # ...read once, so that it sits in the function's cache
    assert call_api(with_secret(first))[0] == 202

    # When the secret is rotated and the caller switches to the new one at once
    secrets.put_secret_value(SecretId=arn, SecretString=rotated)
    new_status, new_body = call_api(with_secret(rotated))
    old_status, _ = call_api(with_secret(first))
    wrong_status, _ = call_api(with_secret("a-guess"))

    # Then the new secret is accepted (well within the cache's 5 minutes), the old one
    # and a guess are not, and only the two accepted requests reached the queue
    assert (new_status, old_status, wrong_status) == (202, 401, 401)
    requests = refresh_requests(stack)
    assert [(scope, reason) for _, scope, reason in requests] == [
        (RefreshScope.ALL, RefreshReason.API)
    ] * 2
    assert new_body["messageId"] in {message_id for message_id, _, _ in requests}
