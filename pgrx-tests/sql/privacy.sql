-- Privacy (issue 19): what pg_prodguard records of a statement is the statement itself,
-- with its secrets masked; never the other statements of the same query string.
SET application_name = 'privacy-test';
CREATE TABLE pv_orders (id int PRIMARY KEY, note text);
INSERT INTO pv_orders VALUES (1, 'a'), (2, 'b');
SELECT prodguard.protect('pv_orders');
CREATE ROLE pv_app LOGIN;
-- One query string, three statements (psql's \; sends them together): the ALTER ROLE ran,
-- the TRUNCATE was refused, and the whole string rolled back.
ALTER ROLE pv_app PASSWORD 'hunter2-secret' \; SELECT 1 \; TRUNCATE pv_orders;
\echo :LAST_ERROR_SQLSTATE
-- A refused statement that carries secrets itself.
DO $$
BEGIN
    EXECUTE 'ALTER ROLE pv_app PASSWORD ''hunter3-secret''';
    PERFORM 'host=db password=hunter4-secret';
    TRUNCATE pv_orders;
END $$;
\echo :LAST_ERROR_SQLSTATE
DO $$
BEGIN
    FOR i IN 1..400 LOOP
        EXIT WHEN (SELECT count(*) FROM prodguard.denied_attempts
                    WHERE application_name = 'privacy-test') >= 2;
        PERFORM pg_sleep(0.05);
    END LOOP;
END $$;
SELECT command, statement FROM prodguard.denied_attempts
 WHERE application_name = 'privacy-test' ORDER BY at;
SELECT count(*) AS secrets_recorded FROM prodguard.denied_attempts
 WHERE statement ~ 'hunter[0-9]-secret';

BEGIN;
SET LOCAL prodguard.override = 'privacy test: clean up';
DROP TABLE pv_orders;
COMMIT;
DROP ROLE pv_app;

-- Reading the audit never shows more than the reader may SELECT: an auditor sees the
-- entries of tables it may read in full, not those of a table with a column kept from
-- it, nor of a table with row-level security.
CREATE ROLE pv_auditor LOGIN IN ROLE prodguard_auditor;
CREATE ROLE pv_operator LOGIN IN ROLE prodguard_operator;
CREATE TABLE pv_users (id int PRIMARY KEY, email text, password_hash text);
CREATE TABLE pv_notes (id int PRIMARY KEY, body text);
CREATE TABLE pv_rls (id int PRIMARY KEY, owner_name text);
ALTER TABLE pv_rls ENABLE ROW LEVEL SECURITY;
CREATE POLICY mine ON pv_rls USING (owner_name = current_user);
SELECT prodguard.protect('pv_users'), prodguard.protect('pv_notes'), prodguard.protect('pv_rls');
INSERT INTO pv_users VALUES (1, 'ada@shop.co.uk', 'scrypt$secret-hash');
INSERT INTO pv_notes VALUES (1, 'hello');
INSERT INTO pv_rls VALUES (1, 'someone_else');
GRANT SELECT (id, email) ON pv_users TO pv_auditor;
GRANT SELECT ON pv_notes, pv_rls TO pv_auditor;
SET ROLE pv_auditor;
SELECT table_name, new_row FROM prodguard.audit_log
 WHERE table_name IN ('pv_users', 'pv_notes', 'pv_rls') ORDER BY id;
SELECT count(*) AS hash_visible FROM prodguard.audit_log WHERE new_row::text LIKE '%secret-hash%';
SELECT count(*) AS history_rows FROM prodguard.row_history('pv_users', '{"id": 1}');
-- entries of commands carry no row values: every reader of the log sees them
SELECT count(*) > 0 AS commands_visible FROM prodguard.audit_log WHERE table_oid IS NULL OR old_row IS NULL AND new_row IS NULL;
RESET ROLE;
-- with SELECT on the whole table, the entries are there
GRANT SELECT ON pv_users TO pv_auditor;
SET ROLE pv_auditor;
SELECT count(*) AS history_rows FROM prodguard.row_history('pv_users', '{"id": 1}');
RESET ROLE;
-- a superuser reads everything
SELECT count(*) AS superuser_sees FROM prodguard.audit_log WHERE table_name IN ('pv_users', 'pv_notes', 'pv_rls');

-- No-op UPDATEs change nothing and write no entry.
UPDATE pv_notes SET body = body WHERE id = 1;
SELECT count(*) AS entries_of_pv_notes FROM prodguard.audit_log WHERE table_name = 'pv_notes';

-- Restores act with the caller's rights: an operator without privileges on the table is
-- refused; with them, the RESTORE entry names the operator and the reason.
UPDATE pv_notes SET body = 'changed' WHERE id = 1;
SELECT max(id) AS note_change FROM prodguard.audit_log WHERE table_name = 'pv_notes' \gset
SET ROLE pv_operator;
SELECT prodguard.restore_row(:note_change);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
GRANT SELECT, UPDATE ON pv_notes TO pv_operator;
SET ROLE pv_operator;
BEGIN;
SET LOCAL prodguard.override = 'privacy test: undo the change to note 1';
SELECT prodguard.restore_row(:note_change);
COMMIT;
RESET ROLE;
SELECT body FROM pv_notes;
SELECT action, db_user, override_reason FROM prodguard.audit_log
 WHERE table_name = 'pv_notes' ORDER BY id DESC LIMIT 1;
-- a table with row-level security is restored only by its owner or a bypassing role
GRANT SELECT, INSERT, UPDATE, DELETE ON pv_rls TO pv_operator;
SELECT max(id) AS rls_change FROM prodguard.audit_log WHERE table_name = 'pv_rls' \gset
SET ROLE pv_operator;
SELECT prodguard.restore_row(:rls_change);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- the rights come first: a caller without them learns nothing of the row (not its key,
-- not that it changed again later)
UPDATE pv_users SET email = 'ada@shop.co.uk.old' WHERE id = 1;
SELECT max(id) AS user_change FROM prodguard.audit_log WHERE table_name = 'pv_users' \gset
UPDATE pv_users SET email = 'ada@shop.co.uk' WHERE id = 1;
SET ROLE pv_operator;
SELECT prodguard.restore_row(:user_change);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- A restore runs the table owner's triggers restricted: what they set does not outlive
-- the restore (the restoring superuser's search_path stays its own).
CREATE ROLE pv_owner LOGIN;
CREATE SCHEMA pv_trap AUTHORIZATION pv_owner;
SET ROLE pv_owner;
CREATE TABLE pv_trap.t (id int PRIMARY KEY, v text);
CREATE FUNCTION pv_trap.lower(text) RETURNS text LANGUAGE sql AS $$ SELECT 'owned by pv_owner' $$;
CREATE FUNCTION pv_trap.set_path() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('search_path', 'pv_trap, pg_catalog', false);
    RETURN NEW;
END $$;
CREATE TRIGGER set_path BEFORE INSERT OR UPDATE ON pv_trap.t FOR EACH ROW EXECUTE FUNCTION pv_trap.set_path();
RESET ROLE;
SELECT prodguard.protect('pv_trap.t');
ALTER TABLE pv_trap.t DISABLE TRIGGER set_path;
INSERT INTO pv_trap.t VALUES (1, 'a');
UPDATE pv_trap.t SET v = 'b' WHERE id = 1;
ALTER TABLE pv_trap.t ENABLE TRIGGER set_path;
SHOW search_path;
SELECT prodguard.restore_row((SELECT max(id) FROM prodguard.audit_log WHERE table_name = 't' AND schema_name = 'pv_trap'));
SHOW search_path;
SELECT lower('ABC');
SELECT v FROM pv_trap.t;

-- Attacks (issue 19's review): a reader's own operators cannot stand in for the policy's
-- (the policy function's search_path is pinned) ...
CREATE SCHEMA pv_aud AUTHORIZATION pv_auditor;
REVOKE SELECT ON pv_users FROM pv_auditor;
SET ROLE pv_auditor;
CREATE FUNCTION pv_aud.gt_false(smallint, integer) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT false';
CREATE OPERATOR pv_aud.> (LEFTARG = smallint, RIGHTARG = integer, FUNCTION = pv_aud.gt_false);
SET search_path = pv_aud, pg_catalog;
SELECT count(*) AS hash_visible FROM prodguard.audit_log WHERE new_row::text LIKE '%secret-hash%';
RESET search_path;
RESET ROLE;
-- ... dropping a column does not open old entries to readers with column privileges ...
CREATE TABLE pv_dc (id int PRIMARY KEY, pub text, secret text);
SELECT prodguard.protect('pv_dc');
INSERT INTO pv_dc VALUES (1, 'public', 'dropped-column-secret');
GRANT SELECT (id, pub) ON pv_dc TO pv_auditor;
BEGIN;
SET LOCAL prodguard.override = 'privacy test: drop a column';
ALTER TABLE pv_dc DROP COLUMN secret;
COMMIT;
SET ROLE pv_auditor;
SELECT count(*) AS dropped_column_visible FROM prodguard.audit_log WHERE new_row::text LIKE '%dropped-column-secret%';
RESET ROLE;
-- ... a look-alike table does not receive a dropped table's backup ...
CREATE TABLE pv_pay (id int PRIMARY KEY, salary text);
INSERT INTO pv_pay VALUES (1, 'salary-secret');
SELECT prodguard.protect('pv_pay');
BEGIN;
SET LOCAL prodguard.override = 'privacy test: retire pv_pay';
DROP TABLE pv_pay;
COMMIT;
SELECT max(a.id) AS pay_drop FROM prodguard.audit_log a WHERE a.action = 'DROP TABLE' AND a.object = 'table "public.pv_pay"' \gset
GRANT CREATE ON SCHEMA public TO pv_operator;
SET ROLE pv_operator;
CREATE TABLE pv_pay (id int PRIMARY KEY, salary text);
SELECT prodguard.restore_backup(:pay_drop);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS rows_received FROM pv_pay;
DROP TABLE pv_pay;
RESET ROLE;
REVOKE CREATE ON SCHEMA public FROM pv_operator;
-- ... and scan_table() on a table of one's own is for operators and auditors, as scan() is.
CREATE ROLE pv_nobody LOGIN;
SET ROLE pv_nobody;
CREATE TEMP TABLE pv_probe (v text);
SELECT * FROM prodguard.scan_table('pv_probe');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- After RENAME COLUMN, a restore that would need the old column refuses (never a NULL);
-- one that does not need it works.
INSERT INTO pv_notes VALUES (2, 'second');
UPDATE pv_notes SET body = 'second, changed' WHERE id = 2;
ALTER TABLE pv_notes RENAME COLUMN body TO text_body;
SELECT prodguard.restore_row((SELECT max(id) FROM prodguard.audit_log
                               WHERE table_name = 'pv_notes' AND changed_columns = '{body}'), force => true);
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE pv_notes ADD COLUMN id2 int;
UPDATE pv_notes SET id2 = 7 WHERE id = 1;
SELECT prodguard.restore_row((SELECT max(id) FROM prodguard.audit_log WHERE table_name = 'pv_notes'));
SELECT * FROM pv_notes ORDER BY id;

-- The denial log keeps at most prodguard.denial_log_rate records of one client per
-- minute; the rest are counted (and summed up in one record when the minute is over),
-- and a statement the client repeats is stored once.
CREATE ROLE pv_flood LOGIN;
GRANT USAGE ON SCHEMA public TO pv_flood;
BEGIN;
SET LOCAL prodguard.override = 'privacy test: a small rate for one role';
ALTER ROLE pv_flood SET prodguard.denial_log_rate = 3;
COMMIT;
SELECT value::bigint AS suppressed_before FROM prodguard.metrics WHERE metric = 'denials_suppressed' \gset
\c - pv_flood
SET application_name = 'privacy-flood';
TRUNCATE pv_notes;
TRUNCATE pv_notes;
TRUNCATE pv_users;
TRUNCATE pv_rls;
TRUNCATE pv_users;
\c - postgres
DO $$
BEGIN
    FOR i IN 1..100 LOOP
        EXIT WHEN (SELECT count(*) FROM prodguard.denied_attempts
                    WHERE application_name = 'privacy-flood') >= 3;
        PERFORM pg_sleep(0.05);
    END LOOP;
END $$;
-- (a statement the client repeats has its text stored once)
SELECT object, statement FROM prodguard.denied_attempts WHERE application_name = 'privacy-flood' ORDER BY at;
SELECT value::bigint - :suppressed_before AS suppressed FROM prodguard.metrics WHERE metric = 'denials_suppressed';
-- The client refuses no more: once its minute is over, the denial launcher sums up what
-- was not stored in one record (waits up to 90 s).
DO $$
BEGIN
    FOR i IN 1..450 LOOP
        EXIT WHEN EXISTS (SELECT FROM prodguard.denied_attempts
                           WHERE application_name = 'privacy-flood' AND command = '(refusals not stored)');
        PERFORM pg_sleep(0.2);
    END LOOP;
END $$;
SELECT guard, "session_user", object,
       regexp_replace(detail, 'from [0-9-]+ [0-9:.+]+', 'from <minute>') AS detail
  FROM prodguard.denied_attempts
 WHERE application_name = 'privacy-flood' AND command = '(refusals not stored)';

-- Retention: the denial writer removes refusals and alerts older than
-- prodguard.denial_log_retention (90 days by default) when it first stores refusals.
CREATE DATABASE pv_retention;
\c pv_retention
CREATE EXTENSION pg_prodguard;
BEGIN;
SET LOCAL prodguard.override = 'privacy test: an old refusal and an old alert';
INSERT INTO prodguard.denial_log (id, at, database, guard, command)
VALUES (1, now() - interval '100 days', 'pv_retention', 'command', 'TRUNCATE'),
       (2, now() - interval '10 days', 'pv_retention', 'command', 'TRUNCATE');
INSERT INTO prodguard.alerts (id, at, database, kind)
VALUES (1, now() - interval '100 days', 'pv_retention', 'row_drop'),
       (2, now() - interval '10 days', 'pv_retention', 'row_drop');
COMMIT;
CREATE TABLE pv_kept (id int PRIMARY KEY);
INSERT INTO pv_kept VALUES (1);
SELECT prodguard.protect('pv_kept');
TRUNCATE pv_kept;
DO $$
BEGIN
    FOR i IN 1..400 LOOP
        EXIT WHEN (SELECT count(*) FROM prodguard.denial_log WHERE command = 'TRUNCATE') = 2
              AND NOT EXISTS (SELECT FROM prodguard.denial_log WHERE id = 1);
        PERFORM pg_sleep(0.05);
    END LOOP;
END $$;
SELECT count(*) FILTER (WHERE id = 1) AS refusal_100_days_old,
       count(*) FILTER (WHERE id = 2) AS refusal_10_days_old,
       count(*) FILTER (WHERE id > 2) AS refusal_now
  FROM prodguard.denial_log;
SELECT count(*) FILTER (WHERE id = 1) AS alert_100_days_old,
       count(*) FILTER (WHERE id = 2) AS alert_10_days_old
  FROM prodguard.alerts;
\c app
SET prodguard.override = 'privacy test: drop the retention database';
DROP DATABASE pv_retention;
RESET prodguard.override;

BEGIN;
SET LOCAL prodguard.override = 'privacy test: clean up';
DROP TABLE pv_users, pv_notes, pv_rls, pv_trap.t, pv_dc;
DROP SCHEMA pv_aud CASCADE;
DROP SCHEMA pv_trap CASCADE;
DROP OWNED BY pv_auditor, pv_operator, pv_owner, pv_flood, pv_nobody;
COMMIT;
DROP ROLE pv_auditor, pv_operator, pv_owner, pv_flood, pv_nobody;
