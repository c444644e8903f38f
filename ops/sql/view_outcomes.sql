-- What each refresh request decided for each view it named (job_history.view_outcomes,
-- recorded by RefreshViewsFunction and `refresh --wait`), newest first.
SELECT v.key AS view_name, v.value AS outcome, j.finished_at, j.subject
FROM job_history AS j
CROSS JOIN LATERAL jsonb_each_text(j.view_outcomes) AS v
WHERE j.job_type = 'refresh' AND j.view_outcomes IS NOT NULL
ORDER BY j.id DESC, v.key
LIMIT %(limit)s
