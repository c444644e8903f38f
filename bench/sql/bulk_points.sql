-- match_points of matches first .. last, written straight from the matches in one
-- statement: how the benchmark fills large tables fast. The rules are those of
-- compute_points.sql; only the bookkeeping (locks, job history, change counter) is left out.
INSERT INTO match_points (
    match_id, competitor_id, competition_id, result, points,
    score_for, score_against, score_version
)
SELECT m.id, s.competitor_id, m.competition_id,
       CASE WHEN s.score_for > s.score_against THEN 'W'
            WHEN s.score_for = s.score_against THEN 'D'
            ELSE 'L' END,
       CASE WHEN s.score_for > s.score_against THEN c.points_win
            WHEN s.score_for = s.score_against THEN c.points_draw
            ELSE c.points_loss END,
       s.score_for, s.score_against, m.score_version
FROM matches AS m
JOIN competitions AS c ON c.id = m.competition_id
CROSS JOIN LATERAL (
    VALUES (m.home_id, m.home_score, m.away_score),
           (m.away_id, m.away_score, m.home_score)
) AS s (competitor_id, score_for, score_against)
WHERE m.id BETWEEN %(first_id)s AND %(last_id)s
  AND m.status = 'completed'
