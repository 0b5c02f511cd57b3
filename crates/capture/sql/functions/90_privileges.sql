-- Privileges: application roles get what capture and set_context need and
-- nothing else. The trail's tables belong to the role that installed pgtrail;
-- capture writes them through SECURITY DEFINER functions with a pinned
-- search_path, so a role that can write audited tables can neither write,
-- edit nor delete the trail directly, nor forge what the database records.

REVOKE ALL ON ALL TABLES IN SCHEMA pgtrail FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA pgtrail FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pgtrail FROM PUBLIC;
GRANT USAGE ON SCHEMA pgtrail TO PUBLIC;
GRANT EXECUTE ON FUNCTION pgtrail.set_context(text, text, text, text, jsonb) TO PUBLIC;
GRANT EXECUTE ON FUNCTION pgtrail.trigger_names() TO PUBLIC;

-- pgtrail_reader: for people who may read the trail (auditors, support,
-- dashboards). It reads the trail's tables and views, except the secret that
-- makes redaction markers unguessable, and runs the query functions; it
-- cannot write anything. Grant it to a login role:
--     GRANT pgtrail_reader TO alice;
-- Roles belong to the whole server; creating it needs CREATEROLE. Without
-- that right the install goes on, and an administrator can run
--     CREATE ROLE pgtrail_reader NOLOGIN;
-- and `pgtrail apply` again.
DO $reader$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgtrail_reader') THEN
        CREATE ROLE pgtrail_reader NOLOGIN;
    END IF;
EXCEPTION
    WHEN insufficient_privilege THEN
        RAISE NOTICE 'pgtrail: role pgtrail_reader not created (creating roles needs CREATEROLE)';
    WHEN duplicate_object OR unique_violation THEN
        NULL;  -- created at the same moment by an install in another database
END
$reader$;

DO $grants$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgtrail_reader') THEN
        GRANT USAGE ON SCHEMA pgtrail TO pgtrail_reader;
        GRANT SELECT ON pgtrail.change, pgtrail.transaction, pgtrail.audited_table, pgtrail.ddl_event,
                        pgtrail.seal, pgtrail.seal_leaves, pgtrail.erasure, pgtrail.erased_value,
                        pgtrail.setting, pgtrail.context_source, pgtrail.migration,
                        pgtrail.changes, pgtrail.capture_gaps
            TO pgtrail_reader;
        GRANT EXECUTE ON FUNCTION pgtrail.history(regclass, jsonb), pgtrail.row_as_of(regclass, jsonb, timestamptz),
                                  pgtrail.table_as_of(regclass, timestamptz), pgtrail.blame(regclass, jsonb)
            TO pgtrail_reader;
    END IF;
END
$grants$;
