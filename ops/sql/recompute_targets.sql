-- The matches whose points a recompute may change: every completed match, and every
-- match that still has match_points rows (a void or a reopened match must lose them).
-- Any other match has no points before or after, so its message would be a no-op.
-- A NULL list means every competition. Points are matched on their own
-- competition_id too, so a match moved to another competition leaves neither behind.
SELECT m.id AS match_id, m.score_version
FROM matches AS m
WHERE m.status = 'completed'
  AND (%(competition_ids)s::bigint[] IS NULL
       OR m.competition_id = ANY (%(competition_ids)s::bigint[]))
UNION
SELECT m.id AS match_id, m.score_version
FROM match_points AS mp
JOIN matches AS m ON m.id = mp.match_id
WHERE %(competition_ids)s::bigint[] IS NULL
   OR mp.competition_id = ANY (%(competition_ids)s::bigint[])
ORDER BY match_id
