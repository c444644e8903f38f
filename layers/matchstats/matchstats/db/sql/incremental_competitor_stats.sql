-- Incremental mode: brings competitor_stats in line with competitor_stats_source for the
-- competitors its change log names (every one when %(full)s); see
-- incremental_competition_standings.sql.
WITH consumed AS (
    DELETE FROM changed_competitors
    RETURNING competitor_id
),
touched AS (
    SELECT competitor_id FROM consumed
    UNION
    SELECT competitor_id FROM competitor_stats_source WHERE %(full)s
    UNION
    SELECT competitor_id FROM competitor_stats WHERE %(full)s
),
fresh AS (
    SELECT s.*
    FROM touched AS t
    CROSS JOIN LATERAL (
        -- OFFSET 0 keeps this subquery from being pulled up into a join with touched (see
        -- incremental_competition_standings.sql): without it, a scan of all of match_points
        -- and a sort (4.5 s at 5M rows by EXPLAIN ANALYZE, for 3k competitors; by index,
        -- each one reads only its own rows).
        SELECT * FROM competitor_stats_source AS src WHERE src.competitor_id = t.competitor_id
        OFFSET 0
    ) AS s
),
upserted AS (
    INSERT INTO competitor_stats AS cs
    SELECT * FROM fresh
    ON CONFLICT (competitor_id) DO UPDATE
        SET played = excluded.played, won = excluded.won, drawn = excluded.drawn,
            lost = excluded.lost, score_for = excluded.score_for,
            score_against = excluded.score_against, points = excluded.points,
            competitions = excluded.competitions
        WHERE (cs.played, cs.won, cs.drawn, cs.lost, cs.score_for, cs.score_against,
               cs.points, cs.competitions)
              IS DISTINCT FROM
              (excluded.played, excluded.won, excluded.drawn, excluded.lost,
               excluded.score_for, excluded.score_against, excluded.points,
               excluded.competitions)
    RETURNING cs.competitor_id
),
-- Touched competitors with no match left: usually none.
gone AS (
    SELECT t.competitor_id
    FROM touched AS t
    WHERE NOT EXISTS (SELECT 1 FROM fresh AS f WHERE f.competitor_id = t.competitor_id)
),
-- By the gone keys, through the key's unique index, as
-- incremental_competition_standings.sql deletes.
deleted AS (
    DELETE FROM competitor_stats AS cs
    WHERE cs.competitor_id = ANY (ARRAY(SELECT g.competitor_id FROM gone AS g))
    RETURNING cs.competitor_id
)
SELECT (SELECT count(*) FROM touched)::int                                        AS keys,
       ((SELECT count(*) FROM upserted) + (SELECT count(*) FROM deleted))::int    AS rows_changed,
       '{}'::bigint[]                                                             AS competition_ids
