-- The most recent job runs, newest first, optionally of one type and/or one status,
-- whose subject contains some text (e.g. "match 42"), finished within a time range; each
-- with how many runs of the same job came after it, whether or not the filters show them
-- (a failed run whose message was retried and succeeded was retried, not waiting).
WITH page AS (
    SELECT id, job_type, job_id, subject, status, attempts, error, error_kind, body, outcome,
           view_outcomes, started_at, finished_at, duration_ms
    FROM job_history
    WHERE (%(job_type)s::text IS NULL OR job_type = %(job_type)s::text)
      AND (%(status)s::text IS NULL OR status = %(status)s::text)
      AND (%(subject)s::text IS NULL
           OR subject ILIKE '%%' || replace(replace(replace(%(subject)s::text, '\', '\\'),
                                                    '%%', '\%%'), '_', '\_') || '%%')
      AND (%(since)s::timestamptz IS NULL OR finished_at >= %(since)s::timestamptz)
      AND (%(until)s::timestamptz IS NULL OR finished_at < %(until)s::timestamptz)
    ORDER BY id DESC
    LIMIT %(limit)s
)
SELECT page.*,
       (SELECT count(*)
        FROM job_history AS later
        WHERE later.job_id = page.job_id
          AND later.job_type = page.job_type
          AND later.id > page.id) AS later_runs
FROM page
ORDER BY id DESC
