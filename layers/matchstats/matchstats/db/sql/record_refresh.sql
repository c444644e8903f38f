-- Marks the view refreshed, logs the refresh and tells listeners (app caches) on commit.
WITH state AS (
    UPDATE view_refresh_state
    SET last_started_at  = %(started_at)s,
        last_finished_at = clock_timestamp()
    WHERE view_name = %(view_name)s
    RETURNING last_finished_at
),
logged AS (
    INSERT INTO refresh_log (
        view_name, reasons, requests_covered, forced, concurrent, keys_changed,
        oldest_request_at, started_at, finished_at, duration_ms
    )
    SELECT %(view_name)s, %(reasons)s::text[], %(requests_covered)s, %(forced)s,
           %(concurrently)s, %(keys_changed)s, %(oldest_request_at)s, %(started_at)s,
           state.last_finished_at,
           greatest(0, (extract(epoch FROM state.last_finished_at - %(started_at)s) * 1000)::int)
    FROM state
    RETURNING finished_at, duration_ms
)
SELECT logged.finished_at, logged.duration_ms, pg_notify('matchstats_refreshed', %(view_name)s)
FROM logged
