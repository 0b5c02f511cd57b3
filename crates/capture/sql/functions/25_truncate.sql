-- TRUNCATE: what the capture triggers record when an audited table is
-- truncated. Every audited table (and each of its partitions) has two
-- statement-level TRUNCATE triggers calling its capture function, which
-- calls pgtrail._capture_truncate:
--   * BEFORE TRUNCATE (pgtrail_capture_before_truncate), while the rows are
--     still there: with truncate = 'capture' (pgtrail.toml), it records each
--     row the statement removes as a DELETE change (its old values as any
--     DELETE records them: ignored columns left out, redacted ones as
--     markers), unless there are more than truncate_row_limit of them;
--   * AFTER TRUNCATE (pgtrail_capture_truncate): the TRUNCATE change, once
--     per statement and table however many partitions the statement
--     truncated. Its new_values say what became of the rows:
--       NULL                                      truncate = 'event': the event only;
--       {"rows": "recorded", "count": n}          each of the n rows removed is a
--                                                 DELETE change just before it;
--       {"rows": "not_recorded", "limit": n}      more than n rows (truncate_row_limit):
--                                                 the event only;
--       {"rows": "not_recorded", "error": "..."}  capture could not read them (the
--                                                 TRUNCATE goes on: capture never
--                                                 makes it fail).
-- A TRUNCATE whose rows are all recorded is, to the queries (60_queries.sql),
-- the DELETEs before it: moments before it are answered as after any DELETE.
--
-- One statement fires the BEFORE triggers of every table it truncates (a
-- partitioned table first, then its partitions; with CASCADE, the tables
-- that reference them), then truncates, then fires the AFTER triggers. The
-- state that ties them together (which relations fired, the rows recorded
-- and the budget left per table, whether the TRUNCATE change was written)
-- lives in a transaction-local setting, pgtrail.truncate_state, sealed with
-- the trail's secret and transaction number: a client may set the setting,
-- but not to anything capture would believe. A BEFORE firing after an AFTER
-- one, or on a relation that already fired, begins a new statement.

-- The setting's value for p_state: the state and its seal.
CREATE OR REPLACE FUNCTION pgtrail._truncate_seal(p_state text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT encode(sha256(s.value || sha256(s.value || '\x00747275'::bytea || convert_to(p_state, 'UTF8'))), 'hex')
    FROM pgtrail.secret AS s WHERE s.name = 'redaction'
$fn$;

-- The state of the TRUNCATE statement of transaction p_txid, or NULL when
-- there is none, or when the setting holds anything capture did not write.
CREATE OR REPLACE FUNCTION pgtrail._truncate_state(p_txid bigint)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_value text := current_setting('pgtrail.truncate_state', true);
    v_state text;
    v_json  jsonb;
BEGIN
    IF v_value IS NULL OR v_value !~ '^\{.*\}#[0-9a-f]{64}$' THEN
        RETURN NULL;
    END IF;
    v_state := substr(v_value, 1, length(v_value) - 65);
    IF pgtrail._truncate_seal(v_state) IS DISTINCT FROM right(v_value, 64) THEN
        RETURN NULL;
    END IF;
    v_json := v_state::jsonb;
    IF (v_json ->> 'txid') IS DISTINCT FROM p_txid::text THEN
        RETURN NULL;
    END IF;
    RETURN v_json;
END
$fn$;

CREATE OR REPLACE FUNCTION pgtrail._set_truncate_state(p_state jsonb)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT set_config('pgtrail.truncate_state', p_state::text || '#' || pgtrail._truncate_seal(p_state::text), true);
$fn$;

-- Records, before a TRUNCATE of the relation p_rel (the audited table p_id
-- or one of its partitions), the rows it removes that no earlier firing of
-- the statement recorded, unless the budget p_entry ->> 'left' is exceeded.
-- Returns the table's entry of the state, updated; p_inserted the number of
-- changes recorded.
CREATE OR REPLACE FUNCTION pgtrail._truncate_rows(
    t pgtrail.audited_table, p_rel oid, p_txid bigint, p_ctx smallint, p_entry jsonb, OUT p_out jsonb, OUT p_inserted bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_root   regclass;
    v_done   oid[] := ARRAY(SELECT jsonb_array_elements_text(coalesce(p_entry -> 'done', '[]'))::oid);
    v_left   bigint := coalesce((p_entry ->> 'left')::bigint, t.truncate_row_limit);
    v_leaves oid[];
    v_from   text;
    v_sql    text;
    v_n      bigint;
    v_secret bytea;
BEGIN
    p_out := p_entry;
    p_inserted := 0;
    -- The audited table: p_rel, or its top-most ancestor carrying this
    -- table's capture triggers.
    SELECT a.relid INTO v_root
    FROM pg_partition_ancestors(p_rel) WITH ORDINALITY AS a(relid, depth)
    JOIN pg_trigger AS g ON g.tgrelid = a.relid AND g.tgname = 'pgtrail_capture_before_truncate'
    WHERE pgtrail._trigger_table_id(g.tgargs) = t.id
    ORDER BY a.depth DESC
    LIMIT 1;
    v_root := coalesce(v_root, p_rel::regclass);
    IF (SELECT relkind FROM pg_class WHERE oid = v_root) = 'p' THEN
        -- Partitioned: the rows of the partitions under p_rel (all of them
        -- for the table itself) not read yet, through the table itself (the
        -- trail's owner may read it, not necessarily its partitions), the
        -- partition's constraint letting the planner skip the others.
        v_leaves := ARRAY(SELECT p.relid FROM pg_partition_tree(p_rel) AS p
                          WHERE p.isleaf AND NOT p.relid = ANY (v_done));
        IF cardinality(v_leaves) = 0 THEN
            RETURN;
        END IF;
        v_from := format('%s AS r WHERE r.tableoid OPERATOR(pg_catalog.=) ANY ($4::pg_catalog.oid[])%s', v_root,
                         CASE WHEN p_rel <> v_root
                              THEN ' AND (' || coalesce(pg_get_partition_constraintdef(p_rel), 'true') || ')'
                              ELSE '' END);
    ELSE
        -- A table's own rows (inheritance children are tables of their own).
        IF p_rel = ANY (v_done) THEN
            RETURN;
        END IF;
        v_leaves := ARRAY[p_rel];
        v_from := format('ONLY %s AS r WHERE $4::pg_catalog.oid[] IS NOT NULL', v_root);
    END IF;
    -- The budget first, reading no more rows than it allows.
    EXECUTE format('SELECT pg_catalog.count(*) FROM (SELECT FROM %s LIMIT $5) AS x', v_from)
    INTO v_n USING NULL::bigint, NULL::smallint, NULL::bytea, v_leaves, v_left + 1;
    IF v_n > v_left THEN
        p_out := p_out || jsonb_build_object('stop', 'limit');
        RETURN;
    END IF;
    -- The rows, as a DELETE records them (20_capture.sql), read from the table.
    v_sql := pgtrail._rows_sql(t, v_root, 'D', 'pg_catalog.clock_timestamp()');
    IF strpos(v_sql, 'FROM pgtrail_old AS r)') = 0 THEN
        RAISE EXCEPTION 'pgtrail: unexpected row SQL for table %', t.id;
    END IF;
    v_sql := replace(replace(replace(rtrim(v_sql, ';'), 'v_txid, v_ctx,', '$1, $2,'), 'v_secret', '$3'),
                     'FROM pgtrail_old AS r)', 'FROM ' || v_from || ')');
    IF cardinality(t.redact_columns) > 0 THEN
        SELECT s.value INTO v_secret FROM pgtrail.secret AS s WHERE s.name = 'redaction';
    END IF;
    EXECUTE v_sql USING p_txid, p_ctx, v_secret, v_leaves;
    GET DIAGNOSTICS p_inserted = ROW_COUNT;
    p_out := p_out || jsonb_build_object(
        'rows', coalesce((p_out ->> 'rows')::bigint, 0) + p_inserted,
        'left', v_left - p_inserted,
        'done', to_jsonb(v_done || v_leaves));
END
$fn$;

-- Called by the capture function of the audited table p_id on TRUNCATE of
-- the relation p_rel (TG_RELID), p_when 'BEFORE' or 'AFTER' (TG_WHEN).
-- Returns the number of changes recorded.
CREATE OR REPLACE FUNCTION pgtrail._capture_truncate(p_id integer, p_rel oid, p_when text, p_txid bigint, p_ctx smallint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    t          pgtrail.audited_table;
    v_state    jsonb := pgtrail._truncate_state(p_txid);
    v_key      text[] := ARRAY['tables', p_id::text];
    v_entry    jsonb;
    v_inserted bigint := 0;
    v_values   jsonb;
    v_fresh    jsonb := jsonb_build_object('txid', p_txid::text, 'phase', 'B', 'seen', '[]'::jsonb,
                                           'after', '[]'::jsonb, 'tables', '{}'::jsonb);
BEGIN
    SELECT * INTO t FROM pgtrail.audited_table WHERE id = p_id;
    IF p_when = 'BEFORE' THEN
        IF v_state IS NULL OR v_state ->> 'phase' = 'A' OR v_state -> 'seen' @> to_jsonb(p_rel::bigint) THEN
            v_state := v_fresh;
        END IF;
        v_state := jsonb_set(v_state, '{seen}', (v_state -> 'seen') || to_jsonb(p_rel::bigint));
        v_entry := coalesce(v_state #> v_key, '{"rows": 0}') || '{"written": false}';
        IF t.truncate = 'capture' AND NOT v_entry ? 'stop' THEN
            BEGIN
                SELECT r.p_out, r.p_inserted INTO v_entry, v_inserted
                FROM pgtrail._truncate_rows(t, p_rel, p_txid, p_ctx, v_entry) AS r;
            EXCEPTION WHEN others THEN
                -- The rows of this firing are not recorded (the subtransaction
                -- took them back), and the TRUNCATE goes on.
                v_entry := v_entry || jsonb_build_object('stop', 'error', 'error', SQLERRM);
                v_inserted := 0;
            END;
        END IF;
        PERFORM pgtrail._set_truncate_state(jsonb_set(v_state, v_key, v_entry));
        RETURN v_inserted;
    END IF;

    IF v_state IS NULL THEN
        v_state := v_fresh;
    ELSIF v_state ->> 'phase' = 'B' THEN
        v_state := v_state || '{"phase": "A", "after": []}';
    ELSIF v_state -> 'after' @> to_jsonb(p_rel::bigint) THEN
        v_state := v_fresh;  -- a statement without BEFORE firings (triggers of an older version)
    END IF;
    v_state := jsonb_set(v_state || '{"phase": "A"}', '{after}', (v_state -> 'after') || to_jsonb(p_rel::bigint));
    v_entry := v_state #> v_key;
    IF v_entry IS NULL THEN
        -- No BEFORE firing for this table: as pgtrail 0.3.0, one event per
        -- statement (one recorded since the statement began is this one's).
        IF EXISTS (SELECT FROM pgtrail.change AS c
                   WHERE c.txid = p_txid AND c.table_id = p_id AND c.op = 'T'
                     AND c.changed_at >= statement_timestamp()) THEN
            PERFORM pgtrail._set_truncate_state(jsonb_set(v_state, v_key, '{"written": true}'));
            RETURN 0;
        END IF;
        IF t.truncate = 'capture' THEN
            v_values := '{"rows": "not_recorded", "error": "the BEFORE TRUNCATE trigger did not fire"}';
        END IF;
    ELSIF (v_entry ->> 'written')::boolean THEN
        PERFORM pgtrail._set_truncate_state(v_state);
        RETURN 0;
    ELSIF t.truncate = 'capture' THEN
        v_values := CASE v_entry ->> 'stop'
            WHEN 'limit' THEN jsonb_build_object('rows', 'not_recorded', 'limit', t.truncate_row_limit)
            WHEN 'error' THEN jsonb_build_object('rows', 'not_recorded', 'error', v_entry ->> 'error')
            ELSE jsonb_build_object('rows', 'recorded', 'count', coalesce((v_entry ->> 'rows')::bigint, 0))
        END;
    END IF;
    INSERT INTO pgtrail.change (txid, ctx, table_id, op, changed_at, new_values)
    VALUES (p_txid, p_ctx, p_id, 'T', clock_timestamp(), v_values);
    PERFORM pgtrail._set_truncate_state(jsonb_set(v_state, v_key, coalesce(v_entry, '{}') || '{"written": true}'));
    RETURN 1;
END
$fn$;
