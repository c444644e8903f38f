-- Materialized-view mode, before REFRESH ... CONCURRENTLY: empties competition_standings'
-- change log of what this snapshot sees (the refresh, later, sees at least as much), and
-- says which keys and competitions it named.
WITH consumed AS (
    DELETE FROM changed_standings
    RETURNING competition_id, competitor_id
)
SELECT count(DISTINCT (competition_id, competitor_id))::int           AS keys,
       coalesce(array_agg(DISTINCT competition_id), '{}')::bigint[]    AS competition_ids
FROM consumed
