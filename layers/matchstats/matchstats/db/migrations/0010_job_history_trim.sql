-- The retention trim of 0007_job_history_retention.sql, rewritten so that it reaches only
-- the rows it deletes and never makes a concurrent batch wait (issue 12, point 5).
--
-- 0007 read the newest keep + written + 10 runs of job_history_recent_idx. The rows past
-- `keep` are the ones every earlier trim deleted, so in the steady state the index scan,
-- looking for its 10 slack rows, walked every dead entry down to the end of the range on
-- every batch, and its cost grew between autovacuum runs. Two concurrent trims also chose
-- the same rows, so the second waited on the first's row locks until it committed.
--
-- Now, for each (job type, status) a statement wrote n runs of:
-- - it reads the newest keep + n entries of the index and no more. Deleted runs are
--   always older than the kept ones, so the scan stops before reaching any of them;
-- - in the steady state (at least keep runs before the statement) it deletes exactly n:
--   the oldest runs of that window whose row lock it gets, SKIP LOCKED, so a concurrent
--   trim that is deleting a run makes this one take the next instead of waiting. Each
--   trim removes as many runs as it wrote, so the kept count stays exact however many
--   batches commit at once, although none of them sees the others' new runs;
-- - below the steady state (the first keep runs of a kind) it cannot know what a
--   concurrent writer adds, so it takes a transaction-scoped advisory lock for the
--   (job type, status), counts again with a snapshot that sees the previous holder's
--   commit, and deletes what lies past `keep`. Only those first runs ever wait.
-- The plans are index-driven whatever the statistics say. The statistics count the live
-- runs only (150 a job type) while the table and its indexes also hold the dead ones
-- until a vacuum, so the planner would happily read every entry of a kind (a sequential
-- or bitmap scan, then a sort), or walk the primary key back through other kinds' dead
-- runs: the very scans this migration removes. So the function allows no sequential or
-- bitmap scan and no sort, and its window asks for `id DESC NULLS LAST`, an order that
-- only job_history_trim_idx gives (ids are never null, so it is the newest-first order;
-- the primary key and job_history_recent_idx give `id DESC NULLS FIRST`). That ordered
-- index scan is then the one plan left that needs no disabled node.
CREATE INDEX job_history_trim_idx ON job_history (job_type, status, id DESC NULLS LAST);

CREATE OR REPLACE FUNCTION trim_job_history() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
AS $$
DECLARE
    w       record;
    newest  bigint[];
    surplus int;
BEGIN
    FOR w IN
        SELECT i.job_type, i.status, count(*)::int AS written,
               CASE i.status WHEN 'completed' THEN 100 ELSE 50 END AS keep
        FROM inserted AS i
        GROUP BY i.job_type, i.status
        ORDER BY i.job_type, i.status
    LOOP
        newest := ARRAY(
            SELECT r.id FROM job_history AS r
            WHERE r.job_type = w.job_type AND r.status = w.status
            ORDER BY r.id DESC NULLS LAST
            LIMIT w.keep + w.written
        );
        IF cardinality(newest) = w.keep + w.written THEN
            surplus := w.written;
        ELSE
            PERFORM pg_advisory_xact_lock(
                hashtextextended('matchstats.job_history:' || w.job_type || ':' || w.status, 0));
            newest := ARRAY(
                SELECT r.id FROM job_history AS r
                WHERE r.job_type = w.job_type AND r.status = w.status
                ORDER BY r.id DESC
                LIMIT w.keep + w.written
            );
            surplus := greatest(0, cardinality(newest) - w.keep);
        END IF;

        IF surplus > 0 THEN
            -- By primary key: one probe per id of the window.
            DELETE FROM job_history AS h
            WHERE h.id IN (
                SELECT r.id FROM job_history AS r
                WHERE r.id = ANY (newest)
                ORDER BY r.id
                LIMIT surplus
                FOR UPDATE SKIP LOCKED
            );
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;

-- Once: whatever the old trim left past the kept counts (two concurrent trims could both
-- leave a run), so that every kind starts from the steady state the trim keeps.
DELETE FROM job_history AS h
USING (
    SELECT r.id,
           row_number() OVER (PARTITION BY r.job_type, r.status ORDER BY r.id DESC) AS position,
           CASE r.status WHEN 'completed' THEN 100 ELSE 50 END AS keep
    FROM job_history AS r
) AS ranked
WHERE h.id = ranked.id AND ranked.position > ranked.keep;
