-- Two ways to maintain competition_standings and competitor_stats (SPEC section 2), with
-- one home for what their rows are: the two *_source views below, the aggregate of
-- match_points by key. In materialized-view mode the objects are materialized views over
-- them; in incremental mode, tables that RefreshViewsFunction keeps equal to them key by
-- key (db/sql/incremental_*.sql). matchstats_set_standings_mode() switches between the two.
CREATE VIEW standings_source AS
SELECT competition_id,
       competitor_id,
       count(*)::int                                AS played,
       count(*) FILTER (WHERE result = 'W')::int    AS won,
       count(*) FILTER (WHERE result = 'D')::int    AS drawn,
       count(*) FILTER (WHERE result = 'L')::int    AS lost,
       sum(score_for)::int                          AS score_for,
       sum(score_against)::int                      AS score_against,
       (sum(score_for) - sum(score_against))::int   AS score_diff,
       sum(points)::int                             AS points
FROM match_points
GROUP BY competition_id, competitor_id;

CREATE VIEW competitor_stats_source AS
SELECT competitor_id,
       count(*)::int                                AS played,
       count(*) FILTER (WHERE result = 'W')::int    AS won,
       count(*) FILTER (WHERE result = 'D')::int    AS drawn,
       count(*) FILTER (WHERE result = 'L')::int    AS lost,
       sum(score_for)::int                          AS score_for,
       sum(score_against)::int                      AS score_against,
       sum(points)::int                             AS points,
       count(DISTINCT competition_id)::int          AS competitions
FROM match_points
GROUP BY competitor_id;

-- Builds `name`__next as `target` from `source`, with a unique key on `key_columns`.
CREATE FUNCTION matchstats_build_standings(
    name text, source text, key_columns text, target text
) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    next text := name || '__next';
BEGIN
    IF target = 'materialized-view' THEN
        EXECUTE format('CREATE MATERIALIZED VIEW %I AS SELECT * FROM %I WITH DATA', next, source);
        EXECUTE format('CREATE UNIQUE INDEX %I ON %I (%s)', next || '_key', next, key_columns);
    ELSE
        EXECUTE format('CREATE TABLE %I (LIKE %I)', next, source);
        EXECUTE format('INSERT INTO %I SELECT * FROM %I', next, source);
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I PRIMARY KEY (%s)',
                       next, next || '_key', key_columns);
    END IF;
END
$$;

-- Switches the standings to `target` ('materialized-view' or 'incremental'), rebuilt from
-- match_points, in one transaction; `force` rebuilds even in the current mode.
--
-- Loses no row: it waits for running refreshes (the views' advisory locks), empties both
-- change logs, then builds from a later snapshot, which includes everything logged. Keeps
-- readers: they read the old objects while the new ones are built beside them, and wait
-- only for the final drop and rename; competition_table is recreated from its own
-- definition, and SELECT grants on the three objects carry over.
CREATE FUNCTION matchstats_set_standings_mode(target text, force boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    current_mode text;
    table_definition text;
    grants text[];
    started timestamptz := clock_timestamp();
    object record;
    statement text;
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

    table_definition := pg_get_viewdef('competition_table'::regclass);
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

    UPDATE standings_mode SET mode = target, switched_at = clock_timestamp();
    -- The rebuild covers every request made before it started.
    UPDATE view_refresh_state
    SET last_started_at = started, last_finished_at = clock_timestamp();
    RETURN target;
END
$$;

-- The materialized views of 0003 become views over the sources, so that each aggregate is
-- written once; the same rebuild a mode switch does (readers keep the old ones meanwhile).
SELECT matchstats_set_standings_mode('materialized-view', force => true);
