"""A database laid out as in production: the application owns its tables, and the bundle
connects as a role of its own made by the README's "role rights" block, then migrates."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from devstack.postgres import create_database, drop_database
from matchstats.db.migrate import available_migrations, migrate

README = Path(__file__).resolve().parent.parent / "README.md"
ROLE_RIGHTS_MARKER = "-- matchstats: role rights"
_README_ROLE = "matchstats"


@dataclass(frozen=True)
class ProductionLikeDatabase:
    name: str
    owner_url: str  # the application's owner (the server's superuser here)
    role: str
    role_url: str  # the bundle's role, as the functions connect


def role_rights_sql(role: str, password: str) -> str:
    """The README's fenced SQL block that starts with ROLE_RIGHTS_MARKER, for `role`."""
    blocks = re.findall(r"```sql\n(.*?)```", README.read_text(), flags=re.DOTALL)
    block = next((b for b in blocks if b.startswith(ROLE_RIGHTS_MARKER)), None)
    assert block is not None, f"README.md has no sql block starting with {ROLE_RIGHTS_MARKER!r}"
    block = block.replace("'choose-one'", f"'{password}'")
    return re.sub(rf"\b{_README_ROLE}\b", role, block)


def create_production_like_database(
    server_url: str, label: str, *, encoding: str | None = None
) -> ProductionLikeDatabase:
    """The application's tables (migration 0001, without its index, as the application
    would have them) owned by the server's superuser; then the README's role, which runs
    every migration itself."""
    suffix = uuid.uuid4().hex[:8]
    name = f"{label[:40]}_{suffix}"
    role = f"matchstats_{suffix}"
    password = uuid.uuid4().hex
    owner_url = create_database(server_url, name, encoding=encoding)
    with psycopg.connect(owner_url, autocommit=True) as conn:
        application_tables = available_migrations()[0]
        conn.cursor().execute(application_tables.sql.encode(), binary=False)
        conn.execute("DROP INDEX IF EXISTS matches_competition_id_idx")
        conn.cursor().execute(role_rights_sql(role, password).encode(), binary=False)
    role_url = make_conninfo(owner_url, user=role, password=password)
    migrate(role_url)
    return ProductionLikeDatabase(name, owner_url, role, role_url)


def drop_production_like_database(server_url: str, database: ProductionLikeDatabase) -> None:
    drop_database(server_url, database.name)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(database.role)))


def apply_to(database: ProductionLikeDatabase, statements: Sequence[str]) -> None:
    """Runs each statement as the owner, with {db} and {role} naming the database and the
    bundle's role (e.g. "ALTER ROLE {role} IN DATABASE {db} SET datestyle = 'German'")."""
    with psycopg.connect(database.owner_url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.format(db=database.name, role=database.role).encode())


@contextmanager
def production_like_database(
    server_url: str, label: str, *, encoding: str | None = None, statements: Sequence[str] = ()
) -> Iterator[ProductionLikeDatabase]:
    """create_production_like_database, then `statements` (apply_to); dropped on exit."""
    database = create_production_like_database(server_url, label, encoding=encoding)
    try:
        apply_to(database, statements)
        yield database
    finally:
        drop_production_like_database(server_url, database)
