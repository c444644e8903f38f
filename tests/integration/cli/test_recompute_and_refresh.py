"""`matchstats recompute` and `refresh`: points messages enqueued for the selected matches,
and a refresh requested or run in process."""

from __future__ import annotations

import json
import random

import psycopg
import pytest

from testkit.events import points_bodies
from testkit.oracle import actual_match_points, expected_match_points
from testkit.seed import complete_matches, void_match
from tests.integration.cli.steps import cli, consume_points, invoke_points, season
from tests.template_queues import TemplateQueues


def test_recompute_enqueues_the_selected_matches_and_fixes_points(
    capsys: pytest.CaptureFixture[str], stack: TemplateQueues, db: psycopg.Connection
) -> None:
    # Given two competitions: in the first 10 matches completed with points, one since
    # voided (its points must go); in the second 4 completed without points yet
    first, second = season(db, competitions=2, teams=6).competition_ids
    by_competition = dict(
        db.execute(
            "SELECT competition_id, array_agg(id ORDER BY id) FROM matches GROUP BY 1"
        ).fetchall()
    )
    played = by_competition[first][:10]
    complete_matches(db, played, random.Random(5))
    invoke_points(points_bodies(*played))
    void_match(db, played[0])
    complete_matches(db, by_competition[second][:4], random.Random(6))

    # When the operator recomputes two matches, then the first competition, then all
    some = cli(capsys, "recompute", "--match", str(played[1]), str(played[2]))
    one = cli(capsys, "recompute", "--competition", str(first))
    everything = cli(capsys, "recompute", "--all")
    dry = cli(capsys, "recompute", "--all", "--dry-run")

    # Then each counts what it selected: the voided match too, unplayed ones not at all
    assert some.code == one.code == everything.code == dry.code == 0
    assert "enqueued 2 points message(s)" in some.out
    assert "enqueued 10 points message(s)" in one.out
    assert "enqueued 14 points message(s)" in everything.out
    assert "would enqueue 14" in dry.out
    assert "[##############################] 14/14" in everything.err
    assert stack.depth("PointsQueue")["visible"] == 2 + 10 + 14
    # ...and once consumed, match_points is right: the voided match lost its points
    consume_points(stack)
    assert actual_match_points(db) == expected_match_points(db)
    assert len(actual_match_points(db)) == 2 * (9 + 4)


def test_refresh_enqueues_or_runs_in_process(
    capsys: pytest.CaptureFixture[str], stack: TemplateQueues, db: psycopg.Connection
) -> None:
    # Given completed matches with points that no view shows yet
    matches = season(db).match_ids[:6]
    complete_matches(db, matches, random.Random(7))
    invoke_points(points_bodies(*matches))
    stack.drain_all("RefreshQueue")  # the function's own requests

    # When the operator requests a refresh, then runs one, then another, then forces one
    requested = cli(capsys, "refresh", "--scope", "competitor_stats", "--force")
    executed = cli(capsys, "refresh", "--wait")
    skipped = cli(capsys, "refresh", "--wait")
    forced = cli(capsys, "refresh", "--wait", "--scope", "competition_standings", "--force")

    # Then the request is on RefreshQueue as a manual, forced one for that view
    assert requested.code == 0
    assert "message id" in requested.out
    [message] = stack.drain_all("RefreshQueue")
    body = json.loads(message["Body"])
    assert (body["scope"], body["reason"], body["force"]) == ("competitor_stats", "manual", True)
    # ...the first in-process refresh ran both views and says how long it took
    assert executed.code == 0
    assert executed.out.count("executed") == 2
    assert "done in" in executed.out
    standings = db.execute("SELECT count(*) FROM competition_standings").fetchone()
    sides = db.execute("SELECT count(DISTINCT competitor_id) FROM match_points").fetchone()
    assert standings == sides
    assert standings is not None
    assert standings[0] > 0
    # ...the second had nothing to do, and --force refreshed anyway
    assert skipped.out.count("skipped: nothing changed") == 2
    assert forced.out.count("executed") == 1
    assert "competitor_stats" not in forced.out
