-- Coverage by schema (SPEC §10, issue 16): protect_schema() protects a schema's tables now
-- and those created or moved there later, in the creating transaction; unprotect_schema()
-- needs an override in production. And the test-data trigger is not silenced by
-- session_replication_role = replica.
CREATE SCHEMA shop;
CREATE TABLE shop.customers (id int PRIMARY KEY, name text);
CREATE TABLE shop.orders (id int, placed date, note text, PRIMARY KEY (id, placed)) PARTITION BY RANGE (placed);
CREATE TABLE shop.orders_2026 PARTITION OF shop.orders FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE VIEW shop.customer_names AS SELECT name FROM shop.customers;
CREATE TEMP TABLE scratch (id int);
SELECT prodguard.protect_schema('shop');
SELECT table_name, audit, test_data, forbid_delete, via FROM prodguard.protected_tables
 WHERE table_name::text LIKE 'shop.%' ORDER BY table_name::text;
-- A table created later is protected in the transaction that creates it, whatever creates it.
BEGIN;
CREATE TABLE shop.invoices (id int PRIMARY KEY, customer text);
SELECT via FROM prodguard.protected_tables WHERE table_name = 'shop.invoices'::regclass;
INSERT INTO shop.invoices VALUES (1, 'John Doe');
ROLLBACK;
CREATE TABLE shop.invoices (id int PRIMARY KEY, customer text);
CREATE TABLE shop.order_copy AS SELECT * FROM shop.orders;
SELECT * INTO shop.customer_copy FROM shop.customers;
CREATE TABLE shop.orders_2027 PARTITION OF shop.orders FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
CREATE TABLE public.moved (id int PRIMARY KEY, v text);
ALTER TABLE public.moved SET SCHEMA shop;
SELECT table_name, via FROM prodguard.protected_tables
 WHERE table_name::text IN ('shop.invoices', 'shop.order_copy', 'shop.customer_copy', 'shop.orders_2027', 'shop.moved')
 ORDER BY table_name::text;
-- ... and its rows are audited and checked like any protected table's.
INSERT INTO shop.moved VALUES (1, 'real value');
INSERT INTO shop.moved VALUES (2, 'Jane Doe');
SELECT action, table_name FROM prodguard.audit_log WHERE table_name = 'moved' ORDER BY id;
-- A table given its own options with protect() keeps them.
SELECT prodguard.protect('shop.customers', forbid_delete => true);
SELECT via, forbid_delete FROM prodguard.protected_tables WHERE table_name = 'shop.customers'::regclass;
-- Again: idempotent, counts the tables it protects through the schema.
SELECT prodguard.protect_schema('shop');

-- Bad input.
SELECT prodguard.protect_schema('no_such_schema');
SELECT prodguard.protect_schema('pg_catalog');
SELECT prodguard.protect_schema('prodguard');
SELECT prodguard.protect_schema(NULL);
-- Only the schema's owner or an operator.
CREATE ROLE sc_nobody LOGIN;
SET ROLE sc_nobody;
SELECT prodguard.protect_schema('shop');
SELECT prodguard.unprotect_schema('shop');
RESET ROLE;
-- Lowering the options, or unprotecting, needs an override in production ...
SELECT prodguard.protect_schema('shop', test_data => false);
SELECT prodguard.unprotect_schema('shop');
-- ... and an override from a non-operator does not count.
CREATE ROLE sc_owner LOGIN;
CREATE SCHEMA owned AUTHORIZATION sc_owner;
SELECT prodguard.protect_schema('owned');
SET ROLE sc_owner;
BEGIN;
SET LOCAL prodguard.override = 'I own it';
SELECT prodguard.unprotect_schema('owned');
ROLLBACK;
RESET ROLE;
-- With an operator's override it runs and is recorded; protect()'s own table stays.
BEGIN;
SET LOCAL prodguard.override = 'CHG-5001: shop moves to its own database';
SELECT prodguard.unprotect_schema('shop');
COMMIT;
SELECT table_name, via FROM prodguard.protected_tables WHERE table_name::text LIKE 'shop.%' ORDER BY table_name::text;
SELECT action, object, override_reason FROM prodguard.audit_log WHERE override_reason LIKE 'CHG-5001%';
CREATE TABLE shop.after (id int);
SELECT count(*) FROM prodguard.protected_tables WHERE table_name = 'shop.after'::regclass;
SELECT prodguard.unprotect_schema('shop');

-- session_replication_role = replica does not silence the test-data trigger.
CREATE TABLE sc_people (id int PRIMARY KEY, name text);
SELECT prodguard.protect('sc_people');
SELECT tgenabled FROM pg_trigger WHERE tgrelid = 'sc_people'::regclass AND tgname = 'zz_prodguard_a_test_data';
SET session_replication_role = replica;
INSERT INTO sc_people VALUES (1, 'John Doe');
RESET session_replication_role;
-- and switching it back to ORIGIN is guarded like switching it off
ALTER TABLE sc_people ENABLE TRIGGER zz_prodguard_a_test_data;

-- In a development database, nothing of this needs an override.
CREATE DATABASE sc_dev;
BEGIN;
SET LOCAL prodguard.override = 'test: tag the development copy';
ALTER DATABASE sc_dev SET prodguard.environment = 'development';
COMMIT;
\c sc_dev
CREATE EXTENSION pg_prodguard;
CREATE SCHEMA app;
CREATE TABLE app.t (id int);
SELECT prodguard.protect_schema('app');
CREATE TABLE app.u (id int);
SELECT table_name, via FROM prodguard.protected_tables ORDER BY table_name::text;
SELECT prodguard.protect_schema('app', audit => false);
SELECT prodguard.unprotect_schema('app');
SELECT count(*) FROM prodguard.protected_tables;
\c app
DROP DATABASE sc_dev;
BEGIN;
SET LOCAL prodguard.override = 'test: clean up';
DROP SCHEMA owned;
COMMIT;
SELECT count(*) FROM prodguard.schema_protection WHERE schema_name::text = 'owned';
DROP ROLE sc_nobody;
DROP ROLE sc_owner;
-- Unlogged tables of a protected schema are protected too; pg_prodguard's event triggers
-- cannot be switched off or renamed without an override (issue 16 review).
CREATE SCHEMA sc_more;
SELECT prodguard.protect_schema('sc_more');
CREATE UNLOGGED TABLE sc_more.scratchpad (note text);
SELECT via FROM prodguard.protected_tables WHERE table_name = 'sc_more.scratchpad'::regclass;
ALTER EVENT TRIGGER prodguard_protect_new_tables DISABLE;
ALTER EVENT TRIGGER prodguard_protect_new_tables RENAME TO off_now;
ALTER EVENT TRIGGER prodguard_forget_dropped_tables DISABLE;
SELECT evtname, evtenabled FROM pg_event_trigger WHERE evtname LIKE 'prodguard%' ORDER BY 1;
