"""Generated API Gateway requests for POST /cron/update-stats, for test_api_fuzz.py: any
method, path, headers, query and body, and Authorization headers that carry the secret,
nothing, or a near miss of it. Requests become REST API proxy events through the local
API Gateway (devstack.api_gateway.proxy_event)."""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from devstack.api_gateway import proxy_event
from matchstats.messages import RefreshScope

# Shaped like the generated CronSecret: 48 letters and digits.
SECRET = "Zx7Qm2Lr9Tb4Vn8Kc1Hs6Wd3Pf5Jg0YaRe2Uo9Ik4Nt7Bv1Mq"
PATH = "/cron/update-stats"
# What counts as presenting the secret: the Authorization value, less the whitespace
# around it, is the scheme "Bearer" in any case, a space, and the secret (more spaces
# before it are tolerated, as around any credentials).
EXACT = re.compile(r"\s*[Bb][Ee][Aa][Rr][Ee][Rr] \s*" + re.escape(SECRET) + r"\s*")

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


def multipart_request(content_type: str, body: str, authorization: str | None = None) -> Request:
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
MULTIPART_WITHOUT_BOUNDARY = multipart_request("multipart/form-data", '{"scope": "all"}')
MULTIPART_BEYOND_LATIN_1 = multipart_request("multipart/form-data; boundary=x", "\u0100")
