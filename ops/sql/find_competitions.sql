-- The requested competitions that exist.
SELECT id
FROM competitions
WHERE id = ANY (%(competition_ids)s::bigint[])
ORDER BY id
