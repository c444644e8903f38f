"""`matchstats recompute` and `refresh`: points messages enqueued for the selected matches,
and a refresh requested or run in process, also where no AWS setting exists at all."""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path

import psycopg
import pytest

from testkit.events import points_bodies
from testkit.oracle import (
    actual_competitor_stats,
    actual_match_points,
    actual_standings,
    expected_competitor_stats,
    expected_match_points,
    expected_standings,
)
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
    results_in(db, season(db).match_ids[:6], random.Random(7))
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


def results_in(db: psycopg.Connection, matches: list[int], rng: random.Random) -> None:
    """The app completes `matches` and CalculatePointsFunction computes their points."""
    complete_matches(db, matches, rng)
    invoke_points(points_bodies(*matches))


SCRIPT = Path(__file__).resolve().parents[3] / ".venv" / "bin" / "matchstats"


def run_with_only_a_database(
    home: Path, database_url: str, *argv: str
) -> subprocess.CompletedProcess[str]:
    """The installed script as `env -i PATH=... HOME=... DATABASE_URL=... matchstats ...`
    runs it: no AWS region, credentials, profile, config file or endpoint."""
    return subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [str(SCRIPT), *argv],
        env={"PATH": os.environ["PATH"], "HOME": str(home), "DATABASE_URL": database_url},
        cwd=home,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.usefixtures("stack")
def test_refresh_in_process_needs_only_the_database_and_says_the_event_was_not_published(
    db: psycopg.Connection, database_url: str, tmp_path: Path
) -> None:
    # Given completed matches with points that no view shows yet
    rng = random.Random(11)
    matches = season(db).match_ids
    results_in(db, matches[:4], rng)

    # When an operator with nothing but DATABASE_URL rebuilds the standings, then (after
    # more results) forces a refresh, waiting for each
    full = run_with_only_a_database(tmp_path, database_url, "refresh", "--full")
    full_shown = actual_standings(db) == expected_standings(db)
    results_in(db, matches[4:8], rng)
    forced = run_with_only_a_database(tmp_path, database_url, "refresh", "--force", "--wait")

    # Then each refresh ran and committed: both views executed and show every result
    for run in (full, forced):
        assert run.returncode == 0, run.stderr
        assert run.stdout.count("executed") == 2
        assert "done in" in run.stdout
    assert full_shown
    assert actual_standings(db) == expected_standings(db)
    assert actual_competitor_stats(db) == expected_competitor_stats(db)
    # ...the output is the plain table, and one plain line says the event went nowhere, why
    for run in (full, forced):
        assert "{" not in run.stdout
        [line] = run.stderr.splitlines()
        assert line.startswith("matchstats: StandingsRefreshed not published: no AWS region")


@pytest.mark.usefixtures("stack")
def test_refresh_in_process_with_a_region_but_no_credentials_prints_plain_text(
    db: psycopg.Connection, database_url: str, tmp_path: Path
) -> None:
    # Given completed matches with points that no view shows yet
    results_in(db, season(db).match_ids[:4], random.Random(12))

    # When an operator names a region but has no AWS credentials, and refreshes, waiting
    run = run_with_only_a_database(
        tmp_path, database_url, "refresh", "--wait", "--region", "eu-west-1"
    )

    # Then the refresh committed, the table is plain text with no log line mixed in, and
    # one plain line says why the event went nowhere
    assert run.returncode == 0, run.stderr
    assert actual_standings(db) == expected_standings(db)
    assert run.stdout.count("executed") == 2
    assert "{" not in run.stdout
    [line] = run.stderr.splitlines()
    assert line.startswith("matchstats: StandingsRefreshed not published: no AWS credentials")
