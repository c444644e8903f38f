-- Read under the view's lock, before the refresh: clock_timestamp() here is the moment
-- the refresh starts, and change_seq the last change it is sure to include.
SELECT v.last_started_at,
       v.last_change_seq,
       s.change_seq        AS current_change_seq,
       c.relispopulated    AS populated,
       clock_timestamp()   AS now
FROM view_refresh_state AS v
CROSS JOIN stats_state AS s
JOIN pg_class AS c ON c.oid = to_regclass(v.view_name)
WHERE v.view_name = %(view_name)s
