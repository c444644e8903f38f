"""P2: refresh coalescing. Completions arrive for about 10 s; the real points logic
commits them and sends its delayed refresh request (requestedAt from the database clock
after the commit) into an in-memory SQS that honours REFRESH_DELAY_SECONDS. An event
source mapping like the template's (RefreshViewsFunction: batch 10, window 2 s,
MaximumConcurrency 2) feeds either
- the real refresh logic (matchstats.refresh.refresh_views on RefreshStore), or
- the naive policy: refresh both views for every request.
After the queue drains, both views are compared with a recomputation from matches.

One responsibility, kept whole past 350 lines: benchmark P2, its workload, both policies
and the check of what they leave in the views.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import psycopg

from bench.database import (
    bulk_points,
    complete_matches,
    connect,
    fresh_database,
    insert_fixtures,
    vacuum_analyze,
)
from bench.fakes import DelayQueue, InMemorySqs
from bench.measure import Progress, percentile, ratio
from bench.points_throughput import QUEUE_URL, points_settings
from bench.sizes import Size
from devstack.function_specs import function_specs
from matchstats.config import RefreshSettings
from matchstats.db.connection import ConnectionProvider
from matchstats.db.jobs import JobStore
from matchstats.db.points import PointsStore
from matchstats.db.refresh import RefreshStore
from matchstats.errors import TransientError
from matchstats.messages import (
    REFRESHABLE_VIEWS,
    RefreshMessage,
    RefreshReason,
    parse_refresh_message,
)
from matchstats.models import ReceivedMessage, ViewRefreshRecord, ViewState
from matchstats.outcomes import Disposition
from matchstats.points import PointsDependencies, calculate_points
from matchstats.queues import RetryTicket, backoff_seconds
from matchstats.refresh import (
    LOCK_WAIT_MS,
    RefreshDependencies,
    ViewDecision,
    decide,
    refresh_views,
)
from matchstats.stores import ViewRefresher
from testkit.events import points_bodies
from testkit.oracle import (
    actual_competitor_stats,
    actual_standings,
    expected_competitor_stats,
    expected_standings,
)

POINTS_BATCH = 10  # CalculatePointsFunction's BatchSize: one refresh request per batch
REFRESH_DELAY_S = 1
FUNCTION_TIMEOUT_MS = 120_000
REFRESH_QUEUE = QUEUE_URL.format("RefreshQueue")


@dataclass(frozen=True)
class Mapping:
    """The SQS event source mapping of RefreshViewsFunction, from template.yaml."""

    batch_size: int
    window_s: float
    concurrency: int

    @classmethod
    def from_template(cls) -> Mapping:
        spec = function_specs()["RefreshViewsFunction"]
        (event,) = spec.events_of_type("SQS")
        props = event["Properties"]
        return cls(
            batch_size=int(props.get("BatchSize", 10)),
            window_s=float(props.get("MaximumBatchingWindowInSeconds", 0)),
            concurrency=int(props.get("ScalingConfig", {}).get("MaximumConcurrency", 2)),
        )


@dataclass
class Tally:
    """What the consumers did, summed over every invocation."""

    invocations: int = 0
    executed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REFRESHABLE_VIEWS, 0))
    covered: int = 0
    unchanged: int = 0
    retried: int = 0
    refresh_ms: list[int] = field(default_factory=list)
    freshness_ms: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


Consumer = Callable[[Sequence[ReceivedMessage]], set[str]]


def coalesced(deps: RefreshDependencies, tally: Tally) -> Consumer:
    """The real refresh logic; returns the ids of the records to retry."""

    def consume(messages: Sequence[ReceivedMessage]) -> set[str]:
        result = refresh_views(messages, deps, remaining_ms=lambda: FUNCTION_TIMEOUT_MS)
        with tally.lock:
            tally.invocations += 1
            for view in result.views:
                if view.decision is ViewDecision.EXECUTED:
                    tally.executed[view.view_name] += 1
                    tally.refresh_ms.append(view.duration_ms or 0)
                    tally.freshness_ms.append(view.freshness_ms or 0)
                elif view.decision is ViewDecision.COVERED:
                    tally.covered += 1
                elif view.decision is ViewDecision.UNCHANGED:
                    tally.unchanged += 1
            retry = {
                message_id
                for message_id, record in result.records.items()
                if record.disposition is Disposition.RETRY
            }
            tally.retried += len(retry)
        return retry

    return consume


def naive(store: RefreshStore, sqs: InMemorySqs, tally: Tally) -> Consumer:
    """Every request refreshes both views, through the same data access."""

    def consume(messages: Sequence[ReceivedMessage]) -> set[str]:
        retry: set[str] = set()
        for message in messages:
            request = parse_refresh_message(message.body).model_copy(update={"force": True})
            for view_name in request.scope.views:
                try:
                    _, done = store.refresh_view(
                        view_name,
                        partial(_decide_for, request),
                        statement_timeout_ms=FUNCTION_TIMEOUT_MS,
                        lock_timeout_ms=LOCK_WAIT_MS,
                    )
                except TransientError:
                    retry.add(message.message_id)
                    ticket = RetryTicket(
                        message.message_id,
                        message.receipt_handle,
                        backoff_seconds(message.receive_count),
                    )
                    sqs.retry_later(REFRESH_QUEUE, [ticket])
                    break
                assert done is not None
                with tally.lock:
                    tally.executed[view_name] += 1
                    tally.refresh_ms.append(done.duration_ms)
                    oldest = request.requested_at
                    tally.freshness_ms.append(
                        max(0, int((done.finished_at - oldest).total_seconds() * 1000))
                    )
        with tally.lock:
            tally.invocations += 1
            tally.retried += len(retry)
        return retry

    return consume


def _decide_for(request: RefreshMessage, state: ViewState) -> ViewRefreshRecord | None:
    return decide(state, [request])


class EventSourceMapping:
    """Lambda's SQS poller, in threads: up to `concurrency` invocations at once, each
    with a batch gathered until it is full or the batching window has passed."""

    def __init__(self, queue: DelayQueue, mapping: Mapping, consume: Consumer, time_scale: float):
        self._queue = queue
        self._mapping = mapping
        self._window_s = mapping.window_s * time_scale
        self._consume = consume
        self._stopping = threading.Event()
        self._busy = 0
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._poll, daemon=True) for _ in range(mapping.concurrency)
        ]

    def __enter__(self) -> EventSourceMapping:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(FUNCTION_TIMEOUT_MS / 1000)

    @property
    def idle(self) -> bool:
        with self._lock:
            return self._busy == 0 and self._queue.depth == 0

    def _poll(self) -> None:
        while not self._stopping.is_set():
            batch = self._queue.receive(self._mapping.batch_size, wait_s=0.05)
            if not batch:
                continue
            with self._lock:
                self._busy += 1
            try:
                window_ends = time.monotonic() + self._window_s
                while len(batch) < self._mapping.batch_size:
                    left = window_ends - time.monotonic()
                    if left <= 0:
                        break
                    batch += self._queue.receive(self._mapping.batch_size - len(batch), left)
                retry = self._consume(batch)
                # Failed records were given their backoff by the consumer; the rest go.
                self._queue.delete([m.receipt_handle for m in batch if m.message_id not in retry])
            finally:
                with self._lock:
                    self._busy -= 1


def measure(server_url: str, size: Size, progress: Progress) -> dict[str, Any]:
    mapping = Mapping.from_template()
    with fresh_database(server_url, "coalescing") as url, connect(url) as conn:
        base = size.coalescing_base_matches
        completions = size.coalescing_completions
        insert_fixtures(conn, 1, base, completed=True)
        bulk_points(conn, 1, base)
        insert_fixtures(conn, base + 1, 2 * completions, completed=False)
        vacuum_analyze(conn)
        _refresh_all(url)
        rows_before = _count(conn, "SELECT count(*) FROM match_points")

        runs = {}
        for index, policy in enumerate(("coalesced", "naive")):
            first = base + 1 + index * completions
            match_ids = list(range(first, first + completions))
            progress(
                f"P2 {policy}: {completions} completions over"
                f" {size.coalescing_arrival_s * size.coalescing_time_scale:.1f} s"
            )
            runs[policy] = _run(url, conn, policy, match_ids, mapping, size)

    coalesced_run, naive_run = runs["coalesced"], runs["naive"]
    return {
        "completions": completions,
        "match_points_rows_before": rows_before,
        "refresh_delay_s": REFRESH_DELAY_S * size.coalescing_time_scale,
        "time_scale": size.coalescing_time_scale,
        "mapping": {
            "batch_size": mapping.batch_size,
            "window_s": mapping.window_s * size.coalescing_time_scale,
            "concurrency": mapping.concurrency,
        },
        "coalesced": coalesced_run,
        "naive": naive_run,
        "executed_ratio": ratio(coalesced_run["executed_total"], naive_run["executed_total"]),
        "refresh_time_ratio": ratio(coalesced_run["refresh_s_total"], naive_run["refresh_s_total"]),
        "meets_target": bool(
            coalesced_run["executed_max_per_view"] <= coalesced_run["target_max_per_view"]
            and coalesced_run["missed_rows"] == 0
        ),
    }


def _run(
    url: str,
    conn: psycopg.Connection,
    policy: str,
    match_ids: list[int],
    mapping: Mapping,
    size: Size,
) -> dict[str, Any]:
    scale = size.coalescing_time_scale
    sqs = InMemorySqs(delay_scale=scale)
    queue = sqs.queue(REFRESH_QUEUE)
    points = points_dependencies(url, sqs)
    refresh_connections = ConnectionProvider(lambda: url)
    store = RefreshStore(refresh_connections)
    tally = Tally()
    consume = (
        coalesced(refresh_dependencies(url, refresh_connections, store, sqs), tally)
        if policy == "coalesced"
        else naive(store, sqs, tally)
    )

    batches = [match_ids[i : i + POINTS_BATCH] for i in range(0, len(match_ids), POINTS_BATCH)]
    interval_s = size.coalescing_arrival_s * scale / len(batches)
    sent_at: list[float] = []
    with EventSourceMapping(queue, mapping, consume, scale) as esm:
        started = time.monotonic()
        for index, batch in enumerate(batches):
            pause = started + index * interval_s - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            # The application completes the matches and sends their points messages...
            complete_matches(conn, batch)
            messages = [
                ReceivedMessage(
                    message_id=f"points-{m}", receipt_handle=f"points-{m}", body=b, receive_count=1
                )
                for m, b in zip(batch, points_bodies(*batch), strict=True)
            ]
            # ...and the points logic commits them and sends its delayed refresh request.
            result = calculate_points(messages, points, remaining_ms=lambda: FUNCTION_TIMEOUT_MS)
            if result.refresh_message_id is not None:
                sent_at.append(time.monotonic())
        arrival_s = time.monotonic() - started
        deadline = time.monotonic() + size.coalescing_drain_limit_s
        while not esm.idle and time.monotonic() < deadline:
            time.sleep(0.05)
        drained = esm.idle
        quiesced_s = time.monotonic() - started

    missed_rows = _missed_rows(conn)
    executed_total = sum(tally.executed.values())
    span_s = (sent_at[-1] - sent_at[0]) if len(sent_at) > 1 else 0.0
    windows = math.ceil(span_s / (REFRESH_DELAY_S * scale)) if span_s else 1
    return {
        "refresh_requests": len(sent_at),
        "request_span_s": span_s,
        "arrival_s": arrival_s,
        "drained": drained,
        "quiesced_after_s": quiesced_s,
        "invocations": tally.invocations,
        "executed": dict(tally.executed),
        "executed_total": executed_total,
        "executed_max_per_view": max(tally.executed.values()),
        "target_max_per_view": windows + 1,
        "skipped_covered": tally.covered,
        "skipped_unchanged": tally.unchanged,
        "retried": tally.retried,
        "refresh_s_total": sum(tally.refresh_ms) / 1000,
        "refresh_ms_p50": percentile(tally.refresh_ms, 0.5) if tally.refresh_ms else None,
        "freshness_ms_p50": percentile(tally.freshness_ms, 0.5) if tally.freshness_ms else None,
        "freshness_ms_max": max(tally.freshness_ms) if tally.freshness_ms else None,
        "missed_rows": missed_rows,
    }


def points_dependencies(url: str, sqs: InMemorySqs) -> PointsDependencies:
    """The points logic's dependencies on `url`, sending into `sqs` (P2 and P8)."""
    connections = ConnectionProvider(lambda: url)
    return PointsDependencies(
        settings=points_settings(url, REFRESH_DELAY_S),
        store=PointsStore(connections),
        jobs=JobStore(connections),
        queues=sqs,
    )


def refresh_dependencies(
    url: str, connections: ConnectionProvider, store: ViewRefresher, sqs: InMemorySqs
) -> RefreshDependencies:
    """The refresh logic's dependencies: `store` (the bundle's, or one wrapping it) and the
    job history on `connections`, retrying into `sqs` (P2 and P8)."""
    return RefreshDependencies(
        settings=RefreshSettings.from_env(
            {
                "DATABASE_URL": url,
                "REFRESH_QUEUE_URL": REFRESH_QUEUE,
                "DEAD_LETTER_QUEUE_URL": QUEUE_URL.format("RefreshDeadLetterQueue"),
            }
        ),
        store=store,
        jobs=JobStore(connections),
        queues=sqs,
    )


def _refresh_all(url: str) -> None:
    """Both views filled before the run, as a running system has them."""
    store = RefreshStore(ConnectionProvider(lambda: url))
    request = RefreshMessage(
        reason=RefreshReason.MANUAL, requested_at=datetime.now(UTC), force=True
    )
    for view_name in REFRESHABLE_VIEWS:
        store.refresh_view(
            view_name,
            lambda state: decide(state, [request]),
            statement_timeout_ms=FUNCTION_TIMEOUT_MS,
            lock_timeout_ms=LOCK_WAIT_MS,
        )


def _missed_rows(conn: psycopg.Connection) -> int:
    """Rows of the views that differ from a recomputation from matches (0: none missed)."""
    standings, expected = actual_standings(conn), expected_standings(conn)
    stats, expected_stats = actual_competitor_stats(conn), expected_competitor_stats(conn)
    return sum(
        1 for key in standings.keys() | expected.keys() if standings.get(key) != expected.get(key)
    ) + sum(
        1
        for key in stats.keys() | expected_stats.keys()
        if stats.get(key) != expected_stats.get(key)
    )


def _count(conn: psycopg.Connection, query: str) -> int:
    row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])
