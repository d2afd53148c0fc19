-- pg_prodguard: alerts (SPEC §11).

-- Written by the background writer in its own transaction (an alert outlives the rollback
-- of the transaction that raised it), which also sends NOTIFY prodguard_alert.
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
