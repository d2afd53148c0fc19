-- pg_prodguard: the protected_tables view and the comments of protect() and unprotect().
CREATE VIEW prodguard.protected_tables AS
WITH migration_history AS (
    SELECT c.oid
      FROM pg_catalog.pg_class c
     WHERE c.relname IN (SELECT prodguard.migration_history_names())
       AND c.relkind IN ('r', 'p')
       AND c.relpersistence <> 't'
)
SELECT coalesce(p.table_name, m.oid::regclass) AS table_name,
       coalesce(p.audit, false) AS audit,
       coalesce(p.test_data, false) AS test_data,
       coalesce(p.forbid_delete, false) OR m.oid IS NOT NULL AS forbid_delete,
       m.oid IS NOT NULL AS migration_history,
       coalesce(p.via, 'migration_history') AS via
  FROM prodguard.table_protection p
  FULL JOIN migration_history m ON m.oid = p.table_name::oid
 WHERE p.table_name IS NULL
    OR EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid = p.table_name::oid);
GRANT SELECT ON prodguard.protected_tables TO PUBLIC;
COMMENT ON VIEW prodguard.protected_tables IS
    'pg_prodguard: every protected table and its options; migration-history tables are protected automatically (forbid_delete).';
COMMENT ON COLUMN prodguard.protected_tables.migration_history IS
    'Protected automatically, by name, as a migration-history table.';
COMMENT ON COLUMN prodguard.protected_tables.via IS
    'How the table is protected: table (protect()), schema (protect_schema()) or migration_history (by its name).';
COMMENT ON FUNCTION prodguard.protect(regclass, boolean, boolean, boolean) IS
    'Protect a table: audit its changes, refuse test data, and/or (forbid_delete) refuse DELETE, TRUNCATE and DROP in production. Idempotent; lowering an option needs an override in production.';
COMMENT ON FUNCTION prodguard.unprotect(regclass) IS
    'Remove a table''s protection; in production this needs an override.';
COMMENT ON FUNCTION prodguard.migration_history_names() IS
    'Names of the migration-history tables pg_prodguard protects automatically, in any schema.';
REVOKE ALL ON FUNCTION prodguard._forget_dropped_tables() FROM PUBLIC;
COMMENT ON FUNCTION prodguard._forget_dropped_tables() IS
    'Internal: the body of the event trigger prodguard_forget_dropped_tables.';
