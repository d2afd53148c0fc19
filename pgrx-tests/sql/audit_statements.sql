-- The row audit writes a statement's entries together when the statement ends (issue 18):
-- the guarantees stay those of an entry written per row. Every committed change has its
-- entry, visible to the next statement of the same transaction; every change rolled back
-- (a transaction, a savepoint, an EXCEPTION block, a trigger's subtransaction) has none.
CREATE DATABASE audit_statements;
\c audit_statements
CREATE EXTENSION pg_prodguard;
CREATE TABLE orders (id bigint PRIMARY KEY, customer text, total numeric);
CREATE TABLE notes (id bigserial PRIMARY KEY, order_id bigint, note text);
SELECT prodguard.protect('orders', test_data => false);
SELECT prodguard.protect('notes', test_data => false);
CREATE VIEW entries AS
SELECT table_name, action, count(*) AS n,
       -- ids follow the order the rows were changed in
       bool_and(id > coalesce(prev, 0)) AS in_order
  FROM (SELECT a.*, lag(id) OVER (PARTITION BY table_name, action ORDER BY (coalesce(new_row, old_row)->>'id')::bigint, id) AS prev
          FROM prodguard.audit_log a WHERE a.table_name IN ('orders', 'notes')) x
 GROUP BY table_name, action ORDER BY table_name, action;

-- The next statement of the same transaction sees the entries of the one before.
BEGIN;
INSERT INTO orders SELECT g, 'customer ' || g, g * 1.5 FROM generate_series(1, 3) g;
SELECT action, count(*) FROM prodguard.audit_log WHERE table_name = 'orders' GROUP BY action;
UPDATE orders SET total = total + 1 WHERE id <= 2;
SELECT action, count(*) FROM prodguard.audit_log WHERE table_name = 'orders' GROUP BY action ORDER BY action;
COMMIT;

-- A rolled-back transaction leaves nothing.
BEGIN;
INSERT INTO orders SELECT g, 'never', 0 FROM generate_series(100, 150) g;
ROLLBACK;
SELECT count(*) FROM prodguard.audit_log WHERE new_row->>'customer' = 'never';

-- A savepoint rolled back takes its entries with it; the rest stay.
BEGIN;
INSERT INTO orders VALUES (10, 'kept before', 1);
SAVEPOINT s;
INSERT INTO orders VALUES (11, 'rolled back', 1), (12, 'rolled back', 1);
DELETE FROM orders WHERE id = 10;
ROLLBACK TO s;
INSERT INTO orders VALUES (13, 'kept after', 1);
RELEASE s;
COMMIT;
SELECT new_row->>'customer' AS customer, action FROM prodguard.audit_log
 WHERE table_name = 'orders' AND (new_row->>'id')::int BETWEEN 10 AND 13 ORDER BY id;

-- An EXCEPTION block that fails takes its entries with it; one that succeeds keeps them.
CREATE FUNCTION add_orders(first bigint, fail boolean) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        INSERT INTO orders SELECT g, 'block', 1 FROM generate_series(first, first + 4) g;
        IF fail THEN
            RAISE EXCEPTION 'fail';
        END IF;
    EXCEPTION WHEN raise_exception THEN
        RETURN 'rolled back';
    END;
    RETURN 'kept: ' || (SELECT count(*) FROM prodguard.audit_log
                         WHERE table_name = 'orders' AND new_row->>'customer' = 'block');
END $$;
SELECT add_orders(20, true);
SELECT add_orders(30, false);
SELECT count(*) FROM prodguard.audit_log WHERE table_name = 'orders' AND new_row->>'customer' = 'block';

-- A trigger that opens a subtransaction while the statement's entries are held: a row
-- trigger firing before the audit's, adding a note in an EXCEPTION block that fails for
-- odd orders. Every order is audited; only the notes that stayed are.
CREATE FUNCTION note_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        INSERT INTO notes (order_id, note) VALUES (NEW.id, 'new order');
        IF NEW.id % 2 = 1 THEN
            RAISE EXCEPTION 'odd';
        END IF;
    EXCEPTION WHEN raise_exception THEN
        NULL;
    END;
    RETURN NULL;
END $$;
CREATE TRIGGER aa_note AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION note_order();
INSERT INTO orders SELECT g, 'with note', 2 FROM generate_series(40, 49) g;
SELECT count(*) AS orders_audited FROM prodguard.audit_log
 WHERE table_name = 'orders' AND new_row->>'customer' = 'with note';
SELECT string_agg(new_row->>'order_id', ',' ORDER BY id) AS notes_audited,
       (SELECT string_agg(order_id::text, ',' ORDER BY id) FROM notes) AS notes_kept
  FROM prodguard.audit_log WHERE table_name = 'notes';
DROP TRIGGER aa_note ON orders;

-- COPY FROM fires its triggers itself: its entries are written when it ends.
COPY orders FROM stdin;
60	copied	1
61	copied	2
\.
SELECT count(*) FROM prodguard.audit_log WHERE new_row->>'customer' = 'copied';

-- A statement of more rows than are held at once: every row, in order.
INSERT INTO orders SELECT g, 'bulk', g FROM generate_series(1000, 3499) g;
UPDATE orders SET total = total * 2 WHERE customer = 'bulk';
DELETE FROM orders WHERE customer = 'bulk';
SELECT * FROM entries;

-- A deferred constraint trigger that writes at commit: its entries are committed with it.
CREATE FUNCTION late_note() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO notes (order_id, note) VALUES (NEW.id, 'at commit');
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER late_note AFTER INSERT ON orders DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION late_note();
BEGIN;
INSERT INTO orders VALUES (70, 'deferred', 1);
SELECT count(*) AS before_commit FROM prodguard.audit_log WHERE new_row->>'note' = 'at commit';
COMMIT;
SELECT count(*) AS after_commit FROM prodguard.audit_log WHERE new_row->>'note' = 'at commit';
DROP TRIGGER late_note ON orders;

-- One row's history, through the key's bloom filters; and restore_row of a batched entry.
SELECT action, new_row->>'total' AS total FROM prodguard.row_history('orders', '{"id": 1}');
SELECT prodguard.restore_row(max(id)) FROM prodguard.audit_log
 WHERE table_name = 'orders' AND action = 'UPDATE' AND row_key = '{"id": 1}';
SELECT total FROM orders WHERE id = 1;
-- undo_transaction() checks the rows of the whole transaction for later changes in one
-- pass: a row the transaction changed twice is its own; a later change by another
-- transaction stops the undo, naming that change, unless force.
CREATE TABLE stock (id int PRIMARY KEY, qty int);
INSERT INTO stock SELECT g, 10 FROM generate_series(1, 5) g;
SELECT prodguard.protect('stock', test_data => false);
BEGIN;
UPDATE stock SET qty = qty - 1 WHERE id <= 3;
UPDATE stock SET qty = qty - 1 WHERE id = 2;
SELECT pg_current_xact_id() AS stock_txid \gset
COMMIT;
UPDATE stock SET qty = 0 WHERE id = 3;
SELECT prodguard.undo_transaction(:'stock_txid');
SELECT min(id) = (SELECT max(id) FROM prodguard.audit_log WHERE table_name = 'stock') AS names_the_later_change
  FROM prodguard.audit_log WHERE table_name = 'stock' AND row_key = '{"id": 3}' AND action = 'UPDATE'
   AND txid <> :'stock_txid';
SELECT id, qty FROM stock ORDER BY id;
SELECT prodguard.undo_transaction(:'stock_txid', force => true);
SELECT id, qty FROM stock ORDER BY id;

-- Held entries take bounded memory, also when a trigger's subtransaction writes many of
-- its own while the statement's are held: each entry is freed once written.
CREATE TABLE big (id int PRIMARY KEY, v text);
INSERT INTO big VALUES (1, 'x');
SELECT prodguard.protect('big', test_data => false);
CREATE TABLE batches (id int PRIMARY KEY, n int);
INSERT INTO batches VALUES (1, 0);
SELECT prodguard.protect('batches', test_data => false);
CREATE TABLE peak (mb numeric);
CREATE FUNCTION rewrite_big() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        FOR i IN 1..NEW.n LOOP
            UPDATE big SET v = repeat(md5(i::text), 16384) WHERE id = 1;   -- 512 kB
            INSERT INTO peak SELECT sum(total_bytes) / 1048576.0 FROM pg_backend_memory_contexts
             WHERE name = 'pg_prodguard audit entries';
        END LOOP;
    EXCEPTION WHEN division_by_zero THEN NULL;
    END;
    RETURN NULL;
END $$;
CREATE TRIGGER zzz_rewrite AFTER UPDATE ON batches FOR EACH ROW EXECUTE FUNCTION rewrite_big();
UPDATE batches SET n = 60 WHERE id = 1;
SELECT count(*) AS samples, max(mb) < 8 AS bounded FROM peak;
SELECT count(*) AS big_updates FROM prodguard.audit_log WHERE table_name = 'big' AND action = 'UPDATE';
DROP TRIGGER zzz_rewrite ON batches;

-- A DBA's own indexes on the log, on an expression and with a predicate, get the entries
-- they should, from one-row and many-row statements and from command entries alike.
CREATE INDEX audit_log_lower_action ON prodguard.audit_log ((lower(action)));
CREATE INDEX audit_log_deletes ON prodguard.audit_log (table_name) WHERE action = 'DELETE';
INSERT INTO stock VALUES (6, 1);
INSERT INTO stock SELECT g, 1 FROM generate_series(7, 20) g;
DELETE FROM stock WHERE id = 6;
DELETE FROM stock WHERE id > 10;
BEGIN;
SET LOCAL prodguard.override = 'test: an overridden TRUNCATE writes a command entry';
TRUNCATE peak;
COMMIT;
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT count(*) FROM prodguard.audit_log WHERE lower(action) = 'truncate';
EXPLAIN (COSTS OFF) SELECT count(*) FROM prodguard.audit_log WHERE action = 'DELETE';
SELECT lower(action), count(*) FROM prodguard.audit_log WHERE lower(action) IN ('insert', 'delete', 'truncate')
 GROUP BY 1 ORDER BY 1;
SELECT table_name, count(*) FROM prodguard.audit_log WHERE action = 'DELETE' GROUP BY 1 ORDER BY 1;
RESET enable_seqscan;
SELECT lower(action), count(*) FROM prodguard.audit_log WHERE lower(action) IN ('insert', 'delete', 'truncate')
 GROUP BY 1 ORDER BY 1;
SELECT table_name, count(*) FROM prodguard.audit_log WHERE action = 'DELETE' GROUP BY 1 ORDER BY 1;
DROP INDEX prodguard.audit_log_lower_action, prodguard.audit_log_deletes;

SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT * FROM prodguard.audit_log WHERE row_key = '{"id": 1}' AND id > 5;
RESET enable_seqscan;
-- restore_table() as set operations: after UPDATEs only, every row is found by the
-- restoring UPDATE and no INSERT is needed; after UPDATEs, DELETEs and an INSERT in the
-- same rows, the rows gone are inserted again. Both end exactly where they started.
CREATE TABLE shelf (id int PRIMARY KEY, item text, qty int);
INSERT INTO shelf SELECT g, 'item ' || g, g FROM generate_series(1, 50) g;
SELECT prodguard.protect('shelf', test_data => false);
SELECT md5(string_agg(s::text, ',' ORDER BY id)) AS shelf_before FROM shelf s \gset
SELECT clock_timestamp() AS mark \gset
UPDATE shelf SET qty = qty + 100 WHERE true;
UPDATE shelf SET item = upper(item) WHERE id % 2 = 0;
SELECT prodguard.restore_table('shelf', :'mark');
SELECT md5(string_agg(s::text, ',' ORDER BY id)) = :'shelf_before' AS same, count(*) FROM shelf s;
SELECT clock_timestamp() AS mark \gset
UPDATE shelf SET qty = 0 WHERE id <= 10;
DELETE FROM shelf WHERE id BETWEEN 5 AND 15;
INSERT INTO shelf VALUES (51, 'new', 1);
SELECT prodguard.restore_table('shelf', :'mark');
SELECT md5(string_agg(s::text, ',' ORDER BY id)) = :'shelf_before' AS same, count(*) FROM shelf s;
-- A BEFORE UPDATE trigger that moves a row to another key while it is restored: the
-- row's key is not counted as found, and the INSERT puts the row back under its key. A table with rules is restored without RETURNING (a DO INSTEAD rule would
-- refuse it).
SELECT clock_timestamp() AS mark \gset
UPDATE shelf SET qty = -1 WHERE id IN (3, 4);
CREATE FUNCTION move_three() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id = 3 THEN NEW.id := 1003; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER move_three BEFORE UPDATE ON shelf FOR EACH ROW EXECUTE FUNCTION move_three();
SELECT prodguard.restore_table('shelf', :'mark');
SELECT id, item, qty FROM shelf WHERE id IN (3, 4, 1003) ORDER BY id;
DROP TRIGGER move_three ON shelf;
CREATE TABLE shelf_moves (id int, at timestamptz DEFAULT now());
CREATE RULE shelf_moves AS ON UPDATE TO shelf DO ALSO INSERT INTO shelf_moves (id) VALUES (old.id);
SELECT clock_timestamp() AS mark \gset
UPDATE shelf SET qty = -2 WHERE id IN (5, 6);
SELECT prodguard.restore_table('shelf', :'mark');
SELECT id, item, qty FROM shelf WHERE id IN (5, 6) ORDER BY id;
SELECT count(*) AS moves FROM shelf_moves;
-- A table whose own AFTER trigger deletes rows the restore has just put back: the INSERT
-- still runs for it and brings them back (only a table with no triggers but
-- pg_prodguard's skips it).
CREATE TABLE sessions (id int PRIMARY KEY, expires timestamptz NOT NULL, note text);
CREATE FUNCTION purge_expired() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN DELETE FROM public.sessions WHERE expires < now(); RETURN NULL; END $$;
CREATE TRIGGER purge AFTER UPDATE ON sessions FOR EACH STATEMENT EXECUTE FUNCTION purge_expired();
INSERT INTO sessions VALUES (1, now() - interval '1 day', 'expired'), (2, now() + interval '1 day', 'live');
SELECT prodguard.protect('sessions', test_data => false);
SELECT md5(string_agg(s::text, ',' ORDER BY id)) AS sessions_before FROM sessions s \gset
SELECT clock_timestamp() AS mark \gset
UPDATE sessions SET expires = expires + interval '30 days', note = 'x' WHERE true;
SELECT prodguard.restore_table('sessions', :'mark');
SELECT md5(string_agg(s::text, ',' ORDER BY id)) = :'sessions_before' AS same, count(*) FROM sessions s;
-- A BEFORE trigger that keeps rows from being updated back: the restore fails and says
-- so (as restore_row does), unless force => true, which restores the others.
CREATE TABLE invoice (id int PRIMARY KEY, status text, amount int);
CREATE FUNCTION keep_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'final' AND OLD.id = 1 THEN RETURN NULL; END IF;
    RETURN NEW;
END $$;
INSERT INTO invoice VALUES (1, 'draft', 10), (2, 'draft', 20);
SELECT prodguard.protect('invoice', test_data => false);
SELECT clock_timestamp() AS mark \gset
UPDATE invoice SET status = 'final', amount = 0 WHERE true;
CREATE TRIGGER keep_final BEFORE UPDATE ON invoice FOR EACH ROW EXECUTE FUNCTION keep_final();
SELECT prodguard.restore_table('invoice', :'mark');
SELECT * FROM invoice ORDER BY id;
SELECT prodguard.restore_table('invoice', :'mark', force => true);
SELECT * FROM invoice ORDER BY id;
-- Inheritance: a child table is another table (its own protection, its own audit); a
-- restore of the parent leaves the child's rows alone, also those with the same keys.
CREATE TABLE item (id int PRIMARY KEY, v text);
CREATE TABLE item_archive (archived_at date) INHERITS (item);
INSERT INTO item VALUES (1, 'one'), (2, 'two');
INSERT INTO item_archive VALUES (1, 'archived one', '2020-01-01'), (3, 'archived three', '2020-01-01');
SELECT prodguard.protect('item', test_data => false);
SELECT clock_timestamp() AS mark \gset
UPDATE ONLY item SET v = 'changed' WHERE true;
INSERT INTO item VALUES (3, 'new three');
SELECT prodguard.restore_table('item', :'mark');
SELECT tableoid::regclass, * FROM item ORDER BY 1, id;
-- A partitioned table is restored with the rights the caller has on it (the table the
-- call names), as its changes were made through it; its partitions have no grants of
-- their own. A row that moved between partitions goes back where it was.
CREATE ROLE ev_ops LOGIN IN ROLE prodguard_operator;
CREATE TABLE ev (id int, region text, v text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE ev_eu PARTITION OF ev FOR VALUES IN ('eu');
CREATE TABLE ev_us PARTITION OF ev FOR VALUES IN ('us');
INSERT INTO ev SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, 'v' || g FROM generate_series(1, 6) g;
GRANT SELECT, INSERT, UPDATE, DELETE ON ev TO ev_ops;
SELECT prodguard.protect('ev', test_data => false);
SELECT md5(string_agg(e::text, ',' ORDER BY id)) AS ev_before FROM ev e \gset
SELECT clock_timestamp() AS mark \gset
UPDATE ev SET v = 'oops' WHERE id <= 2;
UPDATE ev SET region = 'eu' WHERE id = 3;
DELETE FROM ev WHERE id = 4;
SET ROLE ev_ops;
SELECT prodguard.restore_table('ev', :'mark');
RESET ROLE;
SELECT md5(string_agg(e::text, ',' ORDER BY id)) = :'ev_before' AS same, count(*) FROM ev e;
SELECT tableoid::regclass, id, region FROM ev WHERE id = 3;
\c app
