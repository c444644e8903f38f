-- Back to the history alone between P1's passes: the measured matches' points, the job
-- history and the change logs go; the match_points rows of the history stay.
WITH runs AS (
    DELETE FROM job_history
),
standings_log AS (
    DELETE FROM changed_standings
),
competitors_log AS (
    DELETE FROM changed_competitors
)
DELETE FROM match_points WHERE match_id > %(history_matches)s
