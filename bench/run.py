"""Runs the figures in order on one PostgreSQL server ($DATABASE_URL's, or an embedded one
started and stopped here), each in a database of its own."""

from __future__ import annotations

import time
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from bench import coalescing, cold_start, memory, points_throughput, readers, refresh_cost
from bench.database import connect, fresh_database, server_version
from bench.measure import Progress, stdout_discarded
from bench.report import machine, rows
from bench.sizes import Size
from devstack.postgres import postgres_server

FIGURES = ("P1", "P2", "P3", "P4", "P5", "P6")


def run(size: Size, only: Collection[str], progress: Progress) -> dict[str, Any]:
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
        if "P3" in only or "P4" in only:
            figures.update(_scaling(server_url, size, only, progress))
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
    server_url: str, size: Size, only: Collection[str], progress: Progress
) -> dict[str, Any]:
    """P4 at each size as match_points grows, then P3 at the largest."""
    figures: dict[str, Any] = {}
    steps = []
    with fresh_database(server_url, "scale") as url:
        data = refresh_cost.ScaleData(url)
        rows_now = 0
        for target in size.refresh_rows:
            progress(f"P3/P4 growing match_points to {target:,} rows (set-based inserts)")
            grow_started = time.perf_counter()
            rows_now = data.grow_to(target)
            progress(f"P3/P4 {rows_now:,} rows in {time.perf_counter() - grow_started:.1f} s")
            if "P4" in only:
                steps.append(
                    refresh_cost.measure_at(data, rows_now, size.refresh_repeats, progress)
                )
        if "P4" in only:
            figures["p4_refresh_cost"] = refresh_cost.summarize(steps)
        if "P3" in only:
            figures["p3_readers_during_refresh"] = readers.measure(
                data,
                rows_now,
                idle_s=size.readers_idle_s,
                rounds=size.readers_refresh_rounds,
                interval_s=size.readers_interval_s,
                progress=progress,
            )
    return figures
