-- Bypass routes, one by one: each tries to destroy data or silence the audit in this
-- production database without an override, and each must fail. Actors: bp_owner, an
-- ordinary role that owns the table (the strongest non-superuser), and the superuser
-- postgres. A summary of every route and its outcome is at the end.
CREATE ROLE bp_owner LOGIN;
CREATE SCHEMA bp AUTHORIZATION bp_owner;
SET ROLE bp_owner;
CREATE TABLE bp.ledger (id int PRIMARY KEY, amount numeric NOT NULL);
CREATE TABLE bp.entry (id int PRIMARY KEY, ledger_id int REFERENCES bp.ledger, note text);
INSERT INTO bp.ledger SELECT g, g * 10 FROM generate_series(1, 5) g;
INSERT INTO bp.entry SELECT g, g, 'entry ' || g FROM generate_series(1, 5) g;
SELECT prodguard.protect('bp.ledger', audit => true, test_data => false, forbid_delete => true);
SELECT prodguard.protect('bp.entry', audit => true, test_data => false);
RESET ROLE;
CREATE TABLE bp_outcome (route text, sqlstate text);
-- try(route, statement): runs the statement as the current role and records the SQLSTATE
-- it failed with ('ran' if it ran), rolling back whatever it did.
CREATE FUNCTION bp_try(route text, statement text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE state text := 'ran';
BEGIN
    BEGIN
        EXECUTE statement;
        RAISE EXCEPTION USING ERRCODE = 'P0004', MESSAGE = 'undo';
    EXCEPTION WHEN OTHERS THEN
        IF SQLSTATE <> 'P0004' THEN state := SQLSTATE; END IF;
    END;
    INSERT INTO bp_outcome VALUES (route, state);
    RETURN state;
END $$;
GRANT INSERT ON bp_outcome TO PUBLIC;
SELECT count(*) AS audit_entries_before FROM prodguard.audit_log a
 WHERE a.schema_name = 'bp' \gset

-- 1. Settings, every route (as the superuser: non-superusers cannot even try).
SELECT bp_try('SET prodguard.environment', 'SET prodguard.environment = ''development''');
SELECT bp_try('set_config()', 'SELECT set_config(''prodguard.require_where'', ''off'', false)');
SELECT bp_try('SET LOCAL prodguard.audit', 'SET LOCAL prodguard.audit = off');
SELECT bp_try('ALTER DATABASE SET', 'ALTER DATABASE app SET prodguard.environment = ''development''');
SELECT bp_try('ALTER ROLE SET', 'ALTER ROLE bp_owner SET prodguard.test_data_action = ''off''');
SELECT bp_try('function SET clause', 'CREATE FUNCTION bp_f() RETURNS int LANGUAGE sql SET prodguard.max_rows_changed = 0 AS ''SELECT 1''');
ALTER SYSTEM SET prodguard.environment = 'development';
INSERT INTO bp_outcome VALUES ('ALTER SYSTEM', :'LAST_ERROR_SQLSTATE');
\set refused `PGOPTIONS='-c prodguard.environment=development' psql -X -q -d app -c 'SELECT 1' 2>&1 | grep -c 'FATAL:  SET of setting "prodguard.environment" is blocked'`
INSERT INTO bp_outcome VALUES ('PGOPTIONS', CASE WHEN :refused = 1 THEN '42501' ELSE 'ran' END);

-- 2. Silencing the audit.
-- replica mode skips ordinary triggers, not the audit (ENABLE ALWAYS): a row deleted in
-- replica mode is still audited.
BEGIN;
SET LOCAL session_replication_role = replica;
DELETE FROM bp.entry WHERE id = 5;
COMMIT;
INSERT INTO bp_outcome SELECT 'session_replication_role = replica',
       CASE WHEN EXISTS (SELECT FROM prodguard.audit_log WHERE schema_name = 'bp' AND table_name = 'entry'
                          AND action = 'DELETE' AND row_key = '{"id": 5}') THEN 'audited' ELSE 'ran' END;
INSERT INTO bp.entry VALUES (5, 5, 'entry 5');
SELECT bp_try('DISABLE TRIGGER (superuser)', 'ALTER TABLE bp.entry DISABLE TRIGGER zz_prodguard_audit');
SELECT bp_try('DISABLE TRIGGER ALL', 'ALTER TABLE bp.entry DISABLE TRIGGER ALL');
SELECT bp_try('DROP TRIGGER', 'DROP TRIGGER zz_prodguard_audit ON bp.entry');
SELECT bp_try('ALTER TRIGGER RENAME', 'ALTER TRIGGER zz_prodguard_audit ON bp.entry RENAME TO x');
SELECT bp_try('unprotect()', 'SELECT prodguard.unprotect(''bp.entry'')');
SELECT bp_try('protect() lowering options', 'SELECT prodguard.protect(''bp.entry'', audit => false)');
SELECT bp_try('ALTER EXTENSION DROP TABLE', 'ALTER EXTENSION pg_prodguard DROP TABLE prodguard.audit_log');
SELECT bp_try('ALTER EXTENSION DROP FUNCTION', 'ALTER EXTENSION pg_prodguard DROP FUNCTION prodguard.audit_trigger()');
SELECT bp_try('DROP FUNCTION (extension member)', 'DROP FUNCTION prodguard.audit_trigger() CASCADE');
SELECT bp_try('DROP EXTENSION', 'DROP EXTENSION pg_prodguard CASCADE');

-- 3. As the table's owner (SET ROLE to the owner: what a compromised application could do).
SET ROLE bp_owner;
SELECT bp_try('owner: DISABLE TRIGGER', 'ALTER TABLE bp.entry DISABLE TRIGGER USER');
SELECT bp_try('owner: DROP TRIGGER', 'DROP TRIGGER zz_prodguard_audit ON bp.entry');
SELECT bp_try('owner: TRUNCATE', 'TRUNCATE bp.entry');
SELECT bp_try('owner: DROP TABLE', 'DROP TABLE bp.entry');
SELECT bp_try('owner: DROP SCHEMA CASCADE', 'DROP SCHEMA bp CASCADE');
SELECT bp_try('owner: DROP OWNED', 'DROP OWNED BY bp_owner');
SELECT bp_try('owner: DROP COLUMN', 'ALTER TABLE bp.entry DROP COLUMN note');
SELECT bp_try('owner: DELETE without WHERE', 'DELETE FROM bp.entry');
SELECT bp_try('owner: DELETE from forbid_delete table', 'DELETE FROM bp.ledger WHERE id = 5');
SELECT bp_try('owner: unprotect()', 'SELECT prodguard.unprotect(''bp.entry'')');
SELECT bp_try('owner: writes to prodguard.audit_log', 'DELETE FROM prodguard.audit_log WHERE true');
SELECT bp_try('owner: writes to prodguard.table_protection', 'DELETE FROM prodguard.table_protection WHERE true');
SELECT bp_try('owner: writes to prodguard.denial_log', 'INSERT INTO prodguard.denial_log (id, at, database, guard) VALUES (1, now(), ''app'', ''x'')');
SELECT bp_try('owner: SET prodguard.override', 'SET LOCAL prodguard.override = ''I am the owner''; TRUNCATE bp.entry');
RESET ROLE;

-- 4. Indirect statements.
SELECT bp_try('TRUNCATE ... CASCADE through a foreign key', 'TRUNCATE bp.ledger CASCADE');
SELECT bp_try('MERGE deleting from a forbid_delete table',
    'MERGE INTO bp.ledger l USING bp.ledger s ON l.id = s.id WHEN MATCHED THEN DELETE');
SELECT bp_try('data-modifying CTE', 'WITH d AS (DELETE FROM bp.entry RETURNING 1) SELECT count(*) FROM d');
SELECT bp_try('COPY (DELETE ... RETURNING)', 'COPY (DELETE FROM bp.entry RETURNING *) TO ''/dev/null''');
SELECT bp_try('DO block', 'DO $do$ BEGIN DELETE FROM bp.entry; END $do$');
SELECT bp_try('SQL function', 'CREATE FUNCTION bp_wipe() RETURNS void LANGUAGE sql AS ''DELETE FROM bp.entry''; SELECT bp_wipe()');
SELECT bp_try('SECURITY DEFINER function (owned by the superuser)',
    'CREATE FUNCTION bp_wipe2() RETURNS void LANGUAGE sql SECURITY DEFINER AS ''TRUNCATE bp.entry''; SELECT bp_wipe2()');
SELECT bp_try('prepared statement', 'PREPARE bp_p AS DELETE FROM bp.entry; EXECUTE bp_p');
-- A PL/pgSQL plan cached while the row guard was off (development), run in production.
CREATE FUNCTION bp_cached() RETURNS void LANGUAGE plpgsql AS $$ BEGIN DELETE FROM bp.entry; END $$;
BEGIN;
SET LOCAL prodguard.override = 'bypass test: cache a plan in development';
SET LOCAL prodguard.environment = 'development';
SELECT bp_cached();
ROLLBACK;
SELECT bp_try('cached PL/pgSQL plan', 'SELECT bp_cached()');
SELECT bp_try('view over the table', 'CREATE VIEW bp_v AS SELECT * FROM bp.entry; DELETE FROM bp_v');
SELECT bp_try('rule turning INSERT into DELETE',
    'CREATE TABLE bp_r (a int); CREATE RULE bp_rule AS ON INSERT TO bp_r DO INSTEAD DELETE FROM bp.entry; INSERT INTO bp_r VALUES (1)');
CREATE ROLE bp_other;
SELECT bp_try('REASSIGN OWNED, then the new owner drops',
    'REASSIGN OWNED BY bp_owner TO bp_other; SET LOCAL ROLE bp_other; DROP TABLE bp.entry CASCADE');

-- 4b. Drops through dependencies: a column of a protected table that depends on a type,
-- a domain or a function goes with it under CASCADE; the statement is not one the
-- command guard reads, so the object-access hook judges the drop itself.
CREATE TYPE bp_status AS ENUM ('open', 'closed');
CREATE DOMAIN bp_code AS text CHECK (VALUE <> '');
CREATE FUNCTION bp_twice(int) RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT $1 * 2';
ALTER TABLE bp.entry ADD COLUMN status bp_status, ADD COLUMN code bp_code,
    ADD COLUMN twice int GENERATED ALWAYS AS (bp_twice(id)) STORED;
SELECT bp_try('DROP TYPE ... CASCADE (drops a column)', 'DROP TYPE bp_status CASCADE');
SELECT bp_try('DROP DOMAIN ... CASCADE (drops a column)', 'DROP DOMAIN bp_code CASCADE');
SELECT bp_try('DROP FUNCTION ... CASCADE (drops a generated column)', 'DROP FUNCTION bp_twice(int) CASCADE');
DROP TYPE bp_status CASCADE;
-- the same on a table that is not protected goes through
CREATE TABLE bp_plain (id int, status bp_status);
CREATE TYPE bp_other AS ENUM ('x');
ALTER TABLE bp_plain ADD COLUMN other bp_other;
DROP TYPE bp_other CASCADE;
SELECT count(*) AS plain_columns FROM pg_attribute WHERE attrelid = 'bp_plain'::regclass AND attnum > 0 AND NOT attisdropped;
-- and with an operator's override it runs (and is recorded)
BEGIN;
SET LOCAL prodguard.override = 'bypass test: retire the status column';
DROP TYPE bp_status CASCADE;
COMMIT;
SELECT action, object, override_reason FROM prodguard.audit_log
 WHERE action = 'DROP ... CASCADE' ORDER BY id DESC LIMIT 1;
SELECT attname FROM pg_attribute WHERE attrelid = 'bp.entry'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum;

-- 4c. pg_prodguard's own DDL (the triggers protect() installs) passes the command guard;
-- when it fails and the caller catches the error, no pass is left behind.
CREATE TABLE bp_later (id int);
CREATE FUNCTION bp_no_triggers() RETURNS event_trigger LANGUAGE plpgsql AS
    $$ BEGIN RAISE EXCEPTION 'no triggers today'; END $$;
CREATE EVENT TRIGGER bp_no_triggers ON ddl_command_start WHEN TAG IN ('CREATE TRIGGER')
    EXECUTE FUNCTION bp_no_triggers();
SELECT bp_try('protect() failing inside and caught, then TRUNCATE',
    'DO $do$ BEGIN PERFORM prodguard.protect(''bp_later''); EXCEPTION WHEN OTHERS THEN NULL; END $do$; TRUNCATE bp.entry');
DROP EVENT TRIGGER bp_no_triggers;

-- 5. search_path shadowing: a user's schema first in search_path does not change what
-- the extension's SECURITY DEFINER code calls (it pins search_path).
CREATE SCHEMA bp_evil;
CREATE FUNCTION bp_evil.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT 'infinity'::timestamptz $$;
CREATE FUNCTION bp_evil.texteq(text, text) RETURNS boolean LANGUAGE sql AS $$ SELECT false $$;
CREATE OPERATOR bp_evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = bp_evil.texteq);
SET search_path = bp_evil, public, pg_catalog;
SELECT bp_try('shadowed search_path: DELETE without WHERE', 'DELETE FROM bp.entry');
SELECT bp_try('shadowed search_path: unprotect()', 'SELECT prodguard.unprotect(''bp.entry'')');
SELECT bp_try('shadowed search_path: purge_audit()', 'SELECT prodguard.purge_audit(''0 seconds'')');
SELECT count(*) > 0 AS protections_still_seen FROM prodguard.protected_tables WHERE table_name = 'entry';
RESET search_path;
SELECT p.proname, p.prosecdef, p.proconfig
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'prodguard' AND p.prosecdef AND NOT coalesce(p.proconfig::text LIKE '%search_path%', false);

-- Nothing was destroyed and the audit saw nothing it should not have.
SELECT (SELECT count(*) FROM bp.ledger) AS ledger_rows, (SELECT count(*) FROM bp.entry) AS entry_rows;
SELECT count(*) - :audit_entries_before AS new_audit_entries FROM prodguard.audit_log a WHERE a.schema_name = 'bp';
SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'bp.entry'::regclass AND NOT tgisinternal ORDER BY 1;

-- The list: every route, and what it got.
SELECT route, sqlstate FROM bp_outcome ORDER BY ctid;
SELECT count(*) AS routes, count(*) FILTER (WHERE sqlstate = 'ran') AS got_through FROM bp_outcome;
