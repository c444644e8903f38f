-- A small change for the next refresh to pick up: one more goal for both sides of a
-- few random matches, so that each refresh rewrites a few rows, as in production.
UPDATE match_points
SET score_for = score_for + 1, score_against = score_against + 1
WHERE match_id IN (
    SELECT 1 + (random() * (%(max_match_id)s - 1))::bigint
    FROM generate_series(1, %(matches)s)
)
