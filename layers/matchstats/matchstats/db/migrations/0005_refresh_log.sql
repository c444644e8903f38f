-- Where each materialized view stands: when its last refresh started (database clock)
-- and which change_seq that refresh was sure to include.
CREATE TABLE view_refresh_state (
    view_name        text        PRIMARY KEY
        CHECK (view_name IN ('competition_standings', 'competitor_stats')),
    last_started_at  timestamptz,
    last_finished_at timestamptz,
    last_change_seq  bigint
);
INSERT INTO view_refresh_state (view_name)
VALUES ('competition_standings'), ('competitor_stats');

-- Every refresh that ran: what asked for it and how long it took.
CREATE TABLE refresh_log (
    id                bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    view_name         text        NOT NULL,
    reasons           text[]      NOT NULL,
    requests_covered  int         NOT NULL,
    forced            boolean     NOT NULL,
    concurrent        boolean     NOT NULL,  -- false only for the first fill
    change_seq        bigint      NOT NULL,
    oldest_request_at timestamptz,
    started_at        timestamptz NOT NULL,
    finished_at       timestamptz NOT NULL,
    duration_ms       int         NOT NULL
);

CREATE INDEX refresh_log_view_started_idx ON refresh_log (view_name, started_at DESC);
