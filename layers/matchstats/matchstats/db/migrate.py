"""Applies the SQL files in migrations/ in name order, each once, each in its own
transaction. Safe to run twice and from several processes at once."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import psycopg

from matchstats.db.sql import load_sql

# Any fixed number works; it only has to differ from the application's own advisory locks.
_MIGRATION_LOCK_KEY = 0x6D617463  # "matc"


@dataclass(frozen=True)
class Migration:
    version: str
    sql: str


def available_migrations() -> list[Migration]:
    folder = resources.files("matchstats.db") / "migrations"
    files = sorted(
        (entry for entry in folder.iterdir() if entry.name.endswith(".sql")),
        key=lambda entry: entry.name,
    )
    return [Migration(entry.name.removesuffix(".sql"), entry.read_text("utf-8")) for entry in files]


def apply_migrations(conn: psycopg.Connection) -> list[str]:
    """Applies what is missing and returns the versions it applied."""
    applied_now: list[str] = []
    with conn.transaction():
        conn.execute(load_sql("create_schema_migrations"))
    for migration in available_migrations():
        with conn.transaction():
            # Serialises concurrent migrators; the second one then sees the version as applied.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))
            done = conn.execute(
                "SELECT 1 FROM schema_migrations WHERE version = %s", (migration.version,)
            ).fetchone()
            if done:
                continue
            conn.execute(migration.sql.encode("utf-8"))
            conn.execute(
                "INSERT INTO schema_migrations (version) VALUES (%s)", (migration.version,)
            )
            applied_now.append(migration.version)
    return applied_now


def migrate(database_url: str) -> list[str]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return apply_migrations(conn)
