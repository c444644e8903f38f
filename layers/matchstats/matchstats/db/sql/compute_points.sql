-- Brings match_points of a batch of matches in line with the matches' current rows,
-- records one job_history row per message, and returns each message's outcome.
-- One statement: the whole batch is one round trip and one snapshot.
WITH request AS (
    SELECT *
    FROM unnest(
        %(job_ids)s::text[], %(match_ids)s::bigint[], %(subjects)s::text[],
        %(attempts)s::int[], %(errors)s::text[], %(bodies)s::text[]
    ) AS r (job_id, match_id, subject, attempts, parse_error, body)
),
current_match AS (
    SELECT m.id AS match_id, m.competition_id, m.home_id, m.away_id,
           m.home_score, m.away_score, m.status, m.score_version,
           c.points_win, c.points_draw, c.points_loss,
           m.status = 'completed' AND (m.home_score IS NULL OR m.away_score IS NULL)
               AS missing_scores
    FROM matches AS m
    JOIN competitions AS c ON c.id = m.competition_id
    WHERE m.id = ANY (%(match_ids)s::bigint[])
),
side AS (
    SELECT cm.match_id, s.competitor_id, cm.competition_id,
           s.score_for, s.score_against, cm.score_version,
           CASE WHEN s.score_for > s.score_against THEN 'W'
                WHEN s.score_for = s.score_against THEN 'D'
                ELSE 'L' END AS result,
           CASE WHEN s.score_for > s.score_against THEN cm.points_win
                WHEN s.score_for = s.score_against THEN cm.points_draw
                ELSE cm.points_loss END AS points
    FROM current_match AS cm
    CROSS JOIN LATERAL (
        VALUES (cm.home_id, cm.home_score, cm.away_score),
               (cm.away_id, cm.away_score, cm.home_score)
    ) AS s (competitor_id, score_for, score_against)
    WHERE cm.status = 'completed' AND NOT cm.missing_scores
),
-- The batch's rows as they were before this statement (a CTE sees the statement's
-- snapshot): the keys a corrected or moved match leaves.
before AS (
    SELECT mp.match_id, mp.competition_id, mp.competitor_id
    FROM match_points AS mp
    WHERE mp.match_id = ANY (%(match_ids)s::bigint[])
),
-- Rows the current match row no longer implies: a void, a match back to live,
-- a corrected line-up. A completed match without scores is bad data and is left
-- as it was, never guessed. Reached by the primary key's match_id prefix only, never a
-- scan of match_points, whatever its size.
removed AS (
    DELETE FROM match_points AS mp
    WHERE mp.match_id = ANY (%(match_ids)s::bigint[])
      AND EXISTS (
          SELECT 1 FROM current_match AS cm
          WHERE cm.match_id = mp.match_id AND NOT cm.missing_scores
      )
      AND NOT EXISTS (
          SELECT 1 FROM side AS s
          WHERE s.match_id = mp.match_id AND s.competitor_id = mp.competitor_id
      )
    RETURNING mp.match_id, mp.competition_id, mp.competitor_id
),
written AS (
    INSERT INTO match_points AS mp (
        match_id, competitor_id, competition_id, result, points,
        score_for, score_against, score_version, calculated_at
    )
    SELECT match_id, competitor_id, competition_id, result, points,
           score_for, score_against, score_version, clock_timestamp()
    FROM side
    ORDER BY match_id, competitor_id
    ON CONFLICT (match_id, competitor_id) DO UPDATE
        SET competition_id = excluded.competition_id,
            result         = excluded.result,
            points         = excluded.points,
            score_for      = excluded.score_for,
            score_against  = excluded.score_against,
            score_version  = excluded.score_version,
            calculated_at  = excluded.calculated_at
        -- A redelivery writes nothing, so it neither bloats the table nor asks for a refresh.
        WHERE (mp.competition_id, mp.result, mp.points, mp.score_for, mp.score_against,
               mp.score_version)
              IS DISTINCT FROM
              (excluded.competition_id, excluded.result, excluded.points, excluded.score_for,
               excluded.score_against, excluded.score_version)
    RETURNING mp.match_id, mp.competition_id, mp.competitor_id
),
changed AS (
    SELECT match_id FROM removed
    UNION
    SELECT match_id FROM written
),
-- Every standings key whose totals this statement may have changed, old and new.
touched AS (
    SELECT competition_id, competitor_id FROM removed
    UNION
    SELECT competition_id, competitor_id FROM written
    UNION
    SELECT b.competition_id, b.competitor_id FROM before AS b JOIN written AS w USING (match_id)
),
-- Appended to each view's change log (migration 0008); no row is shared, none updated.
logged_standings AS (
    INSERT INTO changed_standings (competition_id, competitor_id)
    SELECT competition_id, competitor_id FROM touched
),
logged_competitors AS (
    INSERT INTO changed_competitors (competitor_id)
    SELECT DISTINCT competitor_id FROM touched
),
outcome AS (
    SELECT r.job_id, r.match_id, r.subject, r.attempts, r.body, cm.status, cm.score_version,
           CASE WHEN r.parse_error IS NOT NULL THEN 'invalid_message'
                WHEN cm.match_id IS NULL THEN 'match_not_found'
                WHEN cm.missing_scores THEN 'missing_scores'
                ELSE 'ok' END AS outcome,
           CASE WHEN r.parse_error IS NOT NULL THEN r.parse_error
                WHEN cm.match_id IS NULL THEN format('match %%s does not exist', r.match_id)
                WHEN cm.missing_scores
                    THEN format('match %%s is completed without both scores (home %%s, away %%s)',
                                r.match_id, coalesce(cm.home_score::text, 'null'),
                                coalesce(cm.away_score::text, 'null'))
                END AS error,
           EXISTS (SELECT 1 FROM changed AS ch WHERE ch.match_id = r.match_id) AS changed
    FROM request AS r
    LEFT JOIN current_match AS cm ON cm.match_id = r.match_id
),
history AS (
    INSERT INTO job_history (
        job_type, job_id, subject, status, attempts, error, error_kind, body,
        started_at, finished_at, duration_ms
    )
    SELECT 'points', job_id, subject,
           CASE WHEN outcome = 'ok' THEN 'completed' ELSE 'failed' END,
           attempts, error, nullif(outcome, 'ok'), left(body, 8192),
           %(started_at)s, clock_timestamp(),
           greatest(0, (extract(epoch FROM clock_timestamp() - %(started_at)s) * 1000)::int)
    FROM outcome
)
SELECT job_id, match_id, outcome, error, status, score_version, changed,
       (SELECT count(*) FROM touched)::int AS keys_changed
FROM outcome
