"""How compute_points.sql reaches match_points: by the primary key's match_id prefix, for the
batch's matches only, never a scan of the table, whatever its size (issue 12, point 5).
Planned on 20,000 rows whose statistics were taken while the table was empty (as after a
deploy or P1's reset, until autovacuum analyzes again): with the earlier form of the removed
step (a join with current_match) the planner then scans the whole table. Both the plan for
the batch's values and the generic plan a prepared statement settles on are checked."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from bench.database import bulk_points, insert_fixtures
from matchstats.db.sql import load_sql
from tests.conftest import truncate_all

MATCHES = 10_000  # two match_points rows each


@pytest.fixture(scope="module")
def large_history(database_url: str) -> Iterator[psycopg.Connection]:
    """20,000 match_points rows and 100 completed matches without points yet, analyzed."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        truncate_all(conn)
        insert_fixtures(conn, 1, MATCHES + 100, completed=True)
        conn.execute("VACUUM ANALYZE")
        # Statistics taken while match_points was empty, as after a deploy or a TRUNCATE,
        # until autovacuum analyzes the table again: no plan may rely on them.
        bulk_points(conn, 1, MATCHES)
        yield conn


def batch(match_ids: list[int]) -> dict[str, Any]:
    return {
        "job_ids": [f"job-{m}" for m in match_ids],
        "match_ids": match_ids,
        "subjects": [f"match {m}" for m in match_ids],
        "attempts": [1] * len(match_ids),
        "errors": [None] * len(match_ids),
        "bodies": ["{}"] * len(match_ids),
        "started_at": datetime.now(UTC),
    }


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def custom_plan(conn: psycopg.Connection, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The plan for these values (EXPLAIN does not run the statement)."""
    row = conn.execute(b"EXPLAIN (FORMAT JSON) " + load_sql("compute_points"), params).fetchone()
    assert row is not None
    return list(nodes(_loaded(row[0])[0]["Plan"]))


def generic_plan(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """The plan for any values: what a prepared statement settles on after five runs."""
    names: list[str] = []

    def placeholder(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    text = re.sub(r"%\((\w+)\)s", placeholder, load_sql("compute_points").decode()).replace(
        "%%", "%"
    )
    # Parameters are typed by their casts, except started_at's.
    text = text.replace(
        f"${names.index('started_at') + 1}", f"${names.index('started_at') + 1}::timestamptz"
    )
    row = conn.execute(("EXPLAIN (GENERIC_PLAN, FORMAT JSON) " + text).encode()).fetchone()
    assert row is not None
    return list(nodes(_loaded(row[0])[0]["Plan"]))


def _loaded(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def match_points_access(plan: list[dict[str, Any]]) -> set[str]:
    """How each read of match_points goes: "Index Scan using match_points_pkey", or a
    bitmap heap scan named by the index its bitmap comes from, or "Seq Scan"."""
    access: set[str] = set()
    for node in plan:
        if node.get("Relation Name") != "match_points" or "Scan" not in node["Node Type"]:
            continue
        if node["Node Type"] == "Bitmap Heap Scan":
            sources = {n.get("Index Name") for n in nodes(node) if n is not node}
            access.add(f"Bitmap Heap Scan using {', '.join(sorted(map(str, sources)))}")
        else:
            access.add(f"{node['Node Type']} using {node.get('Index Name')}")
    return access


BY_PRIMARY_KEY = {"Index Scan using match_points_pkey", "Bitmap Heap Scan using match_points_pkey"}


def test_a_batch_reaches_match_points_by_primary_key_only(
    large_history: psycopg.Connection,
) -> None:
    # Given 20,000 match_points rows, and a batch of 10 matches: 5 counted, 5 not yet
    params = batch([*range(MATCHES - 4, MATCHES + 1), *range(MATCHES + 1, MATCHES + 6)])

    # When compute_points is planned for the batch's values
    plan = custom_plan(large_history, params)

    # Then every read of match_points (the rows before, the removed step) goes through its
    # primary key, and so do the rows the removed step deletes
    access = match_points_access(plan)
    assert access
    assert access <= BY_PRIMARY_KEY
    deletes = [n for n in plan if n["Node Type"] == "ModifyTable" and n["Operation"] == "Delete"]
    assert [n["Relation Name"] for n in deletes] == ["match_points"]
    assert match_points_access(list(nodes(deletes[0]))) <= BY_PRIMARY_KEY


def test_the_generic_plan_reaches_match_points_by_primary_key_only(
    large_history: psycopg.Connection,
) -> None:
    # Given the same 20,000 rows, on a server that shows generic plans (PostgreSQL 16+)
    version = large_history.execute("SHOW server_version_num").fetchone()
    assert version is not None
    if int(version[0]) < 160000:
        pytest.skip("EXPLAIN (GENERIC_PLAN) needs PostgreSQL 16 or newer")

    # When compute_points is planned for any values
    plan = generic_plan(large_history)

    # Then it too reads match_points by its primary key only
    access = match_points_access(plan)
    assert access
    assert access <= BY_PRIMARY_KEY
