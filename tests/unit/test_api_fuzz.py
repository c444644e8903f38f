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

The queue is in memory and the secret static, so the run needs no network.
"""

from __future__ import annotations

import base64
import collections
import io
import json
import logging
import re
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from devstack.api_gateway import proxy_event
from matchstats.api import ApiDependencies
from matchstats.config import ApiSettings
from matchstats.cron_secret import CronSecret, static_fetcher
from matchstats.messages import RefreshScope
from matchstats.observability import logger
from matchstats.queues import OutgoingMessage, Queues
from tests.api_support import invoke_api
from tests.chaos_support import report_at_end

# Invocations that publish no metric (refusals) make Powertools warn; expected.
pytestmark = [
    pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning"),
    # A generated multipart Content-Type on a text body; the request is refused anyway.
    pytest.mark.filterwarnings("ignore:Received multipart/form-data without base64:UserWarning"),
]

# Shaped like the generated CronSecret: 48 letters and digits.
SECRET = "Zx7Qm2Lr9Tb4Vn8Kc1Hs6Wd3Pf5Jg0YaRe2Uo9Ik4Nt7Bv1Mq"
PATH = "/cron/update-stats"
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/RefreshQueue"
# What counts as presenting the secret: the Authorization value, less the whitespace
# around it, is the scheme "Bearer" in any case, a space, and the secret (more spaces
# before it are tolerated, as around any credentials).
EXACT = re.compile(r"\s*[Bb][Ee][Aa][Rr][Ee][Rr] \s*" + re.escape(SECRET) + r"\s*")
STRETCH = 12
SECRET_STRETCHES = [SECRET[i : i + STRETCH] for i in range(len(SECRET) - STRETCH + 1)]
ANSWERS = {202, 400, 401, 404, 405}

FUZZ_SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)


class InMemoryQueues(Queues):
    """Keeps what is sent; never touches SQS."""

    def __init__(self) -> None:
        self.sent: list[OutgoingMessage] = []

    def send(self, queue_url: str, message: OutgoingMessage) -> str:
        self.sent.append(message)
        return f"message-{len(self.sent)}"


# --- generated requests ------------------------------------------------------------------

# Latin letters and digits, and a character that looks the same (Cyrillic, or another).
LOOK_ALIKES = {
    "a": "\u0430",
    "e": "\u0435",
    "o": "\u043e",
    "c": "\u0441",
    "p": "\u0440",
    "x": "\u0445",
    "0": "O",
    "1": "l",
}


N = len(SECRET)
ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
positions = st.integers(0, N - 1)
inner_positions = st.integers(1, N - 1)
letter_positions = st.sampled_from([k for k, ch in enumerate(SECRET) if ch.isalpha()])
look_alike_positions = st.sampled_from(
    [k for k, ch in enumerate(SECRET.lower()) if ch in LOOK_ALIKES]
)
any_character = st.characters(codec="utf-8")
inner_spaces = st.sampled_from([" ", "\t", "  ", "\u00a0", "\u200b", "\n", "%20", "+"])


def _changed(i: int, ch: str) -> str:
    return SECRET[:i] + (ch if ch != SECRET[i] else chr(ord(ch) ^ 1)) + SECRET[i + 1 :]


# Credentials that are almost, but not, the secret.
near_misses = st.one_of(
    st.builds(_changed, positions, any_character),  # one character changed
    positions.map(lambda i: SECRET[:i] + SECRET[i + 1 :]),  # one dropped
    st.builds(lambda i, ch: SECRET[:i] + ch + SECRET[i:], positions, any_character),  # added
    positions.map(lambda i: SECRET[:i]),  # a prefix
    positions.map(lambda i: SECRET[i + 1 :]),  # a suffix
    any_character.map(lambda ch: SECRET + ch),
    any_character.map(lambda ch: ch + SECRET),
    letter_positions.map(lambda k: SECRET[:k] + SECRET[k].swapcase() + SECRET[k + 1 :]),
    st.sampled_from([SECRET.lower(), SECRET.upper(), SECRET.swapcase()]),  # another case
    st.builds(lambda i, ws: SECRET[:i] + ws + SECRET[i:], inner_positions, inner_spaces),
    look_alike_positions.map(  # a look-alike letter
        lambda j: SECRET[:j] + LOOK_ALIKES[SECRET[j].lower()] + SECRET[j + 1 :]
    ),
    st.sampled_from(  # the secret twice, reversed, quoted, encoded
        [
            SECRET + SECRET,
            SECRET[::-1],
            urllib.parse.quote(SECRET + "/"),
            base64.b64encode(SECRET.encode()).decode(),
            f'"{SECRET}"',
            f"{SECRET},{SECRET}",
        ]
    ),
    st.text(ALNUM, max_size=60).filter(lambda text: text != SECRET),  # a guess, any length
    st.text(max_size=80).filter(lambda text: text.strip() != SECRET),
)


SCHEMES = st.sampled_from(
    ["Bearer", "bearer", "BEARER", "BeArEr", "Basic", "Token", "Bearer:", "Bear", "Bearers", ""]
)
SEPARATORS = st.sampled_from([" ", "  ", "\t", "", ":", "=", " : ", "\u00a0", ", "])
AROUND = st.sampled_from(["", " ", "  ", "\t", "\r\n", "\u2003"])


@st.composite
def authorization_values(draw: st.DrawFn) -> str:
    """An Authorization value: right scheme or not, right separator or not, and the
    secret, a near miss, or anything."""
    credentials: str = draw(
        st.sampled_from(
            [st.just(SECRET), near_misses, near_misses, near_misses, st.text(max_size=60)]
        ).flatmap(lambda strategy: strategy)
    )
    scheme: str = draw(SCHEMES)
    separator: str = draw(SEPARATORS)
    before: str = draw(AROUND)
    after: str = draw(AROUND)
    return before + scheme + separator + credentials + after


exact_authorizations = st.builds(
    lambda before, scheme, spaces, after: f"{before}{scheme} {spaces}{SECRET}{after}",
    AROUND,
    st.sampled_from(["Bearer", "bearer", "BEARER", "bEaReR"]),
    st.sampled_from(["", " ", "  "]),
    AROUND,
)

HEADER_NAME_CHARACTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-"
header_names = st.sampled_from(
    [
        "Accept",
        "Content-Length",
        "Cookie",
        "Host",
        "User-Agent",
        "X-Api-Key",
        "X-Forwarded-For",
        "X-Amz-Security-Token",
        "Proxy-Authorization",
        "X-Authorization",
        "Authorisation",
        "X-Http-Method-Override",
    ]
) | st.text(HEADER_NAME_CHARACTERS, min_size=1, max_size=20).filter(
    lambda name: name.lower() not in ("authorization", "content-type")
)
header_values = st.text(max_size=30) | st.sampled_from([SECRET, f"Bearer {SECRET}", "*/*", ""])
valid_bodies = st.sampled_from(
    [None, "", "{}", "null", *(json.dumps({"scope": scope.value}) for scope in RefreshScope)]
)
json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)
json_values = (
    json_scalars
    | st.lists(json_scalars, max_size=3)
    | st.dictionaries(st.text(max_size=8), json_scalars, max_size=3)
)
bodies = (
    valid_bodies
    | json_values.map(json.dumps)
    | st.dictionaries(st.sampled_from(["scope", "force", SECRET, "Scope"]), json_values).map(
        json.dumps
    )
    | st.text(max_size=200)
    | st.just(SECRET)
    | st.sampled_from(RefreshScope).map(lambda s: json.dumps({"scope": s.value, "extra": SECRET}))
)
content_types = st.sampled_from(
    [
        None,
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "",
    ]
) | st.text(max_size=30)
methods = st.sampled_from(
    ["POST", "POST", "POST", "POST", "GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
) | st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=10)
paths = st.sampled_from(
    [PATH] * 12 + ["/", "/cron", "/cron/update", f"{PATH}/now", "/CRON/UPDATE-STATS"]
)
queries = st.sampled_from(
    ["", f"token={SECRET}", f"secret={SECRET}&scope=all", f"access_token={SECRET}", "scope=all"]
) | st.text(max_size=20).map(lambda value: urllib.parse.urlencode({"x": value}))


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    # Every Authorization value sent, in order; API Gateway's `headers` keeps the last.
    authorizations: list[str]
    body: str | None

    @property
    def authorization(self) -> str | None:
        return self.authorizations[-1] if self.authorizations else None

    @property
    def presents_the_secret(self) -> bool:
        return self.authorization is not None and EXACT.fullmatch(self.authorization) is not None

    def event(self) -> dict[str, Any]:
        raw = self.body.encode("utf-8", errors="surrogatepass") if self.body else b""
        event = proxy_event(
            PATH, self.method, self.path, self.query, dict(self.headers), raw, "198.51.100.7"
        )
        if self.body == "":
            event["body"] = ""
        if self.authorizations:
            name = next(n for n in self.headers if n.lower() == "authorization")
            event["multiValueHeaders"][name] = list(self.authorizations)
        return event


# Mostly anything; one in three the exact secret, so that acceptance is exercised too.
any_authorization = st.sampled_from(
    [authorization_values(), authorization_values(), exact_authorizations]
).flatmap(lambda strategy: strategy)


@st.composite
def requests(
    draw: st.DrawFn, authorizations: st.SearchStrategy[str] = any_authorization
) -> Request:
    headers = draw(st.dictionaries(header_names, header_values, max_size=4))
    # One spelling of each name, as API Gateway hands headers over.
    headers = {name: value for name, value in headers.items() if name.lower() != "content-type"}
    content_type = draw(content_types)
    if content_type is not None:
        headers[draw(st.sampled_from(["Content-Type", "content-type"]))] = content_type
    sent = draw(st.lists(authorizations, max_size=2))
    if sent:
        name = draw(st.sampled_from(["Authorization", "authorization", "AUTHORIZATION"]))
        headers[name] = sent[-1]
    return Request(
        method=draw(methods),
        path=draw(paths),
        query=draw(queries),
        headers=headers,
        authorizations=sent,
        body=draw(bodies),
    )


def _multipart(content_type: str, body: str, authorization: str | None = None) -> Request:
    headers = {"Content-Type": content_type}
    if authorization is not None:
        headers["Authorization"] = authorization
    return Request(
        method="POST",
        path=PATH,
        query="",
        headers=headers,
        authorizations=[] if authorization is None else [authorization],
        body=body,
    )


# Found by this fuzz: Powertools' body parsing lets a ValueError out of these two.
MULTIPART_WITHOUT_BOUNDARY = _multipart("multipart/form-data", '{"scope": "all"}')
MULTIPART_BEYOND_LATIN_1 = _multipart("multipart/form-data; boundary=x", "\u0100")


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


def dependencies(queues: InMemoryQueues) -> ApiDependencies:
    settings_ = ApiSettings.from_env({"REFRESH_QUEUE_URL": QUEUE_URL, "CRON_SECRET": SECRET})
    return ApiDependencies(
        settings=settings_, cron_secret=CronSecret(static_fetcher(SECRET)), queues=queues
    )


def handle(request: Request, queues: InMemoryQueues) -> Answer:
    response = invoke_api(request.event(), dependencies(queues))
    return Answer(
        status=int(response["statusCode"]),
        text=json.dumps(response.get("multiValueHeaders")) + str(response.get("body")),
    )


def leaks(text: str) -> list[str]:
    return [stretch for stretch in SECRET_STRETCHES if stretch in text]


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
            _multipart("multipart/form-data", "{}", f"Bearer {SECRET}"),
            400,
            id="no boundary, with the secret",
        ),
        pytest.param(
            _multipart("multipart/form-data; boundary=x", "\u0100", f"Bearer {SECRET}"),
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
