-- Records job runs that failed before or after the batch transaction (the database
-- statement timed out, the refresh message could not be sent).
INSERT INTO job_history (
    job_type, job_id, subject, status, attempts, error, started_at, finished_at, duration_ms
)
SELECT %(job_type)s, r.job_id, r.subject, r.status, r.attempts, r.error, %(started_at)s,
       clock_timestamp(),
       greatest(0, (extract(epoch FROM clock_timestamp() - %(started_at)s) * 1000)::int)
FROM unnest(%(job_ids)s::text[], %(subjects)s::text[], %(statuses)s::text[],
            %(attempts)s::int[], %(errors)s::text[])
     AS r (job_id, subject, status, attempts, error)
