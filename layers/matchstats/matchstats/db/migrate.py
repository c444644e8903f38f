"""Applies the SQL files in migrations/ in name order, each once, each in its own
transaction. Safe to run twice and from several processes at once."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import psycopg

from matchstats.db.connection import BinaryCursor, Limits, bundle_transaction
from matchstats.db.sql import load_sql

# Any fixed number works; it only has to differ from the application's own advisory locks.
_MIGRATION_LOCK_KEY = 0x6D617463  # "matc"
MIGRATION_LOCK_TIMEOUT_MS = 30_000
_LIMITS = Limits(statement_timeout_ms=0, lock_timeout_ms=MIGRATION_LOCK_TIMEOUT_MS)


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


def apply_migrations(conn: psycopg.Connection, *, schema: str = "public") -> list[str]:
    """Applies what is missing, in `schema`, and returns the versions it applied.

    Each migration runs with the bundle's transaction settings (connection.py): in
    `schema` whatever the role's search_path, with no statement timeout (building an index
    on a large table takes what it takes), and waiting at most MIGRATION_LOCK_TIMEOUT_MS
    for a lock rather than queueing the application's writers behind it for ever.
    """
    applied_now: list[str] = []
    with bundle_transaction(conn, schema, _LIMITS):
        conn.execute(load_sql("create_schema_migrations"))
    for migration in available_migrations():
        with bundle_transaction(conn, schema, _LIMITS):
            # Serialises concurrent migrators; the second one then sees the version as applied.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))
            done = conn.execute(
                "SELECT 1 FROM schema_migrations WHERE version = %s", (migration.version,)
            ).fetchone()
            if done:
                continue  # leaving the block commits the empty transaction
            # Text, so psycopg sends the file's several statements as one simple query.
            conn.cursor().execute(migration.sql.encode("utf-8"), binary=False)
            conn.execute(
                "INSERT INTO schema_migrations (version) VALUES (%s)", (migration.version,)
            )
            applied_now.append(migration.version)
    return applied_now


def migrate(database_url: str, *, schema: str = "public") -> list[str]:
    with psycopg.connect(database_url, autocommit=True, cursor_factory=BinaryCursor) as conn:
        return apply_migrations(conn, schema=schema)
