"""`make bench` at its tiny size, as `make bench` runs it (a fresh interpreter with the
handlers on PYTHONPATH): every figure is measured on both sides and written out. Speed
targets are the benchmark's business, not a test's: nothing here asserts one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = (
    "CalculatePointsFunction",
    "RefreshApiFunction",
    "RefreshViewsFunction",
    "ScheduledRefreshFunction",
)


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, str]:
    out = tmp_path_factory.mktemp("bench")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("layers/matchstats", "functions")),
    }
    process = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "bench", "--size", "tiny", "--out", str(out), "--quiet"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    return results, out, process.stdout


def positive(*values: float) -> bool:
    return all(isinstance(v, int | float) and v > 0 for v in values)


@pytest.mark.slow
def test_the_tiny_run_writes_the_table_the_json_and_the_chart(
    bench_run: tuple[dict[str, Any], Path, str],
) -> None:
    # Given the tiny benchmark, run as `make bench` runs it
    results, out, stdout = bench_run

    # Then it printed one table row per figure and wrote the JSON and one PNG chart
    for figure in ("P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "P9"):
        assert f"\n{figure} " in stdout
    assert set(results["figures"]) == {
        "p1_points_throughput",
        "p2_refresh_coalescing",
        "p3_readers_during_refresh",
        "p4_refresh_cost",
        "p5_cold_start",
        "p6_memory",
        "p7_standings_modes",
        "p8_freshness",
        "p9_lock_waits",
    }
    assert results["meta"]["size"] == "tiny"
    assert results["meta"]["machine"]["cores"] >= 1
    assert (out / "refresh_cost.png").read_bytes().startswith(b"\x89PNG")
    assert (out / "table.md").read_text().startswith("| figure |")


@pytest.mark.slow
def test_points_throughput_measures_the_handler_against_the_floor(
    bench_run: tuple[dict[str, Any], Path, str],
) -> None:
    # Given the tiny run's P1
    p1 = bench_run[0]["figures"]["p1_points_throughput"]

    # Then both sides processed every match, and the ratio is theirs
    handler, floor = p1["handler"], p1["floor"]
    assert positive(handler["matches_per_s"], floor["matches_per_s"])
    assert handler["match_points_rows"] == floor["match_points_rows"] == 2 * p1["matches"]
    assert handler["failed_records"] == 0
    assert handler["refresh_requests_sent"] == p1["batches"] * p1["repeats"]
    assert p1["ratio"] == pytest.approx(handler["matches_per_s"] / floor["matches_per_s"])
    # ...and the wire counts: the points write is one pipelined transaction, the floor one
    # statement; round trips are measured, so only roughly one each
    assert handler["wire_per_batch"]["statements"] > floor["wire_per_batch"]["statements"] == 1
    for side in (handler, floor):
        assert 0.25 < side["wire_per_batch"]["round_trips"] < 4


@pytest.mark.slow
def test_refresh_coalescing_compares_the_real_logic_with_refreshing_on_every_request(
    bench_run: tuple[dict[str, Any], Path, str],
) -> None:
    # Given the tiny run's P2
    p2 = bench_run[0]["figures"]["p2_refresh_coalescing"]
    coalesced, naive = p2["coalesced"], p2["naive"]

    # Then both policies served every request and missed no change
    for run in (coalesced, naive):
        assert run["drained"]
        assert run["refresh_requests"] > 0
        assert run["missed_rows"] == 0
        assert run["executed_total"] == sum(run["executed"].values()) > 0
    # ...naive refreshed both views for every request, and the ratio is of the two runs
    assert naive["executed_total"] == 2 * naive["refresh_requests"]
    assert p2["executed_ratio"] == pytest.approx(
        coalesced["executed_total"] / naive["executed_total"]
    )
    assert coalesced["target_max_per_view"] >= 2


@pytest.mark.slow
def test_readers_and_refresh_cost_are_measured_on_both_sides(
    bench_run: tuple[dict[str, Any], Path, str],
) -> None:
    # Given the tiny run's P3 and P4
    figures = bench_run[0]["figures"]
    p3, p4 = figures["p3_readers_during_refresh"], figures["p4_refresh_cost"]

    # Then the reader saw its competition's table idle and during refreshes
    for phase in (p3["idle"], p3["during_refresh"]):
        assert phase["samples"] > 0
        assert positive(phase["p50_ms"], phase["p99_ms"])
        assert phase["p50_ms"] <= phase["p99_ms"] <= phase["max_ms"]
    assert p3["rows_per_read"] == [20]
    assert p3["p99_ratio"] == pytest.approx(p3["during_refresh"]["p99_ms"] / p3["idle"]["p99_ms"])
    # ...and each size's refreshes were timed both ways, the rows growing step by step
    rows = [step["match_points_rows"] for step in p4["steps"]]
    assert len(rows) == 3
    assert rows == sorted(rows)
    for step in p4["steps"]:
        assert positive(step["plain_s"]["both"], step["concurrent_s"]["both"])
        assert step["ratio"] == pytest.approx(
            step["concurrent_s"]["both"] / step["plain_s"]["both"]
        )
        assert positive(*step["view_rows"].values())


@pytest.mark.slow
def test_cold_start_and_memory_are_measured_for_every_function(
    bench_run: tuple[dict[str, Any], Path, str],
) -> None:
    # Given the tiny run's P5 and P6
    figures = bench_run[0]["figures"]
    p5, p6 = figures["p5_cold_start"]["functions"], figures["p6_memory"]["functions"]

    # Then every function was imported against its dependencies alone, and invoked once
    assert set(p5) == set(p6) == set(FUNCTIONS)
    for name in FUNCTIONS:
        assert positive(p5[name]["handler_import_ms"], p5[name]["dependencies_only_ms"])
        assert p5[name]["ratio"] == pytest.approx(
            p5[name]["handler_import_ms"] / p5[name]["dependencies_only_ms"]
        )
        assert p6[name]["succeeded"]
        assert p6[name]["peak_rss_mb"] >= p6[name]["after_import_mb"] > 0
        assert positive(p6[name]["dependencies_only_mb"], p6[name]["ratio"])
    # ...the functions that touch the database load psycopg
    assert p5["CalculatePointsFunction"]["imports_psycopg"]
    assert p5["RefreshViewsFunction"]["imports_psycopg"]
    # ...and the API and the schedule load no database driver, traced (as deployed) or not
    for name in ("RefreshApiFunction", "ScheduledRefreshFunction"):
        assert not p5[name]["imports_psycopg"]
        assert not p5[name]["imports_psycopg_tracing_disabled"]


@pytest.mark.slow
def test_both_standings_modes_are_refreshed_at_each_size_and_agree_with_a_recomputation(
    bench_run: tuple[dict[str, Any], Path, str],
) -> None:
    # Given the tiny run's P7
    p7 = bench_run[0]["figures"]["p7_standings_modes"]

    # Then each size, growing, was refreshed in both modes after the same changes
    rows = [step["match_points_rows"] for step in p7["steps"]]
    assert len(rows) >= 3
    assert rows == sorted(rows)
    for step in p7["steps"]:
        assert positive(step["view_s"], step["incremental_s"])
        assert step["ratio"] == pytest.approx(step["view_s"] / step["incremental_s"])
        # ...the points write logged the keys of the changed matches, both sides of each
        for keys in step["logged_keys"].values():
            assert 2 <= keys <= 2 * step["changed_matches"]
        # ...and the incremental tables equal a full recomputation
        assert step["mismatched_rows"] == 0
    # ...the crossover, when there is one, lies within the sizes measured
    if p7["crossover_rows"] is not None:
        assert rows[0] <= p7["crossover_rows"] <= rows[-1]
    assert p7["cheaper_when_small"] in ("materialized-view", "incremental")


@pytest.mark.slow
def test_freshness_is_measured_in_both_modes_and_every_completion_became_visible(
    bench_run: tuple[dict[str, Any], Path, str],
) -> None:
    # Given the tiny run's P8
    p8 = bench_run[0]["figures"]["p8_freshness"]

    # Then in each mode the stream drained, each view was refreshed, no completion was
    # left unseen, and the percentiles are in order
    assert set(p8["runs"]) == {"materialized-view", "incremental"}
    for run in p8["runs"].values():
        assert run["drained"]
        assert run["never_visible"] == 0
        assert all(count > 0 for count in run["refreshes"].values())
        assert 0 < run["p50_s"] <= run["p95_s"] <= run["max_s"]
        # ...a completion takes at least the (scaled) refresh delay to show
        assert run["p50_s"] >= p8["time_scale"] * 1.0
    assert p8["p95_ratio"] == pytest.approx(
        p8["runs"]["materialized-view"]["p95_s"] / p8["runs"]["incremental"]["p95_s"]
    )


@pytest.mark.slow
def test_lock_waits_are_a_share_of_the_points_workers_database_time(
    bench_run: tuple[dict[str, Any], Path, str],
) -> None:
    # Given the tiny run's P9
    p9 = bench_run[0]["figures"]["p9_lock_waits"]

    # Then five workers processed every match, and the sampler saw them at work
    assert p9["workers"] == 5
    assert p9["failed_records"] == 0
    assert p9["active_samples"] > 0
    assert 0 <= p9["lock_wait_samples"] + p9["extension_wait_samples"] <= p9["active_samples"]
    assert p9["lock_wait_share"] == pytest.approx(p9["lock_wait_samples"] / p9["active_samples"])
