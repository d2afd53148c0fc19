-- The cheapest audit a DBA writes (issue 18's baselines), on the tables a_minimal, a_stmt
-- and a_both:
--   a_minimal: a PL/pgSQL AFTER row trigger inserting to_jsonb(NEW) (or OLD) into a table
--              with only a primary key;
--   a_stmt:    PL/pgSQL AFTER statement triggers over the transition tables
--              (INSERT INTO log SELECT to_jsonb(n) FROM new_rows n), one per operation;
--   a_both:    the same, but an UPDATE keeps what it overwrote as well as what it wrote (the
--              old and the new row, paired by the key id), as a pg_prodguard entry does:
--              the two above keep only the new row of an UPDATE, which cannot undo it.
CREATE TABLE minimal_log (id bigserial PRIMARY KEY, op text, row_data jsonb);
CREATE FUNCTION minimal_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO minimal_log (op, row_data)
    VALUES (TG_OP, CASE WHEN TG_OP = 'DELETE' THEN to_jsonb(OLD) ELSE to_jsonb(NEW) END);
    RETURN NULL;
END $$;
CREATE TRIGGER minimal_audit AFTER INSERT OR UPDATE OR DELETE ON a_minimal
    FOR EACH ROW EXECUTE FUNCTION minimal_audit();

CREATE TABLE stmt_log (id bigserial PRIMARY KEY, op text, row_data jsonb);
CREATE FUNCTION stmt_audit_new() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stmt_log (op, row_data) SELECT TG_OP, to_jsonb(n) FROM new_rows n;
    RETURN NULL;
END $$;
CREATE FUNCTION stmt_audit_old() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stmt_log (op, row_data) SELECT TG_OP, to_jsonb(o) FROM old_rows o;
    RETURN NULL;
END $$;
CREATE TRIGGER stmt_audit_i AFTER INSERT ON a_stmt REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION stmt_audit_new();
CREATE TRIGGER stmt_audit_u AFTER UPDATE ON a_stmt REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION stmt_audit_new();
CREATE TRIGGER stmt_audit_d AFTER DELETE ON a_stmt REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION stmt_audit_old();

CREATE TABLE both_log (id bigserial PRIMARY KEY, op text, old_data jsonb, new_data jsonb);
CREATE FUNCTION both_audit_new() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO both_log (op, new_data) SELECT TG_OP, to_jsonb(n) FROM new_rows n;
    RETURN NULL;
END $$;
CREATE FUNCTION both_audit_old() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO both_log (op, old_data) SELECT TG_OP, to_jsonb(o) FROM old_rows o;
    RETURN NULL;
END $$;
CREATE FUNCTION both_audit_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO both_log (op, old_data, new_data)
    SELECT TG_OP, to_jsonb(o), to_jsonb(n) FROM old_rows o JOIN new_rows n USING (id);
    RETURN NULL;
END $$;
CREATE TRIGGER both_audit_i AFTER INSERT ON a_both REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION both_audit_new();
CREATE TRIGGER both_audit_u AFTER UPDATE ON a_both
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION both_audit_update();
CREATE TRIGGER both_audit_d AFTER DELETE ON a_both REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION both_audit_old();
