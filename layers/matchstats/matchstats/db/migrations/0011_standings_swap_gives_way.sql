-- A mode switch never makes readers queue. Its swap (drop the old objects, rename the new,
-- recreate competition_table) needs ACCESS EXCLUSIVE locks. Asked for behind a long read
-- of competition_table, such a lock request waits, and every later reader queues behind
-- it until the long read ends: pages timed out for as long as a report ran. Now the swap
-- asks for its locks for at most 50 ms a try; when it cannot have them, it gives way (the
-- try is rolled back, the rebuilt objects kept), pauses, and tries again, for up to the
-- caller's lock_timeout in all (30 s when the operator migrates; 0 waits for ever).
-- So a reader waits at most one try plus the swap itself, a few milliseconds.

-- The swap of matchstats_set_standings_mode (0009), unchanged: `name`__next replaces
-- each object, competition_table is recreated from its own definition, and the SELECT
-- grants on the three objects carry over.
CREATE FUNCTION matchstats_swap_standings(target text) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    table_definition text := pg_get_viewdef('competition_table'::regclass);
    grants text[];
    object record;
    statement text;
BEGIN
    SELECT coalesce(array_agg(format('GRANT SELECT ON %I TO %s', c.relname,
               CASE a.grantee WHEN 0 THEN 'PUBLIC'
                   ELSE quote_ident(pg_get_userbyid(a.grantee)) END)), '{}')
    INTO grants
    FROM pg_class AS c
    CROSS JOIN LATERAL aclexplode(c.relacl) AS a
    WHERE c.oid IN ('competition_table'::regclass, 'competition_standings'::regclass,
                    'competitor_stats'::regclass)
      AND a.privilege_type = 'SELECT' AND a.grantee <> c.relowner;

    DROP VIEW competition_table;
    FOR object IN
        SELECT c.relname, c.relkind FROM pg_class AS c
        WHERE c.oid IN ('competition_standings'::regclass, 'competitor_stats'::regclass)
    LOOP
        EXECUTE format('DROP %s %I',
                       CASE object.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END,
                       object.relname);
        EXECUTE format('ALTER %s %I RENAME TO %I',
                       CASE target WHEN 'materialized-view' THEN 'MATERIALIZED VIEW'
                           ELSE 'TABLE' END,
                       object.relname || '__next', object.relname);
        EXECUTE format('ALTER INDEX %I RENAME TO %I',
                       object.relname || '__next_key', object.relname || '_key');
    END LOOP;
    EXECUTE 'CREATE VIEW competition_table AS ' || table_definition;
    FOREACH statement IN ARRAY grants LOOP
        EXECUTE statement;
    END LOOP;
END
$$;

-- matchstats_swap_standings, in tries of at most `try_timeout` waiting for locks.
CREATE FUNCTION matchstats_swap_standings_giving_way(
    target text, try_timeout text DEFAULT '50ms', pause double precision DEFAULT 0.05
) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    caller_timeout text := current_setting('lock_timeout');
    budget interval := current_setting('lock_timeout')::interval;
    deadline timestamptz := clock_timestamp() + budget;
BEGIN
    LOOP
        BEGIN
            PERFORM set_config('lock_timeout', try_timeout, true);
            PERFORM matchstats_swap_standings(target);
            PERFORM set_config('lock_timeout', caller_timeout, true);
            RETURN;
        EXCEPTION WHEN lock_not_available THEN
            -- The try is undone, its locks released and lock_timeout the caller's again.
            IF budget > interval '0' AND clock_timestamp() >= deadline THEN
                RAISE;
            END IF;
        END;
        PERFORM pg_sleep(pause);
    END LOOP;
END
$$;

-- As in 0009, with the swap giving way to readers.
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
