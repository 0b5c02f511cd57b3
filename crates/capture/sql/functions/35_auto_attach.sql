-- Tables created later: with auto_attach = true in pgtrail.toml, a new table
-- that the include rules select is audited from its first row, and its
-- creation is recorded in pgtrail.ddl_event. A new partition of an audited
-- table gets its capture triggers whatever auto_attach says (while the event
-- trigger is installed). The rules arrive from `pgtrail apply` as regular
-- expressions that match exactly what the config's glob patterns match.

-- Whether any rule of p_rules ([{"schema": regex or null, "table": regex}])
-- matches the table.
CREATE OR REPLACE FUNCTION pgtrail._rules_match(p_rules jsonb, p_schema text, p_table text)
RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT EXISTS (
        SELECT FROM jsonb_array_elements(coalesce(p_rules, '[]')) AS r
        WHERE (r ->> 'schema' IS NULL OR p_schema ~ (r ->> 'schema')) AND p_table ~ (r ->> 'table'))
$fn$;

-- Turns auto_attach on (p_settings: {"schemas": [...], "include": rules,
-- "exclude": rules, "images": "diff", "ignore_columns": [...],
-- "redact_columns": [...], and with truncate = "capture": "truncate":
-- "capture", "truncate_row_limit": n}) or off (NULL). Creating an event trigger needs
-- superuser rights; the error says so.
CREATE OR REPLACE FUNCTION pgtrail.configure_auto_attach(p_settings jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF p_settings IS NULL OR jsonb_typeof(p_settings) = 'null' THEN
        DELETE FROM pgtrail.setting WHERE name = 'auto_attach';
        DROP EVENT TRIGGER IF EXISTS pgtrail_auto_attach;
        RETURN;
    END IF;
    INSERT INTO pgtrail.setting (name, value) VALUES ('auto_attach', p_settings::text)
    ON CONFLICT (name) DO UPDATE SET value = excluded.value;
    IF NOT EXISTS (SELECT FROM pg_event_trigger WHERE evtname = 'pgtrail_auto_attach') THEN
        BEGIN
            CREATE EVENT TRIGGER pgtrail_auto_attach ON ddl_command_end
                WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO')
                EXECUTE FUNCTION pgtrail._on_create_table();
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE EXCEPTION 'pgtrail: auto_attach needs an event trigger, and % may not create one', current_user
                USING ERRCODE = '42501',
                      HINT = 'Run pgtrail apply as a superuser (rds_superuser on RDS), or set auto_attach = false '
                          || 'and let pgtrail check report new tables.';
        END;
    END IF;
END
$fn$;

CREATE OR REPLACE FUNCTION pgtrail._on_create_table()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_settings jsonb;
    v_command  record;
    v_schema   text;
    v_name     text;
    v_is_part  boolean;
    v_parent   regclass;
    v_id       integer;
    v_keys     text[];
    v_kind     text;
    v_columns  text[];
    v_redact   text[];
BEGIN
    SELECT value::jsonb INTO v_settings FROM pgtrail.setting WHERE name = 'auto_attach';
    FOR v_command IN
        SELECT * FROM pg_event_trigger_ddl_commands()
        WHERE object_type = 'table' AND command_tag IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO')
    LOOP
        SELECT n.nspname, c.relname, c.relispartition INTO v_schema, v_name, v_is_part
        FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
        WHERE c.oid = v_command.objid AND c.relkind IN ('r', 'p') AND NOT c.relpersistence = 't';
        IF NOT FOUND OR v_schema = 'pgtrail' THEN
            CONTINUE;
        END IF;

        IF v_is_part THEN
            -- A new partition of an audited table: capture on it too, under the parent's id.
            SELECT a.relid, t.id INTO v_parent, v_id
            FROM pg_partition_ancestors(v_command.objid) WITH ORDINALITY AS a(relid, depth)
            JOIN pg_class AS c ON c.oid = a.relid
            JOIN pg_namespace AS n ON n.oid = c.relnamespace
            JOIN pgtrail.audited_table AS t
              ON t.table_schema = n.nspname AND t.table_name = c.relname AND t.detached_at IS NULL
            WHERE a.relid <> v_command.objid
            ORDER BY a.depth DESC
            LIMIT 1;
            IF FOUND THEN
                PERFORM pgtrail._create_triggers(v_parent, v_id);
                INSERT INTO pgtrail.ddl_event (command_tag, object_identity, action, detail)
                VALUES (v_command.command_tag, v_command.object_identity, 'partition_attached',
                        jsonb_build_object('parent', v_parent::text));
            END IF;
            CONTINUE;
        END IF;

        IF v_settings IS NULL
           OR NOT v_schema = ANY (ARRAY(SELECT jsonb_array_elements_text(v_settings -> 'schemas')))
           OR pgtrail._rules_match(v_settings -> 'exclude', v_schema, v_name)
           OR NOT pgtrail._rules_match(v_settings -> 'include', v_schema, v_name)
        THEN
            CONTINUE;
        END IF;

        -- The key, as `pgtrail apply` detects it: primary key, else replica identity index, else the whole row.
        SELECT array_agg(a.attname::text ORDER BY k.ord), CASE WHEN i.indisprimary THEN 'primary_key' ELSE 'replica_identity' END
        INTO v_keys, v_kind
        FROM pg_index AS i
        CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
        JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        WHERE i.indrelid = v_command.objid AND (i.indisprimary OR i.indisreplident)
        GROUP BY i.indexrelid, i.indisprimary
        ORDER BY i.indisprimary DESC
        LIMIT 1;
        IF v_keys IS NULL THEN
            v_keys := '{}';
            v_kind := 'full_row';
        END IF;
        SELECT array_agg(a.attname::text) INTO v_columns
        FROM pg_attribute AS a WHERE a.attrelid = v_command.objid AND a.attnum > 0 AND NOT a.attisdropped;
        SELECT coalesce(array_agg(c ORDER BY c), '{}') INTO v_redact
        FROM jsonb_array_elements_text(v_settings -> 'redact_columns') AS c
        WHERE c = ANY (v_columns) AND NOT c = ANY (v_keys);

        v_id := pgtrail.attach(
            v_command.objid::regclass, v_keys, v_kind, coalesce(v_settings ->> 'images', 'diff'),
            (SELECT coalesce(array_agg(c ORDER BY c), '{}') FROM jsonb_array_elements_text(v_settings -> 'ignore_columns') AS c
             WHERE c = ANY (v_columns) AND NOT c = ANY (v_keys)),
            v_redact,
            coalesce(v_settings ->> 'truncate', 'event'), (v_settings ->> 'truncate_row_limit')::bigint);
        INSERT INTO pgtrail.ddl_event (command_tag, object_identity, action, detail)
        VALUES (v_command.command_tag, v_command.object_identity, 'auto_attached',
                jsonb_build_object('table_id', v_id, 'key', v_keys, 'key_kind', v_kind));

        -- CREATE TABLE AS and SELECT INTO filled the table before this ran:
        -- record those first rows as inserts, so it is audited from its first row.
        IF v_command.command_tag <> 'CREATE TABLE' THEN
            PERFORM pgtrail._record_rows(v_id, v_command.objid::regclass);
            -- The trail now holds every row it has (60_queries.sql).
            UPDATE pgtrail.audited_table SET complete_since_attach = true WHERE id = v_id;
        END IF;
    END LOOP;
END
$fn$;
