"""An independent recomputation of what match_points and the views must hold, in plain
Python from the `matches` rows, to check the SQL against."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import psycopg

MatchPointsRow = tuple[int, int, int, str, int, int, int, int]
# The figures of a competition_standings row and of a competitor_stats row, keys apart.
STANDINGS_FIGURES = (
    "played", "won", "drawn", "lost", "score_for", "score_against", "score_diff", "points"
)  # fmt: skip
STATS_FIGURES = (
    "played", "won", "drawn", "lost", "score_for", "score_against", "points", "competitions"
)  # fmt: skip


def expected_match_points(conn: psycopg.Connection) -> set[MatchPointsRow]:
    """(match_id, competitor_id, competition_id, result, points, for, against, score_version)
    for every completed match that has both scores."""
    rows = conn.execute(
        "SELECT m.id, m.competition_id, m.home_id, m.away_id, m.home_score, m.away_score,"
        " m.status, m.score_version, c.points_win, c.points_draw, c.points_loss"
        " FROM matches m JOIN competitions c ON c.id = m.competition_id"
    ).fetchall()
    expected: set[MatchPointsRow] = set()
    for match_id, competition_id, home, away, hs, aws, status, version, win, draw, loss in rows:
        if status != "completed" or hs is None or aws is None:
            continue
        for team, mine, theirs in ((home, hs, aws), (away, aws, hs)):
            result = "W" if mine > theirs else "D" if mine == theirs else "L"
            points = {"W": win, "D": draw, "L": loss}[result]
            expected.add((match_id, team, competition_id, result, points, mine, theirs, version))
    return expected


def actual_match_points(conn: psycopg.Connection) -> set[MatchPointsRow]:
    rows = conn.execute(
        "SELECT match_id, competitor_id, competition_id, result, points, score_for,"
        " score_against, score_version FROM match_points"
    ).fetchall()
    return {(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]) for r in rows}


def expected_standings(conn: psycopg.Connection) -> dict[tuple[int, int], dict[str, Any]]:
    """(competition_id, competitor_id) -> the competition_standings columns."""
    table: dict[tuple[int, int], dict[str, Any]] = defaultdict(
        lambda: dict.fromkeys(STANDINGS_FIGURES, 0)
    )
    for _, team, competition, result, points, mine, theirs, _ in expected_match_points(conn):
        row = table[(competition, team)]
        row["played"] += 1
        row[{"W": "won", "D": "drawn", "L": "lost"}[result]] += 1
        row["score_for"] += mine
        row["score_against"] += theirs
        row["score_diff"] += mine - theirs
        row["points"] += points
    return dict(table)


def actual_standings(conn: psycopg.Connection) -> dict[tuple[int, int], dict[str, Any]]:
    rows = conn.execute(
        "SELECT competition_id, competitor_id, played, won, drawn, lost, score_for,"
        " score_against, score_diff, points FROM competition_standings"
    ).fetchall()
    return {(r[0], r[1]): dict(zip(STANDINGS_FIGURES, r[2:], strict=True)) for r in rows}


def expected_competitor_stats(conn: psycopg.Connection) -> dict[int, dict[str, Any]]:
    """competitor_id -> the competitor_stats columns."""
    # Every figure but competitions, which counts the set of a competitor's competitions.
    summed = [figure for figure in STATS_FIGURES if figure != "competitions"]
    table: dict[int, dict[str, Any]] = defaultdict(lambda: dict.fromkeys(summed, 0))
    competitions: dict[int, set[int]] = defaultdict(set)
    for _, team, competition, result, points, mine, theirs, _ in expected_match_points(conn):
        row = table[team]
        row["played"] += 1
        row[{"W": "won", "D": "drawn", "L": "lost"}[result]] += 1
        row["score_for"] += mine
        row["score_against"] += theirs
        row["points"] += points
        competitions[team].add(competition)
    return {team: {**row, "competitions": len(competitions[team])} for team, row in table.items()}


def actual_competitor_stats(conn: psycopg.Connection) -> dict[int, dict[str, Any]]:
    rows = conn.execute(
        "SELECT competitor_id, played, won, drawn, lost, score_for, score_against, points,"
        " competitions FROM competitor_stats"
    ).fetchall()
    return {r[0]: dict(zip(STATS_FIGURES, r[1:], strict=True)) for r in rows}


def expected_table_order(conn: psycopg.Connection, competition_id: int) -> list[tuple[int, int]]:
    """(rank, competitor_id) in list order: points, score difference, scores for (all
    descending); ties share a rank and list by competitor id."""
    standings = {
        team: row
        for (competition, team), row in expected_standings(conn).items()
        if competition == competition_id
    }

    def key(team: int) -> tuple[int, int, int]:
        row = standings[team]
        return (-row["points"], -row["score_diff"], -row["score_for"])

    ordered = sorted(standings, key=lambda team: (key(team), team))
    ranks: list[tuple[int, int]] = []
    for position, team in enumerate(ordered, start=1):
        tied_with_previous = ranks and key(ordered[position - 2]) == key(team)
        ranks.append((ranks[-1][0] if tied_with_previous else position, team))
    return ranks
