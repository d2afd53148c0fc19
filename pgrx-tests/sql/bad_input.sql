-- Bad input (issue 19): every function answers a bad argument with a clear error and its
-- SQLSTATE, never an internal error (XX000); every valid json and jsonb value is accepted
-- by the test-data check and scanned.
CREATE ROLE bi_nobody LOGIN;
CREATE ROLE bi_operator LOGIN IN ROLE prodguard_operator;
CREATE TABLE bi_items (id int PRIMARY KEY, label text, doc jsonb, raw json);
CREATE VIEW bi_view AS SELECT * FROM bi_items;
CREATE SEQUENCE bi_seq;
SELECT prodguard.protect('bi_items');

-- Table arguments that name no relation: 42P01.
SELECT prodguard.protect(0);
\echo :LAST_ERROR_SQLSTATE
SELECT prodguard.unprotect(0);
\echo :LAST_ERROR_SQLSTATE
SELECT prodguard.restore_table(0, now());
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM prodguard.scan_table(12345678);
\echo :LAST_ERROR_SQLSTATE
-- NULL where a table is needed: 22004.
SELECT * FROM prodguard.scan_table(NULL);
\echo :LAST_ERROR_SQLSTATE
-- Relations that are not tables: 42809.
SELECT * FROM prodguard.scan_table('bi_view');
\echo :LAST_ERROR_SQLSTATE
SELECT prodguard.restore_table('bi_seq', now());
\echo :LAST_ERROR_SQLSTATE
SELECT prodguard.protect('bi_seq');
\echo :LAST_ERROR_SQLSTATE
-- A transaction id that is not one: 22P02.
SELECT prodguard._undo_transaction('not-a-txid', false);
\echo :LAST_ERROR_SQLSTATE
-- A pattern that folds to nothing (a zero-width space, a no-break space) would match
-- every value: refused with 22023.
SELECT prodguard.dictionary_add('bi_fixtures', ARRAY[U&'\200B']);
\echo :LAST_ERROR_SQLSTATE
SELECT prodguard.dictionary_add('bi_fixtures', ARRAY[U&'\00A0\200B ']);
\echo :LAST_ERROR_SQLSTATE
SELECT prodguard.dictionary_add('bi_fixtures', ARRAY['Coca Cola Classic']);

-- Valid json and jsonb the test-data check once failed on: nesting 200 deep (and
-- 2,000 deep), numbers beyond float range, a lone surrogate escape in json. Accepted in
-- production, and scanned.
INSERT INTO bi_items VALUES (1, 'deep', (repeat('[', 200) || '"x"' || repeat(']', 200))::jsonb, NULL);
INSERT INTO bi_items VALUES (2, 'deeper', (repeat('{"a":', 2000) || '"x"' || repeat('}', 2000))::jsonb,
    (repeat('[', 2000) || '1' || repeat(']', 2000))::json);
INSERT INTO bi_items VALUES (3, 'huge', '{"n": 1e400, "m": -1e-400}', '[1e400]');
INSERT INTO bi_items VALUES (4, 'surrogate', '{"s": "\u00e9"}', '{"s": "\ud800 lone"}');
SELECT id, label, length(doc::text) AS doc_chars FROM bi_items ORDER BY id;
-- the same shapes carrying test data are refused: the strings inside were read
INSERT INTO bi_items VALUES (5, 'deep fixture', (repeat('[', 200) || '"Coca Cola Classic"' || repeat(']', 200))::jsonb, NULL);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO bi_items VALUES (6, 'surrogate fixture', NULL, '["\ud800", "coca cola classic"]');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO bi_items VALUES (7, 'escaped fixture', NULL, '["Coca \u0043ola Classic"]');
\echo :LAST_ERROR_SQLSTATE
-- scan_table() reads them all without failing, and finds the one let in on an override
BEGIN;
SET LOCAL prodguard.override = 'bad_input test: a known fixture, deep in a document';
INSERT INTO bi_items VALUES (5, 'deep fixture', (repeat('[', 300) || '"Coca Cola Classic"' || repeat(']', 300))::jsonb,
    '["\ud800", {"k": "Pepsi Regular"}]');
COMMIT;
SELECT column_name, dictionary, pattern FROM prodguard.scan_table('bi_items') ORDER BY 1, 2;

-- Raising protection needs the right to read the table (its rows go to the audit log),
-- and pg_prodguard's own tables are not protect()'s to protect.
CREATE TABLE bi_salaries (id int PRIMARY KEY, amount int);
SET ROLE bi_operator;
SELECT prodguard.protect('bi_salaries');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
GRANT SELECT (id) ON bi_salaries TO bi_operator;
SET ROLE bi_operator;
SELECT prodguard.protect('bi_salaries');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
GRANT SELECT ON bi_salaries TO bi_operator;
SET ROLE bi_operator;
SELECT prodguard.protect('bi_salaries', test_data => false);
RESET ROLE;
SELECT table_name, audit FROM prodguard.protected_tables WHERE table_name = 'bi_salaries'::regclass;
SELECT prodguard.protect('prodguard.denial_log', audit => false, test_data => true);
\echo :LAST_ERROR_SQLSTATE
SELECT prodguard.protect('prodguard.audit_log');
\echo :LAST_ERROR_SQLSTATE

-- scan() says which private patterns exist: operators only.
SET ROLE bi_nobody;
SELECT * FROM prodguard.scan('Coca Cola Classic');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE bi_operator;
SELECT dictionary, pattern FROM prodguard.scan('Coca Cola Classic');
RESET ROLE;

BEGIN;
SET LOCAL prodguard.override = 'bad_input test: clean up';
-- (the backup of an overridden DROP TABLE is made with to_jsonb(), which cannot hold json
-- text with a lone surrogate escape: such rows are deleted, and audited, first)
DELETE FROM bi_items WHERE raw::text LIKE '%\ud800%';
DROP TABLE bi_items, bi_salaries CASCADE;
SELECT prodguard.dictionary_remove('bi_fixtures', ARRAY['Coca Cola Classic']);
COMMIT;
DROP SEQUENCE bi_seq;
DROP ROLE bi_nobody, bi_operator;
