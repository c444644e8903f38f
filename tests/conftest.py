"""Shared pytest fixtures, one section per concern."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psycopg
import pytest

from devstack.pgbouncer import PgBouncer, PgBouncerNotInstalledError, pgbouncer_binary
from devstack.postgres import DATABASE_URL_ENV, EmbeddedPostgres, create_database, drop_database
from matchstats.db.connection import ConnectionProvider
from matchstats.db.migrate import migrate
from matchstats.models import StandingsMode
from ops.store import OpsStore

# --- Database ----------------------------------------------------------------
# One server per test session ($DATABASE_URL or an embedded one), and a fresh
# database per test module so modules never see each other's rows.


@pytest.fixture(scope="session")
def embedded_postgres() -> Iterator[EmbeddedPostgres | None]:
    """The session's embedded server; None when $DATABASE_URL names a server of its own."""
    if os.environ.get(DATABASE_URL_ENV):
        yield None
        return
    with EmbeddedPostgres() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server_url(embedded_postgres: EmbeddedPostgres | None) -> str:
    return embedded_postgres.url if embedded_postgres else os.environ[DATABASE_URL_ENV]


@pytest.fixture
def restartable_postgres(embedded_postgres: EmbeddedPostgres | None) -> Iterator[EmbeddedPostgres]:
    """The session's server, for a test that stops and starts it (stop_server() and
    start_server() keep its data and port); running again after the test, whatever
    happened. Skipped when $DATABASE_URL names a server the tests may not restart."""
    if embedded_postgres is None:
        pytest.skip(
            f"{DATABASE_URL_ENV} names an external server, which the tests do not restart;"
            f" unset {DATABASE_URL_ENV} to run this test on the embedded one"
        )
    yield embedded_postgres
    embedded_postgres.start_server()


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
        "TRUNCATE competitions, competitors, matches, match_points, job_history,"
        " changed_standings, changed_competitors RESTART IDENTITY CASCADE"
    )
    # A TRUNCATE logs no key, so a refresh would skip (or, in incremental mode, keep) the
    # rows of the test before: the standings are emptied with match_points.
    mode = conn.execute("SELECT mode FROM standings_mode").fetchone()
    if mode == (StandingsMode.INCREMENTAL.value,):
        conn.execute("TRUNCATE competition_standings, competitor_stats")
    else:
        conn.execute("REFRESH MATERIALIZED VIEW competition_standings")
        conn.execute("REFRESH MATERIALIZED VIEW competitor_stats")


def forget_refreshes(conn: psycopg.Connection) -> None:
    """No refresh has run yet: an empty refresh_log and no view refreshed."""
    conn.execute("TRUNCATE refresh_log")
    conn.execute("UPDATE view_refresh_state SET last_started_at = NULL, last_finished_at = NULL")


# --- Standings modes -------------------------------------------------------------
# competition_standings and competitor_stats are materialized views or incremental tables
# (SPEC section 2); a test that uses `standings_mode` runs in both.


def switch_standings_mode(database_url: str, mode: StandingsMode) -> None:
    """Switches the database by the operator's own path (`matchstats migrate --standings`)."""
    connections = ConnectionProvider(lambda: database_url)
    try:
        OpsStore(connections).set_standings_mode(mode)
    finally:
        connections.close()


@pytest.fixture(scope="module", params=list(StandingsMode), ids=[m.value for m in StandingsMode])
def standings_mode(request: pytest.FixtureRequest, database_url: str) -> StandingsMode:
    """Each test that uses it runs twice: with the module's database in materialized-view
    mode, then switched to incremental mode (and back, when pytest orders it so)."""
    mode: StandingsMode = request.param
    switch_standings_mode(database_url, mode)
    return mode


# --- Poolers -----------------------------------------------------------------
# The functions under test reach the database directly or through a real PgBouncer in
# transaction mode (issue 10, item 4); Given and Then steps always connect directly.


@pytest.fixture(scope="session")
def pgbouncer_path() -> Path:
    """The pgbouncer executable; the test is skipped, saying how to install it, without."""
    try:
        return pgbouncer_binary()
    except PgBouncerNotInstalledError as exc:
        pytest.skip(f"needs PgBouncer: {exc}")


@pytest.fixture(scope="session")
def pgbouncer(postgres_server_url: str, pgbouncer_path: Path) -> Iterator[PgBouncer]:
    """A real PgBouncer in transaction mode in front of the session's server, passing
    every database through."""
    with PgBouncer(postgres_server_url, pool_mode="transaction", binary=pgbouncer_path) as bouncer:
        yield bouncer


Pooler = Literal["none", "transaction"]


@dataclass(frozen=True)
class FunctionDatabase:
    """How the functions under test reach the module's database: `url` as their
    DATABASE_URL, `pooler` as their DB_POOLER."""

    url: str
    pooler: Pooler


@pytest.fixture(scope="module", params=["none", "transaction"], ids=["direct", "pgbouncer"])
def function_database(request: pytest.FixtureRequest, database_url: str) -> FunctionDatabase:
    """Each test that uses it runs twice: with the functions connected directly, then
    through PgBouncer in transaction mode with DB_POOLER=transaction."""
    pooler: Pooler = request.param
    if pooler == "none":
        return FunctionDatabase(database_url, pooler)
    bouncer: PgBouncer = request.getfixturevalue("pgbouncer")
    return FunctionDatabase(bouncer.url_for(database_url), pooler)


# For a test that means only one of the two: it runs once, under this id.
direct_only = pytest.mark.parametrize("function_database", ["none"], ids=["direct"], indirect=True)
pgbouncer_only = pytest.mark.parametrize(
    "function_database", ["transaction"], ids=["pgbouncer"], indirect=True
)
