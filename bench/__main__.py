"""`python -m bench [--size tiny|full] [--out DIR] [--only P1,P3] [--rows-25m]`: prints the
table and writes DIR/results.json, DIR/table.md and DIR/refresh_cost.png. `make bench`
runs it with the handlers' folders on PYTHONPATH (`make bench ROWS25M=1` adds 25M rows).
At full size a figure that misses its target makes the exit status 1 (after everything
is written); the tiny size, which `make test` runs only to keep it working, always
exits 0."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.sizes import SIZES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument(
        "--only",
        default="P1,P2,P3,P4,P5,P6,P7,P8,P9",
        help="comma-separated figures to run (default: all)",
    )
    parser.add_argument(
        "--rows-25m",
        action="store_true",
        help="P7 also at 25M match_points rows (about 18 more minutes on 2 cores)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)

    try:
        from bench.run import FIGURES, run
    except ModuleNotFoundError as exc:
        print(
            f"python -m bench: {exc}; run `make bench`, or put the handlers on the path:"
            " PYTHONPATH=layers/matchstats:functions",
            file=sys.stderr,
        )
        return 2
    from bench.measure import Progress
    from bench.report import markdown_table, print_table, refresh_chart, rows, write_json

    only = {name.strip().upper() for name in args.only.split(",") if name.strip()}
    unknown = only - set(FIGURES)
    if unknown:
        parser.error(f"unknown figure(s): {', '.join(sorted(unknown))}")

    results = run(SIZES[args.size], only, Progress(enabled=not args.quiet), rows_25m=args.rows_25m)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(results, args.out / "results.json")
    (args.out / "table.md").write_text(markdown_table(rows(results)) + "\n")
    if "p4_refresh_cost" in results["figures"]:
        meta = results["meta"]
        refresh_chart(
            results["figures"]["p4_refresh_cost"],
            args.out / "refresh_cost.png",
            f"Refresh of both views, plain vs concurrent ({meta['date']},"
            f" {meta['machine']['cores']} cores, PostgreSQL {meta['postgres']})",
        )
    print_table(results)
    print(f"results: {args.out / 'results.json'}")
    return exit_status(args.size, results["table"])


def exit_status(size: str, table: list[dict[str, str]]) -> int:
    """1 when a full-size figure misses its target (its verdict is FAIL), else 0: a tiny
    run measures too little for a verdict to mean anything, so it only reports."""
    failed = [row["figure"] for row in table if row.get("verdict") == "FAIL"]
    if failed and size == "full":
        print(f"target missed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
