"""The season the chaos run plays (tests/e2e/test_chaos.py): its size and outage
(Scenario), the messages of its completions, corrections and voids with their poison
(Plan), and what the database holds once the run is over (Outcome)."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass
from typing import Any, Literal

import psycopg

from matchstats.messages import PointsMessage
from matchstats.models import StandingsMode
from testkit.oracle import (
    actual_competitor_stats,
    actual_match_points,
    actual_standings,
    expected_competitor_stats,
    expected_match_points,
    expected_standings,
)
from testkit.seed import complete_matches, correct_score, create_season, void_match
from tests.chaos_support import (
    POISON_KINDS,
    ChaosMessage,
    Kind,
)

COPIES = 3
POISON_SHARE = 0.05
TEAMS = 20  # per competition: 20 x 19 = 380 fixtures


@dataclass(frozen=True)
class Scenario:
    """How big the season is, how long the database is down, how the functions reach
    it (directly, or through PgBouncer in transaction mode: DB_POOLER=transaction), and
    the standings mode."""

    scale: float
    outage_s: float | None  # None: no outage
    db_pooler: Literal["none", "transaction"] = "none"
    # How the standings are maintained (SPEC section 2), switched once the stack is up.
    standings: StandingsMode = StandingsMode.MATERIALIZED_VIEW

    @property
    def completions(self) -> int:
        return max(40, round(2_000 * self.scale))

    @property
    def corrections(self) -> int:
        return max(2, round(50 * self.scale))

    @property
    def voids(self) -> int:
        return max(1, round(20 * self.scale))

    @property
    def quiet_timeout_s(self) -> float:
        return 240 * max(self.scale, 1)

    @property
    def timeout_s(self) -> int:
        return int(max(300, 420 * self.scale))


@dataclass(frozen=True)
class Plan:
    """The season as played, and the messages of its first phase (completions and poison)."""

    completed: list[int]
    first_phase: list[ChaosMessage]
    valid_total: int


_numbers = itertools.count()


def valid_id() -> str:
    return f"v{next(_numbers)}"


def poison_id() -> str:
    return f"p{next(_numbers)}"


def points_message(match_id: int, version: int) -> str:
    return PointsMessage(match_id=match_id, score_version=version).to_body()


def poison(kind: Kind, n: int, missing_scores: list[int]) -> ChaosMessage:
    if kind is Kind.BAD_JSON:
        body = [f'{{"matchId": {n + 1}', f"matchId={n + 1}", "not json", f'{{"matchId": {n},}}'][
            n % 4
        ]
        return ChaosMessage(poison_id(), body, kind)
    if kind is Kind.MISSING_FIELD:
        body = ["{}", '{"scoreVersion": 2}', f'{{"match": {n + 1}}}'][n % 3]
        return ChaosMessage(poison_id(), body, kind)
    if kind is Kind.UNKNOWN_MATCH:
        match_id = 1_000_000_000 + n
        return ChaosMessage(poison_id(), points_message(match_id, 1), kind, match_id)
    match_id = missing_scores[n % len(missing_scores)]
    return ChaosMessage(poison_id(), points_message(match_id, 2), kind, match_id)


def prepare(db: psycopg.Connection, rng: random.Random, scenario: Scenario) -> Plan:
    """Completes the matches, marks some completed without scores (bad data), and builds
    the first phase's messages: every completion 3 times, and the poison, shuffled."""
    completions = scenario.completions
    valid_total = (completions + scenario.corrections + scenario.voids) * COPIES
    poison_count = round(valid_total * POISON_SHARE / (1 - POISON_SHARE))
    missing_scores_count = math.ceil(poison_count / len(POISON_KINDS))
    fixtures = TEAMS * (TEAMS - 1)
    season = create_season(
        db,
        competitions=math.ceil((completions + missing_scores_count) / fixtures),
        competitors_per_competition=TEAMS,
    )
    match_ids = list(season.match_ids)
    rng.shuffle(match_ids)
    completed = match_ids[:completions]
    versions = complete_matches(db, completed, rng)
    bad = match_ids[completions : completions + missing_scores_count]
    db.execute(
        "UPDATE matches SET status = 'completed', score_version = score_version + 1,"
        " completed_at = now() WHERE id = ANY (%s)",
        (bad,),
    )
    messages = [
        ChaosMessage(valid_id(), points_message(match_id, versions[match_id]), Kind.VALID, match_id)
        for match_id in completed
        for _ in range(COPIES)
    ]
    messages += [
        poison(POISON_KINDS[n % len(POISON_KINDS)], n // len(POISON_KINDS), bad)
        for n in range(poison_count)
    ]
    rng.shuffle(messages)
    return Plan(completed, messages, valid_total)


def correct_and_void(
    db: psycopg.Connection, plan: Plan, rng: random.Random, scenario: Scenario
) -> list[ChaosMessage]:
    """The application corrects some results and voids some matches; each change sends
    its own message (3 times)."""
    corrections = scenario.corrections
    targets = rng.sample(plan.completed, corrections + scenario.voids)
    changed = {
        m: correct_score(db, m, rng.randint(0, 5), rng.randint(0, 5)) for m in targets[:corrections]
    }
    changed |= {m: void_match(db, m) for m in targets[corrections:]}
    return [
        ChaosMessage(valid_id(), points_message(m, version), Kind.VALID, m)
        for m, version in changed.items()
        for _ in range(COPIES)
    ]


@dataclass(frozen=True)
class Outcome:
    actual: set[Any]
    expected: set[Any]
    lost_matches: set[int]
    double_counted: int
    points_total: int
    standings_equal: bool
    stats_equal: bool

    @classmethod
    def read(cls, db: psycopg.Connection) -> Outcome:
        actual, expected = actual_match_points(db), expected_match_points(db)
        standings, expected_table = actual_standings(db), expected_standings(db)
        duplicates = db.execute(
            "SELECT count(*) FROM (SELECT 1 FROM match_points"
            " GROUP BY match_id, competitor_id HAVING count(*) > 1) AS d"
        ).fetchone()
        # More points or games in a standings row than the recomputation gives
        overcounted = sum(
            1
            for key, row in standings.items()
            if row["points"] > expected_table.get(key, {}).get("points", 0)
            or row["played"] > expected_table.get(key, {}).get("played", 0)
        )
        return cls(
            actual=actual,
            expected=expected,
            lost_matches={row[0] for row in expected - actual},
            double_counted=(duplicates[0] if duplicates else 0)
            + len(actual - expected)
            + overcounted,
            points_total=sum(row["points"] for row in standings.values()),
            standings_equal=standings == expected_table,
            stats_equal=actual_competitor_stats(db) == expected_competitor_stats(db),
        )
