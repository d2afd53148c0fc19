-- The comparison for the row audit: a supa_audit-style PL/pgSQL AFTER row trigger inserting
-- to_jsonb(NEW)/to_jsonb(OLD) into an audit table with an id, a timestamp and indexes on
-- time and table; installed on the table named by the psql variable tbl.
CREATE SCHEMA IF NOT EXISTS audit;
CREATE TABLE IF NOT EXISTS audit.record_version (
    id bigserial PRIMARY KEY, record_id jsonb, op text NOT NULL, ts timestamptz NOT NULL DEFAULT now(),
    table_oid oid NOT NULL, table_schema name NOT NULL, table_name name NOT NULL,
    record jsonb, old_record jsonb);
CREATE INDEX IF NOT EXISTS record_version_ts ON audit.record_version USING brin (ts);
CREATE INDEX IF NOT EXISTS record_version_table_oid ON audit.record_version (table_oid);
CREATE OR REPLACE FUNCTION audit.insert_update_delete_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit.record_version (record_id, op, table_oid, table_schema, table_name, record, old_record)
    VALUES (jsonb_build_object('id', coalesce(NEW.id, OLD.id)), TG_OP, TG_RELID, TG_TABLE_SCHEMA,
            TG_TABLE_NAME, CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END,
            CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END);
    RETURN NULL;
END $$;
CREATE TRIGGER audit_i_u_d AFTER INSERT OR UPDATE OR DELETE ON :tbl
    FOR EACH ROW EXECUTE FUNCTION audit.insert_update_delete_trigger();
