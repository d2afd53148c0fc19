-- Protected tables: prodguard.protect(tbl, audit, test_data, forbid_delete). On a table
-- protected with forbid_delete, in production, DELETE, TRUNCATE and DROP TABLE are refused
-- (42501); INSERT and UPDATE are allowed.
CREATE TABLE extractions (id int PRIMARY KEY, store text, accuracy numeric);
INSERT INTO extractions VALUES (9, 'Co-op Food', 0.91), (10, 'Tesco Metro', 0.88);
SELECT prodguard.protect('extractions', forbid_delete => true);
SELECT prodguard.protect('extractions', forbid_delete => true);   -- idempotent
SELECT * FROM prodguard.protected_tables ORDER BY table_name::text;
DELETE FROM extractions WHERE id = 10;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE extractions;
DROP TABLE extractions;
INSERT INTO extractions VALUES (11, 'Spar', 0.95);
UPDATE extractions SET accuracy = 0.92 WHERE id = 9;
MERGE INTO extractions e USING (VALUES (11)) v(id) ON e.id = v.id WHEN MATCHED THEN DELETE;
-- forbid_delete holds whatever prodguard.blocked_commands says.
BEGIN;
SET LOCAL prodguard.override = 'test: no command tokens';
SET LOCAL prodguard.blocked_commands = '';
SET LOCAL prodguard.override = '';
TRUNCATE extractions;
ROLLBACK;

-- Migration-history tables are protected as soon as they exist, in any schema, whether
-- they were there before CREATE EXTENSION (see install) or are created later.
CREATE SCHEMA supabase_migrations;
CREATE TABLE supabase_migrations.schema_migrations (version text PRIMARY KEY, name text);
CREATE TABLE public._prisma_migrations (id text PRIMARY KEY, migration_name text);
CREATE TABLE flyway_schema_history (installed_rank int PRIMARY KEY, version text);
INSERT INTO supabase_migrations.schema_migrations VALUES ('20240101', 'init'), ('20240201', 'audio');
SELECT table_name, forbid_delete, migration_history FROM prodguard.protected_tables
 WHERE migration_history ORDER BY table_name::text;
DELETE FROM supabase_migrations.schema_migrations;
DELETE FROM supabase_migrations.schema_migrations WHERE version = '20240201';
TRUNCATE supabase_migrations.schema_migrations;
DROP TABLE _prisma_migrations;
DROP SCHEMA supabase_migrations CASCADE;
-- A migration tool may still record new migrations and rename them.
INSERT INTO supabase_migrations.schema_migrations VALUES ('20240301', 'refinements');
UPDATE supabase_migrations.schema_migrations SET name = 'audio tracks' WHERE version = '20240201';
SELECT count(*) AS migrations FROM supabase_migrations.schema_migrations;
-- unprotect() cannot switch off the automatic protection.
BEGIN;
SET LOCAL prodguard.override = 'test';
SELECT prodguard.unprotect('flyway_schema_history');
ROLLBACK;

-- Partitioned tables: protecting the parent covers every partition, also later ones.
CREATE TABLE vision_versions (id int, made date, body text) PARTITION BY RANGE (made);
CREATE TABLE vision_versions_2024 PARTITION OF vision_versions FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
SELECT prodguard.protect('vision_versions', forbid_delete => true);
CREATE TABLE vision_versions_2025 PARTITION OF vision_versions FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO vision_versions VALUES (1, '2024-05-01', 'a'), (2, '2025-05-01', 'b');
DELETE FROM vision_versions WHERE id = 1;
DELETE FROM vision_versions_2025 WHERE id = 2;
TRUNCATE vision_versions_2024;
DROP TABLE vision_versions_2025;

-- Bad input.
CREATE VIEW extraction_stores AS SELECT store FROM extractions;
SELECT prodguard.protect('extraction_stores');
\echo :LAST_ERROR_SQLSTATE
CREATE MATERIALIZED VIEW extraction_summary AS SELECT count(*) FROM extractions;
SELECT prodguard.protect('extraction_summary');
CREATE TEMP TABLE scratch (id int);
SELECT prodguard.protect('scratch');
\echo :LAST_ERROR_SQLSTATE
SELECT prodguard.protect('no_such_table');
\echo :LAST_ERROR_SQLSTATE
SELECT prodguard.protect(NULL);
-- Quoted and Unicode names work like any other.
CREATE TABLE "Café Orders ""EU""" (id int);
INSERT INTO "Café Orders ""EU""" VALUES (1);
SELECT prodguard.protect('"Café Orders ""EU"""', audit => false, test_data => false, forbid_delete => true);
DELETE FROM "Café Orders ""EU""" WHERE id = 1;
SELECT table_name, audit, test_data, forbid_delete FROM prodguard.protected_tables
 WHERE table_name::text LIKE '%Café%';

-- Who may protect: the table's owner or an operator.
CREATE ROLE shelf_owner LOGIN;
CREATE ROLE shelf_reader LOGIN;
CREATE TABLE shelf_images (id int);
ALTER TABLE shelf_images OWNER TO shelf_owner;
GRANT SELECT ON shelf_images TO shelf_reader;
\c - shelf_reader
SELECT prodguard.protect('shelf_images');
\c - shelf_owner
SELECT prodguard.protect('shelf_images', forbid_delete => true);
-- Lowering an option, or unprotecting, needs an override in production...
SELECT prodguard.protect('shelf_images', forbid_delete => false);
SELECT prodguard.unprotect('shelf_images');
\echo :LAST_ERROR_SQLSTATE
-- ...which the owner, not an operator, cannot give.
BEGIN;
SET LOCAL prodguard.override = 'I own it';
SELECT prodguard.unprotect('shelf_images');
ROLLBACK;
\c - postgres
BEGIN;
SET LOCAL prodguard.override = 'CHG-31: shelf images move to object storage';
SELECT prodguard.unprotect('shelf_images');
COMMIT;
SELECT count(*) AS still_protected FROM prodguard.protected_tables WHERE table_name = 'shelf_images'::regclass;
SELECT prodguard.unprotect('shelf_images');
SELECT action, object, override_reason FROM prodguard.audit_log
 WHERE override_reason LIKE 'CHG-31%' ORDER BY id;

-- Dropping a protected table (here in a transaction with an override) forgets its row.
CREATE TABLE old_exports (id int);
SELECT prodguard.protect('old_exports');
BEGIN;
SET LOCAL prodguard.override = 'CHG-32: remove old exports';
DROP TABLE old_exports;
COMMIT;
SELECT count(*) AS rows_for_dropped_tables FROM prodguard.table_protection p
 WHERE NOT EXISTS (SELECT FROM pg_class c WHERE c.oid = p.table_name::oid);

-- status() counts them.
SELECT value FROM prodguard.status() WHERE setting = 'protected_tables';

-- A migration-history table that existed before CREATE EXTENSION is protected too.
CREATE DATABASE legacy_app;
\c legacy_app
CREATE TABLE _sqlx_migrations (version bigint PRIMARY KEY, description text);
INSERT INTO _sqlx_migrations VALUES (1, 'init'), (2, 'users');
CREATE EXTENSION pg_prodguard;
SELECT table_name, forbid_delete, migration_history FROM prodguard.protected_tables;
DELETE FROM _sqlx_migrations WHERE version = 2;
-- An operator's override lets one DELETE through, and it is recorded; a non-operator's
-- does not.
CREATE ROLE legacy_ops LOGIN IN ROLE prodguard_operator;
CREATE ROLE legacy_dev LOGIN;
GRANT ALL ON _sqlx_migrations TO legacy_ops, legacy_dev;
\c - legacy_dev
BEGIN;
SET LOCAL prodguard.override = 'repair the migration table';
DELETE FROM _sqlx_migrations WHERE version = 2;
ROLLBACK;
\c - legacy_ops
BEGIN;
SET LOCAL prodguard.override = 'CHG-40: migration 2 was applied by mistake and reverted by hand';
DELETE FROM _sqlx_migrations WHERE version = 2;
COMMIT;
\c - postgres
SELECT action, object, override_reason, db_user FROM prodguard.audit_log ORDER BY id;
SELECT version FROM _sqlx_migrations;

-- Staging warns and lets it run; development is silent.
BEGIN;
SET LOCAL prodguard.override = 'test: staging';
SET LOCAL prodguard.environment = 'staging';
DELETE FROM _sqlx_migrations WHERE version = 1;
TRUNCATE _sqlx_migrations;
ROLLBACK;
BEGIN;
SET LOCAL prodguard.override = 'test: development';
SET LOCAL prodguard.environment = 'development';
SET LOCAL prodguard.override = '';
DELETE FROM _sqlx_migrations WHERE version = 1;
TRUNCATE _sqlx_migrations;
DROP TABLE _sqlx_migrations;
ROLLBACK;
\c app

-- Renaming a migration-history table away would lose its protection: refused.
ALTER TABLE flyway_schema_history RENAME TO flyway_old;
ALTER TABLE flyway_schema_history RENAME COLUMN version TO script_version;

-- The guard's own queries run with a pinned search_path: objects in the caller's schemas
-- cannot stand in for the functions and operators they use.
CREATE SCHEMA shadow;
CREATE FUNCTION shadow.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT 'epoch'::timestamptz $$;
CREATE FUNCTION shadow.oid_eq(oid, oid) RETURNS boolean LANGUAGE sql AS $$ SELECT false $$;
CREATE OPERATOR shadow.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = shadow.oid_eq);
SET search_path = shadow, public, pg_catalog;
CREATE TABLE public.shadowed (id int);
SELECT prodguard.protect('public.shadowed', forbid_delete => true);
DELETE FROM public.shadowed WHERE id = 1;
BEGIN;
SET LOCAL prodguard.override = 'CHG-50: shadow test';
TRUNCATE public.shadowed;
COMMIT;
RESET search_path;
SELECT protected_at > 'epoch' AS real_clock FROM prodguard.table_protection
 WHERE table_name = 'public.shadowed'::regclass;
SELECT count(*) AS audited FROM prodguard.audit_log WHERE override_reason = 'CHG-50: shadow test';

-- forbid_delete also holds for tables a statement reaches without naming them, even with
-- every command token switched off: TRUNCATE ... CASCADE through a foreign key, and
-- DROP SCHEMA ... CASCADE.
CREATE TABLE stores (id int PRIMARY KEY);
CREATE TABLE store_scans (id int PRIMARY KEY, store int REFERENCES stores);
CREATE TABLE scan_notes (scan int REFERENCES store_scans);
SELECT prodguard.protect('scan_notes', forbid_delete => true);
CREATE SCHEMA rails;
CREATE TABLE rails.schema_migrations (version text PRIMARY KEY);
BEGIN;
SET LOCAL prodguard.override = 'test: no command tokens';
SET LOCAL prodguard.blocked_commands = '';
SET LOCAL prodguard.override = '';
SAVEPOINT s;
TRUNCATE stores CASCADE;
ROLLBACK TO s;
TRUNCATE stores;
ROLLBACK TO s;
DROP SCHEMA rails CASCADE;
ROLLBACK;
