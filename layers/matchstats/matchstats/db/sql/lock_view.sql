-- One refresher per view at a time; lock_timeout bounds the wait, after which the
-- request is retried with backoff instead of holding a connection in a queue of waiters.
SELECT pg_advisory_xact_lock(hashtextextended('matchstats.refresh:' || %(view_name)s, 0))
