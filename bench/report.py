"""The results as a table (terminal and Markdown), a JSON file and the refresh-cost chart."""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NO_TARGET = ""


@dataclass(frozen=True)
class Row:
    figure: str
    measured: str
    baseline: str
    ratio: str
    target: str
    verdict: str

    def as_dict(self) -> dict[str, str]:
        return vars(self).copy()


def machine() -> dict[str, Any]:
    """What the figures were measured on; the load average tells a busy machine."""
    model = platform.processor() or platform.machine()
    memory_gb = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": memory_gb,
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": list(os.getloadavg()),
    }


def _x(value: float) -> str:
    return f"{value:.2f}x"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def rows(results: dict[str, Any]) -> list[Row]:
    figures = results["figures"]
    table: list[Row] = []
    p1 = figures.get("p1_points_throughput")
    if p1:
        handler, floor = p1["handler"], p1["floor"]
        table.append(
            Row(
                "P1 points throughput",
                f"handler {handler['matches_per_s']:,.0f} matches/s",
                f"floor {floor['matches_per_s']:,.0f} matches/s",
                _x(p1["ratio"]),
                f">= {p1['target']['ratio_at_least']}x",
                _verdict(p1["meets_target"]),
            )
        )
        hw, fw = handler["wire_per_batch"], floor["wire_per_batch"]
        table.append(
            Row(
                "P1 SQL per batch",
                _wire(hw),
                _wire(fw),
                NO_TARGET,
                NO_TARGET,
                NO_TARGET,
            )
        )
    p2 = figures.get("p2_refresh_coalescing")
    if p2:
        run, naive = p2["coalesced"], p2["naive"]
        executed = "+".join(str(n) for n in run["executed"].values())
        table.append(
            Row(
                "P2 refresh coalescing",
                f"{run['refresh_requests']} requests: {run['executed_total']} refreshes"
                f" ({executed}), {run['skipped_covered'] + run['skipped_unchanged']} skipped,"
                f" {run['missed_rows']} missed",
                f"naive {naive['executed_total']} refreshes, {naive['refresh_s_total']:.1f} s",
                _x(p2["executed_ratio"]),
                f"<= {run['target_max_per_view']} per view, 0 missed",
                _verdict(p2["meets_target"]),
            )
        )
    p3 = figures.get("p3_readers_during_refresh")
    if p3:
        during, idle = p3["during_refresh"], p3["idle"]
        table.append(
            Row(
                f"P3 standings read, {p3['match_points_rows']:,} rows",
                f"during refresh p50 {during['p50_ms']:.2f} ms, p99 {during['p99_ms']:.2f} ms",
                f"idle p50 {idle['p50_ms']:.2f} ms, p99 {idle['p99_ms']:.2f} ms",
                _x(p3["p99_ratio"]) + " (p99)",
                f"<= {p3['target']['p99_ratio_at_most']}x",
                _verdict(p3["meets_target"]),
            )
        )
    p4 = figures.get("p4_refresh_cost")
    if p4:
        last = len(p4["steps"]) - 1
        for index, step in enumerate(p4["steps"]):
            largest = index == last
            table.append(
                Row(
                    f"P4 refresh both views, {step['match_points_rows']:,} rows",
                    f"concurrent {step['concurrent_s']['both']:.3f} s",
                    f"plain {step['plain_s']['both']:.3f} s",
                    _x(step["ratio"]),
                    f"<= {p4['target']['ratio_at_most']}x" if largest else NO_TARGET,
                    _verdict(p4["meets_target"]) if largest else NO_TARGET,
                )
            )
    p5 = figures.get("p5_cold_start")
    if p5:
        for name, function in p5["functions"].items():
            must_not = name in p5["psycopg_free"]
            table.append(
                Row(
                    f"P5 import {name}",
                    f"{function['handler_import_ms']:.0f} ms"
                    f" ({function['handler_import_tracing_disabled_ms']:.0f} untraced),"
                    f" psycopg {'yes' if function['imports_psycopg'] else 'no'}"
                    f" ({'yes' if function['imports_psycopg_tracing_disabled'] else 'no'})",
                    f"dependencies only {function['dependencies_only_ms']:.0f} ms",
                    _x(function["ratio"]),
                    "no psycopg" if must_not else NO_TARGET,
                    _verdict(not function["imports_psycopg"]) if must_not else NO_TARGET,
                )
            )
    p6 = figures.get("p6_memory")
    if p6:
        for name, function in p6["functions"].items():
            table.append(
                Row(
                    f"P6 peak RSS {name}",
                    f"{function['peak_rss_mb']:.0f} MB of {function['memory_size_mb']} MB"
                    f" ({_plural(function['records'], 'record')})",
                    f"dependencies only {function['dependencies_only_mb']:.0f} MB",
                    _x(function["ratio"]),
                    NO_TARGET,
                    NO_TARGET if function["succeeded"] else "invocation failed",
                )
            )
    table += _standings_rows(figures)
    return table


def _standings_rows(figures: dict[str, Any]) -> list[Row]:
    """P7-P9: the two standings modes, their freshness and the points path's lock waits."""
    table: list[Row] = []
    p7 = figures.get("p7_standings_modes")
    if p7:
        targets = {target["at_rows"]: target for target in p7["targets"]}
        for step in p7["steps"]:
            target = targets.get(step["nominal_rows"])
            table.append(
                Row(
                    f"P7 standings refresh, {step['match_points_rows']:,} rows",
                    f"incremental {step['incremental_s']:.3f} s",
                    f"view (concurrently) {step['view_s']:.3f} s",
                    _x(step["ratio"]) + " cheaper",
                    f">= {target['ratio_at_least']:g}x" if target else NO_TARGET,
                    _verdict(target["meets_target"]) if target else NO_TARGET,
                )
            )
        crossing = p7["crossover_rows"]
        table.append(
            Row(
                "P7 crossover",
                f"{crossing:,.0f} rows" if crossing else "none in the sizes measured",
                f"{p7['cheaper_when_small']} cheaper below",
                NO_TARGET,
                NO_TARGET,
                NO_TARGET,
            )
        )
    p8 = figures.get("p8_freshness")
    if p8:
        incremental, view = p8["runs"]["incremental"], p8["runs"]["materialized-view"]
        table.append(
            Row(
                f"P8 freshness, {incremental['match_points_rows']:,} rows",
                f"incremental p50 {_s(incremental['p50_s'])}, p95 {_s(incremental['p95_s'])}",
                f"view p50 {_s(view['p50_s'])}, p95 {_s(view['p95_s'])}",
                _x(p8["p95_ratio"]) + " (p95)",
                f"incremental p95 <= {incremental['target_p95_s']:.1f} s",
                _verdict(p8["meets_target"]),
            )
        )
    p9 = figures.get("p9_lock_waits")
    if p9:
        table.append(
            Row(
                f"P9 lock waits, {p9['workers']} points workers",
                f"{p9['lock_wait_share']:.2%} of database time on shared rows",
                f"{p9['extension_wait_share']:.2%} extending tables,"
                f" of {p9['active_samples']:,} samples",
                NO_TARGET,
                f"< {p9['target']['share_below']:.0%}",
                _verdict(p9["meets_target"]),
            )
        )
    return table


def _s(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.2f} s"


def _wire(per_batch: dict[str, float | None]) -> str:
    text = f"{per_batch['round_trips']:.1f} round trips"
    if per_batch["statements"] is not None and per_batch["syncs"] is not None:
        text += f", {_plural(per_batch['statements'], 'statement')}"
        text += f", {_plural(per_batch['syncs'], 'sync')}"
    return text


def _plural(count: float, noun: str) -> str:
    return f"{count:.0f} {noun}" if round(count) == 1 else f"{count:.0f} {noun}s"


_HEADERS = ("figure", "measured", "baseline", "ratio", "target", "verdict")


def text_table(table: list[Row]) -> str:
    cells = [list(_HEADERS)] + [list(vars(row).values()) for row in table]
    widths = [max(len(cell[i]) for cell in cells) for i in range(len(_HEADERS))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def markdown_table(table: list[Row]) -> str:
    lines = ["| " + " | ".join(_HEADERS) + " |", "|" + "---|" * len(_HEADERS)]
    lines += ["| " + " | ".join(vars(row).values()) + " |" for row in table]
    return "\n".join(lines)


def headline(results: dict[str, Any]) -> str:
    meta = results["meta"]
    host = meta["machine"]
    return (
        f"matchstats bench ({meta['size']}), {meta['date']}: {host['cores']} cores"
        f" ({host['cpu']}), {host['memory_gb']} GB, Python {host['python']},"
        f" PostgreSQL {meta['postgres']}; {meta['wall_s']:.0f} s"
    )


def _short(count: int) -> str:
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if count >= size:
            return f"{count / size:g}{suffix}"
    return str(count)


def write_json(results: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")


def refresh_chart(p4: dict[str, Any], path: Path, title: str) -> None:
    """Refresh time of both views against match_points rows, plain and concurrent."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullLocator

    rows_axis = [step["match_points_rows"] for step in p4["steps"]]
    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=120)
    for mode, colour in (("plain", "tab:blue"), ("concurrent", "tab:orange")):
        key = f"{mode}_s"
        axes.plot(
            rows_axis,
            [step[key]["both"] for step in p4["steps"]],
            marker="o",
            color=colour,
            label=f"{mode}, both views",
        )
        for view, style in (("competition_standings", "--"), ("competitor_stats", ":")):
            axes.plot(
                rows_axis,
                [step[key][view] for step in p4["steps"]],
                linestyle=style,
                color=colour,
                alpha=0.6,
                label=f"{mode}, {view}",
            )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xticks(rows_axis, [_short(rows) for rows in rows_axis])
    axes.xaxis.set_minor_locator(NullLocator())
    axes.yaxis.set_major_formatter(FuncFormatter(lambda seconds, _: f"{seconds:g} s"))
    axes.set_xlabel("match_points rows")
    axes.set_ylabel("refresh time (s)")
    axes.set_title(title, fontsize=9)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def print_table(results: dict[str, Any]) -> None:
    print(headline(results))
    print(text_table(rows(results)))
    sys.stdout.flush()
