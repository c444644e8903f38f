-- A mode switch waits for everything it will write before its swap, never after. The
-- swap holds ACCESS EXCLUSIVE locks on competition_table and both standings objects until
-- the switch commits; 0011 updated view_refresh_state after it, so a session holding one
-- of those rows (a refresh's bookkeeping is written under the view's lock, which the
-- switch holds, but anything else) made the switch wait there with the readers' tables
-- locked, and readers timed out. Now the rows are locked with the mode's row, before the
-- rebuild. Otherwise as in 0011.
CREATE OR REPLACE FUNCTION matchstats_set_standings_mode(target text, force boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    current_mode text;
    started timestamptz := clock_timestamp();
BEGIN
    IF target NOT IN ('materialized-view', 'incremental') THEN
        RAISE EXCEPTION 'unknown standings mode %, expected materialized-view or incremental',
            target;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('matchstats.refresh:' || view_name, 0))
    FROM unnest(ARRAY['competition_standings', 'competitor_stats']) AS view_name
    ORDER BY view_name;
    SELECT mode INTO current_mode FROM standings_mode FOR UPDATE;
    IF current_mode = target AND NOT force THEN
        RETURN current_mode;
    END IF;
    PERFORM 1 FROM view_refresh_state ORDER BY view_name FOR UPDATE;

    DELETE FROM changed_standings;
    DELETE FROM changed_competitors;
    PERFORM matchstats_build_standings(
        'competition_standings', 'standings_source', 'competition_id, competitor_id', target);
    PERFORM matchstats_build_standings(
        'competitor_stats', 'competitor_stats_source', 'competitor_id', target);
    PERFORM matchstats_swap_standings_giving_way(target);

    UPDATE standings_mode SET mode = target, switched_at = clock_timestamp();
    -- The rebuild covers every request made before it started.
    UPDATE view_refresh_state
    SET last_started_at = started, last_finished_at = clock_timestamp();
    RETURN target;
END
$$;
