"""Small measuring helpers shared by the figures."""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import sys
import time
from collections.abc import Iterator, Sequence


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: the smallest value with `fraction` of the values at or
    below it (p99 of 100 values is the 99th smallest, not an interpolation)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return float(ordered[rank - 1])


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.inf


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p99 and max in milliseconds, and how many samples they come from."""
    return {
        "samples": len(seconds),
        "p50_ms": percentile(seconds, 0.50) * 1000,
        "p99_ms": percentile(seconds, 0.99) * 1000,
        "max_ms": max(seconds) * 1000,
    }


@contextlib.contextmanager
def stdout_discarded() -> Iterator[None]:
    """Sends file descriptor 1 to /dev/null: the handlers log and emit metrics to stdout
    as in Lambda (where CloudWatch takes them), and the benchmark's own table must stay
    readable. Formatting and writing the logs is still paid, as in Lambda."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


class Progress:
    """One line per step on stderr, with the time since the run started."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._started = time.perf_counter()

    def __call__(self, message: str) -> None:
        if self.enabled:
            elapsed = time.perf_counter() - self._started
            print(f"[{elapsed:6.1f} s] {message}", file=sys.stderr, flush=True)
