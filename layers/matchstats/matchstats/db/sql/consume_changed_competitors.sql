-- Materialized-view mode, before REFRESH ... CONCURRENTLY: empties competitor_stats'
-- change log of what this snapshot sees. competitor_stats is not by competition.
WITH consumed AS (
    DELETE FROM changed_competitors
    RETURNING competitor_id
)
SELECT count(DISTINCT competitor_id)::int AS keys,
       '{}'::bigint[]                     AS competition_ids
FROM consumed
