"""How big each figure's run is: `tiny` (seconds, run by `make test`) and `full`
(`make bench`, under 10 minutes on 2 cores)."""

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
    readers_idle_s=5.0,
    readers_refresh_rounds=3,
    readers_interval_s=0.002,
    import_repeats=5,
)

SIZES = {size.name: size for size in (TINY, FULL)}
