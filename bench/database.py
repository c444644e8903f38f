"""The benchmark's PostgreSQL: a database of its own per measurement on one server, and
set-based builders that fill a table of a million rows in a few statements."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from importlib import resources

import psycopg

from devstack.postgres import create_database, drop_database
from matchstats.db.migrate import migrate

# The fixture layout of sql/insert_fixtures.sql.
MATCHES_PER_COMPETITION = 380
ROWS_PER_MATCH = 2


@cache
def load_sql(name: str) -> bytes:
    return (resources.files(__package__) / "sql" / f"{name}.sql").read_bytes()


@contextmanager
def fresh_database(server_url: str, label: str) -> Iterator[str]:
    """A new, migrated database on the server, dropped on exit."""
    name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
    url = create_database(server_url, name)
    try:
        migrate(url)
        yield url
    finally:
        drop_database(server_url, name)


def connect(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True)


def insert_fixtures(
    conn: psycopg.Connection, first_id: int, count: int, *, completed: bool
) -> None:
    """Matches first_id .. first_id + count - 1 (with their competitions and teams)."""
    conn.execute(
        load_sql("insert_fixtures"), {"first": first_id - 1, "count": count, "completed": completed}
    )


def bulk_points(conn: psycopg.Connection, first_id: int, last_id: int) -> None:
    """match_points of the completed matches first_id .. last_id, in one statement."""
    conn.execute(load_sql("bulk_points"), {"first_id": first_id, "last_id": last_id})


def complete_matches(conn: psycopg.Connection, match_ids: Sequence[int]) -> None:
    conn.execute(load_sql("complete_matches"), {"match_ids": list(match_ids)})


def vacuum_analyze(conn: psycopg.Connection) -> None:
    """Fresh statistics and a visibility map after a bulk load, as autovacuum would leave."""
    conn.execute("VACUUM ANALYZE")


def match_points_rows(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM match_points").fetchone()
    assert row is not None
    return int(row[0])


def server_version(conn: psycopg.Connection) -> str:
    row = conn.execute("SHOW server_version").fetchone()
    assert row is not None
    return str(row[0])
