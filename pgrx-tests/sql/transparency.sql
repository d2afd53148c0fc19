-- Transparency: errors that PostgreSQL raises while pg_prodguard's hooks are on the stack
-- reach the client exactly as without the library. This file runs twice, with the same
-- expected output: on the server that preloads pg_prodguard (schedule) and on one that
-- does not (schedule_no_preload). Nothing here is refused by a guard: these are ordinary
-- errors of ordinary statements, in a new database (production where the library is
-- loaded, but nothing here is destructive).
CREATE DATABASE transparency;
\c transparency
\set SHOW_CONTEXT always
\set VERBOSITY default

-- The position of an error raised inside a utility statement (ProcessUtility hook): LINE
-- and caret.
CREATE TABLE bad_default (a int DEFAULT 'not a number');

-- CONTEXT lines of an error raised in PL/pgSQL under a utility statement (DO).
DO $$
BEGIN
    PERFORM 1 / 0;
END
$$;

-- QUERY and CONTEXT of an error inside an SQL statement a PL/pgSQL function runs.
CREATE FUNCTION broken() RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    RETURN (SELECT no_such_column FROM pg_class LIMIT 1);
END
$$;
SELECT broken();

-- A foreign-key violation is raised by the RI trigger at ExecutorFinish: the constraint,
-- table and schema names stay in the error (ORMs map errors by constraint_name).
CREATE TABLE parent (id int PRIMARY KEY);
CREATE TABLE child (id int PRIMARY KEY, parent_id int CONSTRAINT child_parent_fk REFERENCES parent);
INSERT INTO child VALUES (1, 42);
DO $$
DECLARE
    c text; t text; s text; col text; msg text; state text; ctx text;
BEGIN
    INSERT INTO child VALUES (2, 43);
EXCEPTION WHEN foreign_key_violation THEN
    GET STACKED DIAGNOSTICS c = CONSTRAINT_NAME, t = TABLE_NAME, s = SCHEMA_NAME,
        msg = MESSAGE_TEXT, state = RETURNED_SQLSTATE, ctx = PG_EXCEPTION_CONTEXT;
    RAISE NOTICE 'sqlstate=% constraint=% table=% schema=%', state, c, t, s;
    RAISE NOTICE 'message=%', msg;
    RAISE NOTICE 'context=%', ctx;
END
$$;

-- Column and data type names of a NOT NULL and a domain violation.
CREATE DOMAIN positive AS int CHECK (VALUE > 0);
CREATE TABLE measured (id int PRIMARY KEY, v positive NOT NULL);
DO $$
DECLARE
    c text; t text; col text; dt text;
BEGIN
    BEGIN
        INSERT INTO measured VALUES (1, NULL);
    EXCEPTION WHEN not_null_violation THEN
        GET STACKED DIAGNOSTICS c = CONSTRAINT_NAME, t = TABLE_NAME, col = COLUMN_NAME;
        RAISE NOTICE 'not null: table=% column=%', t, col;
    END;
    BEGIN
        INSERT INTO measured VALUES (1, -1);
    EXCEPTION WHEN check_violation THEN
        GET STACKED DIAGNOSTICS c = CONSTRAINT_NAME, dt = PG_DATATYPE_NAME;
        RAISE NOTICE 'domain: constraint=% datatype=%', c, dt;
    END;
END
$$;

-- A unique violation under UPDATE and under a data-modifying CTE (row guard's executor
-- hooks on the stack).
INSERT INTO parent VALUES (1), (2);
UPDATE parent SET id = 1 WHERE id = 2;
WITH moved AS (UPDATE parent SET id = 2 WHERE id = 1 RETURNING id)
INSERT INTO parent SELECT id - 1 FROM moved;

-- An error raised while a statement the command guard judges runs, caught by PL/pgSQL,
-- then the session goes on normally.
DO $$
BEGIN
    DROP TABLE no_such_table;
EXCEPTION WHEN undefined_table THEN
    RAISE NOTICE 'caught: %', SQLERRM;
END
$$;
SELECT count(*) FROM parent;

