-- pg_prodguard 0.1.0 -> 0.2.0 (ALTER EXTENSION pg_prodguard UPDATE). Adds what 0.2.0
-- installs and 0.1.0 did not have; keeps every row of the audit log, backups, denial log,
-- dictionaries and protection rules.
\echo Use "ALTER EXTENSION pg_prodguard UPDATE TO '0.2.0'" to load this file. \quit

-- Functions of the library that are new in 0.2.0.
CREATE FUNCTION prodguard."_request_change"("reason" TEXT, "db_role" TEXT, "valid_for" interval)
RETURNS bigint VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'request_change_wrapper';
CREATE FUNCTION prodguard."approve_change"("change_id" bigint)
RETURNS void STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'approve_change_wrapper';
CREATE FUNCTION prodguard."revoke_change"("change_id" bigint)
RETURNS void STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'revoke_change_wrapper';
CREATE FUNCTION prodguard."truncate_trigger"()
RETURNS TRIGGER LANGUAGE c AS 'MODULE_PATHNAME', 'truncate_trigger_wrapper';
COMMENT ON FUNCTION prodguard.truncate_trigger() IS 'Internal: BEFORE TRUNCATE statement trigger of protected tables (ENABLE ALWAYS); audits and backs up a TRUNCATE applied by logical replication.';

-- Approved changes: as sql/changes.sql.
CREATE TABLE prodguard.change_request (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    database     name NOT NULL,
    db_role      name NOT NULL,
    reason       text NOT NULL CHECK (pg_catalog.btrim(reason) <> ''),
    requested_by name NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    valid_until  timestamptz NOT NULL,
    approved_by  name,
    approved_at  timestamptz,
    revoked_by   name,
    revoked_at   timestamptz,
    CHECK (approved_by IS DISTINCT FROM requested_by)
);
REVOKE ALL ON prodguard.change_request FROM PUBLIC;
GRANT SELECT ON prodguard.change_request TO prodguard_operator, prodguard_auditor;
SELECT pg_catalog.pg_extension_config_dump('prodguard.change_request', '');
SELECT pg_catalog.pg_extension_config_dump('prodguard.change_request_id_seq', '');
COMMENT ON SEQUENCE prodguard.change_request_id_seq IS 'pg_prodguard: ids of approved changes.';
COMMENT ON TABLE prodguard.change_request IS
    'pg_prodguard: approved changes, written only by request_change(), approve_change() and revoke_change(); read prodguard.changes.';

CREATE VIEW prodguard.changes AS
SELECT c.id, c.database, c.db_role, c.reason, c.requested_by, c.requested_at, c.valid_until,
       c.approved_by, c.approved_at, c.revoked_by, c.revoked_at,
       (SELECT count(*) FROM prodguard.audit_log a
         WHERE a.object IS NOT NULL
           AND a.override_reason LIKE 'change:' || c.id || ' %') AS statements
  FROM prodguard.change_request c;
REVOKE ALL ON prodguard.changes FROM PUBLIC;
GRANT SELECT ON prodguard.changes TO prodguard_operator, prodguard_auditor;
COMMENT ON VIEW prodguard.changes IS
    'pg_prodguard: approved changes (four eyes): who asked, who approved, until when, and how many guarded statements ran under each.';
COMMENT ON COLUMN prodguard.changes.statements IS
    'Guarded statements run under the change (audit_log entries whose override_reason names it).';

CREATE FUNCTION prodguard.request_change(reason text, db_role name DEFAULT current_user,
                                         valid_for interval DEFAULT '1 hour')
RETURNS bigint LANGUAGE sql VOLATILE
AS 'SELECT prodguard._request_change(reason, db_role::text, valid_for)';
COMMENT ON FUNCTION prodguard.request_change(text, name, interval) IS
    'Ask for an approved change for a role of this database (members of prodguard_operator); another operator approves it with approve_change(). Returns its id.';
COMMENT ON FUNCTION prodguard._request_change(text, text, interval) IS 'Internal: the body of prodguard.request_change().';
COMMENT ON FUNCTION prodguard.approve_change(bigint) IS
    'Approve a change another operator requested; from then until it expires, its role may use prodguard.override = ''change:<id>''.';
COMMENT ON FUNCTION prodguard.revoke_change(bigint) IS
    'End a change early (its requester or any operator).';

-- Backups keep the table's owner, for restore_backup() to recreate a dropped table with.
ALTER TABLE prodguard.backup_table ADD COLUMN table_owner name;
COMMENT ON COLUMN prodguard.backup_table.table_owner IS 'The owner of the table when it was backed up; restore_backup() recreates a dropped table with it.';

-- The event trigger's DELETE runs in the library (only it writes the table in production).
CREATE FUNCTION prodguard."_forget_dropped_tables"() RETURNS void
VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'forget_dropped_tables_wrapper';
REVOKE ALL ON FUNCTION prodguard._forget_dropped_tables() FROM PUBLIC;
COMMENT ON FUNCTION prodguard._forget_dropped_tables() IS
    'Internal: the body of the event trigger prodguard_forget_dropped_tables.';
CREATE OR REPLACE FUNCTION prodguard.forget_dropped_tables() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- (the DELETE runs in the library, which alone may write the table in production)
    PERFORM prodguard._forget_dropped_tables();
END
$$;

-- Every protected table gets the trigger that records a TRUNCATE applied by logical
-- replication (0.2.0's protect() installs it).
DO $upgrade$
DECLARE
    t regclass;
BEGIN
    FOR t IN SELECT table_name FROM prodguard.table_protection LOOP
        EXECUTE format('CREATE OR REPLACE TRIGGER zz_prodguard_truncate BEFORE TRUNCATE ON %s
                            FOR EACH STATEMENT EXECUTE FUNCTION prodguard.truncate_trigger()', t);
        EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER zz_prodguard_truncate', t);
    END LOOP;
END
$upgrade$;

-- The test-data trigger of 0.2.0 is an AFTER row trigger (it judges the row as stored,
-- after every BEFORE trigger, generated columns computed), named to fire before the audit
-- trigger, and fires ALWAYS: session_replication_role = replica no longer silences it.
DO $upgrade$
DECLARE
    t regclass;
BEGIN
    FOR t IN SELECT tgrelid::regclass FROM pg_catalog.pg_trigger
              WHERE tgname = 'zz_prodguard_test_data' AND NOT tgisinternal AND tgparentid = 0 LOOP
        EXECUTE format('DROP TRIGGER zz_prodguard_test_data ON %s', t);
        EXECUTE format('CREATE TRIGGER zz_prodguard_a_test_data AFTER INSERT OR UPDATE ON %s
                            FOR EACH ROW EXECUTE FUNCTION prodguard.test_data_trigger()', t);
        EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER zz_prodguard_a_test_data', t);
    END LOOP;
END
$upgrade$;

-- Coverage by schema (SPEC §10): how each table came to be protected, the protected
-- schemas, protect_schema() / unprotect_schema(), and the event trigger that protects new
-- tables of a protected schema.
ALTER TABLE prodguard.table_protection
    ADD COLUMN via text NOT NULL DEFAULT 'table' CHECK (via IN ('table', 'schema'));
COMMENT ON COLUMN prodguard.table_protection.via IS 'table: by protect(); schema: by protect_schema() of its schema.';
CREATE OR REPLACE VIEW prodguard.protected_tables AS
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
COMMENT ON COLUMN prodguard.protected_tables.via IS
    'How the table is protected: table (protect()), schema (protect_schema()) or migration_history (by its name).';
CREATE FUNCTION prodguard."_protect_schema"("schema" TEXT, "audit" bool, "test_data" bool, "forbid_delete" bool)
RETURNS INT STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'protect_schema_wrapper';
CREATE FUNCTION prodguard."_unprotect_schema"("schema" TEXT)
RETURNS void STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'unprotect_schema_wrapper';
CREATE FUNCTION prodguard."_protect_new_tables"()
RETURNS void STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'protect_new_tables_wrapper';
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

-- Alerts (issue 17): the table, as sql/alerts.sql creates it.
CREATE TABLE prodguard.alerts (
    id               bigint PRIMARY KEY,
    at               timestamptz NOT NULL,
    database         text NOT NULL,
    kind             text NOT NULL,
    object           text,
    detail           text,
    db_user          text,
    "session_user"   text,
    application_name text,
    client_addr      inet,
    backend_pid      integer
);
CREATE INDEX alerts_at_idx ON prodguard.alerts USING brin (at);
REVOKE ALL ON prodguard.alerts FROM PUBLIC;
GRANT SELECT ON prodguard.alerts TO pg_monitor, prodguard_auditor, prodguard_operator;
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON prodguard.alerts
    FOR EACH ROW EXECUTE FUNCTION prodguard.append_only();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON prodguard.alerts
    FOR EACH STATEMENT EXECUTE FUNCTION prodguard.append_only();
ALTER TABLE prodguard.alerts ENABLE ALWAYS TRIGGER append_only, ENABLE ALWAYS TRIGGER append_only_truncate;
SELECT pg_catalog.pg_extension_config_dump('prodguard.alerts', '');

COMMENT ON TABLE prodguard.alerts IS
    'pg_prodguard: alerts raised in this database (row_drop, override_used, change_used, migration_history_changed, test_data_logged, denial_burst), append-only; each was also sent as NOTIFY prodguard_alert and logged as "prodguard: alert".';
COMMENT ON COLUMN prodguard.alerts.id IS 'Unique across server restarts (microseconds at server start, plus one per queued record).';
COMMENT ON COLUMN prodguard.alerts.at IS 'When the alert was raised.';
COMMENT ON COLUMN prodguard.alerts.database IS 'The database it was raised in.';
COMMENT ON COLUMN prodguard.alerts.kind IS 'row_drop, override_used, change_used, migration_history_changed, test_data_logged or denial_burst.';
COMMENT ON COLUMN prodguard.alerts.object IS 'What it is about: a table, a change, a client.';
COMMENT ON COLUMN prodguard.alerts.detail IS 'What happened, in a sentence or two.';
COMMENT ON COLUMN prodguard.alerts.db_user IS 'The role in effect in the session that raised it.';
COMMENT ON COLUMN prodguard.alerts."session_user" IS 'The role that logged in.';
COMMENT ON COLUMN prodguard.alerts.application_name IS 'application_name of the session.';
COMMENT ON COLUMN prodguard.alerts.client_addr IS 'Client address; NULL for a Unix-socket connection.';
COMMENT ON COLUMN prodguard.alerts.backend_pid IS 'Process id of the session.';
COMMENT ON INDEX prodguard.alerts_at_idx IS 'Finds alerts by time.';

-- The audit log's three indexes on id, time and transaction (two BRIN, one btree) become
-- one BRIN over all three: two index insertions less per audited row (issue 18).
CREATE OPERATOR CLASS prodguard.xid8_minmax_ops FOR TYPE xid8 USING brin AS
    OPERATOR 1 pg_catalog.< , OPERATOR 2 pg_catalog.<= , OPERATOR 3 pg_catalog.= ,
    OPERATOR 4 pg_catalog.>= , OPERATOR 5 pg_catalog.> ,
    FUNCTION 1 pg_catalog.brin_minmax_opcinfo(internal),
    FUNCTION 2 pg_catalog.brin_minmax_add_value(internal, internal, internal, internal),
    FUNCTION 3 pg_catalog.brin_minmax_consistent(internal, internal, internal),
    FUNCTION 4 pg_catalog.brin_minmax_union(internal, internal, internal);
CREATE OPERATOR CLASS prodguard.jsonb_bloom_ops FOR TYPE jsonb USING brin AS
    OPERATOR 1 pg_catalog.= (jsonb, jsonb),
    FUNCTION 1 pg_catalog.brin_bloom_opcinfo(internal),
    FUNCTION 2 pg_catalog.brin_bloom_add_value(internal, internal, internal, internal),
    FUNCTION 3 pg_catalog.brin_bloom_consistent(internal, internal, internal, integer),
    FUNCTION 4 pg_catalog.brin_bloom_union(internal, internal, internal),
    FUNCTION 5 pg_catalog.brin_bloom_options(internal),
    FUNCTION 11 pg_catalog.jsonb_hash(jsonb);
DROP INDEX prodguard.audit_log_id_idx, prodguard.audit_log_logged_at_idx, prodguard.audit_log_txid_idx,
    prodguard.audit_log_row_key_idx;
CREATE INDEX audit_log_order_idx ON prodguard.audit_log
    USING brin (id, logged_at, txid prodguard.xid8_minmax_ops,
                row_key prodguard.jsonb_bloom_ops (false_positive_rate = 0.001))
    WITH (pages_per_range = 32);
ALTER TABLE prodguard.audit_log SET (autovacuum_vacuum_insert_threshold = 20000,
                                     autovacuum_vacuum_insert_scale_factor = 0);
ALTER FUNCTION prodguard.row_history(regclass, jsonb) SET enable_seqscan = off;
-- the range being written is left unsummarized (as in schema.sql)
SELECT pg_catalog.brin_desummarize_range('prodguard.audit_log_order_idx',
    greatest(pg_catalog.pg_relation_size('prodguard.audit_log')
             / pg_catalog.current_setting('block_size')::bigint - 1, 0));
COMMENT ON INDEX prodguard.audit_log_order_idx IS 'Finds entries by id, by time, by transaction and by row.';
COMMENT ON OPERATOR CLASS prodguard.xid8_minmax_ops USING brin IS 'BRIN minmax for xid8: indexes audit_log.txid.';
COMMENT ON OPERATOR FAMILY prodguard.xid8_minmax_ops USING brin IS 'BRIN minmax for xid8: indexes audit_log.txid.';
COMMENT ON OPERATOR CLASS prodguard.jsonb_bloom_ops USING brin IS 'BRIN bloom for jsonb: indexes audit_log.row_key.';
COMMENT ON OPERATOR FAMILY prodguard.jsonb_bloom_ops USING brin IS 'BRIN bloom for jsonb: indexes audit_log.row_key.';

-- scan() tells which patterns a dictionary holds (private ones included): for operators
-- (issue 19).
REVOKE ALL ON FUNCTION prodguard.scan(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION prodguard.scan(text) TO prodguard_operator;
-- scan_table() tells the same of any value put into a table of one's own: for operators
-- and auditors.
REVOKE ALL ON FUNCTION prodguard.scan_table(regclass, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION prodguard.scan_table(regclass, bigint) TO prodguard_operator, prodguard_auditor;
COMMENT ON FUNCTION prodguard.scan(text) IS
    'What the test-data guard finds in a value: dictionary, pattern, and the positions of the first and last character (members of prodguard_operator; at most 1,000 rows).';

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

-- The dictionaries' generation (issue 19): names the compiled matcher that the server's
-- backends share, as sql/test_data.sql creates it. The trigger function is the same
-- (its body, in the library, now also moves the generation on).
CREATE TABLE prodguard.dictionary_generation (
    one        boolean PRIMARY KEY DEFAULT true CHECK (one),
    generation bigint GENERATED ALWAYS AS IDENTITY
);
INSERT INTO prodguard.dictionary_generation DEFAULT VALUES;
REVOKE ALL ON prodguard.dictionary_generation FROM PUBLIC;
COMMENT ON TABLE prodguard.dictionary_generation IS
    'pg_prodguard: the dictionaries'' generation (internal): moved on by every change to them; names the compiled matcher the server''s sessions share.';
COMMENT ON SEQUENCE prodguard.dictionary_generation_generation_seq IS
    'pg_prodguard: hands out the dictionaries'' generations (internal); a value once committed is never handed out again.';
-- The dictionary triggers fire also under session_replication_role = replica.
ALTER TABLE prodguard.dictionary ENABLE ALWAYS TRIGGER dictionary_changed;
ALTER TABLE prodguard.dictionary_entry ENABLE ALWAYS TRIGGER dictionary_entry_changed;
