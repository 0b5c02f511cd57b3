-- Privileges: application roles get what capture and set_context need and
-- nothing else. The trail belongs to this database's owner role (below);
-- capture writes it through SECURITY DEFINER functions with a pinned
-- search_path, so a role that can write audited tables can neither write,
-- edit nor delete the trail directly, nor forge what the database records.
--
-- Roles belong to the whole server, so each database with pgtrail has its
-- own two, named after it (pgtrail.role_name):
--     pgtrail_<database>_owner   owns the schema pgtrail and everything in it
--     pgtrail_<database>_reader  reads the trail
-- (when that is longer than PostgreSQL's 63 bytes, the database's name is
-- cut and the first 8 hex digits of its md5 follow it:
-- pgtrail_<start of name>_<md5>_owner). A member of one database's roles
-- has nothing in another database's trail.

-- The name of this database's owner or reader role.
CREATE OR REPLACE FUNCTION pgtrail.role_name(p_kind text)
RETURNS name
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_db     text := current_database();
    v_suffix text := '_' || p_kind;
    v_hash   text := '_' || left(md5(current_database()), 8);
BEGIN
    IF p_kind IS NULL OR p_kind NOT IN ('owner', 'reader') THEN
        RAISE EXCEPTION 'pgtrail.role_name: kind must be owner or reader, not %', p_kind
            USING ERRCODE = '22023';
    END IF;
    IF octet_length('pgtrail_' || v_db || v_suffix) <= 63 THEN
        RETURN 'pgtrail_' || v_db || v_suffix;
    END IF;
    WHILE octet_length('pgtrail_' || v_db || v_hash || v_suffix) > 63 LOOP
        v_db := left(v_db, -1);
    END LOOP;
    RETURN 'pgtrail_' || v_db || v_hash || v_suffix;
END
$fn$;

REVOKE ALL ON ALL TABLES IN SCHEMA pgtrail FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA pgtrail FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pgtrail FROM PUBLIC;
GRANT USAGE ON SCHEMA pgtrail TO PUBLIC;
GRANT EXECUTE ON FUNCTION pgtrail.set_context(text, text, text, text, jsonb) TO PUBLIC;
GRANT EXECUTE ON FUNCTION pgtrail.set_context(numeric, text, text, text, jsonb) TO PUBLIC;
GRANT EXECUTE ON FUNCTION pgtrail.set_context(uuid, text, text, text, jsonb) TO PUBLIC;
GRANT EXECUTE ON FUNCTION pgtrail.set_context(text, text, text, text, json) TO PUBLIC;
GRANT EXECUTE ON FUNCTION pgtrail.set_context(numeric, text, text, text, json) TO PUBLIC;
GRANT EXECUTE ON FUNCTION pgtrail.set_context(uuid, text, text, text, json) TO PUBLIC;
GRANT EXECUTE ON FUNCTION pgtrail.set_context(text, text, text, text, text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION pgtrail.set_context(numeric, text, text, text, text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION pgtrail.set_context(uuid, text, text, text, text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION pgtrail.trigger_names() TO PUBLIC;
-- set_context is inlined into the caller's statement, so the caller calls
-- what it calls: the commit check's arming (its own backend's check only),
-- the refusal of a bad extra, and the outside_transaction constant (which
-- the commit check, run as the committing role, reads too).
GRANT EXECUTE ON FUNCTION pgtrail._context_check_arm() TO PUBLIC;
GRANT EXECUTE ON FUNCTION pgtrail._set_context_bad_extra(text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION pgtrail._outside_transaction() TO PUBLIC;
-- The DDL watch reads these as whoever runs the DDL (like trigger_names):
-- they name pgtrail's triggers and tell whether a WAL-mode table is published.
GRANT EXECUTE ON FUNCTION pgtrail._id_trigger_names() TO PUBLIC;
GRANT EXECUTE ON FUNCTION pgtrail.wal_publication() TO PUBLIC;
GRANT EXECUTE ON FUNCTION pgtrail._wal_published(regclass) TO PUBLIC;
GRANT EXECUTE ON FUNCTION pgtrail._wal_capture_state(integer) TO PUBLIC;
GRANT EXECUTE ON FUNCTION pgtrail.role_name(text) TO PUBLIC;

-- The reader role: for people who may read the trail (auditors, support,
-- dashboards). It reads the trail's tables and views, except the secret that
-- makes redaction markers unguessable, and runs the query functions; it
-- cannot write anything. Grant it to a login role:
--     GRANT pgtrail_shop_reader TO alice;      -- in the database shop
-- Creating it needs CREATEROLE. Without that right the install goes on
-- (pgtrail apply says what is missing), and an administrator can run
--     CREATE ROLE pgtrail_shop_reader NOLOGIN;
-- and `pgtrail apply` again.
DO $reader$
DECLARE
    v_reader name := pgtrail.role_name('reader');
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = v_reader) THEN
        EXECUTE format('CREATE ROLE %I NOLOGIN', v_reader);
        EXECUTE format('COMMENT ON ROLE %I IS %L', v_reader,
                       format('pgtrail: reads the audit trail of database %s', current_database()));
    END IF;
EXCEPTION
    WHEN insufficient_privilege THEN
        RAISE WARNING 'pgtrail: role % not created (creating roles needs CREATEROLE)', v_reader;
    WHEN duplicate_object OR unique_violation THEN
        NULL;  -- created at the same moment by another install
END
$reader$;

DO $grants$
DECLARE
    v_reader name := pgtrail.role_name('reader');
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = v_reader) THEN
        EXECUTE format('GRANT USAGE ON SCHEMA pgtrail TO %I', v_reader);
        EXECUTE format(
            'GRANT SELECT ON pgtrail.change, pgtrail.transaction, pgtrail.long_context, pgtrail.audited_table, pgtrail.ddl_event,
                             pgtrail.seal, pgtrail.seal_leaves, pgtrail.erasure, pgtrail.erased_value,
                             pgtrail.setting, pgtrail.context_source, pgtrail.migration,
                             pgtrail.changes, pgtrail.capture_gaps,
                             pgtrail.wal_rejected, pgtrail.wal_unsigned
                 TO %I', v_reader);
        EXECUTE format(
            'GRANT EXECUTE ON FUNCTION pgtrail.history(regclass, jsonb), pgtrail.row_as_of(regclass, jsonb, timestamptz),
                                       pgtrail.table_as_of(regclass, timestamptz), pgtrail.blame(regclass, jsonb),
                                       pgtrail.row_as_of(regclass, jsonb, timestamptz, text),
                                       pgtrail.table_as_of(regclass, timestamptz, text),
                                       pgtrail.actor_changes(text, timestamptz, timestamptz),
                                       pgtrail.revert_plan(jsonb, text)
                 TO %I', v_reader);
        -- Readers plan reverts; applying one (pgtrail.revert, which runs as
        -- its caller, and the actor it records) is for the owner role's
        -- members and for roles granted it explicitly (pgtrail 0.5.0 and
        -- earlier granted both to the reader).
        EXECUTE format('REVOKE EXECUTE ON FUNCTION pgtrail.revert(jsonb, text, text), pgtrail._revert_actor() FROM %I',
                       v_reader);
    END IF;
END
$grants$;

-- The owner role: owns the schema pgtrail, the trail's tables and views and
-- pgtrail's functions, so capture and the query functions run as a role
-- that can do nothing but keep the trail (not as the superuser who
-- installed it). It cannot log in; the role that runs `pgtrail apply` is
-- made a member, to manage it. One exception: the function behind
-- auto_attach creates triggers on other roles' new tables, so it stays the
-- installer's. Without the right to create roles, the installer stays the
-- owner (and pgtrail apply and check say so). Giving an object to a role
-- needs the right to SET ROLE to it: from PostgreSQL 16 on, the creator of
-- a role is its admin but may not SET ROLE to it until granted, hence the
-- test for SET there (MEMBER before 16).
DO $owner_role$
DECLARE
    v_owner name := pgtrail.role_name('owner');
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = v_owner) THEN
        EXECUTE format('CREATE ROLE %I NOLOGIN', v_owner);
        EXECUTE format('COMMENT ON ROLE %I IS %L', v_owner,
                       format('pgtrail: owns the audit trail of database %s', current_database()));
    END IF;
EXCEPTION
    WHEN insufficient_privilege THEN
        RAISE WARNING 'pgtrail: role % not created (creating roles needs CREATEROLE); the installing role owns the trail', v_owner;
    WHEN duplicate_object OR unique_violation THEN
        NULL;  -- created at the same moment by another install
END
$owner_role$;

DO $owner_membership$
DECLARE
    v_owner name := pgtrail.role_name('owner');
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = v_owner)
       AND NOT pg_has_role(current_user, v_owner, CASE WHEN current_setting('server_version_num')::int >= 160000 THEN 'SET' ELSE 'MEMBER' END) THEN
        EXECUTE format('GRANT %I TO %I', v_owner, current_user);
    END IF;
EXCEPTION
    WHEN insufficient_privilege THEN
        RAISE WARNING 'pgtrail: % cannot become a member of %; it keeps owning the trail', current_user, v_owner;
    WHEN duplicate_object OR unique_violation THEN
        NULL;
END
$owner_membership$;

DO $owner$
DECLARE
    v_owner   name := pgtrail.role_name('owner');
    v_oid     oid := (SELECT oid FROM pg_roles WHERE rolname = pgtrail.role_name('owner'));
    v_granted boolean := false;
    v_object  record;
BEGIN
    IF v_oid IS NULL OR NOT pg_has_role(current_user, v_owner, CASE WHEN current_setting('server_version_num')::int >= 160000 THEN 'SET' ELSE 'MEMBER' END) THEN
        RETURN;
    END IF;
    -- The new owner of a schema needs CREATE on the database (superusers
    -- skip that check): granted for the move when the installer may.
    IF (SELECT nspowner FROM pg_namespace WHERE nspname = 'pgtrail') <> v_oid
       AND NOT has_database_privilege(v_owner, current_database(), 'CREATE') THEN
        BEGIN
            EXECUTE format('GRANT CREATE ON DATABASE %I TO %I', current_database(), v_owner);
            v_granted := true;
        EXCEPTION WHEN insufficient_privilege THEN
            NULL;
        END;
    END IF;
    -- 0.3.0's trail belongs to the server-wide pgtrail_owner: move it all
    -- at once (object by object, the DDL watch would run as the old owner
    -- on tables that already have the new one).
    IF v_owner <> 'pgtrail_owner'
       AND (SELECT r.rolname FROM pg_namespace AS n JOIN pg_roles AS r ON r.oid = n.nspowner
            WHERE n.nspname = 'pgtrail') = 'pgtrail_owner'
       AND pg_has_role(current_user, 'pgtrail_owner', CASE WHEN current_setting('server_version_num')::int >= 160000 THEN 'SET' ELSE 'MEMBER' END) THEN
        EXECUTE format('REASSIGN OWNED BY pgtrail_owner TO %I', v_owner);
    END IF;
    -- The schema first: the new owner of a table or function needs CREATE
    -- on its schema.
    IF (SELECT nspowner FROM pg_namespace WHERE nspname = 'pgtrail') <> v_oid THEN
        BEGIN
            EXECUTE format('ALTER SCHEMA pgtrail OWNER TO %I', v_owner);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE WARNING 'pgtrail: the schema pgtrail stays %''s (giving it to % needs CREATE on database %: GRANT CREATE ON DATABASE % TO %, then pgtrail apply again)',
                current_user, v_owner, current_database(), quote_ident(current_database()), quote_ident(v_owner);
            EXECUTE format('GRANT USAGE, CREATE ON SCHEMA pgtrail TO %I', v_owner);
        END;
    END IF;
    IF v_granted THEN
        EXECUTE format('REVOKE CREATE ON DATABASE %I FROM %I', current_database(), v_owner);
    END IF;
    FOR v_object IN
        SELECT c.oid::regclass AS rel,
               CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS kind
        FROM pg_class AS c
        WHERE c.relnamespace = 'pgtrail'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'S')
          AND c.relowner <> v_oid
          -- identity sequences follow their table (a partitioned table
          -- depends internally on itself, through its partition key)
          AND NOT EXISTS (SELECT FROM pg_depend AS d
                          WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'i'
                            AND d.refobjid <> c.oid)
    LOOP
        EXECUTE format('ALTER %s %s OWNER TO %I', v_object.kind, v_object.rel, v_owner);
    END LOOP;
    FOR v_object IN
        SELECT p.oid::regprocedure AS fn
        FROM pg_proc AS p
        WHERE p.pronamespace = 'pgtrail'::regnamespace AND p.proowner <> v_oid
          AND p.proname <> '_on_create_table'
    LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO %I', v_object.fn, v_owner);
    END LOOP;
    -- Tables attached by earlier versions.
    PERFORM pgtrail._let_owner_read(to_regclass(format('%I.%I', a.table_schema, a.table_name)))
    FROM pgtrail.audited_table AS a
    WHERE a.detached_at IS NULL AND to_regclass(format('%I.%I', a.table_schema, a.table_name)) IS NOT NULL;
END
$owner$;

-- From 0.3.0's roles of the whole server (pgtrail_owner, pgtrail_reader) to
-- this database's: the members of pgtrail_reader keep reading this trail
-- through this database's reader role; pgtrail_reader and pgtrail_owner
-- lose every right they had here (the trail moved to the owner role above;
-- their SELECT and USAGE on audited tables and schemas are revoked). Other
-- members of pgtrail_owner than the installer are named in a warning: they
-- no longer own this trail. Runs while anything is left to move.
DO $from_server_roles$
DECLARE
    v_owner  name := pgtrail.role_name('owner');
    v_reader name := pgtrail.role_name('reader');
    v_old_reader oid := (SELECT oid FROM pg_roles WHERE rolname = 'pgtrail_reader');
    v_old_owner  oid := (SELECT oid FROM pg_roles WHERE rolname = 'pgtrail_owner');
    v_item   record;
    v_others text;
BEGIN
    IF v_old_reader IS NOT NULL AND v_reader <> 'pgtrail_reader'
       -- (any table of the trail: 0.3.0's pgtrail.change is now the
       -- partition pgtrail.change_history, migration 0011)
       AND EXISTS (SELECT FROM pg_class AS c, aclexplode(c.relacl) AS x
                   WHERE c.relnamespace = 'pgtrail'::regnamespace AND c.relkind IN ('r', 'p')
                     AND x.grantee = v_old_reader) THEN
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = v_reader) THEN
            FOR v_item IN
                SELECT m.member::regrole AS member FROM pg_auth_members AS m
                WHERE m.roleid = v_old_reader AND NOT pg_has_role(m.member, v_reader, 'MEMBER')
            LOOP
                EXECUTE format('GRANT %I TO %s', v_reader, v_item.member);
            END LOOP;
        END IF;
        REVOKE ALL ON ALL TABLES IN SCHEMA pgtrail FROM pgtrail_reader;
        REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pgtrail FROM pgtrail_reader;
        REVOKE ALL ON SCHEMA pgtrail FROM pgtrail_reader;
    END IF;
    IF v_old_owner IS NOT NULL AND v_owner <> 'pgtrail_owner'
       AND (SELECT nspowner FROM pg_namespace WHERE nspname = 'pgtrail')
           = (SELECT oid FROM pg_roles WHERE rolname = v_owner) THEN
        FOR v_item IN
            SELECT c.oid::regclass AS rel
            FROM pg_class AS c, aclexplode(c.relacl) AS x
            WHERE x.grantee = v_old_owner AND c.relnamespace <> 'pgtrail'::regnamespace
        LOOP
            EXECUTE format('REVOKE ALL ON %s FROM pgtrail_owner', v_item.rel);
        END LOOP;
        FOR v_item IN
            SELECT n.nspname FROM pg_namespace AS n, aclexplode(n.nspacl) AS x
            WHERE x.grantee = v_old_owner AND n.nspname <> 'pgtrail'
        LOOP
            EXECUTE format('REVOKE ALL ON SCHEMA %I FROM pgtrail_owner', v_item.nspname);
        END LOOP;
        SELECT string_agg(m.member::regrole::text, ', ' ORDER BY m.member::regrole::text) INTO v_others
        FROM pg_auth_members AS m
        WHERE m.roleid = v_old_owner AND m.member <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
          AND NOT pg_has_role(m.member, v_owner, 'MEMBER');
        IF v_others IS NOT NULL THEN
            RAISE WARNING 'pgtrail: the trail of database % now belongs to %, not pgtrail_owner; % no longer own it (GRANT % TO ... if they should)',
                current_database(), quote_ident(v_owner), v_others, quote_ident(v_owner);
        END IF;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE WARNING 'pgtrail: could not move the rights of pgtrail_owner and pgtrail_reader to % and %: %',
        v_owner, v_reader, SQLERRM;
END
$from_server_roles$;
