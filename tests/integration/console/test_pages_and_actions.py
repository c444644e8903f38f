"""The console's HTML and JSON endpoints without a browser (Flask's test client),
against the real PostgreSQL and the local SQS: what it shows, its actions, and what it
refuses (no session, a foreign Host or Origin, no CSRF token, no confirmation)."""

from __future__ import annotations

import json
import random
import re

import psycopg
from flask.testing import FlaskClient

from testkit.events import points_bodies
from testkit.seed import complete_matches, create_season
from tests.integration.console.steps import (
    CRON_SECRET,
    ORIGIN,
    invoke_points,
    play,
    post,
    signed_in,
)
from tests.template_queues import TemplateQueues


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
