-- pg_prodguard: the last step of CREATE EXTENSION. It fails unless the library was
-- preloaded: a guard that is only half loaded must not look installed.
SELECT prodguard._require_preload();
COMMENT ON FUNCTION prodguard._require_preload() IS 'Internal: makes CREATE EXTENSION fail unless pg_prodguard is in shared_preload_libraries.';
COMMENT ON FUNCTION prodguard.status() IS 'What this session''s guards would do: environment, preload, each guard on or off, the override in force.';

-- The history (and the approved changes) kept when the extension was last dropped
-- (records/history.rs): put back
-- with its ids, in dependency order, then the copies are dropped. Columns are matched by
-- name, so a history kept by an older version comes back too. The re-attachment itself
-- is recorded in the audit log.
DO $reattach$
DECLARE
    t     text;
    cols  text;
    n     bigint;
    seq   text;
    done  text[] := '{}';
BEGIN
    IF pg_catalog.to_regnamespace('prodguard_history') IS NULL THEN
        RETURN;
    END IF;
    -- Only what a superuser kept is put back: a schema or table made by someone else
    -- (with a rule or trigger that edits rows, or forged rows) is refused, not trusted.
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
             WHERE n.nspname = 'prodguard_history')
       OR EXISTS (SELECT FROM pg_catalog.pg_class c JOIN pg_catalog.pg_roles r ON r.oid = c.relowner
                   WHERE c.relnamespace = 'prodguard_history'::regnamespace
                     AND (NOT r.rolsuper OR c.relhasrules OR c.relhastriggers OR c.relrowsecurity))
       OR EXISTS (SELECT FROM pg_catalog.pg_proc WHERE pronamespace = 'prodguard_history'::regnamespace) THEN
        RAISE EXCEPTION 'schema "prodguard_history" cannot be trusted as pg_prodguard''s kept history'
            USING DETAIL = 'It, or something in it, is owned by a role that is not a superuser, or carries rules, triggers, policies or functions.',
                  HINT = 'Inspect it; rename it out of the way to install without the kept history, or fix its ownership.';
    END IF;
    FOREACH t IN ARRAY ARRAY['audit_log', 'backup_table', 'backup_row', 'denial_log', 'alerts', 'change_request'] LOOP
        CONTINUE WHEN pg_catalog.to_regclass(pg_catalog.format('prodguard_history.%I', t)) IS NULL;
        SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY a.attnum)
          INTO cols
          FROM pg_catalog.pg_attribute a
          JOIN pg_catalog.pg_attribute k
            ON k.attrelid = pg_catalog.format('prodguard_history.%I', t)::regclass
           AND k.attname = a.attname AND k.attnum > 0 AND NOT k.attisdropped
         WHERE a.attrelid = pg_catalog.format('prodguard.%I', t)::regclass
           AND a.attnum > 0 AND NOT a.attisdropped;
        EXECUTE pg_catalog.format(
            'INSERT INTO prodguard.%1$I (%2$s) OVERRIDING SYSTEM VALUE SELECT %2$s FROM prodguard_history.%1$I ORDER BY 1 ON CONFLICT DO NOTHING',
            t, cols);
        GET DIAGNOSTICS n = ROW_COUNT;
        seq := (SELECT pg_catalog.pg_get_serial_sequence(pg_catalog.format('prodguard.%I', t), 'id')
                  FROM pg_catalog.pg_attribute
                 WHERE attrelid = pg_catalog.format('prodguard.%I', t)::regclass
                   AND attname = 'id' AND attidentity <> '');
        IF seq IS NOT NULL AND n > 0 THEN
            EXECUTE pg_catalog.format(
                'SELECT pg_catalog.setval(%L, (SELECT pg_catalog.max(id) FROM prodguard.%I))', seq, t);
        END IF;
        EXECUTE pg_catalog.format('DROP TABLE prodguard_history.%I', t);
        done := done || pg_catalog.format('%s %s', n, t);
    END LOOP;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_class
                    WHERE relnamespace = 'prodguard_history'::regnamespace) THEN
        DROP SCHEMA prodguard_history;
    END IF;
    INSERT INTO prodguard.audit_log (action, db_user, environment, object, statement)
    VALUES ('CREATE EXTENSION', current_user,
            coalesce(pg_catalog.current_setting('prodguard.environment', true), 'development'),
            'extension "pg_prodguard"',
            'history kept at the last DROP re-attached: ' || pg_catalog.array_to_string(done, ', '));
END
$reattach$;
