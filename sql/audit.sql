-- pg_prodguard: row audit, backups and restore (SPEC §6).

-- Operators restore from the log, so they read it too.
GRANT SELECT ON prodguard.audit_log TO prodguard_operator;

CREATE TABLE prodguard.backup_table (
    audit_id    bigint PRIMARY KEY,
    table_oid   oid NOT NULL,
    schema_name text NOT NULL,
    table_name  text NOT NULL,
    columns     jsonb NOT NULL,
    primary_key text[],
    row_count   bigint NOT NULL,
    table_owner name
);
CREATE TABLE prodguard.backup_row (
    audit_id bigint NOT NULL,
    ordinal  bigint NOT NULL,
    row_data jsonb NOT NULL,
    PRIMARY KEY (audit_id, ordinal)
);
REVOKE ALL ON prodguard.backup_table, prodguard.backup_row FROM PUBLIC;
GRANT SELECT ON prodguard.backup_table, prodguard.backup_row TO prodguard_auditor, prodguard_operator;
COMMENT ON TABLE prodguard.backup_table IS
    'pg_prodguard: the definition of each protected table an overridden TRUNCATE, DROP TABLE or DROP SCHEMA destroyed (append-only).';
COMMENT ON COLUMN prodguard.backup_table.audit_id IS 'The audit_log entry of the destructive command.';
COMMENT ON COLUMN prodguard.backup_table.table_oid IS 'The table as it was.';
COMMENT ON COLUMN prodguard.backup_table.schema_name IS 'Its schema.';
COMMENT ON COLUMN prodguard.backup_table.table_name IS 'Its name.';
COMMENT ON COLUMN prodguard.backup_table.columns IS 'Its columns: name, type (format_type), not_null; enough to recreate it.';
COMMENT ON COLUMN prodguard.backup_table.primary_key IS 'Its primary key columns.';
COMMENT ON COLUMN prodguard.backup_table.row_count IS 'How many rows were copied to backup_row.';
COMMENT ON TABLE prodguard.backup_row IS
    'pg_prodguard: the rows of each protected table an overridden TRUNCATE, DROP TABLE or DROP SCHEMA destroyed (append-only).';
COMMENT ON COLUMN prodguard.backup_row.audit_id IS 'The audit_log entry of the destructive command.';
COMMENT ON COLUMN prodguard.backup_row.ordinal IS 'Order of the row in the copy.';
COMMENT ON COLUMN prodguard.backup_row.row_data IS 'The row, as to_jsonb().';

-- Append-only, for every role: the triggers fire ALWAYS, also under
-- session_replication_role = replica, and the command guard refuses disabling them.
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON prodguard.audit_log
    FOR EACH ROW EXECUTE FUNCTION prodguard.append_only();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON prodguard.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION prodguard.append_only();
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON prodguard.backup_table
    FOR EACH ROW EXECUTE FUNCTION prodguard.append_only();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON prodguard.backup_table
    FOR EACH STATEMENT EXECUTE FUNCTION prodguard.append_only();
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON prodguard.backup_row
    FOR EACH ROW EXECUTE FUNCTION prodguard.append_only();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON prodguard.backup_row
    FOR EACH STATEMENT EXECUTE FUNCTION prodguard.append_only();
ALTER TABLE prodguard.audit_log ENABLE ALWAYS TRIGGER append_only, ENABLE ALWAYS TRIGGER append_only_truncate;
ALTER TABLE prodguard.backup_table ENABLE ALWAYS TRIGGER append_only, ENABLE ALWAYS TRIGGER append_only_truncate;
ALTER TABLE prodguard.backup_row ENABLE ALWAYS TRIGGER append_only, ENABLE ALWAYS TRIGGER append_only_truncate;

-- The audit log, its backups and the protection settings are dumped with the database.
SELECT pg_catalog.pg_extension_config_dump('prodguard.audit_log', '');
SELECT pg_catalog.pg_extension_config_dump('prodguard.audit_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('prodguard.backup_table', '');
SELECT pg_catalog.pg_extension_config_dump('prodguard.backup_row', '');

CREATE FUNCTION prodguard.undo_transaction(txid xid8, force boolean DEFAULT false)
RETURNS bigint LANGUAGE sql VOLATILE STRICT SET search_path = pg_catalog, pg_temp
AS 'SELECT prodguard._undo_transaction($1::text, $2)';

CREATE FUNCTION prodguard.row_history(tbl regclass, key jsonb)
RETURNS SETOF prodguard.audit_log LANGUAGE sql STABLE STRICT SET search_path = pg_catalog, pg_temp
-- (the key's bloom filters are the way in: row_key is not ordered with the log, and the
-- planner's BRIN estimate would rather read the whole log)
SET enable_seqscan = off
AS $$
    SELECT a.* FROM prodguard.audit_log a
     WHERE a.table_oid IN (SELECT tbl UNION SELECT relid FROM pg_partition_tree(tbl))
       AND a.row_key = key
     ORDER BY a.id
$$;

CREATE VIEW prodguard.recent_destructive AS
SELECT a.id AS audit_id, a.logged_at AS "when", a.action AS command, a.object, a.db_user,
       a."session_user", a.application_name, a.client_addr, a.backend_pid,
       a.override_reason AS reason, a.environment, a.statement,
       EXISTS (SELECT FROM prodguard.backup_table b WHERE b.audit_id = a.id) AS has_backup
  FROM prodguard.audit_log a
 WHERE a.object IS NOT NULL
 ORDER BY a.id DESC;
REVOKE ALL ON prodguard.recent_destructive FROM PUBLIC;
GRANT SELECT ON prodguard.recent_destructive TO prodguard_auditor, prodguard_operator;

COMMENT ON FUNCTION prodguard.append_only() IS
    'Internal: keeps the audit log and its backups append-only.';
COMMENT ON FUNCTION prodguard.purge_audit(interval) IS
    'Remove audit entries (and their backups) older than the interval; members of prodguard_operator, with an override in production.';
COMMENT ON FUNCTION prodguard.restore_row(bigint, boolean) IS
    'Undo one audited row change; refuses if the row changed again later, unless force.';
COMMENT ON FUNCTION prodguard.undo_transaction(xid8, boolean) IS
    'Undo every audited row change of one transaction, newest first; returns how many.';
COMMENT ON FUNCTION prodguard._undo_transaction(text, boolean) IS 'Internal: the body of prodguard.undo_transaction().';
COMMENT ON FUNCTION prodguard.restore_table(regclass, timestamptz, boolean) IS
    'Put a table back as it was at a time, as far as the audit log reaches; returns how many changes were undone.';
COMMENT ON FUNCTION prodguard.restore_backup(bigint) IS
    'Bring back the rows of an overridden TRUNCATE or DROP TABLE, recreating the table if it is gone.';
COMMENT ON FUNCTION prodguard.row_history(regclass, jsonb) IS
    'The audit entries of one row of a table (and its partitions), oldest first; key as in audit_log.row_key.';
COMMENT ON VIEW prodguard.recent_destructive IS
    'pg_prodguard: guarded commands that ran (overridden in production, warned in staging): when, who, from where, why.';
COMMENT ON FUNCTION prodguard.audit_trigger() IS 'Internal: AFTER row trigger that prodguard.protect(audit => true) installs; one audit_log row per changed row.';
COMMENT ON FUNCTION prodguard.truncate_trigger() IS 'Internal: BEFORE TRUNCATE statement trigger of protected tables (ENABLE ALWAYS); audits and backs up a TRUNCATE applied by logical replication.';
COMMENT ON COLUMN prodguard.backup_table.table_owner IS 'The owner of the table when it was backed up; restore_backup() recreates a dropped table with it.';

-- Who reads what of the audit (issue 19): an entry that carries row values (a row change,
-- test-data matches) is visible to a reader who may SELECT the whole table (every column)
-- now, and, for a table with row-level security, only to its owner or a role that
-- bypasses row security; entries of dropped tables, to superusers. Entries of commands
-- (who ran which guarded statement, why) are visible to every reader of the log. Superusers and the extension's owner bypass the policy; restores
-- and the writer read and write as the owner.
CREATE FUNCTION prodguard._audit_visible(tbl oid) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$
    -- (search_path pinned: the body is parsed when called, and a reader's own operators
    -- must not stand in for pg_catalog's)
    SELECT tbl IS NULL OR EXISTS (
        SELECT FROM pg_catalog.pg_class c
         CROSS JOIN LATERAL (SELECT COALESCE(pg_catalog.pg_partition_root(c.oid), c.oid::pg_catalog.regclass) AS root) r
         WHERE c.oid OPERATOR(pg_catalog.=) tbl
           AND (pg_catalog.has_table_privilege(r.root, 'SELECT')
                -- column privileges on every column, and no dropped column (whose values
                -- old entries still hold, and no column privilege covers)
                OR NOT EXISTS (SELECT FROM pg_catalog.pg_attribute a
                                WHERE a.attrelid OPERATOR(pg_catalog.=) r.root
                                  AND a.attnum OPERATOR(pg_catalog.>) 0
                                  AND (a.attisdropped
                                       OR NOT pg_catalog.has_column_privilege(r.root, a.attnum, 'SELECT'))))
           AND NOT EXISTS (SELECT FROM pg_catalog.pg_class s
                            WHERE s.oid OPERATOR(pg_catalog.=) ANY (ARRAY[c.oid, r.root::pg_catalog.oid])
                              AND s.relrowsecurity
                              AND NOT pg_catalog.pg_has_role(s.relowner, 'USAGE')
                              AND NOT (SELECT u.rolbypassrls FROM pg_catalog.pg_roles u
                                        WHERE u.rolname OPERATOR(pg_catalog.=) current_user)))
$$;
COMMENT ON FUNCTION prodguard._audit_visible(oid) IS
    'Internal: whether the current role may read audit entries and backups of a table (row security of audit_log and backup_row).';
ALTER TABLE prodguard.audit_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY readers ON prodguard.audit_log FOR SELECT USING (
    (row_key IS NULL AND old_row IS NULL AND new_row IS NULL AND test_data IS NULL)
    OR prodguard._audit_visible(table_oid));
COMMENT ON POLICY readers ON prodguard.audit_log IS
    'Entries that carry row values: for roles that may SELECT all of their table (and bypass its row security, if any); entries of commands: for every reader.';
ALTER TABLE prodguard.backup_row ENABLE ROW LEVEL SECURITY;
CREATE POLICY readers ON prodguard.backup_row FOR SELECT USING (
    EXISTS (SELECT FROM prodguard.backup_table b
             WHERE b.audit_id = backup_row.audit_id AND prodguard._audit_visible(b.table_oid)));
COMMENT ON POLICY readers ON prodguard.backup_row IS
    'Backed-up rows: for roles that may SELECT all of their table (superusers, once it is dropped).';
