"""What the database property tests share: Hypothesis settings for examples that each run
against the real PostgreSQL, the line-ups the application may give a match, and its
competitors."""

from __future__ import annotations

import psycopg
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st


def database_examples(max_examples: int) -> settings:
    """Each example plays against the module's database (a function-scoped fixture, reset
    by the example itself) and takes milliseconds to seconds: no deadline."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


def lineups(competitors: int) -> st.SearchStrategy[tuple[int, int] | None]:
    """None (the line-up stays), or a (home, away) pair of distinct competitor indices."""
    pairs = st.permutations(range(competitors)).map(lambda order: (order[0], order[1]))
    return st.none() | pairs


def insert_competitors(conn: psycopg.Connection, count: int) -> list[int]:
    """`count` competitors named Team 1, Team 2...; their ids in that order."""
    rows = conn.execute(
        "INSERT INTO competitors (name) SELECT 'Team ' || n FROM generate_series(1, %s) n"
        " RETURNING id",
        (count,),
    ).fetchall()
    return [row[0] for row in rows]
