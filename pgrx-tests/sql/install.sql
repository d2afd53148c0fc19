-- Installing pg_prodguard. This server has the library in shared_preload_libraries and
-- no prodguard.environment in postgresql.conf, so this database is production.
CREATE EXTENSION pg_prodguard;

SELECT e.extname, n.nspname AS schema, e.extrelocatable
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE e.extname = 'pg_prodguard';

-- CREATE EXTENSION made the two roles, unable to log in.
SELECT rolname, rolcanlogin, rolsuper FROM pg_roles WHERE rolname LIKE 'prodguard%' ORDER BY 1;

-- What the guards will do in this session.
SELECT * FROM prodguard.status() WHERE setting <> 'version';

-- Every setting is described for SHOW / pg_settings.
SELECT name, setting, context, short_desc <> '' AS described
  FROM pg_settings WHERE name LIKE 'prodguard.%' ORDER BY name;

-- The prodguard. prefix is reserved: a misspelt setting is an error, not a silent no-op.
SET prodguard.enviroment = 'development';

-- Every object of the extension has a comment.
SELECT pg_describe_object(classid, objid, objsubid) AS object_without_comment
  FROM pg_depend d
 WHERE d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_prodguard')
   AND d.deptype = 'e'
   AND obj_description(objid, classid::regclass::name) IS NULL
   AND classid <> 'pg_type'::regclass;
SELECT obj_description('prodguard'::regnamespace, 'pg_namespace') IS NOT NULL AS schema_commented;

-- Nothing in the prodguard schema is writable by PUBLIC, and only auditors read the log.
CREATE ROLE alice LOGIN;
SET ROLE alice;
CREATE TABLE prodguard.mine (a int);
INSERT INTO prodguard.audit_log (action, db_user, environment) VALUES ('FORGED', 'alice', 'production');
SELECT count(*) FROM prodguard.audit_log;
RESET ROLE;
GRANT prodguard_auditor TO alice;
SET ROLE alice;
SELECT count(*) FROM prodguard.audit_log;
UPDATE prodguard.audit_log SET action = 'FORGED';
RESET ROLE;
SELECT n.nspname, c.relname, c.relacl
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'prodguard' AND c.relkind = 'r'
 ORDER BY 2;
SELECT nspacl FROM pg_namespace WHERE nspname = 'prodguard';
