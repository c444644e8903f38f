"""The console's HTML and JSON endpoints without a browser (Flask's test client),
against the real PostgreSQL and the local SQS: what it shows, its actions, and what it
refuses (no session, a foreign Host or Origin, no CSRF token, no confirmation)."""

from __future__ import annotations

import argparse
import json
import posixpath
import random
import re
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import psycopg
import pytest
from flask.testing import FlaskClient

from calculate_points import app as points_app
from devstack.lambda_context import LambdaContext
from ops.aws import Aws
from ops.cli import main as cli_main
from ops.console import app as console_app
from ops.console.app import create_app
from ops.console.data import ConsoleData
from ops.context import Context
from testkit.events import points_bodies, sqs_event
from testkit.seed import Season, complete_matches, create_season
from tests.integration.conftest import OperatorStack
from tests.template_queues import TemplateQueues

HOST = "127.0.0.1:8765"
ORIGIN = f"http://{HOST}"
TOKEN = "test-login-token"
CRON_SECRET = "local-cron-secret-never-shown"


@pytest.fixture
def stack(
    operator_stack: OperatorStack, monkeypatch: pytest.MonkeyPatch
) -> tuple[TemplateQueues, dict[str, str]]:
    """The operator's local stack, with a cron secret the console must never show."""
    monkeypatch.setenv("CRON_SECRET", CRON_SECRET)
    return operator_stack.queues, {**operator_stack.env, "CRON_SECRET": CRON_SECRET}


@pytest.fixture
def console(stack: tuple[TemplateQueues, dict[str, str]]) -> Iterator[FlaskClient]:
    _, env = stack
    context = Context(argparse.Namespace(stack=None), Aws(local=env), env)
    data = ConsoleData(context)
    app = create_app(data, token=TOKEN, allowed_hosts={HOST})
    client = app.test_client()
    yield client
    data.close()


def signed_in(client: FlaskClient) -> str:
    """Opens the printed URL; returns the page's CSRF token."""
    opened = client.get(f"/?token={TOKEN}", base_url=ORIGIN)
    assert opened.status_code == 302
    page = client.get("/", base_url=ORIGIN)
    assert page.status_code == 200, page.text
    match = re.search(r'"X-CSRFToken": "([^"]+)"', page.text)
    assert match is not None
    return match.group(1)


def post(client: FlaskClient, path: str, token: str, data: dict[str, Any]) -> Any:
    return client.post(
        path,
        base_url=ORIGIN,
        data=data,
        headers={"Origin": ORIGIN, "X-CSRFToken": token, "Accept": "application/json"},
    )


def play(db: psycopg.Connection, played: int) -> Season:
    """A season whose first matches went through CalculatePointsFunction."""
    season = create_season(db, competitions=1, competitors_per_competition=4)
    complete_matches(db, season.match_ids[:played], random.Random(13))
    invoke_points(points_bodies(*season.match_ids[:played]))
    return season


def invoke_points(bodies: list[str]) -> None:
    context = LambdaContext.for_invocation("CalculatePointsFunction", 120)
    points_app.lambda_handler(sqs_event(bodies), context)


def test_the_console_shows_queues_views_standings_jobs_and_dead_letters(
    console: FlaskClient, stack: tuple[TemplateQueues, dict[str, str]], db: psycopg.Connection
) -> None:
    # Given points for 3 matches, the views refreshed, and one poison message
    season = play(db, 3)
    db.execute("REFRESH MATERIALIZED VIEW competition_standings")
    invoke_points(points_bodies(999_999))
    signed_in(console)

    # When the console is read as JSON and as the page
    overview = console.get("/api/overview", base_url=ORIGIN).json
    standings = console.get("/api/standings", base_url=ORIGIN).json
    jobs = console.get("/api/jobs?type=points&status=failed", base_url=ORIGIN).json
    by_subject = console.get("/api/jobs?subject=match%201", base_url=ORIGIN).json
    dead = console.get("/api/dead-letters", base_url=ORIGIN).json
    page = console.get("/", base_url=ORIGIN).text

    # Then the queues hold the poison in PointsDeadLetterQueue, with its age
    queues = {q["queue"]: q for q in overview["queues"]}
    assert queues["PointsDeadLetterQueue"]["visible"] == 1
    assert queues["PointsDeadLetterQueue"]["oldest_s"] is not None
    assert {v["view_name"] for v in overview["views"]} == {
        "competition_standings",
        "competitor_stats",
    }
    # ...the standings are the database's competition_table
    expected = db.execute(
        "SELECT competitor_id, points FROM competition_table ORDER BY rank, competitor_id"
    ).fetchall()
    [table] = standings.values()
    assert [(r["competitor_id"], r["points"]) for r in table] == expected
    # ...the job history filters by type, status and subject
    assert [j["subject"] for j in jobs] == ["match 999999"]
    assert jobs[0]["error_kind"] == "match_not_found"
    assert {j["subject"] for j in by_subject} == {f"match {season.match_ids[0]}"}
    # ...and the dead letters are grouped by error kind, each tied to its job
    points_dlq = next(q for q in dead if q["queue"] == "points")
    [group] = points_dlq["groups"]
    assert group["kind"] == "match_not_found"
    [message] = group["messages"]
    assert message["reason"] == "match 999999 does not exist"
    assert message["job_id"] == jobs[0]["job_id"] != message["message_id"]
    # ...and the page shows the same, and no credential
    assert "match 999999 does not exist" in page
    assert 'data-queue="PointsDeadLetterQueue"' in page
    for secret in (CRON_SECRET, stack[1]["DATABASE_URL"], "testing"):
        assert secret not in page


def test_a_jobs_detail_gives_body_kind_reason_and_its_dead_letter_copy(
    console: FlaskClient, db: psycopg.Connection
) -> None:
    # Given a poison message dead-lettered
    create_season(db, competitions=1, competitors_per_competition=4)
    invoke_points(points_bodies(999_999))
    signed_in(console)
    [job] = console.get("/api/jobs?status=failed", base_url=ORIGIN).json

    # When its detail is asked for, as JSON and as the panel
    detail = console.get(f"/api/jobs/{job['job_id']}", base_url=ORIGIN).json
    panel = console.get(f"/fragments/jobs/{job['job_id']}", base_url=ORIGIN).text
    missing = console.get("/api/jobs/nothing-like-it", base_url=ORIGIN)

    # Then it has the body, error kind and reason, its state and the copy's id
    assert json.loads(detail["body"]) == {"matchId": 999_999}
    assert detail["error_kind"] == "match_not_found"
    assert detail["error"] == "match 999999 does not exist"
    assert detail["state"] == "dead-lettered"
    [copy] = detail["dead_letter_copies"]
    assert copy != job["job_id"]
    assert copy in panel
    assert missing.status_code == 404


def test_discard_takes_a_confirmation_and_deletes_only_what_was_confirmed(
    console: FlaskClient, stack: tuple[TemplateQueues, dict[str, str]], db: psycopg.Connection
) -> None:
    # Given two poison messages
    create_season(db, competitions=1, competitors_per_competition=4)
    invoke_points(points_bodies(999_998, 999_999))
    token = signed_in(console)
    dead = console.get("/api/dead-letters", base_url=ORIGIN).json
    first, second = next(q for q in dead if q["queue"] == "points")["groups"][0]["messages"]

    # When the operator asks to discard the first: the confirmation names it
    confirmation = console.get(
        f"/fragments/confirm/points/discard?id={first['message_id']}", base_url=ORIGIN
    ).text
    # ...a post without the confirmation does nothing, the confirmed one discards
    unconfirmed = post(console, "/actions/points/discard", token, {"ids": first["message_id"]})
    confirmed = post(
        console, "/actions/points/discard", token, {"ids": first["message_id"], "confirm": "yes"}
    )

    # Then only the confirmed message is gone
    assert "Discard 1 message(s)" in confirmation
    assert first["message_id"] in confirmation
    assert second["message_id"] not in confirmation
    assert unconfirmed.status_code == 400
    assert confirmed.status_code == 200
    assert confirmed.json == {
        "ok": True,
        "message": "discarded 1 of 1 message(s) from PointsDeadLetterQueue",
    }
    assert stack[0].depth("PointsDeadLetterQueue")["visible"] == 1


def test_redrive_by_kind_moves_the_repaired_messages_back(
    console: FlaskClient, stack: tuple[TemplateQueues, dict[str, str]], db: psycopg.Connection
) -> None:
    # Given a match completed without scores, dead-lettered, then repaired
    season = create_season(db, competitions=1, competitors_per_competition=4)
    match = season.match_ids[0]
    db.execute("UPDATE matches SET status = 'completed' WHERE id = %s", (match,))
    invoke_points(points_bodies(match))
    complete_matches(db, [match], random.Random(14))
    token = signed_in(console)
    preview = console.get(
        "/fragments/confirm/points/redrive?kind=missing_scores", base_url=ORIGIN
    ).text
    ids = re.findall(r'name="ids" value="([^"]+)"', preview)

    # When the operator confirms the redrive of that kind
    redriven = post(console, "/actions/points/redrive", token, {"ids": ids, "confirm": "yes"})

    # Then the message is back on PointsQueue, and processing it gives the points
    assert len(ids) == 1
    assert redriven.json["ok"], redriven.json
    [back] = stack[0].drain_all("PointsQueue")
    assert json.loads(back["Body"]) == {"matchId": match}
    invoke_points([back["Body"]])
    assert db.execute("SELECT count(*) FROM match_points").fetchone() == (2,)


def test_a_forced_refresh_is_requested_on_the_refresh_queue(
    console: FlaskClient, stack: tuple[TemplateQueues, dict[str, str]]
) -> None:
    # Given a signed-in console
    token = signed_in(console)

    # When the operator clicks "Refresh views now"
    answer = post(console, "/actions/refresh", token, {"scope": "all"})

    # Then a forced manual refresh request waits on RefreshQueue
    assert answer.json["ok"]
    [message] = stack[0].drain_all("RefreshQueue")
    body = json.loads(message["Body"])
    assert (body["scope"], body["reason"], body["force"]) == ("all", "manual", True)


def test_without_session_token_origin_or_host_nothing_is_shown_or_done(
    console: FlaskClient, stack: tuple[TemplateQueues, dict[str, str]], db: psycopg.Connection
) -> None:
    # Given a poison message, and a browser that has not opened the printed URL
    create_season(db, competitions=1, competitors_per_competition=4)
    invoke_points(points_bodies(999_999))
    stranger = console.application.test_client()
    ids = {"ids": "x", "confirm": "yes"}

    # When it reads the page, or posts a discard
    page = stranger.get("/", base_url=ORIGIN)
    wrong_login = stranger.get("/?token=guess", base_url=ORIGIN)
    blind_post = stranger.post("/actions/points/discard", base_url=ORIGIN, data=ids)
    # ...and when a signed-in browser is made to post from another site, or without the
    # CSRF token, or reaches the console under another host name (DNS rebinding)
    token = signed_in(console)
    cross_site = console.post(
        "/actions/refresh",
        base_url=ORIGIN,
        data={"scope": "all"},
        headers={"Origin": "http://evil.example", "X-CSRFToken": token},
    )
    no_token = console.post(
        "/actions/refresh", base_url=ORIGIN, data={"scope": "all"}, headers={"Origin": ORIGIN}
    )
    rebound = console.get("/api/overview", base_url="http://evil.example:8765")

    # Then each is refused, and nothing was sent or deleted
    assert page.status_code == wrong_login.status_code == blind_post.status_code == 403
    assert cross_site.status_code == 403
    assert no_token.status_code == 400
    assert rebound.status_code == 403
    assert stack[0].depth("RefreshQueue") == {"visible": 0, "in_flight": 0, "delayed": 0}
    assert stack[0].depth("PointsDeadLetterQueue")["visible"] == 1


# --------------------------------------------------------------------- hostile messages

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


def send_dead_letter(stack: TemplateQueues, body: str, attributes: dict[str, str]) -> None:
    stack.sqs.send_message(
        QueueUrl=stack.urls["PointsDeadLetterQueue"],
        MessageBody=body,
        MessageAttributes={
            name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
        },
    )


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


# --------------------------------------------------------------------- listing holds nothing


class Poller:
    """A browser tab left open on the console, as fast as it can: the page and each
    fragment it loads, the dead-letter list and a confirmation's preview included."""

    PATHS = (
        "/",
        "/fragments/overview",
        "/fragments/dead-letters",
        "/fragments/confirm/points/discard",
        "/api/dead-letters",
    )

    def __init__(self, console: FlaskClient) -> None:
        self._client = console.application.test_client()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.requests = 0
        self.failures: list[str] = []

    def __enter__(self) -> Poller:
        signed_in(self._client)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            for path in self.PATHS:
                response = self._client.get(path, base_url=ORIGIN)
                self.requests += 1
                if response.status_code != 200:
                    self.failures.append(f"{path}: {response.status_code}")


def test_while_the_console_is_open_a_receive_and_a_redrive_get_every_dead_letter(
    console: FlaskClient,
    stack: tuple[TemplateQueues, dict[str, str]],
    db: psycopg.Connection,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given five dead letters
    queues, _ = stack
    create_season(db, competitions=1, competitors_per_competition=4)
    invoke_points(points_bodies(*range(999_991, 999_996)))
    assert queues.depth("PointsDeadLetterQueue")["visible"] == 5
    dead_letter_url = queues.urls["PointsDeadLetterQueue"]

    with Poller(console) as poller:
        # When another reader receives from the queue again and again while the console
        # lists it, releasing what it got each time
        received = []
        for _ in range(15):
            batch = queues.sqs.receive_message(
                QueueUrl=dead_letter_url, MaxNumberOfMessages=10, VisibilityTimeout=30
            ).get("Messages", [])
            received.append(len(batch))
            if batch:
                queues.sqs.change_message_visibility_batch(
                    QueueUrl=dead_letter_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                        for i, m in enumerate(batch)
                    ],
                )
            time.sleep(0.1)
        # ...and the operator runs `matchstats dlq redrive points` meanwhile
        capsys.readouterr()
        code = cli_main(["dlq", "redrive", "points"])
        redrive_output = capsys.readouterr()
        polled = poller.requests

    # Then every receive got all five: the console hid none of them
    assert received == [5] * 15
    # ...the redrive moved all five back to PointsQueue, and none is left behind
    assert code == 0, redrive_output.err
    assert queues.depth("PointsDeadLetterQueue") == {"visible": 0, "in_flight": 0, "delayed": 0}
    assert len(queues.drain_all("PointsQueue")) == 5
    # ...while the console answered throughout
    assert polled > 10
    assert poller.failures == []
