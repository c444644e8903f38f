-- Where each view stands for the operator: its last refresh, how it is maintained, and
-- the keys its change log holds for the next refresh (none: it shows every change).
SELECT v.view_name,
       v.last_started_at,
       v.last_finished_at,
       m.mode,
       waiting.keys                               AS keys_waiting,
       waiting.oldest                             AS changed_at,
       waiting.keys > 0                           AS changes_waiting,
       last_refresh.duration_ms                   AS last_duration_ms,
       last_refresh.freshness_ms                  AS last_freshness_ms,
       clock_timestamp()                          AS now
FROM view_refresh_state AS v
CROSS JOIN standings_mode AS m
CROSS JOIN LATERAL (
    SELECT count(*)::int AS keys, min(logged_at) AS oldest
    FROM changed_standings
    WHERE v.view_name = 'competition_standings'
    UNION ALL
    SELECT count(*)::int, min(logged_at)
    FROM changed_competitors
    WHERE v.view_name = 'competitor_stats'
    ORDER BY 1 DESC
    LIMIT 1
) AS waiting
LEFT JOIN LATERAL (
    -- Freshness: how long the oldest change it covered had waited to be shown.
    SELECT r.duration_ms,
           (extract(epoch FROM r.finished_at - r.oldest_request_at) * 1000)::bigint
               AS freshness_ms
    FROM refresh_log AS r
    WHERE r.view_name = v.view_name
    ORDER BY r.started_at DESC
    LIMIT 1
) AS last_refresh ON true
ORDER BY v.view_name
