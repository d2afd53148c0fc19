-- pg_prodguard: tables, roles and privileges created by CREATE EXTENSION.
-- The schema "prodguard" itself is created by CREATE EXTENSION (see the control file).

-- Roles are cluster-wide: create them only where they do not exist yet, and never drop them
-- with the extension (other databases of the cluster may use them).
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'prodguard_operator') THEN
        CREATE ROLE prodguard_operator NOLOGIN;
        COMMENT ON ROLE prodguard_operator IS
            'pg_prodguard: members may break glass with SET LOCAL prodguard.override = ''<reason>'' and run restores.';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'prodguard_auditor') THEN
        CREATE ROLE prodguard_auditor NOLOGIN;
        COMMENT ON ROLE prodguard_auditor IS
            'pg_prodguard: members may read the audit log and the denial log.';
    END IF;
END
$roles$;

COMMENT ON SCHEMA prodguard IS 'pg_prodguard: guards against production data loss, their audit log and tools.';

-- Nobody but the owner writes here; everyone may look up the functions.
REVOKE ALL ON SCHEMA prodguard FROM PUBLIC;
GRANT USAGE ON SCHEMA prodguard TO PUBLIC;

CREATE TABLE prodguard.audit_log (
    id               bigint GENERATED ALWAYS AS IDENTITY NOT NULL,
    logged_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    txid             xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
    action           text NOT NULL,
    table_oid        oid,
    schema_name      text,
    table_name       text,
    row_key          jsonb,
    old_row          jsonb,
    new_row          jsonb,
    changed_columns  text[],
    db_user          text NOT NULL,
    "session_user"   text NOT NULL DEFAULT session_user,
    application_name text,
    client_addr      inet,
    backend_pid      integer NOT NULL DEFAULT pg_catalog.pg_backend_pid(),
    environment      text NOT NULL,
    override_reason  text,
    test_data        jsonb,
    object           text,
    statement        text
);
-- The log is append-only and written in order, so id, time and transaction grow with the
-- table: one BRIN index over them and the row key finds entries by any of them for a
-- fraction of a btree's cost on every audited row (issue 18, measured per audited row: a
-- BRIN index per column 4,900 instructions each, one BRIN over id and time 5,000, a btree
-- on txid 6,100, one BRIN over all three 5,300; a hash index on row_key another 6,500, and
-- 128 MB per million entries where this index takes 4 MB). xid8 ships with no BRIN
-- operator class, jsonb no bloom one; the extension adds both, built from the types' own
-- operators and hash function. A row key is looked up through a bloom filter per range of
-- 32 pages (a false positive in 1,000 ranges): 2.4 ms for one row's history in a log of a
-- million entries, against 0.3 ms with the hash index (README, "Performance").
-- (id is unique by its identity sequence; no unique index is paid for on the write path.)
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
CREATE INDEX audit_log_order_idx ON prodguard.audit_log
    USING brin (id, logged_at, txid prodguard.xid8_minmax_ops,
                row_key prodguard.jsonb_bloom_ops (false_positive_rate = 0.001))
    WITH (pages_per_range = 32);
-- VACUUM summarizes the full ranges: every 20,000 entries rather than when the log has
-- grown by a fifth, so that lookups read few unsummarized pages.
ALTER TABLE prodguard.audit_log SET (autovacuum_vacuum_insert_threshold = 20000,
                                     autovacuum_vacuum_insert_scale_factor = 0);
-- CREATE INDEX summarizes the range being written (here the empty first one), and every
-- row written into a summarized range widens its summary (a BRIN tuple update and its WAL:
-- 16,000 instructions per row). Unsummarized, the range costs a row only the lookup that
-- finds it so; VACUUM summarizes each range once it is full.
SELECT pg_catalog.brin_desummarize_range('prodguard.audit_log_order_idx', 0);

REVOKE ALL ON prodguard.audit_log FROM PUBLIC;
GRANT SELECT ON prodguard.audit_log TO prodguard_auditor;

COMMENT ON TABLE prodguard.audit_log IS
    'pg_prodguard: one row per guarded command that ran (override or staging warning) and, for protected tables, per changed row; written in the changing transaction.';
COMMENT ON COLUMN prodguard.audit_log.id IS 'Order of writing.';
COMMENT ON COLUMN prodguard.audit_log.logged_at IS 'When the row was written (clock time inside the transaction).';
COMMENT ON COLUMN prodguard.audit_log.txid IS 'Transaction that made the change (pg_current_xact_id()).';
COMMENT ON COLUMN prodguard.audit_log.action IS 'INSERT, UPDATE, DELETE, or the guarded command: TRUNCATE, DROP TABLE, DROP SCHEMA, ...';
COMMENT ON COLUMN prodguard.audit_log.table_oid IS 'The table acted on, when there is one.';
COMMENT ON COLUMN prodguard.audit_log.schema_name IS 'Schema of the table, as it was named at the time.';
COMMENT ON COLUMN prodguard.audit_log.table_name IS 'Name of the table, as it was named at the time.';
COMMENT ON COLUMN prodguard.audit_log.row_key IS 'Primary key (else replica identity) values of the changed row.';
COMMENT ON COLUMN prodguard.audit_log.old_row IS 'The row before the change.';
COMMENT ON COLUMN prodguard.audit_log.new_row IS 'The row after the change.';
COMMENT ON COLUMN prodguard.audit_log.changed_columns IS 'Columns an UPDATE changed.';
COMMENT ON COLUMN prodguard.audit_log.db_user IS 'current_user when the change was made.';
COMMENT ON COLUMN prodguard.audit_log."session_user" IS 'session_user (the login role) when the change was made.';
COMMENT ON COLUMN prodguard.audit_log.application_name IS 'application_name of the session.';
COMMENT ON COLUMN prodguard.audit_log.client_addr IS 'Client address; NULL for Unix-socket connections.';
COMMENT ON COLUMN prodguard.audit_log.backend_pid IS 'Process id of the backend.';
COMMENT ON COLUMN prodguard.audit_log.environment IS 'prodguard.environment in force: development, staging or production.';
COMMENT ON COLUMN prodguard.audit_log.override_reason IS 'The prodguard.override reason that let a guarded statement run.';
COMMENT ON COLUMN prodguard.audit_log.test_data IS 'Test-data matches found in the row (prodguard.test_data_action = log).';
COMMENT ON COLUMN prodguard.audit_log.object IS 'The object of a guarded command, as its message names it.';
COMMENT ON COLUMN prodguard.audit_log.statement IS 'Text of the guarded statement.';
COMMENT ON INDEX prodguard.audit_log_order_idx IS 'Finds entries by id, by time, by transaction and by row.';
COMMENT ON OPERATOR CLASS prodguard.xid8_minmax_ops USING brin IS 'BRIN minmax for xid8: indexes audit_log.txid.';
COMMENT ON OPERATOR FAMILY prodguard.xid8_minmax_ops USING brin IS 'BRIN minmax for xid8: indexes audit_log.txid.';
COMMENT ON OPERATOR CLASS prodguard.jsonb_bloom_ops USING brin IS 'BRIN bloom for jsonb: indexes audit_log.row_key.';
COMMENT ON OPERATOR FAMILY prodguard.jsonb_bloom_ops USING brin IS 'BRIN bloom for jsonb: indexes audit_log.row_key.';
COMMENT ON SEQUENCE prodguard.audit_log_id_seq IS 'Numbers audit_log rows in the order they are written.';

-- Protected tables: one row per table given to prodguard.protect(). Migration-history
-- tables are protected by name and need no row (see the protected_tables view).
CREATE TABLE prodguard.table_protection (
    table_name    regclass PRIMARY KEY,
    audit         boolean NOT NULL,
    test_data     boolean NOT NULL,
    forbid_delete boolean NOT NULL,
    protected_at  timestamptz NOT NULL DEFAULT now(),
    protected_by  text NOT NULL,
    via           text NOT NULL DEFAULT 'table' CHECK (via IN ('table', 'schema'))
);
REVOKE ALL ON prodguard.table_protection FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('prodguard.table_protection', '');
COMMENT ON TABLE prodguard.table_protection IS
    'pg_prodguard: the options given to prodguard.protect(), one row per table. Write it only through protect() and unprotect().';
COMMENT ON COLUMN prodguard.table_protection.table_name IS 'The protected table (its partitions are covered too).';
COMMENT ON COLUMN prodguard.table_protection.audit IS 'Record every changed row in prodguard.audit_log.';
COMMENT ON COLUMN prodguard.table_protection.test_data IS 'Refuse rows that carry known test data.';
COMMENT ON COLUMN prodguard.table_protection.forbid_delete IS 'Refuse DELETE, TRUNCATE and DROP of the table in production.';
COMMENT ON COLUMN prodguard.table_protection.protected_at IS 'When the options were last set.';
COMMENT ON COLUMN prodguard.table_protection.protected_by IS 'Who set them (current_user).';
COMMENT ON COLUMN prodguard.table_protection.via IS 'table: by protect(); schema: by protect_schema() of its schema.';

-- A dropped table takes its protection row with it, so that a new table that happens to
-- get the same oid is not protected by mistake.
CREATE FUNCTION prodguard.forget_dropped_tables() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- (the DELETE runs in the library, which alone may write the table in production)
    PERFORM prodguard._forget_dropped_tables();
END
$$;
REVOKE ALL ON FUNCTION prodguard.forget_dropped_tables() FROM PUBLIC;
COMMENT ON FUNCTION prodguard.forget_dropped_tables() IS
    'pg_prodguard: event trigger function; removes the protection rows of dropped tables.';
CREATE EVENT TRIGGER prodguard_forget_dropped_tables ON sql_drop
    EXECUTE FUNCTION prodguard.forget_dropped_tables();
COMMENT ON EVENT TRIGGER prodguard_forget_dropped_tables IS
    'pg_prodguard: removes the protection rows of dropped tables.';
