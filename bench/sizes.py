"""How big each figure's run is: `tiny` (seconds, run by `make test`) and `full`
(`make bench`: P1-P6 in a few minutes on 2 cores, P7-P9 at 5M rows in about 8 more)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Size:
    name: str
    # P1: completed matches through the handler and through the floor, batches of 10.
    points_matches: int
    points_repeats: int
    wire_sample_batches: int  # batches timed with and without the added latency
    wire_delay_s: float
    # P2: completions arriving over `arrival_s`, on top of a season already counted.
    coalescing_base_matches: int
    coalescing_completions: int
    coalescing_arrival_s: float
    # Multiplies every SQS delay, batching window and arrival time of P2: 1 is real time.
    coalescing_time_scale: float
    coalescing_drain_limit_s: float
    # P3 and P4: match_points rows at each step; P3 runs at the last.
    refresh_rows: tuple[int, ...]
    refresh_repeats: int
    readers_idle_s: float
    readers_refresh_rounds: int
    readers_interval_s: float
    # P5: fresh interpreters per function and per baseline.
    import_repeats: int
    # P7: both standings modes at each step (after P4 where the steps meet), matches
    # changed through the points write before each refresh; `--rows-25m` adds 25M rows.
    modes_rows: tuple[int, ...]
    modes_changed_matches: int
    modes_repeats: int
    # P8 and P9 run at the largest of modes_rows. P8: completions per second through the
    # points logic for `freshness_stream_s`, in each mode, times scaled as P2's.
    freshness_matches_per_s: float
    freshness_stream_s: float
    # P9: points workers at once, each on its own batches of 10 until all are done.
    lock_workers: int
    lock_matches: int


TINY = Size(
    name="tiny",
    points_matches=200,
    points_repeats=1,
    wire_sample_batches=10,
    wire_delay_s=0.03,
    coalescing_base_matches=760,
    coalescing_completions=100,
    coalescing_arrival_s=2.0,
    coalescing_time_scale=0.25,
    coalescing_drain_limit_s=20.0,
    refresh_rows=(1_000, 3_000, 10_000),
    refresh_repeats=1,
    readers_idle_s=0.5,
    readers_refresh_rounds=5,
    readers_interval_s=0.002,
    import_repeats=1,
    modes_rows=(1_000, 3_000, 10_000, 20_000),
    modes_changed_matches=20,
    modes_repeats=1,
    freshness_matches_per_s=40.0,
    freshness_stream_s=2.0,
    lock_workers=5,
    lock_matches=200,
)

FULL = Size(
    name="full",
    points_matches=20_000,
    points_repeats=2,
    wire_sample_batches=30,
    wire_delay_s=0.05,
    coalescing_base_matches=20_000,
    coalescing_completions=1_000,
    coalescing_arrival_s=10.0,
    coalescing_time_scale=1.0,
    coalescing_drain_limit_s=120.0,
    refresh_rows=(10_000, 100_000, 1_000_000),
    refresh_repeats=3,
    # About 4,000 reads during the refreshes: a p99 taken from fewer (3 rounds gave
    # about 1,000) moved between 1.2x and 1.6x from one run to the next.
    readers_idle_s=10.0,
    readers_refresh_rounds=12,
    readers_interval_s=0.002,
    import_repeats=5,
    modes_rows=(10_000, 100_000, 1_000_000, 5_000_000),
    modes_changed_matches=1_000,
    modes_repeats=3,
    freshness_matches_per_s=20.0,
    freshness_stream_s=60.0,
    lock_workers=5,
    lock_matches=10_000,
)

# `--rows-25m`: P7's last step, 25M match_points rows (about 18 more minutes on 2 cores).
ROWS_25M = 25_000_000

SIZES = {size.name: size for size in (TINY, FULL)}
