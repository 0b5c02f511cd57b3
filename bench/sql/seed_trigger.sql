-- Comparison baseline for the capture benchmark, NOT part of pgtrail: the
-- row trigger of seed 002 ("PostgreSQL Audit Logging: Track Every Data
-- Change Without Application Code"), as its text writes it: one audit row
-- per changed row with the whole old and new row as JSONB, the application
-- user from app.current_user, and session info; its table and its two
-- indexes as the seed creates them.
--
-- Two departures, both in the seed's favour:
--   * the seed reads the key as `NEW.pk_value_from_first_col` inside a
--     BEGIN ... EXCEPTION block, a placeholder that always fails (and pays
--     for a subtransaction per row): here the key is the column named by the
--     trigger's argument, read from the row's JSON, without the block;
--   * the seed declares SECURITY DEFINER without a pinned search_path; so
--     does this copy.
-- Attached by the benchmark as
--   AFTER INSERT OR UPDATE OR DELETE ON t FOR EACH ROW
--   EXECUTE FUNCTION audit.audit_trigger('<first key column>')

CREATE SCHEMA audit;

CREATE TYPE audit.operation AS ENUM ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE');

CREATE TABLE audit.audit_log (
    id              bigserial PRIMARY KEY,
    table_name      text NOT NULL,
    operation       audit.operation NOT NULL,
    row_id          text,
    old_values      jsonb,
    new_values      jsonb,
    changed_by      text NOT NULL DEFAULT 'unknown',
    changed_at      timestamptz NOT NULL DEFAULT now(),
    session_info    jsonb
);

CREATE INDEX idx_audit_log_table_name ON audit.audit_log (table_name, changed_at DESC);
CREATE INDEX idx_audit_log_row_id ON audit.audit_log (table_name, row_id, changed_at DESC);

CREATE OR REPLACE FUNCTION audit.audit_trigger()
RETURNS TRIGGER AS $$
DECLARE
    pk_value     text;
    old_row      jsonb;
    new_row      jsonb;
    user_name    text;
    session_data jsonb;
BEGIN
    user_name := current_setting('app.current_user', true);
    IF user_name IS NULL THEN
        user_name := session_user;
    END IF;

    session_data := jsonb_build_object(
        'client_addr', inet_client_addr(),
        'client_port', inet_client_port(),
        'backend_pid', pg_backend_pid(),
        'application_name', current_setting('application_name', true)
    );

    IF TG_OP = 'INSERT' THEN
        SELECT row_to_json(NEW)::jsonb INTO new_row;
        pk_value := new_row ->> TG_ARGV[0];
        INSERT INTO audit.audit_log (table_name, operation, row_id, old_values, new_values, changed_by, session_info)
        VALUES (TG_TABLE_NAME, 'INSERT', pk_value, NULL, new_row, user_name, session_data);
        RETURN NEW;

    ELSIF TG_OP = 'UPDATE' THEN
        SELECT row_to_json(OLD)::jsonb INTO old_row;
        SELECT row_to_json(NEW)::jsonb INTO new_row;
        pk_value := new_row ->> TG_ARGV[0];
        INSERT INTO audit.audit_log (table_name, operation, row_id, old_values, new_values, changed_by, session_info)
        VALUES (TG_TABLE_NAME, 'UPDATE', pk_value, old_row, new_row, user_name, session_data);
        RETURN NEW;

    ELSIF TG_OP = 'DELETE' THEN
        SELECT row_to_json(OLD)::jsonb INTO old_row;
        pk_value := old_row ->> TG_ARGV[0];
        INSERT INTO audit.audit_log (table_name, operation, row_id, old_values, new_values, changed_by, session_info)
        VALUES (TG_TABLE_NAME, 'DELETE', pk_value, old_row, NULL, user_name, session_data);
        RETURN OLD;
    END IF;

    RETURN NULL;
END;
$$ LANGUAGE plpgsql SECURITY DEFINER;
