-- Records job runs written outside the points transaction: refresh requests, and runs
-- that failed before or after a batch transaction (the database statement timed out,
-- the refresh message could not be sent). Bodies are kept up to 8 KiB.
INSERT INTO job_history (
    job_type, job_id, subject, status, attempts, error, error_kind, body, outcome,
    view_outcomes, started_at, finished_at, duration_ms
)
SELECT %(job_type)s, r.job_id, r.subject, r.status, r.attempts, r.error, r.error_kind,
       left(r.body, 8192), r.outcome, r.view_outcomes::jsonb, %(started_at)s,
       clock_timestamp(),
       greatest(0, (extract(epoch FROM clock_timestamp() - %(started_at)s) * 1000)::int)
FROM unnest(%(job_ids)s::text[], %(subjects)s::text[], %(statuses)s::text[],
            %(attempts)s::int[], %(errors)s::text[], %(error_kinds)s::text[],
            %(bodies)s::text[], %(outcomes)s::text[], %(view_outcomes)s::text[])
     AS r (job_id, subject, status, attempts, error, error_kind, body, outcome, view_outcomes)
