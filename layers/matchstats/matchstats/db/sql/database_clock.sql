-- Read after a commit: anything that starts after this moment sees the committed change.
SELECT clock_timestamp()
