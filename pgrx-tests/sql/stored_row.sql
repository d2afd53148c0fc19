-- The test-data guard judges the row as it is stored (issue 16): after every BEFORE
-- trigger, with generated columns computed; DDL that writes values into a protected table
-- (USING, a column default, a generated column, an enum label) and ATTACH PARTITION of a
-- table holding test data are judged too.
CREATE TABLE sr_people (id int PRIMARY KEY, first text, last text,
                        full_name text GENERATED ALWAYS AS (first || ' ' || last) STORED);
SELECT prodguard.protect('sr_people');
-- a generated column
INSERT INTO sr_people (id, first, last) VALUES (1, 'John', 'Doe');
-- a table owner's trigger named to fire after pg_prodguard's
CREATE FUNCTION sr_fixture() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.last := 'Doe'; NEW.first := 'Jane'; RETURN NEW; END $$;
CREATE TRIGGER zzzz_rewrite BEFORE INSERT ON sr_people FOR EACH ROW EXECUTE FUNCTION sr_fixture();
INSERT INTO sr_people (id, first, last) VALUES (2, 'Ada', 'Lovelace');
DROP TRIGGER zzzz_rewrite ON sr_people;
INSERT INTO sr_people (id, first, last) VALUES (3, 'Ada', 'Lovelace');
SELECT id, full_name FROM sr_people;
-- DDL that writes values
\set VERBOSITY terse
ALTER TABLE sr_people ALTER COLUMN last TYPE text USING 'Coca Cola Classic';
ALTER TABLE sr_people ADD COLUMN email text DEFAULT 'test@example.com';
ALTER TABLE sr_people ADD COLUMN alias text GENERATED ALWAYS AS ('John ' || 'Doe') STORED;
\set VERBOSITY default
ALTER TABLE sr_people ADD COLUMN email text DEFAULT 'ada@analytical.engine';
ALTER TABLE sr_people ALTER COLUMN last TYPE varchar(40);
SELECT id, last, email FROM sr_people;
CREATE TYPE sr_state AS ENUM ('open', 'closed');
CREATE TABLE sr_orders (id int PRIMARY KEY, state sr_state);
SELECT prodguard.protect('sr_orders');
INSERT INTO sr_orders VALUES (1, 'open');
ALTER TYPE sr_state RENAME VALUE 'open' TO 'Jane Doe';
ALTER TYPE sr_state RENAME VALUE 'open' TO 'pending';
-- ATTACH PARTITION of a table holding test data into a protected parent: refused, the
-- rows named; a clean one attaches.
CREATE TABLE sr_events (id int, at date, note text) PARTITION BY RANGE (at);
SELECT prodguard.protect('sr_events');
CREATE TABLE sr_events_2025 (id int, at date, note text);
INSERT INTO sr_events_2025 VALUES (1, '2025-03-01', 'call John Doe'), (2, '2025-04-01', 'fine');
ALTER TABLE sr_events ATTACH PARTITION sr_events_2025 FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
UPDATE sr_events_2025 SET note = 'call the customer' WHERE id = 1;
ALTER TABLE sr_events ATTACH PARTITION sr_events_2025 FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
-- With an operator's override, recorded.
BEGIN;
SET LOCAL prodguard.override = 'CHG-610: placeholder e-mails for the demo tenant';
ALTER TABLE sr_people ADD COLUMN demo text DEFAULT 'demo@example.com';
COMMIT;
SELECT action, object, override_reason FROM prodguard.audit_log WHERE override_reason LIKE 'CHG-610%';
-- A domain's default fills every row of an added column; an enum label renamed inside a
-- composite, a range or an array of composites (issue 16 review).
CREATE DOMAIN sr_placeholder AS text DEFAULT 'John Doe';
\set VERBOSITY terse
ALTER TABLE sr_people ADD COLUMN nickname sr_placeholder;
\set VERBOSITY default
CREATE TYPE sr_e AS ENUM ('placeholder', 'other');
CREATE TYPE sr_ce AS (v sr_e);
CREATE TABLE sr_nested (id int PRIMARY KEY, cev sr_ce, arr sr_ce[]);
SELECT prodguard.protect('sr_nested');
INSERT INTO sr_nested VALUES (1, ROW('placeholder'), ARRAY[ROW('other')::sr_ce]);
\set VERBOSITY terse
ALTER TYPE sr_e RENAME VALUE 'placeholder' TO 'John Doe';
\set VERBOSITY default
ALTER TYPE sr_e RENAME VALUE 'placeholder' TO 'primary';
SELECT cev FROM sr_nested;
