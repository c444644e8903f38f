-- Where each materialized view stands for the operator: its last refresh, and whether
-- points changed since (the view includes change_seq up to last_change_seq). A view
-- never refreshed counts as including change 0, the state it was created in.
SELECT v.view_name,
       v.last_started_at,
       v.last_finished_at,
       v.last_change_seq,
       s.change_seq                               AS current_change_seq,
       s.changed_at,
       coalesce(v.last_change_seq, 0) <> s.change_seq AS changes_waiting,
       last_refresh.duration_ms                   AS last_duration_ms,
       last_refresh.freshness_ms                  AS last_freshness_ms,
       clock_timestamp()                          AS now
FROM view_refresh_state AS v
CROSS JOIN stats_state AS s
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
