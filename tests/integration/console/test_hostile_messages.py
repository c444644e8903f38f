"""Message-derived values (bodies, reasons, kinds, ids) reach the console's pages as
text only: never markup, never a link or a request outside its own pages."""

from __future__ import annotations

import posixpath
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, urljoin, urlsplit

import psycopg
from flask.testing import FlaskClient

from ops.console import app as console_app
from testkit.seed import create_season
from tests.integration.console.steps import (
    HOST,
    ORIGIN,
    invoke_points,
    send_dead_letter,
    signed_in,
)
from tests.template_queues import TemplateQueues

HOSTILE = '"><img src=x onerror=alert(1)>'
# A path that climbs from /fragments/jobs/ to the JSON: htmx would swap that JSON, bodies
# and all, into the page as HTML.
CLIMBING = "../../api/dead-letters"
URL_ATTRIBUTES = ("href", "src", "action", "hx-get", "hx-post", "hx-put", "hx-patch", "hx-delete")
# Where the console's own links and requests go; nothing else may be reached from a page.
OWN_PATHS = ("/fragments/", "/actions/", "/static/")
TEMPLATES = Path(console_app.__file__).parent / "templates"


class Markup(HTMLParser):
    """The tags, attributes and text of an HTML page, as a browser's parser sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {name: value or "" for name, value in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parsed(html: str) -> Markup:
    markup = Markup()
    markup.feed(html)
    markup.close()
    return markup


def live_markup(markup: Markup) -> list[str]:
    """What in `markup` could run script or reach outside the console's own pages."""
    found = []
    for tag, attributes in markup.tags:
        if tag in ("img", "svg", "iframe", "object", "embed", "base", "math"):
            found.append(f"<{tag} {attributes}>")
        if tag == "script" and not attributes.get("src", "").startswith("/static/"):
            found.append(f"<script {attributes}>")
        for name, value in attributes.items():
            if name.startswith(("on", "hx-on")) or "javascript:" in value.replace(" ", "").lower():
                found.append(f"{tag} {name}={value!r}")
            if name in URL_ATTRIBUTES and not value.startswith("#"):
                target = urlsplit(urljoin(f"{ORIGIN}/fragments/page", value))
                path = posixpath.normpath(target.path)
                if (target.scheme, target.netloc) != ("http", HOST) or not (
                    path == "/" or path.startswith(OWN_PATHS)
                ):
                    found.append(f"{tag} {name}={value!r} reaches {target.geturl()}")
    return found


def test_hostile_message_values_are_shown_as_text_and_never_become_markup_or_links(
    console: FlaskClient, stack: tuple[TemplateQueues, dict[str, str]], db: psycopg.Connection
) -> None:
    # Given dead letters whose body, reason, kind and source message id are hostile
    # (anyone who may send to the queue sets them), and a failed job with a hostile body
    queues, _ = stack
    create_season(db, competitions=1, competitors_per_competition=4)
    invoke_points([f"<script>alert('body')</script>{HOSTILE}"])
    for job_id in (HOSTILE, "javascript:alert(1)", CLIMBING):
        send_dead_letter(
            queues,
            f"<svg onload=alert(2)>{HOSTILE}",
            {
                "matchstats.sourceMessageId": job_id,
                "matchstats.errorKind": f"kind{HOSTILE}",
                "matchstats.reason": f"<b>reason</b>{HOSTILE}",
            },
        )
    signed_in(console)
    [job] = console.get("/api/jobs?status=failed", base_url=ORIGIN).json
    kinds = {
        group["kind"]
        for queue in console.get("/api/dead-letters", base_url=ORIGIN).json
        for group in queue["groups"]
    }

    # When the page and every fragment that shows them are rendered
    pages = {
        "/": console.get("/", base_url=ORIGIN),
        "dead letters": console.get("/fragments/dead-letters", base_url=ORIGIN),
        "jobs": console.get("/fragments/jobs", base_url=ORIGIN),
        "job": console.get(f"/fragments/jobs/{job['job_id']}", base_url=ORIGIN),
        "confirm all": console.get("/fragments/confirm/points/discard", base_url=ORIGIN),
    }
    # ...and when hostile values are put where an id or a kind goes
    refused = {
        "job id": console.get(f"/fragments/jobs/{quote(HOSTILE, safe='')}", base_url=ORIGIN),
        "id": console.get(
            "/fragments/confirm/points/discard", query_string={"id": HOSTILE}, base_url=ORIGIN
        ),
        "kind": console.get(
            "/fragments/confirm/points/discard",
            query_string={"kind": f"kind{HOSTILE}"},
            base_url=ORIGIN,
        ),
        "htmx asking for JSON": console.get(
            "/api/dead-letters", base_url=ORIGIN, headers={"HX-Request": "true"}
        ),
    }

    # Then each page shows the hostile values as text, with no live tag, handler or link
    assert kinds == {f"kind{HOSTILE}", "invalid_message"}
    for name, response in pages.items():
        assert response.status_code == 200, name
        markup = parsed(response.text)
        assert live_markup(markup) == [], name
        if name != "jobs":  # the list shows the error, not the body
            assert any(HOSTILE in text for text in markup.text), name
    assert any("<script>alert('body')</script>" in t for t in parsed(pages["job"].text).text)
    # ...the browser is told to run only the console's own script files
    policy = pages["/"].headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert pages["/"].headers["X-Content-Type-Options"] == "nosniff"
    # ...and ids, kinds and htmx requests that could lead elsewhere are refused
    assert {name: r.status_code for name, r in refused.items()} == {
        "job id": 404,
        "id": 400,
        "kind": 400,
        "htmx asking for JSON": 400,
    }
    # ...while every template escapes, whatever its name
    app = console.application
    assert app.jinja_env.autoescape is True
    for template in app.jinja_env.list_templates():
        source = (TEMPLATES / template).read_text()
        assert "|safe" not in source.replace(" ", ""), template
        assert "autoescape false" not in source, template
