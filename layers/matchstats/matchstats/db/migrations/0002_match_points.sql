-- What the bundle computes: two rows per completed match, one per side.
CREATE TABLE match_points (
    match_id       bigint      NOT NULL REFERENCES matches (id) ON DELETE CASCADE,
    competitor_id  bigint      NOT NULL,
    competition_id bigint      NOT NULL,
    result         char(1)     NOT NULL CHECK (result IN ('W', 'D', 'L')),
    points         int         NOT NULL,
    score_for      int         NOT NULL,
    score_against  int         NOT NULL,
    score_version  int         NOT NULL,
    calculated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (match_id, competitor_id)
);

-- The views aggregate by these keys.
CREATE INDEX match_points_competition_competitor_idx ON match_points (competition_id, competitor_id);
CREATE INDEX match_points_competitor_idx ON match_points (competitor_id);

-- One row that every points transaction which changed match_points bumps. A refresh
-- reads change_seq before it starts, so "nothing changed since the last refresh" is
-- an exact comparison rather than a race between two clocks.
CREATE TABLE stats_state (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    change_seq bigint      NOT NULL DEFAULT 0,
    changed_at timestamptz
);
INSERT INTO stats_state DEFAULT VALUES;
