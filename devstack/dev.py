"""`make dev`: the local stack kept running with a small season, its console, and one
`export ...` block that `make invoke` and `matchstats` pick up by themselves.

    python -m devstack.dev [--seed season|none]

While it runs it prints one line per function invocation (function, records, outcome,
time), and the functions' own logs go to .devstack/logs/, started afresh on each run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import psycopg

from devstack import devenv
from devstack.demo import LOG_DIR
from devstack.functions import Invocation
from devstack.processes import die_with_parent
from devstack.stack import DevStack, StackOptions
from matchstats.producer import enqueue_points_calculations
from ops.console.server import ConsoleServer
from testkit.seed import DevSeason, seed_dev_season

SEEDS = ("season", "none")
POISON_MATCH = 999_999
# The figures each function's EMF metrics give, as a summary line names them.
_LABELS = {
    "PointsMessagesCompleted": "completed",
    "PointsMessagesDeadLettered": "dead-lettered",
    "PointsMessagesRetried": "retried",
    "RefreshesExecuted": "views refreshed",
    "RefreshesSkipped": "skipped",
    "RefreshRequestsRetried": "retried",
    "RefreshRequestsDeadLettered": "dead-lettered",
    "ScheduledRefreshRequested": "refresh requested",
    "RefreshApiAccepted": "refresh requested",
    # One count for a missing, malformed and wrong bearer token alike (the API answers
    # all three 401, SPEC section 7, and its log line says which).
    "RefreshApiUnauthorized": "refused: missing or wrong bearer secret",
}


def summary(invocation: Invocation) -> str:
    """`CalculatePointsFunction  10 records  9 completed, 1 dead-lettered  84 ms`."""
    if invocation.error is not None:
        outcome = f"error: {invocation.error}"
    else:
        counts = [
            f"{value:g} {_LABELS[name]}"
            for name, value in invocation.metrics.items()
            if name in _LABELS and value
        ]
        failures = (
            invocation.response.get("batchItemFailures")
            if isinstance(invocation.response, dict)
            else None
        )
        if failures:
            counts.append(f"{len(failures)} left for retry")
        status = (
            invocation.response.get("statusCode") if isinstance(invocation.response, dict) else None
        )
        if status is not None:
            counts.append(f"HTTP {status}")
        outcome = ", ".join(counts) or "ok"
    noun = "record" if invocation.records == 1 else "records"
    return (
        f"{time.strftime('%H:%M:%S')}  {invocation.function:<25} {invocation.records:>3} {noun:<7}"
        f"  {outcome}  ({invocation.milliseconds:.0f} ms)"
    )


class Printer:
    """Invocation lines from the stack's threads, whole lines at a time."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._lock = threading.Lock()

    def __call__(self, invocation: Invocation) -> None:
        line = summary(invocation)
        with self._lock:
            print(line, file=self._out, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.dev", description=__doc__)
    parser.add_argument(
        "--seed",
        choices=SEEDS,
        default=os.environ.get("SEED") or "season",
        help="season (default): two leagues half played; none: an empty database",
    )
    parser.add_argument(
        "--log-dir", type=Path, default=LOG_DIR, help=f"the functions' logs (default {LOG_DIR})"
    )
    args = parser.parse_args(argv)
    # Stop cleanly (SIGTERM, below) when whatever started us dies, even by SIGKILL: `make
    # dev` killed with -9 must not leave this process and its servers running.
    die_with_parent(signal.SIGTERM)
    try:
        return _serve(args.seed, args.log_dir, sys.stdout)
    except KeyboardInterrupt:
        # Ctrl-C while the stack was still starting: it has stopped what it started.
        print("interrupted", file=sys.stderr)
        return 130


def _serve(seed: str, log_dir: Path, out: TextIO) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    printer = Printer(out)
    options = StackOptions(schedule_interval_s=60, log_dir=log_dir, observer=printer)
    with DevStack(options) as stack, contextlib.ExitStack() as cleanup:
        seeded = _seed(stack) if seed == "season" else None
        environment = devenv.DevEnvironment(
            {**stack.environment(), devenv.PID_VARIABLE: str(os.getpid())}
        )
        path = devenv.write(environment)
        cleanup.callback(devenv.remove, os.getpid(), path)
        console = _start_console(environment)
        cleanup.callback(console.stop)
        _print_welcome(out, stack, environment, path, console.url, seeded)
        if seeded is not None:
            _send_season(stack, seeded)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
        print("stopping ...", file=out, flush=True)
    return 0


def _seed(stack: DevStack) -> DevSeason:
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        return seed_dev_season(conn)


def _send_season(stack: DevStack, seeded: DevSeason) -> None:
    """The played matches' points messages, as the app's scoring Lambda would have sent
    them, through PointsQueue: the standings are produced by the pipeline itself."""
    enqueue_points_calculations(
        [*seeded.played, seeded.bad_data],
        queue_url=stack.queue_urls["PointsQueue"],
        sqs_client=stack.sqs,
    )


def _start_console(environment: devenv.DevEnvironment) -> ConsoleServer:
    from ops.aws import Aws
    from ops.console.data import ConsoleData
    from ops.context import Context

    context = Context(
        argparse.Namespace(stack=None),
        Aws(local=environment.variables),
        environment.variables,
    )
    return ConsoleServer(ConsoleData(context)).start()


def _print_welcome(
    out: TextIO,
    stack: DevStack,
    environment: devenv.DevEnvironment,
    path: os.PathLike[str],
    console_url: str,
    seeded: DevSeason | None,
) -> None:
    assert stack.api is not None
    relative = os.path.relpath(path)
    producer = (
        f"(. {relative} && .venv/bin/python -c 'from matchstats.producer import"
        " enqueue_points_calculation as e; print(e({match}))')"
    )
    print(
        f"""matchstats local stack is running (Ctrl-C stops it and everything it started).

  console         {console_url}
  function logs   {stack.log_dir} (afresh each run)
  schedule        ScheduledRefreshFunction every 60 s

The settings below are in {relative}; `matchstats` and `make invoke` read them by
themselves while this runs. In another shell, `. {relative}` sets them there too:

{environment.export_block()}
""",
        file=out,
        flush=True,
    )
    if seeded is not None:
        played = seeded.played[0]
        last = len(seeded.season.match_ids)
        print(
            f"""Seeded: two leagues of six, half their matches played (ids 1 to {last}),
their points sent through PointsQueue as the app would. Match {seeded.bad_data} was marked
completed without scores (bad data): its message waits in PointsDeadLetterQueue.

Send a points message as the scoring Lambda does (match {played} is played):
  {producer.format(match=played)}
Send a poison message (no match {POISON_MATCH}); find it in the console, and discard it:
  {producer.format(match=POISON_MATCH)}
Repair match {seeded.bad_data} as the app would, then redrive its message from the console:
  .venv/bin/python -m devstack.play score {seeded.bad_data} 2 1 --no-message
""",
            file=out,
            flush=True,
        )
    print(
        f"""Ask for a refresh through the API:
  curl -i -X POST {stack.api.url}/cron/update-stats \\
       -H 'Authorization: Bearer {stack.options.cron_secret}' \\
       -H 'Content-Type: application/json' -d '{{"scope": "all"}}'

Invocations as they happen:""",
        file=out,
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
