-- Local to the transaction: a pooled connection keeps its defaults afterwards.
SELECT set_config('statement_timeout', %(statement_timeout_ms)s, true),
       set_config('lock_timeout', %(lock_timeout_ms)s, true)
