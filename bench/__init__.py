"""`make bench`: what the pipeline costs, each figure measured side by side with its
baseline in the same run (see README, Benchmarks). Local tooling; never shipped."""
