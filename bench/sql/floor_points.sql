-- P1's floor: a batch's match_points as one bare set-based upsert. No advisory locks,
-- no voids, no job history, no change counter, no clock read: the least any correct
-- points writer must do for the batch.
INSERT INTO match_points AS mp (
    match_id, competitor_id, competition_id, result, points,
    score_for, score_against, score_version, calculated_at
)
SELECT m.id, s.competitor_id, m.competition_id,
       CASE WHEN s.score_for > s.score_against THEN 'W'
            WHEN s.score_for = s.score_against THEN 'D'
            ELSE 'L' END,
       CASE WHEN s.score_for > s.score_against THEN c.points_win
            WHEN s.score_for = s.score_against THEN c.points_draw
            ELSE c.points_loss END,
       s.score_for, s.score_against, m.score_version, clock_timestamp()
FROM matches AS m
JOIN competitions AS c ON c.id = m.competition_id
CROSS JOIN LATERAL (
    VALUES (m.home_id, m.home_score, m.away_score),
           (m.away_id, m.away_score, m.home_score)
) AS s (competitor_id, score_for, score_against)
WHERE m.id = ANY (%(match_ids)s::bigint[])
  AND m.status = 'completed'
ON CONFLICT (match_id, competitor_id) DO UPDATE
    SET competition_id = excluded.competition_id,
        result         = excluded.result,
        points         = excluded.points,
        score_for      = excluded.score_for,
        score_against  = excluded.score_against,
        score_version  = excluded.score_version,
        calculated_at  = excluded.calculated_at
