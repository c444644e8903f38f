-- What a job run says beyond its status, for `matchstats jobs show` and the console:
-- the message body as it was received (cut at 8 KiB), the kind of a failure (the
-- matchstats.errorKind a dead-letter copy carries, or a transient error's kind), and for
-- a refresh request what happened to it: executed (a refresh of one of its views ran),
-- covered (skipped: a refresh started after the request) or unchanged (skipped: nothing
-- changed since the last refresh), with the decision for each view it named.
ALTER TABLE job_history
    ADD COLUMN body          text,
    ADD COLUMN error_kind    text,
    ADD COLUMN outcome       text CHECK (outcome IN ('executed', 'covered', 'unchanged')),
    ADD COLUMN view_outcomes jsonb;

-- `matchstats jobs show <message id>` and the console's job detail look runs up by it.
CREATE INDEX job_history_job_id_idx ON job_history (job_id);
