-- The test-data guard: rows of protected tables that carry known test data are refused in
-- production (SQLSTATE 23514), at row speed.
SELECT name, enabled, builtin FROM prodguard.dictionary ORDER BY name;
SELECT setting, value FROM prodguard.status() WHERE setting LIKE 'test_data.%';

-- Incident A: a debugging script overwrites a finished extraction with fixture products.
CREATE TABLE extraction_products (
    queue_item int, position int, product text, brand text, price numeric, tags text[],
    raw jsonb, PRIMARY KEY (queue_item, position));
INSERT INTO extraction_products VALUES
    (9, 1, 'Irn-Bru 330ml', 'Barr', 0.85, '{soft-drinks}', '{"ocr": {"lines": ["IRN-BRU", "330ml"]}}'),
    (9, 2, 'Co-op Still Water 2L', 'Co-op', 0.50, '{water}', '{"ocr": {"lines": ["STILL WATER"]}}');
SELECT prodguard.protect('extraction_products');
SELECT prodguard.dictionary_add('fixtures',
    ARRAY['Coca Cola Classic', 'Pepsi Regular', 'Sprite Lemon-Lime', 'Mountain Dew']);
UPDATE extraction_products SET product = 'Coca Cola Classic', brand = 'Coca-Cola' WHERE queue_item = 9 AND position = 1;
\echo :LAST_ERROR_SQLSTATE
UPDATE extraction_products SET product = 'Pepsi Regular' WHERE queue_item = 9 AND position = 2;
-- An UPDATE that leaves the matching column alone is not refused for it; the checks are
-- case-insensitive, and reach arrays and the strings inside jsonb.
INSERT INTO extraction_products VALUES (10, 1, 'MOUNTAIN DEW', 'PepsiCo', 1.20, NULL, NULL);
INSERT INTO extraction_products VALUES (10, 2, 'Irn-Bru', 'Barr', 1, '{soft-drinks,"Sprite Lemon-Lime"}', NULL);
INSERT INTO extraction_products VALUES (10, 3, 'Irn-Bru', 'Barr', 1, NULL, '{"ocr": {"lines": ["x", {"label": "pepsi regular"}]}}');
-- Keys of json objects are not values.
INSERT INTO extraction_products VALUES (10, 4, 'Irn-Bru', 'Barr', 1, NULL, '{"Pepsi Regular": 1}');
SELECT queue_item, position, product FROM extraction_products ORDER BY 1, 2;

-- Each built-in dictionary fires on its kind of value.
CREATE TABLE customers (id serial PRIMARY KEY, name text, email text, phone text, card text, notes text);
SELECT prodguard.protect('customers');
INSERT INTO customers (name) VALUES ('John Doe');
INSERT INTO customers (name) VALUES ('Max Mustermann');
INSERT INTO customers (name) VALUES ('Testy McTestface');
INSERT INTO customers (email) VALUES ('jane.roe@example.com');
INSERT INTO customers (email) VALUES ('ops@mail.example.org');
INSERT INTO customers (email) VALUES ('qa@shop.test');
INSERT INTO customers (notes) VALUES ('webhook https://api.invalid/v1');
INSERT INTO customers (phone) VALUES ('(212) 555-0147');
INSERT INTO customers (phone) VALUES ('+44 7700 900123');
INSERT INTO customers (phone) VALUES ('020 7946 0018');
INSERT INTO customers (card) VALUES ('4242424242424242');
INSERT INTO customers (card) VALUES ('4111 1111 1111 1111');
INSERT INTO customers (card) VALUES ('3782-822463-10005');
INSERT INTO customers (notes) VALUES ('Lorem ipsum dolor sit amet, consectetur adipiscing elit.');

-- None of them fires on real data: a corpus of realistic production values.
INSERT INTO customers (name, email, phone, card, notes) VALUES
    ('Johnny Doerr', 'johnny.doerr@gmail.com', '+1 212 555 1234', 'ORD-4242-4242-4241', 'Doe Run Road 12, Missouri'),
    ('Jane Doerr-Smith', 'jdoe@acme-corp.co.uk', '(312) 555-0200', '4242 4242 4242 4243', 'Testament Cider, 6 x 500ml'),
    ('Maxine Mustermannová', 'sales@examplecompany.com', '020 7946 1234', '41111111111111112', 'Mountain Dewberry Jam 340g'),
    ('Dolores Sitwell', 'contact@counterexample.org', '07700 901123', 'Invoice 5555-5555-5555-4445', 'Lorem Industries quarterly report'),
    ('Jon Doe-Hansen', 'anna@testlab.co', '+447700800123', 'Gift card 6011 1111 1111 1118', 'unit tests live in app.test.js'),
    ('Test Kitchen Ltd', 'post@invalidation.io', '555-0099', 'IBAN GB33BUKB20201555555555', 'Sprite Lemonade 1L'),
    ('Foo Barrel Co', 'team@localhost-studio.com', '+1-555-010-0000', '3782 8224 6310 0051', 'Duis Pharmacy, aute road');
SELECT count(*) AS real_rows_accepted FROM customers;

-- Every text-like type is read: varchar, char, name, citext, enums, domains, arrays of them.
CREATE EXTENSION citext;
CREATE TYPE fixture_status AS ENUM ('live', 'John Doe');
CREATE DOMAIN short_label AS varchar(40);
CREATE TABLE typed_values (v varchar(40), c char(20), n name, ci citext, e fixture_status,
    d short_label, da short_label[], i int);
SELECT prodguard.protect('typed_values');
INSERT INTO typed_values (v) VALUES ('Jane Doe');
INSERT INTO typed_values (c) VALUES ('Jane Doe');
INSERT INTO typed_values (n) VALUES ('Jane Doe');
INSERT INTO typed_values (ci) VALUES ('Jane Doe');
INSERT INTO typed_values (e) VALUES ('John Doe');
INSERT INTO typed_values (d) VALUES ('Jane Doe');
INSERT INTO typed_values (da) VALUES (ARRAY['ok', 'Jane Doe']::short_label[]);
INSERT INTO typed_values VALUES ('Ada', 'Ada', 'Ada', 'Ada', 'live', 'Ada', ARRAY['Ada']::short_label[], 4242);
SELECT count(*) FROM typed_values;

-- Unicode case folding.
SELECT prodguard.dictionary_add('desserts', ARRAY['crème brûlée'], 'word');
SELECT prodguard.dictionary_add('streets', ARRAY['Straße']);
INSERT INTO customers (notes) VALUES ('Dessert of the day: CRÈME BRÛLÉE');
INSERT INTO customers (notes) VALUES ('Hauptstrasse 5');   -- inside a longer word
INSERT INTO customers (notes) VALUES ('Große STRASSE 5');
-- substring patterns match anywhere
SELECT prodguard.dictionary_add('scripts', ARRAY['add_test_extraction_data'], 'substring');
INSERT INTO customers (notes) VALUES ('imported by scripts/add_test_extraction_data.py');

-- COPY is covered.
COPY customers (name) FROM STDIN;
Ada Lovelace
Jane Doe
\.
SELECT count(*) AS rows_after_copy FROM customers;

-- prodguard.scan() shows what the guard finds in a value (positions of the first and last
-- character), and scan_table() the existing rows that carry test data.
SELECT * FROM prodguard.scan('Call John Doe at (212) 555-0123 or jane@example.com; card 4242 4242 4242 4242.');
SELECT * FROM prodguard.scan('no test data here');
CREATE TABLE legacy_orders (id int, customer text, lines text[]);
INSERT INTO legacy_orders VALUES (1, 'Ada', '{tea}'), (2, 'Joe Bloggs', '{tea}'), (3, 'Bo', '{"Mountain Dew"}');
SELECT ctid, column_name, dictionary, pattern FROM prodguard.scan_table('legacy_orders') ORDER BY 1, 2;
SELECT count(*) FROM prodguard.scan_table('legacy_orders', max_rows => 2);

-- test_data_action: warn writes the row with a WARNING; log writes it and records the
-- match in prodguard.audit_log; off does nothing. Changing it in production needs an override.
SET prodguard.test_data_action = 'warn';
BEGIN;
SET LOCAL prodguard.override = 'test: warn';
SET LOCAL prodguard.test_data_action = 'warn';
INSERT INTO customers (name) VALUES ('Jane Doe');
SET LOCAL prodguard.test_data_action = 'log';
INSERT INTO customers (name) VALUES ('Joe Bloggs');
SET LOCAL prodguard.test_data_action = 'off';
INSERT INTO customers (name) VALUES ('Test User');
COMMIT;
SELECT action, table_name, test_data FROM prodguard.audit_log WHERE test_data IS NOT NULL;
-- An operator's override lets one row through, audited; a non-operator's does not.
CREATE ROLE td_ops LOGIN IN ROLE prodguard_operator;
CREATE ROLE td_dev LOGIN;
GRANT ALL ON customers TO td_ops, td_dev;
GRANT USAGE ON SEQUENCE customers_id_seq TO td_ops, td_dev;
\c - td_dev
BEGIN;
SET LOCAL prodguard.override = 'demo account';
INSERT INTO customers (name) VALUES ('Demo User');
ROLLBACK;
\c - td_ops
BEGIN;
SET LOCAL prodguard.override = 'SUP-88: the customer really is called John Doe';
INSERT INTO customers (name) VALUES ('John Doe');
COMMIT;
\c - postgres
SELECT action, object, override_reason FROM prodguard.audit_log WHERE override_reason LIKE 'SUP-88%';

-- Staging turns reject into a warning; development does nothing.
BEGIN;
SET LOCAL prodguard.override = 'test: staging';
SET LOCAL prodguard.environment = 'staging';
INSERT INTO customers (name) VALUES ('Jane Doe');
SET LOCAL prodguard.environment = 'development';
INSERT INTO customers (name) VALUES ('Jane Doe');
ROLLBACK;

-- A committed dictionary change is in force in every session from its next statement.
CREATE EXTENSION dblink;
SELECT dblink_connect('other', format('host=%s port=%s dbname=%s',
    current_setting('unix_socket_directories'), current_setting('port'), current_database()));
SELECT dblink_exec('other', $$INSERT INTO customers (name) VALUES ('Grace Hopper')$$);
SELECT prodguard.dictionary_add('staff_fixtures', ARRAY['Grace Hopper']);
SELECT dblink_exec('other', $$INSERT INTO customers (name) VALUES ('Grace Hopper')$$);
SELECT prodguard.dictionary_remove('staff_fixtures', ARRAY['Grace Hopper']);
BEGIN;
SET LOCAL prodguard.override = 'CHG-60: Grace Hopper is a real customer';
SELECT prodguard.dictionary_remove('staff_fixtures', ARRAY['Grace Hopper', 'Nobody']);
COMMIT;
SELECT dblink_exec('other', $$INSERT INTO customers (name) VALUES ('Grace Hopper')$$);
SELECT dblink_disconnect('other');
-- Disabling a dictionary needs an override too.
SELECT prodguard.dictionary_enable('lorem_ipsum', false);
SELECT prodguard.dictionary_enable('no_such_dictionary', true);

-- Bad input: refused with 22023 and a clear message.
SELECT prodguard.dictionary_add('fixtures', ARRAY['']);
\echo :LAST_ERROR_SQLSTATE
SELECT prodguard.dictionary_add('fixtures', ARRAY['   ']);
SELECT prodguard.dictionary_add('fixtures', ARRAY[repeat('x', 1001)]);
SELECT prodguard.dictionary_add('fixtures', ARRAY['ok', NULL]);
SELECT prodguard.dictionary_add('fixtures', ARRAY['ok'], 'regex');
\echo :LAST_ERROR_SQLSTATE
SELECT prodguard.dictionary_add('', ARRAY['ok']);
-- dictionary_add is idempotent and counts only new patterns.
SELECT prodguard.dictionary_add('fixtures', ARRAY['Pepsi Regular', 'Fanta Orange']);
SELECT prodguard.dictionary_add('fixtures', ARRAY['Pepsi Regular', 'Fanta Orange']);
-- Only operators change dictionaries.
\c - td_dev
SELECT prodguard.dictionary_add('fixtures', ARRAY['7UP']);
SELECT * FROM prodguard.dictionary;
\c - postgres

-- A 100 MB value is scanned without trouble.
CREATE TABLE big_documents (id int, body text);
SELECT prodguard.protect('big_documents', audit => false);
INSERT INTO big_documents SELECT 1, repeat('clean text ', 9532509);
INSERT INTO big_documents SELECT 2, repeat('clean text ', 9532509) || 'signed, John Doe';
SELECT id, length(body) FROM big_documents;
SELECT dictionary, pattern, match_start FROM prodguard.scan(repeat('é', 1000000) || ' jane doe');

-- Switching the guard off for a table removes its trigger.
SELECT tgname FROM pg_trigger WHERE tgrelid = 'big_documents'::regclass;
BEGIN;
SET LOCAL prodguard.override = 'CHG-61: documents are free text';
SELECT prodguard.protect('big_documents', test_data => false);
COMMIT;
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'big_documents'::regclass;
INSERT INTO big_documents VALUES (3, 'John Doe');
