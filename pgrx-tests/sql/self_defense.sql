-- The extension defends itself: in production, without an override, nobody changes its
-- own objects except through its functions, not even a superuser from an ordinary SQL
-- session (this file runs as one). Each attempt below was a way to erase or silence the
-- audit in 0.1.0.
CREATE TABLE sd_orders (id int PRIMARY KEY, item text);
SELECT prodguard.protect('sd_orders');
INSERT INTO sd_orders VALUES (1, 'Rye bread');
SELECT count(*) AS audit_rows_before FROM prodguard.audit_log \gset

-- Replacing its functions with no-ops.
CREATE OR REPLACE FUNCTION prodguard.append_only() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN OLD; END';
CREATE OR REPLACE FUNCTION prodguard.forget_dropped_tables() RETURNS event_trigger LANGUAGE plpgsql AS 'BEGIN END';
ALTER FUNCTION prodguard.purge_audit(interval) SECURITY DEFINER;
ALTER FUNCTION prodguard.status() RENAME TO status_old;
-- Renaming its tables, columns or schema (and back).
ALTER TABLE prodguard.audit_log RENAME TO audit_log_old;
ALTER TABLE prodguard.audit_log RENAME COLUMN old_row TO old_row_x;
ALTER SCHEMA prodguard RENAME TO prodguard_old;
ALTER SCHEMA prodguard OWNER TO pg_monitor;
ALTER TABLE prodguard.audit_log OWNER TO pg_monitor;
ALTER TABLE prodguard.audit_log SET SCHEMA public;
-- Rewriting or silencing its tables.
ALTER TABLE prodguard.audit_log ALTER COLUMN old_row TYPE jsonb USING NULL;
ALTER TABLE prodguard.audit_log ALTER COLUMN txid TYPE text;
ALTER TABLE prodguard.audit_log SET UNLOGGED;
ALTER TABLE prodguard.denial_log ADD CONSTRAINT no_more_denials CHECK (false) NOT VALID;
ALTER TABLE prodguard.audit_log DISABLE TRIGGER ALL;
CREATE RULE ignore_audit AS ON INSERT TO prodguard.audit_log DO INSTEAD NOTHING;
CREATE TRIGGER sd_noop BEFORE INSERT ON prodguard.audit_log FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger();
CREATE POLICY sd_hide ON prodguard.audit_log USING (false);
-- (its row security is its policies: dropping one would open the log to every reader)
DROP POLICY readers ON prodguard.audit_log;
DROP POLICY IF EXISTS readers ON audit_log;
ALTER POLICY readers ON prodguard.backup_row RENAME TO open;
ALTER SEQUENCE prodguard.audit_log_id_seq RESTART WITH 1;
CREATE OR REPLACE VIEW prodguard.protected_tables AS SELECT NULL::regclass AS table_name;
-- Writing its configuration or forging history.
DELETE FROM prodguard.table_protection;
UPDATE prodguard.dictionary SET enabled = false;
DELETE FROM prodguard.dictionary_entry WHERE dictionary = 'placeholder_people';
INSERT INTO prodguard.audit_log (id, action, db_user, environment) OVERRIDING SYSTEM VALUE
     VALUES (1, 'FORGED', 'someone', 'production');
INSERT INTO prodguard.denial_log (id, at, database, db_user, "session_user", guard, command, object)
     VALUES (1, now(), 'app', 'x', 'x', 'command', 'FORGED', 'x');
COPY prodguard.audit_log (action, db_user, environment) FROM STDIN;
FORGED	someone	production
\.
-- setval() on its sequences: named (refused before it runs) or computed (put back at
-- once, then refused); an application's sequence is not concerned.
SELECT last_value AS seq_before FROM prodguard.audit_log_id_seq \gset
SELECT setval('prodguard.audit_log_id_seq', 1);
SET client_min_messages = warning;  -- (the NOTICE says where the sequence was put back)
SELECT setval(pg_get_serial_sequence('prodguard.audit_log', 'id'), 1);
DO $$ DECLARE s text := 'prodguard.audit_log_id_seq'; n bigint; BEGIN n := setval(s, 2); END $$;
RESET client_min_messages;
SELECT last_value = :seq_before AS sequence_unmoved FROM prodguard.audit_log_id_seq;
CREATE TABLE sd_seq (id serial);
SELECT setval('sd_seq_id_seq', 42);
-- Nothing changed: the audit goes on as before.
UPDATE sd_orders SET item = 'Sourdough' WHERE id = 1;
SELECT count(*) - :audit_rows_before AS new_audit_rows,
       (SELECT count(*) FROM prodguard.audit_log WHERE action = 'FORGED') AS forged,
       (SELECT count(*) > 0 FROM prodguard.table_protection) AS protected,
       (SELECT bool_and(enabled) FROM prodguard.dictionary) AS dictionaries_enabled
  FROM prodguard.audit_log;

-- With an override it runs, and is recorded.
BEGIN;
SET LOCAL prodguard.override = 'CHG-400: larger statistics target for row_history';
ALTER TABLE prodguard.audit_log ALTER COLUMN row_key SET STATISTICS 500;
COMMIT;
SELECT action, object, override_reason FROM prodguard.audit_log
 WHERE override_reason LIKE 'CHG-400%';
-- The extension's functions still write its tables.
SELECT prodguard.dictionary_add('sd_fixtures', ARRAY['Fixture Cola']);
SELECT prodguard.protect('sd_orders', forbid_delete => true);
SELECT forbid_delete FROM prodguard.protected_tables WHERE table_name = 'sd_orders'::regclass;
