-- DROP DATABASE and ALTER DATABASE ... RENAME of a protected database are refused from
-- any database. A database is protected when its effective environment is production (its
-- own tag, or the cluster default when it has none) or when prodguard.protected_databases
-- lists it.
CREATE DATABASE "Shop Ünïcode ""EU""";
CREATE DATABASE scratch_staging;
CREATE DATABASE scratch_dev;
CREATE DATABASE tools;
BEGIN;
SET LOCAL prodguard.override = 'test: tag scratch databases and the tools database';
ALTER DATABASE scratch_staging SET prodguard.environment = 'staging';
ALTER DATABASE scratch_dev SET prodguard.environment = 'development';
ALTER DATABASE tools SET prodguard.environment = 'development';
COMMIT;

-- From the maintenance database, which has no extension installed.
\c postgres
DROP DATABASE app;
\echo :LAST_ERROR_SQLSTATE
DROP DATABASE app WITH (FORCE);
ALTER DATABASE app RENAME TO app_old;
DROP DATABASE "Shop Ünïcode ""EU""";
-- From a development database: the target's environment decides, not the current one's.
\c tools
SHOW prodguard.environment;
DROP DATABASE app;
DROP DATABASE "Shop Ünïcode ""EU""";
-- A staging target only warns; a development target is dropped silently.
DROP DATABASE scratch_staging;
DROP DATABASE scratch_dev;
DROP DATABASE IF EXISTS no_such_database;
SELECT datname FROM pg_database WHERE datname NOT IN ('template0', 'template1') ORDER BY 1;

-- DROP DATABASE cannot run inside a transaction block, so its override is a plain SET
-- issued as the statement right before it; it counts for that one statement only.
\c app
SET prodguard.override = 'CHG-11: decommission the EU shop copy';
SELECT 1 AS another_statement;
DROP DATABASE "Shop Ünïcode ""EU""";
SET prodguard.override = 'CHG-11: decommission the EU shop copy';
DROP DATABASE "Shop Ünïcode ""EU""";
RESET prodguard.override;
SELECT action, object, override_reason, statement FROM prodguard.audit_log
 WHERE action = 'DROP DATABASE' ORDER BY id;

-- prodguard.protected_databases protects a database whatever its own tag says. It is set
-- in postgresql.conf (here with ALTER SYSTEM, itself needing an override, then a reload).
CREATE DATABASE "Billing DB";
BEGIN;
SET LOCAL prodguard.override = 'test: billing copy tagged development';
ALTER DATABASE "Billing DB" SET prodguard.environment = 'development';
COMMIT;
SET prodguard.override = 'CHG-12: never drop billing';
ALTER SYSTEM SET prodguard.protected_databases = '"Billing DB", archive';
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
SHOW prodguard.protected_databases;
\c tools
DROP DATABASE "Billing DB";
ALTER DATABASE "Billing DB" RENAME TO billing_old;
\c app
SET prodguard.override = 'CHG-13: clean up the test setting';
ALTER SYSTEM RESET prodguard.protected_databases;
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
RESET prodguard.override;
SHOW prodguard.protected_databases;
