"""`make demo`: the whole pipeline on this machine, end to end.

Starts the local stack, seeds a season, plays the application's scoring Lambda
(completes matches in bursts through the producer helper, corrects one score, voids
one match, calls the HTTPS endpoint), waits until every queue is drained, prints the
tables and the pipeline's figures, checks the standings against an independent
recomputation, stops everything and exits 0 only if the check held.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import psycopg

from devstack.processes import die_with_parent
from devstack.stack import DevStack, StackOptions
from devstack.template import TEMPLATE_PATH
from matchstats.producer import enqueue_points_calculation, enqueue_points_calculations
from testkit.oracle import (
    actual_competitor_stats,
    actual_match_points,
    actual_standings,
    expected_competitor_stats,
    expected_match_points,
    expected_standings,
)
from testkit.seed import complete_matches, correct_score, create_season, void_match

VIEWS = ("competition_standings", "competitor_stats")
# Where `make demo` and `make dev` keep the functions' logs (git-ignored; each run
# starts them afresh).
LOG_DIR = TEMPLATE_PATH.parent / ".devstack" / "logs"
_COLUMNS = ("P", "W", "D", "L", "F", "A", "GD", "Pts")


@dataclass
class DemoReport:
    matches_completed: int = 0  # completed now, from the database (a voided one is not)
    matches_corrected: int = 0
    matches_voided: int = 0
    points_sent: int = 0
    points_processed: int = 0
    points_retried: int = 0
    refresh_requests: int = 0
    refreshes_executed: dict[str, int] = field(default_factory=dict)
    requests_answered: int = 0  # view requests an executed refresh covered
    requests_skipped: int = 0  # view requests skipped: covered by an earlier refresh, or unchanged
    dead_lettered: dict[str, int] = field(default_factory=dict)
    freshness_ms: list[int] = field(default_factory=list)
    api_status: int | None = None
    checks: dict[str, bool] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(self.checks.values())


class Progress:
    def __init__(self, out: TextIO, label: str, total: int, enabled: bool):
        self.out, self.label, self.total, self.enabled = out, label, total, enabled

    def show(self, done: int) -> None:
        if not self.enabled:
            return
        width = 30
        filled = width * done // max(self.total, 1)
        bar = "#" * filled + "." * (width - filled)
        end = "\n" if done >= self.total else ""
        self.out.write(f"\r  {self.label:<10} [{bar}] {done}/{self.total}{end}")
        self.out.flush()


def run_demo(
    *,
    competitions: int = 3,
    competitors: int = 20,
    burst_size: int = 60,
    burst_pause_s: float = 0.2,
    seed: int = 2026,
    out: TextIO = sys.stdout,
    progress: bool = True,
    log_dir: Path | None = None,
) -> DemoReport:
    started = time.monotonic()
    report = DemoReport()
    say = out.write
    say("matchstats demo: starting PostgreSQL, SQS and the four functions on 127.0.0.1 ...\n")
    with DevStack(StackOptions(schedule_interval_s=20, log_dir=log_dir)) as stack:
        say(f"  stack up in {time.monotonic() - started:.1f} s; function logs in {stack.log_dir}\n")
        with psycopg.connect(stack.database_url, autocommit=True) as db:
            _play(
                stack,
                db,
                report,
                competitions,
                competitors,
                burst_size,
                burst_pause_s,
                seed,
                out,
                progress,
            )
            say("  waiting for every queue to drain ...\n")
            stack.wait_until_idle(timeout_s=120)
            _collect(stack, db, report)
            _check(db, report)
            _print_tables(db, out)
    report.seconds = time.monotonic() - started
    _print_figures(report, out)
    return report


def _play(
    stack: DevStack,
    db: psycopg.Connection,
    report: DemoReport,
    competitions: int,
    competitors: int,
    burst_size: int,
    burst_pause_s: float,
    seed: int,
    out: TextIO,
    progress: bool,
) -> None:
    rng = random.Random(seed)
    season = create_season(db, competitions=competitions, competitors_per_competition=competitors)
    out.write(
        f"  seeded {competitions} competitions x {competitors} competitors,"
        f" {len(season.match_ids)} matches (double round robin)\n"
    )
    queue_url = stack.queue_urls["PointsQueue"]
    order = season.match_ids[:]
    rng.shuffle(order)
    bar = Progress(out, "playing", len(order), progress)
    for start in range(0, len(order), burst_size):
        burst = order[start : start + burst_size]
        versions = complete_matches(db, burst, rng)
        enqueue_points_calculations(
            list(versions.items()), queue_url=queue_url, sqs_client=stack.sqs
        )
        report.points_sent += len(versions)
        bar.show(min(start + burst_size, len(order)))
        time.sleep(burst_pause_s)

    # A corrected result and a voided match, as the application would send them.
    corrected, voided = order[0], order[1]
    version = correct_score(db, corrected, 5, 5)
    enqueue_points_calculation(
        corrected, score_version=version, queue_url=queue_url, sqs_client=stack.sqs
    )
    version = void_match(db, voided)
    enqueue_points_calculation(
        voided, score_version=version, queue_url=queue_url, sqs_client=stack.sqs
    )
    report.points_sent += 2
    report.matches_corrected, report.matches_voided = 1, 1
    out.write(f"  corrected match {corrected} to 5-5 and voided match {voided}\n")

    assert stack.api is not None, "the template has no API event"
    request = urllib.request.Request(  # noqa: S310 - our own server on 127.0.0.1
        f"{stack.api.url}/cron/update-stats",
        data=json.dumps({"scope": "all"}).encode(),
        method="POST",
        headers={
            "Authorization": f"Bearer {stack.options.cron_secret}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        report.api_status = response.status
        out.write(f"  POST /cron/update-stats -> {response.status} {response.read().decode()}\n")


def _collect(stack: DevStack, db: psycopg.Connection, report: DemoReport) -> None:
    points = stack.mappings["CalculatePointsFunction"].stats
    refresh = stack.mappings["RefreshViewsFunction"].stats
    report.points_processed = points.records_succeeded
    report.points_retried = points.records_failed
    report.refresh_requests = refresh.records_succeeded
    (completed,) = db.execute(
        "SELECT count(*) FROM matches WHERE status = 'completed'"
    ).fetchone() or (0,)
    report.matches_completed = int(completed)
    report.dead_lettered = {
        name: counts["visible"] for name, counts in stack.counts().items() if "DeadLetter" in name
    }
    rows = db.execute(
        "SELECT view_name, count(*), sum(requests_covered) FROM refresh_log GROUP BY view_name"
    ).fetchall()
    report.refreshes_executed = {view: 0 for view in VIEWS} | {r[0]: int(r[1]) for r in rows}
    report.requests_answered = sum(int(r[2]) for r in rows)
    report.requests_skipped = report.refresh_requests * len(VIEWS) - report.requests_answered
    report.freshness_ms = [
        int(r[0])
        for r in db.execute(
            "SELECT extract(epoch FROM finished_at - oldest_request_at) * 1000 FROM refresh_log"
            " WHERE oldest_request_at IS NOT NULL"
        ).fetchall()
    ]


def _check(db: psycopg.Connection, report: DemoReport) -> None:
    report.checks = {
        "match_points": actual_match_points(db) == expected_match_points(db),
        "competition_standings": actual_standings(db) == expected_standings(db),
        "competitor_stats": actual_competitor_stats(db) == expected_competitor_stats(db),
        "nothing dead-lettered": not any(report.dead_lettered.values()),
        "every message processed once": report.points_processed == report.points_sent,
    }


def _print_tables(db: psycopg.Connection, out: TextIO, top: int = 5) -> None:
    competitions = db.execute("SELECT id, name FROM competitions ORDER BY id").fetchall()
    for competition_id, name in competitions:
        rows = db.execute(
            "SELECT t.rank, c.name, t.played, t.won, t.drawn, t.lost, t.score_for,"
            " t.score_against, t.score_diff, t.points"
            " FROM competition_table t JOIN competitors c ON c.id = t.competitor_id"
            " WHERE t.competition_id = %s ORDER BY t.rank, t.competitor_id LIMIT %s",
            (competition_id, top),
        ).fetchall()
        (size,) = db.execute(
            "SELECT count(*) FROM competition_table WHERE competition_id = %s", (competition_id,)
        ).fetchone() or (0,)
        out.write(f"\n  {name} (top {min(top, size)} of {size})\n")
        out.write(f"  {'#':>3}  {'team':<14}" + "".join(f"{h:>5}" for h in _COLUMNS) + "\n")
        for rank, team, *numbers in rows:
            played, won, drawn, lost, scored, conceded, diff, points = numbers
            cells = (played, won, drawn, lost, scored, conceded, f"{diff:+d}", points)
            out.write(f"  {rank:>3}  {team:<14}" + "".join(f"{c:>5}" for c in cells) + "\n")


def _percentile(values: list[int], fraction: float) -> int:
    if not values:
        return 0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _print_figures(report: DemoReport, out: TextIO) -> None:
    executed = report.refreshes_executed
    lines = [
        (
            "matches completed",
            f"{report.matches_completed} (after {report.matches_corrected} corrected and"
            f" {report.matches_voided} voided)",
        ),
        (
            "points messages",
            f"{report.points_sent} sent, {report.points_processed} processed,"
            f" {report.points_retried} retried",
        ),
        ("refresh requests", f"{report.refresh_requests} (after points, the schedule and the API)"),
        (
            "view refreshes",
            f"{sum(executed.values())} executed"
            f" ({', '.join(f'{v} {n}' for v, n in executed.items())}) for"
            f" {report.refresh_requests * len(VIEWS)} view requests:"
            f" {report.requests_answered} coalesced into them,"
            f" {report.requests_skipped} skipped (covered or unchanged)",
        ),
        ("dead-lettered", ", ".join(f"{n}: {c}" for n, c in sorted(report.dead_lettered.items()))),
        (
            "freshness",
            f"p50 {_percentile(report.freshness_ms, 0.5)} ms,"
            f" p95 {_percentile(report.freshness_ms, 0.95)} ms (refresh finished - oldest request)",
        ),
        ("run time", f"{report.seconds:.1f} s"),
    ]
    out.write("\n  pipeline figures\n")
    for label, value in lines:
        out.write(f"  {label:<18} {value}\n")
    failed = [name for name, ok in report.checks.items() if not ok]
    if failed:
        out.write(
            f"\n  CHECK FAILED: {', '.join(failed)} differ from a recomputation from matches\n"
        )
    else:
        out.write(
            "\n  check: match_points, competition_standings and competitor_stats equal an"
            " independent recomputation from matches; nothing dead-lettered. OK\n"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__)
    parser.add_argument("--competitions", type=int, default=3)
    parser.add_argument("--competitors", type=int, default=20)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    # `make demo` killed outright: SIGINT unwinds the stack as Ctrl-C does, stopping
    # what it started.
    die_with_parent(signal.SIGINT)
    report = run_demo(
        competitions=args.competitions,
        competitors=args.competitors,
        progress=not args.no_progress and sys.stdout.isatty(),
        log_dir=LOG_DIR,
    )
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
