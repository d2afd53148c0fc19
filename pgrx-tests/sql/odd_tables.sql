-- Odd tables: generated and identity columns, inheritance, 1,600 columns, composite and
-- domain columns, a table without a key, and bad setting values. Zero crashes; every
-- refusal a clear error; audit and restore keep working.
CREATE DOMAIN od_positive AS numeric CHECK (VALUE > 0);
CREATE TYPE od_money AS (amount numeric, currency text);

-- Generated and identity columns: audited with their values; restore writes only the
-- columns it may write.
CREATE TABLE od_gen (
    id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    net od_positive NOT NULL,
    vat numeric GENERATED ALWAYS AS (net * 0.2) STORED,
    price od_money);
SELECT prodguard.protect('od_gen', test_data => false);
INSERT INTO od_gen (net, price) VALUES (10, ROW(12, 'EUR')), (20, ROW(24, 'EUR'));
UPDATE od_gen SET net = 15, price = ROW(18, 'EUR') WHERE id = 1;
SELECT action, row_key, new_row FROM prodguard.audit_log
 WHERE table_name = 'od_gen' ORDER BY id;
SELECT prodguard.restore_row(max(id)) FROM prodguard.audit_log WHERE table_name = 'od_gen';
SELECT id, net, vat, price FROM od_gen ORDER BY id;
DELETE FROM od_gen WHERE id = 2;
SELECT prodguard.restore_row(max(id)) FROM prodguard.audit_log WHERE table_name = 'od_gen' AND action = 'DELETE';
SELECT id, net, vat, price FROM od_gen ORDER BY id;

-- Inheritance (not partitioning): protecting the parent does not protect the children;
-- each is protected on its own, and a DELETE through the parent reaches both.
CREATE TABLE od_parent (id int PRIMARY KEY, note text);
CREATE TABLE od_child (extra text) INHERITS (od_parent);
SELECT prodguard.protect('od_parent', test_data => false);
INSERT INTO od_parent VALUES (1, 'parent row');
INSERT INTO od_child VALUES (2, 'child row', 'x');
SELECT table_name FROM prodguard.protected_tables WHERE table_name::text LIKE 'od_%' ORDER BY 1;
DELETE FROM od_parent;
TRUNCATE od_parent;
SELECT count(*) AS rows_through_parent FROM od_parent;
SELECT table_name, action FROM prodguard.audit_log WHERE table_name IN ('od_parent', 'od_child') ORDER BY id;

-- 1,600 columns, the most PostgreSQL allows: audited (one jsonb of 1,600 keys), restored.
\set ECHO none
SELECT format('CREATE TABLE od_wide (id int PRIMARY KEY, %s)',
              string_agg(format('c%s text', g), ', ')) FROM generate_series(2, 1600) g \gexec
\set ECHO all
SELECT count(*) AS columns FROM pg_attribute WHERE attrelid = 'od_wide'::regclass AND attnum > 0;
SELECT prodguard.protect('od_wide', test_data => false);
INSERT INTO od_wide (id, c2, c1600) VALUES (1, 'second', 'last');
UPDATE od_wide SET c1600 = 'changed' WHERE id = 1;
SELECT action, (SELECT count(*) FROM jsonb_object_keys(coalesce(new_row, old_row))) AS keys,
       new_row ->> 'c1600' AS c1600, changed_columns
  FROM prodguard.audit_log WHERE table_name = 'od_wide' ORDER BY id;
SELECT prodguard.restore_row(max(id)) FROM prodguard.audit_log WHERE table_name = 'od_wide';
SELECT c2, c1600 FROM od_wide;

-- No key at all: audited, and restore says what it needs.
CREATE TABLE od_nokey (a int, b text);
SELECT prodguard.protect('od_nokey', test_data => false);
INSERT INTO od_nokey VALUES (1, 'x');
UPDATE od_nokey SET b = 'y' WHERE a = 1;
SELECT action, row_key, old_row, new_row FROM prodguard.audit_log WHERE table_name = 'od_nokey' ORDER BY id;
-- (the entry's id, which depends on the tests before this one, is blanked out)
DO $$
DECLARE d text; h text;
BEGIN
    PERFORM prodguard.restore_row(max(id)) FROM prodguard.audit_log WHERE table_name = 'od_nokey';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT;
    RAISE NOTICE E'% %\nDETAIL: %\nHINT: %', SQLSTATE, regexp_replace(SQLERRM, 'entry [0-9]+', 'entry N'), d, h;
END $$;
-- A failed restore leaves nothing behind: the next change is audited as what it is.
INSERT INTO od_nokey VALUES (2, 'z');
SELECT action FROM prodguard.audit_log WHERE table_name = 'od_nokey' ORDER BY id DESC LIMIT 1;

-- Bad setting values: each a clear error, nothing changed.
SET prodguard.environment = 'prod';
SET prodguard.max_rows_changed = -1;
SET prodguard.max_rows_changed = 'many';
SET prodguard.blocked_commands = 'truncate,drop_everything';
SET prodguard.test_data_action = 'ignore';
SET prodguard.backup_max_rows = 1e12;
SET prodguard.no_such_setting = 1;
SELECT prodguard.protect('no_such_table');
SELECT prodguard.protect(NULL);
SELECT prodguard.restore_row(-1);
SELECT prodguard.undo_transaction(NULL);
SELECT setting, value FROM prodguard.status() WHERE setting IN ('environment', 'row_guard.max_rows_changed', 'test_data.action');
