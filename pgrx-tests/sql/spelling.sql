-- Test data in every spelling and in every kind of column (issue 16): full-width letters,
-- runs of white space, NBSP, tabs and newlines, invisible characters, Cyrillic look-alikes
-- and numbers grouped any way are the same pattern; composites, xml and hstore are scanned.
CREATE TABLE sp_products (id int PRIMARY KEY, name text);
SELECT prodguard.protect('sp_products');
SELECT prodguard.dictionary_add('sp_fixtures', ARRAY['Coca Cola Classic']);
\set VERBOSITY terse
INSERT INTO sp_products VALUES (1, 'Ｃｏｃａ Ｃｏｌａ Ｃｌａｓｓｉｃ');
INSERT INTO sp_products VALUES (2, 'Coca  Cola Classic');
INSERT INTO sp_products VALUES (3, E'Coca\u00A0Cola\tClassic');
INSERT INTO sp_products VALUES (4, E'Coca\nCola Classic');
INSERT INTO sp_products VALUES (5, E'Co\u200Bca Co\u00ADla Classic');
INSERT INTO sp_products VALUES (6, E'\u0421oca \u0421ola \u0421lassic');
INSERT INTO sp_products VALUES (7, 'JOHN  DOE');
INSERT INTO sp_products VALUES (8, 'card 4242.4242.4242.4242');
INSERT INTO sp_products VALUES (9, 'call 555 0100 today');
\set VERBOSITY default
-- Real values that only look close are written.
INSERT INTO sp_products VALUES (10, 'Coca Cola Classics Collection'), (11, 'order 15550100'),
       (12, 'Cocoa Cola'), (13, 'Ltd. 4242');
SELECT id, name FROM sp_products ORDER BY id;
-- scan() reports where the text is, in the original value.
SELECT dictionary, pattern, match_start, match_end
  FROM prodguard.scan(E'x Ｃｏｃａ  Ｃｏｌａ\u00A0Ｃｌａｓｓｉｃ y');
SELECT dictionary, pattern, match_start, match_end FROM prodguard.scan('tel 555.0123, card 4111-1111-1111-1111');
-- Composite, xml and hstore columns are scanned too.
CREATE EXTENSION IF NOT EXISTS hstore;
CREATE TYPE sp_contact AS (name text, phone text);
CREATE TABLE sp_rich (id int PRIMARY KEY, contact sp_contact, doc xml, attrs hstore);
SELECT prodguard.protect('sp_rich');
\set VERBOSITY terse
INSERT INTO sp_rich (id, contact) VALUES (1, ROW('John Doe', '+1 202 555 0100'));
INSERT INTO sp_rich (id, doc) VALUES (2, '<customer><name>Jane Doe</name></customer>');
INSERT INTO sp_rich (id, attrs) VALUES (3, 'email => "qa@example.com"');
\set VERBOSITY default
INSERT INTO sp_rich VALUES (4, ROW('Ada Lovelace', '+44 20 1234 5678'), '<customer><name>Ada</name></customer>', 'tier => "gold"');
SELECT id FROM sp_rich;
-- The false-positive corpus grows with the folding: realistic names, addresses, products
-- and numbers in several scripts, all written.
CREATE TABLE sp_real (id serial PRIMARY KEY, v text);
SELECT prodguard.protect('sp_real');
INSERT INTO sp_real (v) VALUES
    ('Иван Петров'), ('Ольга Смирнова, ул. Тверская 7, Москва'), ('ТОО «Сервис-Про»'),
    ('Сергей Доу'), ('Јован Јовановић'), ('Γιώργος Παπαδόπουλος'), ('Οδός Ερμού 12, Αθήνα'),
    ('王小明'), ('北京市朝阳区建国路88号'), ('東京都渋谷区神南1-2-3'), ('محمد علي'), ('דוד כהן'),
    ('İstanbul Şişli, Halaskargazi Cd. No:42'), ('Müller & Söhne GmbH, Hauptstraße 5'),
    ('Tarte tatin maison, 4 pièces'), ('José Núñez, Calle de Alcalá 42, Madrid'),
    ('Ｔｏｋｙｏ Ｏｆｆｉｃｅ'), ('ＬＴＤ　４２４２'), ('Coca-Cola Zero 330ml'), ('Pepsi Max 2L'),
    ('Johnny Doerr'), ('Jane Doerr-Smith'), ('Doe Run Road 12'), ('Test Kitchen Ltd'),
    ('4242 Sunset Blvd, Los Angeles'), ('Order 4242-4243'), ('Tel. +7 495 123-45-67'),
    ('+1 650 253 0000'), ('ISBN 978-3-16-148410-0'), ('IBAN DE89 3704 0044 0532 0130 00'),
    ('2024.05.01 12:00'), ('v1.2.3-beta'), ('4 242,42 €'), ('SKU 4111-11'),
    ('card ending 4242'), ('Room 555, 0100 block'),
    (E'Line one\nLine two\ttabbed'), (E'Ｓｅｒｖｉｃｅ\u00A0desk'), ('ООО «Ромашка»'),
    ('Απόστολος Κοντός'), ('Κωνσταντίνος Χρήστου');
SELECT count(*) AS real_values_written FROM sp_real;
-- More spellings found by an attacker (issue 16 review): dashes and separator runs in
-- numbers, blank-looking fillers, small capitals, Latin alpha, Armenian o, combining
-- accents; and text inside ranges.
\set VERBOSITY terse
INSERT INTO sp_products VALUES (20, E'card 4242\u20134242\u20134242\u20134242');
INSERT INTO sp_products VALUES (21, 'card 4242 - 4242 - 4242 - 4242');
INSERT INTO sp_products VALUES (22, E'call 555\u20110100');
INSERT INTO sp_products VALUES (23, E'John\u3164Doe');
INSERT INTO sp_products VALUES (24, E'J\u1D0Fhn D\u1D0Fe');
INSERT INTO sp_products VALUES (25, E'J\u0251ne Doe');
INSERT INTO sp_products VALUES (26, E'J\u0585hn Doe');
INSERT INTO sp_products VALUES (27, E'Jo\u0301hn Doe');
CREATE TYPE sp_textrange AS RANGE (subtype = text);
CREATE TABLE sp_ranges (id int PRIMARY KEY, r sp_textrange);
SELECT prodguard.protect('sp_ranges');
INSERT INTO sp_ranges VALUES (1, sp_textrange('Jane Doe', 'John Doe'));
\set VERBOSITY default
SELECT count(*) AS rows_with_test_data FROM sp_products WHERE id >= 20;
