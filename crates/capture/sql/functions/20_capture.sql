-- Capture: statement-level AFTER triggers with transition tables.
--
-- One trigger per event and audited table (INSERT, UPDATE, DELETE, TRUNCATE),
-- each firing once per statement and writing every changed row of the
-- statement with one set-based INSERT ... SELECT. The trigger argument is the
-- table's id in pgtrail.audited_table; partitions carry their parent's id so a
-- change is recorded once, under the parent's name, whichever table the
-- statement named. Old and new rows of an UPDATE are paired by their position
-- in the transition tables, which PostgreSQL fills pairwise, so updates that
-- change the key, and tables without a key, pair correctly.

-- Rows are turned into JSON with to_jsonb(pgtrail_row.*): the `.*` makes it
-- the whole row even when the table has a column named like the alias.

-- The row's identity: its key columns, or the whole row when it has no key.
CREATE OR REPLACE FUNCTION pgtrail._key(p_row jsonb, p_columns text[])
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT CASE cardinality(p_columns)
        WHEN 0 THEN p_row
        WHEN 1 THEN jsonb_build_object(p_columns[1], p_row -> p_columns[1])
        WHEN 2 THEN jsonb_build_object(p_columns[1], p_row -> p_columns[1],
                                       p_columns[2], p_row -> p_columns[2])
        ELSE (SELECT jsonb_object_agg(c, p_row -> c) FROM unnest(p_columns) AS c)
    END
$fn$;

-- Replaces the values of redacted columns with a marker. The marker is a keyed
-- digest (the key lives in pgtrail.secret, readable by the owner only): it
-- shows that a value changed, or came back, without letting anyone guess it.
CREATE OR REPLACE FUNCTION pgtrail._redact(p_row jsonb, p_columns text[], p_key bytea)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT CASE
        WHEN p_row IS NULL OR cardinality(p_columns) = 0 OR NOT (p_row ?| p_columns) THEN p_row
        ELSE p_row || (
            SELECT jsonb_object_agg(c, jsonb_build_object('redacted',
                       left(encode(sha256(p_key || convert_to(c || '=' || (p_row -> c)::text, 'UTF8')), 'hex'), 16)))
            FROM unnest(p_columns) AS c
            WHERE p_row ? c)
    END
$fn$;

-- The settings of one audited table, as the capture functions need them.
CREATE OR REPLACE FUNCTION pgtrail._table(p_id text)
RETURNS pgtrail.audited_table
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT t FROM pgtrail.audited_table AS t WHERE t.id = p_id::integer
$fn$;

CREATE OR REPLACE FUNCTION pgtrail._redaction_key()
RETURNS bytea
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT value FROM pgtrail.secret WHERE name = 'redaction'
$fn$;

CREATE OR REPLACE FUNCTION pgtrail.capture_insert()
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
BEGIN
    PERFORM FROM pgtrail_new LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    t := pgtrail._table(TG_ARGV[0]);
    v_txid := txid_current();
    v_ctx := pgtrail._record_transaction(v_txid, format('%I.%I', t.table_schema, t.table_name));
    IF cardinality(t.redact_columns) > 0 THEN
        v_key := pgtrail._redaction_key();
    END IF;
    INSERT INTO pgtrail.change (txid, ctx, table_id, op, changed_at, pk, new_values)
    SELECT v_txid, v_ctx, t.id, 'I', clock_timestamp(),
           pgtrail._key(r.j, t.key_columns),
           pgtrail._redact(r.j, t.redact_columns, v_key)
    FROM (SELECT to_jsonb(pgtrail_row.*) - t.ignore_columns AS j FROM pgtrail_new AS pgtrail_row) AS r;
    RETURN NULL;
END
$fn$;

CREATE OR REPLACE FUNCTION pgtrail.capture_delete()
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
BEGIN
    PERFORM FROM pgtrail_old LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    t := pgtrail._table(TG_ARGV[0]);
    v_txid := txid_current();
    v_ctx := pgtrail._record_transaction(v_txid, format('%I.%I', t.table_schema, t.table_name));
    IF cardinality(t.redact_columns) > 0 THEN
        v_key := pgtrail._redaction_key();
    END IF;
    INSERT INTO pgtrail.change (txid, ctx, table_id, op, changed_at, pk, old_values)
    SELECT v_txid, v_ctx, t.id, 'D', clock_timestamp(),
           pgtrail._key(r.j, t.key_columns),
           pgtrail._redact(r.j, t.redact_columns, v_key)
    FROM (SELECT to_jsonb(pgtrail_row.*) - t.ignore_columns AS j FROM pgtrail_old AS pgtrail_row) AS r;
    RETURN NULL;
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
    v_key  bytea;
    v_full boolean;
BEGIN
    PERFORM FROM pgtrail_new LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    t := pgtrail._table(TG_ARGV[0]);
    v_full := t.images = 'full';
    IF cardinality(t.redact_columns) > 0 THEN
        v_key := pgtrail._redaction_key();
    END IF;
    v_txid := txid_current();
    -- An UPDATE that changed nothing, or only ignored columns, records
    -- nothing, not even its transaction: the context is written only when
    -- at least one row really changed.
    WITH diff AS MATERIALIZED (
        SELECT d.new_pk AS pk,
               CASE WHEN d.old_pk IS DISTINCT FROM d.new_pk THEN d.old_pk END AS old_pk,
               pgtrail._redact(CASE WHEN v_full THEN o.j ELSE d.old_diff END, t.redact_columns, v_key) AS old_values,
               pgtrail._redact(CASE WHEN v_full THEN n.j ELSE d.new_diff END, t.redact_columns, v_key) AS new_values,
               d.fields AS changed_fields
        FROM (SELECT row_number() OVER () AS pos, to_jsonb(pgtrail_row.*) - t.ignore_columns AS j
              FROM pgtrail_old AS pgtrail_row) AS o
        JOIN (SELECT row_number() OVER () AS pos, to_jsonb(pgtrail_row.*) - t.ignore_columns AS j
              FROM pgtrail_new AS pgtrail_row) AS n
          USING (pos)
        CROSS JOIN LATERAL (
            SELECT array_agg(e.key ORDER BY e.key) AS fields,
                   jsonb_object_agg(e.key, o.j -> e.key) AS old_diff,
                   jsonb_object_agg(e.key, e.value) AS new_diff,
                   pgtrail._key(o.j, t.key_columns) AS old_pk,
                   pgtrail._key(n.j, t.key_columns) AS new_pk
            FROM jsonb_each(n.j) AS e
            -- jsonb equality ignores the scale of numbers (1.5 = 1.50); the
            -- stored value changed all the same, so compare their text too.
            WHERE (o.j -> e.key) IS DISTINCT FROM e.value
               OR (jsonb_typeof(e.value) = 'number' AND (o.j -> e.key)::text <> e.value::text)
        ) AS d
        WHERE d.fields IS NOT NULL
        ORDER BY o.pos
    ),
    context AS MATERIALIZED (
        SELECT pgtrail._record_transaction(v_txid, format('%I.%I', t.table_schema, t.table_name)) AS ctx
        WHERE EXISTS (SELECT FROM diff)
    )
    INSERT INTO pgtrail.change (txid, ctx, table_id, op, changed_at, pk, old_pk, old_values, new_values, changed_fields)
    SELECT v_txid, context.ctx, t.id, 'U', clock_timestamp(),
           diff.pk, diff.old_pk, diff.old_values, diff.new_values, diff.changed_fields
    FROM diff CROSS JOIN context;
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
    t := pgtrail._table(TG_ARGV[0]);
    v_txid := txid_current();
    -- TRUNCATE of a partitioned table fires on each partition too: record one
    -- event per statement and audited table.
    PERFORM FROM pgtrail.change
    WHERE txid = v_txid AND table_id = t.id AND op = 'T' AND changed_at = statement_timestamp();
    IF FOUND THEN
        RETURN NULL;
    END IF;
    v_ctx := pgtrail._record_transaction(v_txid, format('%I.%I', t.table_schema, t.table_name));
    INSERT INTO pgtrail.change (txid, ctx, table_id, op, changed_at)
    VALUES (v_txid, v_ctx, t.id, 'T', statement_timestamp());
    RETURN NULL;
END
$fn$;
