"""The job history's retention trim (migration 0010): each job type keeps exactly its newest
100 completed and 50 failed runs however many batches write at once, a concurrent batch
never waits for another's trim, and the trim reaches only the rows it deletes, through
job_history_trim_idx, never the dead rows that earlier trims left behind."""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from devstack.postgres import create_database, drop_database
from matchstats.db.migrate import available_migrations, migrate

KEEP = {"completed": 100, "failed": 50}
# A run's kind: (job type, status).
Kind = tuple[str, str]

RUNS = """
INSERT INTO job_history (job_type, job_id, status, attempts, started_at, duration_ms)
SELECT r.job_type, %(prefix)s || g, r.status, 1, now(), 0
FROM unnest(%(job_types)s::text[], %(statuses)s::text[], %(counts)s::int[])
     AS r (job_type, status, runs)
CROSS JOIN LATERAL generate_series(1, r.runs) AS g
"""


def write_runs(conn: psycopg.Connection, runs: dict[Kind, int], prefix: str = "job-") -> None:
    """One statement writing `runs[kind]` runs of each kind, as a batch does."""
    kinds = list(runs)
    conn.execute(
        RUNS,
        {
            "prefix": prefix,
            "job_types": [job_type for job_type, _ in kinds],
            "statuses": [status for _, status in kinds],
            "counts": [runs[kind] for kind in kinds],
        },
    )


def kept(conn: psycopg.Connection) -> dict[Kind, int]:
    rows = conn.execute(
        "SELECT job_type, status, count(*) FROM job_history GROUP BY job_type, status"
    ).fetchall()
    return {(job_type, status): count for job_type, status, count in rows}


def newest_kept(conn: psycopg.Connection, kind: Kind) -> bool:
    """Whether the runs kept of `kind` are its newest: no id kept is below one deleted."""
    row = conn.execute(
        "SELECT min(id), max(id), count(*) FROM job_history WHERE job_type = %s AND status = %s",
        kind,
    ).fetchone()
    assert row is not None
    lowest, highest, count = row
    gaps = conn.execute(
        "SELECT count(*) FROM job_history WHERE job_type = %s AND status = %s AND id >= %s",
        (*kind, lowest),
    ).fetchone()
    return gaps is not None and gaps[0] == count and highest >= lowest


@pytest.fixture
def history(db: psycopg.Connection) -> psycopg.Connection:
    db.execute("TRUNCATE job_history RESTART IDENTITY")
    return db


@pytest.fixture
def connect(database_url: str) -> Iterator[Any]:
    """Opens more connections to the module's database; closes them after the test."""
    opened: list[psycopg.Connection] = []

    def open_one(**kwargs: Any) -> psycopg.Connection:
        conn = psycopg.connect(database_url, **kwargs)
        opened.append(conn)
        return conn

    yield open_one
    for conn in opened:
        conn.close()


def test_each_kind_keeps_exactly_its_newest_runs(history: psycopg.Connection) -> None:
    # Given batches of every size for points and refresh runs, completed and failed
    for runs in (1, 7, 60, 250, 3):
        write_runs(history, {("points", "completed"): runs, ("points", "failed"): runs // 2})
    write_runs(history, {("refresh", "completed"): 120, ("refresh", "failed"): 49})
    write_runs(history, {("refresh", "failed"): 2})

    # Then each kind keeps exactly its count, and the newest of its runs
    assert kept(history) == {
        ("points", "completed"): 100,
        ("points", "failed"): 50,
        ("refresh", "completed"): 100,
        ("refresh", "failed"): 50,
    }
    for kind in kept(history):
        assert newest_kept(history, kind)


def test_a_concurrent_batch_neither_waits_nor_leaves_a_run_behind(
    history: psycopg.Connection, connect: Any
) -> None:
    # Given a full history
    write_runs(history, {("points", "completed"): 100, ("points", "failed"): 50})
    # ...and a batch whose transaction has written and trimmed but not committed
    first = connect()
    write_runs(first, {("points", "completed"): 10, ("points", "failed"): 2}, "first-")

    # When a second batch writes meanwhile, allowed to wait 1 s for a lock at most
    second = connect()
    second.execute("SET lock_timeout = '1s'")
    write_runs(second, {("points", "completed"): 10, ("points", "failed"): 2}, "second-")

    # Then it did not wait (no lock timeout), and once both commit the counts are exact
    second.commit()
    first.commit()
    assert kept(history) == {("points", "completed"): 100, ("points", "failed"): 50}


def test_many_concurrent_batches_leave_no_backlog(
    history: psycopg.Connection, connect: Any
) -> None:
    # Given five writers, each its own connection, starting from an empty history
    rng = random.Random(20261202)
    plans = [
        [
            {("points", "completed"): rng.randint(1, 10), ("points", "failed"): rng.randint(0, 3)}
            for _ in range(30)
        ]
        for _ in range(5)
    ]
    errors: list[BaseException] = []

    def writer(batches: list[dict[Kind, int]], seed: int) -> None:
        pause = random.Random(seed)
        try:
            with connect() as conn:
                for runs in batches:
                    with conn.transaction():
                        write_runs(conn, runs, f"w{seed}-")
                        # Overlap the next writer's trim with this uncommitted one.
                        conn.execute("SELECT pg_sleep(%s)", (pause.random() / 200,))
        except BaseException as exc:  # reported by the test, from its own thread
            errors.append(exc)

    # When they all write their batches at once, through the first runs and past them
    threads = [threading.Thread(target=writer, args=(plan, i)) for i, plan in enumerate(plans)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then no batch failed, and exactly the newest runs of each kind are left
    assert errors == []
    assert kept(history) == {("points", "completed"): 100, ("points", "failed"): 50}
    # ...and the kept count stays exact batch after batch
    for _ in range(20):
        write_runs(history, {("points", "completed"): 3, ("points", "failed"): 1})
        assert kept(history) == {("points", "completed"): 100, ("points", "failed"): 50}


# --- What the trim reads ----------------------------------------------------------------


def trim_plans(conn: psycopg.Connection, runs: dict[Kind, int]) -> list[dict[str, Any]]:
    """The executed plans (auto_explain, with buffers) of the statements the trigger ran
    for one batch of `runs`: every nested statement but the batch's own INSERT."""
    notices: list[str] = []
    conn.add_notice_handler(lambda diagnostic: notices.append(diagnostic.message_primary or ""))
    try:
        conn.execute("LOAD 'auto_explain'")
    except psycopg.errors.InsufficientPrivilege:
        pytest.skip("auto_explain needs a superuser; this server's role is not one")
    for setting in (
        "log_min_duration = 0",
        "log_nested_statements = on",
        "log_analyze = on",
        "log_buffers = on",
        "log_format = json",
        "log_level = notice",
    ):
        conn.execute(f"SET auto_explain.{setting}")
    write_runs(conn, runs, "measured-")
    conn.execute("SET auto_explain.log_min_duration = -1")
    plans = [json.loads(text[text.index("{") :]) for text in notices if "{" in text]
    return [p for p in plans if not p["Query Text"].lstrip().upper().startswith("INSERT")]


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def pages_read(plans: list[dict[str, Any]]) -> int:
    return sum(p["Plan"]["Shared Hit Blocks"] + p["Plan"]["Shared Read Blocks"] for p in plans)


BATCH: dict[Kind, int] = {("points", "completed"): 10, ("points", "failed"): 2}


def test_the_trim_reads_its_index_and_never_the_dead_rows(history: psycopg.Connection) -> None:
    # Given a full, freshly vacuumed history, and what a batch's trim reads on it
    history.execute("ALTER TABLE job_history SET (autovacuum_enabled = off)")
    try:
        write_runs(history, {("points", "completed"): 150, ("points", "failed"): 80})
        history.execute("VACUUM ANALYZE job_history")
        clean = pages_read(trim_plans(history, BATCH))
        # ...then 100,000 more runs, which the trim deleted and no vacuum has removed yet
        write_runs(history, {("points", "completed"): 90_000, ("points", "failed"): 10_000})
        history.execute("ANALYZE job_history")

        # When one more batch writes its runs
        plans = trim_plans(history, BATCH)
    finally:
        history.execute("ALTER TABLE job_history RESET (autovacuum_enabled)")

    # Then the trim walked its own index in order and scanned no table
    scans = [node for plan in plans for node in nodes(plan["Plan"])]
    assert not [n for n in scans if n["Node Type"] in ("Seq Scan", "Bitmap Heap Scan")]
    assert any(n.get("Index Name") == "job_history_trim_idx" for n in scans)
    # ...reading about what it read on the clean table, not the 100,000 dead entries
    assert pages_read(plans) <= 1.5 * clean + 10, (clean, plans)
    # ...and the counts are exact
    assert kept(history) == {("points", "completed"): 100, ("points", "failed"): 50}


# --- The one-time cleanup -----------------------------------------------------------------


@pytest.fixture
def database_before_0010(postgres_server_url: str) -> Iterator[str]:
    """A database with the migrations before 0010 applied, as a deployed bundle has them."""
    name = f"test_trim_before_0010_{uuid.uuid4().hex[:8]}"
    url = create_database(postgres_server_url, name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE schema_migrations (version text PRIMARY KEY,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for migration in available_migrations():
                if migration.version >= "0010":
                    break
                conn.execute(migration.sql.encode("utf-8"))
                conn.execute(
                    "INSERT INTO schema_migrations (version) VALUES (%s)", (migration.version,)
                )
        yield url
    finally:
        drop_database(postgres_server_url, name)


def test_migrating_removes_the_runs_the_old_trim_left_behind(database_before_0010: str) -> None:
    # Given a history holding more runs than it keeps, as racing old trims could leave it
    with psycopg.connect(database_before_0010, autocommit=True) as conn:
        conn.execute("ALTER TABLE job_history DISABLE TRIGGER job_history_retention")
        write_runs(conn, {("points", "completed"): 130, ("points", "failed"): 70})
        write_runs(conn, {("refresh", "completed"): 40})
        conn.execute("ALTER TABLE job_history ENABLE TRIGGER job_history_retention")

    # When the bundle migrates
    applied = migrate(database_before_0010)

    # Then the backlog is gone, the newest runs of each kind kept
    assert [version for version in applied if version.startswith("0010")]
    with psycopg.connect(database_before_0010, autocommit=True) as conn:
        assert kept(conn) == {
            ("points", "completed"): 100,
            ("points", "failed"): 50,
            ("refresh", "completed"): 40,
        }
        for kind in kept(conn):
            assert newest_kept(conn, kind)
