-- Deploys that destroy nothing run in production without an override (SPEC §3): a
-- statement on a table that holds no rows, or that was created in the same transaction.
-- Migration-history tables, the extension's own tables and forbid_delete tables stay
-- guarded whatever they hold.
CREATE ROLE dp_owner LOGIN;
GRANT CREATE ON SCHEMA public TO dp_owner;
\c - dp_owner
-- A migration tool's first run: create a table, then drop a column of it (Django's
-- contenttypes 0002 does this seconds after 0001 created the table), empty and drop it.
CREATE TABLE dp_content_type (id int PRIMARY KEY, name text, app_label text);
ALTER TABLE dp_content_type DROP COLUMN name;
TRUNCATE dp_content_type;
DROP TABLE dp_content_type;
-- In the transaction that created it, a table with rows is still new: nothing of before
-- is lost.
BEGIN;
CREATE TABLE dp_staging (id int, payload text);
INSERT INTO dp_staging VALUES (1, 'a'), (2, 'b');
ALTER TABLE dp_staging DROP COLUMN payload;
TRUNCATE dp_staging;
DROP TABLE dp_staging;
COMMIT;
-- A table with rows is guarded: the count is exact, read under the statement's lock.
CREATE TABLE dp_orders (id int PRIMARY KEY, note text);
INSERT INTO dp_orders VALUES (1, 'kept');
TRUNCATE dp_orders;
ALTER TABLE dp_orders DROP COLUMN note;
DROP TABLE dp_orders;
-- Rows hidden from the owner by row-level security still count.
ALTER TABLE dp_orders ENABLE ROW LEVEL SECURITY;
ALTER TABLE dp_orders FORCE ROW LEVEL SECURITY;
CREATE POLICY dp_hide_all ON dp_orders USING (false);
SELECT count(*) AS rows_the_owner_sees FROM dp_orders;
TRUNCATE dp_orders;
DROP TABLE dp_orders;
-- Partitions and inheritance children count for their parent.
CREATE TABLE dp_events (id int, at date) PARTITION BY RANGE (at);
CREATE TABLE dp_events_2026 PARTITION OF dp_events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO dp_events VALUES (1, '2026-06-01');
TRUNCATE dp_events;
DELETE FROM dp_events WHERE id = 1;
TRUNCATE dp_events;
DROP TABLE dp_events;
-- Deleted rows are gone: an emptied table is empty.
CREATE TABLE dp_queue (id int);
INSERT INTO dp_queue VALUES (1), (2);
DELETE FROM dp_queue WHERE id > 0;
DROP TABLE dp_queue;
\c - postgres

-- Migration-history tables stay guarded, even empty.
CREATE TABLE django_migrations (id bigserial PRIMARY KEY, app varchar(255) NOT NULL,
    name varchar(255) NOT NULL, applied timestamptz NOT NULL);
TRUNCATE django_migrations;
DROP TABLE django_migrations;
-- A migration tool's lock table is released with an UPDATE of every row: not refused by
-- require_where (knex: UPDATE knex_migrations_lock SET is_locked = $1).
CREATE TABLE knex_migrations_lock ("index" serial PRIMARY KEY, is_locked int);
INSERT INTO knex_migrations_lock (is_locked) VALUES (1);
UPDATE knex_migrations_lock SET is_locked = 0;
CREATE TABLE databasechangeloglock (id int PRIMARY KEY, locked boolean NOT NULL,
    lockgranted timestamp, lockedby varchar(255));
INSERT INTO databasechangeloglock VALUES (1, true, now(), 'liquibase');
UPDATE databasechangeloglock SET locked = false, lockgranted = NULL, lockedby = NULL;
-- ...but any other table still needs its WHERE clause.
CREATE TABLE knex_migrations_locks (is_locked int);
INSERT INTO knex_migrations_locks VALUES (1);
UPDATE knex_migrations_locks SET is_locked = 0;

-- A restore that would change more rows than prodguard.max_rows_changed is judged like
-- any statement that does: in production it needs an override.
CREATE TABLE dp_ledger (id int PRIMARY KEY, amount int);
SELECT prodguard.protect('dp_ledger');
INSERT INTO dp_ledger SELECT g, g FROM generate_series(1, 5) g;
SELECT pg_sleep(0.01);
SELECT now() AS before_cleanup \gset
UPDATE dp_ledger SET amount = 0 WHERE id <= 5;
BEGIN;
SET LOCAL prodguard.override = 'test: a low limit';
SET LOCAL prodguard.max_rows_changed = 3;
RESET prodguard.override;
SELECT prodguard.restore_table('dp_ledger', :'before_cleanup');
ROLLBACK;
BEGIN;
SET LOCAL prodguard.override = 'test: a low limit';
SET LOCAL prodguard.max_rows_changed = 3;
SELECT txid FROM prodguard.audit_log WHERE table_name = 'dp_ledger' AND action = 'UPDATE' LIMIT 1 \gset
RESET prodguard.override;
SELECT prodguard.undo_transaction(:'txid');
ROLLBACK;
-- With an override it runs, and is recorded.
BEGIN;
SET LOCAL prodguard.override = 'INC-80: put the ledger back';
SET LOCAL prodguard.max_rows_changed = 3;
SELECT prodguard.restore_table('dp_ledger', :'before_cleanup') AS restored;
COMMIT;
SELECT sum(amount) AS total FROM dp_ledger;
SELECT action, object, override_reason FROM prodguard.audit_log
 WHERE action LIKE 'prodguard.restore%' ORDER BY id;
