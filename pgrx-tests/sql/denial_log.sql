-- Every refusal is recorded in prodguard.denied_attempts of the database where it
-- happened, although the refusing transaction rolled back: a background worker writes the
-- record in its own transaction. This database (app) is production.
SET application_name = 'denial-test';
CREATE TABLE dl_orders (id int PRIMARY KEY, product text);
INSERT INTO dl_orders VALUES (1, 'Organic still water 2L'), (2, 'Rye bread');
SELECT prodguard.protect('dl_orders');
CREATE ROLE dl_dev LOGIN;
GRANT ALL ON dl_orders TO dl_dev;
CREATE ROLE dl_auditor LOGIN IN ROLE prodguard_auditor;

-- One refusal of each guard.
TRUNCATE dl_orders;
DELETE FROM dl_orders;
INSERT INTO dl_orders VALUES (3, 'Coca Cola Classic');
SET prodguard.environment = 'development';
-- A non-operator's override is ignored, and the refusal says so.
SET ROLE dl_dev;
BEGIN;
SET LOCAL prodguard.override = 'cleanup before the demo';
TRUNCATE dl_orders;
ROLLBACK;
RESET ROLE;
-- A refusal caught by PL/pgSQL is recorded too.
DO $$
BEGIN
    TRUNCATE dl_orders;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'caught: %', SQLERRM;
END $$;
-- DROP DATABASE is recorded in the database it was issued from.
CREATE DATABASE dl_other;
DROP DATABASE dl_other;
-- Tampering with the log is refused (and recorded).
DELETE FROM prodguard.denial_log WHERE true;

-- The writer runs in the background: wait until the 8 records are there (at most 20 s).
DO $$
BEGIN
    FOR i IN 1..400 LOOP
        EXIT WHEN (SELECT count(*) FROM prodguard.denied_attempts
                    WHERE application_name = 'denial-test') >= 8;
        PERFORM pg_sleep(0.05);
    END LOOP;
END $$;
SELECT guard, command, object, database, db_user, "session_user", client_addr,
       backend_pid = pg_backend_pid() AS this_session, at > now() - interval '5 minutes' AS recent
  FROM prodguard.denied_attempts
 WHERE application_name = 'denial-test'
 ORDER BY at;
SELECT command, detail, statement
  FROM prodguard.denied_attempts
 WHERE application_name = 'denial-test'
 ORDER BY at;
-- The refused changes did not happen.
SELECT count(*) AS orders FROM dl_orders;

-- Who may read it: superusers, prodguard_auditor, prodguard_operator; not PUBLIC.
SET ROLE dl_dev;
SELECT count(*) FROM prodguard.denied_attempts;
SELECT count(*) FROM prodguard.denial_log;
SELECT count(*) FROM prodguard.metrics;
RESET ROLE;
SET ROLE dl_auditor;
SELECT count(*) >= 8 AS auditor_reads FROM prodguard.denied_attempts;
SELECT count(*) > 0 AS auditor_reads_metrics FROM prodguard.metrics;
RESET ROLE;
-- Append-only for everyone, superusers included.
UPDATE prodguard.denial_log SET detail = 'edited' WHERE true;
TRUNCATE prodguard.denial_log;

-- The counters: since server start, shared by all backends.
SELECT metric, value > 0 AS counted
  FROM prodguard.metrics
 WHERE metric IN ('commands_refused', 'row_statements_refused', 'test_data_rows_refused',
                  'settings_refused', 'audit_tampering_refused', 'audit_rows_written',
                  'denials_queued', 'denials_written')
 ORDER BY metric;
SELECT metric, value FROM prodguard.metrics WHERE metric IN ('denials_dropped', 'denial_queue_size');
SELECT count(*) AS described FROM prodguard.metrics WHERE description <> '';
SELECT value ~ '^queue of 1024 records, [0-9]+ waiting$' AS denial_log_status
  FROM prodguard.status() WHERE setting = 'denial_log';
SELECT setting, value FROM prodguard.status() WHERE setting IN ('audit', 'backup_max_rows');

-- Clean up (dl_other is production: dropping it needs an override).
SET prodguard.override = 'denial_log test cleanup';
DROP DATABASE dl_other;
