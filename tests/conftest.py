"""Shared pytest fixtures, one section per concern."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from devstack.postgres import create_database, drop_database, postgres_server
from matchstats.db.migrate import migrate

# --- Database ----------------------------------------------------------------
# One server per test session ($DATABASE_URL or an embedded one), and a fresh
# database per test module so modules never see each other's rows.


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="module")
def empty_database_url(postgres_server_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    module = re.sub(r"[^a-z0-9_]", "_", request.module.__name__.rsplit(".", 1)[-1].lower())
    # PostgreSQL truncates identifiers at 63 bytes; keep the random suffix intact.
    name = f"test_{module[:40]}_{uuid.uuid4().hex[:8]}"
    url = create_database(postgres_server_url, name)
    yield url
    drop_database(postgres_server_url, name)


@pytest.fixture(scope="module")
def database_url(empty_database_url: str) -> str:
    """A fresh database of this test module with every migration applied."""
    migrate(empty_database_url)
    return empty_database_url


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the module's database, for Given and Then steps."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


def truncate_all(conn: psycopg.Connection) -> None:
    conn.execute(
        "TRUNCATE competitions, competitors, matches, match_points, job_history"
        " RESTART IDENTITY CASCADE"
    )
    conn.execute("UPDATE stats_state SET change_seq = 0, changed_at = NULL")
