-- Capture: statement-level AFTER triggers with transition tables (and a
-- BEFORE TRUNCATE one, 25_truncate.sql); each audited table has a capture
-- function of its own, generated from the catalog when the table is
-- attached (pgtrail._compile_capture) and called by its five triggers
-- (30_attach.sql).
--
-- Why generated. A generic function has to turn whole rows into JSON and
-- diff them, read the table's settings, look for the transaction's context
-- record and re-plan helper functions on every statement: that made a
-- single-row UPDATE cost four times a plain row trigger. The generated
-- function has the table's id, key, compared, ignored and redacted columns
-- compiled in: an UPDATE compares columns directly and builds JSON for the
-- changed ones only; the context record is written once per transaction
-- (15_context_record.sql); each statement is planned once per session.
--
-- Two kinds of generated function:
--   * 'columns' names the table's columns. The DDL watch (37_ddl_watch.sql)
--     generates it again in the transaction of every ALTER TABLE, so it
--     never names a column that is gone. Used when the watch is installed
--     and enabled, for tables of up to 700 recorded columns.
--   * 'rows' names no column but the key's: whole rows to JSON, diffed by
--     pgtrail._diff. Used without the DDL watch (an install without
--     superuser rights), where a dropped or renamed column must not break
--     capture, and for wider tables (a statement may carry no more than
--     1,664 columns).
-- Both record the same trail. The old and new rows of an UPDATE of several
-- rows are paired by their position in the transition tables, which
-- PostgreSQL fills pairwise, so key changes and tables without a key pair
-- right.
--
-- A column counts as changed when its recorded JSON value changes: for
-- types whose equality says exactly that (integers, text with a
-- deterministic collation, uuid, timestamps, enums, ...) by comparing the
-- columns; numeric by value and scale (1.5 -> 1.50 is recorded), by value
-- alone when its scale is declared (numeric(12,2) holds every value at
-- scale 2); any other
-- type by comparing binary images first and then the JSON text.

-- The comparison telling whether column p_column changed between the old
-- and the new row: p_old and p_new are SQL expressions reading its two
-- values.
CREATE OR REPLACE FUNCTION pgtrail._changed_sql(p_relid oid, p_column text, p_old text, p_new text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT CASE
        -- A numeric with a declared scale (numeric(p, s), or a domain over
        -- one) holds every value at that scale: equal values are equal text.
        WHEN t.oid = 'numeric'::regtype AND (a.atttypmod >= 0 OR (d.typtype = 'd' AND d.typtypmod >= 0))
            THEN format('(%s IS DISTINCT FROM %s)', p_old, p_new)
        WHEN t.oid = 'numeric'::regtype
            THEN format('(%1$s IS DISTINCT FROM %2$s OR pg_catalog.scale(%1$s) IS DISTINCT FROM pg_catalog.scale(%2$s))',
                        p_old, p_new)
        WHEN (t.typtype = 'e'
              OR t.oid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype, 'oid'::regtype, 'bool'::regtype,
                           'uuid'::regtype, 'date'::regtype, 'time'::regtype, 'timestamp'::regtype,
                           'timestamptz'::regtype, 'bytea'::regtype, '"char"'::regtype,
                           'text'::regtype, 'varchar'::regtype, 'name'::regtype))
         AND (a.attcollation = 0
              OR EXISTS (SELECT FROM pg_collation AS c WHERE c.oid = a.attcollation AND c.collisdeterministic))
            THEN format('(%s IS DISTINCT FROM %s)', p_old, p_new)
        ELSE format('(ROW(%1$s)::record OPERATOR(pg_catalog.*<>) ROW(%2$s)::record '
                    'AND pg_catalog.to_jsonb(%1$s)::pg_catalog.text IS DISTINCT FROM pg_catalog.to_jsonb(%2$s)::pg_catalog.text)',
                    p_old, p_new)
    END
    FROM pg_attribute AS a
    JOIN pg_type AS d ON d.oid = a.atttypid
    JOIN pg_type AS t ON t.oid = coalesce(nullif(d.typbasetype, 0), d.oid)
    WHERE a.attrelid = p_relid AND a.attname = p_column AND NOT a.attisdropped
$fn$;

-- The columns table p_id records (every column but the ignored ones; key
-- columns are never ignored), numbered in the order their names sort,
-- which is the order of changed_fields.
CREATE OR REPLACE FUNCTION pgtrail._capture_columns(p_id integer, p_relid oid)
RETURNS TABLE (ord integer, name text, redacted boolean, is_key boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT (row_number() OVER (ORDER BY a.attname::text))::integer, a.attname::text,
           a.attname = ANY (t.redact_columns), a.attname = ANY (t.key_columns)
    FROM pgtrail.audited_table AS t
    JOIN pg_attribute AS a ON a.attrelid = p_relid AND a.attnum > 0 AND NOT a.attisdropped
    WHERE t.id = p_id
      AND (NOT a.attname = ANY (t.ignore_columns) OR a.attname = ANY (t.key_columns))
$fn$;

-- The kind of capture function table p_id gets (see the top of this file).
CREATE OR REPLACE FUNCTION pgtrail._capture_kind(p_id integer, p_relid oid)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT CASE
        WHEN EXISTS (SELECT FROM pg_event_trigger WHERE evtname = 'pgtrail_ddl_watch' AND evtenabled <> 'D')
         AND (SELECT count(*) FROM pgtrail._capture_columns(p_id, p_relid)) <= 700
        THEN 'columns' ELSE 'rows' END
$fn$;

-- The qualified name of table p_id's capture function.
CREATE OR REPLACE FUNCTION pgtrail._capture_function(p_id integer)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT format('pgtrail.%I', '_capture_' || p_id)
$fn$;

-- jsonb_build_object of the key columns; p_read(name) reads a column:
-- p_read is a format string taking the column's name ('n.%I') or, with
-- p_numbered, its number ('n.c%s').
CREATE OR REPLACE FUNCTION pgtrail._key_sql(t pgtrail.audited_table, p_relid oid, p_read text, p_numbered boolean)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT 'pg_catalog.jsonb_build_object('
           || string_agg(format('%L, ', k.name) || CASE WHEN p_numbered THEN format(p_read, c.ord) ELSE format(p_read, k.name) END,
                         ', ' ORDER BY k.i)
           || ')'
    FROM unnest(t.key_columns) WITH ORDINALITY AS k(name, i)
    JOIN pgtrail._capture_columns(t.id, p_relid) AS c ON c.name = k.name
$fn$;

-- A whole row's JSON (the SQL expression p_row, ignored columns removed) as
-- the trail records it: its redacted values replaced by their markers.
CREATE OR REPLACE FUNCTION pgtrail._redacted_sql(t pgtrail.audited_table, p_row text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT CASE WHEN cardinality(t.redact_columns) = 0 THEN p_row
        ELSE format('pgtrail._redact_row(%s, %s, %L::pg_catalog.text[], %L::pg_catalog.text[], v_secret)',
                    p_row, t.id, t.key_columns, t.redact_columns)
    END
$fn$;

-- The same for some values (p_part) of the whole row p_row.
CREATE OR REPLACE FUNCTION pgtrail._redacted_part_sql(t pgtrail.audited_table, p_part text, p_row text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT CASE WHEN cardinality(t.redact_columns) = 0 THEN p_part
        ELSE format('pgtrail._redact_part(%s, %s, %s, %L::pg_catalog.text[], %L::pg_catalog.text[], v_secret)',
                    p_part, p_row, t.id, t.key_columns, t.redact_columns)
    END
$fn$;

-- ' - ignored columns', to remove them from a row's JSON.
CREATE OR REPLACE FUNCTION pgtrail._minus_ignored_sql(t pgtrail.audited_table)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT CASE WHEN cardinality(t.ignore_columns) > 0
                THEN format(' OPERATOR(pg_catalog.-) %L::pg_catalog.text[]', t.ignore_columns) ELSE '' END
$fn$;

-- The INSERT of an INSERT's (p_op 'I', rows in pgtrail_new) or a DELETE's
-- (p_op 'D', rows in pgtrail_old) changes: every row, whole, stamped with
-- p_at (an SQL expression: the capture functions' v_now, the time the
-- statement's capture began, a parameter rather than a volatile
-- clock_timestamp() per row, which would keep the planner from folding the
-- SELECT into the INSERT).
DROP FUNCTION IF EXISTS pgtrail._rows_sql(pgtrail.audited_table, oid, text);
CREATE OR REPLACE FUNCTION pgtrail._rows_sql(t pgtrail.audited_table, p_relid oid, p_op text, p_at text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT format(
        E'INSERT INTO pgtrail.change (txid, ctx, table_id, op, changed_at, pk, %s)\n'
        '        SELECT v_txid, v_ctx, %s, %L, %s, %s, %s\n'
        '        FROM (SELECT pg_catalog.to_jsonb(r.*)%s AS j%s FROM %s AS r) AS x;',
        CASE p_op WHEN 'I' THEN 'new_values' ELSE 'old_values' END,
        t.id, p_op, p_at,
        CASE WHEN cardinality(t.key_columns) > 0 THEN 'x.k' ELSE pgtrail._redacted_sql(t, 'x.j') END,
        pgtrail._redacted_sql(t, 'x.j'),
        pgtrail._minus_ignored_sql(t),
        CASE WHEN cardinality(t.key_columns) > 0 THEN ', ' || pgtrail._key_sql(t, p_relid, 'r.%I', false) || ' AS k' ELSE '' END,
        CASE p_op WHEN 'I' THEN 'pgtrail_new' ELSE 'pgtrail_old' END)
$fn$;

-- The positional pairing of a multi-row UPDATE's old rows o and new rows n:
-- each side numbers its rows and reads c<n> for the n-th recorded column
-- (those of p_only, or all, and the key's), and the whole row w when whole
-- rows are recorded (full images, or a table without a key).
CREATE OR REPLACE FUNCTION pgtrail._positional_pairs_sql(t pgtrail.audited_table, p_relid oid, p_only integer[] DEFAULT NULL)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT format(E'(SELECT pg_catalog.row_number() OVER () AS p, %1$s FROM pgtrail_old AS r) AS o\n'
                  '            JOIN (SELECT pg_catalog.row_number() OVER () AS p, %1$s FROM pgtrail_new AS r) AS n ON o.p = n.p',
                  string_agg(format('r.%I AS c%s', c.name, c.ord), ', ' ORDER BY c.ord)
                  || CASE WHEN t.images = 'full' OR cardinality(t.key_columns) = 0 THEN ', r AS w' ELSE '' END)
    FROM pgtrail._capture_columns(t.id, p_relid) AS c
    WHERE p_only IS NULL OR c.ord = ANY (p_only) OR c.is_key
$fn$;

-- Whether column p_column's JSON value is a string holding its text (the
-- column is text or varchar, or a domain over one): such values are put in
-- JSON with jsonb_object(text[], text[]), which makes the same strings
-- without looking up how each value's type turns into JSON, as
-- jsonb_build_object does for every argument of every call (about a tenth
-- of a large UPDATE's capture, bench/RESULTS.md).
CREATE OR REPLACE FUNCTION pgtrail._text_valued(p_relid oid, p_column text)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT coalesce((SELECT t.oid IN ('text'::regtype, 'varchar'::regtype)
                     FROM pg_attribute AS a
                     JOIN pg_type AS d ON d.oid = a.atttypid
                     JOIN pg_type AS t ON t.oid = coalesce(nullif(d.typbasetype, 0), d.oid)
                     WHERE a.attrelid = p_relid AND a.attname = p_column AND NOT a.attisdropped), false)
$fn$;

-- A JSON object of some columns' values: p_names their names, p_values the
-- SQL expressions of their values, p_text whether each is text-valued
-- (pgtrail._text_valued: those go through jsonb_object, the others through
-- jsonb_build_object; the two objects concatenated when there are both).
-- NULL for no column.
CREATE OR REPLACE FUNCTION pgtrail._object_sql(p_names text[], p_values text[], p_text boolean[])
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT CASE WHEN s.texts IS NOT NULL AND s.others IS NOT NULL
                THEN format('(%s OPERATOR(pg_catalog.||) %s)', s.texts, s.others)
                ELSE coalesce(s.texts, s.others) END
    FROM (SELECT format('pg_catalog.jsonb_object(%L::pg_catalog.text[], ARRAY[%s]::pg_catalog.text[])',
                        array_agg(v.name ORDER BY v.i) FILTER (WHERE v.text),
                        string_agg(v.value || '::pg_catalog.text', ', ' ORDER BY v.i) FILTER (WHERE v.text))
                 || CASE WHEN bool_or(v.text) THEN '' END AS texts,
                 'pg_catalog.jsonb_build_object('
                 || string_agg(format('%L, %s', v.name, v.value), ', ' ORDER BY v.i) FILTER (WHERE NOT v.text)
                 || ')' AS others
          FROM unnest(p_names, p_values, p_text) WITH ORDINALITY AS v(name, value, text, i)) AS s
$fn$;

-- The INSERT of an UPDATE's changes, for a function of kind 'columns'.
-- p_from pairs old rows o with new rows n. With p_numbered, o and n are the
-- positional pairing (pgtrail._positional_pairs_sql); else the transition
-- tables themselves. With p_only (the numbers of the columns that changed
-- in some row of a large statement), only those are compared and recorded,
-- and a row in which all of them changed gets its JSON in one call.
--
-- With p_key_order (a large statement, p_numbered, a table with a key), the
-- rows are inserted in the order of the key index (change_key_idx: the
-- key's jsonb_hash_extended), so that its entries go in leaf by leaf
-- instead of one random leaf per row: about 13% of what capture adds to a
-- 100,000-row UPDATE (bench/RESULTS.md). Ids then follow the keys' hashes
-- within the statement, not the order the rows were updated; nothing reads
-- an order into the ids of one statement's changes of distinct rows (the
-- queries order a row's changes by changed_at, id, and each row changes
-- once in a statement). Rows whose key changed come first, in the
-- statement's order: a row's changes are followed from key to key within
-- the statement. Rows of one key (a configured key that is not unique)
-- keep the statement's order (x.p). One sort key tells nearly every two
-- rows apart: the sort reads any further key from the tuple past its JSON
-- values, a walk over every column before it for each comparison that
-- needs it (bench/RESULTS.md, 0.17.0).
--
-- With p_numbered, each pair's columns, whether each changed (h<n>) and
-- its new key (k) are computed in one subquery x over the join, fenced by
-- OFFSET 0, and the trail's row is made from x: the key is built once per
-- row (and ordered by with p_key_order), and no per-row
-- LATERAL subquery runs for the comparisons. Without it (one row), the
-- comparisons are a LATERAL subquery ch, as one row needs nothing more.
DROP FUNCTION IF EXISTS pgtrail._update_columns_sql(pgtrail.audited_table, oid, text, boolean, text, integer[]);
DROP FUNCTION IF EXISTS pgtrail._update_columns_sql(pgtrail.audited_table, oid, text, boolean, text, text, integer[]);
CREATE OR REPLACE FUNCTION pgtrail._update_columns_sql(
    t pgtrail.audited_table, p_relid oid, p_from text, p_numbered boolean, p_key_order boolean, p_at text,
    p_only integer[] DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_whole_rows  boolean := t.images = 'full' OR cardinality(t.key_columns) = 0;
    v_old_row     text := CASE WHEN p_numbered THEN 'x.ow' ELSE 'o.*' END;
    v_new_row     text := CASE WHEN p_numbered THEN 'x.nw' ELSE 'n.*' END;
    -- How the statement reads the n-th column's old and new values and
    -- whether it changed.
    v_old         text := CASE WHEN p_numbered THEN 'x.o%s' ELSE 'o.%I' END;
    v_new         text := CASE WHEN p_numbered THEN 'x.n%s' ELSE 'n.%I' END;
    v_flag        text := CASE WHEN p_numbered THEN 'x.h%s' ELSE 'ch.c%s' END;
    v_keyed       boolean := cardinality(t.key_columns) > 0;
    v_changed     text;
    v_pair        text;
    v_any         text;
    v_all         text;
    v_key_changed text;
    v_new_key     text;
    v_old_key     text;
    v_old_values  text;
    v_new_values  text;
    v_old_whole   text;
    v_new_whole   text;
    v_fields      text := 'NULL';
    v_order       text := '';
BEGIN
    -- The comparisons (ch.c<n>, or x.h<n>: whether the n-th column
    -- changed) and, with p_numbered, the columns x passes on.
    SELECT string_agg(pgtrail._changed_sql(p_relid, c.name, c.old, c.new)
                      || format(CASE WHEN p_numbered THEN ' AS h%s' ELSE ' AS c%s' END, c.ord), ', ' ORDER BY c.ord),
           string_agg(format(v_flag, c.ord), ' OR ' ORDER BY c.ord),
           string_agg(format(v_flag, c.ord), ' AND ' ORDER BY c.ord),
           string_agg(format(v_flag, c.ord), ' OR ' ORDER BY c.ord) FILTER (WHERE c.is_key)
    INTO v_changed, v_any, v_all, v_key_changed
    FROM (SELECT x.*,
                 CASE WHEN p_numbered THEN format('o.c%s', x.ord) ELSE format('o.%I', x.name) END AS old,
                 CASE WHEN p_numbered THEN format('n.c%s', x.ord) ELSE format('n.%I', x.name) END AS new
          FROM pgtrail._capture_columns(t.id, p_relid) AS x
          WHERE p_only IS NULL OR x.ord = ANY (p_only)) AS c;
    IF p_numbered THEN
        -- Every column the pairing reads (pgtrail._positional_pairs_sql).
        SELECT string_agg(format('o.c%1$s AS o%1$s, n.c%1$s AS n%1$s', c.ord), ', ' ORDER BY c.ord)
               || CASE WHEN v_whole_rows THEN ', o.w AS ow, n.w AS nw' ELSE '' END
        INTO v_pair
        FROM pgtrail._capture_columns(t.id, p_relid) AS c
        WHERE p_only IS NULL OR c.ord = ANY (p_only) OR c.is_key;
    END IF;

    IF v_keyed THEN
        v_new_key := pgtrail._key_sql(t, p_relid, CASE WHEN p_numbered THEN 'n.c%s' ELSE 'n.%I' END, p_numbered);
        v_old_key := pgtrail._key_sql(t, p_relid, v_old, p_numbered);
    ELSE
        -- The whole row is the key: it changed whenever the row did.
        v_new_key := pgtrail._redacted_sql(t, format('pg_catalog.to_jsonb(%s)%s',
                                                     CASE WHEN p_numbered THEN 'n.w' ELSE v_new_row END,
                                                     pgtrail._minus_ignored_sql(t)));
        v_old_key := pgtrail._redacted_sql(t, format('pg_catalog.to_jsonb(%s)%s', v_old_row, pgtrail._minus_ignored_sql(t)));
        v_key_changed := 'true';
    END IF;
    IF p_numbered THEN
        -- Computed in x (as k), read from there.
        v_pair := v_pair || ', ' || v_changed || ', ' || v_new_key || ' AS k';
        v_new_key := 'x.k';
    END IF;

    IF t.images = 'full' THEN
        v_old_values := pgtrail._redacted_sql(t, format('pg_catalog.to_jsonb(%s)%s', v_old_row, pgtrail._minus_ignored_sql(t)));
        v_new_values := pgtrail._redacted_sql(t, format('pg_catalog.to_jsonb(%s)%s', v_new_row, pgtrail._minus_ignored_sql(t)));
        SELECT 'pg_catalog.array_remove(ARRAY['
               || string_agg(format('CASE WHEN %s THEN %L END', format(v_flag, c.ord), c.name), ', ' ORDER BY c.ord)
               || ']::pg_catalog.text[], NULL)'
        INTO v_fields
        FROM pgtrail._capture_columns(t.id, p_relid) AS c
        WHERE p_only IS NULL OR c.ord = ANY (p_only);
    ELSE
        -- Only the changed columns: one single-key object per changed
        -- column, concatenated (an unchanged one adds nothing); with p_only,
        -- all of them in one object when they all changed.
        SELECT string_agg(format('CASE WHEN %s THEN %s ELSE ''{}''::pg_catalog.jsonb END', format(v_flag, c.ord),
                                 pgtrail._object_sql(ARRAY[c.name], ARRAY[c.old_value], ARRAY[c.text])),
                          ' OPERATOR(pg_catalog.||) ' ORDER BY c.ord),
               string_agg(format('CASE WHEN %s THEN %s ELSE ''{}''::pg_catalog.jsonb END', format(v_flag, c.ord),
                                 pgtrail._object_sql(ARRAY[c.name], ARRAY[c.new_value], ARRAY[c.text])),
                          ' OPERATOR(pg_catalog.||) ' ORDER BY c.ord),
               pgtrail._object_sql(array_agg(c.name ORDER BY c.ord), array_agg(c.old_value ORDER BY c.ord),
                                   array_agg(c.text ORDER BY c.ord)),
               pgtrail._object_sql(array_agg(c.name ORDER BY c.ord), array_agg(c.new_value ORDER BY c.ord),
                                   array_agg(c.text ORDER BY c.ord))
        INTO v_old_values, v_new_values, v_old_whole, v_new_whole
        FROM (SELECT x.ord, x.name,
                     -- A redacted value is its marker (JSON), never text.
                     -- One row keeps jsonb_build_object: jsonb_object's
                     -- array costs more to set up for each statement than
                     -- it saves on one row (bench/RESULTS.md).
                     p_numbered AND NOT x.redacted AND pgtrail._text_valued(p_relid, x.name) AS text,
                     CASE WHEN x.redacted
                          THEN format('pgtrail._marker(v_secret, %s, %L, pg_catalog.to_jsonb(%s))',
                                      pgtrail._scope_sql(t, v_old_row, v_old_key), x.name, x.old)
                          ELSE x.old END AS old_value,
                     CASE WHEN x.redacted
                          THEN format('pgtrail._marker(v_secret, %s, %L, pg_catalog.to_jsonb(%s))',
                                      pgtrail._scope_sql(t, v_new_row, v_new_key), x.name, x.new)
                          ELSE x.new END AS new_value
              FROM (SELECT c.*,
                           CASE WHEN p_numbered THEN format(v_old, c.ord) ELSE format(v_old, c.name) END AS old,
                           CASE WHEN p_numbered THEN format(v_new, c.ord) ELSE format(v_new, c.name) END AS new
                    FROM pgtrail._capture_columns(t.id, p_relid) AS c
                    WHERE p_only IS NULL OR c.ord = ANY (p_only)) AS x) AS c;
        IF p_only IS NOT NULL AND cardinality(p_only) BETWEEN 2 AND 50 THEN
            v_old_values := format('CASE WHEN %s THEN %s ELSE %s END', v_all, v_old_whole, v_old_values);
            v_new_values := format('CASE WHEN %s THEN %s ELSE %s END', v_all, v_new_whole, v_new_values);
        END IF;
    END IF;

    IF p_numbered AND p_key_order AND v_keyed THEN
        v_order := E'\n            ORDER BY '
                   || CASE WHEN v_key_changed IS NULL THEN 'pg_catalog.jsonb_hash_extended(x.k, 0), x.p'
                           ELSE format('CASE WHEN %s THEN NULL ELSE pg_catalog.jsonb_hash_extended(x.k, 0) END NULLS FIRST, x.p',
                                       v_key_changed) END;
    END IF;
    IF p_numbered THEN
        RETURN format(
            E'INSERT INTO pgtrail.change (txid, ctx, table_id, op, changed_at, pk, old_pk, old_values, new_values, changed_fields)\n'
            '            SELECT v_txid, v_ctx, %s, ''U'', %s, %s,\n'
            '                   CASE WHEN %s THEN %s END,\n'
            '                   %s,\n                   %s,\n                   %s\n'
            '            FROM (SELECT n.p, %s\n'
            '                  FROM %s OFFSET 0) AS x\n'
            '            WHERE (%s)%s',
            t.id, p_at, v_new_key, coalesce(v_key_changed, 'false'), v_old_key,
            v_old_values, v_new_values, v_fields, v_pair, p_from, v_any, v_order);
    END IF;
    RETURN format(
        E'INSERT INTO pgtrail.change (txid, ctx, table_id, op, changed_at, pk, old_pk, old_values, new_values, changed_fields)\n'
        '            SELECT v_txid, v_ctx, %s, ''U'', %s, %s,\n'
        '                   CASE WHEN %s THEN %s END,\n'
        '                   %s,\n                   %s,\n                   %s\n'
        '            FROM %s\n'
        '            CROSS JOIN LATERAL (SELECT %s OFFSET 0) AS ch\n'
        '            WHERE (%s)%s',
        t.id, p_at, v_new_key, coalesce(v_key_changed, 'false'), v_old_key,
        v_old_values, v_new_values, v_fields, p_from, v_changed, v_any, '');
END
$fn$;

-- The numbers of the recorded columns that changed in some row of a
-- multi-row UPDATE (a SELECT of one int[], NULL elements for the others),
-- read in one pass over the positional pairing.
CREATE OR REPLACE FUNCTION pgtrail._changed_columns_sql(t pgtrail.audited_table, p_relid oid)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT format(E'SELECT ARRAY[%s] INTO v_only\n                    FROM %s',
                  string_agg(format('CASE WHEN pg_catalog.bool_or(%s) THEN %s END',
                                    pgtrail._changed_sql(p_relid, c.name, format('o.c%s', c.ord), format('n.c%s', c.ord)), c.ord),
                             ', ' ORDER BY c.ord),
                  pgtrail._positional_pairs_sql(t, p_relid))
    FROM pgtrail._capture_columns(t.id, p_relid) AS c
$fn$;

-- The INSERT of a large UPDATE's changes (kind 'columns', a table recording
-- more columns than the setting two_pass_columns, 40 by default: see
-- pgtrail._capture_body), for the columns p_only that changed in some row
-- of it: generated per statement (the capture function EXECUTEs it), so
-- that only those columns are compared and turned into JSON, one object
-- per row in the usual case, in the key index's order
-- (pgtrail._update_columns_sql).
CREATE OR REPLACE FUNCTION pgtrail._bulk_update_sql(p_id integer, p_relid oid, p_only integer[])
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    t     pgtrail.audited_table;
BEGIN
    SELECT * INTO t FROM pgtrail.audited_table WHERE id = p_id;
    -- $1 txid, $2 ctx, $3 the redaction key, $4 the changes' time. (p_relid
    -- is the table the statement named, maybe a partition: the same column
    -- names.)
    RETURN replace(replace(replace(
        pgtrail._update_columns_sql(t, p_relid, pgtrail._positional_pairs_sql(t, p_relid, p_only), true, true, '$4', p_only),
        'v_txid, v_ctx,', '$1, $2,'), 'v_secret', '$3'), E'\n', ' ');
END
$fn$;

-- The scope of the markers of one side of an UPDATE (pgtrail._marker):
-- the table and the row's key, or for a table without a key the row's other
-- recorded columns. p_row is the whole row, p_key its key's JSON.
CREATE OR REPLACE FUNCTION pgtrail._scope_sql(t pgtrail.audited_table, p_row text, p_key text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT format('(%L OPERATOR(pg_catalog.||) (%s)::pg_catalog.text)', t.id || ':',
                  CASE WHEN cardinality(t.key_columns) > 0 THEN p_key
                       ELSE format('pg_catalog.to_jsonb(%s)%s OPERATOR(pg_catalog.-) %L::pg_catalog.text[]',
                                   p_row, pgtrail._minus_ignored_sql(t), t.redact_columns) END)
$fn$;

-- The INSERT of an UPDATE's changes, for a function of kind 'rows':
-- p_pairs yields the old and new rows as JSON (oj, nj; ignored columns
-- removed), compared key by key in the statement itself (what
-- pgtrail._diff does, written inline: a PL/pgSQL call per row cost more
-- than the comparison); stamped with p_at.
DROP FUNCTION IF EXISTS pgtrail._update_rows_sql(pgtrail.audited_table, text);
CREATE OR REPLACE FUNCTION pgtrail._update_rows_sql(t pgtrail.audited_table, p_pairs text, p_at text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT format(
        E'INSERT INTO pgtrail.change (txid, ctx, table_id, op, changed_at, pk, old_pk, old_values, new_values, changed_fields)\n'
        '            SELECT v_txid, v_ctx, %s, ''U'', %s, %s,\n'
        '                   CASE WHEN x.ok IS DISTINCT FROM x.nk THEN %s END,\n'
        '                   %s,\n                   %s,\n                   %s\n'
        '            FROM (SELECT p.oj, p.nj, pgtrail._key(p.oj, %L::pg_catalog.text[]) AS ok,\n'
        '                         pgtrail._key(p.nj, %L::pg_catalog.text[]) AS nk\n'
        '                  FROM (%s) AS p OFFSET 0) AS x\n'
        '            CROSS JOIN LATERAL (\n'
        '                SELECT pg_catalog.array_agg(e.key ORDER BY e.key) AS fields,\n'
        '                       pg_catalog.jsonb_object_agg(e.key, x.oj OPERATOR(pg_catalog.->) e.key) AS old_values,\n'
        '                       pg_catalog.jsonb_object_agg(e.key, e.value) AS new_values\n'
        '                FROM pg_catalog.jsonb_each(x.nj) AS e\n'
        '                WHERE (x.oj OPERATOR(pg_catalog.->) e.key) IS DISTINCT FROM e.value\n'
        '                   OR (pg_catalog.jsonb_typeof(e.value) OPERATOR(pg_catalog.=) ''number''\n'
        '                       AND (x.oj OPERATOR(pg_catalog.->) e.key)::pg_catalog.text\n'
        '                           OPERATOR(pg_catalog.<>) e.value::pg_catalog.text)) AS d\n'
        '            WHERE d.fields IS NOT NULL',
        t.id, p_at,
        CASE WHEN cardinality(t.key_columns) > 0 THEN 'x.nk' ELSE pgtrail._redacted_sql(t, 'x.nk') END,
        CASE WHEN cardinality(t.key_columns) > 0 THEN 'x.ok' ELSE pgtrail._redacted_sql(t, 'x.ok') END,
        CASE WHEN t.images = 'full' THEN pgtrail._redacted_sql(t, 'x.oj')
             ELSE pgtrail._redacted_part_sql(t, 'd.old_values', 'x.oj') END,
        CASE WHEN t.images = 'full' THEN pgtrail._redacted_sql(t, 'x.nj')
             ELSE pgtrail._redacted_part_sql(t, 'd.new_values', 'x.nj') END,
        CASE WHEN t.images = 'full' THEN 'd.fields' ELSE 'NULL' END,
        t.key_columns, t.key_columns, p_pairs)
$fn$;

-- The body of table p_id's capture function, generated from the catalog
-- entry of p_relid (the audited table; its partitions have the same
-- columns).
CREATE OR REPLACE FUNCTION pgtrail._capture_body(p_id integer, p_relid oid, p_kind text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    t        pgtrail.audited_table;
    v_kind   text := coalesce(p_kind, pgtrail._capture_kind(p_id, p_relid));
    v_name   text;
    v_one    text;
    v_many   text;
    v_changed text;
    v_ignore text;
    v_era    integer := pgtrail._era_latest();
    v_bulk   bigint := coalesce((SELECT s.value::bigint FROM pgtrail.setting AS s
                                 WHERE s.name = 'bulk_update_rows' AND s.value ~ '^[0-9]{1,18}$'), 5000);
    -- Tables recording more columns than this take the two-pass path for
    -- a large UPDATE; the others one pass, in the key index's order (see
    -- below). The setting two_pass_columns overrides it (the tests).
    v_two_pass_columns bigint := coalesce((SELECT s.value::bigint FROM pgtrail.setting AS s
                                           WHERE s.name = 'two_pass_columns' AND s.value ~ '^[0-9]{1,18}$'), 40);
    v_large  text;
BEGIN
    SELECT * INTO t FROM pgtrail.audited_table WHERE id = p_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgtrail: no audited table has id %', p_id USING ERRCODE = '55000';
    END IF;
    v_name := format('%I.%I', t.table_schema, t.table_name);
    v_ignore := pgtrail._minus_ignored_sql(t);

    IF v_kind = 'columns' THEN
        -- The one-row test gates the old row's scan, in a subquery of its
        -- own: a statement whose own expressions hold a subquery (a
        -- SubLink) has its whole query tree walked each time its cached
        -- plan is checked (PostgreSQL's ScanQueryForLocks, ~22,000
        -- instructions for the 15-column UPDATE); this way only the small
        -- subquery is. With more rows the old side is empty and nothing
        -- is paired. Each side is LIMIT 1 (a no-op when the test passes):
        -- the plan is made for the transition tables' real sizes, and a
        -- join estimated at 100,000 x 100,000 rows was JIT-compiled, about
        -- a second, for a statement that then pairs nothing.
        v_one := pgtrail._update_columns_sql(t, p_relid,
                     '(SELECT * FROM pgtrail_old WHERE NOT EXISTS (SELECT FROM pgtrail_new OFFSET 1) LIMIT 1) AS o, '
                     '(SELECT * FROM pgtrail_new LIMIT 1) AS n', false, false, 'v_now');
        v_many := pgtrail._update_columns_sql(t, p_relid, pgtrail._positional_pairs_sql(t, p_relid), true, false, 'v_now');
        IF (SELECT count(*) FROM pgtrail._capture_columns(p_id, p_relid)) > v_two_pass_columns THEN
            -- A wide table: a large UPDATE first finds the columns that
            -- changed in some row (one pass), then compares and records
            -- only those (pgtrail._bulk_update_sql, generated for them).
            v_changed := pgtrail._changed_columns_sql(t, p_relid);
            v_large := format(E'%s;\n'
                              '                    v_only := pg_catalog.array_remove(v_only, NULL);\n'
                              '                    IF pg_catalog.cardinality(v_only) > 0 THEN\n'
                              '                        EXECUTE pgtrail._bulk_update_sql(%s, TG_RELID, v_only) USING v_txid, v_ctx, v_secret, v_now;\n'
                              '                        GET DIAGNOSTICS v_rows = ROW_COUNT;\n'
                              '                    END IF;',
                              v_changed, p_id);
        ELSE
            -- A narrower one: the one-pass statement, in the order of the
            -- key index (see pgtrail._update_columns_sql). Comparing every
            -- column in one pass costs less than a pass to find the changed
            -- columns and a statement generated and planned for them
            -- (bench/RESULTS.md, 0.17.0).
            v_large := pgtrail._update_columns_sql(t, p_relid, pgtrail._positional_pairs_sql(t, p_relid), true, true, 'v_now')
                       || E';\n                    GET DIAGNOSTICS v_rows = ROW_COUNT;';
        END IF;
    ELSE
        -- The same one-row test gating the old side, and the same LIMIT 1
        -- sides, as above (without them this statement was planned as a
        -- join of N x N rows in a statement of N, and JIT-compiled). Each
        -- side turns its row into JSON itself, as the multi-row pairing
        -- does.
        v_one := pgtrail._update_rows_sql(t, format(
            'SELECT o.j AS oj, n.j AS nj '
            'FROM (SELECT pg_catalog.to_jsonb(r.*)%1$s AS j FROM pgtrail_old AS r '
            'WHERE NOT EXISTS (SELECT FROM pgtrail_new OFFSET 1) LIMIT 1) AS o, '
            '(SELECT pg_catalog.to_jsonb(r.*)%1$s AS j FROM pgtrail_new AS r LIMIT 1) AS n', v_ignore), 'v_now');
        v_many := pgtrail._update_rows_sql(t, format(
            'SELECT o.j AS oj, n.j AS nj '
            'FROM (SELECT pg_catalog.row_number() OVER () AS p, pg_catalog.to_jsonb(r.*)%1$s AS j FROM pgtrail_old AS r) AS o '
            'JOIN (SELECT pg_catalog.row_number() OVER () AS p, pg_catalog.to_jsonb(r.*)%1$s AS j FROM pgtrail_new AS r) AS n '
            'ON o.p = n.p', v_ignore), 'v_now');
    END IF;

    RETURN format($body$
-- pgtrail: capture of %1$s (table id %2$s, kind '%3$s'), generated from the catalog; do not edit.
DECLARE
    -- The trail's transaction number: this cluster's era (%13$s) times 2^48, plus txid_current().
    v_txid     bigint := pg_catalog.txid_current()%14$s;
    v_seq      text := pg_catalog.current_setting('pgtrail.context_seq', true);
    v_ctx      smallint := CASE WHEN v_seq OPERATOR(pg_catalog.~) '^[0-9]{1,5}$'
                                THEN LEAST(v_seq::pg_catalog.int4, 32767) ELSE 0 END;
    -- The time of the statement's changes (after the statement, before
    -- they are written), one value for them all.
    v_now      timestamptz := pg_catalog.clock_timestamp();
    -- The mark of this transaction and context (pgtrail._context_record_sql),
    -- computed once for its test and its setting.
    v_mark     text := (v_txid OPERATOR(pg_catalog.#) v_ctx::pg_catalog.int8)::pg_catalog.text;
    v_rows     bigint;
    v_secret   bytea;
    v_context  jsonb;
    v_settings text[];
    v_n        bigint;
    v_only     integer[];
BEGIN
    -- Once per session: is this still the cluster of era %13$s (the trail
    -- may have been restored into another, whose numbers start over)?
    IF pg_catalog.current_setting('pgtrail.cluster_era', true) IS DISTINCT FROM '%13$s' THEN
        v_txid := pgtrail._check_cluster(v_txid);
        v_mark := (v_txid OPERATOR(pg_catalog.#) v_ctx::pg_catalog.int8)::pg_catalog.text;
    END IF;
%4$s    IF TG_OP = 'UPDATE' THEN
        -- One row, the common case: old and new row need no pairing.
        %5$s;
        GET DIAGNOSTICS v_rows = ROW_COUNT;
        IF v_rows = 0 THEN
            SELECT pg_catalog.count(*) INTO v_n FROM pgtrail_new;
            IF v_n > 1 THEN
                -- Several rows, paired by position with a hash join whatever
                -- their number (a plan kept from a small statement must not
                -- turn quadratic on a large one), in memory, without JIT.
                v_settings := ARRAY[pg_catalog.current_setting('work_mem'), pg_catalog.current_setting('jit'),
                                    pg_catalog.current_setting('enable_nestloop'),
                                    pg_catalog.current_setting('enable_mergejoin')];
                PERFORM pg_catalog.set_config('work_mem',
                            GREATEST(pg_catalog.pg_size_bytes(v_settings[1]), 67108864)::pg_catalog.text || 'B', true),
                        pg_catalog.set_config('jit', 'off', true), pg_catalog.set_config('enable_nestloop', 'off', true),
                        pg_catalog.set_config('enable_mergejoin', 'off', true);
                IF v_n < %11$s THEN
                    %6$s;
                    GET DIAGNOSTICS v_rows = ROW_COUNT;
                ELSE
                    -- A large statement: its changes in the order of the
                    -- key index; in a wide table, which columns changed in
                    -- some row (one pass), then JSON for those columns only.
                    %12$s
                END IF;
                PERFORM pg_catalog.set_config('work_mem', v_settings[1], true), pg_catalog.set_config('jit', v_settings[2], true),
                        pg_catalog.set_config('enable_nestloop', v_settings[3], true),
                        pg_catalog.set_config('enable_mergejoin', v_settings[4], true);
            END IF;
        END IF;
    ELSIF TG_OP = 'INSERT' THEN
        %7$s
        GET DIAGNOSTICS v_rows = ROW_COUNT;
    ELSIF TG_OP = 'DELETE' THEN
        %8$s
        GET DIAGNOSTICS v_rows = ROW_COUNT;
    ELSE
        -- TRUNCATE (25_truncate.sql): before it, the rows it removes (with
        -- truncate = 'capture'); after it, the event, once per statement.
        v_rows := pgtrail._capture_truncate(%2$s, TG_RELID, TG_WHEN, v_txid, v_ctx);
    END IF;
    -- A statement that changed nothing records nothing, not even its context.
    IF v_rows > 0 THEN
        -- (The mark names the transaction and its context: see
        -- pgtrail._context_record_sql.)
        IF pg_catalog.current_setting('pgtrail.recorded', true) IS DISTINCT FROM v_mark THEN
            %9$s
        END IF;
        -- A change later than its transaction's first hour, or before its
        -- start (a clock step): the context is listed for pgtrail.actor_changes.
        -- (Two timestamp comparisons: a NOT BETWEEN of the difference would
        -- compute the difference twice.)
        IF v_now OPERATOR(pg_catalog.<) pg_catalog.transaction_timestamp()
           OR v_now OPERATOR(pg_catalog.>) (pg_catalog.transaction_timestamp() OPERATOR(pg_catalog.+) %10$L::pg_catalog.interval) THEN
            INSERT INTO pgtrail.long_context (txid, ctx) VALUES (v_txid, v_ctx) ON CONFLICT DO NOTHING;
        END IF;
    END IF;
    RETURN NULL;
END
$body$,
                      v_name, p_id, v_kind,
                      CASE WHEN cardinality(t.redact_columns) > 0
                           THEN E'    v_secret := (SELECT s.value FROM pgtrail.secret AS s WHERE s.name = ''redaction'');\n'
                           ELSE '' END,
                      v_one, v_many,
                      pgtrail._rows_sql(t, p_relid, 'I', 'v_now'), pgtrail._rows_sql(t, p_relid, 'D', 'v_now'),
                      pgtrail._context_record_sql(quote_literal(v_name)),
                      pgtrail._context_span()::text,
                      -- Statements of this many rows and more are large (kind
                      -- 'columns'): written in the key index's order, in a wide table
                      -- by the two-pass path. Below it the one-pass statement in the
                      -- statement's order costs less per row: the sort is not worth
                      -- it, and the two-pass path generates and plans its statement
                      -- each time, which costs more than comparing only the changed
                      -- columns saves until about 5,000 rows (bench/RESULTS.md: at
                      -- 200 rows 20 against 32.5 us a row). The setting
                      -- bulk_update_rows overrides it (the tests).
                      CASE WHEN v_large IS NULL THEN '9223372036854775807' ELSE v_bulk::text END,
                      coalesce(v_large, 'NULL;'),
                      v_era, CASE WHEN v_era = 0 THEN '' ELSE ' + ' || (v_era::bigint << 48) END);
END
$fn$;

-- The CREATE FUNCTION statement of table p_id's capture function.
CREATE OR REPLACE FUNCTION pgtrail._capture_sql(p_id integer, p_relid oid, p_kind text DEFAULT NULL)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT format(E'CREATE OR REPLACE FUNCTION %s()\nRETURNS trigger\nLANGUAGE plpgsql\nSECURITY DEFINER\n'
                  'SET search_path = pg_catalog, pg_temp\nAS %L',
                  pgtrail._capture_function(p_id), pgtrail._capture_body(p_id, p_relid, p_kind))
$fn$;

-- (Re)generates the capture function of the audited table p_id from the
-- catalog entry of p_table, of kind p_kind or the kind it should have.
CREATE OR REPLACE FUNCTION pgtrail._compile_capture(p_id integer, p_table regclass, p_kind text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    -- Opens this cluster's era first if the trail has moved.
    PERFORM pgtrail._era_now();
    EXECUTE pgtrail._capture_sql(p_id, p_table, p_kind);
    PERFORM pgtrail._own_generated(pgtrail._capture_function(p_id) || '()');
END
$fn$;

-- A generated function belongs to the trail's owner (the owner of schema
-- pgtrail) like every other function of pgtrail, whoever generated it, and
-- nobody else may execute it.
CREATE OR REPLACE FUNCTION pgtrail._own_generated(p_function text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_owner oid := (SELECT nspowner FROM pg_namespace WHERE nspname = 'pgtrail');
BEGIN
    PERFORM pgtrail._privilege_ddl(format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', p_function));
    IF (SELECT proowner FROM pg_proc WHERE oid = p_function::regprocedure) <> v_owner
       AND pg_has_role(current_user, v_owner, 'MEMBER') THEN
        EXECUTE format('ALTER FUNCTION %s OWNER TO %I', p_function, (SELECT rolname FROM pg_roles WHERE oid = v_owner));
    END IF;
END
$fn$;

-- Whether table p_id's capture function is the one the catalog and the
-- settings call for now (`pgtrail check`).
CREATE OR REPLACE FUNCTION pgtrail._capture_is_current(p_id integer, p_table regclass)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT coalesce((SELECT p.prosrc FROM pg_proc AS p
                     WHERE p.oid = to_regprocedure(pgtrail._capture_function(p_id) || '()'))
                    = pgtrail._capture_body(p_id, p_table), false)
$fn$;

-- Regenerates every generated function: each attached table's capture
-- function and _record_transaction (after the context settings changed,
-- the DDL watch was installed or removed, or an upgrade).
CREATE OR REPLACE FUNCTION pgtrail._compile_all()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_table record;
BEGIN
    PERFORM pgtrail._compile_record_transaction();
    FOR v_table IN
        SELECT a.id, pgtrail._audited_rel(a.id) AS rel
        FROM pgtrail.audited_table AS a
        WHERE a.detached_at IS NULL
    LOOP
        IF v_table.rel IS NOT NULL THEN
            PERFORM pgtrail._compile_capture(v_table.id, v_table.rel);
        END IF;
    END LOOP;
END
$fn$;
