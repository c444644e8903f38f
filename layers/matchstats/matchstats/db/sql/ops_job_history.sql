-- The most recent job runs, newest first, optionally of one type and/or one status.
SELECT id, job_type, job_id, subject, status, attempts, error,
       started_at, finished_at, duration_ms
FROM job_history
WHERE (%(job_type)s::text IS NULL OR job_type = %(job_type)s::text)
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
ORDER BY id DESC
LIMIT %(limit)s
