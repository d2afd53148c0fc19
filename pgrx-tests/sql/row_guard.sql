-- The row guard: in production, DELETE and UPDATE without a WHERE clause are refused with
-- pg-safeupdate's message and SQLSTATE (21000), and one DELETE, UPDATE or MERGE may not
-- change more than prodguard.max_rows_changed rows (42501).
SELECT setting, value FROM prodguard.status() WHERE setting LIKE 'row_guard.%';
CREATE TABLE refinements (id int PRIMARY KEY, track text, score int);
INSERT INTO refinements SELECT g, 'track ' || g, g % 100 FROM generate_series(1, 100) g;

-- require_where
DELETE FROM refinements;
\echo :LAST_ERROR_SQLSTATE
UPDATE refinements SET score = 0;
\echo :LAST_ERROR_SQLSTATE
UPDATE refinements SET score = 0 FROM (VALUES (1)) AS v(x);
-- Any WHERE clause counts, even WHERE true (as with pg-safeupdate).
UPDATE refinements SET score = score WHERE true;
DELETE FROM refinements WHERE id > 90;
-- Every path a statement can take: a data-modifying CTE...
WITH d AS (DELETE FROM refinements RETURNING *) SELECT count(*) FROM d;
WITH u AS (UPDATE refinements SET score = 1 RETURNING id) SELECT count(*) FROM u;
-- ...a prepared statement...
PREPARE wipe AS DELETE FROM refinements;
EXECUTE wipe;
DEALLOCATE wipe;
-- ...a DO block, a PL/pgSQL function, a SECURITY DEFINER function...
DO $$ BEGIN DELETE FROM refinements; END $$;
CREATE FUNCTION wipe_refinements() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM refinements;
END $$;
SELECT wipe_refinements();
CREATE FUNCTION wipe_as_owner() RETURNS void LANGUAGE sql SECURITY DEFINER
    SET search_path = public AS 'UPDATE refinements SET score = NULL';
SELECT wipe_as_owner();
-- ...COPY of a DELETE ... RETURNING, EXPLAIN ANALYZE (plain EXPLAIN runs nothing)...
COPY (DELETE FROM refinements RETURNING id) TO STDOUT;
EXPLAIN ANALYZE DELETE FROM refinements;
EXPLAIN (COSTS OFF) DELETE FROM refinements;
-- ...a rule that turns an INSERT into a DELETE...
CREATE TABLE purge_requests (id int);
CREATE RULE purge_all AS ON INSERT TO purge_requests DO INSTEAD DELETE FROM refinements;
INSERT INTO purge_requests VALUES (1);
DROP RULE purge_all ON purge_requests;
-- ...and with session_replication_role = replica, which silences triggers but not this.
SET session_replication_role = replica;
DELETE FROM refinements;
RESET session_replication_role;
-- Temporary tables are the session's own: not guarded.
CREATE TEMP TABLE scratch AS SELECT g AS id FROM generate_series(1, 20) g;
DELETE FROM scratch;
SELECT count(*) AS refinements_left FROM refinements;

-- max_rows_changed, counted as rows change, not estimated. A small limit for the test:
BEGIN;
SET LOCAL prodguard.override = 'test: a small row limit';
SET LOCAL prodguard.max_rows_changed = 10;
SET LOCAL prodguard.override = '';
-- exactly the limit passes, one more is refused and rolled back
UPDATE refinements SET score = 1 WHERE id <= 10;
SAVEPOINT s1;
UPDATE refinements SET score = 2 WHERE id <= 11;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s1;
SELECT count(*) FILTER (WHERE score = 2) AS rows_changed_by_refused_update FROM refinements;
-- a DELETE the planner thinks touches one row (stale statistics) is still counted
SAVEPOINT s2;
DELETE FROM refinements WHERE score >= 0;
ROLLBACK TO s2;
-- in a CTE, and in MERGE
SAVEPOINT s3;
WITH d AS (DELETE FROM refinements WHERE id > 50) SELECT 1 AS done;
ROLLBACK TO s3;
SAVEPOINT s4;
MERGE INTO refinements r USING generate_series(1, 30) g ON r.id = g
  WHEN MATCHED THEN DELETE;
ROLLBACK TO s4;
SAVEPOINT s5;
MERGE INTO refinements r USING generate_series(1, 5) g ON r.id = g
  WHEN MATCHED THEN DELETE;
ROLLBACK TO s5;
-- inside PL/pgSQL each statement is counted on its own
SAVEPOINT s6;
DO $$ BEGIN FOR i IN 0..2 LOOP DELETE FROM refinements WHERE id BETWEEN i * 10 + 1 AND i * 10 + 10; END LOOP; END $$;
ROLLBACK TO s6;
ROLLBACK;
SELECT count(*) AS refinements_left FROM refinements;

-- A plan cached before the settings changed is judged by the settings in force when it
-- runs: the function's plan is made in a development database, then the database is
-- treated as production.
CREATE DATABASE row_guard_dev;
BEGIN;
SET LOCAL prodguard.override = 'test: a development database';
ALTER DATABASE row_guard_dev SET prodguard.environment = 'development';
COMMIT;
\c row_guard_dev
CREATE TABLE drafts (id int);
INSERT INTO drafts SELECT generate_series(1, 5);
CREATE FUNCTION clear_drafts() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM drafts;
    INSERT INTO drafts SELECT generate_series(1, 5);
END $$;
SELECT clear_drafts();
SELECT clear_drafts();
SET prodguard.environment = 'production';
SELECT clear_drafts();
RESET prodguard.environment;
SELECT clear_drafts();
-- Development: nothing is refused.
DELETE FROM drafts;
UPDATE drafts SET id = 0;
\c app

-- Staging: the same message as a WARNING, and the statement runs (and is audited).
CREATE DATABASE row_guard_staging;
BEGIN;
SET LOCAL prodguard.override = 'test: a staging database';
ALTER DATABASE row_guard_staging SET prodguard.environment = 'staging';
COMMIT;
\c row_guard_staging
CREATE EXTENSION pg_prodguard;
CREATE TABLE drafts (id int);
INSERT INTO drafts SELECT generate_series(1, 20);
UPDATE drafts SET id = id + 1;
DELETE FROM drafts;
SELECT action, object, environment FROM prodguard.audit_log ORDER BY id;
\c app

-- An operator's override lifts the rule for one transaction and is recorded; a
-- non-operator's does not.
CREATE ROLE row_ops LOGIN IN ROLE prodguard_operator;
CREATE ROLE row_dev LOGIN;
GRANT ALL ON refinements TO row_ops, row_dev;
\c - row_dev
BEGIN;
SET LOCAL prodguard.override = 'cleanup';
DELETE FROM refinements;
ROLLBACK;
\c - row_ops
BEGIN;
SET LOCAL prodguard.override = 'INC-77: rebuild refinements from the extraction';
DELETE FROM refinements;
COMMIT;
DELETE FROM refinements;
\c - postgres
SELECT action, object, override_reason, db_user FROM prodguard.audit_log
 WHERE override_reason LIKE 'INC-77%' ORDER BY id;
