"""Waiting in a test for something another thread or process does: a condition polled
until it holds, and the sessions of the test's database waiting on a lock."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg


def wait_for(
    condition: Callable[[], object],
    timeout_s: float = 10.0,
    what: str = "the condition",
    interval_s: float = 0.02,
) -> None:
    """Polls `condition` every `interval_s` until it is true; fails the test, naming
    `what`, when `timeout_s` seconds pass first."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval_s)


def sessions_waiting_on_locks(db: psycopg.Connection) -> int:
    """How many sessions of `db`'s database wait on a heavyweight lock now."""
    row = db.execute(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    ).fetchone()
    assert row is not None
    return int(row[0])
