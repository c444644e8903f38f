-- Read under the view's lock, before the refresh: clock_timestamp() here is the moment the
-- refresh starts; changes_pending whether the view's change log holds any key.
SELECT v.last_started_at,
       CASE v.view_name
           WHEN 'competition_standings' THEN EXISTS (SELECT 1 FROM changed_standings)
           ELSE EXISTS (SELECT 1 FROM changed_competitors)
       END                 AS changes_pending,
       c.relispopulated    AS populated,
       m.mode,
       clock_timestamp()   AS now
FROM view_refresh_state AS v
CROSS JOIN standings_mode AS m
JOIN pg_class AS c ON c.oid = to_regclass(v.view_name)
WHERE v.view_name = %(view_name)s
