-- The standings as readers see them (competition_table), with names, best first.
SELECT t.competition_id, c.name AS competition, t.rank, t.competitor_id,
       p.name AS competitor, t.played, t.won, t.drawn, t.lost, t.score_for,
       t.score_against, t.score_diff, t.points
FROM competition_table AS t
JOIN competitions AS c ON c.id = t.competition_id
JOIN competitors AS p ON p.id = t.competitor_id
ORDER BY t.competition_id, t.rank, t.competitor_id
LIMIT %(limit)s
