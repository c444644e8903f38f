-- Incremental mode: brings competition_standings in line with standings_source for the
-- keys its change log names (every key when %(full)s), in one statement, one snapshot:
-- recomputed by key from match_points, upserted where they differ, deleted where the key
-- has no match left. Readers read the old rows or the new, never wait.
WITH consumed AS (
    DELETE FROM changed_standings
    RETURNING competition_id, competitor_id
),
touched AS (
    SELECT competition_id, competitor_id FROM consumed
    UNION
    SELECT competition_id, competitor_id FROM standings_source WHERE %(full)s
    UNION
    SELECT competition_id, competitor_id FROM competition_standings WHERE %(full)s
),
fresh AS (
    SELECT s.*
    FROM touched AS t
    CROSS JOIN LATERAL (
        -- OFFSET 0 keeps this subquery from being pulled up into a join with touched: the
        -- planner then merges the touched keys with the aggregate of all of match_points,
        -- a scan of the whole table (0.67 s at 1M rows by EXPLAIN ANALYZE, for 2k keys).
        -- Kept apart, it runs once per key by index, whatever the table's size.
        SELECT * FROM standings_source AS src
        WHERE src.competition_id = t.competition_id AND src.competitor_id = t.competitor_id
        OFFSET 0
    ) AS s
),
upserted AS (
    INSERT INTO competition_standings AS cs
    SELECT * FROM fresh
    ON CONFLICT (competition_id, competitor_id) DO UPDATE
        SET played = excluded.played, won = excluded.won, drawn = excluded.drawn,
            lost = excluded.lost, score_for = excluded.score_for,
            score_against = excluded.score_against, score_diff = excluded.score_diff,
            points = excluded.points
        WHERE (cs.played, cs.won, cs.drawn, cs.lost, cs.score_for, cs.score_against,
               cs.score_diff, cs.points)
              IS DISTINCT FROM
              (excluded.played, excluded.won, excluded.drawn, excluded.lost,
               excluded.score_for, excluded.score_against, excluded.score_diff,
               excluded.points)
    RETURNING cs.competition_id
),
-- Touched keys with no match left (a void, a match moved away): usually none.
gone AS (
    SELECT t.competition_id, t.competitor_id
    FROM touched AS t
    WHERE NOT EXISTS (
        SELECT 1 FROM fresh AS f
        WHERE f.competition_id = t.competition_id AND f.competitor_id = t.competitor_id
    )
),
deleted AS (
    -- By the gone keys, through the key's unique index: with no gone key the arrays are
    -- empty and the table is not read at all. Joined to the table instead, the delete was
    -- planned as a hash of the whole table on every refresh (15 ms at 2M rows, growing
    -- with history). The arrays bound the index scan; EXISTS keeps it to the gone pairs.
    -- By key, a row another session updates meanwhile is still deleted; one it deletes
    -- and inserts again is a new row this snapshot cannot see, and stays (READ
    -- COMMITTED): the refresher is meant to be these tables' only writer, and
    -- `matchstats refresh --full` mends what a hand edit leaves.
    DELETE FROM competition_standings AS cs
    WHERE cs.competition_id = ANY (ARRAY(SELECT g.competition_id FROM gone AS g))
      AND cs.competitor_id = ANY (ARRAY(SELECT g.competitor_id FROM gone AS g))
      AND EXISTS (
          SELECT 1 FROM gone AS g
          WHERE g.competition_id = cs.competition_id AND g.competitor_id = cs.competitor_id
      )
    RETURNING cs.competition_id
),
changed AS (
    SELECT competition_id FROM upserted
    UNION ALL
    SELECT competition_id FROM deleted
)
SELECT (SELECT count(*) FROM touched)::int                                  AS keys,
       (SELECT count(*) FROM changed)::int                                  AS rows_changed,
       coalesce((SELECT array_agg(DISTINCT competition_id) FROM changed), '{}')::bigint[]
           AS competition_ids
