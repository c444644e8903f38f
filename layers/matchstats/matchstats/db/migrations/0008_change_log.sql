-- A change log instead of a hot row. Until now every points transaction that changed
-- match_points bumped the one row of stats_state, so concurrent batches queued on its row
-- lock. Now each points transaction appends the standings keys it touched, old and new
-- (a correction, a void, a match moved to another competition), one row per key and view,
-- and nothing is ever updated by the writers:
--   changed_standings   (competition_id, competitor_id): keys of competition_standings
--   changed_competitors (competitor_id):                keys of competitor_stats
-- A refresh of a view consumes its log under the view's lock: it deletes the rows its
-- snapshot sees, then refreshes from a snapshot at least as new, so a key logged by a
-- transaction that commits meanwhile stays logged for the next refresh and none is missed.
-- No index: a log is read whole and emptied by every refresh of its view.
CREATE TABLE changed_standings (
    competition_id bigint      NOT NULL,
    competitor_id  bigint      NOT NULL,
    logged_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE changed_competitors (
    competitor_id bigint      NOT NULL,
    logged_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Changes the old counter says are waiting: their keys are not known, so every key is.
INSERT INTO changed_standings (competition_id, competitor_id)
SELECT DISTINCT mp.competition_id, mp.competitor_id
FROM match_points AS mp
WHERE EXISTS (
    SELECT 1 FROM view_refresh_state AS v CROSS JOIN stats_state AS s
    WHERE v.view_name = 'competition_standings'
      AND coalesce(v.last_change_seq, 0) <> s.change_seq
);

INSERT INTO changed_competitors (competitor_id)
SELECT DISTINCT mp.competitor_id
FROM match_points AS mp
WHERE EXISTS (
    SELECT 1 FROM view_refresh_state AS v CROSS JOIN stats_state AS s
    WHERE v.view_name = 'competitor_stats'
      AND coalesce(v.last_change_seq, 0) <> s.change_seq
);

DROP TABLE stats_state;
ALTER TABLE view_refresh_state DROP COLUMN last_change_seq;
-- What a refresh consumed, instead of the counter value it included.
ALTER TABLE refresh_log DROP COLUMN change_seq;
ALTER TABLE refresh_log ADD COLUMN keys_changed int;

-- How competition_standings and competitor_stats are maintained (SPEC section 2), switched
-- both ways by `matchstats migrate --standings materialized-view|incremental`.
CREATE TABLE standings_mode (
    singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    mode        text        NOT NULL DEFAULT 'materialized-view'
        CHECK (mode IN ('materialized-view', 'incremental')),
    switched_at timestamptz
);
INSERT INTO standings_mode DEFAULT VALUES;
