-- Capture: statement-level AFTER triggers with transition tables.
--
-- One trigger per event and audited table (INSERT, UPDATE, DELETE, TRUNCATE),
-- each firing once per statement and writing every changed row of the
-- statement with one set-based INSERT ... SELECT. The trigger argument is the
-- table's id in pgtrail.audited_table; partitions carry their parent's id so a
-- change is recorded once, under the parent's name, whichever table the
-- statement named. Old and new rows of an UPDATE are paired by their position
-- in the transition tables, which PostgreSQL fills pairwise, so updates that
-- change the key, and tables without a key, pair correctly. A statement
-- that writes changes later than its transaction's first hour (or before its
-- start, after a clock step) lists the context in pgtrail.long_context, so
-- that pgtrail.actor_changes can still find them (10_context.sql).

-- Rows are turned into JSON with to_jsonb(pgtrail_row.*): the `.*` makes it
-- the whole row even when the table has a column named like the alias.

-- Helpers of pgtrail._key and pgtrail._redact below, for the rarer cases.
CREATE OR REPLACE FUNCTION pgtrail._key_of_many(p_row jsonb, p_columns text[])
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT jsonb_object_agg(c, p_row -> c) FROM unnest(p_columns) AS c
$fn$;

CREATE OR REPLACE FUNCTION pgtrail._redact_values(p_row jsonb, p_columns text[], p_key bytea)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT p_row || (
        SELECT jsonb_object_agg(c, jsonb_build_object('redacted',
                   left(encode(sha256(p_key || convert_to(c || '=' || (p_row -> c)::text, 'UTF8')), 'hex'), 16)))
        FROM unnest(p_columns) AS c
        WHERE p_row ? c)
$fn$;

-- The row's identity: its key columns, or the whole row when it has no key.
-- Written to be inlined into the capture queries (a single expression, no
-- SET clause, no subquery, STABLE like jsonb_build_object, since an IMMUTABLE
-- function with a STABLE body is never inlined): PostgreSQL 15 would otherwise plan a SQL
-- function's body again on every statement. It is only ever inlined into
-- functions that pin search_path, and it names nothing outside pg_catalog
-- except pgtrail's own, schema-qualified helpers.
CREATE OR REPLACE FUNCTION pgtrail._key(p_row jsonb, p_columns text[])
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $fn$
    SELECT CASE cardinality(p_columns)
        WHEN 0 THEN p_row
        WHEN 1 THEN pg_catalog.jsonb_build_object(p_columns[1], p_row OPERATOR(pg_catalog.->) p_columns[1])
        WHEN 2 THEN pg_catalog.jsonb_build_object(p_columns[1], p_row OPERATOR(pg_catalog.->) p_columns[1],
                                                  p_columns[2], p_row OPERATOR(pg_catalog.->) p_columns[2])
        ELSE pgtrail._key_of_many(p_row, p_columns)
    END
$fn$;

-- Replaces the values of redacted columns with a marker. The marker is a keyed
-- digest (the key lives in pgtrail.secret, readable by the owner only): it
-- shows that a value changed, or came back, without letting anyone guess it.
-- Inlined like pgtrail._key; the work happens only when a redacted column is there.
CREATE OR REPLACE FUNCTION pgtrail._redact(p_row jsonb, p_columns text[], p_key bytea)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $fn$
    SELECT CASE
        WHEN p_row IS NULL OR cardinality(p_columns) = 0 OR NOT (p_row OPERATOR(pg_catalog.?|) p_columns) THEN p_row
        ELSE pgtrail._redact_values(p_row, p_columns, p_key)
    END
$fn$;

-- INSERT and DELETE: every new (or old) row of the statement, whole.
CREATE OR REPLACE FUNCTION pgtrail.capture_rows()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    t      pgtrail.audited_table;
    v_txid bigint;
    v_ctx  smallint;
    v_key  bytea;
    v_rows bigint;
BEGIN
    SELECT * INTO t FROM pgtrail.audited_table WHERE id = TG_ARGV[0]::integer;
    v_txid := txid_current();
    v_ctx := pgtrail._context_seq();
    IF cardinality(t.redact_columns) > 0 THEN
        SELECT value INTO v_key FROM pgtrail.secret WHERE name = 'redaction';
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO pgtrail.change (txid, ctx, table_id, op, changed_at, pk, new_values)
        SELECT v_txid, v_ctx, t.id, 'I', clock_timestamp(),
               pgtrail._redact(pgtrail._key(r.j, t.key_columns), t.redact_columns, v_key),
               pgtrail._redact(r.j, t.redact_columns, v_key)
        FROM (SELECT to_jsonb(pgtrail_row.*) - t.ignore_columns AS j FROM pgtrail_new AS pgtrail_row OFFSET 0) AS r;
    ELSE
        INSERT INTO pgtrail.change (txid, ctx, table_id, op, changed_at, pk, old_values)
        SELECT v_txid, v_ctx, t.id, 'D', clock_timestamp(),
               pgtrail._redact(pgtrail._key(r.j, t.key_columns), t.redact_columns, v_key),
               pgtrail._redact(r.j, t.redact_columns, v_key)
        FROM (SELECT to_jsonb(pgtrail_row.*) - t.ignore_columns AS j FROM pgtrail_old AS pgtrail_row OFFSET 0) AS r;
    END IF;
    -- A statement that changed no row records nothing, not even its transaction.
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    IF v_rows > 0 THEN
        PERFORM FROM pgtrail.transaction WHERE txid = v_txid AND ctx = v_ctx;
        IF NOT FOUND THEN
            PERFORM pgtrail._record_transaction(v_txid, v_ctx, format('%I.%I', t.table_schema, t.table_name));
        END IF;
        IF pgtrail._outside_context_span(clock_timestamp()) THEN
            INSERT INTO pgtrail.long_context (txid, ctx) VALUES (v_txid, v_ctx) ON CONFLICT DO NOTHING;
        END IF;
    END IF;
    RETURN NULL;
END
$fn$;

-- The difference between two images of a row: the changed fields (sorted),
-- and their old and new values. jsonb equality ignores the scale of numbers
-- (1.5 = 1.50); the stored value changed all the same, so their text is
-- compared too. No changed field: all three are NULL. (PL/pgSQL, whose plan
-- is cached: measured faster here than an inlined SQL function. No SET
-- clause, which would cost a settings save and restore on every call: it is
-- only called by the capture functions, which pin search_path, and by nobody
-- else, since only the owner may execute it.)
CREATE OR REPLACE FUNCTION pgtrail._diff(
    p_old jsonb, p_new jsonb, OUT fields text[], OUT old_values jsonb, OUT new_values jsonb)
LANGUAGE plpgsql STABLE
AS $fn$
BEGIN
    SELECT array_agg(e.key ORDER BY e.key), jsonb_object_agg(e.key, p_old -> e.key), jsonb_object_agg(e.key, e.value)
    INTO fields, old_values, new_values
    FROM jsonb_each(p_new) AS e
    WHERE (p_old -> e.key) IS DISTINCT FROM e.value
       OR (jsonb_typeof(e.value) = 'number' AND (p_old -> e.key)::text <> e.value::text);
END
$fn$;

-- The bulk path for UPDATE statements that changed many rows. Turning whole
-- rows into JSON costs more than the UPDATE itself, so this path first finds
-- which columns changed in any row of the statement (binary comparison, which
-- also sees 1.5 -> 1.50 and works for types without an equality operator),
-- then builds JSON for those columns only. The SQL is generated from the live
-- catalog with format(%I, %L): identifiers only, no values, planned once per
-- statement, which is why small statements keep the static path. (The
-- trigger runs the SQL itself: transition tables are visible only there.)

-- Old and new rows of the statement, paired: by key (a join on the key
-- columns, for when no key changed), else by position in the transition
-- tables, which PostgreSQL fills pairwise.
CREATE OR REPLACE FUNCTION pgtrail._bulk_pairs(p_key_columns text[])
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT CASE
        WHEN cardinality(p_key_columns) > 0 THEN
            'FROM pgtrail_old AS o JOIN pgtrail_new AS n ON '
            || (SELECT string_agg(format('o.%1$I = n.%1$I', k), ' AND ') FROM unnest(p_key_columns) AS k)
        ELSE
            'FROM (SELECT row_number() OVER () AS pgtrail_pos, pgtrail_row.* FROM pgtrail_old AS pgtrail_row) AS o '
            || 'JOIN (SELECT row_number() OVER () AS pgtrail_pos, pgtrail_row.* FROM pgtrail_new AS pgtrail_row) AS n '
            || 'USING (pgtrail_pos)'
    END
$fn$;

-- SELECT telling whether the old and new transition tables list the same
-- keys in the same order (compared as one digest per side).
CREATE OR REPLACE FUNCTION pgtrail._bulk_same_keys_sql(p_key_columns text[])
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT format('SELECT (SELECT md5(string_agg(ROW(%1$s)::text, '','')) FROM pgtrail_old AS r) '
                  'IS NOT DISTINCT FROM (SELECT md5(string_agg(ROW(%1$s)::text, '','')) FROM pgtrail_new AS r)',
                  string_agg(format('r.%I', k), ', '))
    FROM unnest(p_key_columns) AS k
$fn$;

-- The expression that tells whether column p_column changed between o and n,
-- or NULL when its type has no safe native comparison (no default btree
-- equality, or a nondeterministic collation); the bulk path is then not used.
-- numeric also compares scale: 1.5 -> 1.50 is recorded, as on the static path.
CREATE OR REPLACE FUNCTION pgtrail._bulk_changed_expr(p_relid oid, p_column text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    WITH col AS (
        SELECT coalesce(nullif(bt.typbasetype, 0), a.atttypid) AS type_oid, a.attcollation
        FROM pg_attribute AS a JOIN pg_type AS bt ON bt.oid = a.atttypid
        WHERE a.attrelid = p_relid AND a.attname = p_column
    ),
    typ AS (
        SELECT t.oid, t.typtype, t.typelem, t.typcategory, col.attcollation
        FROM col JOIN pg_type AS t ON t.oid = col.type_oid
    )
    SELECT CASE
        WHEN typ.oid = 'numeric'::regtype
            THEN format('(o.%1$I IS DISTINCT FROM n.%1$I OR scale(o.%1$I) IS DISTINCT FROM scale(n.%1$I))', p_column)
        WHEN (typ.attcollation = 0
              OR EXISTS (SELECT FROM pg_collation AS c WHERE c.oid = typ.attcollation AND c.collisdeterministic))
         AND (typ.typtype = 'e'
              OR EXISTS (SELECT FROM pg_opclass AS oc JOIN pg_am AS am ON am.oid = oc.opcmethod
                         WHERE am.amname = 'btree' AND oc.opcdefault
                           AND oc.opcintype = CASE WHEN typ.typcategory = 'A' THEN typ.typelem ELSE typ.oid END)
                 AND NOT (typ.typcategory = 'A' AND typ.typelem = 'numeric'::regtype))
            THEN format('(o.%1$I IS DISTINCT FROM n.%1$I)', p_column)
    END
    FROM typ
$fn$;

-- SELECT returning the number of paired rows and the text[] of columns that
-- changed in at least one row; NULL when some column cannot be compared
-- natively or the key columns themselves cannot.
CREATE OR REPLACE FUNCTION pgtrail._bulk_changed_columns_sql(t pgtrail.audited_table, p_relid oid)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT CASE WHEN bool_and(e.expr IS NOT NULL) THEN
        format('SELECT count(*), array_remove(ARRAY[%s]::text[], NULL) %s',
               string_agg(format('CASE WHEN bool_or(%s) THEN %L END', e.expr, e.attname), ', ' ORDER BY e.attnum),
               pgtrail._bulk_pairs(t.key_columns))
    END
    FROM (SELECT a.attname, a.attnum, pgtrail._bulk_changed_expr(p_relid, a.attname) AS expr
          FROM pg_attribute AS a
          WHERE a.attrelid = p_relid AND a.attnum > 0 AND NOT a.attisdropped
            AND (NOT a.attname = ANY (t.ignore_columns) OR a.attname = ANY (t.key_columns))) AS e
$fn$;

-- The old (p_side 'o') or new ('n') values of the changed columns of one row,
-- as jsonb. The usual case, every column of p_changed changed in this row,
-- is one jsonb_build_object; otherwise the object is assembled column by
-- column. A redacted value becomes its keyed marker, exactly as
-- pgtrail._redact makes it ($4 is the redaction key).
CREATE OR REPLACE FUNCTION pgtrail._bulk_image_sql(
    t pgtrail.audited_table, p_relid oid, p_changed text[], p_side text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    WITH col AS (
        SELECT c,
               pgtrail._bulk_changed_expr(p_relid, c) AS changed,
               CASE WHEN c = ANY (t.redact_columns)
                    THEN format('jsonb_build_object(''redacted'', left(encode(sha256($4 || convert_to(%1$L || ''='' '
                                || '|| to_jsonb(%2$s.%1$I)::text, ''UTF8'')), ''hex''), 16))', c, p_side)
                    ELSE format('%s.%I', p_side, c)
               END AS value
        FROM unnest(p_changed) AS c
    )
    SELECT format('CASE WHEN %s THEN jsonb_build_object(%s) ELSE %s END',
                  string_agg(changed, ' AND '),
                  string_agg(format('%L, %s', c, value), ', '),
                  string_agg(format('CASE WHEN %s THEN jsonb_build_object(%L, %s) ELSE ''{}''::jsonb END',
                                    changed, c, value), ' || '))
    FROM col
$fn$;

-- INSERT of the changes, for the columns in p_changed. Parameters: $1 txid,
-- $2 ctx, $3 redacted columns, $4 redaction key, $5 ignored columns.
CREATE OR REPLACE FUNCTION pgtrail._bulk_insert_sql(
    t pgtrail.audited_table, p_relid oid, p_changed text[], p_by_position boolean)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_key_new text;
    v_key_old text;
BEGIN
    IF cardinality(t.key_columns) = 0 THEN
        -- The whole row is the key: redacted values are redacted in it too.
        v_key_new := 'pgtrail._redact(to_jsonb(n.*) - $5 - ''pgtrail_pos'', $3, $4)';
        v_key_old := 'pgtrail._redact(to_jsonb(o.*) - $5 - ''pgtrail_pos'', $3, $4)';
    ELSE
        SELECT 'jsonb_build_object(' || string_agg(format('%L, n.%I', k, k), ', ') || ')',
               'jsonb_build_object(' || string_agg(format('%L, o.%I', k, k), ', ') || ')'
        INTO v_key_new, v_key_old
        FROM unnest(t.key_columns) AS k;
    END IF;
    RETURN format(
        'INSERT INTO pgtrail.change (txid, ctx, table_id, op, changed_at, pk, old_pk, old_values, new_values, changed_fields) '
        'SELECT $1, $2, %s, ''U'', clock_timestamp(), d.pk, CASE WHEN d.old_pk IS DISTINCT FROM d.pk THEN d.old_pk END, '
        '       d.old_values, d.new_values, NULL '
        'FROM (SELECT %s AS pk, %s AS old_pk, %s AS old_values, %s AS new_values, '
        '             array_remove(ARRAY[%s]::text[], NULL) AS fields %s) AS d '
        'WHERE cardinality(d.fields) > 0',
        t.id,
        v_key_new,
        v_key_old,
        pgtrail._bulk_image_sql(t, p_relid, p_changed, 'o'),
        pgtrail._bulk_image_sql(t, p_relid, p_changed, 'n'),
        (SELECT string_agg(format('CASE WHEN %s THEN %L END', pgtrail._bulk_changed_expr(p_relid, c), c), ', '
                           ORDER BY c)
         FROM unnest(p_changed) AS c),
        pgtrail._bulk_pairs(CASE WHEN p_by_position THEN '{}'::text[] ELSE t.key_columns END));
END
$fn$;

CREATE OR REPLACE FUNCTION pgtrail.capture_update()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    t      pgtrail.audited_table;
    v_txid bigint;
    v_key     bytea;
    v_full    boolean;
    v_changed     text[];
    v_ctx         smallint;
    v_sql         text;
    v_paired      bigint;
    v_by_position boolean;
    v_same_keys   boolean;
    v_work_mem    text;
    v_jit         text;
    v_rows        bigint;
    v_recorded    boolean;
    v_start       record;
BEGIN
    -- The table's settings, how many rows changed (counting stops at 256,
    -- the bulk path's threshold) and the context number, in one query.
    SELECT a AS t, (SELECT count(*) FROM (SELECT FROM pgtrail_new LIMIT 256) AS s) AS n, pgtrail._context_seq() AS ctx
    INTO v_start
    FROM pgtrail.audited_table AS a WHERE a.id = TG_ARGV[0]::integer;
    t := v_start.t;
    v_rows := v_start.n;
    v_ctx := v_start.ctx;
    IF v_rows = 0 THEN
        RETURN NULL;
    END IF;
    v_full := t.images = 'full';
    IF cardinality(t.redact_columns) > 0 THEN
        SELECT value INTO v_key FROM pgtrail.secret WHERE name = 'redaction';
    END IF;
    v_txid := txid_current();
    -- Statements that changed many rows take the bulk path (see above).
    IF NOT v_full AND v_rows = 256 THEN
        v_sql := pgtrail._bulk_changed_columns_sql(t, TG_RELID);
        IF v_sql IS NOT NULL THEN
            -- Enough memory to pair the rows with a hash join instead of
            -- sorting on disk, and no JIT: the planner cannot estimate
            -- transition tables, expects millions of rows and would spend
            -- longer compiling than running. Both restored below.
            v_work_mem := current_setting('work_mem');
            v_jit := current_setting('jit');
            PERFORM set_config('work_mem', greatest(pg_size_bytes(v_work_mem), 64 * 1024 * 1024)::text || 'B', true);
            PERFORM set_config('jit', 'off', true);
            -- Pairing by key equals pairing by position when the keys come in
            -- the same order on both sides, i.e. no key changed (a swap or a
            -- shift of keys would pair the wrong rows by key).
            v_by_position := cardinality(t.key_columns) = 0;
            IF NOT v_by_position THEN
                EXECUTE pgtrail._bulk_same_keys_sql(t.key_columns) INTO v_same_keys;
                v_by_position := NOT v_same_keys;
            END IF;
            IF v_by_position AND cardinality(t.key_columns) > 0 THEN
                v_sql := replace(v_sql, pgtrail._bulk_pairs(t.key_columns), pgtrail._bulk_pairs('{}'));
            END IF;
            EXECUTE v_sql INTO v_paired, v_changed;
            IF cardinality(v_changed) > 0 THEN
                EXECUTE pgtrail._bulk_insert_sql(t, TG_RELID, v_changed, v_by_position)
                USING v_txid, v_ctx, t.redact_columns, coalesce(v_key, ''::bytea), t.ignore_columns;
                GET DIAGNOSTICS v_rows = ROW_COUNT;
                IF v_rows > 0 THEN
                    PERFORM FROM pgtrail.transaction WHERE txid = v_txid AND ctx = v_ctx;
                    IF NOT FOUND THEN
                        PERFORM pgtrail._record_transaction(v_txid, v_ctx, format('%I.%I', t.table_schema, t.table_name));
                    END IF;
                    IF pgtrail._outside_context_span(clock_timestamp()) THEN
                        INSERT INTO pgtrail.long_context (txid, ctx) VALUES (v_txid, v_ctx) ON CONFLICT DO NOTHING;
                    END IF;
                END IF;
            END IF;
            PERFORM set_config('work_mem', v_work_mem, true);
            PERFORM set_config('jit', v_jit, true);
            RETURN NULL;
        END IF;
    END IF;
    -- An UPDATE that changed nothing, or only ignored columns, records
    -- nothing, not even its transaction: the context is written only when
    -- at least one row really changed.
    IF v_rows = 1 THEN
        -- One row, the common OLTP case: no pairing needed, and one
        -- statement that writes the change and tells whether this
        -- transaction's context is recorded yet. (The keys are computed in
        -- the fenced subquery so that pgtrail._redact, given a plain column,
        -- is inlined rather than called.)
        WITH written AS (
            INSERT INTO pgtrail.change (txid, ctx, table_id, op, changed_at, pk, old_pk, old_values, new_values, changed_fields)
            SELECT v_txid, v_ctx, t.id, 'U', clock_timestamp(),
                   pgtrail._redact(r.new_key, t.redact_columns, v_key),
                   CASE WHEN r.old_key IS DISTINCT FROM r.new_key THEN pgtrail._redact(r.old_key, t.redact_columns, v_key) END,
                   pgtrail._redact(CASE WHEN v_full THEN r.o ELSE d.old_values END, t.redact_columns, v_key),
                   pgtrail._redact(CASE WHEN v_full THEN r.n ELSE d.new_values END, t.redact_columns, v_key),
                   CASE WHEN v_full THEN d.fields END
            FROM (SELECT x.o, x.n, pgtrail._key(x.o, t.key_columns) AS old_key, pgtrail._key(x.n, t.key_columns) AS new_key
                  FROM (SELECT to_jsonb(o.*) - t.ignore_columns AS o, to_jsonb(n.*) - t.ignore_columns AS n
                        FROM pgtrail_old AS o, pgtrail_new AS n OFFSET 0) AS x
                  OFFSET 0) AS r
            CROSS JOIN LATERAL pgtrail._diff(r.o, r.n) AS d
            WHERE d.fields IS NOT NULL
            RETURNING 1
        )
        SELECT count(*), EXISTS (SELECT FROM pgtrail.transaction WHERE txid = v_txid AND ctx = v_ctx)
        INTO v_rows, v_recorded
        FROM written;
        IF v_rows > 0 AND NOT v_recorded THEN
            PERFORM pgtrail._record_transaction(v_txid, v_ctx, format('%I.%I', t.table_schema, t.table_name));
        END IF;
        IF v_rows > 0 AND pgtrail._outside_context_span(clock_timestamp()) THEN
            INSERT INTO pgtrail.long_context (txid, ctx) VALUES (v_txid, v_ctx) ON CONFLICT DO NOTHING;
        END IF;
        RETURN NULL;
    END IF;
    WITH diff AS MATERIALIZED (
        SELECT d.new_pk AS pk,
               CASE WHEN d.old_pk IS DISTINCT FROM d.new_pk THEN d.old_pk END AS old_pk,
               pgtrail._redact(CASE WHEN v_full THEN o.j ELSE d.old_diff END, t.redact_columns, v_key) AS old_values,
               pgtrail._redact(CASE WHEN v_full THEN n.j ELSE d.new_diff END, t.redact_columns, v_key) AS new_values,
               CASE WHEN v_full THEN d.fields END AS changed_fields
        -- OFFSET 0 keeps each row's JSON computed once, not once per key.
        FROM (SELECT row_number() OVER () AS pos, to_jsonb(pgtrail_row.*) - t.ignore_columns AS j
              FROM pgtrail_old AS pgtrail_row OFFSET 0) AS o
        JOIN (SELECT row_number() OVER () AS pos, to_jsonb(pgtrail_row.*) - t.ignore_columns AS j
              FROM pgtrail_new AS pgtrail_row OFFSET 0) AS n
          USING (pos)
        CROSS JOIN LATERAL (
            SELECT x.fields, x.old_values AS old_diff, x.new_values AS new_diff,
                   pgtrail._redact(pgtrail._key(o.j, t.key_columns), t.redact_columns, v_key) AS old_pk,
                   pgtrail._redact(pgtrail._key(n.j, t.key_columns), t.redact_columns, v_key) AS new_pk
            FROM pgtrail._diff(o.j, n.j) AS x
        ) AS d
        WHERE d.fields IS NOT NULL
        ORDER BY o.pos
    )
    INSERT INTO pgtrail.change (txid, ctx, table_id, op, changed_at, pk, old_pk, old_values, new_values, changed_fields)
    SELECT v_txid, v_ctx, t.id, 'U', clock_timestamp(),
           diff.pk, diff.old_pk, diff.old_values, diff.new_values, diff.changed_fields
    FROM diff;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    IF v_rows > 0 THEN
        PERFORM FROM pgtrail.transaction WHERE txid = v_txid AND ctx = v_ctx;
        IF NOT FOUND THEN
            PERFORM pgtrail._record_transaction(v_txid, v_ctx, format('%I.%I', t.table_schema, t.table_name));
        END IF;
        IF pgtrail._outside_context_span(clock_timestamp()) THEN
            INSERT INTO pgtrail.long_context (txid, ctx) VALUES (v_txid, v_ctx) ON CONFLICT DO NOTHING;
        END IF;
    END IF;
    RETURN NULL;
END
$fn$;

CREATE OR REPLACE FUNCTION pgtrail.capture_truncate()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    t      pgtrail.audited_table;
    v_txid bigint;
    v_ctx  smallint;
BEGIN
    SELECT * INTO t FROM pgtrail.audited_table WHERE id = TG_ARGV[0]::integer;
    v_txid := txid_current();
    -- TRUNCATE of a partitioned table fires on each partition too: record one
    -- event per statement and audited table (an event of this table recorded
    -- since the statement began is this statement's).
    PERFORM FROM pgtrail.change
    WHERE txid = v_txid AND table_id = t.id AND op = 'T' AND changed_at >= statement_timestamp();
    IF FOUND THEN
        RETURN NULL;
    END IF;
    v_ctx := pgtrail._context_seq();
    INSERT INTO pgtrail.change (txid, ctx, table_id, op, changed_at)
    VALUES (v_txid, v_ctx, t.id, 'T', clock_timestamp());
    PERFORM FROM pgtrail.transaction WHERE txid = v_txid AND ctx = v_ctx;
    IF NOT FOUND THEN
        PERFORM pgtrail._record_transaction(v_txid, v_ctx, format('%I.%I', t.table_schema, t.table_name));
    END IF;
    IF pgtrail._outside_context_span(clock_timestamp()) THEN
        INSERT INTO pgtrail.long_context (txid, ctx) VALUES (v_txid, v_ctx) ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END
$fn$;
