"""P3: what the application's readers see while refreshes run. A reader times the
standings query of one competition, paced like a busy application, on an idle database
(before and after) and while concurrent refreshes of both views run back to back."""

from __future__ import annotations

import threading
import time
from typing import Any

from bench.database import connect, load_sql
from bench.measure import Progress, latency_summary, ratio
from bench.refresh_cost import ScaleData, timed_refresh, touch
from matchstats.db.connection import ConnectionProvider
from matchstats.db.refresh import RefreshStore
from matchstats.messages import REFRESHABLE_VIEWS

TARGET_P99_RATIO = 1.5


class Reader:
    """Reads one competition's table every `interval_s` (closed loop), keeping each
    read's start and duration."""

    def __init__(self, url: str, competition_id: int, interval_s: float):
        self._url = url
        self._competition_id = competition_id
        self._interval_s = interval_s
        self._stopping = threading.Event()
        self.samples: list[tuple[float, float]] = []  # (started, seconds)
        self.rows_seen: set[int] = set()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> Reader:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._thread.join(30)

    def _read(self) -> None:
        query = load_sql("read_standings")
        params = {"competition_id": self._competition_id}
        with connect(self._url) as conn:
            while not self._stopping.is_set():
                started = time.perf_counter()
                rows = conn.execute(query, params).fetchall()
                self.samples.append((started, time.perf_counter() - started))
                self.rows_seen.add(len(rows))
                time.sleep(self._interval_s)

    def between(self, start: float, end: float) -> list[float]:
        return [spent for started, spent in self.samples if start <= started < end]


def _window(seconds: float) -> tuple[float, float]:
    start = time.perf_counter()
    time.sleep(seconds)
    return start, time.perf_counter()


def measure(
    data: ScaleData,
    rows: int,
    *,
    idle_s: float,
    rounds: int,
    interval_s: float,
    progress: Progress,
) -> dict[str, Any]:
    store = RefreshStore(ConnectionProvider(lambda: data.url))
    competition_id = max(1, data.competitions // 2)
    with Reader(data.url, competition_id, interval_s) as reader, connect(data.url) as conn:
        # A second of reads to warm the reader's connection and plan before timing.
        time.sleep(min(1.0, idle_s))
        progress(f"P3 {rows:,} rows: reads on an idle database for {idle_s / 2:.1f} s")
        idle_before = _window(idle_s / 2)
        progress(f"P3 {rows:,} rows: reads during {rounds} back-to-back concurrent refreshes")
        refresh_start = time.perf_counter()
        for _ in range(rounds):
            touch(conn, data.matches)
            for view_name in REFRESHABLE_VIEWS:
                timed_refresh(store, view_name, concurrently=True)
        refresh_end = time.perf_counter()
        progress(f"P3 {rows:,} rows: reads on an idle database again for {idle_s / 2:.1f} s")
        idle_after = _window(idle_s / 2)
    # Idle before and after the refreshes, so that a drift of the machine weighs on both.
    idle = latency_summary(reader.between(*idle_before) + reader.between(*idle_after))
    during = latency_summary(reader.between(refresh_start, refresh_end))
    return {
        "match_points_rows": rows,
        "competition_id": competition_id,
        "rows_per_read": sorted(reader.rows_seen),
        "read_interval_ms": interval_s * 1000,
        "refresh_rounds": rounds,
        "refreshing_s": refresh_end - refresh_start,
        "idle": idle,
        "during_refresh": during,
        "p50_ratio": ratio(during["p50_ms"], idle["p50_ms"]),
        "p99_ratio": ratio(during["p99_ms"], idle["p99_ms"]),
        "target": {"p99_ratio_at_most": TARGET_P99_RATIO},
        "meets_target": ratio(during["p99_ms"], idle["p99_ms"]) <= TARGET_P99_RATIO,
    }
