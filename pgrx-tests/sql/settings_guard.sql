-- The protection cannot be lowered from a session: in production, changing any
-- prodguard.* setting other than prodguard.override needs an override, whatever the route.
SHOW prodguard.environment;
SET prodguard.environment = 'development';
\echo :LAST_ERROR_SQLSTATE
BEGIN;
SET LOCAL prodguard.environment = 'development';
ROLLBACK;
SELECT set_config('prodguard.environment', 'development', false);
SELECT set_config('prodguard.blocked_commands', '', true);
SET prodguard.blocked_commands = 'truncate';
-- A function's SET clause is applied when the function is created (to check its body)
-- and every time it is called: both are changes from a session.
CREATE FUNCTION quietly() RETURNS text LANGUAGE sql
    SET prodguard.environment = 'development' AS 'SELECT current_setting(''prodguard.environment'')';
BEGIN;
SET LOCAL prodguard.override = 'test: a function that would switch the guard off';
CREATE FUNCTION quietly() RETURNS text LANGUAGE sql
    SET prodguard.environment = 'development' AS 'SELECT current_setting(''prodguard.environment'')';
COMMIT;
SELECT quietly();
ALTER SYSTEM SET prodguard.environment = 'development';
ALTER SYSTEM RESET ALL;
ALTER DATABASE app SET prodguard.environment = 'development';
ALTER DATABASE app RESET prodguard.environment;
ALTER DATABASE app RESET ALL;
ALTER ROLE dev SET prodguard.environment = 'development';
ALTER ROLE dev IN DATABASE app SET prodguard.blocked_commands = '';
ALTER ROLE ALL SET prodguard.environment = 'development';
-- Startup options (PGOPTIONS) are refused at connection time; no override counts there.
\! PGOPTIONS='-c prodguard.environment=development' psql -X -q -d app -c 'SHOW prodguard.environment' 2>&1 | sed 's/^.*FATAL/FATAL/'
\! PGOPTIONS='-c prodguard.override=x -c prodguard.environment=development' psql -X -q -d app -c 'SHOW prodguard.environment' 2>&1 | sed 's/^.*FATAL/FATAL/'
SHOW prodguard.environment;
SHOW prodguard.blocked_commands;

-- Setting a value that changes nothing is not a change.
SET prodguard.environment = 'production';
SET prodguard.blocked_commands = 'drop_large_object, drop_sequence, drop_constraint, alter_type, set_unlogged, alter_column_type, guard_settings, drop_owned, drop_column, drop_database, drop_schema, drop_table, TRUNCATE';
RESET prodguard.blocked_commands;

-- Non-superusers cannot change the superuser-only settings at all; anyone may state a reason.
SET ROLE dev;
SET prodguard.environment = 'development';
SET prodguard.blocked_commands = '';
SET prodguard.override = 'anyone may state a reason';
RESET prodguard.override;
RESET ROLE;
-- prodguard.protected_databases is read from postgresql.conf only.
SET prodguard.protected_databases = 'app';

-- Bad values are refused when they are set (SQLSTATE 22023), before any guard looks at them.
SET prodguard.environment = 'prod';
\echo :LAST_ERROR_SQLSTATE
BEGIN;
SET LOCAL prodguard.override = 'test: bad token';
SET LOCAL prodguard.blocked_commands = 'truncate, drop_everything';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SET prodguard.override = 'test: bad list';
ALTER SYSTEM SET prodguard.protected_databases = 'app, "unterminated';
\echo :LAST_ERROR_SQLSTATE
RESET prodguard.override;

-- An operator's override lets a change through, and it is recorded.
BEGIN;
SET LOCAL prodguard.override = 'CHG-9: staging rehearsal in this session';
SET LOCAL prodguard.environment = 'staging';
SHOW prodguard.environment;
COMMIT;
SHOW prodguard.environment;
SELECT action, object, override_reason, statement FROM prodguard.audit_log
 WHERE action = 'SET' ORDER BY id;

-- A non-operator's override does not.
GRANT SET ON PARAMETER prodguard.environment TO dev;
SET ROLE dev;
BEGIN;
SET LOCAL prodguard.override = 'dev wants development';
SET LOCAL prodguard.environment = 'development';
ROLLBACK;
RESET ROLE;
REVOKE SET ON PARAMETER prodguard.environment FROM dev;

-- Values from postgresql.conf, ALTER DATABASE and ALTER ROLE are the configured state:
-- a database tagged development by an operator is development when you connect.
CREATE DATABASE app_sandbox;
BEGIN;
SET LOCAL prodguard.override = 'CHG-10: sandbox copy for the data team';
ALTER DATABASE app_sandbox SET prodguard.environment = 'development';
COMMIT;
\c app_sandbox
SHOW prodguard.environment;
-- In development, settings may be changed freely.
SET prodguard.blocked_commands = '';
SET prodguard.environment = 'production';
RESET prodguard.environment;
\c app
SELECT action, object, override_reason FROM prodguard.audit_log
 WHERE action IN ('ALTER DATABASE', 'ALTER ROLE', 'ALTER SYSTEM') ORDER BY id;
