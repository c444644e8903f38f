-- Every run of one job, oldest first, each with how many runs of the job came after it:
-- looked up by the message id it was run for (each delivery of a retried message is a
-- run of its own), or by the history row id of any of its runs.
WITH by_row AS (
    SELECT job_type, job_id
    FROM job_history
    WHERE %(row_id)s::bigint IS NOT NULL AND id = %(row_id)s::bigint
)
SELECT id, job_type, job_id, subject, status, attempts, error, error_kind, body, outcome,
       view_outcomes, started_at, finished_at, duration_ms,
       count(*) OVER (PARTITION BY job_type, job_id ORDER BY id DESC
                      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS later_runs
FROM job_history
WHERE job_id = %(key)s::text
   OR (job_type, job_id) IN (SELECT job_type, job_id FROM by_row)
ORDER BY id
