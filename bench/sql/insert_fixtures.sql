-- Fixtures k = first .. first + count - 1, laid out arithmetically so that any size is
-- one statement: competition k / 380 holds the 380 matches of a double round robin of
-- 20 teams, and every 4 competitions (seasons) share one pool of 20 teams. Ids are
-- explicit (match id = k + 1), which a database of the benchmark's own allows.
-- Completed fixtures get scores from a hash of k, so every run plays the same season.
WITH fixture AS (
    SELECT k,
           k / 380 + 1        AS competition_id,
           k / 380 / 4 * 20   AS pool_offset,
           k %% 380 / 19       AS home_slot,
           k %% 380 %% 19       AS away_pick
    FROM generate_series(%(first)s::bigint, %(first)s::bigint + %(count)s - 1) AS k
),
competition AS (
    SELECT DISTINCT competition_id, pool_offset FROM fixture
),
new_competitions AS (
    INSERT INTO competitions (id, name)
    SELECT competition_id, 'Bench league ' || competition_id
    FROM competition
    ON CONFLICT (id) DO NOTHING
),
new_competitors AS (
    INSERT INTO competitors (id, name)
    SELECT DISTINCT pool_offset + slot + 1, 'Bench team ' || (pool_offset + slot + 1)
    FROM competition
    CROSS JOIN generate_series(0, 19) AS slot
    ON CONFLICT (id) DO NOTHING
)
INSERT INTO matches (
    id, competition_id, home_id, away_id, home_score, away_score, status, score_version,
    completed_at
)
SELECT k + 1,
       competition_id,
       pool_offset + home_slot + 1,
       pool_offset + away_pick + (away_pick >= home_slot)::int + 1,
       CASE WHEN %(completed)s THEN (hashint8(k) & 2147483647) %% 5 END,
       CASE WHEN %(completed)s THEN (hashint8(-k) & 2147483647) %% 4 END,
       CASE WHEN %(completed)s THEN 'completed' ELSE 'scheduled' END,
       1,
       CASE WHEN %(completed)s THEN now() END
FROM fixture
