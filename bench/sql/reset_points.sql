-- Back to no points at all, between P1's passes.
TRUNCATE match_points, job_history
