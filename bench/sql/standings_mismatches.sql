-- Rows of competition_standings and competitor_stats that differ from a recomputation
-- from match_points (the *_source views of migration 0009), either way: 0 when the
-- refreshes missed nothing, in either standings mode.
SELECT (SELECT count(*) FROM (
            (TABLE competition_standings EXCEPT ALL TABLE standings_source)
            UNION ALL
            (TABLE standings_source EXCEPT ALL TABLE competition_standings)
        ) AS standings)
     + (SELECT count(*) FROM (
            (TABLE competitor_stats EXCEPT ALL TABLE competitor_stats_source)
            UNION ALL
            (TABLE competitor_stats_source EXCEPT ALL TABLE competitor_stats)
        ) AS stats) AS mismatched_rows
