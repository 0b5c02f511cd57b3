-- Privileges: application roles get what capture and set_context need and
-- nothing else. The trail belongs to the role pgtrail_owner (below);
-- capture writes it through SECURITY DEFINER functions with a pinned
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
        RAISE WARNING 'pgtrail: role pgtrail_reader not created (creating roles needs CREATEROLE)';
    WHEN duplicate_object OR unique_violation THEN
        NULL;  -- created at the same moment by an install in another database
END
$reader$;

DO $grants$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgtrail_reader') THEN
        GRANT USAGE ON SCHEMA pgtrail TO pgtrail_reader;
        GRANT SELECT ON pgtrail.change, pgtrail.transaction, pgtrail.long_context, pgtrail.audited_table, pgtrail.ddl_event,
                        pgtrail.seal, pgtrail.seal_leaves, pgtrail.erasure, pgtrail.erased_value,
                        pgtrail.setting, pgtrail.context_source, pgtrail.migration,
                        pgtrail.changes, pgtrail.capture_gaps
            TO pgtrail_reader;
        GRANT EXECUTE ON FUNCTION pgtrail.history(regclass, jsonb), pgtrail.row_as_of(regclass, jsonb, timestamptz),
                                  pgtrail.table_as_of(regclass, timestamptz), pgtrail.blame(regclass, jsonb),
                                  pgtrail.actor_changes(text, timestamptz, timestamptz),
                                  pgtrail.revert_plan(jsonb, text), pgtrail.revert(jsonb, text, text),
                                  pgtrail._revert_actor()
            TO pgtrail_reader;
    END IF;
END
$grants$;

-- pgtrail_owner: owns the schema pgtrail, the trail's tables and views and
-- pgtrail's functions, so capture and the query functions run as a role
-- that can do nothing but keep the trail (not as the superuser who
-- installed it). It cannot log in; the role that runs `pgtrail apply` is
-- made a member, to manage it. One exception: the function behind
-- auto_attach creates triggers on other roles' new tables, so it stays the
-- installer's. Without the right to create roles, the installer stays the
-- owner, as before.
DO $owner_role$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgtrail_owner') THEN
        CREATE ROLE pgtrail_owner NOLOGIN;
    END IF;
EXCEPTION
    WHEN insufficient_privilege THEN
        RAISE WARNING 'pgtrail: role pgtrail_owner not created (creating roles needs CREATEROLE); the installing role owns the trail';
    WHEN duplicate_object OR unique_violation THEN
        NULL;  -- created at the same moment by an install in another database
END
$owner_role$;

DO $owner_membership$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgtrail_owner')
       AND NOT pg_has_role(current_user, 'pgtrail_owner', 'MEMBER') THEN
        EXECUTE format('GRANT pgtrail_owner TO %I', current_user);
    END IF;
EXCEPTION
    WHEN insufficient_privilege THEN
        RAISE WARNING 'pgtrail: % cannot become a member of pgtrail_owner; it keeps owning the trail', current_user;
    WHEN duplicate_object OR unique_violation THEN
        NULL;
END
$owner_membership$;

DO $owner$
DECLARE
    v_object record;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgtrail_owner')
       OR NOT pg_has_role(current_user, 'pgtrail_owner', 'MEMBER') THEN
        RETURN;
    END IF;
    FOR v_object IN
        SELECT c.oid::regclass AS rel,
               CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS kind
        FROM pg_class AS c
        WHERE c.relnamespace = 'pgtrail'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'S')
          AND c.relowner <> 'pgtrail_owner'::regrole
          -- identity sequences follow their table
          AND NOT EXISTS (SELECT FROM pg_depend AS d
                          WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'i')
    LOOP
        EXECUTE format('ALTER %s %s OWNER TO pgtrail_owner', v_object.kind, v_object.rel);
    END LOOP;
    FOR v_object IN
        SELECT p.oid::regprocedure AS fn
        FROM pg_proc AS p
        WHERE p.pronamespace = 'pgtrail'::regnamespace AND p.proowner <> 'pgtrail_owner'::regrole
          AND p.proname <> '_on_create_table'
    LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO pgtrail_owner', v_object.fn);
    END LOOP;
    IF (SELECT nspowner FROM pg_namespace WHERE nspname = 'pgtrail') <> 'pgtrail_owner'::regrole THEN
        ALTER SCHEMA pgtrail OWNER TO pgtrail_owner;
    END IF;
    -- Tables attached by earlier versions.
    PERFORM pgtrail._let_owner_read(to_regclass(format('%I.%I', a.table_schema, a.table_name)))
    FROM pgtrail.audited_table AS a
    WHERE a.detached_at IS NULL AND to_regclass(format('%I.%I', a.table_schema, a.table_name)) IS NOT NULL;
END
$owner$;
