-- The compiled dictionaries are shared by the server's sessions (issue 19): one file per
-- database, installation and dictionary generation under $PGDATA/pg_prodguard/, mapped
-- read-only. A
-- generation that is not committed is never written; a damaged file is rebuilt.
CREATE TABLE sm_products (id int PRIMARY KEY, name text);
SELECT prodguard.protect('sm_products', audit => false);
SELECT prodguard.dictionary_add('sm_fixtures', ARRAY['Dandelion Burdock']);
-- The next session builds the matcher of this generation and writes it for the others.
\c
\set VERBOSITY terse
INSERT INTO sm_products VALUES (1, 'dandelion  burdock');
\set VERBOSITY default
SELECT count(*) AS files,
       bool_and(f = 'matcher.' || (SELECT oid FROM pg_database WHERE datname = current_database())
                    || '.' || 'prodguard.dictionary'::regclass::oid || '.' || (SELECT generation FROM prodguard.dictionary_generation)) AS named_by_generation
  FROM pg_ls_dir('pg_prodguard') f
 WHERE f LIKE 'matcher.' || (SELECT oid FROM pg_database WHERE datname = current_database()) || '.%';
-- A session that maps it refuses the same rows.
\c
\set VERBOSITY terse
INSERT INTO sm_products VALUES (2, 'Dandelion Burdock');
\set VERBOSITY default
-- A change in force in its own transaction only: built in that session's memory, never
-- written (its generation may yet roll back).
BEGIN;
SELECT prodguard.dictionary_add('sm_fixtures', ARRAY['Ginger Beer Shandy']);
SAVEPOINT s;
\set VERBOSITY terse
INSERT INTO sm_products VALUES (3, 'ginger beer shandy');
\set VERBOSITY default
ROLLBACK TO s;
SELECT count(*) AS files_of_uncommitted_generation
  FROM pg_ls_dir('pg_prodguard') f
 WHERE f LIKE 'matcher.' || (SELECT oid FROM pg_database WHERE datname = current_database())
              || '.' || 'prodguard.dictionary'::regclass::oid || '.' || (SELECT generation FROM prodguard.dictionary_generation);
ROLLBACK;
-- Rolled back: no session refuses it, this one or a new one.
INSERT INTO sm_products VALUES (3, 'ginger beer shandy');
\c
INSERT INTO sm_products VALUES (4, 'ginger beer shandy');
-- A committed change: a new generation, a new file, the old one removed.
SELECT prodguard.dictionary_add('sm_fixtures', ARRAY['Cream Soda Float']);
\c
\set VERBOSITY terse
INSERT INTO sm_products VALUES (5, 'cream soda float');
\set VERBOSITY default
SELECT count(*) AS files,
       bool_and(f = 'matcher.' || (SELECT oid FROM pg_database WHERE datname = current_database())
                    || '.' || 'prodguard.dictionary'::regclass::oid || '.' || (SELECT generation FROM prodguard.dictionary_generation)) AS named_by_generation
  FROM pg_ls_dir('pg_prodguard') f
 WHERE f LIKE 'matcher.' || (SELECT oid FROM pg_database WHERE datname = current_database()) || '.%';
-- A damaged file is not trusted: the next session builds the matcher again and replaces it.
SELECT format('COPY (SELECT ''not a matcher'') TO %L',
              current_setting('data_directory') || '/pg_prodguard/matcher.' || (SELECT oid FROM pg_database WHERE datname = current_database())
              || '.' || 'prodguard.dictionary'::regclass::oid || '.' || (SELECT generation FROM prodguard.dictionary_generation)) AS damage \gset
:damage;
\c
\set VERBOSITY terse
INSERT INTO sm_products VALUES (6, 'Dandelion Burdock');
\set VERBOSITY default
SELECT (pg_stat_file('pg_prodguard/matcher.' || (SELECT oid FROM pg_database WHERE datname = current_database())
        || '.' || 'prodguard.dictionary'::regclass::oid || '.' || (SELECT generation FROM prodguard.dictionary_generation))).size > 1000 AS rebuilt;
-- The generation is the extension's: not writable by others, moved on by every change.
SET ROLE prodguard_operator;
SELECT generation FROM prodguard.dictionary_generation;
RESET ROLE;
SELECT id, name FROM sm_products ORDER BY id;
-- The file of a dropped database goes when the next file is written.
CREATE DATABASE sm_gone;
\c sm_gone
CREATE EXTENSION pg_prodguard;
SELECT prodguard.dictionary_add('sm_gone_fixtures', ARRAY['Root Beer Float']);
\c sm_gone
SELECT dictionary, pattern FROM prodguard.scan('one root beer float');
\c app
SELECT oid AS gone_oid FROM pg_database WHERE datname = 'sm_gone' \gset
SELECT count(*) AS files_of_sm_gone FROM pg_ls_dir('pg_prodguard') f WHERE f LIKE 'matcher.' || :gone_oid || '.%';
SET prodguard.override = 'shared matcher test: drop a scratch database';
DROP DATABASE sm_gone;
RESET prodguard.override;
SELECT prodguard.dictionary_add('sm_fixtures', ARRAY['Sarsaparilla Twist']);
\c
\set VERBOSITY terse
INSERT INTO sm_products VALUES (7, 'sarsaparilla twist');
\set VERBOSITY default
SELECT count(*) AS files_of_sm_gone FROM pg_ls_dir('pg_prodguard') f WHERE f LIKE 'matcher.' || :gone_oid || '.%';
-- A session whose REPEATABLE READ transaction began before a change reads the dictionaries
-- as of its snapshot, and the change is in force from its next transaction.
CREATE EXTENSION IF NOT EXISTS dblink;
SELECT dblink_connect('sm_other', format('host=%s port=%s dbname=%s',
    current_setting('unix_socket_directories'), current_setting('port'), current_database()));
SELECT dblink_exec('sm_other', $$INSERT INTO sm_products VALUES (8, 'hello')$$);
SELECT dblink_exec('sm_other', 'BEGIN ISOLATION LEVEL REPEATABLE READ');
SELECT * FROM dblink('sm_other', 'SELECT 1') AS t(x int);
SELECT prodguard.dictionary_add('sm_fixtures', ARRAY['Zebra Quux']);
SELECT dblink_exec('sm_other', $$INSERT INTO sm_products VALUES (9, 'Zebra Quux')$$);
SELECT dblink_exec('sm_other', 'COMMIT');
SELECT dblink_exec('sm_other', $$INSERT INTO sm_products VALUES (10, 'Zebra Quux again')$$);
SELECT dblink_disconnect('sm_other');
SELECT id, name FROM sm_products WHERE id >= 8 ORDER BY id;
