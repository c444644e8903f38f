-- Created WITH DATA (empty) so that REFRESH ... CONCURRENTLY works from the first run.
CREATE MATERIALIZED VIEW competition_standings AS
SELECT competition_id,
       competitor_id,
       count(*)::int                                AS played,
       count(*) FILTER (WHERE result = 'W')::int    AS won,
       count(*) FILTER (WHERE result = 'D')::int    AS drawn,
       count(*) FILTER (WHERE result = 'L')::int    AS lost,
       sum(score_for)::int                          AS score_for,
       sum(score_against)::int                      AS score_against,
       (sum(score_for) - sum(score_against))::int   AS score_diff,
       sum(points)::int                             AS points
FROM match_points
GROUP BY competition_id, competitor_id
WITH DATA;

-- REFRESH ... CONCURRENTLY needs a unique index on plain columns.
CREATE UNIQUE INDEX competition_standings_key ON competition_standings (competition_id, competitor_id);

CREATE MATERIALIZED VIEW competitor_stats AS
SELECT competitor_id,
       count(*)::int                                AS played,
       count(*) FILTER (WHERE result = 'W')::int    AS won,
       count(*) FILTER (WHERE result = 'D')::int    AS drawn,
       count(*) FILTER (WHERE result = 'L')::int    AS lost,
       sum(score_for)::int                          AS score_for,
       sum(score_against)::int                      AS score_against,
       sum(points)::int                             AS points,
       count(DISTINCT competition_id)::int          AS competitions
FROM match_points
GROUP BY competitor_id
WITH DATA;

CREATE UNIQUE INDEX competitor_stats_key ON competitor_stats (competitor_id);

-- Rank is computed at read time so that a refresh rewrites only the rows whose
-- totals changed, not every row below a team that moved up.
CREATE VIEW competition_table AS
SELECT s.competition_id,
       s.competitor_id,
       s.played,
       s.won,
       s.drawn,
       s.lost,
       s.score_for,
       s.score_against,
       s.score_diff,
       s.points,
       rank() OVER (
           PARTITION BY s.competition_id
           ORDER BY s.points DESC, s.score_diff DESC, s.score_for DESC
       ) AS rank
FROM competition_standings s
-- Ties share a rank; within a tie the table lists by competitor_id.
ORDER BY s.competition_id, rank, s.competitor_id;
