"""P4: REFRESH MATERIALIZED VIEW CONCURRENTLY against the plain refresh, for both views,
as match_points grows (10k, 100k, 1M rows), through the bundle's own RefreshStore.

Before each refresh a few matches change (sql/touch_points.sql), so that each refresh
has a little to rewrite, as in production. Plain and concurrent alternate which goes
first, and each figure is the median of the repeats.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import psycopg

from bench.database import (
    MATCHES_PER_COMPETITION,
    ROWS_PER_MATCH,
    bulk_points,
    connect,
    insert_fixtures,
    load_sql,
    match_points_rows,
    vacuum_analyze,
)
from bench.measure import Progress, median, ratio
from matchstats.db.connection import ConnectionProvider
from matchstats.db.refresh import RefreshStore
from matchstats.messages import REFRESHABLE_VIEWS, RefreshMessage, RefreshReason
from matchstats.models import ViewRefreshRecord, ViewState
from matchstats.refresh import LOCK_WAIT_MS, decide

TARGET_RATIO = 1.5
# Matches changed before each refresh: a burst of results between two refreshes.
CHANGED_MATCHES = 50
STATEMENT_TIMEOUT_MS = 600_000


class ScaleData:
    """One database that grows to each size in turn (completed matches with points)."""

    def __init__(self, url: str):
        self.url = url
        self.matches = 0

    def grow_to(self, rows: int) -> int:
        target = rows // ROWS_PER_MATCH
        with connect(self.url) as conn:
            if target > self.matches:
                insert_fixtures(conn, self.matches + 1, target - self.matches, completed=True)
                bulk_points(conn, self.matches + 1, target)
                self.matches = target
                vacuum_analyze(conn)
            return match_points_rows(conn)

    def add_scheduled(self, count: int) -> list[int]:
        """`count` scheduled matches after the last one, for a figure to complete; growth
        later goes on after them."""
        first = self.matches + 1
        with connect(self.url) as conn:
            insert_fixtures(conn, first, count, completed=False)
        self.matches += count
        return list(range(first, first + count))

    @property
    def competitions(self) -> int:
        return -(-self.matches // MATCHES_PER_COMPETITION)


def timed_refresh(store: RefreshStore, view_name: str, *, concurrently: bool) -> float:
    """Seconds for one forced refresh of the view, the plain or the concurrent way."""
    request = RefreshMessage(
        reason=RefreshReason.MANUAL, requested_at=datetime.now(UTC), force=True
    )

    def forced(state: ViewState) -> ViewRefreshRecord | None:
        record = decide(state, [request])
        assert record is not None
        return record.model_copy(update={"concurrently": concurrently})

    started = time.perf_counter()
    store.refresh_view(
        view_name, forced, statement_timeout_ms=STATEMENT_TIMEOUT_MS, lock_timeout_ms=LOCK_WAIT_MS
    )
    return time.perf_counter() - started


def touch(conn: psycopg.Connection, matches: int) -> None:
    conn.execute(load_sql("touch_points"), {"matches": CHANGED_MATCHES, "max_match_id": matches})


def measure_at(data: ScaleData, rows: int, repeats: int, progress: Progress) -> dict[str, Any]:
    store = RefreshStore(ConnectionProvider(lambda: data.url))
    seconds: dict[str, dict[str, list[float]]] = {
        mode: {view: [] for view in (*REFRESHABLE_VIEWS, "both")}
        for mode in ("plain", "concurrent")
    }
    with connect(data.url) as conn:
        # The first fill is not timed: both views start populated at this size.
        for view_name in REFRESHABLE_VIEWS:
            timed_refresh(store, view_name, concurrently=False)
        for repeat in range(repeats):
            modes = ("plain", "concurrent") if repeat % 2 == 0 else ("concurrent", "plain")
            for mode in modes:
                progress(f"P4 {rows:,} rows: {mode} refresh {repeat + 1}/{repeats}")
                touch(conn, data.matches)
                both = 0.0
                for view_name in REFRESHABLE_VIEWS:
                    spent = timed_refresh(store, view_name, concurrently=mode == "concurrent")
                    seconds[mode][view_name].append(spent)
                    both += spent
                seconds[mode]["both"].append(both)
        view_rows = {
            view_name: _count(conn, f"SELECT count(*) FROM {view_name}")  # noqa: S608 - fixed names
            for view_name in REFRESHABLE_VIEWS
        }
    medians = {
        mode: {view: median(values) for view, values in by_view.items()}
        for mode, by_view in seconds.items()
    }
    return {
        "match_points_rows": rows,
        "view_rows": view_rows,
        "plain_s": medians["plain"],
        "concurrent_s": medians["concurrent"],
        "ratio": ratio(medians["concurrent"]["both"], medians["plain"]["both"]),
        "samples": seconds,
    }


def summarize(steps: list[dict[str, Any]]) -> dict[str, Any]:
    largest = steps[-1]
    return {
        "steps": steps,
        "changed_matches_per_refresh": CHANGED_MATCHES,
        "ratio_at_largest": largest["ratio"],
        "largest_rows": largest["match_points_rows"],
        "target": {"ratio_at_most": TARGET_RATIO, "at_rows": largest["match_points_rows"]},
        "meets_target": largest["ratio"] <= TARGET_RATIO,
    }


def _count(conn: psycopg.Connection, query: str) -> int:
    row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])
