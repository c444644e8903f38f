-- Keeps the last 100 completed and 50 failed runs of each job type.
DELETE FROM job_history
WHERE id IN (
    SELECT id
    FROM (
        SELECT id, status,
               row_number() OVER (PARTITION BY job_type, status ORDER BY id DESC) AS age
        FROM job_history
    ) AS ranked
    WHERE age > CASE status WHEN 'completed' THEN 100 ELSE 50 END
)
