-- Capture gaps: DDL that touches an audited table, its columns or its
-- capture triggers (ALTER TABLE ... DISABLE TRIGGER, DROP TRIGGER, CREATE
-- TRIGGER, renames, DROP TABLE, DROP COLUMN, ...) is recorded in
-- pgtrail.ddl_event with who, when, the command, and whether capture was on
-- for the table after it. `pgtrail check` and `pgtrail verify` turn these
-- records into the periods in which capture was off (pgtrail.capture_gaps).
-- Event triggers need superuser rights (rds_superuser on RDS); without them
-- the install goes on without the watch, and `pgtrail check` says so.

-- The audited table a relation belongs to (itself, or the partitioned
-- table it is a partition of), or NULL: found by the table id its capture
-- triggers carry (enabled or not), whatever the table is called now, else
-- by name.
CREATE OR REPLACE FUNCTION pgtrail._audited_id_of(p_rel oid)
RETURNS integer
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT coalesce(
        (SELECT a.id
         FROM pg_trigger AS tg
         JOIN pgtrail.audited_table AS a ON a.id = pgtrail._trigger_table_id(tg.tgargs)
         WHERE tg.tgrelid IN (p_rel, coalesce(pg_partition_root(p_rel), p_rel))
           AND tg.tgname = ANY (pgtrail._id_trigger_names()) AND a.detached_at IS NULL
         ORDER BY tg.tgrelid = p_rel DESC
         LIMIT 1),
        (SELECT a.id
         FROM pg_class AS c
         JOIN pg_namespace AS n ON n.oid = c.relnamespace
         JOIN pgtrail.audited_table AS a ON a.table_schema = n.nspname AND a.table_name = c.relname
         WHERE c.oid IN (p_rel, coalesce(pg_partition_root(p_rel), p_rel)) AND a.detached_at IS NULL
         ORDER BY c.oid = p_rel DESC
         LIMIT 1))
$fn$;

-- The relation of the audited table p_id (its partitioned table, for a
-- partitioned one), or NULL: the table whose capture triggers carry the
-- id, else the one of its recorded name.
CREATE OR REPLACE FUNCTION pgtrail._audited_rel(p_id integer)
RETURNS regclass
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT coalesce(
        (SELECT tg.tgrelid::regclass
         FROM pg_trigger AS tg JOIN pg_class AS c ON c.oid = tg.tgrelid
         WHERE tg.tgname = ANY (pgtrail._id_trigger_names()) AND pgtrail._trigger_table_id(tg.tgargs) = p_id
           AND NOT c.relispartition
         LIMIT 1),
        (SELECT to_regclass(format('%I.%I', a.table_schema, a.table_name))
         FROM pgtrail.audited_table AS a WHERE a.id = p_id))
$fn$;

-- The name of the publication of WAL-mode tables.
CREATE OR REPLACE FUNCTION pgtrail.wal_publication()
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT 'pgtrail'::text
$fn$;

-- Whether relation p_rel is in the publication pgtrail itself.
CREATE OR REPLACE FUNCTION pgtrail._wal_published(p_rel regclass)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT EXISTS (SELECT FROM pg_publication_rel AS r JOIN pg_publication AS p ON p.oid = r.prpubid
                   WHERE p.pubname = pgtrail.wal_publication() AND r.prrelid = p_rel)
$fn$;

-- 'on' when the WAL-mode table p_id is in the publication, else 'off'
-- (pgtrail._capture_state, for the DDL watch and pgtrail.capture_gaps).
CREATE OR REPLACE FUNCTION pgtrail._wal_capture_state(p_id integer)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT CASE WHEN pgtrail._wal_published(pgtrail._audited_rel(p_id)) THEN 'on' ELSE 'off' END
$fn$;

-- 'on' when the audited table p_id, and each of its partitions, has all its
-- capture triggers (pgtrail.trigger_names()), enabled; else 'off'.
CREATE OR REPLACE FUNCTION pgtrail._capture_state(p_id integer)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    -- A table in WAL mode: whether it is in the publication (80_wal.sql).
    SELECT pgtrail._wal_capture_state(p_id)
    WHERE EXISTS (SELECT FROM pgtrail.audited_table WHERE id = p_id AND capture_mode = 'wal')
    UNION ALL
    -- (Through the catalog, not by name: the owner may lack USAGE on the schema.)
    (SELECT CASE WHEN bool_and(r.enabled = cardinality(pgtrail.trigger_names())) THEN 'on' ELSE 'off' END
    FROM (SELECT pgtrail._audited_rel(p_id) AS oid) AS c
    -- (pg_partition_tree lists nothing for a table that is not partitioned.)
    CROSS JOIN LATERAL (SELECT c.oid AS relid UNION SELECT relid FROM pg_partition_tree(c.oid)) AS p
    CROSS JOIN LATERAL (SELECT count(*) AS enabled FROM pg_trigger AS t
                        WHERE t.tgrelid = p.relid AND t.tgname = ANY (pgtrail.trigger_names())
                          AND t.tgenabled IN ('O', 'A')) AS r
    WHERE c.oid IS NOT NULL
      AND NOT EXISTS (SELECT FROM pgtrail.audited_table WHERE id = p_id AND capture_mode = 'wal'))
    LIMIT 1
$fn$;

-- After DDL on the audited table p_id (relation p_rel, its partitioned table
-- for a partitioned one): a rename or move to another schema is followed
-- (the trail keeps the table's history under its id; pgtrail.toml must then
-- name the table by its new name), and the schema changes of its columns
-- are recorded (38_lineage.sql).
CREATE OR REPLACE FUNCTION pgtrail._follow_table(p_id integer, p_rel regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    t        pgtrail.audited_table;
    v_schema text;
    v_name   text;
BEGIN
    SELECT * INTO t FROM pgtrail.audited_table WHERE id = p_id;
    SELECT n.nspname, c.relname INTO v_schema, v_name
    FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace WHERE c.oid = p_rel;
    IF (t.table_schema, t.table_name) IS DISTINCT FROM (v_schema, v_name)
       -- (A detached table's record may hold the name: it keeps it.)
       AND NOT EXISTS (SELECT FROM pgtrail.audited_table AS a
                       WHERE a.table_schema = v_schema AND a.table_name = v_name AND a.id <> p_id) THEN
        INSERT INTO pgtrail.schema_change (id, table_id, changed_at, txid, ctx, kind, name, new_name)
        VALUES (nextval(pg_get_serial_sequence('pgtrail.change', 'id')), p_id, clock_timestamp(), pgtrail._txid(),
                pgtrail._context_seq(), 'rename_table',
                format('%I.%I', t.table_schema, t.table_name), format('%I.%I', v_schema, v_name));
        UPDATE pgtrail.audited_table SET table_schema = v_schema, table_name = v_name WHERE id = p_id;
    END IF;
    PERFORM pgtrail._record_schema_changes(p_id, p_rel);
END
$fn$;

-- Whether pgtrail's own functions (attach, detach, auto-attach) are
-- changing the capture triggers of the audited table p_id in this
-- transaction (see pgtrail.managing). Nobody else can make this true: an
-- application role cannot write pgtrail.managing.
CREATE OR REPLACE FUNCTION pgtrail._managed_by_pgtrail(p_id integer)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT EXISTS (SELECT FROM pgtrail.managing WHERE txid = txid_current() AND table_id = p_id)
$fn$;

-- Who ran the current DDL and for which migration, from the context
-- settings (pgtrail.<field>, the settings pgtrail.toml maps, set_context's
-- extra), as JSON without NULLs: the schema report matches DDL to
-- migrations by it. Never fails (the DDL must not).
CREATE OR REPLACE FUNCTION pgtrail._ddl_context()
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_result jsonb := '{}';
    v_field  text;
    v_value  text;
    v_extra  jsonb;
BEGIN
    BEGIN
        v_extra := CASE WHEN coalesce(current_setting('pgtrail.context', true), '') = '' THEN NULL
                        ELSE pgtrail._extra_context(current_setting('pgtrail.context', true)) END;
    EXCEPTION WHEN others THEN
        v_extra := NULL;
    END;
    FOREACH v_field IN ARRAY ARRAY['actor_id', 'actor_name', 'actor_type', 'reason', 'migration'] LOOP
        BEGIN
            EXECUTE 'SELECT ' || pgtrail._context_field_sql(v_field) INTO v_value;
        EXCEPTION WHEN others THEN
            v_value := NULL;
        END;
        v_value := coalesce(v_value, v_extra ->> v_field);
        IF v_value IS NOT NULL THEN
            v_result := v_result || jsonb_build_object(v_field, v_value);
        END IF;
    END LOOP;
    RETURN v_result;
END
$fn$;

CREATE OR REPLACE FUNCTION pgtrail._on_ddl()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_event record;
    v_root  regclass;
BEGIN
    IF to_regclass('pgtrail.audited_table') IS NULL THEN
        RETURN;  -- pgtrail itself is being dropped
    END IF;
    -- GRANT and REVOKE on objects, for `pgtrail report --kind access`
    -- (not those of pgtrail's own install, which sets pgtrail.installing).
    IF tg_tag IN ('GRANT', 'REVOKE') THEN
        IF coalesce(current_setting('pgtrail.installing', true), '') <> 'on' THEN
            INSERT INTO pgtrail.ddl_event (command_tag, object_identity, action, detail)
            SELECT tg_tag, coalesce(string_agg(DISTINCT lower(d.object_type), ', '), ''), 'access',
                   jsonb_build_object('command', current_query(), 'context', pgtrail._ddl_context())
            FROM pg_event_trigger_ddl_commands() AS d;
        END IF;
        RETURN;
    END IF;
    -- A command on temporary objects only (a revert's working tables, made
    -- and indexed about twenty times a plan): no audited table is among
    -- them unless one of a temporary schema is audited.
    IF NOT EXISTS (SELECT FROM pg_event_trigger_ddl_commands() AS d WHERE d.schema_name IS DISTINCT FROM 'pg_temp')
       AND NOT EXISTS (SELECT FROM pgtrail.audited_table AS a
                       WHERE a.table_schema LIKE 'pg\_temp\_%' AND a.detached_at IS NULL) THEN
        RETURN;
    END IF;
    FOR v_event IN
        SELECT DISTINCT ON (x.table_id) x.table_id, x.command_tag, x.object_identity, x.relid
        FROM (SELECT pgtrail._audited_id_of(r.relid) AS table_id, r.relid, d.command_tag, d.object_identity
              FROM pg_event_trigger_ddl_commands() AS d
              CROSS JOIN LATERAL (SELECT CASE WHEN d.classid = 'pg_trigger'::regclass
                                              THEN (SELECT tgrelid FROM pg_trigger WHERE oid = d.objid)
                                              ELSE d.objid END AS relid) AS r
              WHERE d.classid IN ('pg_class'::regclass, 'pg_trigger'::regclass)) AS x
        WHERE x.table_id IS NOT NULL
        ORDER BY x.table_id, x.command_tag = 'ALTER TABLE' DESC
    LOOP
        -- The table may have been renamed, and columns added, dropped,
        -- renamed or retyped: followed and recorded first; then the capture
        -- function, which names them, is generated again, in this
        -- transaction (never naming a column that is gone, and redacting a
        -- renamed secret under its new name). Neither may make the DDL fail.
        IF v_event.command_tag = 'ALTER TABLE' THEN
            v_root := pgtrail._audited_rel(v_event.table_id);
            IF v_root IS NOT NULL THEN
                BEGIN
                    PERFORM pgtrail._follow_table(v_event.table_id, v_root);
                EXCEPTION WHEN others THEN
                    RAISE WARNING 'pgtrail: could not record the schema change of % (%): history across it may read wrong',
                        v_root, SQLERRM;
                END;
                PERFORM pgtrail._recompile_after_ddl(v_event.table_id, v_root);
            END IF;
        END IF;
        INSERT INTO pgtrail.ddl_event (command_tag, object_identity, action, detail)
        VALUES (v_event.command_tag, v_event.object_identity, 'ddl',
                jsonb_build_object('table_id', v_event.table_id, 'command', current_query(),
                                   'capture', pgtrail._capture_state(v_event.table_id),
                                   'by_pgtrail', pgtrail._managed_by_pgtrail(v_event.table_id),
                                   'context', pgtrail._ddl_context()));
    END LOOP;
END
$fn$;

-- Generates table p_id's capture function again after DDL on it. Should
-- that fail, the kind that names no column is generated instead: a schema
-- change must never make later writes fail (`pgtrail check` reports the
-- function as out of date until `pgtrail apply`).
CREATE OR REPLACE FUNCTION pgtrail._recompile_after_ddl(p_id integer, p_table regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF to_regprocedure(pgtrail._capture_function(p_id) || '()') IS NULL THEN
        RETURN;  -- attached by a version that had no generated functions
    END IF;
    BEGIN
        PERFORM pgtrail._compile_capture(p_id, p_table);
    EXCEPTION WHEN others THEN
        RAISE WARNING 'pgtrail: could not generate the capture function of % (%); capture goes on with whole rows', p_table, SQLERRM;
        PERFORM pgtrail._compile_capture(p_id, p_table, 'rows');
    END;
END
$fn$;

CREATE OR REPLACE FUNCTION pgtrail._on_drop()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_event record;
BEGIN
    IF to_regclass('pgtrail.audited_table') IS NULL THEN
        RETURN;  -- pgtrail itself is being dropped
    END IF;
    FOR v_event IN
        -- The audited table itself by name (it may be the object dropped), or
        -- the audited table a partition belongs to (a trigger or column of
        -- a partition: the partition is still there).
        SELECT DISTINCT ON (x.table_id) x.table_id, x.object_type, x.object_identity, x.table_dropped
        FROM (SELECT coalesce(a.id, pgtrail._audited_id_of(
                         to_regclass(format('%I.%I', d.address_names[1], d.address_names[2])))) AS table_id,
                     d.object_type, d.object_identity,
                     d.object_type = 'table' AND a.id IS NOT NULL AS table_dropped
              FROM pg_event_trigger_dropped_objects() AS d
              LEFT JOIN pgtrail.audited_table AS a
                ON a.table_schema = d.address_names[1] AND a.table_name = d.address_names[2]
               AND a.detached_at IS NULL
              WHERE d.object_type IN ('table', 'table column', 'trigger')
                AND NOT (d.object_type = 'table' AND d.is_temporary)) AS x
        WHERE x.table_id IS NOT NULL
        ORDER BY x.table_id, x.object_type = 'table' DESC
    LOOP
        -- A dropped table can change no more: capture ends there, as with a
        -- detach (the drop itself stays recorded here, with who and how).
        IF v_event.table_dropped THEN
            UPDATE pgtrail.audited_table SET detached_at = clock_timestamp() WHERE id = v_event.table_id;
        END IF;
        INSERT INTO pgtrail.ddl_event (command_tag, object_identity, action, detail)
        VALUES (tg_tag, v_event.object_identity,
                CASE WHEN v_event.table_dropped THEN 'table_dropped' ELSE 'ddl' END,
                jsonb_build_object('table_id', v_event.table_id, 'command', current_query(),
                                   'capture', CASE WHEN v_event.table_dropped THEN 'dropped'
                                                   ELSE pgtrail._capture_state(v_event.table_id) END,
                                   'by_pgtrail', pgtrail._managed_by_pgtrail(v_event.table_id),
                                   'context', pgtrail._ddl_context()));
    END LOOP;
END
$fn$;

-- Every period in which capture was off for an audited table, from the
-- recorded DDL: from a command that left it off to the next that turned it
-- back on (NULL: still off). Off and on again within one transaction by
-- pgtrail's own functions (attach re-creating triggers, see
-- pgtrail.managing) is no gap; anything else is, even within one
-- transaction.
CREATE OR REPLACE VIEW pgtrail.capture_gaps AS
WITH states AS (
    SELECT e.id, e.at, e.txid, e.db_user, e.command_tag, e.detail ->> 'command' AS command,
           (e.detail ->> 'table_id')::integer AS table_id, e.detail ->> 'capture' AS capture,
           coalesce((e.detail ->> 'by_pgtrail')::boolean, false) AS by_pgtrail,
           lag(e.detail ->> 'capture') OVER w AS previous
    FROM pgtrail.ddl_event AS e
    WHERE e.detail ? 'capture'
    WINDOW w AS (PARTITION BY (e.detail ->> 'table_id')::integer ORDER BY e.id)
),
changes AS (
    SELECT s.*, lead(s.id) OVER w AS next_id, lead(s.at) OVER w AS next_at, lead(s.txid) OVER w AS next_txid,
           lead(s.db_user) OVER w AS next_user, lead(s.command) OVER w AS next_command
    FROM states AS s
    WHERE s.capture IS DISTINCT FROM coalesce(s.previous, 'on')
    WINDOW w AS (PARTITION BY s.table_id ORDER BY s.id)
)
SELECT a.table_schema, a.table_name, c.at AS off_from, c.next_at AS off_until,
       c.db_user AS turned_off_by, c.command AS turned_off_with,
       c.next_user AS turned_on_by, c.next_command AS turned_on_with
FROM changes AS c
JOIN pgtrail.audited_table AS a ON a.id = c.table_id
WHERE c.capture = 'off' AND NOT (c.by_pgtrail AND c.next_txid IS NOT DISTINCT FROM c.txid);

DO $watch$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_event_trigger WHERE evtname = 'pgtrail_ddl_watch') THEN
        CREATE EVENT TRIGGER pgtrail_ddl_watch ON ddl_command_end
            EXECUTE FUNCTION pgtrail._on_ddl();
    END IF;
    -- Also under session_replication_role = replica: capture functions
    -- must follow every schema change.
    IF EXISTS (SELECT FROM pg_event_trigger WHERE evtname = 'pgtrail_ddl_watch' AND evtenabled = 'O') THEN
        ALTER EVENT TRIGGER pgtrail_ddl_watch ENABLE ALWAYS;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_event_trigger WHERE evtname = 'pgtrail_drop_watch') THEN
        CREATE EVENT TRIGGER pgtrail_drop_watch ON sql_drop
            EXECUTE FUNCTION pgtrail._on_drop();
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE WARNING 'pgtrail: capture-gap detection is off: creating event triggers needs superuser rights (rds_superuser on RDS)';
END
$watch$;

-- A snapshot of who may do what, for `pgtrail report --kind access`: the
-- roles (but PostgreSQL's pg_*) with their attributes, role memberships,
-- and the privileges on audited tables. Event triggers do not see CREATE
-- ROLE, ALTER ROLE or GRANT of a role (they are global), so each access
-- report stores a snapshot here (pgtrail.ddl_event, action
-- 'access_snapshot') and compares it with the one before.
CREATE OR REPLACE FUNCTION pgtrail.access_snapshot()
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_snapshot jsonb;
BEGIN
    SELECT jsonb_build_object(
        'roles', (SELECT coalesce(jsonb_object_agg(r.rolname, array_to_string(ARRAY[
                             CASE WHEN r.rolsuper THEN 'superuser' END, CASE WHEN r.rolcreaterole THEN 'createrole' END,
                             CASE WHEN r.rolcreatedb THEN 'createdb' END, CASE WHEN r.rolcanlogin THEN 'login' END,
                             CASE WHEN r.rolreplication THEN 'replication' END,
                             CASE WHEN r.rolbypassrls THEN 'bypassrls' END], ' ')), '{}')
                  FROM pg_roles AS r WHERE r.rolname !~ '^pg_'),
        'memberships', (SELECT coalesce(jsonb_agg(DISTINCT format('%s is a member of %s', m.member, m.role)), '[]')
                        FROM (SELECT pg_get_userbyid(a.member) AS member, pg_get_userbyid(a.roleid) AS role
                              FROM pg_auth_members AS a) AS m
                        WHERE m.role !~ '^pg_'),
        'grants', (SELECT coalesce(jsonb_agg(DISTINCT format('%s on %I.%I to %s', p.privilege_type, t.table_schema,
                                                             t.table_name, CASE WHEN p.grantee = 0 THEN 'PUBLIC'
                                                                                ELSE pg_get_userbyid(p.grantee) END)), '[]')
                   FROM pgtrail.audited_table AS t
                   JOIN pg_class AS c ON c.oid = to_regclass(format('%I.%I', t.table_schema, t.table_name))
                   CROSS JOIN LATERAL aclexplode(c.relacl) AS p
                   WHERE t.detached_at IS NULL AND p.grantee <> c.relowner))
    INTO v_snapshot;
    INSERT INTO pgtrail.ddl_event (command_tag, object_identity, action, detail)
    VALUES ('pgtrail.access_snapshot', '', 'access_snapshot', v_snapshot);
    RETURN v_snapshot;
END
$fn$;
