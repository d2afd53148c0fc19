-- The command guard: in a production database, the statements a "db reset" is made of are
-- refused (SQLSTATE 42501), wherever they come from.
SHOW prodguard.environment;

CREATE TABLE profiles (id int PRIMARY KEY, name text, email text);
INSERT INTO profiles VALUES (1, 'Ada', 'ada@lovelace.example'), (2, 'Grace', NULL);
CREATE TABLE audio_tracks (id int PRIMARY KEY, profile_id int REFERENCES profiles);
INSERT INTO audio_tracks VALUES (10, 1);
CREATE MATERIALIZED VIEW profile_names AS SELECT name FROM profiles;
CREATE SCHEMA archive;
CREATE TABLE archive.old_profiles (id int);
CREATE ROLE intern;

-- Incident B, statement by statement.
TRUNCATE profiles;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE audio_tracks, profiles CASCADE;
TRUNCATE ONLY audio_tracks;
DROP TABLE audio_tracks;
DROP MATERIALIZED VIEW profile_names;
DROP SCHEMA archive CASCADE;
DROP SCHEMA public CASCADE;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE profiles DROP COLUMN email;
ALTER TABLE profiles ADD COLUMN phone text, DROP COLUMN name;
DROP OWNED BY intern;
-- The extension itself and its schema are always guarded, whatever blocked_commands says.
DROP EXTENSION pg_prodguard;
DROP SCHEMA prodguard CASCADE;
DROP TABLE prodguard.audit_log;
TRUNCATE prodguard.audit_log;

-- Nothing was destroyed.
SELECT (SELECT count(*) FROM profiles) AS profiles, (SELECT count(*) FROM audio_tracks) AS tracks,
       (SELECT count(*) FROM information_schema.columns WHERE table_name = 'profiles') AS profile_columns;

-- The guard sees the statement wherever it runs: DO blocks, PL/pgSQL (also dynamic SQL),
-- SQL functions, SECURITY DEFINER functions.
DO $$ BEGIN TRUNCATE profiles; END $$;
CREATE FUNCTION reset_profiles() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE 'TRUNCATE ' || quote_ident('profiles');
END $$;
SELECT reset_profiles();
CREATE FUNCTION drop_tracks() RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = public
    AS 'DROP TABLE audio_tracks';
SELECT drop_tracks();
SELECT count(*) AS tracks_left FROM audio_tracks;

-- Not guarded: objects that do not exist (IF EXISTS destroys nothing; PostgreSQL reports
-- the rest), temporary tables (a session's own scratch space), and other statements.
DROP TABLE IF EXISTS no_such_table;
DROP TABLE no_such_table;
DROP SCHEMA IF EXISTS no_such_schema;
CREATE TEMP TABLE scratch AS SELECT 1 AS a, 2 AS b;
TRUNCATE scratch;
ALTER TABLE scratch DROP COLUMN b;
DROP TABLE scratch;
CREATE TABLE notes (id int);
INSERT INTO notes VALUES (1);
CREATE INDEX notes_id ON notes (id);
DROP INDEX notes_id;
CREATE VIEW v_profiles AS SELECT id FROM profiles;
DROP VIEW v_profiles;

-- A token left out of prodguard.blocked_commands is not guarded. Changing the list in
-- production needs an override itself (see settings_guard).
BEGIN;
SET LOCAL prodguard.override = 'test: allow TRUNCATE of scratch tables';
SET LOCAL prodguard.blocked_commands = 'drop_table, drop_schema, drop_database, drop_column, drop_owned, guard_settings';
SET LOCAL prodguard.override = '';
TRUNCATE notes;
INSERT INTO notes VALUES (2);
DROP TABLE notes;
ROLLBACK;

-- Staging: the same statements only warn, and run. Development: silent.
CREATE DATABASE app_staging;
CREATE DATABASE app_dev;
BEGIN;
SET LOCAL prodguard.override = 'test: tag the staging and development copies';
ALTER DATABASE app_staging SET prodguard.environment = 'staging';
ALTER DATABASE app_dev SET prodguard.environment = 'development';
COMMIT;
\c app_staging
CREATE EXTENSION pg_prodguard;
SHOW prodguard.environment;
CREATE TABLE profiles (id int PRIMARY KEY, name text);
INSERT INTO profiles VALUES (1, 'Ada');
CREATE MATERIALIZED VIEW profile_names AS SELECT id FROM profiles;
CREATE SCHEMA archive;
CREATE ROLE staging_intern;
TRUNCATE profiles;
INSERT INTO profiles VALUES (1, 'Ada');
ALTER TABLE profiles DROP COLUMN name;
DROP MATERIALIZED VIEW profile_names;
DROP TABLE profiles;
DROP SCHEMA archive;
DROP OWNED BY staging_intern;
ALTER DATABASE app_staging SET prodguard.blocked_commands = 'truncate';
ALTER DATABASE app_staging RESET prodguard.blocked_commands;
ALTER ROLE staging_intern IN DATABASE app_staging SET prodguard.environment = 'development';
-- A cluster-wide change reaches the production databases too: refused even from staging.
ALTER ROLE staging_intern SET prodguard.environment = 'development';
-- Commands that ran with a warning are in the audit log.
SELECT action, object, environment, override_reason FROM prodguard.audit_log ORDER BY id;
DROP EXTENSION pg_prodguard;
\c app_dev
SHOW prodguard.environment;
CREATE EXTENSION pg_prodguard;
CREATE TABLE profiles (id int PRIMARY KEY, name text);
CREATE MATERIALIZED VIEW profile_names AS SELECT id FROM profiles;
CREATE ROLE dev_intern;
TRUNCATE profiles;
ALTER TABLE profiles DROP COLUMN name;
DROP MATERIALIZED VIEW profile_names;
DROP TABLE profiles;
DROP OWNED BY dev_intern;
ALTER DATABASE app_dev SET prodguard.blocked_commands = 'truncate';
ALTER DATABASE app_dev RESET prodguard.blocked_commands;
ALTER ROLE dev_intern IN DATABASE app_dev SET prodguard.environment = 'staging';
-- Development databases keep no audit rows for commands.
SELECT count(*) AS audit_rows FROM prodguard.audit_log;
DROP EXTENSION pg_prodguard;
DROP SCHEMA public CASCADE;
\c app
