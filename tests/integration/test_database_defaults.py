"""The bundle does not depend on the database's or the role's defaults (SPEC section 4).

Each case lays a database out as in production (tests/roles.py: the application owns its
tables, the bundle connects as the README's role), sets one kind of default the other way
on the database or on the bundle's role, then runs a season through the real handlers:
CalculatePointsFunction, then RefreshViewsFunction with the refresh request it sent. Then
match_points and both views equal the independent recomputation (testkit/oracle.py), and
no record failed. The role's URL is the functions' DATABASE_URL; the Given and Then steps
use the application owner's connection.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from matchstats.models import StandingsMode
from testkit.oracle import (
    actual_competitor_stats,
    actual_match_points,
    actual_standings,
    expected_competitor_stats,
    expected_match_points,
    expected_standings,
)
from testkit.seed import complete_matches, correct_score, create_season
from tests.conftest import switch_standings_mode
from tests.integration.real_functions import functions_for
from tests.roles import ProductionLikeDatabase, production_like_database

ROLE = "ALTER ROLE {role} IN DATABASE {db} SET "
DECOY_SCHEMA = [
    # A schema first on the role's search_path, with tables of the same names: a bundle
    # that trusted the search_path would read and write these.
    "CREATE SCHEMA decoy",
    "CREATE TABLE decoy.matches (LIKE public.matches INCLUDING ALL)",
    "CREATE TABLE decoy.match_points (LIKE public.match_points INCLUDING ALL)",
    "GRANT USAGE ON SCHEMA decoy TO {role}",
    "GRANT ALL ON ALL TABLES IN SCHEMA decoy TO {role}",
    ROLE + "search_path = decoy, public",
]
# Low enough that any statement, lock wait, idle moment or transaction of the bundle's
# that ran under them would be cut; our own first statements take microseconds.
LOW = "'10ms'"
TX_LOW = "'200ms'"

DEFAULTS: dict[str, list[str]] = {
    "server defaults": [],
    "DateStyle SQL, DMY on the database": ["ALTER DATABASE {db} SET datestyle = 'SQL, DMY'"],
    "DateStyle German on the role": [ROLE + "datestyle = 'German'"],
    "IntervalStyle iso_8601": [ROLE + "intervalstyle = 'iso_8601'"],
    "TimeZone Pacific/Chatham": ["ALTER DATABASE {db} SET timezone = 'Pacific/Chatham'"],
    "serializable isolation": [ROLE + "default_transaction_isolation = 'serializable'"],
    "repeatable read isolation": [ROLE + "default_transaction_isolation = 'repeatable read'"],
    "read-only transactions": [ROLE + "default_transaction_read_only = on"],
    "search_path starting with another schema": DECOY_SCHEMA,
    "low statement_timeout and lock_timeout": [
        ROLE + f"statement_timeout = {LOW}",
        ROLE + f"lock_timeout = {LOW}",
    ],
    "low idle_in_transaction_session_timeout": [
        ROLE + f"idle_in_transaction_session_timeout = {LOW}",
    ],
    # Not LOW: the timer runs from BEGIN until the bundle's first statement turns it off, a
    # few microseconds that a loaded machine can stretch past 10 ms. Proved to be turned
    # off by test_a_batch_outlives_the_roles_transaction_timeout.
    "low transaction_timeout (PostgreSQL 17+)": [ROLE + f"transaction_timeout = {TX_LOW}"],
}


@pytest.fixture(params=list(DEFAULTS), ids=list(DEFAULTS))
def database(
    request: pytest.FixtureRequest, postgres_server_url: str
) -> Iterator[ProductionLikeDatabase]:
    """A production-like database with one kind of default set the other way."""
    if "transaction_timeout" in request.param:
        _skip_before_postgres_17(postgres_server_url)
    with production_like_database(
        postgres_server_url, "defaults", statements=DEFAULTS[request.param]
    ) as database:
        yield database


@pytest.mark.parametrize("mode", list(StandingsMode), ids=[m.value for m in StandingsMode])
def test_a_season_computes_and_refreshes_whatever_the_defaults(
    database: ProductionLikeDatabase, mode: StandingsMode
) -> None:
    # Given the standings in `mode`, switched by the bundle's role as the operator would
    switch_standings_mode(database.role_url, mode)
    # ...and a season of 30 matches, 24 completed and two of those corrected
    functions = functions_for(database.role_url)
    with psycopg.connect(database.owner_url, autocommit=True) as owner:
        season = create_season(owner, competitions=1, competitors_per_competition=6)
        completed = season.match_ids[:24]
        complete_matches(owner, completed, random.Random(10))

        # When CalculatePointsFunction takes them in batches of 10, then two corrections
        # arrive, and RefreshViewsFunction takes every refresh request that was sent
        for start in range(0, len(completed), 10):
            response = functions.run_points(*completed[start : start + 10])
            assert response == {"batchItemFailures": []}, response
        correct_score(owner, completed[0], 5, 0)
        correct_score(owner, completed[1], 0, 0)
        assert functions.run_points(completed[0], completed[1]) == {"batchItemFailures": []}
        assert functions.run_refresh() == {"batchItemFailures": []}

        # Then match_points and both views equal the recomputation from `matches`
        assert actual_match_points(owner) == expected_match_points(owner)
        assert len(actual_match_points(owner)) == 48
        assert actual_standings(owner) == expected_standings(owner)
        assert actual_competitor_stats(owner) == expected_competitor_stats(owner)
        # ...and every job completed, none failed or dead-lettered
        statuses = owner.execute(
            "SELECT job_type, status, count(*) FROM job_history GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
        assert statuses == [("points", "completed", 26), ("refresh", "completed", 4)]
        assert not [url for url, _ in functions.queues.sent if "DeadLetter" in url]


@pytest.mark.parametrize("isolation", ["serializable", "repeatable read"])
def test_a_batch_reads_the_row_committed_while_it_waited_for_its_lock(
    postgres_server_url: str, isolation: str
) -> None:
    """The points transaction relies on READ COMMITTED: each statement sees what committed
    before it started, so after waiting for a match's lock it reads the match's latest row.
    Under a serializable or repeatable-read default the snapshot would predate the wait."""
    with (
        production_like_database(
            postgres_server_url,
            "isolation",
            statements=[ROLE + f"default_transaction_isolation = '{isolation}'"],
        ) as database,
        psycopg.connect(database.owner_url, autocommit=True) as owner,
    ):
        # Given a completed match whose points lock another transaction holds, when a
        # batch for it waits for that lock and the application corrects the score meanwhile
        responses = _batch_waiting_for_the_match_lock(
            database, owner, seed=1, meanwhile=lambda match_id: correct_score(owner, match_id, 7, 1)
        )

        # Then the batch computed the corrected score, the row current when it read
        assert responses == [{"batchItemFailures": []}]
        assert actual_match_points(owner) == expected_match_points(owner)
        assert {row[5] for row in actual_match_points(owner)} == {7, 1}


def test_a_batch_outlives_the_roles_transaction_timeout(postgres_server_url: str) -> None:
    """A role's transaction_timeout ends the whole session with a FATAL (PostgreSQL 17+);
    the bundle bounds each statement and idle moment itself and turns it off."""
    _skip_before_postgres_17(postgres_server_url)
    with (
        production_like_database(
            postgres_server_url, "txtimeout", statements=[ROLE + f"transaction_timeout = {TX_LOW}"]
        ) as database,
        psycopg.connect(database.owner_url, autocommit=True) as owner,
    ):
        # Given a completed match whose points lock another transaction holds, when a
        # batch for it waits for that lock for longer than the role's timeout
        responses = _batch_waiting_for_the_match_lock(
            database, owner, seed=2, meanwhile=lambda _: time.sleep(0.6)
        )

        # Then its transaction lived on and committed the match's points
        assert responses == [{"batchItemFailures": []}]
        assert actual_match_points(owner) == expected_match_points(owner)
        assert len(actual_match_points(owner)) == 2


def _batch_waiting_for_the_match_lock(
    database: ProductionLikeDatabase,
    owner: psycopg.Connection,
    *,
    seed: int,
    meanwhile: Callable[[int], object],
) -> list[dict[str, Any]]:
    """Completes one match, holds its points lock in another transaction, starts a points
    batch for it, and once the batch waits for the lock runs `meanwhile(match_id)` and
    lets the lock go. Returns the batch's response (a list of one, once it finished)."""
    season = create_season(owner, competitions=1, competitors_per_competition=2)
    match_id = season.match_ids[0]
    complete_matches(owner, [match_id], random.Random(seed))
    functions = functions_for(database.role_url)
    responses: list[dict[str, Any]] = []
    with psycopg.connect(database.owner_url) as blocker:
        blocker.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('matchstats.points:' || %s, 0))",
            (match_id,),
        )
        batch = threading.Thread(target=lambda: responses.append(functions.run_points(match_id)))
        batch.start()
        _wait_for_lock_waiter(owner)
        meanwhile(match_id)
        blocker.rollback()
    batch.join(30)
    return responses


def _skip_before_postgres_17(server_url: str) -> None:
    with psycopg.connect(server_url) as conn:
        if conn.info.server_version < 170000:
            pytest.skip("transaction_timeout exists from PostgreSQL 17")


def _wait_for_lock_waiter(conn: psycopg.Connection, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        waiting = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        ).fetchone()
        if waiting and waiting[0]:
            return
        time.sleep(0.02)
    raise AssertionError("the batch never waited for the match's lock")
