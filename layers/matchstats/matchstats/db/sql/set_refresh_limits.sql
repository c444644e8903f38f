-- Local to the refresh transaction. No parallel workers: a refresh is background work,
-- and a parallel aggregate would take every core of a small instance from the readers.
SELECT set_config('statement_timeout', %(statement_timeout_ms)s, true),
       set_config('lock_timeout', %(lock_timeout_ms)s, true),
       set_config('max_parallel_workers_per_gather', '0', true)
