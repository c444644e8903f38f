"""POST /cron/update-stats (SPEC section 7) through RefreshApiFunction's handler, with an
in-memory queue and secret store: who gets a refresh queued, who gets 401, 400, 404, 405
or 503, and that the secret never reaches a log. The secret's rotation is
test_cron_secret.py's; the OpenAPI document test_openapi.py's."""

from __future__ import annotations

import io
import json

import pytest
from aws_lambda_powertools.utilities.parameters import GetParameterError

from matchstats.cron_secret import CronSecret, secrets_manager_fetcher
from matchstats.messages import RefreshReason, RefreshScope
from testkit.events import load_event
from tests.api_support import (
    EVENT_FILE,
    SECRET,
    api_dependencies,
    api_event,
    invoke,
    queued,
)
from tests.fakes import ExplodingQueues, FakeSecretsProvider, InMemoryQueues

# Invocations that publish no metric (refusals, failures) make Powertools warn; expected.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


# --- accepted ------------------------------------------------------------------------


def test_the_sample_event_queues_a_refresh_of_every_view_at_once() -> None:
    # Given the sample event: POST with the local secret and {"scope": "all"}
    queues = InMemoryQueues()

    # When it reaches the handler
    answer = invoke(load_event(EVENT_FILE), api_dependencies(queues))

    # Then it is accepted with the id of the one refresh request queued, without delay
    assert answer.status == 202
    assert answer.body == {"status": "accepted", "scope": "all", "messageId": "message-1"}
    assert queued(queues) == [(RefreshScope.ALL, RefreshReason.API, 0)]


@pytest.mark.parametrize("scope", list(RefreshScope))
def test_the_scope_given_is_the_scope_queued(scope: RefreshScope) -> None:
    # Given a request for one scope
    queues = InMemoryQueues()
    event = api_event(body=json.dumps({"scope": scope.value}))

    # When it is handled
    answer = invoke(event, api_dependencies(queues))

    # Then that scope is queued and echoed
    assert (answer.status, answer.body["scope"]) == (202, scope.value)
    assert queued(queues) == [(scope, RefreshReason.API, 0)]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(None, None), ("", None), ("{}", "application/json"), ("null", "application/json")],
)
def test_no_body_means_every_view(body: str | None, content_type: str | None) -> None:
    # Given a request without a scope
    queues = InMemoryQueues()
    event = api_event(body=body, content_type=content_type)

    # When it is handled
    answer = invoke(event, api_dependencies(queues))

    # Then every view is asked for
    assert (answer.status, answer.body["scope"]) == (202, "all")
    assert queued(queues) == [(RefreshScope.ALL, RefreshReason.API, 0)]


@pytest.mark.parametrize("scheme", ["bearer", "BEARER"])
def test_the_bearer_scheme_is_case_insensitive(scheme: str) -> None:
    # Given the right secret under the scheme in another case (RFC 7235)
    queues = InMemoryQueues()

    # When it is handled
    answer = invoke(api_event(authorization=f"{scheme} {SECRET}"), api_dependencies(queues))

    # Then it is accepted
    assert answer.status == 202
    assert len(queues.sent) == 1


# --- refused -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["Application/JSON", "APPLICATION/JSON; charset=UTF-8", "application/Json;charset=utf-8"],
)
def test_a_json_media_type_in_any_case_is_json(content_type: str) -> None:
    # Given a JSON body whose media type is spelt in another case (RFC 9110, 8.3.1:
    # media types compare case-insensitively)
    queues = InMemoryQueues()
    event = api_event(body=json.dumps({"scope": "competitor_stats"}), content_type=content_type)

    # When it is handled, Then it is read as JSON
    answer = invoke(event, api_dependencies(queues))
    assert (answer.status, answer.body["scope"]) == (202, "competitor_stats")
    assert queued(queues) == [(RefreshScope.COMPETITOR_STATS, RefreshReason.API, 0)]


def test_a_bug_answers_500_without_detail_and_is_logged(log_output: io.StringIO) -> None:
    # Given a queue client that fails in a way nobody foresaw
    # When an authorized request arrives
    answer = invoke(api_event(), api_dependencies(ExplodingQueues()))

    # Then the caller gets a plain 500, and the log has the error with its type
    assert answer.status == 500
    assert answer.body == {"statusCode": 500, "message": "internal error; retry later"}
    assert "KeyError" in log_output.getvalue()


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="no header"),
        pytest.param("", id="empty header"),
        pytest.param("Bearer", id="scheme only"),
        pytest.param("Bearer ", id="empty secret"),
        pytest.param("Bearer wrong-secret-of-other-length", id="wrong secret"),
        pytest.param(f"Bearer {SECRET[:-1]}X", id="wrong secret of the same length"),
        pytest.param(f"Bearer {SECRET}{SECRET}", id="secret twice"),
        pytest.param(f"Bearer {SECRET[:-1]}", id="prefix of the secret"),
        pytest.param(f"Basic {SECRET}", id="basic scheme"),
        pytest.param(SECRET, id="no scheme"),
    ],
)
def test_a_request_without_the_secret_gets_401_and_queues_nothing(
    authorization: str | None,
) -> None:
    # Given a request with a missing or wrong secret
    queues = InMemoryQueues()

    # When it is handled
    answer = invoke(api_event(authorization=authorization), api_dependencies(queues))

    # Then it is refused with the scheme to use, and nothing is queued
    assert answer.status == 401
    assert answer.headers["WWW-Authenticate"] == ['Bearer realm="matchstats"']
    assert answer.body == {
        "statusCode": 401,
        "message": "send the cron secret as Authorization: Bearer <secret>",
    }
    assert queues.sent == []


@pytest.mark.parametrize("body", ['{"scope": "everything"}', "{not json", "[]"])
def test_a_caller_without_the_secret_gets_401_whatever_its_body(body: str) -> None:
    # Given a bad body from a caller without the secret
    queues = InMemoryQueues()

    # When it is handled
    answer = invoke(api_event(authorization="Bearer nope", body=body), api_dependencies(queues))

    # Then the answer is 401: it learns nothing about what a good body looks like
    assert answer.status == 401
    assert queues.sent == []


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (
            '{"scope": "everything"}',
            "application/json",
            "scope: Input should be 'all', 'competition_standings' or 'competitor_stats'",
        ),
        ('{"scope": 1}', "application/json", "scope: Input should be 'all', "),
        ('{"scope": "all"', "application/json", "the body is not valid JSON ("),
        ("scope=all", "application/json", "the body is not valid JSON ("),
        ('{"scope": "all", "force": true}', None, "force: Extra inputs are not permitted"),
        ("[]", "application/json", "body: Input should be a valid dictionary"),
        ('"all"', "application/json", "body: Input should be a valid dictionary"),
        ('{"scope": "all"}', "text/plain", "send the body as JSON, with Content-Type"),
        (
            '{"scope": "all"}',
            "application/x-www-form-urlencoded",
            "send the body as JSON, with Content-Type",
        ),
    ],
)
def test_a_bad_body_with_the_secret_gets_400_naming_the_problem(
    body: str, content_type: str | None, message: str
) -> None:
    # Given the right secret and a malformed body
    queues = InMemoryQueues()
    event = api_event(body=body, content_type=content_type)

    # When it is handled
    answer = invoke(event, api_dependencies(queues))

    # Then it is a 400 (never the resolver's 422 or 415) that says what is wrong
    assert answer.status == 400
    assert answer.body["statusCode"] == 400
    assert answer.body["message"].startswith(message), answer.body
    assert queues.sent == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
def test_other_methods_on_the_path_get_405(method: str) -> None:
    # Given another method on /cron/update-stats, even with the secret
    queues = InMemoryQueues()

    # When it is handled
    answer = invoke(api_event(method=method), api_dependencies(queues))

    # Then it is 405 and says which method is allowed
    assert answer.status == 405
    assert answer.headers["Allow"] == ["POST"]
    assert answer.body["message"] == f"{method} is not allowed on /cron/update-stats; use POST"
    assert queues.sent == []


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/cron/update"), ("POST", "/cron/update-stats/now"), ("GET", "/")],
)
def test_other_paths_get_404(method: str, path: str) -> None:
    # Given a path the API does not have
    queues = InMemoryQueues()

    # When it is handled
    answer = invoke(api_event(method=method, path=path), api_dependencies(queues))

    # Then it is 404
    assert answer.status == 404
    assert answer.body == {"statusCode": 404, "message": "Not found"}
    assert queues.sent == []


def test_an_unreachable_queue_gets_503_to_retry() -> None:
    # Given a refresh queue that cannot be reached
    queues = InMemoryQueues(reachable=False)

    # When the right request is handled
    answer = invoke(load_event(EVENT_FILE), api_dependencies(queues))

    # Then the caller is told to retry, not that it succeeded
    assert answer.status == 503
    assert answer.headers["Retry-After"] == ["30"]
    assert "retry later" in answer.body["message"]


def test_an_unreadable_secret_gets_503_to_retry() -> None:
    # Given a secret store that refuses to answer
    failing = FakeSecretsProvider(GetParameterError("AccessDeniedException"))
    secret = CronSecret(secrets_manager_fetcher("arn:cron", provider=failing))  # type: ignore[arg-type]
    queues = InMemoryQueues()

    # When a request is handled
    answer = invoke(load_event(EVENT_FILE), api_dependencies(queues, secret))

    # Then it is 503, not 401: the caller's secret may well be right
    assert answer.status == 503
    assert queues.sent == []


# --- the secret stays secret ---------------------------------------------------------


def test_the_secret_never_reaches_the_logs_or_the_answers(log_output: io.StringIO) -> None:
    # Given requests with the right secret, wrong secrets, and the right one with a bad
    # body, while everything is logged at DEBUG
    wrong = ["not-the-cron-secret", f"{SECRET[:-1]}X", SECRET * 2]
    events = [
        load_event(EVENT_FILE),
        *(api_event(authorization=f"Bearer {secret}") for secret in wrong),
        api_event(body="{broken"),
        api_event(body='{"scope": "nope"}'),
        api_event(method="GET"),
    ]
    deps = api_dependencies()

    # When they are handled
    answers = [invoke(event, deps) for event in events]

    # Then the function did log, but no log line and no answer holds any secret presented
    logged = log_output.getvalue()
    assert "refresh requested" in logged
    assert "refused a request without the cron secret" in logged
    assert [answer.status for answer in answers] == [202, 401, 401, 401, 400, 400, 405]
    for presented in [SECRET, *wrong]:
        assert presented not in logged
        assert all(presented not in json.dumps(answer.body) for answer in answers)
