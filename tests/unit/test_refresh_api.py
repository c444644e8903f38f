"""POST /cron/update-stats (SPEC section 7) through RefreshApiFunction's handler, with an
in-memory queue and secret store: who gets a refresh queued, who gets 401, 400, 404, 405
or 503, that the secret never reaches a log, and that a rotated secret is picked up."""

from __future__ import annotations

import copy
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parameters import GetParameterError

from devstack.openapi import openapi_document
from matchstats.api import SECURITY_SCHEME, ApiDependencies
from matchstats.config import ApiSettings
from matchstats.cron_secret import (
    DEFAULT_FORCED_FETCH_INTERVAL_S,
    DEFAULT_MAX_AGE_S,
    CronSecret,
    CronSecretUnavailableError,
    secrets_manager_fetcher,
    static_fetcher,
)
from matchstats.errors import ConfigurationError
from matchstats.messages import RefreshReason, RefreshScope, parse_refresh_message
from matchstats.observability import logger
from tests.api_support import invoke_api
from tests.factories import load_event
from tests.fakes import InMemoryQueues

ROOT = Path(__file__).resolve().parents[2]
# Invocations that publish no metric (refusals, failures) make Powertools warn; expected.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")
EVENT_FILE = "refresh-api.json"
# The placeholder that events/refresh-api.json and env.json share.
SECRET = "local-dev-cron-secret"
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/RefreshQueue"


# --- fakes and factories -------------------------------------------------------------


@dataclass
class SecretStore:
    """Secrets Manager behind a cache: a plain fetch returns the cached value, a forced
    fetch the stored one (and caches it)."""

    stored: str
    cached: str = ""
    forced_fetches: int = 0

    def __post_init__(self) -> None:
        self.cached = self.cached or self.stored

    def fetch(self, force: bool) -> str:
        if force:
            self.forced_fetches += 1
            self.cached = self.stored
        return self.cached


@dataclass
class FakeClock:
    now: float = 1_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeSecretsProvider:
    """Stands in for Powertools' SecretsProvider: returns `value` or raises it."""

    value: Any
    calls: list[dict[str, Any]] = field(default_factory=list)

    def get(self, name: str, **options: Any) -> Any:
        self.calls.append({"name": name, **options})
        if isinstance(self.value, Exception):
            raise self.value
        return self.value


def api_dependencies(
    queues: InMemoryQueues | None = None, cron_secret: CronSecret | None = None
) -> ApiDependencies:
    settings = ApiSettings.from_env({"REFRESH_QUEUE_URL": QUEUE_URL, "CRON_SECRET": SECRET})
    return ApiDependencies(
        settings=settings,
        cron_secret=cron_secret or CronSecret(static_fetcher(SECRET)),
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


@pytest.fixture
def log_output(capsys: pytest.CaptureFixture[str]) -> Iterator[io.StringIO]:
    """Every log record of the function and of Powertools, at DEBUG, formatted as the
    function's logger formats it (extra keys and exceptions included)."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logger.registered_formatter)
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    watched = [logging.getLogger("matchstats"), logging.getLogger("aws_lambda_powertools")]
    levels = [watched_logger.level for watched_logger in watched]
    root.addHandler(handler)
    for watched_logger in watched:
        watched_logger.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        for watched_logger, level in zip(watched, levels, strict=True):
            watched_logger.setLevel(level)
    captured = capsys.readouterr()
    buffer.write(captured.out + captured.err)


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


class ExplodingQueues(InMemoryQueues):
    def send(self, queue_url: str, message: Any) -> str:
        raise KeyError("a bug")


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


# --- a rotated secret ----------------------------------------------------------------


def test_a_rotated_secret_is_accepted_after_one_forced_fetch() -> None:
    # Given a cached secret that has just been rotated in the store
    store = SecretStore(stored="rotated-secret", cached=SECRET)
    deps = api_dependencies(cron_secret=CronSecret(store.fetch, clock=FakeClock()))

    # When the caller already uses the new secret
    answer = invoke(api_event(authorization="Bearer rotated-secret"), deps)

    # Then it is accepted after one cache-bypassing fetch, and the old secret no longer is
    assert answer.status == 202
    assert store.forced_fetches == 1
    assert invoke(load_event(EVENT_FILE), deps).status == 401


def test_forced_fetches_are_rate_limited() -> None:
    # Given an unchanged secret and a caller hammering the API with wrong ones
    store = SecretStore(stored=SECRET)
    clock = FakeClock()
    deps = api_dependencies(cron_secret=CronSecret(store.fetch, clock=clock))
    wrong = api_event(authorization="Bearer guess")

    # When 50 wrong requests arrive within the interval, then one just after it
    within = [invoke(wrong, deps).status for _ in range(50)]
    fetches_within = store.forced_fetches
    clock.now += DEFAULT_FORCED_FETCH_INTERVAL_S
    after = invoke(wrong, deps).status

    # Then all are refused, and the store was asked once per interval only
    assert set(within) == {401}
    assert fetches_within == 1
    assert (after, store.forced_fetches) == (401, 2)


def test_a_rotation_inside_the_interval_waits_for_the_next_one() -> None:
    # Given a forced fetch just spent on a wrong guess, then a rotation
    store = SecretStore(stored=SECRET)
    clock = FakeClock()
    deps = api_dependencies(cron_secret=CronSecret(store.fetch, clock=clock))
    assert invoke(api_event(authorization="Bearer guess"), deps).status == 401
    store.stored = "rotated-secret"

    # When the new secret arrives within the interval, and again after it
    clock.now += DEFAULT_FORCED_FETCH_INTERVAL_S - 1
    too_soon = invoke(api_event(authorization="Bearer rotated-secret"), deps).status
    clock.now += 1
    in_time = invoke(api_event(authorization="Bearer rotated-secret"), deps).status

    # Then it is refused until the next forced fetch is allowed, then accepted
    assert (too_soon, in_time) == (401, 202)


def test_a_secret_from_the_environment_is_never_re_fetched() -> None:
    # Given a secret that cannot rotate (CRON_SECRET), behind a store that counts fetches
    store = SecretStore(stored=SECRET)
    secret = CronSecret(store.fetch, rotates=False, clock=FakeClock())

    # When a wrong secret is presented
    matched = secret.matches("guess")

    # Then it is refused without a pointless forced fetch
    assert (matched, store.forced_fetches) == (False, 0)


def test_the_secrets_manager_fetcher_caches_and_forces_through_powertools() -> None:
    # Given a Powertools-like provider holding the secret with a trailing newline
    provider = FakeSecretsProvider(f"{SECRET}\n")
    fetch = secrets_manager_fetcher("arn:aws:secretsmanager:cron", provider=provider)  # type: ignore[arg-type]

    # When it is fetched from the cache and then forced
    values = [fetch(False), fetch(True)]

    # Then the stripped secret comes back, cached for 5 minutes unless forced
    assert values == [SECRET, SECRET]
    assert provider.calls == [
        {"name": "arn:aws:secretsmanager:cron", "max_age": DEFAULT_MAX_AGE_S, "force_fetch": False},
        {"name": "arn:aws:secretsmanager:cron", "max_age": DEFAULT_MAX_AGE_S, "force_fetch": True},
    ]


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (GetParameterError("ResourceNotFoundException"), CronSecretUnavailableError),
        (b"binary", ConfigurationError),
        ("   ", ConfigurationError),
    ],
)
def test_an_unusable_secret_is_an_error_that_does_not_show_it(
    value: Any, error: type[Exception]
) -> None:
    # Given a provider that fails, or holds a binary or blank secret
    fetch = secrets_manager_fetcher("arn:cron", provider=FakeSecretsProvider(value))  # type: ignore[arg-type]

    # When the secret is fetched, Then the error names the secret, not its value
    with pytest.raises(error, match="arn:cron"):
        fetch(False)


def test_settings_prefer_the_local_secret_over_the_arn() -> None:
    # Given both sources configured
    settings = ApiSettings.from_env(
        {"REFRESH_QUEUE_URL": QUEUE_URL, "CRON_SECRET": SECRET, "CRON_SECRET_ARN": "arn:cron"}
    )

    # When the secret is built from them
    secret = CronSecret.from_settings(settings)

    # Then the local secret is the one that matches, and no store is asked
    assert secret.matches(SECRET)
    assert not secret.matches("arn:cron")


# --- contract ------------------------------------------------------------------------


def test_the_committed_openapi_document_matches_the_code() -> None:
    # Given the committed openapi.json
    committed = (ROOT / "openapi.json").read_text(encoding="utf-8")

    # When the document is generated from the resolver
    generated = openapi_document()

    # Then they are the same (regenerate: python -m devstack.openapi)
    assert generated == committed, "openapi.json is stale: run python -m devstack.openapi"


def test_the_openapi_document_describes_the_contract() -> None:
    # Given the generated document
    document = json.loads(openapi_document())

    # When reading the one operation
    operation = document["paths"]["/cron/update-stats"]["post"]

    # Then it is POST with a bearer secret, an optional scope, and the SPEC's answers
    assert list(document["paths"]) == ["/cron/update-stats"]
    assert list(document["paths"]["/cron/update-stats"]) == ["post"]
    assert operation["security"] == [{SECURITY_SCHEME: []}]
    assert document["components"]["securitySchemes"][SECURITY_SCHEME]["scheme"] == "bearer"
    assert sorted(operation["responses"]) == ["202", "400", "401", "503"]
    assert document["components"]["schemas"]["RefreshScope"]["enum"] == [
        scope.value for scope in RefreshScope
    ]
    assert "required" not in operation["requestBody"]


def test_the_handler_never_imports_a_database_driver() -> None:
    # Given a fresh interpreter with the Lambda layer and the functions on its path
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            str(ROOT / part) for part in ("layers/matchstats", "functions")
        ),
    }
    check = "import refresh_api.app, sys; assert 'psycopg' not in sys.modules, 'psycopg imported'"

    # When it imports the handler
    result = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [sys.executable, "-c", check], env=environment, capture_output=True, text=True, check=False
    )

    # Then psycopg was not imported, directly or through matchstats
    assert result.returncode == 0, result.stderr
