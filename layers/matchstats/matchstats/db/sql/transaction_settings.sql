-- The first statement of every transaction of the bundle: what it relies on, set for this
-- transaction only (is_local), so nothing outlives it on a pooled server connection and
-- the database's or role's defaults never matter. pg_catalog-qualified, because the
-- search_path is not yet ours when this runs.
SELECT pg_catalog.set_config('search_path', %(search_path)s, true),
       -- Anything the SQL renders as text reads the same everywhere (results come back in
       -- binary, which these do not affect).
       pg_catalog.set_config('DateStyle', 'ISO, MDY', true),
       pg_catalog.set_config('IntervalStyle', 'postgres', true),
       pg_catalog.set_config('TimeZone', 'UTC', true),
       -- Timeouts from the invocation's remaining time, not the role's.
       pg_catalog.set_config('statement_timeout', %(statement_timeout_ms)s, true),
       pg_catalog.set_config('lock_timeout', %(lock_timeout_ms)s, true),
       pg_catalog.set_config('idle_in_transaction_session_timeout', %(statement_timeout_ms)s, true),
       -- PostgreSQL 17+: off, because each statement and each idle moment is bounded
       -- above, and a role's low transaction_timeout would end the session with a FATAL.
       CASE WHEN pg_catalog.current_setting('server_version_num')::int >= 170000 THEN
           pg_catalog.set_config('transaction_timeout', '0', true)
       END,
       -- A refresh is background work: without parallel workers it leaves the other cores
       -- to the readers. NULL keeps the server's setting.
       CASE WHEN %(parallel_workers)s::text IS NOT NULL THEN
           pg_catalog.set_config('max_parallel_workers_per_gather', %(parallel_workers)s::text, true)
       END
