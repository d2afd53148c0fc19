-- The script bin/demo runs against a fresh cluster. It reads like a DBA's session.
\set ECHO queries
\pset footer off

\echo
\echo '== 1. A production database. Nothing in postgresql.conf tags it, so it is production.'
CREATE EXTENSION pg_prodguard;
SELECT setting, value FROM prodguard.status()
 WHERE setting IN ('environment', 'preloaded', 'command_guard.truncate', 'command_guard.drop_schema', 'command_guard.drop_database');

CREATE TABLE profiles (id int PRIMARY KEY, name text, created_at timestamptz DEFAULT now());
CREATE TABLE audio_tracks (id int PRIMARY KEY, profile_id int REFERENCES profiles, title text);
CREATE SCHEMA supabase_migrations;
CREATE TABLE supabase_migrations.schema_migrations (version text PRIMARY KEY, name text);
INSERT INTO profiles (id, name) VALUES (1, 'Ada'), (2, 'Grace'), (3, 'Katherine');
INSERT INTO audio_tracks VALUES (10, 1, 'intro'), (11, 2, 'chorus');
INSERT INTO supabase_migrations.schema_migrations VALUES
    ('20240101000000', 'init'), ('20240201000000', 'audio'), ('20240301000000', 'refinements');

\echo
\echo '== 2. Incident B replayed: a "db reset" pointed at production.'
TRUNCATE profiles CASCADE;
DROP SCHEMA public CASCADE;
\set ECHO none
SELECT current_setting('prodguard.require_where', true) IS NOT NULL AS row_guard_available \gset
\set ECHO queries
\if :row_guard_available
DELETE FROM supabase_migrations.schema_migrations;
\echo '-- a migration "repair" that reverts every migration, one by one:'
DELETE FROM supabase_migrations.schema_migrations WHERE version >= '20240101';
\else
\echo '(DELETE FROM supabase_migrations.schema_migrations: the row guard is not in this version yet)'
\endif
\echo
\echo '-- from the maintenance database:'
\c postgres
DROP DATABASE app;
DROP DATABASE app WITH (FORCE);
\c app

\echo
\echo '== 3. Nothing was lost.'
SELECT (SELECT count(*) FROM profiles) AS profiles,
       (SELECT count(*) FROM audio_tracks) AS audio_tracks,
       (SELECT count(*) FROM supabase_migrations.schema_migrations) AS migrations;

\echo
\echo '== 4. A developer cannot switch the guard off, nor break glass.'
CREATE ROLE dev_bob LOGIN;
GRANT ALL ON ALL TABLES IN SCHEMA public TO dev_bob;
\echo '-- connected as dev_bob, a developer:'
\c - dev_bob
BEGIN;
SET LOCAL prodguard.override = 'just testing';
TRUNCATE audio_tracks;
ROLLBACK;
\echo '-- connected as postgres, a superuser without an override:'
\c - postgres
SET prodguard.environment = 'development';

\echo
\echo '== 5. An operator breaks glass: SET LOCAL prodguard.override = <reason>, in one transaction.'
CREATE ROLE carol_ops LOGIN IN ROLE prodguard_operator;
GRANT TRUNCATE ON audio_tracks TO carol_ops;
\echo '-- connected as carol_ops, a member of prodguard_operator:'
\c - carol_ops
BEGIN;
SET LOCAL prodguard.override = 'INC-2041: remove the fixture tracks loaded by add_test_data.py';
TRUNCATE audio_tracks;
COMMIT;
\echo '-- the next transaction is guarded again:'
TRUNCATE audio_tracks;
\c - postgres

\echo
\echo '== 6. The audit row the override left (prodguard.audit_log).'
\x on
SELECT id, action, object, override_reason, db_user, "session_user", application_name,
       environment, statement, txid IS NOT NULL AS has_txid
  FROM prodguard.audit_log ORDER BY id;
\x off

\echo
\echo '== 7. Who tried what: every refusal above, although each rolled back (prodguard.denied_attempts).'
-- the denial writer runs in the background; give it a moment
SELECT pg_sleep(0.5);
SELECT at::time(0) AS at, db_user, application_name, guard, command, object
  FROM prodguard.denied_attempts ORDER BY at;
SELECT metric, value FROM prodguard.metrics
 WHERE metric IN ('commands_refused', 'row_statements_refused', 'settings_refused', 'overrides_used', 'denials_written');

\echo
\echo '== 8. Incident A: a debugging script overwrites a finished extraction with fixture products.'
CREATE TABLE extraction_queue (id int PRIMARY KEY, store text NOT NULL, status text NOT NULL,
    accuracy numeric(5,2), processing interval);
CREATE TABLE extraction_products (queue_item int REFERENCES extraction_queue, position int,
    product text NOT NULL, price numeric(8,2), PRIMARY KEY (queue_item, position));
INSERT INTO extraction_queue VALUES (9, 'Co-op Food, Manchester', 'done', 91.00, '45 minutes');
INSERT INTO extraction_products VALUES (9, 1, 'Warburtons Toastie White Bread 800g', 1.45),
    (9, 2, 'Co-op British Semi Skimmed Milk 2.272L', 1.95), (9, 3, 'Heinz Baked Beans 415g', 1.40),
    (9, 4, 'Yorkshire Tea 80 Bags', 3.25);
SELECT prodguard.protect('extraction_products');
SELECT prodguard.protect('extraction_queue');
-- the team's fixture products, so that the guard knows them (the built-in dictionaries
-- know placeholder people, test cards, reserved domains, ...)
SELECT prodguard.dictionary_add('fixture_products',
    ARRAY['Coca Cola Classic', 'Pepsi Regular', 'Sprite Lemon-Lime', 'Mountain Dew']);
CREATE TABLE extraction_products_before AS SELECT * FROM extraction_products;
-- add_test_extraction_data.py, run with the service key against production:
UPDATE extraction_products SET product = CASE position WHEN 1 THEN 'Coca Cola Classic'
    WHEN 2 THEN 'Pepsi Regular' WHEN 3 THEN 'Sprite Lemon-Lime' ELSE 'Mountain Dew' END
 WHERE queue_item = 9;
\echo '-- refused: the rows carry test data. An operator overrides (a mistake, in this story)...'
BEGIN;
SET LOCAL prodguard.override = 'INC-9: debugging the extraction pipeline';
SET LOCAL prodguard.test_data_action = 'log';
UPDATE extraction_products SET product = CASE position WHEN 1 THEN 'Coca Cola Classic'
    WHEN 2 THEN 'Pepsi Regular' WHEN 3 THEN 'Sprite Lemon-Lime' ELSE 'Mountain Dew' END
 WHERE queue_item = 9;
SELECT pg_current_xact_id() AS bad_txid \gset
COMMIT;
SELECT position, product FROM extraction_products ORDER BY position;
\echo '-- ...and one call puts queue item 9 back exactly:'
SELECT prodguard.undo_transaction(:'bad_txid') AS rows_restored;
SELECT position, product, price FROM extraction_products ORDER BY position;
SELECT CASE WHEN (SELECT array_agg(p ORDER BY position)::text FROM extraction_products p)
               = (SELECT array_agg(b ORDER BY position)::text FROM extraction_products_before b)
            THEN 'queue item 9 is back exactly as it was'
            ELSE 'queue item 9 differs from before' END AS check;
