-- The application completing matches: a final score and score_version + 1, as it does
-- before it sends the points messages.
UPDATE matches
SET status        = 'completed',
    home_score    = (hashint8(id) & 2147483647) %% 5,
    away_score    = (hashint8(-id) & 2147483647) %% 4,
    score_version = score_version + 1,
    completed_at  = now()
WHERE id = ANY (%(match_ids)s::bigint[])
