"""Plays the application: creates a season and changes matches the way the app does
(every score or status change bumps score_version). Used by the tests and the demo."""

from __future__ import annotations

import random
from dataclasses import dataclass

import psycopg


@dataclass(frozen=True)
class Season:
    competition_ids: list[int]
    competitor_ids: dict[int, list[int]]  # competition id -> its competitors
    match_ids: list[int]


def create_season(
    conn: psycopg.Connection,
    *,
    competitions: int = 3,
    competitors_per_competition: int = 20,
    rounds: int = 2,
    rules: tuple[int, int, int] = (3, 1, 0),
) -> Season:
    """Round-robin fixtures (every pair meets `rounds` times, home and away in turn),
    all scheduled. Inserts are set-based: a season is a handful of statements."""
    win, draw, loss = rules
    competition_ids: list[int] = []
    competitor_ids: dict[int, list[int]] = {}
    match_ids: list[int] = []
    with conn.transaction():
        for index in range(competitions):
            row = conn.execute(
                "INSERT INTO competitions (name, points_win, points_draw, points_loss)"
                " VALUES (%s, %s, %s, %s) RETURNING id",
                (f"League {index + 1}", win, draw, loss),
            ).fetchone()
            assert row is not None
            competition_id = row[0]
            names = [f"L{index + 1} Team {n + 1:02d}" for n in range(competitors_per_competition)]
            teams = [
                r[0]
                for r in conn.execute(
                    "INSERT INTO competitors (name) SELECT unnest(%s::text[]) RETURNING id",
                    (names,),
                ).fetchall()
            ]
            pairs = [
                (home, away) if leg % 2 == 0 else (away, home)
                for leg in range(rounds)
                for i, home in enumerate(teams)
                for away in teams[i + 1 :]
            ]
            ids = conn.execute(
                "INSERT INTO matches (competition_id, home_id, away_id, status)"
                " SELECT %s, h, a, 'scheduled' FROM unnest(%s::bigint[], %s::bigint[]) AS p (h, a)"
                " RETURNING id",
                (competition_id, [h for h, _ in pairs], [a for _, a in pairs]),
            ).fetchall()
            competition_ids.append(competition_id)
            competitor_ids[competition_id] = teams
            match_ids.extend(r[0] for r in ids)
    return Season(competition_ids, competitor_ids, match_ids)


def complete_matches(
    conn: psycopg.Connection, match_ids: list[int], rng: random.Random
) -> dict[int, int]:
    """Gives each match a random final score; returns match id -> new score_version."""
    scores: list[tuple[int | None, int | None]] = [
        (rng.choice((0, 0, 1, 1, 1, 2, 2, 3, 4)), rng.choice((0, 0, 1, 1, 2, 2, 3)))
        for _ in match_ids
    ]
    return _set(conn, match_ids, scores, "completed")


def correct_score(conn: psycopg.Connection, match_id: int, home: int, away: int) -> int:
    """A corrected result: new score, same status, score_version + 1."""
    return _set(conn, [match_id], [(home, away)], "completed")[match_id]


def void_match(conn: psycopg.Connection, match_id: int) -> int:
    """A voided match: cancelled, scores kept as they were, score_version + 1."""
    with conn.transaction():
        row = conn.execute(
            "UPDATE matches SET status = 'cancelled', score_version = score_version + 1"
            " WHERE id = %s RETURNING score_version",
            (match_id,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def _set(
    conn: psycopg.Connection,
    match_ids: list[int],
    scores: list[tuple[int | None, int | None]],
    status: str,
) -> dict[int, int]:
    with conn.transaction():
        rows = conn.execute(
            "UPDATE matches AS m"
            " SET home_score = s.home, away_score = s.away, status = %s,"
            "     score_version = m.score_version + 1, completed_at = now()"
            " FROM unnest(%s::bigint[], %s::int[], %s::int[]) AS s (id, home, away)"
            " WHERE m.id = s.id RETURNING m.id, m.score_version",
            (status, match_ids, [h for h, _ in scores], [a for _, a in scores]),
        ).fetchall()
    return {int(r[0]): int(r[1]) for r in rows}


@dataclass(frozen=True)
class DevSeason:
    """What `make dev` seeds: two leagues of six, half their matches played."""

    season: Season
    played: list[int]  # completed with scores: their points messages are sent at start
    bad_data: int  # marked completed without scores, as an app with a bug would
    unplayed: list[int]


def seed_dev_season(conn: psycopg.Connection, seed: int = 2026) -> DevSeason:
    """A small season for the local stack, in a fresh database (so match ids start at 1,
    which events/calculate-points.json names): in each league the first half of the
    fixtures played, and the first unplayed match of league 1 completed without scores,
    which the points function dead-letters as bad data for the operator to repair."""
    season = create_season(conn, competitions=2, competitors_per_competition=6)
    rows = conn.execute(
        "SELECT competition_id, array_agg(id ORDER BY id) FROM matches GROUP BY 1 ORDER BY 1"
    ).fetchall()
    fixtures = [list(ids) for _, ids in rows]
    played = [match for ids in fixtures for match in ids[: len(ids) // 2]]
    complete_matches(conn, played, random.Random(seed))
    bad_data = fixtures[0][len(fixtures[0]) // 2]
    with conn.transaction():
        conn.execute(
            "UPDATE matches SET status = 'completed', score_version = score_version + 1,"
            " completed_at = now() WHERE id = %s",
            (bad_data,),
        )
    unplayed = [m for ids in fixtures for m in ids[len(ids) // 2 :] if m != bad_data]
    return DevSeason(season, played, bad_data, unplayed)
