-- One row per job run (a points message, a refresh request), like the original
-- worker's completed/failed job lists. Trimmed to the last 100 completed and 50
-- failed per job type after each write (the trigger of 0007_job_history_retention.sql).
CREATE TABLE job_history (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_type    text        NOT NULL CHECK (job_type IN ('points', 'refresh')),
    job_id      text        NOT NULL,
    subject     text,
    status      text        NOT NULL CHECK (status IN ('completed', 'failed')),
    attempts    int         NOT NULL CHECK (attempts >= 1),
    error       text,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    duration_ms int         NOT NULL CHECK (duration_ms >= 0)
);

CREATE INDEX job_history_recent_idx ON job_history (job_type, status, id DESC);
