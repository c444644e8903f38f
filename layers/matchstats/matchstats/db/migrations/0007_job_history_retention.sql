-- The original worker kept the last 100 completed and 50 failed jobs; job_history keeps
-- as many runs of each job type, whoever writes to it. This trigger is that rule's one
-- home: after each statement that inserts runs, it deletes the runs of the same type and
-- status beyond those counts.
--
-- It reaches only the rows it deletes: for each (job type, status) the statement wrote n
-- runs of, it reads the newest keep + n + slack entries of job_history_recent_idx and
-- deletes those past `keep`. It never walks the older, already deleted (dead) rows, so
-- its cost does not grow between autovacuum runs. The slack also removes runs that two
-- concurrent trims both left behind.
CREATE FUNCTION trim_job_history() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    DELETE FROM job_history AS h
    USING (
        SELECT i.job_type, i.status, count(*) AS written,
               CASE i.status WHEN 'completed' THEN 100 ELSE 50 END AS keep
        FROM inserted AS i
        GROUP BY i.job_type, i.status
    ) AS w
    CROSS JOIN LATERAL (
        SELECT r.id
        FROM job_history AS r
        WHERE r.job_type = w.job_type AND r.status = w.status
        ORDER BY r.id DESC
        OFFSET w.keep
        LIMIT w.written + 10
    ) AS beyond
    WHERE h.id = beyond.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER job_history_retention
AFTER INSERT ON job_history
REFERENCING NEW TABLE AS inserted
FOR EACH STATEMENT
EXECUTE FUNCTION trim_job_history();
