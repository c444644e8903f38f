"""Runs the figures in order on one PostgreSQL server ($DATABASE_URL's, or an embedded one
started and stopped here), each in a database of its own."""

from __future__ import annotations

import time
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from bench import (
    coalescing,
    cold_start,
    freshness,
    lock_waits,
    memory,
    points_throughput,
    readers,
    refresh_cost,
    standings_modes,
)
from bench.database import connect, fresh_database, server_version
from bench.measure import Progress, stdout_discarded
from bench.report import machine, rows
from bench.sizes import ROWS_25M, Size
from devstack.postgres import postgres_server
from matchstats.models import StandingsMode

FIGURES = ("P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "P9")


def run(
    size: Size, only: Collection[str], progress: Progress, *, rows_25m: bool = False
) -> dict[str, Any]:
    started = time.perf_counter()
    date = datetime.now(UTC)
    host = machine()
    figures: dict[str, Any] = {}
    # First, while no server of ours competes for the cores.
    if "P5" in only:
        figures["p5_cold_start"] = cold_start.measure(size.import_repeats, progress)
    with postgres_server() as server_url:
        with connect(server_url) as conn:
            postgres = server_version(conn)
        if "P1" in only:
            figures["p1_points_throughput"] = points_throughput.measure(server_url, size, progress)
        if "P2" in only:
            # The points and refresh logic log every batch to stdout, as in Lambda.
            with stdout_discarded():
                figures["p2_refresh_coalescing"] = coalescing.measure(server_url, size, progress)
        if "P6" in only:
            figures["p6_memory"] = memory.measure(server_url, progress)
        if any(figure in only for figure in ("P3", "P4", "P7", "P8", "P9")):
            figures.update(_scaling(server_url, size, only, rows_25m, progress))
    results: dict[str, Any] = {
        "meta": {
            "size": size.name,
            "date": date.strftime("%Y-%m-%d %H:%M UTC"),
            "machine": host,
            "postgres": postgres,
            "wall_s": time.perf_counter() - started,
        },
        "figures": figures,
    }
    results["table"] = [row.as_dict() for row in rows(results)]
    return results


def _scaling(
    server_url: str, size: Size, only: Collection[str], rows_25m: bool, progress: Progress
) -> dict[str, Any]:
    """One database grown step by step: P4 at each of its sizes and P3 at its largest, in
    materialized-view mode; P7 at each of its sizes (and 25M with `rows_25m`), both
    modes; P8 and P9 at P7's largest size short of 25M."""
    figures: dict[str, Any] = {}
    p4_steps: list[dict[str, Any]] = []
    p7_steps: list[dict[str, Any]] = []
    modes_rows = (*size.modes_rows, ROWS_25M) if rows_25m else size.modes_rows
    large = max(size.modes_rows)
    with fresh_database(server_url, "scale") as url:
        data = refresh_cost.ScaleData(url)
        modes = standings_modes.ModeSwitch(url)
        for target in _steps(size, only, modes_rows):
            # The bulk load bypasses the change log: a rebuild (the switch) or a full
            # refresh afterwards brings either mode up to date.
            modes.ensure(StandingsMode.MATERIALIZED_VIEW)
            progress(f"growing match_points to {target:,} rows (set-based inserts)")
            grow_started = time.perf_counter()
            rows_now = data.grow_to(target)
            progress(f"{rows_now:,} rows in {time.perf_counter() - grow_started:.1f} s")
            if "P4" in only and target in size.refresh_rows:
                p4_steps.append(
                    refresh_cost.measure_at(data, rows_now, size.refresh_repeats, progress)
                )
            if "P3" in only and target == max(size.refresh_rows):
                figures["p3_readers_during_refresh"] = readers.measure(
                    data,
                    rows_now,
                    idle_s=size.readers_idle_s,
                    rounds=size.readers_refresh_rounds,
                    interval_s=size.readers_interval_s,
                    progress=progress,
                )
            if "P7" in only and target in modes_rows:
                p7_steps.append(
                    standings_modes.measure_at(
                        data,
                        rows_now,
                        target,
                        size.modes_changed_matches,
                        size.modes_repeats,
                        modes,
                        progress,
                    )
                )
            if target == large:
                figures.update(_at_large(data, rows_now, size, only, modes, progress))
        if p4_steps:
            figures["p4_refresh_cost"] = refresh_cost.summarize(p4_steps)
        if p7_steps:
            figures["p7_standings_modes"] = standings_modes.summarize(p7_steps)
    return figures


def _at_large(
    data: refresh_cost.ScaleData,
    rows: int,
    size: Size,
    only: Collection[str],
    modes: standings_modes.ModeSwitch,
    progress: Progress,
) -> dict[str, Any]:
    """P8 in both modes (the current one first) and P9, on the large table."""
    figures: dict[str, Any] = {}
    if "P8" in only:
        runs = {}
        completions = round(size.freshness_matches_per_s * size.freshness_stream_s)
        for mode in sorted(standings_modes.MODES, key=lambda mode: mode is not modes.mode):
            modes.ensure(mode)
            with stdout_discarded():
                runs[mode.value] = freshness.run_stream(
                    data.url,
                    mode,
                    data.add_scheduled(completions),
                    rows=rows,
                    matches_per_s=size.freshness_matches_per_s,
                    time_scale=size.coalescing_time_scale,
                    drain_limit_s=size.coalescing_drain_limit_s,
                    progress=progress,
                )
        figures["p8_freshness"] = freshness.summarize(runs, size.coalescing_time_scale)
    if "P9" in only:
        with stdout_discarded():
            figures["p9_lock_waits"] = lock_waits.measure(
                data.url, data.add_scheduled(size.lock_matches), size.lock_workers, rows, progress
            )
    return figures


def _steps(size: Size, only: Collection[str], modes_rows: tuple[int, ...]) -> list[int]:
    """The sizes match_points grows to, in order, for the figures asked for."""
    steps: set[int] = set()
    if "P3" in only or "P4" in only:
        steps.update(size.refresh_rows)
    if "P7" in only:
        steps.update(modes_rows)
    if "P8" in only or "P9" in only:
        steps.add(max(size.modes_rows))
    return sorted(steps)
