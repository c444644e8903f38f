"""P7: the two standings modes (SPEC section 2) side by side as match_points grows.

At each size the same number of matches is corrected through the real points write
(PointsStore, batches of 10, which logs the keys it touched), then both views are
refreshed through the bundle's RefreshStore: in materialized-view mode with
REFRESH ... CONCURRENTLY, in incremental mode by recomputing the logged keys. Median of
the repeats per mode. The modes are switched as `matchstats migrate --standings` does
(OpsStore.set_standings_mode), which is timed too. After the incremental refreshes the
tables are compared with a full recomputation. The crossover is the size at which both
modes cost the same, interpolated between the measured sizes.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from bench.database import complete_matches, connect, load_sql
from bench.measure import Progress, median, ratio
from bench.refresh_cost import ScaleData, timed_refresh
from matchstats.db.connection import ConnectionProvider
from matchstats.db.points import PointsStore
from matchstats.db.refresh import RefreshStore
from matchstats.messages import REFRESHABLE_VIEWS
from matchstats.models import PointsJob, StandingsMode
from ops.store import OpsStore

POINTS_BATCH = 10
POINTS_TIMEOUT_MS = 120_000
# Incremental refresh at least this many times cheaper than the view refresh, by rows.
TARGETS = {5_000_000: 8.0, 25_000_000: 30.0}
MODES = (StandingsMode.MATERIALIZED_VIEW, StandingsMode.INCREMENTAL)


class ModeSwitch:
    """The scale database's standings mode, switched only when a figure needs the other."""

    def __init__(self, url: str):
        self._ops = OpsStore(ConnectionProvider(lambda: url))
        self.mode = StandingsMode.MATERIALIZED_VIEW  # migration 0009's default

    def ensure(self, mode: StandingsMode) -> float:
        """Seconds the switch took (0 when already in `mode`)."""
        if mode is self.mode:
            return 0.0
        started = time.perf_counter()
        self._ops.set_standings_mode(mode)
        self.mode = mode
        return time.perf_counter() - started


def correct_matches(data: ScaleData, match_ids: Sequence[int]) -> None:
    """The application corrects the matches; the points write recomputes them in batches
    of 10, logging the standings keys each batch touched, old and new."""
    with connect(data.url) as conn:
        complete_matches(conn, match_ids)
    store = PointsStore(ConnectionProvider(lambda: data.url))
    for first in range(0, len(match_ids), POINTS_BATCH):
        batch = match_ids[first : first + POINTS_BATCH]
        store.write_batch(
            [PointsJob(job_id=f"bench-{m}", match_id=m, attempts=1) for m in batch],
            started_at=datetime.now(UTC),
            statement_timeout_ms=POINTS_TIMEOUT_MS,
            lock_timeout_ms=POINTS_TIMEOUT_MS,
        )


def measure_at(
    data: ScaleData,
    rows: int,
    nominal_rows: int,
    changed_matches: int,
    repeats: int,
    modes: ModeSwitch,
    progress: Progress,
) -> dict[str, Any]:
    store = RefreshStore(ConnectionProvider(lambda: data.url))
    # The same matches change in every run: a sample, not a secret.
    picker = random.Random(nominal_rows)  # noqa: S311
    seconds: dict[str, list[float]] = {}
    switch_s: dict[str, float] = {}
    keys: dict[str, int] = {}
    # The mode the database is in goes first, so that each size switches once.
    order = sorted(MODES, key=lambda mode: mode is not modes.mode)
    for mode in order:
        switch_s[mode.value] = modes.ensure(mode)
        seconds[mode.value] = []
        if mode is StandingsMode.MATERIALIZED_VIEW:
            # Not timed: the views take in the rows the table just grew by (a switch
            # rebuilds the incremental tables from scratch).
            for view in REFRESHABLE_VIEWS:
                timed_refresh(store, view, concurrently=True)
        for repeat in range(repeats):
            progress(f"P7 {rows:,} rows: {mode.value} refresh {repeat + 1}/{repeats}")
            changed = picker.sample(range(1, data.matches + 1), min(changed_matches, data.matches))
            correct_matches(data, changed)
            keys[mode.value] = _logged_keys(data.url)
            seconds[mode.value].append(
                sum(timed_refresh(store, view, concurrently=True) for view in REFRESHABLE_VIEWS)
            )
    with connect(data.url) as conn:
        row = conn.execute(load_sql("standings_mismatches")).fetchone()
    assert row is not None
    view_s = median(seconds[StandingsMode.MATERIALIZED_VIEW.value])
    incremental_s = median(seconds[StandingsMode.INCREMENTAL.value])
    progress(
        f"P7 {rows:,} rows: view {view_s:.3f} s, incremental {incremental_s:.3f} s"
        f" ({ratio(view_s, incremental_s):.1f}x), {int(row[0])} rows mismatched"
    )
    return {
        "match_points_rows": rows,
        "nominal_rows": nominal_rows,
        "changed_matches": changed_matches,
        "logged_keys": keys,
        "view_s": view_s,
        "incremental_s": incremental_s,
        "ratio": ratio(view_s, incremental_s),
        "switch_s": switch_s,
        # Rows of either table that differ from a full recomputation after the run (0).
        "mismatched_rows": int(row[0]),
        "samples": seconds,
    }


def _logged_keys(url: str) -> int:
    with connect(url) as conn:
        row = conn.execute(
            "SELECT count(DISTINCT (competition_id, competitor_id)) FROM changed_standings"
        ).fetchone()
    assert row is not None
    return int(row[0])


def crossover(points: Sequence[tuple[int, float, float]]) -> float | None:
    """The rows at which both modes cost the same, from (rows, view_s, incremental_s)
    measured at several sizes: between the first two neighbouring sizes where the view
    refresh goes from cheaper to dearer (or back), log(view_s / incremental_s) is taken as
    linear in log(rows), as costs that grow as a power of the rows are. None when one mode
    is cheaper at every size measured."""
    logs = [
        (math.log(rows), math.log(view_s / incremental_s))
        for rows, view_s, incremental_s in sorted(points)
    ]
    for (rows_a, gap_a), (rows_b, gap_b) in pairwise(logs):
        if gap_a == 0:
            return math.exp(rows_a)
        if gap_b == 0 or (gap_a < 0) != (gap_b < 0):
            return math.exp(rows_a + (rows_b - rows_a) * gap_a / (gap_a - gap_b))
    return None


def summarize(steps: list[dict[str, Any]]) -> dict[str, Any]:
    measured = {step["nominal_rows"]: step for step in steps}
    targets = [
        {
            "at_rows": rows,
            "ratio_at_least": at_least,
            "ratio": measured[rows]["ratio"],
            "meets_target": measured[rows]["ratio"] >= at_least,
        }
        for rows, at_least in TARGETS.items()
        if rows in measured
    ]
    points = [(s["match_points_rows"], s["view_s"], s["incremental_s"]) for s in steps]
    rows_at_crossover = crossover(points)
    return {
        "steps": steps,
        "crossover_rows": rows_at_crossover,
        # Which mode is cheaper below the crossover (or everywhere, when there is none).
        "cheaper_when_small": "materialized-view"
        if steps and steps[0]["view_s"] < steps[0]["incremental_s"]
        else "incremental",
        "targets": targets,
        "meets_target": all(target["meets_target"] for target in targets),
    }
