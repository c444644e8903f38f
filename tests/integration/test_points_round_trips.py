"""A batch of points is one network round trip to PostgreSQL (counted, not timed)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import pq

from matchstats.db.connection import ConnectionProvider
from matchstats.db.points import PointsStore
from matchstats.models import PointsJob
from testkit.oracle import actual_match_points, expected_match_points
from testkit.seed import complete_matches, create_season


def test_a_batch_of_ten_is_one_round_trip(
    database_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    # Given ten completed matches and a warm connection
    season = create_season(db, competitions=1, competitors_per_competition=6)
    complete_matches(db, season.match_ids[:10], random.Random(11))
    provider = ConnectionProvider(lambda: database_url)
    store = PointsStore(provider)
    jobs = [PointsJob(job_id=f"job-{m}", match_id=m, attempts=1) for m in season.match_ids[:10]]

    def write() -> None:
        store.write_batch(
            jobs, started_at=datetime.now(UTC), statement_timeout_ms=10_000, lock_timeout_ms=5_000
        )

    write()

    # When the batch is written again under libpq's protocol trace
    trace = tmp_path / "protocol.trace"
    conn = provider.get()
    with trace.open("w") as sink:
        conn.pgconn.trace(sink.fileno())
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        write()
        conn.pgconn.untrace()

    # Then the client synced once (one wait for the server) for six statements
    messages = [line.split("\t")[2] for line in trace.read_text().splitlines() if "\t" in line]
    assert messages.count("Sync") == 1
    # BEGIN, settings, locks, points (job history trims itself by trigger), COMMIT, clock
    assert messages.count("Execute") == 6
    assert actual_match_points(db) == expected_match_points(db)
