"""Fuzzing POST /cron/update-stats (SPEC section 7) with generated API Gateway requests.

RefreshApiFunction's handler gets REST API proxy events built by the local API Gateway
(devstack.api_gateway.proxy_event) from generated methods, paths, headers, query strings
and bodies, and Authorization headers that carry the secret, nothing, or a near miss of
it: one character changed, dropped or added, a prefix or suffix, another case, inner
whitespace, a look-alike letter, an encoding of it, another scheme. Over 5,000 requests:

- no request is accepted (202) unless its Authorization header is `Bearer <secret>`
  exactly (scheme in any case, whitespace around the credentials as HTTP allows);
- no answer is a server error, and no handler call raises;
- no log line, metric or answer to a caller without the secret holds the secret or any
  12-character stretch of it; every refused request queues nothing.

The requests are built in api_requests.py. The queue is in memory and the secret static,
so the run needs no network.
"""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.api_support import api_dependencies, every_log_line, invoke_api
from tests.chaos_support import report_at_end
from tests.fakes import InMemoryQueues
from tests.unit.api_requests import (
    MULTIPART_BEYOND_LATIN_1,
    MULTIPART_WITHOUT_BOUNDARY,
    PATH,
    SCHEMES,
    SECRET,
    SEPARATORS,
    Request,
    exact_authorizations,
    multipart_request,
    near_misses,
    requests,
    valid_bodies,
)

# Invocations that publish no metric (refusals) make Powertools warn; expected.
pytestmark = [
    pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning"),
    # A generated multipart Content-Type on a text body; the request is refused anyway.
    pytest.mark.filterwarnings("ignore:Received multipart/form-data without base64:UserWarning"),
]

STRETCH = 12
SECRET_STRETCHES = [SECRET[i : i + STRETCH] for i in range(len(SECRET) - STRETCH + 1)]
ANSWERS = {202, 400, 401, 404, 405}

FUZZ_SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)


# --- running them --------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    text: str


@dataclass
class Tally:
    requests: int = 0
    with_secret: int = 0
    near_misses: int = 0
    by_status: collections.Counter[int] = field(default_factory=collections.Counter)

    def report(self, label: str) -> str:
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.by_status.items()))
        return (
            f"\napi fuzz ({label}): {self.requests} requests, {self.with_secret} with the exact"
            f" secret, {self.requests - self.with_secret} without; answers {statuses};"
            f" accepted without the secret: 0; server errors: 0; secret in logs: 0"
        )


def handle(request: Request, queues: InMemoryQueues) -> Answer:
    response = invoke_api(request.event(), api_dependencies(queues, secret=SECRET))
    return Answer(
        status=int(response["statusCode"]),
        text=json.dumps(response.get("multiValueHeaders")) + str(response.get("body")),
    )


def leaks(text: str) -> list[str]:
    return [stretch for stretch in SECRET_STRETCHES if stretch in text]


def check_one(request: Request, tally: Tally) -> Answer:
    queues = InMemoryQueues()
    answer = handle(request, queues)
    tally.requests += 1
    tally.with_secret += request.presents_the_secret
    tally.by_status[answer.status] += 1

    # Never a server error, always one of the answers the contract names
    assert answer.status in ANSWERS, (answer, request)
    # Never accepted (nor anything queued) without the exact secret
    if answer.status == 202:
        assert request.presents_the_secret, request
        assert len(queues.sent) == 1
    else:
        assert queues.sent == []
    # Without the secret a POST to the path is 401 whatever else is wrong, and nothing
    # in the answer echoes a secret the caller may have guessed at
    if not request.presents_the_secret:
        if request.method == "POST" and request.path == PATH:
            assert answer.status == 401, (answer, request)
        assert leaks(answer.text) == [], (answer, request)
    return answer


def test_no_generated_request_is_accepted_without_the_exact_secret(
    capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
    # Given 3,600 generated requests: any method, path, headers, query and body, and an
    # Authorization header with the secret, a near miss of it, or anything
    tally = Tally()

    @settings(FUZZ_SETTINGS, max_examples=3_600)
    @given(generated=requests())
    @example(generated=MULTIPART_WITHOUT_BOUNDARY)
    @example(generated=MULTIPART_BEYOND_LATIN_1)
    def check(generated: Request) -> None:
        answer = check_one(generated, tally)
        # ...and the one well-formed request with the secret is accepted
        well_formed = (
            generated.method == "POST"
            and generated.path == PATH
            and generated.body in (None, "", "{}", "null")
            and generated.headers.get("Content-Type", generated.headers.get("content-type"))
            in (None, "application/json", "application/json; charset=utf-8")
        )
        if generated.presents_the_secret and well_formed:
            assert answer.status == 202, (answer, generated)

    # When each is handled, with every log line kept
    with every_log_line() as logs:
        check()
    captured = capsys.readouterr()

    # Then (in check) none was accepted without the secret and none failed the server;
    # and no log line nor metric holds the secret, or any stretch of it
    logged = logs.getvalue() + captured.out + captured.err
    assert "refused a request without the cron secret" in logged
    assert leaks(logged) == []
    assert tally.requests >= 3_600
    report_at_end(request.config, "api fuzz: any request", tally.report("any request"))


def test_near_miss_secrets_on_an_otherwise_perfect_request_are_refused(
    capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
    # Given 1,500 requests that are right in every way (POST, the path, a valid JSON
    # body) but whose Authorization header is a near miss, or the exact secret
    tally = Tally()
    near = st.builds(
        lambda scheme, sep, credentials: f"{scheme}{sep}{credentials}",
        SCHEMES,
        SEPARATORS,
        near_misses,
    )

    @settings(FUZZ_SETTINGS, max_examples=1_500)
    @given(
        authorization=st.sampled_from([near, near, near, near, exact_authorizations]).flatmap(
            lambda strategy: strategy
        ),
        body=valid_bodies,
        header=st.sampled_from(["Authorization", "authorization"]),
    )
    def check(authorization: str, body: str | None, header: str) -> None:
        request = Request(
            method="POST",
            path=PATH,
            query="",
            headers={header: authorization, "Content-Type": "application/json"},
            authorizations=[authorization],
            body=body,
        )
        answer = check_one(request, tally)
        tally.near_misses += not request.presents_the_secret

        # Then the exact secret is accepted and every near miss refused with 401
        assert answer.status == (202 if request.presents_the_secret else 401), (answer, request)

    with every_log_line() as logs:
        check()
    captured = capsys.readouterr()

    logged = logs.getvalue() + captured.out + captured.err
    assert leaks(logged) == []
    assert tally.requests >= 1_500
    assert tally.near_misses >= 900
    assert tally.with_secret > 0
    report_at_end(request.config, "api fuzz: near misses", tally.report("near misses"))


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        pytest.param(MULTIPART_WITHOUT_BOUNDARY, 401, id="no boundary, no secret"),
        pytest.param(MULTIPART_BEYOND_LATIN_1, 401, id="non-latin-1 body, no secret"),
        pytest.param(
            multipart_request("multipart/form-data", "{}", f"Bearer {SECRET}"),
            400,
            id="no boundary, with the secret",
        ),
        pytest.param(
            multipart_request("multipart/form-data; boundary=x", "\u0100", f"Bearer {SECRET}"),
            400,
            id="non-latin-1 body, with the secret",
        ),
    ],
)
def test_an_unreadable_multipart_body_is_refused_not_a_server_error(
    request_: Request, status: int
) -> None:
    # Given a POST whose Content-Type says multipart/form-data, without a boundary or with
    # a body that is not Latin-1 text: anyone can send one, secret or not
    queues = InMemoryQueues()

    # When it is handled
    answer = handle(request_, queues)

    # Then it is refused as any bad body is (401 without the secret, 400 with it), not
    # a ValueError out of the handler, which API Gateway turns into a 502
    assert answer.status == status
    assert queues.sent == []
