-- Serialises the transactions that compute the same match, so the last one to commit
-- has read the match's latest committed row. Advisory locks, not row locks: the bundle
-- has no UPDATE right on the application's tables and must never block its writers.
-- Taken in key order so two batches that share matches cannot deadlock.
SELECT count(pg_advisory_xact_lock(lock_key))
FROM (
    SELECT DISTINCT hashtextextended('matchstats.points:' || match_id, 0) AS lock_key
    FROM unnest(%(match_ids)s::bigint[]) AS requested (match_id)
    WHERE match_id IS NOT NULL
    ORDER BY lock_key
) AS keys
