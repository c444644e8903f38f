-- Every run of one job, oldest first: looked up by its history row id, or by the
-- message id it was run for (each delivery of a retried message is a run of its own).
SELECT id, job_type, job_id, subject, status, attempts, error, error_kind, body, outcome,
       view_outcomes, started_at, finished_at, duration_ms
FROM job_history
WHERE job_id = %(key)s::text
   OR (%(row_id)s::bigint IS NOT NULL AND id = %(row_id)s::bigint)
ORDER BY id
