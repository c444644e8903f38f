"""P8: freshness, from a completed match to the standings that show it, in both standings
modes, under a steady stream of completions on the large table of P7.

The application completes a batch of 10 matches at a steady rate; the real points logic
commits them and sends its delayed refresh request (REFRESH_DELAY_SECONDS=1) into the
in-memory SQS; P2's event source mapping (RefreshViewsFunction's batch, window and
concurrency, from template.yaml) feeds the real refresh logic. Every time is a database
clock reading: a batch is completed when the application's UPDATE starts, and visible
in a view once a refresh of it that started (under the view's lock) after the points
commit has finished; the standings show it when both views do.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from bench.coalescing import (
    FUNCTION_TIMEOUT_MS,
    POINTS_BATCH,
    REFRESH_DELAY_S,
    REFRESH_QUEUE,
    EventSourceMapping,
    Mapping,
    Tally,
    coalesced,
    points_dependencies,
    refresh_dependencies,
)
from bench.database import complete_matches, connect
from bench.fakes import InMemorySqs
from bench.measure import Progress, percentile, ratio
from matchstats.db.connection import ConnectionProvider
from matchstats.db.refresh import RefreshStore
from matchstats.messages import REFRESHABLE_VIEWS
from matchstats.models import StandingsMode, ViewRefreshDone, ViewState
from matchstats.points import calculate_points
from matchstats.stores import Decision
from testkit.events import points_bodies, received_messages

# Slack on top of the refresh delay and the batching window, for the refresh itself.
TARGET_SLACK_S = 1.0


@dataclass(frozen=True)
class Refreshed:
    view_name: str
    started_at: datetime  # database clock under the view's lock: what its snapshot sees
    finished_at: datetime


class TimedStore:
    """The bundle's RefreshStore, noting each refresh that ran."""

    def __init__(self, store: RefreshStore):
        self._store = store
        self._lock = threading.Lock()
        self.refreshes: list[Refreshed] = []

    def refresh_view(
        self,
        view_name: str,
        decide: Decision,
        *,
        statement_timeout_ms: int,
        lock_timeout_ms: int,
        full: bool = False,
    ) -> tuple[ViewState, ViewRefreshDone | None]:
        state, done = self._store.refresh_view(
            view_name,
            decide,
            statement_timeout_ms=statement_timeout_ms,
            lock_timeout_ms=lock_timeout_ms,
            full=full,
        )
        if done is not None:
            with self._lock:
                self.refreshes.append(Refreshed(view_name, state.now, done.finished_at))
        return state, done


@dataclass(frozen=True)
class Completion:
    completed_at: datetime  # the application's UPDATE of the batch starts
    committed_at: datetime  # the points commit is behind this reading


def visible_after_s(completion: Completion, refreshes: Sequence[Refreshed]) -> float | None:
    """Seconds from the completion until both views show it; None if one never did."""
    shown: list[datetime] = []
    for view_name in REFRESHABLE_VIEWS:
        finished = [
            r.finished_at
            for r in refreshes
            if r.view_name == view_name and r.started_at >= completion.committed_at
        ]
        if not finished:
            return None
        shown.append(min(finished))
    return (max(shown) - completion.completed_at).total_seconds()


def run_stream(
    url: str,
    mode: StandingsMode,
    match_ids: list[int],
    *,
    rows: int,
    matches_per_s: float,
    time_scale: float,
    drain_limit_s: float,
    progress: Progress,
) -> dict[str, Any]:
    mapping = Mapping.from_template()
    sqs = InMemorySqs(delay_scale=time_scale)
    refresh_connections = ConnectionProvider(lambda: url)
    store = TimedStore(RefreshStore(refresh_connections))
    tally = Tally()
    consume = coalesced(refresh_dependencies(url, refresh_connections, store, sqs), tally)
    points = points_dependencies(url, sqs)
    batches = [match_ids[i : i + POINTS_BATCH] for i in range(0, len(match_ids), POINTS_BATCH)]
    interval_s = POINTS_BATCH / matches_per_s * time_scale
    progress(
        f"P8 {mode.value}: {len(match_ids)} completions at {matches_per_s:g}/s"
        f" ({len(batches) * interval_s:.0f} s)"
    )
    completions: list[Completion] = []
    with (
        connect(url) as conn,
        EventSourceMapping(sqs.queue(REFRESH_QUEUE), mapping, consume, time_scale) as esm,
    ):
        started = time.monotonic()
        for index, batch in enumerate(batches):
            pause = started + index * interval_s - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            completed_at = _clock(conn)
            complete_matches(conn, batch)
            messages = received_messages(*points_bodies(*batch))
            calculate_points(messages, points, remaining_ms=lambda: FUNCTION_TIMEOUT_MS)
            completions.append(Completion(completed_at, _clock(conn)))
        deadline = time.monotonic() + drain_limit_s
        while not esm.idle and time.monotonic() < deadline:
            time.sleep(0.05)
        drained = esm.idle

    latencies = [visible_after_s(c, store.refreshes) for c in completions]
    seen = [latency for latency in latencies if latency is not None]
    target_s = (REFRESH_DELAY_S + mapping.window_s) * time_scale + TARGET_SLACK_S
    p95 = percentile(seen, 0.95) if seen else None
    progress(
        f"P8 {mode.value}: p50 {percentile(seen, 0.5) if seen else 0:.2f} s,"
        f" p95 {p95 or 0:.2f} s, {len(latencies) - len(seen)} never visible"
    )
    return {
        "mode": mode.value,
        "match_points_rows": rows,
        "completions": len(match_ids),
        "batches": len(batches),
        "matches_per_s": matches_per_s / time_scale,
        "drained": drained,
        "never_visible": len(latencies) - len(seen),
        "refreshes": {
            view: sum(1 for r in store.refreshes if r.view_name == view)
            for view in REFRESHABLE_VIEWS
        },
        "retried": tally.retried,
        "p50_s": percentile(seen, 0.5) if seen else None,
        "p95_s": p95,
        "max_s": max(seen) if seen else None,
        "target_p95_s": target_s,
        "meets_target": p95 is not None and p95 <= target_s and len(seen) == len(latencies),
    }


def summarize(runs: dict[str, dict[str, Any]], time_scale: float) -> dict[str, Any]:
    """Both modes' runs; the target is the incremental mode's."""
    incremental = runs[StandingsMode.INCREMENTAL.value]
    view = runs[StandingsMode.MATERIALIZED_VIEW.value]
    return {
        "runs": runs,
        "time_scale": time_scale,
        "p95_ratio": ratio(view["p95_s"] or 0.0, incremental["p95_s"] or 0.0),
        "meets_target": incremental["meets_target"],
    }


def _clock(conn: psycopg.Connection) -> datetime:
    row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    clock: datetime = row[0]
    return clock
