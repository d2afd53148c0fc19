-- pg_prodguard: the denial log and the metrics (SPEC §7, §8).

-- Written by the denial writer (a background worker) in its own transaction, so refused
-- attempts stay recorded although the refusing transaction rolled back.
CREATE TABLE prodguard.denial_log (
    id               bigint PRIMARY KEY,
    at               timestamptz NOT NULL,
    database         text NOT NULL,
    db_user          text,
    "session_user"   text,
    application_name text,
    client_addr      inet,
    backend_pid      integer,
    guard            text NOT NULL,
    command          text,
    object           text,
    detail           text,
    statement        text
);
CREATE INDEX denial_log_at_idx ON prodguard.denial_log USING brin (at);
REVOKE ALL ON prodguard.denial_log FROM PUBLIC;
GRANT SELECT ON prodguard.denial_log TO prodguard_auditor, prodguard_operator;
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON prodguard.denial_log
    FOR EACH ROW EXECUTE FUNCTION prodguard.append_only();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON prodguard.denial_log
    FOR EACH STATEMENT EXECUTE FUNCTION prodguard.append_only();
ALTER TABLE prodguard.denial_log ENABLE ALWAYS TRIGGER append_only, ENABLE ALWAYS TRIGGER append_only_truncate;
SELECT pg_catalog.pg_extension_config_dump('prodguard.denial_log', '');

CREATE VIEW prodguard.denied_attempts AS
SELECT at, database, db_user, "session_user", application_name, client_addr, backend_pid,
       guard, command, object, detail, statement
  FROM prodguard.denial_log;
REVOKE ALL ON prodguard.denied_attempts FROM PUBLIC;
GRANT SELECT ON prodguard.denied_attempts TO prodguard_auditor, prodguard_operator;

CREATE VIEW prodguard.metrics AS
SELECT metric, value, description FROM prodguard._metrics();
REVOKE ALL ON prodguard.metrics FROM PUBLIC;
REVOKE ALL ON FUNCTION prodguard._metrics() FROM PUBLIC;
GRANT SELECT ON prodguard.metrics TO pg_monitor, prodguard_auditor, prodguard_operator;
GRANT EXECUTE ON FUNCTION prodguard._metrics() TO pg_monitor, prodguard_auditor, prodguard_operator;

COMMENT ON TABLE prodguard.denial_log IS
    'pg_prodguard: every refused attempt in this database, written by a background worker so that it survives the rollback (append-only; read it through denied_attempts).';
COMMENT ON COLUMN prodguard.denial_log.id IS 'Unique across server restarts (microseconds at server start, plus one per refusal).';
COMMENT ON COLUMN prodguard.denial_log.at IS 'When the statement was refused.';
COMMENT ON COLUMN prodguard.denial_log.database IS 'The database the statement ran in.';
COMMENT ON COLUMN prodguard.denial_log.db_user IS 'The role in effect (current_user).';
COMMENT ON COLUMN prodguard.denial_log."session_user" IS 'The role that logged in.';
COMMENT ON COLUMN prodguard.denial_log.application_name IS 'application_name of the session.';
COMMENT ON COLUMN prodguard.denial_log.client_addr IS 'Client address; NULL for a Unix-socket connection.';
COMMENT ON COLUMN prodguard.denial_log.backend_pid IS 'Process id of the session.';
COMMENT ON COLUMN prodguard.denial_log.guard IS 'command, row, test_data, settings or audit.';
COMMENT ON COLUMN prodguard.denial_log.command IS 'The refused command (TRUNCATE, DROP TABLE, DELETE, SET, ...).';
COMMENT ON COLUMN prodguard.denial_log.object IS 'What it acted on.';
COMMENT ON COLUMN prodguard.denial_log.detail IS 'Why it was refused (the error''s DETAIL), and an ignored override.';
COMMENT ON COLUMN prodguard.denial_log.statement IS 'The statement text, as the client sent it.';
COMMENT ON INDEX prodguard.denial_log_at_idx IS 'Finds refusals by time.';
COMMENT ON VIEW prodguard.denied_attempts IS
    'pg_prodguard: refused attempts in this database (SPEC §7): when, who, from where, which guard, what, why.';
COMMENT ON VIEW prodguard.metrics IS
    'pg_prodguard: counters since server start, shared by all backends (needs shared_preload_libraries).';
COMMENT ON FUNCTION prodguard._metrics() IS 'Internal: the counters behind prodguard.metrics.';
