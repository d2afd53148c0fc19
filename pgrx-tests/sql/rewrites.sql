-- DDL that rewrites or discards data without dropping a table (tokens alter_column_type,
-- set_unlogged, alter_type, drop_constraint, drop_sequence, drop_large_object; drop_column
-- is in command_guard.sql). In production each is refused without an override, runs and is
-- recorded with one, and is not refused where it destroys nothing.
CREATE ROLE rw_dev LOGIN;
CREATE TYPE rw_status AS ENUM ('open', 'closed');
CREATE TYPE rw_address AS (street text, city text);
CREATE TABLE rw_customers (id serial PRIMARY KEY, email text UNIQUE, score numeric(5,2),
    status rw_status, home rw_address);
CREATE TABLE rw_orders (id int PRIMARY KEY, customer_id int CONSTRAINT rw_orders_customer_fk
    REFERENCES rw_customers, total numeric CHECK (total >= 0));
CREATE INDEX rw_orders_total ON rw_orders (total);
INSERT INTO rw_customers (email, score, status, home)
     VALUES ('ada@lovelace.example', 9.5, 'open', ('12 Engine Rd', 'London'));
INSERT INTO rw_orders VALUES (1, 1, 10);
ALTER TABLE rw_customers OWNER TO rw_dev;
ALTER TABLE rw_orders OWNER TO rw_dev;
ALTER TYPE rw_status OWNER TO rw_dev;
ALTER TYPE rw_address OWNER TO rw_dev;

-- Refused in production (a whole column wiped, a crash that would empty the table, the
-- keys that keep duplicates out, the sequence behind the ids, stored values' meaning).
ALTER TABLE rw_customers ALTER COLUMN score TYPE int USING NULL;
ALTER TABLE rw_customers ALTER COLUMN email TYPE varchar(200);
ALTER TABLE rw_customers SET UNLOGGED;
ALTER TABLE rw_orders DROP CONSTRAINT rw_orders_customer_fk;
ALTER TABLE rw_customers DROP CONSTRAINT rw_customers_email_key;
ALTER TABLE rw_orders DROP CONSTRAINT rw_orders_pkey;
DROP INDEX rw_customers_email_key CASCADE;
DROP SEQUENCE rw_customers_id_seq CASCADE;
ALTER TYPE rw_address DROP ATTRIBUTE city CASCADE;
ALTER TYPE rw_address ALTER ATTRIBUTE street TYPE varchar(10) CASCADE;
ALTER TYPE rw_status RENAME VALUE 'open' TO 'Pepsi Regular';
SELECT lo_create(4242) AS lo;
SELECT lo_unlink(4242);
-- From PL/pgSQL and by the table's owner too.
\c - rw_dev
DO $$ BEGIN ALTER TABLE rw_customers ALTER COLUMN score TYPE text; END $$;
BEGIN;
SET LOCAL prodguard.override = 'I own the table';
ALTER TABLE rw_customers SET UNLOGGED;
ROLLBACK;
\c - postgres
-- Not refused: what destroys nothing or is not covered.
ALTER TABLE rw_orders DROP CONSTRAINT rw_orders_total_check;      -- a CHECK constraint
DROP INDEX rw_orders_total;                                       -- a plain index
ALTER TYPE rw_status ADD VALUE 'archived';                        -- nothing stored changes
CREATE SEQUENCE rw_free_seq;
DROP SEQUENCE rw_free_seq;                                        -- used by no column
CREATE TYPE rw_unused AS (a int);
ALTER TYPE rw_unused DROP ATTRIBUTE a;                            -- used by no table
CREATE TABLE rw_empty (id int PRIMARY KEY, v text);
ALTER TABLE rw_empty ALTER COLUMN v TYPE int USING NULL;           -- no rows
ALTER TABLE rw_empty SET UNLOGGED;
ALTER TABLE rw_empty DROP CONSTRAINT rw_empty_pkey;
BEGIN;
SELECT lo_create(4343) AS lo;
SELECT lo_unlink(4343);                                           -- created in this transaction
COMMIT;
SELECT count(*) AS customers, count(score) AS scores, (SELECT count(*) FROM rw_orders) AS orders,
       (SELECT relpersistence FROM pg_class WHERE relname = 'rw_customers') AS persistence,
       (SELECT count(*) FROM pg_constraint WHERE conrelid = 'rw_orders'::regclass) AS order_constraints,
       (SELECT count(*) FROM pg_largeobject_metadata WHERE oid = 4242) AS large_objects
  FROM rw_customers;

-- With an operator's override they run and are recorded; the rows of a protected table
-- whose column is rewritten are backed up first.
SELECT prodguard.protect('rw_customers');
BEGIN;
SET LOCAL prodguard.override = 'CHG-20: scores become whole numbers';
ALTER TABLE rw_customers ALTER COLUMN score TYPE int USING round(score);
ALTER TABLE rw_orders DROP CONSTRAINT rw_orders_customer_fk;
SELECT lo_unlink(4242);
COMMIT;
SELECT action, object, override_reason FROM prodguard.audit_log
 WHERE override_reason LIKE 'CHG-20%' ORDER BY id;
SELECT b.row_data FROM prodguard.backup_row b JOIN prodguard.audit_log a ON a.id = b.audit_id
 WHERE a.override_reason LIKE 'CHG-20%';

-- ALTER SYSTEM of the preload settings that would unload pg_prodguard.
ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements';
ALTER SYSTEM RESET shared_preload_libraries;
ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements, pg_prodguard';
ALTER SYSTEM RESET shared_preload_libraries;
\echo :LAST_ERROR_SQLSTATE
SET prodguard.override = 'test: put the preload line back as it was';
ALTER SYSTEM RESET shared_preload_libraries;

-- INSERT ... ON CONFLICT DO UPDATE: the rows it updates count toward max_rows_changed
-- (new rows do not).
CREATE TABLE rw_prices (sku int PRIMARY KEY, price int);
INSERT INTO rw_prices SELECT g, 1 FROM generate_series(1, 30) g;
BEGIN;
SET LOCAL prodguard.override = 'test: a low limit';
SET LOCAL prodguard.max_rows_changed = 20;
RESET prodguard.override;
INSERT INTO rw_prices SELECT g, 2 FROM generate_series(1, 25) g
    ON CONFLICT (sku) DO UPDATE SET price = excluded.price;
ROLLBACK;
BEGIN;
SET LOCAL prodguard.override = 'test: a low limit';
SET LOCAL prodguard.max_rows_changed = 20;
RESET prodguard.override;
-- 40 rows: 10 updated, 30 new
INSERT INTO rw_prices SELECT g, 2 FROM generate_series(21, 60) g
    ON CONFLICT (sku) DO UPDATE SET price = excluded.price;
-- 25 conflicts, but the WHERE lets only 5 be updated
INSERT INTO rw_prices SELECT g, 3 FROM generate_series(1, 25) g
    ON CONFLICT (sku) DO UPDATE SET price = excluded.price WHERE rw_prices.sku <= 5;
-- inside a CTE
WITH up AS (INSERT INTO rw_prices SELECT g, 4 FROM generate_series(1, 25) g
    ON CONFLICT (sku) DO UPDATE SET price = excluded.price RETURNING sku)
SELECT count(*) FROM up;
ROLLBACK;

-- Development: silent.
CREATE DATABASE rw_devdb;
BEGIN;
SET LOCAL prodguard.override = 'test: a development copy';
ALTER DATABASE rw_devdb SET prodguard.environment = 'development';
COMMIT;
\c rw_devdb
CREATE TABLE t (id int PRIMARY KEY, v numeric, w int);
INSERT INTO t VALUES (1, 1.5, 1);
ALTER TABLE t ALTER COLUMN v TYPE int USING NULL;
ALTER TABLE t SET UNLOGGED;
ALTER TABLE t DROP CONSTRAINT t_pkey;
SELECT lo_create(5151) AS lo;
SELECT lo_unlink(5151);
\c app
