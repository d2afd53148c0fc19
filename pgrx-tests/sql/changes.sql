-- Approved changes (four eyes): one operator requests a change for a role of this
-- database, another approves it, and that role's sessions may then run guarded statements
-- under prodguard.override = 'change:<id>', across transactions, until it expires or is
-- revoked. Every guarded statement run under it is audited with the change.
CREATE ROLE cr_alice LOGIN IN ROLE prodguard_operator;   -- operator
CREATE ROLE cr_bob LOGIN IN ROLE prodguard_operator;     -- operator
CREATE ROLE cr_deploy LOGIN;                             -- the deploy tool's role
CREATE ROLE cr_intruder LOGIN;
CREATE TABLE cr_mine (a int);
INSERT INTO cr_mine VALUES (1);
ALTER TABLE cr_mine OWNER TO cr_intruder;
CREATE TABLE cr_accounts (id int PRIMARY KEY, legacy_status text, balance numeric);
ALTER TABLE cr_accounts OWNER TO cr_deploy;
INSERT INTO cr_accounts VALUES (1, 'old', 10), (2, 'old', 20);

-- Without a change, the deploy's destructive migration is refused.
\c - cr_deploy
ALTER TABLE cr_accounts DROP COLUMN legacy_status;

-- Alice asks; she cannot approve her own request.
\c - cr_alice
SELECT prodguard.request_change('CHG-9: drop the legacy status column', 'cr_deploy', '1 hour') AS change_id;
SELECT prodguard.approve_change(1);
\echo :LAST_ERROR_SQLSTATE
-- Before approval the change is not in force.
\c - cr_deploy
SET prodguard.override = 'change:1';
ALTER TABLE cr_accounts DROP COLUMN legacy_status;
-- Bob approves; approving twice is an error.
\c - cr_bob
SELECT prodguard.approve_change(1);
SELECT prodguard.approve_change(1);
\echo :LAST_ERROR_SQLSTATE
-- Now the deploy runs unchanged, statement after statement, transaction after transaction.
\c - cr_deploy
SET prodguard.override = 'change:1';
ALTER TABLE cr_accounts DROP COLUMN legacy_status;
BEGIN;
DELETE FROM cr_accounts;
ROLLBACK;
SELECT value FROM prodguard.status() WHERE setting = 'override';
-- Another role cannot use it.
\c - cr_intruder
SET prodguard.override = 'change:1';
TRUNCATE cr_mine;
\c - postgres
SELECT id, database, db_role, reason, requested_by, approved_by, revoked_by, statements,
       valid_until > requested_at AS has_expiry
  FROM prodguard.changes;
SELECT action, object, override_reason FROM prodguard.audit_log
 WHERE override_reason LIKE 'change:%' ORDER BY id;

-- Revoked by an operator: no longer honoured.
\c - cr_alice
SELECT prodguard.revoke_change(1);
SELECT prodguard.revoke_change(1);
\c - cr_deploy
SET prodguard.override = 'change:1';
ALTER TABLE cr_accounts DROP COLUMN balance;

-- Expired: no longer honoured.
\c - cr_alice
SELECT prodguard.request_change('CHG-10: short window', 'cr_deploy', '1 second') AS change_id;
\c - cr_bob
SELECT prodguard.approve_change(2);
SELECT pg_sleep(1.2);
\c - cr_deploy
SET prodguard.override = 'change:2';
ALTER TABLE cr_accounts DROP COLUMN balance;

-- From the connection's startup options (PGOPTIONS), as a migration tool would be run.
\c - cr_alice
SELECT prodguard.request_change('CHG-11: deploy 2026-12-01', 'cr_deploy') AS change_id;
\c - cr_bob
SELECT prodguard.approve_change(3);
\c "dbname=app user=cr_deploy options='-c prodguard.override=change:3'"
SHOW prodguard.override;
ALTER TABLE cr_accounts DROP COLUMN balance;
\c - postgres
SELECT id, statements FROM prodguard.changes ORDER BY id;

-- Bad input: clear errors, nothing approved.
\c - cr_deploy
SET prodguard.override = 'change:abc';
\echo :LAST_ERROR_SQLSTATE
SET prodguard.override = 'change:-4';
SET prodguard.override = 'change:999';
TRUNCATE cr_accounts;
RESET prodguard.override;
SELECT prodguard.request_change('not an operator', 'cr_deploy');
\echo :LAST_ERROR_SQLSTATE
SELECT prodguard.approve_change(3);
\echo :LAST_ERROR_SQLSTATE
\c - cr_alice
SELECT prodguard.request_change(NULL, 'cr_deploy');
\echo :LAST_ERROR_SQLSTATE
SELECT prodguard.request_change('   ', 'cr_deploy');
SELECT prodguard.request_change('x', 'no_such_role');
SELECT prodguard.request_change('x', 'cr_deploy', '-1 hour');
\echo :LAST_ERROR_SQLSTATE
SELECT prodguard.request_change('x', 'cr_deploy', '1 year');
SELECT prodguard.approve_change(12345);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS changes, count(approved_by) AS approved FROM prodguard.changes;

-- prodguard.require_approval = on: plain reasons are no longer enough in production, and
-- the HINT says how to request a change.
\c - postgres
SET prodguard.override = 'turn on four eyes';
ALTER SYSTEM SET prodguard.require_approval = on;
SELECT pg_reload_conf();
SELECT pg_sleep(0.3);
SHOW prodguard.require_approval;
BEGIN;
SET LOCAL prodguard.override = 'INC-77: a plain reason';
TRUNCATE cr_accounts;
ROLLBACK;
-- Switching it off again needs an approved change for this role.
\c - cr_alice
SELECT prodguard.request_change('CHG-12: end the four-eyes trial', 'postgres') AS change_id;
\c - cr_bob
SELECT prodguard.approve_change(4);
\c - postgres
SET prodguard.override = 'change:4';
ALTER SYSTEM RESET prodguard.require_approval;
SELECT pg_reload_conf();
SELECT pg_sleep(0.3);
RESET prodguard.override;
SHOW prodguard.require_approval;

-- Operators are made by superusers: a role with CREATEROLE can grant itself membership in
-- prodguard_operator (PostgreSQL 15 lets it), but that does not make it an operator.
CREATE ROLE cr_admin LOGIN CREATEROLE;
CREATE TABLE cr_admin_table (a int);
INSERT INTO cr_admin_table VALUES (1);
ALTER TABLE cr_admin_table OWNER TO cr_admin;
\c - cr_admin
GRANT prodguard_operator TO cr_admin;
BEGIN;
SET LOCAL prodguard.override = 'I granted myself operator';
TRUNCATE cr_admin_table;
ROLLBACK;
SELECT prodguard.request_change('self-made operator', 'cr_admin');
\c - postgres
-- the same membership granted by a superuser counts
REVOKE prodguard_operator FROM cr_admin;
GRANT prodguard_operator TO cr_admin;
\c - cr_admin
BEGIN;
SET LOCAL prodguard.override = 'INC-78: granted by the DBA';
TRUNCATE cr_admin_table;
COMMIT;
\c - postgres
