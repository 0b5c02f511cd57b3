-- Baseline and reconciliation: the rows a table already had when capture
-- began, and the rows that changed without a trace since.

-- Records every current row of the audited table p_id (p_table, with its
-- partitions) as an INSERT of the current transaction, at the moment the
-- table was attached: used by `pgtrail apply --baseline` and by auto_attach
-- for tables created filled (CREATE TABLE AS). Returns the number of rows.
CREATE OR REPLACE FUNCTION pgtrail._record_rows(p_id integer, p_table regclass)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    t      pgtrail.audited_table;
    v_rows bigint;
    v_txid bigint := pgtrail._txid();
    v_ctx  smallint := pgtrail._context_seq();
    v_at   timestamptz;
BEGIN
    SELECT * INTO t FROM pgtrail.audited_table WHERE id = p_id;
    v_at := coalesce(t.attached_at, clock_timestamp());
    EXECUTE format(
        'INSERT INTO pgtrail.change (txid, ctx, table_id, op, changed_at, pk, new_values) '
        'SELECT $7, $8, $1, ''I'', $6, '
        '       CASE WHEN cardinality($2) > 0 THEN pgtrail._key(r.j, $2) ELSE r.j END, r.j '
        'FROM (SELECT pgtrail._as_recorded(to_jsonb(x.*), $9, $4) AS j FROM %s AS x OFFSET 0) AS r',
        p_table)
    USING t.id, t.key_columns, t.redact_columns, (SELECT value FROM pgtrail.secret WHERE name = 'redaction'),
          t.ignore_columns, v_at, v_txid, v_ctx, t;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    IF v_rows > 0 THEN
        PERFORM pgtrail._record_transaction(v_txid, v_ctx, p_table::text);
    END IF;
    -- Stamped with the attach time, which may lie before this transaction.
    IF v_rows > 0 AND pgtrail._outside_context_span(v_at) THEN
        INSERT INTO pgtrail.long_context (txid, ctx) VALUES (v_txid, v_ctx) ON CONFLICT DO NOTHING;
    END IF;
    RETURN v_rows;
END
$fn$;

-- `pgtrail apply --baseline`: records the rows the audited table p_table
-- has now, once, under a context of its own (actor type "system", reason
-- "baseline"). Refused for a table that already has a baseline or changes.
CREATE OR REPLACE FUNCTION pgtrail.baseline(p_table regclass)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    t      pgtrail.audited_table;
    v_rows bigint;
BEGIN
    t := pgtrail._audited(p_table);
    IF t.baseline_at IS NOT NULL OR EXISTS (SELECT FROM pgtrail.change WHERE table_id = t.id) THEN
        RAISE EXCEPTION 'pgtrail: % already has %', p_table,
                CASE WHEN t.baseline_at IS NOT NULL THEN format('a baseline (%s)', t.baseline_at) ELSE 'recorded changes' END
            USING ERRCODE = '55000',
                  HINT = 'A baseline records the rows of a newly audited table, once: use pgtrail apply --baseline when adding a table.';
    END IF;
    PERFORM pgtrail.set_context(actor_type => 'system', reason => 'baseline',
                                extra => jsonb_build_object('migration', 'pgtrail baseline'));
    v_rows := pgtrail._record_rows(t.id, p_table);
    UPDATE pgtrail.audited_table SET baseline_at = clock_timestamp() WHERE id = t.id;
    RETURN v_rows;
END
$fn$;

-- Every row of p_tbl whose live state differs from what the trail says it
-- should be: 'unrecorded insert' (a live row the trail never saw: only
-- judged when the table has a baseline or was empty when audited, else rows older than the install
-- look the same), 'unrecorded update' (fields whose live value differs from
-- the last recorded one), 'unrecorded delete' (the trail says the row
-- exists, it does not). Changes made while capture was off, or under
-- session_replication_role = replica, show up here. Erased values are not
-- compared. Tables without a key are compared as multisets of whole rows.
CREATE OR REPLACE FUNCTION pgtrail.reconcile(p_tbl regclass)
RETURNS TABLE (pk jsonb, problem text, fields text[], recorded jsonb, live jsonb)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    t        pgtrail.audited_table;
    v_secret bytea;
BEGIN
    t := pgtrail._audited(p_tbl);
    IF cardinality(t.redact_columns) > 0 THEN
        SELECT value INTO v_secret FROM pgtrail.secret WHERE name = 'redaction';
    END IF;
    RETURN QUERY EXECUTE format($q$
        WITH live AS MATERIALIZED (
            SELECT pgtrail._key(r.j, $4) AS pk, r.j, r.raw
            FROM (SELECT pgtrail._as_recorded(to_jsonb(x.*), $7, $3) AS j, to_jsonb(x.*) AS raw FROM %s AS x OFFSET 0) AS r
        ),
        truncated AS (
            SELECT max(c.id) AS id FROM pgtrail.change AS c WHERE c.table_id = $5 AND c.op = 'T'
        ),
        -- Row events after the last TRUNCATE; a key change deletes the old
        -- key. Recorded names are followed to today's ($8: the table's
        -- columns changed since capture began, 38_lineage.sql). n: how
        -- many rows of the key the event adds (an UPDATE that moved the
        -- row from another key, as every UPDATE of a table without a key
        -- does, adds one) or removes.
        events AS MATERIALIZED (
            SELECT c.id, c.op,
                   CASE c.op WHEN 'I' THEN 1 WHEN 'D' THEN -1
                             ELSE CASE WHEN c.old_pk IS NOT NULL THEN 1 ELSE 0 END END AS n,
                   CASE WHEN $8 THEN pgtrail._names_forward($5, c.pk, c.changed_at, c.id, NULL, NULL, false) ELSE c.pk END AS pk,
                   CASE WHEN $8 THEN pgtrail._names_forward($5, c.new_values, c.changed_at, c.id, NULL, NULL, false)
                        ELSE c.new_values END AS new_values
            FROM pgtrail.change AS c, truncated
            WHERE c.table_id = $5 AND c.op <> 'T' AND c.id > coalesce(truncated.id, 0)
            UNION ALL
            SELECT c.id, 'D', -1,
                   CASE WHEN $8 THEN pgtrail._names_forward($5, c.old_pk, c.changed_at, c.id, NULL, NULL, false) ELSE c.old_pk END,
                   NULL
            FROM pgtrail.change AS c, truncated
            WHERE c.table_id = $5 AND c.old_pk IS NOT NULL AND c.id > coalesce(truncated.id, 0)
        ),
        last_event AS (
            SELECT DISTINCT ON (e.pk) e.pk, e.op FROM events AS e ORDER BY e.pk, e.id DESC, e.op = 'D'
        ),
        recorded AS (
            SELECT f.pk, jsonb_object_agg(f.key, f.value) AS j
            FROM (SELECT DISTINCT ON (e.pk, v.key) e.pk, v.key, v.value
                  FROM events AS e, jsonb_each(e.new_values) AS v
                  WHERE e.op IN ('I', 'U')
                  ORDER BY e.pk, v.key, e.id DESC) AS f
            -- A value erased from the trail (`pgtrail erase`) is no longer known.
            WHERE NOT (jsonb_typeof(f.value) = 'object' AND f.value ? 'pgtrail_erased')
            GROUP BY f.pk
        )
        SELECT l.pk, 'unrecorded insert', NULL::text[], NULL::jsonb, l.j
        FROM live AS l LEFT JOIN last_event AS e ON e.pk = l.pk
        WHERE cardinality($4) > 0 AND $6 AND e.pk IS NULL
        UNION ALL
        SELECT l.pk, 'unrecorded insert', NULL, NULL, l.j
        FROM live AS l JOIN last_event AS e ON e.pk = l.pk
        WHERE cardinality($4) > 0 AND e.op = 'D'
        UNION ALL
        SELECT l.pk, 'unrecorded update', d.fields, d.recorded, d.live
        FROM live AS l
        JOIN last_event AS e ON e.pk = l.pk AND e.op <> 'D'
        JOIN recorded AS r ON r.pk = l.pk
        CROSS JOIN LATERAL (
            SELECT array_agg(v.key ORDER BY v.key) AS fields,
                   jsonb_object_agg(v.key, v.value) AS recorded,
                   jsonb_object_agg(v.key, l.j -> v.key) AS live
            FROM jsonb_each(r.j) AS v
            WHERE (l.j -> v.key) IS DISTINCT FROM v.value
              -- A value recorded by pgtrail 0.3.0 or earlier is redacted
              -- with the marker of that version.
              AND NOT (jsonb_typeof(v.value) = 'object' AND v.value ? 'redacted'
                       AND NOT starts_with(v.value ->> 'redacted', 'r:')
                       AND pgtrail._marker_v1($3, v.key, l.raw -> v.key) = v.value)
        ) AS d
        WHERE cardinality($4) > 0 AND d.fields IS NOT NULL
        UNION ALL
        SELECT e.pk, 'unrecorded delete', NULL, r.j, NULL
        FROM last_event AS e LEFT JOIN recorded AS r ON r.pk = e.pk
        WHERE cardinality($4) > 0 AND e.op <> 'D' AND NOT EXISTS (SELECT FROM live AS l WHERE l.pk = e.pk)
        UNION ALL
        -- No key: whole rows, counted.
        SELECT coalesce(l.pk, e.pk),
               CASE WHEN coalesce(l.n, 0) > coalesce(e.n, 0) THEN 'unrecorded insert' ELSE 'unrecorded delete' END,
               NULL, NULL, NULL
        FROM (SELECT live.pk, count(*) AS n FROM live GROUP BY live.pk) AS l
        FULL JOIN (SELECT ev.pk, sum(ev.n) AS n
                   FROM events AS ev GROUP BY ev.pk) AS e ON e.pk = l.pk
        WHERE cardinality($4) = 0 AND coalesce(l.n, 0) <> coalesce(e.n, 0)
          AND ($6 OR coalesce(l.n, 0) < coalesce(e.n, 0))
        $q$, p_tbl)
    USING t.ignore_columns, t.redact_columns, v_secret, t.key_columns, t.id,
          t.baseline_at IS NOT NULL OR coalesce(t.complete_since_attach, false), t,
          pgtrail._has_lineage(t.id);
END
$fn$;
