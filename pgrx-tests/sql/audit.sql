-- Audit and restore: every change to a protected table is recorded in the changing
-- transaction, with the old row, so that one call puts it back.
CREATE DATABASE audit_demo;
\c audit_demo
CREATE EXTENSION pg_prodguard;
CREATE ROLE pipeline LOGIN;                                  -- the extraction service
CREATE ROLE oncall LOGIN IN ROLE prodguard_operator;         -- an operator
CREATE ROLE analyst LOGIN IN ROLE prodguard_auditor;         -- reads the audit log

-- Incident A: a finished extraction (queue item 9, Co-op Food, 91 % accuracy).
CREATE TABLE extraction_products (
    queue_item int, position int, product text, price numeric(8,2), facings int[],
    confidence double precision, seen_at timestamptz, ocr jsonb, crop bytea,
    PRIMARY KEY (queue_item, position));
GRANT SELECT, INSERT, UPDATE, DELETE ON extraction_products TO pipeline;
-- (a restore acts with its caller's rights, and the audit shows a reader only the tables
-- it may read: the operator who restores holds the same privileges as the service)
GRANT SELECT, INSERT, UPDATE, DELETE ON extraction_products TO oncall;
INSERT INTO extraction_products VALUES
    (9, 1, 'Irn-Bru 330ml', 0.85, '{2,3}', 0.91, '2024-05-01 10:15:00+00', '{"lines": ["IRN-BRU"], "box": [1, 2]}', '\x0102'),
    (9, 2, 'Co-op Still Water 2L', 0.50, '{4}', 0.88, '2024-05-01 10:15:01+00', '{"lines": ["STILL"]}', NULL),
    (9, 3, 'Walkers Ready Salted', 1.25, NULL, NULL, '2024-05-01 10:15:02+00', NULL, '\x');
SELECT prodguard.protect('extraction_products', test_data => false);
CREATE TABLE before_incident AS SELECT * FROM extraction_products;

-- The debugging script, as an ordinary role, in one transaction.
\c - pipeline
BEGIN;
UPDATE extraction_products SET product = 'Coca Cola Classic', price = 1.99 WHERE queue_item = 9 AND position = 1;
UPDATE extraction_products SET product = 'Pepsi Regular', facings = NULL WHERE queue_item = 9 AND position = 2;
DELETE FROM extraction_products WHERE queue_item = 9 AND position = 3;
INSERT INTO extraction_products VALUES (9, 4, 'Sprite Lemon-Lime', 1.10, '{1}', 0.5, now(), NULL, NULL);
COMMIT;
\c - postgres
-- One audit row per changed row, in the same transaction, with who and what.
SELECT action, row_key, changed_columns, db_user, environment,
       old_row ->> 'product' AS old_product, new_row ->> 'product' AS new_product
  FROM prodguard.audit_log WHERE table_name = 'extraction_products' ORDER BY id;
-- Types are kept in old_row: numbers, arrays, jsonb, timestamps, bytea, NULL.
SELECT old_row FROM prodguard.audit_log WHERE action = 'UPDATE' AND row_key = '{"queue_item": 9, "position": 1}';
SELECT count(DISTINCT txid) AS transactions FROM prodguard.audit_log WHERE table_name = 'extraction_products';

-- One call puts the whole transaction back, exactly.
\c - oncall
SELECT prodguard.undo_transaction(txid) AS rows_restored
  FROM prodguard.audit_log WHERE action = 'INSERT' AND row_key = '{"queue_item": 9, "position": 4}';
\c - postgres
SELECT (SELECT count(*) FROM (SELECT * FROM extraction_products EXCEPT SELECT * FROM before_incident) x) AS differing_rows,
       (SELECT count(*) FROM (SELECT * FROM before_incident EXCEPT SELECT * FROM extraction_products) x) AS missing_rows;
SELECT action, row_key, db_user FROM prodguard.audit_log WHERE action = 'RESTORE' ORDER BY id;

-- restore_row() undoes one change: an UPDATE, a DELETE, an INSERT.
UPDATE extraction_products SET price = 9.99 WHERE queue_item = 9 AND position = 1;
SELECT prodguard.restore_row(max(id)) FROM prodguard.audit_log WHERE action = 'UPDATE';
DELETE FROM extraction_products WHERE queue_item = 9 AND position = 2;
SELECT prodguard.restore_row(max(id)) FROM prodguard.audit_log WHERE action = 'DELETE';
INSERT INTO extraction_products (queue_item, position, product) VALUES (9, 5, 'Mountain Dew');
SELECT prodguard.restore_row(max(id)) FROM prodguard.audit_log WHERE action = 'INSERT';
SELECT queue_item, position, product, price FROM extraction_products ORDER BY 1, 2;
-- A row that changed again later is not restored without force.
UPDATE extraction_products SET price = 2.00 WHERE queue_item = 9 AND position = 3;
UPDATE extraction_products SET price = 3.00 WHERE queue_item = 9 AND position = 3;
SELECT prodguard.restore_row(min(id)) FROM prodguard.audit_log
 WHERE action = 'UPDATE' AND row_key = '{"queue_item": 9, "position": 3}';
\echo :LAST_ERROR_SQLSTATE
SELECT prodguard.restore_row(min(id), force => true) FROM prodguard.audit_log
 WHERE action = 'UPDATE' AND row_key = '{"queue_item": 9, "position": 3}';
SELECT price FROM extraction_products WHERE queue_item = 9 AND position = 3;
-- row_history() shows one row's story.
SELECT action, old_row ->> 'price' AS old_price, new_row ->> 'price' AS new_price
  FROM prodguard.row_history('extraction_products', '{"queue_item": 9, "position": 3}');

-- restore_table() puts the table back as it was at a point in time.
SELECT now() AS checkpoint \gset
SELECT pg_sleep(0.01);
UPDATE extraction_products SET price = price * 2 WHERE queue_item = 9;
DELETE FROM extraction_products WHERE queue_item = 9 AND position = 1;
INSERT INTO extraction_products (queue_item, position, product) VALUES (10, 1, 'Tango Orange');
SELECT prodguard.restore_table('extraction_products', :'checkpoint');
SELECT queue_item, position, product, price FROM extraction_products ORDER BY 1, 2;

-- Overridden TRUNCATE and DROP TABLE of a protected table copy its rows first; one call
-- brings them back, recreating a dropped table.
BEGIN;
SET LOCAL prodguard.override = 'INC-9: reload the extraction';
TRUNCATE extraction_products;
COMMIT;
SELECT audit_id, command, object, reason, has_backup FROM prodguard.recent_destructive WHERE command = 'TRUNCATE';
SELECT prodguard.restore_backup(audit_id) FROM prodguard.recent_destructive WHERE command = 'TRUNCATE';
SELECT count(*) AS rows_back FROM extraction_products;
BEGIN;
SET LOCAL prodguard.override = 'INC-10: drop the extraction table';
DROP TABLE extraction_products;
COMMIT;
SELECT prodguard.restore_backup(audit_id) FROM prodguard.recent_destructive WHERE command = 'DROP TABLE';
SELECT queue_item, position, product, price, facings, ocr FROM extraction_products ORDER BY 1, 2;
SELECT conname, contype FROM pg_constraint WHERE conrelid = 'extraction_products'::regclass;
-- Above prodguard.backup_max_rows the statement is refused, even with an override.
CREATE TABLE big_log (id int PRIMARY KEY);
INSERT INTO big_log SELECT generate_series(1, 50);
SELECT prodguard.protect('big_log', test_data => false);
BEGIN;
SET LOCAL prodguard.override = 'test: small backup limit';
SET LOCAL prodguard.backup_max_rows = 10;
TRUNCATE big_log;
ROLLBACK;

-- The audit log is append-only, for superusers too, whatever they try.
SELECT count(*) AS entries FROM prodguard.audit_log \gset
UPDATE prodguard.audit_log SET action = 'FORGED' WHERE id = 1;
\echo :LAST_ERROR_SQLSTATE
DELETE FROM prodguard.audit_log WHERE id = 1;
BEGIN;
SET LOCAL prodguard.override = 'test: tamper';
TRUNCATE prodguard.audit_log;
ROLLBACK;
SET session_replication_role = replica;
DELETE FROM prodguard.audit_log WHERE id = 1;
RESET session_replication_role;
ALTER TABLE prodguard.audit_log DISABLE TRIGGER append_only;
DROP TRIGGER append_only ON prodguard.audit_log;
DELETE FROM prodguard.backup_row WHERE true;
ALTER EXTENSION pg_prodguard DROP TABLE prodguard.audit_log;
DROP TABLE prodguard.audit_log;
SELECT count(*) = :entries AS log_unchanged FROM prodguard.audit_log;

-- The audit of a protected table cannot be switched off without an override.
CREATE TABLE orders (id int PRIMARY KEY, total numeric);
SELECT prodguard.protect('orders', test_data => false);
ALTER TABLE orders DISABLE TRIGGER zz_prodguard_audit;
ALTER TABLE orders DISABLE TRIGGER ALL;
ALTER TABLE orders DISABLE TRIGGER USER;
ALTER TABLE orders ENABLE TRIGGER zz_prodguard_audit;
DROP TRIGGER zz_prodguard_audit ON orders;
ALTER TRIGGER zz_prodguard_audit ON orders RENAME TO quiet;
SELECT prodguard.unprotect('orders');
SET prodguard.audit = off;
-- session_replication_role = replica does not silence it either...
SET session_replication_role = replica;
INSERT INTO orders VALUES (1, 10);
RESET session_replication_role;
-- ...unless an operator states a reason.
BEGIN;
SET LOCAL prodguard.override = 'CHG-70: replaying a replicated batch';
SET LOCAL session_replication_role = replica;
INSERT INTO orders VALUES (2, 20);
COMMIT;
SELECT action, row_key FROM prodguard.audit_log WHERE table_name = 'orders' ORDER BY id;

-- Permissions: auditors read, nobody else; only operators restore.
\c - analyst
SELECT count(*) > 0 AS can_read FROM prodguard.audit_log;
SELECT count(*) >= 0 AS can_read FROM prodguard.recent_destructive;
SELECT prodguard.restore_row(1);
\c - pipeline
SELECT count(*) FROM prodguard.audit_log;
SELECT prodguard.undo_transaction('1'::xid8);
\c - postgres

-- Tables without a key: audit works; restore says what it needs.
CREATE TABLE page_views (url text, seen timestamptz);
SELECT prodguard.protect('page_views', test_data => false);
INSERT INTO page_views VALUES ('/home', '2024-01-01');
SELECT action, row_key, new_row FROM prodguard.audit_log WHERE table_name = 'page_views';
SELECT prodguard.restore_row(max(id)) FROM prodguard.audit_log WHERE table_name = 'page_views';

-- Quoted and Unicode identifiers, partitioned tables.
CREATE TABLE "Bestellungen ""EU""" ("Größe" int PRIMARY KEY, "Menü" text);
SELECT prodguard.protect('"Bestellungen ""EU"""', test_data => false);
INSERT INTO "Bestellungen ""EU""" VALUES (1, 'Käse');
UPDATE "Bestellungen ""EU""" SET "Menü" = 'Brot' WHERE "Größe" = 1;
SELECT prodguard.restore_row(max(id)) FROM prodguard.audit_log WHERE action = 'UPDATE' AND schema_name = 'public' AND table_name = 'Bestellungen "EU"';
SELECT * FROM "Bestellungen ""EU""";
CREATE TABLE scans (id int, day date, store text, PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
CREATE TABLE scans_2024 PARTITION OF scans FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
SELECT prodguard.protect('scans', test_data => false);
INSERT INTO scans VALUES (1, '2024-03-01', 'Co-op');
UPDATE scans SET store = 'Tesco' WHERE id = 1;
SELECT action, table_name, row_key FROM prodguard.row_history('scans', '{"id": 1, "day": "2024-03-01"}');
SELECT prodguard.undo_transaction(txid) FROM prodguard.audit_log WHERE table_name = 'scans_2024' AND action = 'UPDATE';
SELECT * FROM scans;

-- test_data_action = log puts the matches into the row's own audit entry.
SELECT prodguard.protect('orders', test_data => true);
ALTER TABLE orders ADD COLUMN note text;
BEGIN;
SET LOCAL prodguard.override = 'test: log';
SET LOCAL prodguard.test_data_action = 'log';
INSERT INTO orders VALUES (3, 30, 'ordered by John Doe');
COMMIT;
SELECT action, row_key, test_data FROM prodguard.audit_log WHERE table_name = 'orders' AND row_key = '{"id": 3}';

-- purge_audit() is the only way out of the log, and needs an override in production.
SELECT prodguard.purge_audit('0 seconds');
BEGIN;
SET LOCAL prodguard.override = 'CHG-71: retention is one year';
SELECT prodguard.purge_audit('1 year') AS purged;
COMMIT;

-- The audit log, the backups and user dictionaries survive pg_dump / pg_restore.
SELECT prodguard.dictionary_add('fixtures', ARRAY['Coca Cola Classic']);
\! pg_dump -Fc -f /tmp/prodguard_audit_demo.dump audit_demo
\c app
CREATE DATABASE audit_copy;
\! pg_restore -d audit_copy /tmp/prodguard_audit_demo.dump 2>&1; rm -f /tmp/prodguard_audit_demo.dump
\c audit_copy
SELECT (SELECT count(*) FROM prodguard.audit_log) AS audit_rows,
       (SELECT count(*) FROM prodguard.backup_row) AS backup_rows,
       (SELECT count(*) FROM prodguard.dictionary_entry WHERE dictionary = 'fixtures') AS fixture_patterns,
       (SELECT count(*) FROM prodguard.dictionary WHERE builtin) AS builtin_dictionaries,
       (SELECT count(*) FROM prodguard.protected_tables WHERE NOT migration_history) AS protected;
SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'orders'::regclass ORDER BY 1;
-- and the restored database keeps auditing, with ids after the restored ones
INSERT INTO orders VALUES (4, 40);
SELECT action, row_key, id > (SELECT min(id) FROM prodguard.audit_log) AS newer
  FROM prodguard.audit_log WHERE row_key = '{"id": 4}';
\c app
