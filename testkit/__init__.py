"""Test support that the tests, the benchmark and the demo share: sample events built from
events/ (testkit.events), a season played the way the app plays it (testkit.seed), and an
independent recomputation of the standings to check the SQL against (testkit.oracle).

Local tooling; never shipped to Lambda. It imports nothing from devstack, so that the
local stack may use it and not the other way round."""
