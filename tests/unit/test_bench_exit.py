"""`make bench` exits non-zero when a full-size figure misses its target; a tiny run,
too small for a verdict to mean anything, only reports."""

from __future__ import annotations

from bench.__main__ import exit_status

PASSED = {"figure": "P2 refresh coalescing", "verdict": "PASS"}
FAILED = {"figure": "P1 points throughput", "verdict": "FAIL"}
NO_TARGET = {"figure": "P4 refresh both views, 10,000 rows", "verdict": ""}


def test_a_full_run_with_a_failed_verdict_exits_1() -> None:
    # Given a full-size table where P1 missed its target
    # When the exit status is decided
    # Then it is 1
    assert exit_status("full", [PASSED, FAILED, NO_TARGET]) == 1


def test_a_full_run_that_meets_every_target_and_any_tiny_run_exit_0() -> None:
    # Given a full run that passed, and a tiny run that "failed"
    # Then both exit 0
    assert exit_status("full", [PASSED, NO_TARGET]) == 0
    assert exit_status("tiny", [PASSED, FAILED]) == 0
