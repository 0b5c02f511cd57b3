-- Attaching capture to a table and detaching it. `pgtrail apply` calls these
-- with the settings it derived from pgtrail.toml and the catalog.

-- The names of pgtrail's capture triggers; `pgtrail check` looks for exactly these.
CREATE OR REPLACE FUNCTION pgtrail.trigger_names()
RETURNS text[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT ARRAY['pgtrail_capture_insert', 'pgtrail_capture_update',
                 'pgtrail_capture_delete', 'pgtrail_capture_truncate',
                 'pgtrail_capture_before_truncate']
$fn$;

-- The names of the triggers that carry an audited table's id: the capture
-- triggers, and the context trigger of a table in WAL mode (80_wal.sql).
CREATE OR REPLACE FUNCTION pgtrail._id_trigger_names()
RETURNS text[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT pgtrail.trigger_names() || 'pgtrail_wal_context'::text
$fn$;

-- The audited-table id a capture trigger passes (its first argument), or NULL.
CREATE OR REPLACE FUNCTION pgtrail._trigger_table_id(p_args bytea)
RETURNS integer
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT CASE WHEN a ~ '^[0-9]{1,9}$' THEN a::integer END
    FROM (SELECT split_part(encode(p_args, 'escape'), '\000', 1) AS a) AS s
$fn$;

-- Drops pgtrail's capture triggers from one table (not its partitions).
CREATE OR REPLACE FUNCTION pgtrail._drop_capture_triggers(p_rel regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_name text;
BEGIN
    FOR v_name IN
        SELECT tgname FROM pg_trigger WHERE tgrelid = p_rel AND tgname = ANY (pgtrail.trigger_names())
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', v_name, p_rel);
    END LOOP;
END
$fn$;

-- (Re)generates the capture function of the audited table p_id
-- (20_capture.sql) and (re)creates its capture triggers: a partitioned
-- table gets them on itself and on every partition, all calling the
-- table's function, which records under the parent's id. The triggers
-- carry the id as their argument (attach finds a renamed table's id by it).
-- pgtrail.managing tells the DDL watch that these trigger changes are
-- pgtrail's own (no capture gap).
CREATE OR REPLACE FUNCTION pgtrail._create_triggers(p_table regclass, p_id integer)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_rel      regclass;
    v_function text := pgtrail._capture_function(p_id);
BEGIN
    INSERT INTO pgtrail.managing (txid, table_id) VALUES (txid_current(), p_id);
    PERFORM pgtrail._compile_capture(p_id, p_table);
    FOR v_rel IN
        SELECT p_table
        UNION ALL
        SELECT relid FROM pg_partition_tree(p_table) WHERE relid <> p_table
    LOOP
        PERFORM pgtrail._drop_capture_triggers(v_rel);
        EXECUTE format(
            'CREATE TRIGGER pgtrail_capture_insert AFTER INSERT ON %s '
            'REFERENCING NEW TABLE AS pgtrail_new FOR EACH STATEMENT '
            'EXECUTE FUNCTION %s(%L)', v_rel, v_function, p_id);
        EXECUTE format(
            'CREATE TRIGGER pgtrail_capture_update AFTER UPDATE ON %s '
            'REFERENCING OLD TABLE AS pgtrail_old NEW TABLE AS pgtrail_new FOR EACH STATEMENT '
            'EXECUTE FUNCTION %s(%L)', v_rel, v_function, p_id);
        EXECUTE format(
            'CREATE TRIGGER pgtrail_capture_delete AFTER DELETE ON %s '
            'REFERENCING OLD TABLE AS pgtrail_old FOR EACH STATEMENT '
            'EXECUTE FUNCTION %s(%L)', v_rel, v_function, p_id);
        EXECUTE format(
            'CREATE TRIGGER pgtrail_capture_truncate AFTER TRUNCATE ON %s '
            'FOR EACH STATEMENT EXECUTE FUNCTION %s(%L)', v_rel, v_function, p_id);
        -- Reads the rows a TRUNCATE removes, while they are there (25_truncate.sql).
        EXECUTE format(
            'CREATE TRIGGER pgtrail_capture_before_truncate BEFORE TRUNCATE ON %s '
            'FOR EACH STATEMENT EXECUTE FUNCTION %s(%L)', v_rel, v_function, p_id);
    END LOOP;
    DELETE FROM pgtrail.managing WHERE txid = txid_current() AND table_id = p_id;
END
$fn$;

-- Starts (or updates) capture on a table. Returns the table's id in
-- pgtrail.audited_table. Idempotent: running it again with the same settings
-- leaves the same triggers and the same id. p_truncate: 'event' (a TRUNCATE
-- records the event only) or 'capture' (also every row it removes, up to
-- p_truncate_row_limit rows, default 100000; see 25_truncate.sql). p_mode:
-- 'trigger' (capture triggers) or 'wal' (logical decoding read by `pgtrail
-- follow`, 80_wal.sql); switching a table between them in one transaction
-- loses and duplicates nothing: a change committed before is captured the
-- old way, one committed after the new way.
CREATE OR REPLACE FUNCTION pgtrail.attach(
    p_table              regclass,
    p_key_columns        text[],
    p_key_kind           text,
    p_images             text   DEFAULT 'diff',
    p_ignore_columns     text[] DEFAULT '{}',
    p_redact_columns     text[] DEFAULT '{}',
    p_truncate           text   DEFAULT 'event',
    p_truncate_row_limit bigint DEFAULT NULL,
    p_mode               text   DEFAULT 'trigger'
) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_schema  text;
    v_name    text;
    v_id      integer;
    v_missing text;
    v_now     timestamptz := clock_timestamp();
    v_limit   bigint := CASE WHEN p_truncate = 'capture' THEN coalesce(p_truncate_row_limit, 100000) END;
    v_fresh   boolean;
BEGIN
    -- pgtrail's install lock (pgtrail_plan::ADVISORY_LOCK), as `pgtrail apply`
    -- takes it: concurrent installs wait for each other.
    PERFORM pg_advisory_xact_lock(8101176133498366316);
    SELECT n.nspname, c.relname INTO v_schema, v_name
    FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
    WHERE c.oid = p_table AND c.relkind IN ('r', 'p');
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgtrail.attach: % is not a table', p_table USING ERRCODE = '42809';
    END IF;
    IF EXISTS (SELECT FROM pg_class WHERE oid = p_table AND relispartition) THEN
        RAISE EXCEPTION 'pgtrail.attach: % is a partition; attach its partitioned parent instead', p_table
            USING ERRCODE = '42809';
    END IF;
    SELECT string_agg(format('%I', c), ', ') INTO v_missing
    FROM unnest(p_key_columns || p_ignore_columns || p_redact_columns) AS c
    WHERE NOT EXISTS (SELECT FROM pg_attribute
                      WHERE attrelid = p_table AND attname = c AND attnum > 0 AND NOT attisdropped);
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'pgtrail.attach: % has no column %', p_table, v_missing USING ERRCODE = '42703';
    END IF;
    IF p_mode IS NULL OR p_mode NOT IN ('trigger', 'wal') THEN
        RAISE EXCEPTION 'pgtrail.attach: mode must be trigger or wal, not %', p_mode USING ERRCODE = '22023';
    END IF;

    -- A table keeps its id across renames: reuse the id its triggers carry.
    SELECT pgtrail._trigger_table_id(t.tgargs) INTO v_id
    FROM pg_trigger AS t
    WHERE t.tgrelid = p_table AND t.tgname IN ('pgtrail_capture_insert', 'pgtrail_wal_context')
    ORDER BY t.tgname LIMIT 1;
    IF v_id IS NOT NULL AND NOT EXISTS (SELECT FROM pgtrail.audited_table WHERE id = v_id) THEN
        v_id := NULL;
    END IF;

    IF v_id IS NOT NULL THEN
        UPDATE pgtrail.audited_table
        SET table_schema = v_schema, table_name = v_name,
            key_columns = p_key_columns, key_kind = p_key_kind, images = p_images,
            ignore_columns = p_ignore_columns, redact_columns = p_redact_columns,
            truncate = p_truncate, truncate_row_limit = v_limit, capture_mode = p_mode,
            attached_at = coalesce(attached_at, v_now), detached_at = NULL
        WHERE id = v_id
        RETURNING attached_at = v_now INTO v_fresh;
    ELSE
        INSERT INTO pgtrail.audited_table AS a
            (table_schema, table_name, key_columns, key_kind, images, ignore_columns, redact_columns,
             truncate, truncate_row_limit, capture_mode, attached_at)
        VALUES (v_schema, v_name, p_key_columns, p_key_kind, p_images, p_ignore_columns, p_redact_columns,
                p_truncate, v_limit, p_mode, v_now)
        ON CONFLICT (table_schema, table_name) DO UPDATE
        SET key_columns = excluded.key_columns, key_kind = excluded.key_kind, images = excluded.images,
            ignore_columns = excluded.ignore_columns, redact_columns = excluded.redact_columns,
            truncate = excluded.truncate, truncate_row_limit = excluded.truncate_row_limit,
            capture_mode = excluded.capture_mode,
            attached_at = CASE WHEN a.detached_at IS NULL THEN a.attached_at ELSE excluded.attached_at END,
            detached_at = NULL
        RETURNING id, attached_at = v_now INTO v_id, v_fresh;
    END IF;

    -- Columns changed while capture was off, or without the DDL watch, are
    -- recorded now (at least their order with later changes is right).
    PERFORM pgtrail._record_schema_changes(v_id, p_table);
    IF p_mode = 'wal' THEN
        PERFORM pgtrail._wal_attach(p_table, v_id);
    ELSE
        PERFORM pgtrail._wal_detach(p_table, v_id);
        PERFORM pgtrail._create_triggers(p_table, v_id);
    END IF;
    PERFORM pgtrail._let_owner_read(p_table);
    IF v_fresh THEN
        -- Capture begins now: whether the table is empty (its triggers, made
        -- above, keep writers out until this transaction ends).
        UPDATE pgtrail.audited_table SET complete_since_attach = pgtrail._is_empty(p_table) WHERE id = v_id;
    END IF;
    RETURN v_id;
END
$fn$;

-- Whether table p_table holds no row that its capture would have recorded
-- (its own rows, or its partitions'), as this transaction sees it. False
-- when that cannot be told: no right to read it, or a snapshot older than
-- the triggers' lock (REPEATABLE READ), in which another transaction's rows
-- may be missing.
CREATE OR REPLACE FUNCTION pgtrail._is_empty(p_table regclass)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_empty boolean;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RETURN false;
    END IF;
    EXECUTE format('SELECT NOT EXISTS (SELECT FROM %s%s)',
                   CASE WHEN (SELECT relkind FROM pg_class WHERE oid = p_table) = 'p' THEN '' ELSE 'ONLY ' END, p_table)
    INTO v_empty;
    RETURN v_empty;
EXCEPTION WHEN insufficient_privilege THEN
    RETURN false;
END
$fn$;

-- The query functions read the live rows of audited tables as the trail's
-- owner (this database's owner role, pgtrail.role_name('owner'), see
-- 90_privileges.sql): it gets SELECT on each, and USAGE on its schema.
-- Without the right to grant it, the query functions answer for rows the
-- trail has seen, and the notice says why live rows are missing.
CREATE OR REPLACE FUNCTION pgtrail._let_owner_read(p_table regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_owner name := pgtrail.role_name('owner');
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = v_owner) THEN
        IF NOT has_schema_privilege(v_owner, (SELECT relnamespace FROM pg_class WHERE oid = p_table), 'USAGE') THEN
            PERFORM pgtrail._privilege_ddl(format('GRANT USAGE ON SCHEMA %I TO %I',
                           (SELECT n.nspname FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
                            WHERE c.oid = p_table), v_owner));
        END IF;
        IF NOT has_table_privilege(v_owner, p_table, 'SELECT') THEN
            PERFORM pgtrail._privilege_ddl(format('GRANT SELECT ON %s TO %I', p_table, v_owner));
        END IF;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE WARNING 'pgtrail: could not grant SELECT on % to %: %', p_table, v_owner, SQLERRM;
END
$fn$;

-- Stops capture on a table. The trail of the table stays.
CREATE OR REPLACE FUNCTION pgtrail.detach(p_table regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_rel regclass;
    v_id  integer := pgtrail._audited_id_of(p_table);
BEGIN
    PERFORM pg_advisory_xact_lock(8101176133498366316);  -- as in pgtrail.attach
    INSERT INTO pgtrail.managing (txid, table_id) SELECT txid_current(), v_id WHERE v_id IS NOT NULL;
    FOR v_rel IN
        SELECT p_table UNION ALL SELECT relid FROM pg_partition_tree(p_table) WHERE relid <> p_table
    LOOP
        PERFORM pgtrail._drop_capture_triggers(v_rel);
    END LOOP;
    DELETE FROM pgtrail.managing WHERE txid = txid_current() AND table_id = v_id;
    IF v_id IS NOT NULL THEN
        PERFORM pgtrail._wal_detach(p_table, v_id);
        EXECUTE format('DROP FUNCTION IF EXISTS %s()', pgtrail._capture_function(v_id));
    END IF;
    -- Capture stops on purpose: no capture gap (see pgtrail.capture_gaps).
    WITH detached AS (
        UPDATE pgtrail.audited_table AS a
        SET detached_at = clock_timestamp()
        WHERE a.id = v_id AND a.detached_at IS NULL
        RETURNING a.id
    )
    INSERT INTO pgtrail.ddl_event (command_tag, object_identity, action, detail)
    SELECT 'pgtrail.detach', p_table::text, 'detached',
           jsonb_build_object('table_id', d.id, 'command', current_query(), 'capture', 'detached')
    FROM detached AS d;
END
$fn$;
