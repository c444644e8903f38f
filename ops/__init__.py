"""Operator tooling: the `matchstats` console command (ops.cli). Runs on an operator's
machine against the local stack or AWS; never shipped to Lambda."""
