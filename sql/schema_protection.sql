-- pg_prodguard: coverage by schema (SPEC §10). A protected schema's tables, those there now
-- and those created or moved there later, are protected with the schema's options; each
-- keeps its own row in prodguard.table_protection (via = 'schema').
CREATE TABLE prodguard.schema_protection (
    schema_name   regnamespace PRIMARY KEY,
    audit         boolean NOT NULL,
    test_data     boolean NOT NULL,
    forbid_delete boolean NOT NULL,
    protected_at  timestamptz NOT NULL DEFAULT now(),
    protected_by  text NOT NULL
);
REVOKE ALL ON prodguard.schema_protection FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('prodguard.schema_protection', '');
COMMENT ON TABLE prodguard.schema_protection IS
    'pg_prodguard: the schemas given to prodguard.protect_schema() and their options. Write it only through protect_schema() and unprotect_schema().';

CREATE FUNCTION prodguard.protect_schema(schema name, audit boolean DEFAULT true,
                                         test_data boolean DEFAULT true,
                                         forbid_delete boolean DEFAULT false)
RETURNS integer LANGUAGE sql VOLATILE
AS 'SELECT prodguard._protect_schema(schema::text, audit, test_data, forbid_delete)';
COMMENT ON FUNCTION prodguard.protect_schema(name, boolean, boolean, boolean) IS
    'Protect every table of a schema, now and when created later, with these options; returns how many tables it protected now. Lowering the options needs an override in production.';
CREATE FUNCTION prodguard.unprotect_schema(schema name) RETURNS void LANGUAGE sql VOLATILE
AS 'SELECT prodguard._unprotect_schema(schema::text)';
COMMENT ON FUNCTION prodguard.unprotect_schema(name) IS
    'Remove a schema''s protection from its tables and from the tables created there later; in production this needs an override.';
COMMENT ON FUNCTION prodguard._protect_schema(text, boolean, boolean, boolean) IS 'Internal: the body of prodguard.protect_schema().';
COMMENT ON FUNCTION prodguard._unprotect_schema(text) IS 'Internal: the body of prodguard.unprotect_schema().';

-- New tables of a protected schema are protected in the transaction that creates them
-- (or moves them there with ALTER TABLE ... SET SCHEMA).
CREATE FUNCTION prodguard.protect_new_tables() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM prodguard._protect_new_tables();
END
$$;
REVOKE ALL ON FUNCTION prodguard.protect_new_tables() FROM PUBLIC;
REVOKE ALL ON FUNCTION prodguard._protect_new_tables() FROM PUBLIC;
COMMENT ON FUNCTION prodguard.protect_new_tables() IS
    'pg_prodguard: event trigger function; protects the tables a statement creates in (or moves to) a protected schema.';
COMMENT ON FUNCTION prodguard._protect_new_tables() IS
    'Internal: the body of the event trigger prodguard_protect_new_tables.';
CREATE EVENT TRIGGER prodguard_protect_new_tables ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'ALTER TABLE')
    EXECUTE FUNCTION prodguard.protect_new_tables();
ALTER EVENT TRIGGER prodguard_protect_new_tables ENABLE ALWAYS;
COMMENT ON EVENT TRIGGER prodguard_protect_new_tables IS
    'pg_prodguard: protects the new tables of protected schemas.';
