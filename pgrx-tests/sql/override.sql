-- Break glass: SET LOCAL prodguard.override = '<reason>' lets a guarded statement run,
-- for members of prodguard_operator (superusers count), in that one transaction, and the
-- reason is recorded in prodguard.audit_log.
CREATE ROLE ops LOGIN IN ROLE prodguard_operator;   -- an operator
CREATE ROLE dev LOGIN;                              -- a developer, not an operator
CREATE TABLE orders (id int PRIMARY KEY, item text);
ALTER TABLE orders OWNER TO dev;
GRANT TRUNCATE, INSERT ON orders TO ops;
CREATE SCHEMA ops_tools AUTHORIZATION ops;
GRANT USAGE ON SCHEMA ops_tools TO dev;
INSERT INTO orders VALUES (1, 'shelf scan'), (2, 'price check');

-- A developer's override changes nothing, and the error says why.
\c - dev
BEGIN;
SET LOCAL prodguard.override = 'I know what I am doing';
TRUNCATE orders;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- An operator with a blank reason is refused too.
\c - ops
BEGIN;
SET LOCAL prodguard.override = '   ';
TRUNCATE orders;
ROLLBACK;

-- An operator with a reason: the statement runs and is audited.
BEGIN;
SET LOCAL prodguard.override = 'INC-1234: purge orders after the GDPR request';
SELECT value FROM prodguard.status() WHERE setting = 'override';
TRUNCATE orders;
COMMIT;
\c - postgres
SELECT action, object, table_name, override_reason, db_user, "session_user", environment,
       statement, backend_pid > 0 AS has_pid, txid IS NOT NULL AS has_txid
  FROM prodguard.audit_log WHERE action = 'TRUNCATE' AND table_name = 'orders';
-- (an empty table loses nothing to a TRUNCATE: refill it so the refusals below mean
-- something)
INSERT INTO orders VALUES (1, 'shelf scan'), (2, 'price check');
-- One override covers every guarded statement of its transaction; each is audited.
CREATE TABLE old_orders (id int, note text);
INSERT INTO old_orders VALUES (1, 'kept until retired');
CREATE SCHEMA legacy;
CREATE ROLE contractor;
BEGIN;
SET LOCAL prodguard.override = 'CHG-5: retire the legacy order tables';
ALTER TABLE old_orders DROP COLUMN note;
DROP TABLE old_orders;
DROP SCHEMA legacy;
DROP OWNED BY contractor;
COMMIT;
SELECT action, object, override_reason FROM prodguard.audit_log
 WHERE override_reason LIKE 'CHG-5%' ORDER BY id;
\c - ops

-- The override is gone in the next transaction...
TRUNCATE orders;
-- ...also when it was set with a plain SET: it counts only in the transaction that set it.
SET prodguard.override = 'session-wide reason';
TRUNCATE orders;
BEGIN;
TRUNCATE orders;
ROLLBACK;
-- A plain SET inside a transaction block counts for that block only.
BEGIN;
SET prodguard.override = 'INC-1235: second purge';
TRUNCATE orders;
INSERT INTO orders VALUES (1, 'shelf scan'), (2, 'price check');
COMMIT;
TRUNCATE orders;
RESET prodguard.override;
-- A savepoint rolled back takes its override with it.
BEGIN;
SAVEPOINT before_override;
SET LOCAL prodguard.override = 'will be rolled back';
ROLLBACK TO SAVEPOINT before_override;
TRUNCATE orders;
ROLLBACK;

-- The role that SET the reason must be an operator: a developer cannot borrow an
-- operator's SECURITY DEFINER function to break glass...
CREATE FUNCTION ops_tools.purge_orders() RETURNS void LANGUAGE sql SECURITY DEFINER
    SET search_path = public AS 'TRUNCATE orders';
GRANT EXECUTE ON FUNCTION ops_tools.purge_orders() TO dev;
\c - dev
BEGIN;
SET LOCAL prodguard.override = 'borrowing the operator''s function';
SELECT ops_tools.purge_orders();
ROLLBACK;
-- ...nor an operator's function whose SET clause carries a reason: the clause is evaluated
-- for the caller, who is not an operator (an approved change is the way to let a
-- non-operator run a guarded task, see changes.sql)...
\c - ops
CREATE FUNCTION ops_tools.nightly_purge() RETURNS void LANGUAGE sql SECURITY DEFINER
    SET search_path = public SET prodguard.override = 'CHG-77: nightly purge approved by ops'
    AS 'TRUNCATE orders';
GRANT EXECUTE ON FUNCTION ops_tools.nightly_purge() TO dev;
\c - dev
SELECT ops_tools.nightly_purge();
-- ...nor the value PostgreSQL puts back when such a function returns, which is assigned
-- while the function's owner is still the current user.
\c - ops
CREATE FUNCTION ops_tools.reasoned() RETURNS int LANGUAGE sql SECURITY DEFINER
    SET prodguard.override = 'ops reason' AS 'SELECT 1';
GRANT EXECUTE ON FUNCTION ops_tools.reasoned() TO dev;
\c - dev
BEGIN;
SET LOCAL prodguard.override = 'borrowed after return';
SELECT ops_tools.reasoned();
SHOW prodguard.override;
TRUNCATE orders;
ROLLBACK;
-- The operator calling the same function runs it (both the caller and the owner are
-- operators).
\c - ops
SELECT ops_tools.nightly_purge();
INSERT INTO orders VALUES (1, 'shelf scan'), (2, 'price check');
-- Values from ALTER ROLE / ALTER DATABASE ... SET are applied at login, by nobody's
-- statement: they never count, not even for a superuser's first statement (a database
-- owner could plant one for a superuser to trip over).
\c - postgres
ALTER ROLE postgres IN DATABASE app SET prodguard.override = 'planted by the database owner';
\c - postgres
DROP DATABASE template1;   -- (PostgreSQL would refuse it too, after us)
SHOW prodguard.override;
TRUNCATE orders;
ALTER ROLE postgres IN DATABASE app RESET prodguard.override;
ALTER DATABASE app SET prodguard.override = 'planted for everyone';
\c - ops
TRUNCATE orders;
\c - postgres
ALTER DATABASE app RESET prodguard.override;
\c - postgres
SELECT action, table_name, override_reason, db_user, "session_user"
  FROM prodguard.audit_log WHERE table_name = 'orders' ORDER BY id;
