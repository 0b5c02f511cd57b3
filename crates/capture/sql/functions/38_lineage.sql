-- Column lineage: the schema changes of audited tables (pgtrail.schema_change,
-- migration 0006), recorded by the DDL watch (37_ddl_watch.sql) and by each
-- install, and the translation of recorded values along them for the
-- queries (60_queries.sql, 65_reconcile.sql).
--
-- A position in a table's life is (changed_at, id), as the queries order
-- changes. Values recorded at one position name columns as they were named
-- then; moving them to a later position renames what was renamed and drops
-- what was dropped in between (and, for a whole row's state, adds the value
-- an added column gave the rows already there); moving a state to an
-- earlier position undoes renames and additions, and cannot undo a drop
-- (the dropped values are not known: NULL).

-- The columns of relation p_rel as lineage tracks them.
CREATE OR REPLACE FUNCTION pgtrail._columns_of(p_rel oid)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT coalesce(jsonb_agg(jsonb_build_object('n', a.attnum, 'name', a.attname,
                                                 'type', format_type(a.atttypid, a.atttypmod))
                              ORDER BY a.attnum), '[]')
    FROM pg_attribute AS a
    WHERE a.attrelid = p_rel AND a.attnum > 0 AND NOT a.attisdropped
$fn$;

-- Whether table p_table had a column renamed, dropped, added or retyped
-- since capture began (else recorded names are current names).
CREATE OR REPLACE FUNCTION pgtrail._has_lineage(p_table integer)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT EXISTS (SELECT FROM pgtrail.schema_change AS s
                   WHERE s.table_id = p_table AND s.kind <> 'rename_table')
$fn$;

-- p_values, named as at position (p_at, p_id), named as at the later
-- position (p_to_at, p_to_id) (NULL: now). With p_state, p_values is a
-- whole row's state, which gets the value of each column added between.
CREATE OR REPLACE FUNCTION pgtrail._names_forward(
    p_table integer, p_values jsonb, p_at timestamptz, p_id bigint,
    p_to_at timestamptz, p_to_id bigint, p_state boolean)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v jsonb := p_values;
    e pgtrail.schema_change;
BEGIN
    IF v IS NULL OR jsonb_typeof(v) <> 'object' THEN
        RETURN v;
    END IF;
    FOR e IN
        SELECT * FROM pgtrail.schema_change AS s
        WHERE s.table_id = p_table AND s.kind <> 'rename_table'
          AND (s.changed_at, s.id) > (p_at, coalesce(p_id, 9223372036854775807))
          AND (p_to_at IS NULL OR (s.changed_at, s.id) <= (p_to_at, coalesce(p_to_id, 9223372036854775807)))
        ORDER BY s.changed_at, s.id
    LOOP
        IF e.kind = 'rename' AND v ? e.name THEN
            v := (v - e.name) || jsonb_build_object(e.new_name, v -> e.name);
        ELSIF e.kind = 'drop' THEN
            v := v - e.name;
        ELSIF e.kind = 'add' AND p_state AND NOT v ? e.name THEN
            v := v || jsonb_build_object(e.name, coalesce(e.value, 'null'::jsonb));
        END IF;
    END LOOP;
    RETURN v;
END
$fn$;

-- A whole row's state p_state, named as at position (p_at, p_id) (NULL:
-- now), as it was named at the earlier position (p_to_at, p_to_id); NULL
-- when a column was dropped between (its value then is not known).
CREATE OR REPLACE FUNCTION pgtrail._names_backward(
    p_table integer, p_state jsonb, p_at timestamptz, p_id bigint,
    p_to_at timestamptz, p_to_id bigint)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v jsonb := p_state;
    e pgtrail.schema_change;
BEGIN
    IF v IS NULL OR jsonb_typeof(v) <> 'object' THEN
        RETURN v;
    END IF;
    FOR e IN
        SELECT * FROM pgtrail.schema_change AS s
        WHERE s.table_id = p_table AND s.kind <> 'rename_table'
          AND (s.changed_at, s.id) > (p_to_at, coalesce(p_to_id, 9223372036854775807))
          AND (p_at IS NULL OR (s.changed_at, s.id) < (p_at, coalesce(p_id, 9223372036854775807)))
        ORDER BY s.changed_at DESC, s.id DESC
    LOOP
        IF e.kind = 'rename' AND v ? e.new_name THEN
            v := (v - e.new_name) || jsonb_build_object(e.name, v -> e.new_name);
        ELSIF e.kind = 'add' THEN
            v := v - e.name;
        ELSIF e.kind = 'drop' THEN
            RETURN NULL;
        END IF;
    END LOOP;
    RETURN v;
END
$fn$;

-- Column names p_fields, recorded at position (p_at, p_id), as named now
-- (columns dropped since are left out).
CREATE OR REPLACE FUNCTION pgtrail._fields_forward(
    p_table integer, p_fields text[], p_at timestamptz, p_id bigint)
RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT ARRAY(SELECT jsonb_object_keys(
                     pgtrail._names_forward(p_table, (SELECT jsonb_object_agg(f, true) FROM unnest(p_fields) AS f),
                                            p_at, p_id, NULL, NULL, false)))
$fn$;

-- Every spelling key p_key (named as at position (p_at, p_id); NULL: now)
-- has had: the key as named now, and as named before each rename of one of
-- its columns. The queries look a row's changes up under all of them.
CREATE OR REPLACE FUNCTION pgtrail._key_spellings(p_table integer, p_key jsonb, p_at timestamptz, p_id bigint)
RETURNS jsonb[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_now  jsonb;
    v_keys jsonb[];
    e      pgtrail.schema_change;
BEGIN
    IF p_key IS NULL OR jsonb_typeof(p_key) <> 'object' THEN
        RETURN ARRAY[p_key];
    END IF;
    v_now := CASE WHEN p_at IS NULL THEN p_key
                  ELSE pgtrail._names_forward(p_table, p_key, p_at, p_id, NULL, NULL, false) END;
    v_keys := ARRAY[p_key, v_now];
    FOR e IN
        SELECT * FROM pgtrail.schema_change AS s
        WHERE s.table_id = p_table AND s.kind = 'rename'
        ORDER BY s.changed_at DESC, s.id DESC
    LOOP
        IF v_now ? e.new_name THEN
            v_now := (v_now - e.new_name) || jsonb_build_object(e.name, v_now -> e.new_name);
            v_keys := v_keys || v_now;
        END IF;
    END LOOP;
    RETURN ARRAY(SELECT DISTINCT k FROM unnest(v_keys) AS k);
END
$fn$;

-- The hashes of the trail's key index (pgtrail._h) of keys p_keys.
CREATE OR REPLACE FUNCTION pgtrail._hashes(p_keys jsonb[])
RETURNS bigint[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT ARRAY(SELECT pgtrail._h(k) FROM unnest(p_keys) AS k)
$fn$;

-- Records the schema changes of audited table p_id (relation p_rel) since
-- pgtrail last saw its columns, at this moment, in this transaction: column
-- renames (which also rename the column in the table's key, ignored and
-- redacted columns, so that a renamed secret stays redacted), drops,
-- additions and type changes; and the rows a change rewrote (below).
-- Called by the DDL watch after every ALTER TABLE of an audited table, and
-- by every install (which catches up with changes made without the watch).
CREATE OR REPLACE FUNCTION pgtrail._record_schema_changes(p_id integer, p_rel regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    t         pgtrail.audited_table;
    v_new     jsonb := pgtrail._columns_of(p_rel);
    v_txid    bigint;
    v_ctx     smallint;
    c         record;
    v_value   jsonb;
    v_rewrite boolean;
    v_retyped text[] := '{}';
    v_added   text[] := '{}';
    v_empty   boolean;
BEGIN
    SELECT * INTO t FROM pgtrail.audited_table WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF t.columns IS NULL THEN
        UPDATE pgtrail.audited_table SET columns = v_new WHERE id = p_id;
        RETURN;
    END IF;
    IF t.columns = v_new THEN
        RETURN;
    END IF;
    v_txid := pgtrail._txid();
    v_ctx := pgtrail._context_seq();
    FOR c IN
        SELECT o.value AS o, n.value AS n
        FROM jsonb_array_elements(t.columns) AS o
        FULL JOIN jsonb_array_elements(v_new) AS n ON (o.value -> 'n') = (n.value -> 'n')
        ORDER BY coalesce((n.value ->> 'n')::integer, (o.value ->> 'n')::integer)
    LOOP
        IF c.n IS NULL THEN
            INSERT INTO pgtrail.schema_change (id, table_id, changed_at, txid, ctx, kind, attnum, name, old_type)
            VALUES (nextval(pg_get_serial_sequence('pgtrail.change', 'id')), p_id, clock_timestamp(), v_txid, v_ctx,
                    'drop', (c.o ->> 'n')::smallint, c.o ->> 'name', c.o ->> 'type');
            t.ignore_columns := array_remove(t.ignore_columns, c.o ->> 'name');
            t.redact_columns := array_remove(t.redact_columns, c.o ->> 'name');
        ELSIF c.o IS NULL THEN
            -- The rows already there got the column's default: one constant
            -- (kept aside by PostgreSQL, attmissingval) or NULL, else values
            -- of their own (a volatile default, identity, generated), which
            -- are recorded row by row.
            IF v_empty IS NULL THEN
                EXECUTE format('SELECT NOT EXISTS (SELECT FROM %s)', p_rel) INTO v_empty;
            END IF;
            v_value := 'null';
            v_rewrite := false;
            IF NOT v_empty THEN
                IF EXISTS (SELECT FROM pg_attribute AS a
                           WHERE a.attrelid = p_rel AND a.attnum = (c.n ->> 'n')::smallint
                             AND NOT a.atthasdef AND a.attidentity = '' AND a.attgenerated = '') THEN
                    v_value := 'null';
                ELSIF NOT EXISTS (SELECT FROM pg_attribute AS a
                                  WHERE a.attrelid IN (SELECT p.relid FROM pg_partition_tree(p_rel) AS p WHERE p.isleaf
                                                       UNION SELECT p_rel WHERE NOT EXISTS (SELECT FROM pg_partition_tree(p_rel)))
                                    AND a.attname = c.n ->> 'name' AND NOT a.atthasmissing) THEN
                    EXECUTE format('SELECT to_jsonb(x.%I) FROM %s AS x LIMIT 1', c.n ->> 'name', p_rel) INTO v_value;
                ELSE
                    v_rewrite := true;
                    v_added := v_added || (c.n ->> 'name');
                END IF;
            END IF;
            INSERT INTO pgtrail.schema_change (id, table_id, changed_at, txid, ctx, kind, attnum, name, new_type,
                                               value, rewritten)
            VALUES (nextval(pg_get_serial_sequence('pgtrail.change', 'id')), p_id, clock_timestamp(), v_txid, v_ctx,
                    'add', (c.n ->> 'n')::smallint, c.n ->> 'name', c.n ->> 'type',
                    CASE WHEN NOT v_rewrite THEN coalesce(v_value, 'null') END, v_rewrite);
        ELSE
            IF c.o ->> 'name' <> c.n ->> 'name' THEN
                INSERT INTO pgtrail.schema_change (id, table_id, changed_at, txid, ctx, kind, attnum, name, new_name)
                VALUES (nextval(pg_get_serial_sequence('pgtrail.change', 'id')), p_id, clock_timestamp(), v_txid, v_ctx,
                        'rename', (c.n ->> 'n')::smallint, c.o ->> 'name', c.n ->> 'name');
                t.key_columns := array_replace(t.key_columns, c.o ->> 'name', c.n ->> 'name');
                t.ignore_columns := array_replace(t.ignore_columns, c.o ->> 'name', c.n ->> 'name');
                t.redact_columns := array_replace(t.redact_columns, c.o ->> 'name', c.n ->> 'name');
            END IF;
            IF c.o ->> 'type' <> c.n ->> 'type' THEN
                INSERT INTO pgtrail.schema_change (id, table_id, changed_at, txid, ctx, kind, attnum, name,
                                                   old_type, new_type, rewritten)
                VALUES (nextval(pg_get_serial_sequence('pgtrail.change', 'id')), p_id, clock_timestamp(), v_txid, v_ctx,
                        'type', (c.n ->> 'n')::smallint, c.n ->> 'name', c.o ->> 'type', c.n ->> 'type',
                        NOT (c.n ->> 'name' = ANY (t.ignore_columns)));
                IF NOT (c.n ->> 'name' = ANY (t.ignore_columns)) THEN
                    v_retyped := v_retyped || (c.n ->> 'name');
                END IF;
            END IF;
        END IF;
    END LOOP;
    UPDATE pgtrail.audited_table
    SET columns = v_new, key_columns = t.key_columns, ignore_columns = t.ignore_columns,
        redact_columns = t.redact_columns
    WHERE id = p_id
    RETURNING * INTO t;
    IF cardinality(v_retyped) + cardinality(v_added) > 0 AND cardinality(t.key_columns) > 0 THEN
        PERFORM pgtrail._record_rewritten(t, p_rel, v_retyped, v_added, v_txid, v_ctx);
    END IF;
END
$fn$;

-- The rows of table t (relation p_rel) that a schema change rewrote: for
-- each retyped column (p_retyped) whose value as capture records it now
-- differs from the last recorded one, and for each added column whose rows
-- got values of their own (p_added, recorded as set from NULL), an UPDATE
-- of the DDL's transaction (txid p_txid, context p_ctx), so that the row's
-- history shows what the DDL did to it and reconcile finds nothing. Rows
-- the trail knows no value of (older than capture, without a baseline) are
-- recorded for added columns only. Tables without a key are not rewritten
-- row by row (their rows are their keys).
CREATE OR REPLACE FUNCTION pgtrail._record_rewritten(
    t pgtrail.audited_table, p_rel regclass, p_retyped text[], p_added text[], p_txid bigint, p_ctx smallint)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_rows bigint;
    v_at   timestamptz := clock_timestamp();
BEGIN
    EXECUTE format($q$
        INSERT INTO pgtrail.change (txid, ctx, table_id, op, changed_at, pk, old_values, new_values)
        SELECT $5, $6, $7, 'U', $8, l.pk, d.old, d.new
        FROM (SELECT pgtrail._key(r.j, $4) AS pk, r.j
              FROM (SELECT pgtrail._as_recorded(to_jsonb(x.*), $9, $3) AS j FROM %s AS x) AS r) AS l
        LEFT JOIN pgtrail._recorded_values($9, $1) AS v ON v.pk = l.pk
        CROSS JOIN LATERAL (
            SELECT jsonb_object_agg(f.f, f.old) AS old, jsonb_object_agg(f.f, f.new) AS new
            FROM (SELECT c AS f, v.j -> c AS old, l.j -> c AS new
                  FROM unnest($1) AS c
                  -- (As text: 1.50 and 1.500 are equal JSON numbers, not equal values.)
                  WHERE v.j ? c AND (l.j -> c)::text IS DISTINCT FROM (v.j -> c)::text
                  UNION ALL
                  SELECT c, 'null'::jsonb, l.j -> c
                  FROM unnest($2) AS c WHERE l.j ? c AND (l.j -> c) <> 'null'::jsonb) AS f
        ) AS d
        WHERE d.new IS NOT NULL
        $q$, p_rel)
    USING p_retyped, p_added, (SELECT value FROM pgtrail.secret WHERE name = 'redaction'), t.key_columns,
          p_txid, p_ctx, t.id, v_at, t;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    IF v_rows > 0 THEN
        -- By the DDL's author: whoever the context names, else the session.
        IF coalesce(current_setting('pgtrail.actor_id', true), '') = ''
           AND coalesce(current_setting('pgtrail.actor_name', true), '') = ''
           AND coalesce(current_setting('pgtrail.actor_type', true), '') = '' THEN
            PERFORM set_config('pgtrail.actor_type', 'migration', true);
        END IF;
        PERFORM pgtrail._record_transaction(p_txid, p_ctx, p_rel::text);
    END IF;
END
$fn$;

-- The last recorded value of each of the columns p_fields (named as now)
-- of each row of table t that the trail says exists (keyed tables): the
-- latest INSERT or UPDATE that set it since the table's last TRUNCATE, with
-- recorded names followed to today's.
CREATE OR REPLACE FUNCTION pgtrail._recorded_values(t pgtrail.audited_table, p_fields text[])
RETURNS TABLE (pk jsonb, j jsonb)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    WITH lineage AS (
        SELECT pgtrail._has_lineage(t.id) AS on
    ),
    truncated AS (
        SELECT x.changed_at, x.id FROM pgtrail.change AS x
        WHERE x.table_id = t.id AND x.op = 'T' ORDER BY x.changed_at DESC, x.id DESC LIMIT 1
    ),
    events AS MATERIALIZED (
        SELECT x.changed_at, x.id, x.op,
               CASE WHEN lineage.on THEN pgtrail._names_forward(t.id, x.pk, x.changed_at, x.id, NULL, NULL, false)
                    ELSE x.pk END AS pk,
               CASE WHEN lineage.on THEN pgtrail._names_forward(t.id, x.new_values, x.changed_at, x.id, NULL, NULL, false)
                    ELSE x.new_values END AS new_values
        FROM pgtrail.change AS x CROSS JOIN lineage
        WHERE x.table_id = t.id AND x.op <> 'T'
          AND NOT EXISTS (SELECT FROM truncated AS tr WHERE (x.changed_at, x.id) < (tr.changed_at, tr.id))
        UNION ALL
        SELECT x.changed_at, x.id, 'D',
               CASE WHEN lineage.on THEN pgtrail._names_forward(t.id, x.old_pk, x.changed_at, x.id, NULL, NULL, false)
                    ELSE x.old_pk END, NULL
        FROM pgtrail.change AS x CROSS JOIN lineage
        WHERE x.table_id = t.id AND x.old_pk IS NOT NULL
          AND NOT EXISTS (SELECT FROM truncated AS tr WHERE (x.changed_at, x.id) < (tr.changed_at, tr.id))
    ),
    alive AS (
        SELECT e.pk FROM (SELECT DISTINCT ON (e.pk) e.pk, e.op FROM events AS e
                          ORDER BY e.pk, e.changed_at DESC, e.id DESC, e.op = 'D') AS e
        WHERE e.op <> 'D'
    )
    SELECT f.pk, jsonb_object_agg(f.key, f.value)
    FROM (SELECT DISTINCT ON (e.pk, v.key) e.pk, v.key, v.value
          FROM events AS e, jsonb_each(e.new_values) AS v
          WHERE e.op IN ('I', 'U') AND v.key = ANY (p_fields)
          ORDER BY e.pk, v.key, e.changed_at DESC, e.id DESC) AS f
    WHERE f.pk IN (SELECT a.pk FROM alive AS a)
    GROUP BY f.pk
$fn$;
