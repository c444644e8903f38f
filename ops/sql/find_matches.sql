-- The requested matches that exist, with their current score_version.
SELECT id AS match_id, score_version
FROM matches
WHERE id = ANY (%(match_ids)s::bigint[])
ORDER BY id
