"""P9: lock waits in the points path, as a share of its database time, with 5 points
workers at once (CalculatePointsFunction's MaximumConcurrency) on the large table of P7.

Each worker runs the real points logic on its own batches of 10 completed matches, back
to back. Meanwhile a sampler reads pg_stat_activity every ~2 ms: each sample counts the
workers' backends that are running a statement (database time) and those of them that
wait for a heavyweight lock (wait_event_type 'Lock'). The share is one count over the
other, summed over the samples. Waits for a shared row (a tuple, another transaction,
an advisory lock: everything but 'extend') are the target's; waits to extend a table's
file, which appending batches take in turn, are reported beside them.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from psycopg.conninfo import make_conninfo

from bench.coalescing import FUNCTION_TIMEOUT_MS, POINTS_BATCH
from bench.database import complete_matches, connect
from bench.fakes import InMemorySqs
from bench.measure import Progress, ratio
from bench.points_throughput import points_settings
from matchstats.db.connection import ConnectionProvider
from matchstats.db.jobs import JobStore
from matchstats.db.points import PointsStore
from matchstats.outcomes import Disposition
from matchstats.points import PointsDependencies, calculate_points
from testkit.events import points_bodies, received_messages

TARGET_SHARE = 0.01
SAMPLE_INTERVAL_S = 0.002
APPLICATION_NAME = "bench_points_worker"

_SAMPLE = """
SELECT count(*) FILTER (WHERE state = 'active')                                  AS active,
       count(*) FILTER (WHERE state = 'active' AND wait_event_type = 'Lock'
                        AND wait_event <> 'extend')                              AS on_rows,
       count(*) FILTER (WHERE state = 'active' AND wait_event_type = 'Lock'
                        AND wait_event = 'extend')                               AS extending,
       coalesce(array_agg(wait_event) FILTER (WHERE state = 'active'
                                              AND wait_event_type = 'Lock'), '{}') AS events
FROM pg_stat_activity
WHERE application_name = %s
"""


def _worker(url: str, batches: list[list[int]], failures: list[int]) -> None:
    connections = ConnectionProvider(lambda: url)
    deps = PointsDependencies(
        settings=points_settings(url),
        store=PointsStore(connections),
        jobs=JobStore(connections),
        queues=InMemorySqs(),
    )
    for batch in batches:
        messages = received_messages(*points_bodies(*batch))
        result = calculate_points(messages, deps, remaining_ms=lambda: FUNCTION_TIMEOUT_MS)
        failures.append(len(result.records) - result.count(Disposition.COMPLETED))


def measure(
    url: str, match_ids: list[int], workers: int, rows: int, progress: Progress
) -> dict[str, Any]:
    # The workers' connections carry a name of their own, for the sampler to find them.
    worker_url = make_conninfo(url, application_name=APPLICATION_NAME)
    with connect(url) as conn:
        complete_matches(conn, match_ids)
    batches = [match_ids[i : i + POINTS_BATCH] for i in range(0, len(match_ids), POINTS_BATCH)]
    shares = [batches[w::workers] for w in range(workers)]
    failures: list[int] = []
    threads = [
        threading.Thread(target=_worker, args=(worker_url, share, failures), daemon=True)
        for share in shares
    ]
    progress(f"P9 {workers} points workers: {len(match_ids):,} matches at {rows:,} rows")
    active = waiting = extending = samples = 0
    events: Counter[str] = Counter()
    with connect(url) as sampler:
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            row = sampler.execute(_SAMPLE, (APPLICATION_NAME,)).fetchone()
            assert row is not None
            samples += 1
            active += row[0]
            waiting += row[1]
            extending += row[2]
            events.update(row[3])
            time.sleep(SAMPLE_INTERVAL_S)
        elapsed = time.perf_counter() - started
    for thread in threads:
        thread.join()
    share = ratio(waiting, active) if active else 0.0
    extension_share = ratio(extending, active) if active else 0.0
    progress(
        f"P9 lock waits on shared rows {share:.2%}, to extend a table {extension_share:.2%},"
        f" of {active:,} active samples in {elapsed:.1f} s"
    )
    return {
        "workers": workers,
        "match_points_rows": rows,
        "matches": len(match_ids),
        "batches": len(batches),
        "seconds": elapsed,
        "matches_per_s": len(match_ids) / elapsed,
        "samples": samples,
        "active_samples": active,
        "lock_wait_samples": waiting,
        "extension_wait_samples": extending,
        "lock_wait_events": dict(events),
        "failed_records": sum(failures),
        "lock_wait_share": share,
        "extension_wait_share": extension_share,
        "target": {"share_below": TARGET_SHARE},
        "meets_target": share < TARGET_SHARE and active > 0,
    }
