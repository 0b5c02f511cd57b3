-- Revert: undo a set of recorded changes, planned first, conflict-checked,
-- and itself captured like any other change.
--
-- pgtrail.revert_plan(selector, on_conflict) says what undoing the selected
-- changes would do: one row per statement (set-based: one per table, kind
-- and set of columns, its data as a JSON array bound as $1), plus one row
-- per conflict, per skipped or cascaded row, per value that cannot be
-- restored and per note. A statement's kind says what it does: delete,
-- insert, restore (columns), move (a key back), park (a key to a temporary
-- value) and unpark (from it to the row's own), delete_copies and
-- insert_copies (a table without key); a parked row is in two statements.
-- pgtrail.revert(selector, on_conflict, reason) runs
-- that plan in the caller's transaction, under a context of its own, and
-- returns its lines; a statement it wrote straight from the plan's working
-- tables (rows changed once, see _revert_statements) comes without its
-- rows (data and key NULL: revert_plan shows them).
--
-- Selector (jsonb): one of
--   {"txids": [..]}                                   whole transactions
--   {"table": "s.t", "pk": {..}}                      one row's last change,
--       with "since": T      every change of the row after T, or
--       with "after_change": N  every change of the row after change N
--   {"actor": "..", "since": T, "until": T}           an actor's changes in a window
--   {"context": {"request_id": ".."}, "since": T, "until": T}
-- optionally "tables": ["s.t", ..] (only changes of these tables), and the
-- knobs "max_rows" (the cap, default 1000000), "batch_rows" (default 10000)
-- and "lock_timeout" (default '5s', each batch waits at most that long for a
-- row lock, three times).
--
-- Semantics. The selected changes S are grouped into rows: a keyed row is
-- followed through its key changes; a TRUNCATE in S counts as the DELETE of
-- every row the table had then (known only when the trail holds them all:
-- after an earlier TRUNCATE, or with a baseline; else it is refused with
-- that reason); a table without key counts copies of identical rows. For a
-- row, the revert goes from its state after S's last change back to its
-- state before S's first: a row S created is deleted, a row S deleted is
-- inserted whole, and a row S changed gets back the old values of exactly
-- the columns S changed (its key moved back if S moved it).
--
-- Conflicts. A change outside S conflicts when it came after a change of S
-- and touched the same cell: the same column of the same key, or the row
-- itself (an INSERT, DELETE or key change touches every column of the keys
-- involved; a TRUNCATE outside S touches every row of its table). Rows that
-- S created and deleted again need nothing undone and are not checked. Then
-- each row's live state is compared with the state the trail says it has
-- (for the columns the revert writes, and whether the row is there), so a
-- change made without capture is a conflict too. on_conflict: 'refuse'
-- (the plan lists the conflicts; revert raises PGTR6 and changes nothing),
-- 'skip' (conflicting rows are left out, repeatedly, until none conflicts)
-- or 'cascade' (the transactions of the conflicting changes are added to S,
-- repeatedly; conflicts no later change explains are still refused).
--
-- Order. Statements run so that keys are free before they are reused (a
-- table's DELETEs, then its key moves, then its INSERTs; a key move waits
-- for the row that still has its key to move away, and rows that take each
-- other's keys go through a temporary key: see _revert_move_order; a key
-- cycle with no temporary key the table's constraints accept is a
-- conflict, key_cycle, found with the others) and foreign keys
-- hold (parents inserted before children, children deleted or re-pointed
-- before parents are deleted); deferrable constraints are deferred while the
-- statements run and checked when they are done (SET CONSTRAINTS ALL
-- IMMEDIATE, which stays in force for the rest of the caller's transaction).
-- Values
-- that were redacted or erased cannot be restored: UPDATE leaves them as
-- they are, INSERT leaves them to the column's default, and the plan lists
-- each such row and column. Ignored columns are never in the trail: UPDATE
-- leaves them as they are, INSERT leaves them to their default. Generated
-- columns are never written; identity columns are inserted with OVERRIDING
-- SYSTEM VALUE.

-- Whether a recorded value cannot be written back: a redaction marker of a
-- redacted column, or an erasure marker.
CREATE OR REPLACE FUNCTION pgtrail._revert_lost(p_redacted text[], p_column text, p_value jsonb)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$
    SELECT pg_catalog.jsonb_typeof(p_value) OPERATOR(pg_catalog.=) 'object'
       AND ((p_column OPERATOR(pg_catalog.=) ANY (p_redacted) AND p_value OPERATOR(pg_catalog.?) 'redacted')
            OR (p_value OPERATOR(pg_catalog.?) 'pgtrail_erased'
                AND (SELECT pg_catalog.count(*) FROM pg_catalog.jsonb_object_keys(p_value)) OPERATOR(pg_catalog.=) 1))
$fn$;

-- The type a value of type p_type is cast to from its JSON text (->>) to
-- read it as jsonb_to_record and jsonb_populate_record read a scalar: the
-- text through the type's input function. NULL for the types they read
-- otherwise: a domain, an array, a composite, json and jsonb. The type is
-- named without its modifier, which an assignment to the column applies
-- as the input would (a value too long for varchar(n) fails either way);
-- format_type(type, -1) says "bpchar" where format_type(type, NULL) says
-- "character", which a cast reads as char(1).
CREATE OR REPLACE FUNCTION pgtrail._revert_scalar_cast(p_type oid)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT format_type(y.oid, -1)
    FROM pg_type AS y
    WHERE y.oid = p_type AND y.typtype IN ('b', 'e', 'r', 'm')
      AND NOT (y.typelem <> 0 AND y.typsubscript = 'pg_catalog.array_subscript_handler'::regproc)
      AND y.oid NOT IN ('pg_catalog.json'::regtype, 'pg_catalog.jsonb'::regtype)
$fn$;

-- Whether every column of a table makes a JSON scalar (to_jsonb): no
-- array, composite, domain, range, json or jsonb column, and no type with a
-- cast to json or jsonb. Its live rows then hold no JSON arrays or objects,
-- and each column is read back from JSON by a cast of its text
-- (pgtrail._revert_scalar_cast).
CREATE OR REPLACE FUNCTION pgtrail._revert_scalar_row(p_rel regclass)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT NOT EXISTS (
        SELECT FROM pg_attribute AS a JOIN pg_type AS ty ON ty.oid = a.atttypid
        WHERE a.attrelid = p_rel AND a.attnum > 0 AND NOT a.attisdropped
          AND NOT (ty.typtype IN ('b', 'e') AND ty.typcategory <> 'A'
                   AND pgtrail._revert_scalar_cast(ty.oid) IS NOT NULL
                   AND NOT EXISTS (SELECT FROM pg_cast AS c WHERE c.castsource = ty.oid
                                     AND c.casttarget IN ('json'::regtype, 'jsonb'::regtype))))
$fn$;

-- The audited table named by text ('s.t' or 't'), or error 22023.
CREATE OR REPLACE FUNCTION pgtrail._revert_table(p_name text, p_what text)
RETURNS pgtrail.audited_table
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    t pgtrail.audited_table;
    v_rel regclass;
BEGIN
    IF p_name IS NULL OR p_name = '' THEN
        RAISE EXCEPTION 'pgtrail.revert: % must name a table', p_what USING ERRCODE = '22023';
    END IF;
    -- 'schema.table' names an audited table even when it no longer exists.
    SELECT a.* INTO t FROM pgtrail.audited_table AS a
    WHERE format('%I.%I', a.table_schema, a.table_name) = p_name
       OR (a.table_schema || '.' || a.table_name) = p_name
    ORDER BY a.id LIMIT 1;
    IF NOT FOUND THEN
        BEGIN
            v_rel := p_name::regclass;
        EXCEPTION WHEN OTHERS THEN
            v_rel := NULL;
        END;
        IF v_rel IS NULL THEN
            -- Unqualified: the audited table of that name, if only one schema has it.
            SELECT a.* INTO t FROM pgtrail.audited_table AS a WHERE a.table_name = p_name
            ORDER BY a.id LIMIT 1;
            IF NOT FOUND OR (SELECT count(*) FROM pgtrail.audited_table AS a WHERE a.table_name = p_name) > 1 THEN
                RAISE EXCEPTION 'pgtrail.revert: % names no audited table: %', p_what, p_name
                    USING ERRCODE = '22023',
                          HINT = 'Name a table pgtrail audits, as schema.table (see pgtrail.audited_table).';
            END IF;
        ELSE
            SELECT a.* INTO t FROM pg_class AS c
            JOIN pg_namespace AS n ON n.oid = c.relnamespace
            JOIN pgtrail.audited_table AS a ON a.table_schema = n.nspname AND a.table_name = c.relname
            WHERE c.oid = v_rel;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'pgtrail.revert: % is not audited: %', p_what, p_name
                    USING ERRCODE = '22023',
                          HINT = 'Only changes pgtrail recorded can be reverted; see pgtrail.audited_table.';
            END IF;
        END IF;
    END IF;
    RETURN t;
END
$fn$;

-- A timestamptz from the selector, or error 22023.
CREATE OR REPLACE FUNCTION pgtrail._revert_time(p_selector jsonb, p_field text)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF NOT p_selector ? p_field OR jsonb_typeof(p_selector -> p_field) = 'null' THEN
        RETURN NULL;
    END IF;
    RETURN (p_selector ->> p_field)::timestamptz;
EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR invalid_text_representation THEN
    RAISE EXCEPTION 'pgtrail.revert: "%" is not a time: %', p_field, p_selector -> p_field
        USING ERRCODE = '22023', HINT = 'Give times as ISO 8601, e.g. "2026-06-01T14:00:00Z".';
END
$fn$;

-- The unique index on the selected changes' ids (pgtrail_revert_sel), made
-- when a step first needs it: an insert that may repeat an id (ON CONFLICT
-- DO NOTHING). A selection of whole transactions, which cannot repeat an
-- id, is read without it (its steps join it by hashes, or scan it), and
-- building it would cost as much as copying the changes; cascade adds
-- transactions to it, and makes it first. (Once made, an insert keeps it
-- up to date: building it after the rows costs less than that, row by row.)
CREATE OR REPLACE FUNCTION pgtrail._revert_sel_key()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF to_regclass('pg_temp.pgtrail_revert_sel_key') IS NULL THEN
        CREATE UNIQUE INDEX pgtrail_revert_sel_key ON pg_temp.pgtrail_revert_sel (id);
    END IF;
END
$fn$;

-- The changes of whole transactions p_txids into the selection, read
-- transaction by transaction by the txid index: with "= ANY" of many txids
-- the planner estimates rows per txid from the trail's largest transactions
-- and reads the whole trail instead. It can still do so per transaction
-- once the trail's statistics hold a few large ones, and then reads the
-- partition once per txid: sequential scans are off while it runs (the
-- function's SET, undone on return).
-- (PL/pgSQL: the working table exists only once a plan makes it.)
CREATE OR REPLACE FUNCTION pgtrail._revert_select_txids(p_txids bigint[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
AS $fn$
BEGIN
    INSERT INTO pg_temp.pgtrail_revert_sel (id, at, only_key, txid, ctx, table_id, op, pk, old_pk, old_values, new_values, changed_fields)
    SELECT c.id, c.changed_at, NULL, c.txid, c.ctx, c.table_id, c.op, c.pk, c.old_pk, c.old_values, c.new_values, c.changed_fields
    FROM (SELECT DISTINCT x.txid FROM unnest(p_txids) AS x(txid) ORDER BY x.txid) AS x
    CROSS JOIN LATERAL (SELECT c.* FROM pgtrail.change AS c WHERE c.txid = x.txid OFFSET 0) AS c;
END
$fn$;

-- How many keyed changes of tables p_tables the trail holds since p_since,
-- counted by the BRIN on changed_at, not by a sequential scan, which the
-- planner prefers but which reads the whole partition, older changes too:
-- summarized ranges before p_since are skipped, so the count reads the
-- changes since and the ranges not summarized yet (sequential scans off
-- while it runs: the function's SET, undone on return).
CREATE OR REPLACE FUNCTION pgtrail._revert_count_since(p_since timestamptz, p_tables integer[])
RETURNS bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
AS $fn$
    SELECT count(*)
    FROM pgtrail.change AS y
    WHERE y.changed_at >= p_since AND y.pk IS NOT NULL
      AND y.table_id + 0 = ANY (p_tables)
$fn$;

-- The selection: fills pg_temp.pgtrail_revert_sel with the selected
-- changes, read from the trail once (only_key: a TRUNCATE selected for one
-- row only).
CREATE OR REPLACE FUNCTION pgtrail._revert_select(p_selector jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_kinds  text[];
    v_since  timestamptz := pgtrail._revert_time(p_selector, 'since');
    v_until  timestamptz := pgtrail._revert_time(p_selector, 'until');
    t        pgtrail.audited_table;
    v_rel    regclass;
    v_after  bigint;
    v_after_at timestamptz;
    v_tables integer[];
    v_name   text;
    v_txids  bigint[];
BEGIN
    IF p_selector IS NULL OR jsonb_typeof(p_selector) <> 'object' THEN
        RAISE EXCEPTION 'pgtrail.revert: the selector must be a JSON object'
            USING ERRCODE = '22023',
                  HINT = 'E.g. {"txids": [48211]}, {"table": "public.users", "pk": {"id": 42}}, '
                      || '{"actor": "alice@example.com", "since": "...", "until": "..."} or {"context": {"request_id": "r-1"}, "since": "..."}.';
    END IF;
    SELECT array_agg(k ORDER BY k) INTO v_kinds
    FROM unnest(ARRAY['txids', 'table', 'actor', 'context']) AS k WHERE p_selector ? k;
    IF cardinality(v_kinds) IS DISTINCT FROM 1 THEN
        RAISE EXCEPTION 'pgtrail.revert: the selector must have exactly one of "txids", "table" (with "pk"), "actor" or "context"; it has %',
                coalesce(array_to_string(v_kinds, ', '), 'none')
            USING ERRCODE = '22023',
                  HINT = 'E.g. {"txids": [48211]} or {"actor": "alice@example.com", "since": "2026-06-01T14:00Z"}.';
    END IF;
    IF EXISTS (SELECT FROM jsonb_object_keys(p_selector) AS k
               WHERE k NOT IN ('txids', 'table', 'pk', 'since', 'until', 'after_change', 'actor', 'context',
                               'tables', 'max_rows', 'batch_rows', 'lock_timeout')) THEN
        RAISE EXCEPTION 'pgtrail.revert: unknown selector field(s): %',
                (SELECT string_agg(k, ', ') FROM jsonb_object_keys(p_selector) AS k
                 WHERE k NOT IN ('txids', 'table', 'pk', 'since', 'until', 'after_change', 'actor', 'context',
                                 'tables', 'max_rows', 'batch_rows', 'lock_timeout'))
            USING ERRCODE = '22023',
                  HINT = 'Fields: txids | table, pk, since, after_change | actor, since, until | context, since, until; tables, max_rows, batch_rows, lock_timeout.';
    END IF;

    -- (The unique index on the selected changes' ids, see _revert_sel_key:
    -- the rows of whole transactions cannot repeat an id, and are
    -- selected without it. The other selectors need it first, for ON
    -- CONFLICT.)
    IF to_regclass('pg_temp.pgtrail_revert_sel_key') IS NOT NULL THEN
        DROP INDEX pg_temp.pgtrail_revert_sel_key;
    END IF;
    IF v_kinds[1] <> 'txids' THEN
        PERFORM pgtrail._revert_sel_key();
    END IF;
    CASE v_kinds[1]
    WHEN 'txids' THEN
        IF jsonb_typeof(p_selector -> 'txids') <> 'array' OR jsonb_array_length(p_selector -> 'txids') = 0
           OR EXISTS (SELECT FROM jsonb_array_elements(p_selector -> 'txids') AS e
                      WHERE jsonb_typeof(e) <> 'number' OR (e #>> '{}') !~ '^[0-9]+$') THEN
            RAISE EXCEPTION 'pgtrail.revert: "txids" must be a non-empty array of transaction ids, got %', p_selector -> 'txids'
                USING ERRCODE = '22023', HINT = 'E.g. {"txids": [48211, 48212]} (the txid column of pgtrail.changes).';
        END IF;
        SELECT array_agg((e #>> '{}')::bigint) INTO v_txids FROM jsonb_array_elements(p_selector -> 'txids') AS e;
        PERFORM pgtrail._revert_select_txids(v_txids);
    WHEN 'table' THEN
        t := pgtrail._revert_table(p_selector ->> 'table', '"table"');
        IF jsonb_typeof(p_selector -> 'pk') IS DISTINCT FROM 'object' THEN
            RAISE EXCEPTION 'pgtrail.revert: a row is named by "table" and "pk" (a JSON object), got pk %', coalesce((p_selector -> 'pk')::text, 'none')
                USING ERRCODE = '22023', HINT = 'E.g. {"table": "public.users", "pk": {"id": 42}}.';
        END IF;
        IF p_selector ? 'after_change' AND p_selector ? 'since' THEN
            RAISE EXCEPTION 'pgtrail.revert: give "since" or "after_change", not both' USING ERRCODE = '22023';
        END IF;
        v_rel := to_regclass(format('%I.%I', t.table_schema, t.table_name));
        IF v_rel IS NULL THEN
            RAISE EXCEPTION 'pgtrail.revert: table %.% no longer exists', quote_ident(t.table_schema), quote_ident(t.table_name)
                USING ERRCODE = '22023';
        END IF;
        t := pgtrail._audited(v_rel);
        IF to_regclass('pg_temp.pgtrail_revert_life') IS NULL THEN
            CREATE TEMP TABLE pgtrail_revert_life (seq integer, id bigint, op "char", at timestamptz, key jsonb) ON COMMIT DROP;
        END IF;
        TRUNCATE pg_temp.pgtrail_revert_life;
        INSERT INTO pg_temp.pgtrail_revert_life
        SELECT l.r_seq, l.r_id, l.r_op, l.r_changed_at, l.r_key
        FROM pgtrail._row_life(t, v_rel, p_selector -> 'pk', 'infinity') AS l WHERE l.r_seq > 0;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'pgtrail.revert: the trail has no change of %.% %', quote_ident(t.table_schema), quote_ident(t.table_name), p_selector -> 'pk'
                USING ERRCODE = '22023', HINT = 'Check the key (its JSON types too) with pgtrail.history.';
        END IF;
        IF p_selector ? 'after_change' THEN
            IF jsonb_typeof(p_selector -> 'after_change') <> 'number' THEN
                RAISE EXCEPTION 'pgtrail.revert: "after_change" must be a change id' USING ERRCODE = '22023';
            END IF;
            v_after := (p_selector ->> 'after_change')::bigint;
            SELECT l.at INTO v_after_at FROM pg_temp.pgtrail_revert_life AS l WHERE l.id = v_after;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'pgtrail.revert: change % is not a change of %.% %', v_after,
                        quote_ident(t.table_schema), quote_ident(t.table_name), p_selector -> 'pk'
                    USING ERRCODE = '22023', HINT = 'pgtrail.history lists the row''s changes with their ids.';
            END IF;
            INSERT INTO pg_temp.pgtrail_revert_sel (id, at, only_key, txid, ctx, table_id, op, pk, old_pk, old_values, new_values, changed_fields)
            SELECT l.id, l.at, CASE WHEN l.op = 'T' THEN (SELECT k.key FROM pg_temp.pgtrail_revert_life AS k
                                                   WHERE k.seq < l.seq ORDER BY k.seq DESC LIMIT 1) END,
                   c.txid, c.ctx, c.table_id, c.op, c.pk, c.old_pk, c.old_values, c.new_values, c.changed_fields
            FROM pg_temp.pgtrail_revert_life AS l JOIN pgtrail.change AS c ON c.id = l.id AND c.changed_at = l.at
            WHERE (l.at, l.id) > (v_after_at, v_after)
            ON CONFLICT DO NOTHING;
        ELSIF v_since IS NOT NULL THEN
            INSERT INTO pg_temp.pgtrail_revert_sel (id, at, only_key, txid, ctx, table_id, op, pk, old_pk, old_values, new_values, changed_fields)
            SELECT l.id, l.at, CASE WHEN l.op = 'T' THEN (SELECT k.key FROM pg_temp.pgtrail_revert_life AS k
                                                   WHERE k.seq < l.seq ORDER BY k.seq DESC LIMIT 1) END,
                   c.txid, c.ctx, c.table_id, c.op, c.pk, c.old_pk, c.old_values, c.new_values, c.changed_fields
            FROM pg_temp.pgtrail_revert_life AS l JOIN pgtrail.change AS c ON c.id = l.id AND c.changed_at = l.at
            WHERE l.at > v_since
            ON CONFLICT DO NOTHING;
        ELSE
            -- The row's last change.
            INSERT INTO pg_temp.pgtrail_revert_sel (id, at, only_key, txid, ctx, table_id, op, pk, old_pk, old_values, new_values, changed_fields)
            SELECT l.id, l.at, CASE WHEN l.op = 'T' THEN (SELECT k.key FROM pg_temp.pgtrail_revert_life AS k
                                                   WHERE k.seq < l.seq ORDER BY k.seq DESC LIMIT 1) END,
                   c.txid, c.ctx, c.table_id, c.op, c.pk, c.old_pk, c.old_values, c.new_values, c.changed_fields
            FROM pg_temp.pgtrail_revert_life AS l JOIN pgtrail.change AS c ON c.id = l.id AND c.changed_at = l.at
            ORDER BY l.seq DESC LIMIT 1;
        END IF;
    WHEN 'actor' THEN
        IF jsonb_typeof(p_selector -> 'actor') <> 'string' OR v_since IS NULL THEN
            RAISE EXCEPTION 'pgtrail.revert: an actor''s changes are selected by "actor" (a string) and "since" (and optionally "until")'
                USING ERRCODE = '22023', HINT = 'E.g. {"actor": "batch_script@system", "since": "2026-06-01T14:00Z", "until": "2026-06-01T15:00Z"}.';
        END IF;
        INSERT INTO pg_temp.pgtrail_revert_sel (id, at, only_key, txid, ctx, table_id, op, pk, old_pk, old_values, new_values, changed_fields)
        SELECT a.id, a.changed_at, NULL, c.txid, c.ctx, c.table_id, c.op, c.pk, c.old_pk, c.old_values, c.new_values, c.changed_fields
        FROM pgtrail.actor_changes(p_selector ->> 'actor', v_since, coalesce(v_until, 'infinity')) AS a
        JOIN pgtrail.change AS c ON c.id = a.id AND c.changed_at = a.changed_at
        ON CONFLICT DO NOTHING;
    WHEN 'context' THEN
        IF jsonb_typeof(p_selector -> 'context') <> 'object' OR p_selector -> 'context' = '{}' OR v_since IS NULL THEN
            RAISE EXCEPTION 'pgtrail.revert: changes of a context are selected by "context" (a JSON object of key: value) and "since" (and optionally "until")'
                USING ERRCODE = '22023', HINT = 'E.g. {"context": {"request_id": "req-81f2"}, "since": "2026-06-01T14:00Z"}.';
        END IF;
        INSERT INTO pg_temp.pgtrail_revert_sel (id, at, only_key, txid, ctx, table_id, op, pk, old_pk, old_values, new_values, changed_fields)
        SELECT c.id, c.changed_at, NULL, c.txid, c.ctx, c.table_id, c.op, c.pk, c.old_pk, c.old_values, c.new_values, c.changed_fields
        FROM (SELECT x.txid, x.ctx FROM pgtrail.transaction AS x
              WHERE x.started_at >= v_since - pgtrail._context_span()
                AND x.started_at < coalesce(v_until, 'infinity')
                AND NOT EXISTS (SELECT FROM jsonb_each(p_selector -> 'context') AS e
                                WHERE (x.context ->> e.key) IS DISTINCT FROM (e.value #>> '{}'))
              UNION
              SELECT l.txid, l.ctx FROM pgtrail.long_context AS l
              JOIN pgtrail.transaction AS x ON x.txid = l.txid AND x.ctx = l.ctx
              WHERE NOT EXISTS (SELECT FROM jsonb_each(p_selector -> 'context') AS e
                                WHERE (x.context ->> e.key) IS DISTINCT FROM (e.value #>> '{}'))) AS k
        CROSS JOIN LATERAL (SELECT y.* FROM pgtrail.change AS y
                            WHERE y.txid = k.txid AND y.ctx = k.ctx OFFSET 0) AS c
        WHERE c.changed_at >= v_since AND c.changed_at < coalesce(v_until, 'infinity')
        ON CONFLICT DO NOTHING;
    END CASE;

    IF p_selector ? 'tables' THEN
        IF jsonb_typeof(p_selector -> 'tables') <> 'array' THEN
            RAISE EXCEPTION 'pgtrail.revert: "tables" must be an array of table names' USING ERRCODE = '22023';
        END IF;
        v_tables := '{}';
        FOR v_name IN SELECT e FROM jsonb_array_elements_text(p_selector -> 'tables') AS e LOOP
            v_tables := v_tables || (pgtrail._revert_table(v_name, '"tables"')).id;
        END LOOP;
        DELETE FROM pg_temp.pgtrail_revert_sel AS s WHERE NOT s.table_id = ANY (v_tables);
    END IF;
END
$fn$;

-- The rows a table had just before its TRUNCATE p_id, rebuilt forwards
-- from the trail: every row of the table's life since its previous
-- TRUNCATE (or since its baseline). NULL rows (a single row with k NULL and
-- copies 0) when the trail does not hold them all.
CREATE OR REPLACE FUNCTION pgtrail._revert_truncated_rows(t pgtrail.audited_table, p_id bigint, p_at timestamptz)
RETURNS TABLE (k jsonb, state jsonb, copies bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_from_at timestamptz;
    v_from_id bigint;
    r         record;
    v_state   jsonb;
BEGIN
    SELECT x.changed_at, x.id INTO v_from_at, v_from_id FROM pgtrail.change AS x
    WHERE x.table_id = t.id AND pgtrail._h(x.pk) IS NULL AND x.pk IS NULL AND x.op = 'T' AND (x.changed_at, x.id) < (p_at, p_id)
    ORDER BY x.changed_at DESC, x.id DESC LIMIT 1;
    IF v_from_id IS NULL THEN
        IF t.baseline_at IS NULL OR t.baseline_at > p_at THEN
            RETURN QUERY SELECT NULL::jsonb, NULL::jsonb, 0::bigint;
            RETURN;
        END IF;
        v_from_at := '-infinity';
        v_from_id := 0;
    END IF;
    IF cardinality(t.key_columns) = 0 THEN
        RETURN QUERY
        SELECT d.k, d.k, sum(d.n)::bigint
        FROM pgtrail.change AS x
        CROSS JOIN LATERAL (VALUES (x.pk, CASE WHEN x.op = 'D' THEN -1 WHEN x.op = 'I' OR x.old_pk IS NOT NULL THEN 1 ELSE 0 END),
                                   (x.old_pk, -1)) AS d(k, n)
        WHERE x.table_id = t.id AND x.op <> 'T' AND d.k IS NOT NULL
          AND (x.changed_at, x.id) > (v_from_at, v_from_id) AND (x.changed_at, x.id) < (p_at, p_id)
        GROUP BY d.k HAVING sum(d.n) > 0;
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT FROM pgtrail.change AS x
                   WHERE x.table_id = t.id AND x.op = 'U' AND x.old_pk IS NOT NULL
                     AND (x.changed_at, x.id) > (v_from_at, v_from_id) AND (x.changed_at, x.id) < (p_at, p_id)) THEN
        -- No key changed: each key's last INSERT, overlaid with the UPDATEs after it.
        RETURN QUERY
        WITH w AS (
            SELECT x.pk, x.op, x.changed_at, x.id, x.new_values, x.changed_fields,
                   max(CASE WHEN x.op = 'I' THEN row_number END) OVER (PARTITION BY x.pk) AS last_i,
                   row_number, max(row_number) OVER (PARTITION BY x.pk) AS last_n
            FROM (SELECT y.*, row_number() OVER (PARTITION BY y.pk ORDER BY y.changed_at, y.id) AS row_number
                  FROM pgtrail.change AS y
                  WHERE y.table_id = t.id AND y.op <> 'T'
                    AND (y.changed_at, y.id) > (v_from_at, v_from_id) AND (y.changed_at, y.id) < (p_at, p_id)) AS x
        )
        SELECT w.pk, (SELECT jsonb_object_agg(o.key, o.value)
                      FROM (SELECT DISTINCT ON (e.key) e.key, e.value
                            FROM w AS v CROSS JOIN LATERAL jsonb_each(v.new_values) AS e
                            WHERE v.pk = w.pk AND v.row_number >= w.last_i
                              AND (v.op = 'I' OR v.changed_fields IS NULL OR e.key = ANY (v.changed_fields))
                            ORDER BY e.key, v.row_number DESC) AS o), 1::bigint
        FROM w
        WHERE w.row_number = w.last_n AND w.op <> 'D' AND w.last_i IS NOT NULL;
        RETURN;
    END IF;
    -- Keys changed: follow each row through the window, change by change.
    IF to_regclass('pg_temp.pgtrail_revert_rows') IS NULL THEN
        CREATE TEMP TABLE pgtrail_revert_rows (k jsonb PRIMARY KEY, state jsonb) ON COMMIT DROP;
    END IF;
    TRUNCATE pg_temp.pgtrail_revert_rows;
    FOR r IN SELECT x.op, x.pk, x.old_pk, x.old_values, x.new_values, x.changed_fields FROM pgtrail.change AS x
             WHERE x.table_id = t.id AND x.op <> 'T'
               AND (x.changed_at, x.id) > (v_from_at, v_from_id) AND (x.changed_at, x.id) < (p_at, p_id)
             ORDER BY x.changed_at, x.id LOOP
        IF r.op = 'I' THEN
            INSERT INTO pg_temp.pgtrail_revert_rows VALUES (r.pk, r.new_values)
            ON CONFLICT (k) DO UPDATE SET state = excluded.state;
        ELSIF r.op = 'D' THEN
            DELETE FROM pg_temp.pgtrail_revert_rows AS w WHERE w.k = r.pk;
        ELSE
            DELETE FROM pg_temp.pgtrail_revert_rows AS w WHERE w.k = coalesce(r.old_pk, r.pk) RETURNING w.state INTO v_state;
            INSERT INTO pg_temp.pgtrail_revert_rows VALUES (r.pk, v_state || CASE WHEN r.changed_fields IS NULL THEN r.new_values ELSE
                (SELECT coalesce(jsonb_object_agg(e.key, e.value), '{}') FROM jsonb_each(r.new_values) AS e WHERE e.key = ANY (r.changed_fields)) END)
            ON CONFLICT (k) DO UPDATE SET state = excluded.state;
        END IF;
    END LOOP;
    RETURN QUERY SELECT w.k, w.state, 1::bigint FROM pg_temp.pgtrail_revert_rows AS w WHERE w.state IS NOT NULL;
END
$fn$;

-- Empties the working tables given that hold rows. (TRUNCATE makes new
-- files for a table, a few milliseconds each; a plan's tables are mostly
-- empty already, created in its transaction or emptied by a step before.)
CREATE OR REPLACE FUNCTION pgtrail._revert_clear(VARIADIC p_tables text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_full  text[] := '{}';
    v_table text;
    v_rows  boolean;
BEGIN
    -- (Names, not regclass: a plan's tables are made again in each
    -- transaction, and a cached call must not hold the OIDs of the last.)
    FOREACH v_table IN ARRAY p_tables LOOP
        EXECUTE format('SELECT EXISTS (SELECT FROM pg_temp.%I)', v_table) INTO v_rows;
        IF v_rows THEN
            v_full := v_full || format('pg_temp.%I', v_table);
        END IF;
    END LOOP;
    IF cardinality(v_full) > 0 THEN
        EXECUTE 'TRUNCATE ' || array_to_string(v_full, ', ');
    END IF;
END
$fn$;

-- The working tables of one plan, empty (created on first use, dropped at commit).
CREATE OR REPLACE FUNCTION pgtrail._revert_scratch()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF to_regclass('pg_temp.pgtrail_revert_sel') IS NULL THEN
        -- The selected changes, as the trail has them (read once). (Its
        -- unique index on id, pgtrail_revert_sel_key, is made when a step
        -- needs it: see _revert_sel_key.)
        CREATE TEMP TABLE pgtrail_revert_sel (
            id bigint NOT NULL, at timestamptz NOT NULL, only_key jsonb, txid bigint NOT NULL, ctx smallint NOT NULL,
            table_id integer NOT NULL, op "char" NOT NULL, pk jsonb, old_pk jsonb, old_values jsonb, new_values jsonb,
            changed_fields text[]) ON COMMIT DROP;
    END IF;
    -- Rows of a selected TRUNCATE left out (skip).
    IF to_regclass('pg_temp.pgtrail_revert_skipkey') IS NULL THEN
        CREATE TEMP TABLE pgtrail_revert_skipkey (id bigint, key jsonb) ON COMMIT DROP;
    END IF;
    -- The selected changes, TRUNCATEs expanded into one DELETE per row.
    IF to_regclass('pg_temp.pgtrail_revert_change') IS NULL THEN
        CREATE TEMP TABLE pgtrail_revert_change (
            n bigint, id bigint, txid bigint, ctx smallint, table_id integer, op "char", at timestamptz,
            pk jsonb, old_pk jsonb, old_values jsonb, new_values jsonb, cols text[], whole boolean,
            synthetic boolean, chain bigint) ON COMMIT DROP;
    END IF;
    -- Per row and column: the value before S's first change of it, after S's last.
    IF to_regclass('pg_temp.pgtrail_revert_cell') IS NULL THEN
        CREATE TEMP TABLE pgtrail_revert_cell (
            chain bigint, col text, first_op "char", first_old jsonb, last_op "char", last_new jsonb) ON COMMIT DROP;
    END IF;
    -- Per row (keyed tables) or per content (tables without key). at and
    -- cols: set only for a row the fast path made from its one change (the
    -- change's time and, for an UPDATE, the columns it changed); such rows
    -- have no pgtrail_revert_change rows. (Its unique index on chain is
    -- made by _revert_rows once the rows are in: see there.)
    IF to_regclass('pg_temp.pgtrail_revert_chain') IS NULL THEN
        CREATE TEMP TABLE pgtrail_revert_chain (
            chain bigint, table_id integer, keyless boolean, k_origin jsonb, k_final jsonb,
            ex_origin boolean, ex_final boolean, origin jsonb, expect jsonb, net bigint,
            change_ids bigint[], active boolean, changes bigint, at timestamptz, cols text[]) ON COMMIT DROP;
    END IF;
    -- Per table, how many of its rows (pgtrail_revert_chain) each later
    -- step has to look at: see _revert_shape.
    IF to_regclass('pg_temp.pgtrail_revert_shape') IS NULL THEN
        CREATE TEMP TABLE pgtrail_revert_shape (
            table_id integer PRIMARY KEY, active bigint, fast bigint, since timestamptz, multi bigint,
            creates bigint, removes bigint, moves bigint, referable bigint, back bigint, nothing bigint) ON COMMIT DROP;
    END IF;
    -- Per table, the rows of the fast path (see _revert_rows), by their
    -- columns and flags: how many, and their chain numbers' range. Later
    -- steps tell from it, without reading every row, that none of a
    -- table's rows is for them (see _revert_shape_fast). Empty when the
    -- rows were made by the general path.
    IF to_regclass('pg_temp.pgtrail_revert_colset') IS NULL THEN
        CREATE TEMP TABLE pgtrail_revert_colset (
            table_id integer, cols text[], active boolean, ex_origin boolean, ex_final boolean,
            n bigint, multi bigint, since timestamptz, lo bigint, hi bigint) ON COMMIT DROP;
    END IF;
    -- The cells each selected change touched ('*': the whole row of that key).
    IF to_regclass('pg_temp.pgtrail_revert_touch') IS NULL THEN
        CREATE TEMP TABLE pgtrail_revert_touch (
            table_id integer, chain bigint, key jsonb, col text, at timestamptz, id bigint) ON COMMIT DROP;
    END IF;
    IF to_regclass('pg_temp.pgtrail_revert_conflict') IS NULL THEN
        CREATE TEMP TABLE pgtrail_revert_conflict (
            chain bigint, table_id integer, key jsonb, kind text, change_id bigint, txid bigint, ctx smallint,
            at timestamptz, op "char", columns text[], message text) ON COMMIT DROP;
    END IF;
    -- Per row of one table, the values it goes back to (_revert_statements)
    -- and the order of its key moves (holder, lvl, park: see _revert_move_order).
    IF to_regclass('pg_temp.pgtrail_revert_back') IS NULL THEN
        CREATE TEMP TABLE pgtrail_revert_back (
            chain bigint, ex_final boolean, moved boolean, k_origin jsonb, k_final jsonb,
            cols text[], s jsonb, e jsonb, lost_cols text[], whys text[], ids bigint[],
            holder bigint, lvl integer, park jsonb) ON COMMIT DROP;
    END IF;
    -- The order of the key moves, as _revert_key_cycles found it in the
    -- last round (its rows' holder, step and temporary key).
    IF to_regclass('pg_temp.pgtrail_revert_moves') IS NULL THEN
        CREATE TEMP TABLE pgtrail_revert_moves (
            table_id integer, chain bigint, holder bigint, lvl integer, park jsonb) ON COMMIT DROP;
    END IF;
    -- Rows left out (skip) or transactions added (cascade), for the plan.
    IF to_regclass('pg_temp.pgtrail_revert_log') IS NULL THEN
        CREATE TEMP TABLE pgtrail_revert_log (
            kind text, table_id integer, key jsonb, change_ids bigint[], conflict jsonb) ON COMMIT DROP;
    END IF;
    PERFORM pgtrail._revert_clear('pgtrail_revert_sel', 'pgtrail_revert_skipkey', 'pgtrail_revert_change',
                                  'pgtrail_revert_cell', 'pgtrail_revert_chain', 'pgtrail_revert_touch',
                                  'pgtrail_revert_conflict', 'pgtrail_revert_log', 'pgtrail_revert_moves',
                                  'pgtrail_revert_shape', 'pgtrail_revert_colset');
END
$fn$;

-- Per table of pgtrail_revert_chain, in one pass over its rows: how many
-- rows each later step would select, so that a step none of a table's rows
-- is for does not read them all to find none (a bulk revert's rows are
-- read by a dozen steps otherwise): active rows; rows of the fast path
-- (at set), and their first moment; rows changed more than once; rows the
-- selection created (DELETE), deleted (INSERT), whose key it moved; rows
-- a foreign key may refer to as they are now but not after (created or
-- moved: referable), whose key goes back (back); and the rows the plan
-- lists as NOTHING. Each count's condition is that of the step that uses
-- it. (The flags and keys it counts do not change after _revert_rows.)
CREATE OR REPLACE FUNCTION pgtrail._revert_shape()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    PERFORM pgtrail._revert_clear('pgtrail_revert_shape', 'pgtrail_revert_colset');
    INSERT INTO pg_temp.pgtrail_revert_shape
    SELECT k.table_id,
           count(*) FILTER (WHERE k.active),
           count(*) FILTER (WHERE k.at IS NOT NULL), min(k.at),
           count(*) FILTER (WHERE k.changes > 1),
           count(*) FILTER (WHERE k.active AND NOT k.ex_origin AND k.ex_final),
           count(*) FILTER (WHERE k.active AND k.ex_origin AND NOT k.ex_final),
           -- (A row of the fast path, at set, keeps its key: its keys are
           -- not compared. Its origin holds exactly its columns, cols.)
           count(*) FILTER (WHERE k.at IS NULL AND k.active AND NOT k.keyless AND k.ex_origin AND k.ex_final
                                  AND k.k_origin <> k.k_final),
           count(*) FILTER (WHERE k.active AND k.ex_final AND (NOT k.ex_origin OR (k.at IS NULL AND k.k_origin <> k.k_final))),
           count(*) FILTER (WHERE k.active AND k.ex_origin AND (NOT k.ex_final OR (k.at IS NULL AND k.k_origin <> k.k_final))),
           count(*) FILTER (WHERE NOT k.active
                               OR (NOT k.keyless AND k.ex_origin AND k.ex_final
                                   AND CASE WHEN k.at IS NOT NULL THEN coalesce(k.cols <@ a.key_columns, true)
                                            ELSE k.k_origin = k.k_final AND coalesce(k.origin, '{}') - a.key_columns = '{}' END))
    FROM pg_temp.pgtrail_revert_chain AS k
    JOIN pgtrail.audited_table AS a ON a.id = k.table_id
    GROUP BY k.table_id;
END
$fn$;

-- The same counts for rows the fast path made (_revert_rows: every row
-- of pgtrail_revert_chain has at set, none is keyless, each keeps its key),
-- by way of pgtrail_revert_colset: one pass over the rows groups them by
-- table, columns and flags, and each count is the sum of the groups that
-- meet its condition (the condition of _revert_shape for such rows).
CREATE OR REPLACE FUNCTION pgtrail._revert_shape_fast()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    PERFORM pgtrail._revert_clear('pgtrail_revert_shape', 'pgtrail_revert_colset');
    INSERT INTO pg_temp.pgtrail_revert_colset
    SELECT k.table_id, k.cols, k.active, k.ex_origin, k.ex_final, count(*), count(*) FILTER (WHERE k.changes > 1),
           min(k.at), min(k.chain), max(k.chain)
    FROM pg_temp.pgtrail_revert_chain AS k
    GROUP BY k.table_id, k.cols, k.active, k.ex_origin, k.ex_final;
    INSERT INTO pg_temp.pgtrail_revert_shape
    SELECT c.table_id,
           coalesce(sum(c.n) FILTER (WHERE c.active), 0)::bigint,
           sum(c.n)::bigint, min(c.since),
           sum(c.multi)::bigint,
           coalesce(sum(c.n) FILTER (WHERE c.active AND NOT c.ex_origin AND c.ex_final), 0)::bigint,
           coalesce(sum(c.n) FILTER (WHERE c.active AND c.ex_origin AND NOT c.ex_final), 0)::bigint,
           -- (moves, and the key comparisons below: a fast path row keeps its key.)
           0,
           coalesce(sum(c.n) FILTER (WHERE c.active AND c.ex_final AND NOT c.ex_origin), 0)::bigint,
           coalesce(sum(c.n) FILTER (WHERE c.active AND c.ex_origin AND NOT c.ex_final), 0)::bigint,
           coalesce(sum(c.n) FILTER (WHERE NOT c.active
                                        OR (c.ex_origin AND c.ex_final AND coalesce(c.cols <@ a.key_columns, true))), 0)::bigint
    FROM pg_temp.pgtrail_revert_colset AS c
    JOIN pgtrail.audited_table AS a ON a.id = c.table_id
    GROUP BY c.table_id;
END
$fn$;

-- Whether every active row of table p_table is a row of the fast path
-- (pgtrail_revert_colset holds them all), so that a step may decide
-- from the colset's groups alone that none of them is for it.
CREATE OR REPLACE FUNCTION pgtrail._revert_all_fast(p_table integer, p_active bigint)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RETURN (SELECT coalesce(sum(c.n), 0) = p_active
            FROM pg_temp.pgtrail_revert_colset AS c
            WHERE c.table_id = p_table AND c.active);
END
$fn$;

-- The prefix every key text of the selection starts with, when it holds
-- changes of one table only: the text of one of its keys up to the first
-- '": ' (a key is a JSON object; its first key column's name, the same in
-- every key of a table), else NULL. Whether every key has it is for the
-- caller to check.
CREATE OR REPLACE FUNCTION pgtrail._revert_key_prefix()
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_table  integer;
    v_key    text;
BEGIN
    SELECT s.table_id, s.pk::text INTO v_table, v_key
    FROM pg_temp.pgtrail_revert_sel AS s WHERE s.pk IS NOT NULL LIMIT 1;
    IF v_key IS NULL OR strpos(v_key, '": ') = 0
       OR EXISTS (SELECT FROM pg_temp.pgtrail_revert_sel AS s WHERE s.table_id <> v_table) THEN
        RETURN NULL;
    END IF;
    RETURN left(v_key, strpos(v_key, '": ') + 2);
END
$fn$;

-- From the selection to rows: pgtrail_revert_change, _cell, _chain and
-- _touch, and the conflicts that need no live row (TRUNCATEs whose rows
-- the trail does not hold, tables that are gone or cannot be identified).
CREATE OR REPLACE FUNCTION pgtrail._revert_rows()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    t      pgtrail.audited_table;
    r      record;
    v_next bigint;
    v_moved boolean;
    v_single boolean;
    v_prefix text;
    v_rest   integer;
    v_beyond text;
    v_cols   text[];
BEGIN
    PERFORM pgtrail._revert_clear('pgtrail_revert_change', 'pgtrail_revert_cell', 'pgtrail_revert_chain',
                                  'pgtrail_revert_touch', 'pgtrail_revert_conflict', 'pgtrail_revert_shape',
                                  'pgtrail_revert_colset');
    -- (The unique index on the rows' numbers is made once they are in:
    -- building it costs less than keeping it up to date row by row.)
    IF to_regclass('pg_temp.pgtrail_revert_chain_key') IS NOT NULL THEN
        DROP INDEX pg_temp.pgtrail_revert_chain_key;
    END IF;

    -- The fast path, for the common case: no TRUNCATE, no key change, only
    -- keyed tables that can be written, and every row changed once. Each row
    -- is its change: one statement from the selection to the rows, no copy
    -- of the changes, no numbering by time, no per-key grouping. It makes
    -- the same rows as the general path below (chains numbered by table and
    -- key text, as there), with at and cols set (see pgtrail_revert_chain);
    -- the later steps read those in place of pgtrail_revert_change. Whether
    -- a row was changed twice is only known once they are sorted by key
    -- (changes, in the same sort): then the general path. So is whether
    -- the selection holds a TRUNCATE or a key change (changes 2 as well),
    -- and whether one of its tables cannot take the fast path (from the
    -- groups of rows, below): the rows are made first, in the one pass over
    -- the selection, and set aside when they cannot be used. (A selection
    -- the fast path cannot take has rows of its own; the made rows are
    -- never read.)
    -- (The sort by key text. A selection of one table is sorted by the
    -- text after the prefix its keys share ('{"', the first key column's
    -- name, '": '), first: the prefix leaves the first 8 bytes of every
    -- key the same, which the sort compares first, where the rest tells
    -- most keys apart without reading them whole. When every key has the
    -- prefix, the order and its ties are those of the whole text, which
    -- follows. A key without it (in C order, the keys with the prefix
    -- are those from it to v_beyond, its last byte one higher) is counted
    -- as changed twice: the general path. Other selections are sorted by
    -- their table, then the text, as the general path does: v_rest NULL.)
    v_prefix := pgtrail._revert_key_prefix();
    v_rest := char_length(v_prefix) + 1;
    v_beyond := left(v_prefix, -1) || chr(ascii(right(v_prefix, 1)) + 1);
    -- (The columns of a diff image UPDATE without a stored list of changed
    -- fields are its new values' keys. Rows of one statement mostly have
    -- the same ones: a row whose new values have exactly the keys of one
    -- such row, v_cols, has v_cols, in the same order (jsonb's), tested by
    -- two operators; the others are listed key by key (a subquery per row,
    -- about 0.6 µs a row more).)
    SELECT ARRAY(SELECT jsonb_object_keys(s.new_values)) INTO v_cols
    FROM pg_temp.pgtrail_revert_sel AS s WHERE s.op = 'U' AND s.changed_fields IS NULL LIMIT 1;
    INSERT INTO pg_temp.pgtrail_revert_chain
        (chain, table_id, keyless, k_origin, k_final, ex_origin, ex_final, origin, expect, net, change_ids, active, changes, at, cols)
    SELECT row_number() OVER w, c.table_id, false, c.pk, c.pk,
           c.op <> 'I', c.op <> 'D',
           CASE WHEN c.op = 'D' THEN CASE WHEN c.old_values <> '{}' THEN c.old_values END
                WHEN c.op = 'U' AND cardinality(c.cols) > 0 THEN
                CASE WHEN c.old_values ?& c.cols AND (c.old_values - c.cols) = '{}' THEN c.old_values
                     ELSE (SELECT jsonb_object_agg(u.col, c.old_values -> u.col) FROM unnest(c.cols) AS u(col)) END
           END,
           -- (An UPDATE without changed_fields: its columns are its new
           -- values' keys, so those values are the row's, as they are.)
           CASE WHEN c.op = 'I' THEN CASE WHEN c.new_values <> '{}' THEN c.new_values END
                WHEN c.op = 'U' AND cardinality(c.cols) > 0 THEN
                CASE WHEN c.own OR (c.new_values ?& c.cols AND (c.new_values - c.cols) = '{}') THEN c.new_values
                     ELSE (SELECT jsonb_object_agg(u.col, c.new_values -> u.col) FROM unnest(c.cols) AS u(col)) END
           END,
           -- (changes: 1, or 2 for each row after the first of a key:
           -- the rank of its key, in the same sort, below its number;
           -- 2 also for a TRUNCATE, a key change, or a key text without
           -- the prefix of the sort below. Only 1 is kept: a row changed
           -- twice takes the general path, and so do these.)
           NULL, ARRAY[c.id], true,
           CASE WHEN rank() OVER w = row_number() OVER w AND NOT c.other
                     AND (v_rest IS NULL OR c.k IS NULL OR (c.k COLLATE "C" >= v_prefix AND c.k COLLATE "C" < v_beyond))
                THEN 1 ELSE 2 END, c.at, c.cols
    -- (OFFSET 0: each row's columns listed once, not once per use.)
    FROM (SELECT s.id, s.at, s.table_id, s.op, s.pk, s.old_values, s.new_values,
                 CASE WHEN s.op = 'U' THEN coalesce(s.changed_fields,
                                                    CASE WHEN s.new_values ?& v_cols AND (s.new_values - v_cols) = '{}' THEN v_cols
                                                         ELSE ARRAY(SELECT jsonb_object_keys(s.new_values)) END) END AS cols,
                 s.changed_fields IS NULL AS own,
                 coalesce(s.op = 'T' OR (s.op = 'U' AND s.old_pk IS NOT NULL), false) AS other,
                 s.pk::text AS k
          FROM pg_temp.pgtrail_revert_sel AS s OFFSET 0) AS c
    WINDOW w AS (ORDER BY substr(c.k, v_rest) COLLATE "C", c.table_id, c.k COLLATE "C");
    PERFORM pgtrail._revert_shape_fast();
    -- (Every table of the selection has a group: its rows, whichever.)
    IF NOT EXISTS (SELECT FROM pg_temp.pgtrail_revert_shape AS h WHERE h.multi > 0)
       AND NOT EXISTS (SELECT FROM (SELECT DISTINCT c.table_id FROM pg_temp.pgtrail_revert_colset AS c) AS d
                       JOIN pgtrail.audited_table AS a ON a.id = d.table_id
                       WHERE cardinality(a.key_columns) = 0 OR a.key_columns && a.redact_columns OR a.detached_at IS NOT NULL
                          OR to_regclass(format('%I.%I', a.table_schema, a.table_name)) IS NULL) THEN
        CREATE UNIQUE INDEX pgtrail_revert_chain_key ON pg_temp.pgtrail_revert_chain (chain);
        ANALYZE pg_temp.pgtrail_revert_chain (chain, table_id, active, keyless, ex_origin, ex_final);
        RETURN;
    END IF;
    TRUNCATE pg_temp.pgtrail_revert_chain, pg_temp.pgtrail_revert_shape, pg_temp.pgtrail_revert_colset;
    -- Keys a key change touched: their rows are followed change by change
    -- (below); the others are one row per key, numbered as they are copied.
    IF to_regclass('pg_temp.pgtrail_revert_moved') IS NULL THEN
        CREATE TEMP TABLE pgtrail_revert_moved (table_id integer, k jsonb, PRIMARY KEY (table_id, k)) ON COMMIT DROP;
    END IF;
    PERFORM pgtrail._revert_clear('pgtrail_revert_moved');
    INSERT INTO pg_temp.pgtrail_revert_moved
    SELECT DISTINCT c.table_id, d.k
    FROM pg_temp.pgtrail_revert_sel AS c
    JOIN pgtrail.audited_table AS a ON a.id = c.table_id AND cardinality(a.key_columns) > 0
    CROSS JOIN LATERAL (VALUES (c.pk), (c.old_pk)) AS d(k)
    WHERE c.op = 'U' AND c.old_pk IS NOT NULL AND d.k IS NOT NULL;
    v_moved := FOUND;

    INSERT INTO pg_temp.pgtrail_revert_change
    SELECT row_number() OVER (ORDER BY q.changed_at, q.id), q.id, q.txid, q.ctx, q.table_id, q.op, q.changed_at,
           q.pk, q.old_pk, q.old_values, q.new_values, q.cols, q.whole, false,
           CASE WHEN q.plain THEN dense_rank() OVER (PARTITION BY q.plain ORDER BY q.table_id, q.pk::text COLLATE "C") END
    FROM (SELECT c.id, c.txid, c.ctx, c.table_id, c.op, c.at AS changed_at, c.pk, c.old_pk, c.old_values, c.new_values,
                 CASE c.op WHEN 'I' THEN ARRAY(SELECT jsonb_object_keys(c.new_values))
                           WHEN 'D' THEN ARRAY(SELECT jsonb_object_keys(c.old_values))
                           ELSE coalesce(c.changed_fields, ARRAY(SELECT jsonb_object_keys(c.new_values))) END AS cols,
                 c.op IN ('I', 'D') OR c.old_pk IS NOT NULL OR cardinality(a.key_columns) = 0 AS whole,
                 cardinality(a.key_columns) > 0
                     AND (NOT v_moved OR NOT EXISTS (SELECT FROM pg_temp.pgtrail_revert_moved AS m
                                     WHERE m.table_id = c.table_id AND (m.k = c.pk OR m.k = c.old_pk))) AS plain
          FROM pg_temp.pgtrail_revert_sel AS c
          JOIN pgtrail.audited_table AS a ON a.id = c.table_id
          WHERE c.op <> 'T') AS q;

    -- Each TRUNCATE: the DELETE of every row the table had, if the trail holds them.
    FOR r IN SELECT s.id, s.txid, s.ctx, s.table_id, s.at AS changed_at, s.only_key
             FROM pg_temp.pgtrail_revert_sel AS s
             WHERE s.op = 'T' ORDER BY s.at, s.id LOOP
        SELECT * INTO t FROM pgtrail.audited_table WHERE id = r.table_id;
        IF EXISTS (SELECT FROM pgtrail._revert_truncated_rows(t, r.id, r.changed_at) AS x WHERE x.k IS NULL) THEN
            INSERT INTO pg_temp.pgtrail_revert_conflict (chain, table_id, key, kind, change_id, txid, ctx, at, op, columns, message)
            VALUES (NULL, t.id, NULL, 'truncate_not_captured', r.id, r.txid, r.ctx, r.changed_at, 'T', NULL,
                    format('the TRUNCATE of %I.%I removed rows that predate the install and were never recorded, so they cannot be put back',
                           t.table_schema, t.table_name)
                    || ' (only a TRUNCATE after an earlier TRUNCATE, or of a table with a baseline, can be reverted)');
            CONTINUE;
        END IF;
        INSERT INTO pg_temp.pgtrail_revert_change
        SELECT NULL, r.id, r.txid, r.ctx, r.table_id, 'D', r.changed_at, x.k, NULL, x.state, NULL,
               ARRAY(SELECT jsonb_object_keys(x.state)), true, true, NULL
        FROM pgtrail._revert_truncated_rows(t, r.id, r.changed_at) AS x
        CROSS JOIN LATERAL generate_series(1, x.copies) AS g
        WHERE (r.only_key IS NULL OR x.k = r.only_key)
          AND NOT EXISTS (SELECT FROM pg_temp.pgtrail_revert_skipkey AS k WHERE k.id = r.id AND k.key = x.k);
    END LOOP;
    -- Synthetic rows are numbered after the others at the same moment.
    IF EXISTS (SELECT FROM pg_temp.pgtrail_revert_change WHERE synthetic) THEN
        UPDATE pg_temp.pgtrail_revert_change AS c SET n = q.n
        FROM (SELECT ctid AS c_tid, row_number() OVER (ORDER BY at, id, synthetic, n, pk::text COLLATE "C") AS n
              FROM pg_temp.pgtrail_revert_change) AS q
        WHERE c.ctid = q.c_tid;
    END IF;

    -- Tables that are gone, or whose key holds redaction markers, cannot be written.
    INSERT INTO pg_temp.pgtrail_revert_conflict (chain, table_id, key, kind, change_id, txid, ctx, at, op, columns, message)
    SELECT NULL::bigint, a.id, NULL::jsonb, 'table', f.id, f.txid, f.ctx, f.at, f.op, NULL::text[],
           CASE WHEN to_regclass(format('%I.%I', a.table_schema, a.table_name)) IS NULL
                THEN format('table %I.%I no longer exists', a.table_schema, a.table_name)
                WHEN a.detached_at IS NOT NULL
                THEN format('capture of %I.%I was detached at %s: the live table no longer matches the trail', a.table_schema, a.table_name, a.detached_at)
                ELSE format('the key of %I.%I (%s) is redacted, so its rows cannot be found', a.table_schema, a.table_name, array_to_string(a.key_columns, ', '))
           END
    FROM (SELECT DISTINCT c.table_id FROM pg_temp.pgtrail_revert_change AS c) AS d
    JOIN pgtrail.audited_table AS a ON a.id = d.table_id
    CROSS JOIN LATERAL (SELECT c.id, c.txid, c.ctx, c.at, c.op FROM pg_temp.pgtrail_revert_change AS c
                        WHERE c.table_id = d.table_id ORDER BY c.n LIMIT 1) AS f
    WHERE to_regclass(format('%I.%I', a.table_schema, a.table_name)) IS NULL OR a.detached_at IS NOT NULL
       OR a.key_columns && a.redact_columns
       OR (cardinality(a.key_columns) = 0 AND cardinality(a.redact_columns) > 0);
    IF FOUND THEN
        DELETE FROM pg_temp.pgtrail_revert_change AS c
        USING pg_temp.pgtrail_revert_conflict AS x WHERE x.kind = 'table' AND x.table_id = c.table_id;
    END IF;

    -- Rows of keyed tables: by key, except keys a key change touched,
    -- which are followed change by change. (Numbered again when a TRUNCATE
    -- added rows of its own.)
    IF EXISTS (SELECT FROM pg_temp.pgtrail_revert_change WHERE synthetic) THEN
        UPDATE pg_temp.pgtrail_revert_change AS c SET chain = q.chain
        FROM (SELECT c2.ctid AS c_tid, dense_rank() OVER (ORDER BY c2.table_id, c2.pk::text COLLATE "C") AS chain
              FROM pg_temp.pgtrail_revert_change AS c2
              JOIN pgtrail.audited_table AS a ON a.id = c2.table_id AND cardinality(a.key_columns) > 0
              WHERE NOT EXISTS (SELECT FROM pg_temp.pgtrail_revert_moved AS m
                                WHERE m.table_id = c2.table_id AND (m.k = c2.pk OR m.k = c2.old_pk))) AS q
        WHERE c.ctid = q.c_tid;
    END IF;

    -- The others, followed through their key changes: a change continues
    -- the row whose key it starts from (a key change: its old key) when
    -- the last thing that happened to that key before it left a row there
    -- (any change leaves its row at its key, a key change vacates its old
    -- key); else it starts a row of its own. Rows are numbered after the
    -- ones above, in the order of their first changes. (Set-based: per key,
    -- what was left there last, by a running max over the key's changes;
    -- then each row from its first change down. A loop over the changes
    -- with a map of keys to rows copied the map once per change.)
    SELECT coalesce(max(chain), 0) INTO v_next FROM pg_temp.pgtrail_revert_change;
    IF EXISTS (SELECT FROM pg_temp.pgtrail_revert_change AS c
               WHERE c.chain IS NULL
                 AND EXISTS (SELECT FROM pgtrail.audited_table AS a WHERE a.id = c.table_id AND cardinality(a.key_columns) > 0)) THEN
        WITH RECURSIVE c AS MATERIALIZED (
            SELECT c.n, c.table_id, c.op, c.pk, c.old_pk
            FROM pg_temp.pgtrail_revert_change AS c
            WHERE c.chain IS NULL
              AND EXISTS (SELECT FROM pgtrail.audited_table AS a WHERE a.id = c.table_id AND cardinality(a.key_columns) > 0)
        ), e AS (
            -- Per change: the key it starts from (kind 0), then what it
            -- leaves: its row at its key (code 2n), its old key vacated
            -- (2n + 1).
            SELECT c.table_id, (CASE WHEN c.op = 'U' THEN coalesce(c.old_pk, c.pk) ELSE c.pk END)::text COLLATE "C" AS k,
                   c.n, 0 AS kind, NULL::bigint AS code
            FROM c
            UNION ALL
            SELECT c.table_id, c.pk::text COLLATE "C", c.n, 1, c.n * 2 FROM c
            UNION ALL
            SELECT c.table_id, c.old_pk::text COLLATE "C", c.n, 1, c.n * 2 + 1 FROM c WHERE c.op = 'U' AND c.old_pk IS NOT NULL
        ), p AS MATERIALIZED (
            SELECT x.n, CASE WHEN x.last % 2 = 0 THEN x.last / 2 END AS prev
            FROM (SELECT e.n, e.kind,
                         max(e.code) OVER (PARTITION BY e.table_id, e.k ORDER BY e.n, e.kind ROWS UNBOUNDED PRECEDING) AS last
                  FROM e) AS x
            WHERE x.kind = 0
        ), w (n, first) AS (
            SELECT p.n, p.n FROM p WHERE p.prev IS NULL
            UNION ALL
            SELECT p.n, w.first FROM w JOIN p ON p.prev = w.n
        )
        UPDATE pg_temp.pgtrail_revert_change AS c SET chain = v_next + q.rank
        FROM (SELECT w.n, dense_rank() OVER (ORDER BY w.first) AS rank FROM w) AS q
        WHERE c.n = q.n;
    END IF;
    -- (Statistics of the columns joins and filters use: of jsonb columns
    -- they would cost more than the statements they help plan.)
    ANALYZE pg_temp.pgtrail_revert_change (id, chain, table_id, synthetic);
    -- Whether every keyed row was changed once by S (chains are numbered
    -- 1.. without gaps: as many chains as changes with one).
    SELECT count(c.chain) = coalesce(max(c.chain), 0) INTO v_single FROM pg_temp.pgtrail_revert_change AS c;

    -- Keyed rows: the row's key and presence before and after S (one sort,
    -- window functions over it). A row S changed once (most rows of a bulk
    -- revert) takes its values before and after from that change (its
    -- columns' old and new values: the whole images when they hold exactly
    -- those columns, as they do but for full images); the others, below.
    -- When every row was changed once, each row is its change: no sort.
    IF v_single THEN
        INSERT INTO pg_temp.pgtrail_revert_chain
        SELECT c.chain, c.table_id, false,
               CASE WHEN c.op = 'U' THEN coalesce(c.old_pk, c.pk) ELSE c.pk END, c.pk,
               c.op <> 'I', c.op <> 'D',
               CASE WHEN c.op <> 'I' AND cardinality(c.cols) > 0 THEN
                    CASE WHEN c.old_values ?& c.cols AND (c.old_values - c.cols) = '{}' THEN c.old_values
                         ELSE (SELECT jsonb_object_agg(u.col, c.old_values -> u.col) FROM unnest(c.cols) AS u(col)) END
               END,
               CASE WHEN c.op <> 'D' AND cardinality(c.cols) > 0 THEN
                    CASE WHEN c.new_values ?& c.cols AND (c.new_values - c.cols) = '{}' THEN c.new_values
                         ELSE (SELECT jsonb_object_agg(u.col, c.new_values -> u.col) FROM unnest(c.cols) AS u(col)) END
               END,
               NULL, ARRAY[c.id], true, 1
        FROM pg_temp.pgtrail_revert_change AS c
        WHERE c.chain IS NOT NULL;
    ELSE
        INSERT INTO pg_temp.pgtrail_revert_chain
        SELECT f.chain, f.table_id, false,
               CASE WHEN f.first_op = 'U' THEN coalesce(f.first_old_pk, f.first_pk) ELSE f.first_pk END, f.last_pk,
               f.first_op <> 'I', f.last_op <> 'D',
               CASE WHEN f.n = 1 AND f.first_op <> 'I' AND cardinality(f.cols) > 0 THEN
                    CASE WHEN f.old_values ?& f.cols AND (f.old_values - f.cols) = '{}' THEN f.old_values
                         ELSE (SELECT jsonb_object_agg(u.col, f.old_values -> u.col) FROM unnest(f.cols) AS u(col)) END
               END,
               CASE WHEN f.n = 1 AND f.last_op <> 'D' AND cardinality(f.cols) > 0 THEN
                    CASE WHEN f.new_values ?& f.cols AND (f.new_values - f.cols) = '{}' THEN f.new_values
                         ELSE (SELECT jsonb_object_agg(u.col, f.new_values -> u.col) FROM unnest(f.cols) AS u(col)) END
               END,
               NULL,
               CASE WHEN cardinality(f.ids) > 1 THEN ARRAY(SELECT DISTINCT i FROM unnest(f.ids) AS i ORDER BY i) ELSE f.ids END,
               f.first_op <> 'I' OR f.last_op <> 'D', f.n
        FROM (SELECT c.chain, c.table_id,
                     first_value(c.op) OVER w AS first_op, first_value(c.pk) OVER w AS first_pk,
                     first_value(c.old_pk) OVER w AS first_old_pk,
                     last_value(c.op) OVER w AS last_op, last_value(c.pk) OVER w AS last_pk,
                     array_agg(c.id) OVER w AS ids, row_number() OVER w AS i, count(*) OVER w AS n,
                     c.cols, c.old_values, c.new_values
              FROM pg_temp.pgtrail_revert_change AS c
              WHERE c.chain IS NOT NULL
              WINDOW w AS (PARTITION BY c.chain ORDER BY c.n ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)) AS f
        WHERE f.i = 1;
    END IF;

    CREATE UNIQUE INDEX pgtrail_revert_chain_key ON pg_temp.pgtrail_revert_chain (chain);

    -- Rows S changed more than once: each column's value before S's first
    -- change of it and after its last.
    IF NOT v_single THEN
        ANALYZE pg_temp.pgtrail_revert_chain (chain, changes);
        INSERT INTO pg_temp.pgtrail_revert_cell
        SELECT x.chain, x.col, x.first_op, x.first_old, x.last_op, x.last_new
        FROM (SELECT c.chain, u.col,
                     first_value(c.op) OVER w AS first_op, first_value(c.old_values -> u.col) OVER w AS first_old,
                     last_value(c.op) OVER w AS last_op, last_value(c.new_values -> u.col) OVER w AS last_new,
                     row_number() OVER w AS i
              FROM pg_temp.pgtrail_revert_change AS c
              JOIN pg_temp.pgtrail_revert_chain AS k ON k.chain = c.chain AND k.changes > 1
              CROSS JOIN LATERAL unnest(c.cols) AS u(col)
              WINDOW w AS (PARTITION BY c.chain, u.col ORDER BY c.n ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)) AS x
        WHERE x.i = 1;
        IF FOUND THEN
            ANALYZE pg_temp.pgtrail_revert_cell (chain);
            UPDATE pg_temp.pgtrail_revert_chain AS k SET origin = v.origin, expect = v.expect
            FROM (SELECT x.chain,
                         jsonb_object_agg(x.col, x.first_old) FILTER (WHERE x.first_op <> 'I') AS origin,
                         jsonb_object_agg(x.col, x.last_new) FILTER (WHERE x.last_op <> 'D') AS expect
                  FROM pg_temp.pgtrail_revert_cell AS x GROUP BY x.chain) AS v
            WHERE v.chain = k.chain;
        END IF;
    END IF;
    -- (Rows S created and deleted again need nothing: not active.)

    -- Tables without key: copies of each content, counted.
    SELECT coalesce(max(chain), 0) INTO v_next FROM pg_temp.pgtrail_revert_chain;
    INSERT INTO pg_temp.pgtrail_revert_chain
    SELECT v_next + row_number() OVER (ORDER BY q.table_id, q.k::text), q.table_id, true, q.k, q.k,
           NULL, NULL, q.k, q.k, q.net, q.ids, q.net <> 0, NULL
    FROM (SELECT c.table_id, d.k, sum(d.n) AS net, array_agg(DISTINCT c.id ORDER BY c.id) AS ids
          FROM pg_temp.pgtrail_revert_change AS c
          CROSS JOIN LATERAL (VALUES (CASE WHEN c.op = 'D' THEN c.pk WHEN c.op = 'U' THEN c.old_pk END, 1),
                                     (CASE WHEN c.op IN ('I', 'U') THEN c.pk END, -1)) AS d(k, n)
          WHERE c.chain IS NULL AND d.k IS NOT NULL
          GROUP BY c.table_id, d.k) AS q;

    -- (The cells touched, pgtrail_revert_touch, are listed by
    -- _revert_conflicts when a later change is there to compare them with.)
    ANALYZE pg_temp.pgtrail_revert_chain (chain, table_id, active, keyless, ex_origin, ex_final);
    PERFORM pgtrail._revert_shape();
END
$fn$;

-- A foreign key's action, as SQL says it (pg_constraint.confdeltype / confupdtype).
CREATE OR REPLACE FUNCTION pgtrail._revert_fk_action(p_action "char")
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT CASE p_action WHEN 'a' THEN 'NO ACTION' WHEN 'r' THEN 'RESTRICT' WHEN 'c' THEN 'CASCADE'
                         WHEN 'n' THEN 'SET NULL' WHEN 'd' THEN 'SET DEFAULT' END
$fn$;

-- Conflicts of the active rows with later changes outside the selection
-- (the cell rule above), then with the live tables.
CREATE OR REPLACE FUNCTION pgtrail._revert_conflicts()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    t        pgtrail.audited_table;
    v_lookup bigint;
    v_secret bytea;
    v_rel    text;
    v_join   text;
    v_row    text;
    v_keysql text;
    fk       record;
    v_keys   bigint;
    v_n      bigint;
    v_scalar boolean;
    v_since  timestamptz;
    v_recent bigint;
    v_first_id bigint;
    v_selected bigint;
    v_bytime boolean;
    v_nestloop text;
    v_tabs   integer[];
    v_quiet  boolean := false;
    v_guard  text;
    v_settable text[];
    v_always text[];
    -- Whether pgtrail.revert is planning to apply under refuse, where each
    -- UPDATE's guard compares the live rows (see pgtrail.revert).
    v_guarded boolean := coalesce(current_setting('pgtrail.revert_guarded', true), '') = 'on';
    v_shape  record;
BEGIN
    -- Later changes of the same keys, outside the selection.
    IF to_regclass('pg_temp.pgtrail_revert_later') IS NULL THEN
        CREATE TEMP TABLE pgtrail_revert_later (
            id bigint, txid bigint, ctx smallint, table_id integer, op "char", at timestamptz,
            pk jsonb, old_pk jsonb, cols text[]) ON COMMIT DROP;
    END IF;
    PERFORM pgtrail._revert_clear('pgtrail_revert_later');
    -- The touched keys of the active rows, each with the first moment the
    -- selection touched it.
    IF to_regclass('pg_temp.pgtrail_revert_key') IS NULL THEN
        CREATE TEMP TABLE pgtrail_revert_key (table_id integer, key jsonb, h bigint, since timestamptz) ON COMMIT DROP;
    END IF;
    PERFORM pgtrail._revert_clear('pgtrail_revert_key');
    -- Up to how many keys the first way below is taken: 10,000, or the
    -- setting pgtrail.revert_key_lookup_rows (the tests set 0 to run the
    -- other two).
    v_lookup := coalesce(nullif(current_setting('pgtrail.revert_key_lookup_rows', true), '')::bigint, 10000);
    -- A large selection with about as few changes recorded since its first
    -- one as it has (a bulk revert soon after its transaction): the changes
    -- of the selection's tables, with a key, since its first change but its
    -- own, are read once, by time (see the second way below), before the
    -- keys are made (and only when a count says there are such changes). Each way below reads only such changes (since the
    -- first moment a key was touched): when there are none (nothing else
    -- was recorded there since), no key is made or looked up; else they are
    -- matched with the keys as the second way does. (TRUNCATEs, which have
    -- no key, are looked for below all the same.)
    -- (The selection's tables too, for the count below: one pass over it.)
    SELECT min(s.at), min(s.id), count(*) FILTER (WHERE s.pk IS NOT NULL), array_agg(DISTINCT s.table_id)
    INTO v_since, v_first_id, v_selected, v_tabs
    FROM pg_temp.pgtrail_revert_sel AS s;
    -- (Changes recorded since the first one: the ids handed out since, read
    -- from the identity sequence. max(id) walked back over every trail row
    -- of a rolled-back transaction at the top of the index, a heap fetch
    -- each, until a vacuum: 0.9 s after ten rolled-back 100,000-row
    -- UPDATEs. The sequence counts those rows too, which the ways below
    -- read as well, and ids cached by sessions but not used yet: an
    -- estimate either way.)
    v_recent := pg_catalog.pg_sequence_last_value(pg_catalog.pg_get_serial_sequence('pgtrail.change', 'id')::regclass)
                - v_first_id;
    v_bytime := v_selected > v_lookup AND v_recent IS NOT NULL AND v_recent < 4 * v_selected;
    IF v_bytime THEN
        IF to_regclass('pg_temp.pgtrail_revert_since') IS NULL THEN
            CREATE TEMP TABLE pgtrail_revert_since (
                id bigint, txid bigint, ctx smallint, table_id integer, op "char", changed_at timestamptz,
                pk jsonb, old_pk jsonb, cols text[]) ON COMMIT DROP;
        END IF;
        PERFORM pgtrail._revert_clear('pgtrail_revert_since');
        -- (Counted first: when the trail holds as many such changes as the
        -- selection has, they are the selection's own, which are among them
        -- (copied from the trail, which is append-only), and none is read.
        -- The count reads the same changes without leaving the selection's
        -- own out by their ids.)
        -- (By the BRIN on changed_at: see _revert_count_since. The tables
        -- first, v_tabs above.)
        -- (Not for a smaller selection: the count reads, besides the
        -- changes since, every range of the trail the BRIN has not
        -- summarized yet (until a vacuum), which can be many times the
        -- selection's own; the keys' lookups below cost by the keys.)
        v_quiet := pgtrail._revert_count_since(v_since, v_tabs) = v_selected;
    END IF;
    IF v_bytime AND NOT v_quiet THEN
        -- (The selection's own changes, more than 10,000, left out by a
        -- hash of their ids: the planner, which cannot tell how many
        -- changes of the trail the time bound leaves, would probe the
        -- selection's key once per change.)
        v_nestloop := current_setting('enable_nestloop');
        PERFORM set_config('enable_nestloop', 'off', true);
        INSERT INTO pg_temp.pgtrail_revert_since
        SELECT y.id, y.txid, y.ctx, y.table_id, y.op, y.changed_at, y.pk, y.old_pk,
               CASE WHEN y.op = 'U' AND y.old_pk IS NULL AND cardinality(a.key_columns) > 0
                    THEN coalesce(y.changed_fields, ARRAY(SELECT jsonb_object_keys(y.new_values))) END
        -- (By time, as below: "+ 0" keeps the planner off the key index,
        -- and OFFSET 0 keeps the join below out of the subquery, where its
        -- table_id would lead the planner to the key index again: every
        -- change the table ever had.)
        FROM (SELECT y.* FROM pgtrail.change AS y
              WHERE y.changed_at >= v_since AND y.pk IS NOT NULL
                AND y.table_id + 0 IN (SELECT DISTINCT s.table_id FROM pg_temp.pgtrail_revert_sel AS s)
                AND NOT EXISTS (SELECT FROM pg_temp.pgtrail_revert_sel AS s WHERE s.id = y.id)
              OFFSET 0) AS y
        JOIN pgtrail.audited_table AS a ON a.id = y.table_id;
        v_quiet := NOT FOUND;
        PERFORM set_config('enable_nestloop', v_nestloop, true);
        IF NOT v_quiet THEN
            ANALYZE pg_temp.pgtrail_revert_since (table_id);
        END IF;
    END IF;
    -- (The keys of the cells the selection touched, see below, read from
    -- the changes: the cells themselves are only needed when later changes
    -- are there, which a bulk revert mostly does not have.)
    IF NOT v_quiet THEN
        INSERT INTO pg_temp.pgtrail_revert_key
        SELECT d.table_id, d.k, pgtrail._h(d.k), min(d.at)
        FROM (SELECT c.table_id, c.pk AS k, c.at
              FROM pg_temp.pgtrail_revert_change AS c
              JOIN pg_temp.pgtrail_revert_chain AS k ON k.chain = c.chain AND k.active
              WHERE c.whole OR cardinality(c.cols) > 0
              UNION ALL
              SELECT c.table_id, c.old_pk, c.at
              FROM pg_temp.pgtrail_revert_change AS c
              JOIN pg_temp.pgtrail_revert_chain AS k ON k.chain = c.chain AND k.active
              WHERE c.whole AND c.old_pk IS NOT NULL
              UNION ALL
              SELECT c.table_id, x.k, c.at
              FROM pg_temp.pgtrail_revert_change AS c
              CROSS JOIN LATERAL (VALUES (c.pk), (c.old_pk)) AS x(k)
              JOIN pg_temp.pgtrail_revert_chain AS k ON k.keyless AND k.active AND k.table_id = c.table_id AND k.k_final = x.k
              WHERE c.chain IS NULL AND x.k IS NOT NULL) AS d
        GROUP BY d.table_id, d.k;
        GET DIAGNOSTICS v_keys = ROW_COUNT;
        -- Rows of the fast path: their one change, on the row itself (one key
        -- per row, none of the above: nothing to group).
        INSERT INTO pg_temp.pgtrail_revert_key
        SELECT k.table_id, k.k_final, pgtrail._h(k.k_final), k.at
        FROM pg_temp.pgtrail_revert_chain AS k
        WHERE k.at IS NOT NULL AND k.active AND (NOT k.ex_origin OR NOT k.ex_final OR cardinality(k.cols) > 0);
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_keys := v_keys + v_n;
        ANALYZE pg_temp.pgtrail_revert_key;
        SELECT min(k.since) INTO v_since FROM pg_temp.pgtrail_revert_key AS k;
    END IF;
    -- Three ways, which find the same rows. A few keys: their changes by
    -- the key indexes (per table, a lateral subquery of its keys' hashes,
    -- OFFSET 0 keeping it one: as a join the planner reads the trail by
    -- time, expecting the BRIN to be selective), whatever the trail's
    -- size. Reading the trail by time cannot be bounded by the trail's
    -- newest pages: the BRIN on changed_at cannot skip pages not
    -- summarized yet (until a vacuum), and a change id bound is not safe
    -- (a change's time is taken before its id, so a concurrent writer's
    -- later change can have an earlier id).
    -- More keys: about how many changes were recorded since the
    -- selection's first one (change ids come from one sequence); when that
    -- is not many more than the keys, reading those changes once, leaving
    -- out the selection's own by a hash of their ids and matching the rest
    -- by key hash, costs less than two index probes per key (per
    -- partition) that mostly find the selection's own changes. Else the
    -- probes, joined as the planner sees fit.
    -- (v_recent: see above.)
    IF v_quiet THEN
        NULL;
    ELSIF v_bytime AND v_keys > 0 THEN
        -- (The changes read above, matched as by the second way.)
        INSERT INTO pg_temp.pgtrail_revert_later
        SELECT DISTINCT ON (x.id) x.id, x.txid, x.ctx, x.table_id, x.op, x.changed_at, x.pk, x.old_pk, x.cols
        FROM (SELECT y.* FROM pg_temp.pgtrail_revert_key AS k JOIN pg_temp.pgtrail_revert_since AS y
                ON y.table_id = k.table_id AND pgtrail._h(y.pk) = k.h AND y.pk = k.key AND y.changed_at >= k.since
              UNION ALL
              SELECT y.* FROM pg_temp.pgtrail_revert_key AS k JOIN pg_temp.pgtrail_revert_since AS y
                ON y.table_id = k.table_id AND pgtrail._h(y.old_pk) = k.h AND y.old_pk = k.key AND y.changed_at >= k.since
              WHERE y.old_pk IS NOT NULL) AS x;
    ELSIF v_keys > 0 AND v_keys <= v_lookup THEN
        -- (Per table, all its keys' hashes in one scan of each key index,
        -- "= ANY" of an array, then matched with the keys by a hash join:
        -- not one lateral probe of every partition per key, whose executor
        -- restarts cost more than the probes.)
        INSERT INTO pg_temp.pgtrail_revert_later
        WITH g AS MATERIALIZED (
            SELECT k.table_id, array_agg(k.h) AS hs FROM pg_temp.pgtrail_revert_key AS k GROUP BY k.table_id
        ), x AS (
            SELECT y.* FROM g
            CROSS JOIN LATERAL (SELECT y.* FROM pgtrail.change AS y
                                WHERE y.table_id = g.table_id AND pgtrail._h(y.pk) = ANY (g.hs)
                                  AND y.changed_at >= v_since OFFSET 0) AS y
            JOIN pg_temp.pgtrail_revert_key AS k
              ON k.table_id = y.table_id AND k.h = pgtrail._h(y.pk) AND k.key = y.pk AND y.changed_at >= k.since
            UNION ALL
            SELECT y.* FROM g
            CROSS JOIN LATERAL (SELECT y.* FROM pgtrail.change AS y
                                WHERE y.table_id = g.table_id AND pgtrail._h(y.old_pk) = ANY (g.hs)
                                  AND y.old_pk IS NOT NULL AND y.changed_at >= v_since OFFSET 0) AS y
            JOIN pg_temp.pgtrail_revert_key AS k
              ON k.table_id = y.table_id AND k.h = pgtrail._h(y.old_pk) AND k.key = y.old_pk AND y.changed_at >= k.since
        )
        SELECT DISTINCT ON (x.id) x.id, x.txid, x.ctx, x.table_id, x.op, x.changed_at, x.pk, x.old_pk,
               CASE WHEN x.op = 'U' AND x.old_pk IS NULL AND cardinality(a.key_columns) > 0
                    THEN coalesce(x.changed_fields, ARRAY(SELECT jsonb_object_keys(x.new_values))) END
        FROM x
        JOIN pgtrail.audited_table AS a ON a.id = x.table_id
        WHERE NOT EXISTS (SELECT FROM pg_temp.pgtrail_revert_sel AS s WHERE s.id = x.id);
    ELSIF v_keys > 0 AND v_recent IS NOT NULL AND v_recent < 4 * v_keys THEN
        INSERT INTO pg_temp.pgtrail_revert_later
        WITH y AS MATERIALIZED (
            -- (By time: the partitions and the BRIN on changed_at; "+ 0" keeps
            -- the planner off the key index, which would read all of a
            -- table's changes.)
            SELECT y.* FROM pgtrail.change AS y
            WHERE y.changed_at >= v_since AND y.pk IS NOT NULL
              AND y.table_id + 0 IN (SELECT DISTINCT k.table_id FROM pg_temp.pgtrail_revert_key AS k)
              AND NOT EXISTS (SELECT FROM pg_temp.pgtrail_revert_sel AS s WHERE s.id = y.id)
        ), x AS (
            SELECT y.* FROM pg_temp.pgtrail_revert_key AS k JOIN y
              ON y.table_id = k.table_id AND pgtrail._h(y.pk) = k.h AND y.pk = k.key AND y.changed_at >= k.since
            UNION ALL
            SELECT y.* FROM pg_temp.pgtrail_revert_key AS k JOIN y
              ON y.table_id = k.table_id AND pgtrail._h(y.old_pk) = k.h AND y.old_pk = k.key AND y.changed_at >= k.since
            WHERE y.old_pk IS NOT NULL
        )
        SELECT DISTINCT ON (x.id) x.id, x.txid, x.ctx, x.table_id, x.op, x.changed_at, x.pk, x.old_pk,
               CASE WHEN x.op = 'U' AND x.old_pk IS NULL AND cardinality(a.key_columns) > 0
                    THEN coalesce(x.changed_fields, ARRAY(SELECT jsonb_object_keys(x.new_values))) END
        FROM x
        JOIN pgtrail.audited_table AS a ON a.id = x.table_id;
    ELSIF v_keys > 0 THEN
        INSERT INTO pg_temp.pgtrail_revert_later
        WITH x AS (
            SELECT y.* FROM pg_temp.pgtrail_revert_key AS k JOIN pgtrail.change AS y
              ON y.table_id = k.table_id AND pgtrail._h(y.pk) = k.h AND y.pk = k.key AND y.changed_at >= k.since
            WHERE y.changed_at >= v_since
            UNION ALL
            SELECT y.* FROM pg_temp.pgtrail_revert_key AS k JOIN pgtrail.change AS y
              ON y.table_id = k.table_id AND pgtrail._h(y.old_pk) = k.h AND y.old_pk = k.key AND y.changed_at >= k.since
            WHERE y.old_pk IS NOT NULL AND y.changed_at >= v_since
        )
        SELECT DISTINCT ON (x.id) x.id, x.txid, x.ctx, x.table_id, x.op, x.changed_at, x.pk, x.old_pk,
               CASE WHEN x.op = 'U' AND x.old_pk IS NULL AND cardinality(a.key_columns) > 0
                    THEN coalesce(x.changed_fields, ARRAY(SELECT jsonb_object_keys(x.new_values))) END
        FROM x
        JOIN pgtrail.audited_table AS a ON a.id = x.table_id
        WHERE NOT EXISTS (SELECT FROM pg_temp.pgtrail_revert_sel AS s WHERE s.id = x.id);
    END IF;
    -- TRUNCATEs outside the selection, after a selected change of their table.
    INSERT INTO pg_temp.pgtrail_revert_later
    SELECT x.id, x.txid, x.ctx, x.table_id, x.op, x.changed_at, NULL, NULL, NULL
    -- (Since the table's first selected change: a later TRUNCATE that
    -- touched none of the cells below makes no conflict.)
    FROM (SELECT d.table_id, min(d.at) AS since
          FROM (SELECT c.table_id, c.at FROM pg_temp.pgtrail_revert_change AS c
                UNION ALL
                SELECT h.table_id, h.since FROM pg_temp.pgtrail_revert_shape AS h WHERE h.since IS NOT NULL) AS d
          GROUP BY d.table_id) AS k
    -- (A TRUNCATE has no key: the key index holds it under table_id and NULL.)
    JOIN pgtrail.change AS x ON x.table_id = k.table_id AND pgtrail._h(x.pk) IS NULL AND x.pk IS NULL AND x.op = 'T'
                            AND x.changed_at >= k.since
    WHERE NOT EXISTS (SELECT FROM pg_temp.pgtrail_revert_sel AS s WHERE s.id = x.id AND s.only_key IS NULL);

    -- A later change conflicts with a row when it touched a cell the
    -- selection had touched before it. The cells each selected change
    -- touched ('*': the whole row of that key), when there are later changes.
    IF EXISTS (SELECT FROM pg_temp.pgtrail_revert_later) THEN
        INSERT INTO pg_temp.pgtrail_revert_touch
        SELECT c.table_id, c.chain, d.k, d.col, c.at, c.id
        FROM pg_temp.pgtrail_revert_change AS c
        CROSS JOIN LATERAL (SELECT c.pk AS k, '*' AS col WHERE c.whole
                            UNION ALL SELECT c.old_pk, '*' WHERE c.whole AND c.old_pk IS NOT NULL
                            UNION ALL SELECT c.pk, u.col FROM unnest(c.cols) AS u(col) WHERE NOT c.whole) AS d
        WHERE c.chain IS NOT NULL;
        INSERT INTO pg_temp.pgtrail_revert_touch
        SELECT k.table_id, k.chain, k.k_final, d.col, k.at, k.change_ids[1]
        FROM pg_temp.pgtrail_revert_chain AS k
        CROSS JOIN LATERAL (SELECT '*' AS col WHERE NOT k.ex_origin OR NOT k.ex_final
                            UNION ALL SELECT u.col FROM unnest(k.cols) AS u(col) WHERE k.ex_origin AND k.ex_final) AS d
        WHERE k.at IS NOT NULL;
        INSERT INTO pg_temp.pgtrail_revert_touch
        SELECT c.table_id, k.chain, d.k, '*', c.at, c.id
        FROM pg_temp.pgtrail_revert_change AS c
        CROSS JOIN LATERAL (VALUES (c.pk), (c.old_pk)) AS d(k)
        JOIN pg_temp.pgtrail_revert_chain AS k ON k.keyless AND k.table_id = c.table_id AND k.k_final = d.k
        WHERE c.chain IS NULL AND d.k IS NOT NULL;
        ANALYZE pg_temp.pgtrail_revert_touch;
        INSERT INTO pg_temp.pgtrail_revert_conflict (chain, table_id, key, kind, change_id, txid, ctx, at, op, columns, message)
        SELECT q.chain, q.table_id, k.k_final, 'later_change', q.id, q.txid, q.ctx, q.at, q.op, q.columns, NULL
        FROM (SELECT w.chain, x.id, x.txid, x.ctx, x.at, x.op, x.table_id,
                     array_remove(array_agg(DISTINCT CASE WHEN xc.col = '*' THEN w.col ELSE xc.col END), '*') AS columns
              FROM pg_temp.pgtrail_revert_later AS x
              CROSS JOIN LATERAL (SELECT x.pk AS k, '*' AS col WHERE x.cols IS NULL AND x.op <> 'T'
                                  UNION ALL SELECT x.old_pk, '*' WHERE x.cols IS NULL AND x.old_pk IS NOT NULL
                                  UNION ALL SELECT x.pk, u.col FROM unnest(x.cols) AS u(col)) AS xc
              JOIN pg_temp.pgtrail_revert_touch AS w
                ON w.table_id = x.table_id AND w.key = xc.k AND (w.col = '*' OR xc.col = '*' OR w.col = xc.col)
               AND (w.at, w.id) < (x.at, x.id)
              GROUP BY w.chain, x.id, x.txid, x.ctx, x.at, x.op, x.table_id
              UNION ALL
              SELECT w.chain, x.id, x.txid, x.ctx, x.at, x.op, x.table_id, NULL
              FROM pg_temp.pgtrail_revert_later AS x
              JOIN pg_temp.pgtrail_revert_touch AS w ON w.table_id = x.table_id AND (w.at, w.id) < (x.at, x.id)
              WHERE x.op = 'T'
              GROUP BY w.chain, x.id, x.txid, x.ctx, x.at, x.op, x.table_id) AS q
        JOIN pg_temp.pgtrail_revert_chain AS k ON k.chain = q.chain AND k.active;
    END IF;

    -- The live rows, for the active rows without a conflict yet: a keyed row
    -- must be there (or not) as the trail says, with the values the trail
    -- says for the columns the revert writes; the key it goes back to must
    -- be free (or freed by the revert); a table without key must have the
    -- copies the revert removes.
    FOR t IN SELECT a.* FROM pgtrail.audited_table AS a
             WHERE a.id IN (SELECT h.table_id FROM pg_temp.pgtrail_revert_shape AS h WHERE h.active > 0)
               AND to_regclass(format('%I.%I', a.table_schema, a.table_name)) IS NOT NULL LOOP
        SELECT * INTO v_shape FROM pg_temp.pgtrail_revert_shape AS h WHERE h.table_id = t.id;
        v_secret := NULL;
        IF cardinality(t.redact_columns) > 0 THEN
            SELECT value INTO v_secret FROM pgtrail.secret WHERE name = 'redaction';
        END IF;
        v_rel := format('%I.%I', t.table_schema, t.table_name);
        IF cardinality(t.key_columns) = 0 THEN
            EXECUTE format(
                'INSERT INTO pg_temp.pgtrail_revert_conflict (chain, table_id, key, kind, message) '
                'SELECT k.chain, k.table_id, k.k_final, ''outside_capture'', '
                '       format(''the trail says %%s more cop%%s of this row, the table has %%s'', -k.net, CASE WHEN k.net = -1 THEN ''y'' ELSE ''ies'' END, coalesce(l.n, 0)) '
                'FROM pg_temp.pgtrail_revert_chain AS k '
                'LEFT JOIN (SELECT r.j, count(*) AS n FROM (SELECT pgtrail._as_recorded(to_jsonb(x.*), $3, $4) AS j FROM %s AS x) AS r '
                '           WHERE r.j IN (SELECT k2.k_final FROM pg_temp.pgtrail_revert_chain AS k2 WHERE k2.table_id = $2 AND k2.active AND k2.net < 0) '
                '           GROUP BY r.j) AS l ON l.j = k.k_final '
                'WHERE k.table_id = $2 AND k.active AND k.net < 0 AND coalesce(l.n, 0) < -k.net '
                '  AND NOT EXISTS (SELECT FROM pg_temp.pgtrail_revert_conflict AS c WHERE c.chain = k.chain)', v_rel)
            USING t.ignore_columns, t.id, t, v_secret;
            CONTINUE;
        END IF;
        v_join := (SELECT string_agg(format('x.%I = p.%I', c, c), ' AND ') FROM unnest(t.key_columns) AS c);
        -- A live row as JSON, column by column (what to_jsonb(x.*) makes):
        -- a whole-row value would be built for every row of the table the
        -- join reads, this only for the rows it finds. (50 columns per call:
        -- a function takes at most 100 arguments. Text-valued columns as
        -- capture records them, by jsonb_object, without jsonb_build_object's
        -- lookup of each value's type: see pgtrail._object_sql.) Without
        -- redacted columns, the row as the trail records it is its columns
        -- but the ignored ones; else capture's markers are computed from the
        -- whole row.
        v_row := (SELECT string_agg(q.part, ' OPERATOR(pg_catalog.||) ' ORDER BY q.chunk)
                  FROM (SELECT a.chunk, pgtrail._object_sql(array_agg(a.attname ORDER BY a.attnum),
                                                            array_agg(format('x.%I', a.attname) ORDER BY a.attnum),
                                                            array_agg(pgtrail._text_valued(v_rel::regclass, a.attname) ORDER BY a.attnum)) AS part
                        FROM (SELECT a.attname::text AS attname, a.attnum, (row_number() OVER (ORDER BY a.attnum) - 1) / 50 AS chunk
                              FROM pg_attribute AS a
                              WHERE a.attrelid = v_rel::regclass AND a.attnum > 0 AND NOT a.attisdropped
                                AND (cardinality(t.redact_columns) > 0 OR NOT a.attname::text = ANY (t.ignore_columns))) AS a
                        GROUP BY a.chunk) AS q);
        IF cardinality(t.redact_columns) > 0 THEN
            v_row := format('pgtrail._as_recorded(%s, $5, $3)', v_row);
        END IF;
        -- Whether every value of a live row is a JSON scalar (no redaction
        -- marker, no column whose JSON is an array or object): then a row
        -- that contains what the trail says holds exactly those values, and
        -- no value of it needs looking at for arrays and objects.
        v_scalar := cardinality(t.redact_columns) = 0 AND pgtrail._revert_scalar_row(v_rel::regclass);
        -- Applying under refuse (pgtrail.revert_guarded), rows of the fast
        -- path (one change, no key change) whose UPDATE sets every column
        -- the trail says it holds are not compared here: that UPDATE's
        -- guard compares the same values of the live row (every value a
        -- JSON scalar: containment is equality), and a row it does not find
        -- as the trail says makes pgtrail.revert plan again with this
        -- comparison, which then lists the conflicts as before. Nor are the
        -- rows the selection created: their DELETE, written straight from
        -- the working table in such a table (see _revert_statements),
        -- finds each by its key and what the trail says it holds, with the
        -- same outcome. Not in a table with redacted columns or erasures
        -- (markers), nor in one whose foreign key ON UPDATE CASCADE the
        -- revert may carry back (its guard leaves the reference out).
        v_guard := '';
        IF v_guarded AND v_scalar
           AND NOT EXISTS (SELECT FROM pgtrail.erasure AS x WHERE x.table_id = t.id)
           AND NOT EXISTS (SELECT FROM pg_constraint AS x
                           WHERE x.conrelid = v_rel::regclass AND x.contype = 'f' AND x.confupdtype = 'c') THEN
            v_settable := (SELECT coalesce(array_agg(a.attname::text), '{}') FROM pg_attribute AS a
                           WHERE a.attrelid = v_rel::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '');
            v_always := (SELECT coalesce(array_agg(a.attname::text), '{}') FROM pg_attribute AS a
                         WHERE a.attrelid = v_rel::regclass AND a.attidentity = 'a' AND NOT a.attisdropped);
            -- (A fast path row's origin holds exactly its columns, cols:
            -- it has a column to set when they are not all key columns.)
            v_guard := format(' AND NOT ((k.at IS NOT NULL AND k.ex_origin AND cardinality(k.cols) > 0 '
                              'AND k.cols <@ %L::text[] AND NOT k.cols && %L::text[] '
                              'AND NOT k.cols <@ %L::text[]) OR NOT k.ex_origin)',
                              v_settable, v_always, t.key_columns);
        END IF;
        -- The key columns of each row, from its key's JSON: a scalar by its
        -- type's input function (a cast of the text, as
        -- jsonb_populate_record does for scalars, at a fraction of the
        -- cost), other types by jsonb_populate_record. Named pgtrail_k<n>,
        -- so that no key column shadows the working table's own.
        v_keysql := (SELECT string_agg(
                       CASE WHEN x.cast_to IS NOT NULL
                            THEN format('(k.k_final ->> %L)::%s AS %I', u.c, x.cast_to, 'pgtrail_k' || u.i)
                            ELSE format('(jsonb_populate_record(NULL::%s, k.k_final)).%I AS %I', v_rel, u.c, 'pgtrail_k' || u.i) END,
                       ', ' ORDER BY u.i)
                   FROM unnest(t.key_columns) WITH ORDINALITY AS u(c, i)
                   LEFT JOIN pg_attribute AS a ON a.attrelid = v_rel::regclass AND a.attname = u.c AND NOT a.attisdropped
                   CROSS JOIN LATERAL (SELECT pgtrail._revert_scalar_cast(a.atttypid) AS cast_to) AS x);
        -- (Not when every active row of the table is a fast path row the
        -- guards compare, as its group in pgtrail_revert_colset says: the
        -- statement would read them all to find none to compare.)
        IF v_guard = '' OR NOT pgtrail._revert_all_fast(t.id, v_shape.active)
           OR EXISTS (SELECT FROM pg_temp.pgtrail_revert_colset AS c
                      WHERE c.table_id = t.id AND c.active AND c.ex_final
                        AND NOT ((c.ex_origin AND cardinality(c.cols) > 0 AND c.cols <@ v_settable
                                  AND NOT c.cols && v_always AND NOT c.cols <@ t.key_columns)
                                 OR NOT c.ex_origin)) THEN
            -- The row where the revert expects it, and the values of the columns
            -- it writes: the live rows found by one join on the key, each made
            -- JSON once (OFFSET 0: a subquery of its own, whose JSON the query
            -- reads where it needs it, without writing the rows aside as a
            -- materialized CTE would, to a file when they outgrow work_mem).
            EXECUTE format(
                'INSERT INTO pg_temp.pgtrail_revert_conflict (chain, table_id, key, kind, columns, message) '
                'WITH l AS ('
                '    SELECT p.chain, p.table_id, p.k_final, p.expect, CASE WHEN x.%5$I IS NOT NULL THEN %4$s END AS j '
                '    FROM (SELECT k.chain, k.table_id, k.k_final, k.expect, %3$s '
                '          FROM pg_temp.pgtrail_revert_chain AS k '
                '          WHERE k.table_id = $4 AND k.active AND k.ex_final%7$s '
                '            AND NOT EXISTS (SELECT FROM pg_temp.pgtrail_revert_conflict AS c WHERE c.chain = k.chain)) AS p '
                '    LEFT JOIN %1$s AS x ON %2$s OFFSET 0) '
                'SELECT d.chain, d.table_id, d.k_final, ''outside_capture'', d.cols, '
                '       CASE WHEN d.missing THEN ''the row is not in the table, though the trail says it is'' '
                '            ELSE ''the row differs from what the trail says: '' || array_to_string(d.cols, '', '') END '
                'FROM (SELECT l.chain, l.table_id, l.k_final, l.j IS NULL AS missing, '
                -- Column by column only when the row does not simply hold every
                -- scalar value the trail says (containment is equality for scalars).
                '             CASE WHEN l.j IS NULL OR (l.j @> l.expect%6$s) THEN NULL '
                '                  ELSE (SELECT array_agg(e.key ORDER BY e.key) FROM jsonb_each(l.expect) AS e '
                '                        WHERE NOT pgtrail._revert_lost($2, e.key, e.value) '
                '                          AND (l.j -> e.key) IS DISTINCT FROM e.value AND l.j ? e.key) END AS cols '
                '      FROM l) AS d '
                'WHERE d.missing OR d.cols IS NOT NULL', v_rel,
                (SELECT string_agg(format('x.%I = p.%I', u.c, 'pgtrail_k' || u.i), ' AND ')
                 FROM unnest(t.key_columns) WITH ORDINALITY AS u(c, i)),
                v_keysql, v_row, t.key_columns[1],
                CASE WHEN NOT v_scalar THEN ' AND NOT jsonb_path_exists(l.expect, '
                                            '''$.* ? (@.type() == "array" || @.type() == "object")'')' ELSE '' END,
                v_guard)
            USING t.ignore_columns, t.redact_columns, v_secret, t.id, t;
        END IF;
        -- A row the revert deletes, or whose key it moves back, while a live
        -- row outside the revert refers to it: with ON DELETE / ON UPDATE
        -- CASCADE, SET NULL or SET DEFAULT the foreign key would carry the
        -- revert over to that row; with NO ACTION or RESTRICT it would stop
        -- the revert. Either way a conflict, named by the referencing row's
        -- last recorded change (cascade reverts that transaction too). A
        -- referencing row the revert deletes, or whose reference it puts
        -- back, is no conflict. Live rows are found by one join.
        FOR fk IN SELECT c.conname::text AS conname, c.conrelid::regclass AS child, c.confdeltype, c.confupdtype,
                         ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY AS k(n, i)
                               JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i) AS child_cols,
                         ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY AS k(n, i)
                               JOIN pg_attribute AS a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i) AS parent_cols,
                         ca.id AS child_id, ca.key_columns AS child_key, ca.ignore_columns AS child_ignore
                  FROM pg_constraint AS c
                  JOIN pg_class AS cc ON cc.oid = c.conrelid
                  JOIN pg_namespace AS cn ON cn.oid = cc.relnamespace
                  LEFT JOIN pgtrail.audited_table AS ca ON ca.table_schema = cn.nspname AND ca.table_name = cc.relname
                  -- (Only when some row may be referred to: see _revert_shape.)
                  WHERE c.contype = 'f' AND c.confrelid = v_rel::regclass AND c.conparentid = 0 AND v_shape.referable > 0 LOOP
            EXECUTE format(
                'INSERT INTO pg_temp.pgtrail_revert_conflict (chain, table_id, key, kind, change_id, txid, ctx, at, op, columns, message) '
                'WITH k AS MATERIALIZED ('
                '    SELECT k.chain, k.table_id, k.k_final, k.ex_origin, %5$s '
                '    FROM pg_temp.pgtrail_revert_chain AS k '
                '    WHERE k.table_id = $1 AND k.active AND k.ex_final AND (NOT k.ex_origin OR k.k_origin <> k.k_final) '
                '      AND NOT EXISTS (SELECT FROM pg_temp.pgtrail_revert_conflict AS x WHERE x.chain = k.chain)), '
                'r AS MATERIALIZED ('
                '    SELECT k.chain, k.table_id, k.k_final, k.ex_origin, %3$s AS child_key FROM k JOIN %1$s AS c ON %4$s) '
                'SELECT DISTINCT ON (r.chain) r.chain, r.table_id, r.k_final, ''referenced'', lc.id, lc.txid, lc.ctx, lc.changed_at, lc.op, NULL, '
                '       format(''row %%s of %%s refers to it through foreign key %%s (ON %%s %%s): %%s'', r.child_key, %1$L, %2$L, '
                '              CASE WHEN r.ex_origin THEN ''UPDATE'' ELSE ''DELETE'' END, '
                '              CASE WHEN r.ex_origin THEN %6$L ELSE %7$L END, '
                '              CASE WHEN (CASE WHEN r.ex_origin THEN %6$L ELSE %7$L END) IN (''NO ACTION'', ''RESTRICT'') '
                '                   THEN CASE WHEN r.ex_origin THEN ''moving its key back would fail'' ELSE ''deleting it would fail'' END '
                '                   ELSE CASE WHEN r.ex_origin THEN ''the key change back would carry over to that row'' '
                '                             ELSE ''the delete would carry over to that row'' END END) '
                'FROM r '
                'LEFT JOIN LATERAL (SELECT y.id, y.txid, y.ctx, y.changed_at, y.op FROM pgtrail.change AS y '
                '                   WHERE y.table_id = $2 AND pgtrail._h(y.pk) = pgtrail._h(r.child_key) AND y.pk = r.child_key '
                '                   ORDER BY y.changed_at DESC, y.id DESC LIMIT 1) AS lc ON true '
                'WHERE NOT EXISTS (SELECT FROM pg_temp.pgtrail_revert_chain AS o '
                '                  WHERE o.table_id = $2 AND o.active AND o.ex_final AND o.k_final = r.child_key '
                '                    AND (NOT o.ex_origin OR o.origin ?| $3)) '
                'ORDER BY r.chain, lc.changed_at DESC NULLS LAST',
                fk.child, fk.conname,
                CASE WHEN fk.child_id IS NULL OR cardinality(fk.child_key) = 0
                     THEN format('to_jsonb(c.*) - %L::text[]', coalesce(fk.child_ignore, '{}'))
                     ELSE 'jsonb_build_object(' || (SELECT string_agg(format('%L, c.%I', k, k), ', ') FROM unnest(fk.child_key) AS k) || ')' END,
                (SELECT string_agg(format('c.%I = k.%I', cc, 'pgtrail_v' || i), ' AND ')
                 FROM unnest(fk.child_cols) WITH ORDINALITY AS u(cc, i)),
                (SELECT string_agg(format('(jsonb_populate_record(NULL::%s, k.expect)).%I AS %I', v_rel, pc, 'pgtrail_v' || i), ', ')
                 FROM unnest(fk.parent_cols) WITH ORDINALITY AS u(pc, i)),
                pgtrail._revert_fk_action(fk.confupdtype), pgtrail._revert_fk_action(fk.confdeltype))
            USING t.id, fk.child_id, fk.child_cols;
        END LOOP;
        -- A row the revert inserts again, or whose reference it puts back,
        -- while the row it refers to is gone (a later change deleted it) and
        -- the revert does not restore it: a conflict, named by the change
        -- that removed that row (cascade reverts it too).
        FOR fk IN SELECT c.conname::text AS conname, c.confrelid::regclass AS parent,
                         ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY AS k(n, i)
                               JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i) AS child_cols,
                         ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY AS k(n, i)
                               JOIN pg_attribute AS a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i) AS parent_cols,
                         pa.id AS parent_id, pa.key_columns AS parent_key
                  FROM pg_constraint AS c
                  JOIN pg_class AS pc ON pc.oid = c.confrelid
                  JOIN pg_namespace AS pn ON pn.oid = pc.relnamespace
                  LEFT JOIN pgtrail.audited_table AS pa ON pa.table_schema = pn.nspname AND pa.table_name = pc.relname
                  WHERE c.contype = 'f' AND c.conrelid = v_rel::regclass AND c.conparentid = 0 LOOP
            EXECUTE format(
                'INSERT INTO pg_temp.pgtrail_revert_conflict (chain, table_id, key, kind, change_id, txid, ctx, at, op, columns, message) '
                'WITH k AS MATERIALIZED ('
                '    SELECT k.chain, k.table_id, CASE WHEN k.ex_final THEN k.k_final ELSE k.k_origin END AS key, %3$s '
                '    FROM pg_temp.pgtrail_revert_chain AS k '
                '    WHERE k.table_id = $1 AND k.active AND k.ex_origin AND k.origin ?& $2 '
                '      AND NOT EXISTS (SELECT FROM pg_temp.pgtrail_revert_conflict AS x WHERE x.chain = k.chain)), '
                'm AS MATERIALIZED ('
                '    SELECT k.*, jsonb_build_object(%4$s) AS ref FROM k '
                '    WHERE %5$s AND NOT EXISTS (SELECT FROM %1$s AS p WHERE %6$s)) '
                'SELECT m.chain, m.table_id, m.key, ''parent_gone'', lc.id, lc.txid, lc.ctx, lc.changed_at, lc.op, $2, '
                '       format(''the row it refers to through foreign key %%s, %%s of %%s, is gone%%s: putting this row back would fail'', '
                '              %2$L, m.ref, %1$L, CASE WHEN lc.id IS NOT NULL THEN format('' (%%s by change %%s)'', '
                '                  CASE lc.op WHEN ''D'' THEN ''deleted'' WHEN ''T'' THEN ''truncated'' ELSE ''its key changed'' END, lc.id) ELSE '''' END) '
                'FROM m '
                'LEFT JOIN LATERAL (SELECT y.id, y.txid, y.ctx, y.changed_at, y.op FROM pgtrail.change AS y '
                '                   WHERE y.table_id = $3 AND ((pgtrail._h(y.pk) = pgtrail._h(%7$s) AND y.pk = %7$s) '
                '                                           OR (y.old_pk IS NOT NULL AND pgtrail._h(y.old_pk) = pgtrail._h(%7$s) AND y.old_pk = %7$s)) '
                '                   ORDER BY y.changed_at DESC, y.id DESC LIMIT 1) AS lc ON true '
                'WHERE NOT EXISTS (SELECT FROM pg_temp.pgtrail_revert_chain AS o '
                '                  WHERE o.table_id = $3 AND o.active AND o.ex_origin AND (o.k_origin || o.origin) @> m.ref)',
                fk.parent, fk.conname,
                (SELECT string_agg(format('(jsonb_populate_record(NULL::%s, k.origin)).%I AS %I', v_rel, cc, 'pgtrail_v' || i), ', ')
                 FROM unnest(fk.child_cols) WITH ORDINALITY AS u(cc, i)),
                (SELECT string_agg(format('%L, to_jsonb(k.%I)', pc, 'pgtrail_v' || i), ', ')
                 FROM unnest(fk.parent_cols) WITH ORDINALITY AS u(pc, i)),
                (SELECT string_agg(format('k.%I IS NOT NULL', 'pgtrail_v' || i), ' AND ')
                 FROM unnest(fk.child_cols) WITH ORDINALITY AS u(cc, i)),
                (SELECT string_agg(format('p.%I = k.%I', pc, 'pgtrail_v' || i), ' AND ')
                 FROM unnest(fk.parent_cols) WITH ORDINALITY AS u(pc, i)),
                -- The parent's key, when the foreign key names exactly its key columns.
                CASE WHEN fk.parent_id IS NOT NULL AND cardinality(fk.parent_key) > 0
                          AND ARRAY(SELECT x FROM unnest(fk.parent_key) AS x ORDER BY x)
                              = ARRAY(SELECT x FROM unnest(fk.parent_cols) AS x ORDER BY x)
                     THEN 'm.ref' ELSE 'NULL::jsonb' END)
            USING t.id, fk.child_cols, fk.parent_id;
        END LOOP;
        -- The key a row goes back to, free or freed.
        CONTINUE WHEN v_shape.back = 0;
        EXECUTE format(
            'INSERT INTO pg_temp.pgtrail_revert_conflict (chain, table_id, key, kind, message) '
            'SELECT k.chain, k.table_id, k.k_origin, ''outside_capture'', '
            '       ''another row has the key this row goes back to, though the trail says it is free'' '
            'FROM pg_temp.pgtrail_revert_chain AS k '
            'WHERE k.table_id = $1 AND k.active AND k.ex_origin AND (NOT k.ex_final OR k.k_origin <> k.k_final) '
            '  AND EXISTS (SELECT FROM jsonb_populate_record(NULL::%1$s, k.k_origin) AS p JOIN %1$s AS x ON %2$s) '
            '  AND NOT EXISTS (SELECT FROM pg_temp.pgtrail_revert_chain AS o '
            '                  WHERE o.table_id = k.table_id AND o.active AND o.ex_final AND o.k_final = k.k_origin '
            '                    AND (NOT o.ex_origin OR o.k_origin <> o.k_final)) '
            '  AND NOT EXISTS (SELECT FROM pg_temp.pgtrail_revert_conflict AS c WHERE c.chain = k.chain)', v_rel, v_join)
        USING t.id;
    END LOOP;
END
$fn$;

-- The definitions (name and type, in the table's order) of the columns
-- p_cols and the key's p_key of table p_relid: what jsonb_to_record(set)
-- reads a restore's rows as.
CREATE OR REPLACE FUNCTION pgtrail._revert_coldefs(p_relid oid, p_cols text[], p_key text[])
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attnum)
    FROM pg_attribute AS a
    WHERE a.attrelid = p_relid AND a.attnum > 0 AND NOT a.attisdropped
      AND (a.attname::text = ANY (p_cols) OR a.attname::text = ANY (p_key))
$fn$;

-- The key's columns p_key and the columns p_cols of table p_relid, read
-- from a row of pgtrail_revert_chain (c) as jsonb_to_record(c.k_final ||
-- c.origin) AS r(_revert_coldefs) reads them, but by ->> and a cast
-- (pgtrail._revert_scalar_cast): no function scan and no concatenated
-- object per row (about 1 µs a row of a bulk revert, bench/REVERT.md).
-- The key's columns come from c.k_final (they did not change: an UPDATE
-- of the fast path moves no key), the others from c.origin. For a table
-- whose columns are all JSON scalars (pgtrail._revert_scalar_row).
CREATE OR REPLACE FUNCTION pgtrail._revert_scalar_read_sql(p_relid oid, p_cols text[], p_key text[])
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT string_agg(format('(c.%s ->> %L)::%s AS %I',
                             CASE WHEN a.attname::text = ANY (p_key) THEN 'k_final' ELSE 'origin' END,
                             a.attname, pgtrail._revert_scalar_cast(a.atttypid), a.attname),
                      ', ' ORDER BY a.attnum)
    FROM pg_attribute AS a
    WHERE a.attrelid = p_relid AND a.attnum > 0 AND NOT a.attisdropped
      AND (a.attname::text = ANY (p_key) OR a.attname::text = ANY (p_cols))
$fn$;

-- The UPDATE that restores columns p_cols of rows of p_rel (an SQL name)
-- from the statement's data ($1: rows of the key's and those columns'
-- values, each with what the row must hold beside them), as the plan shows
-- and runs it. The rows are read with the table's column types (p_coldefs,
-- the key's and those columns' definitions), as jsonb_populate_recordset
-- would, but only the columns the data holds; p_join matches them to the
-- live row by key.
CREATE OR REPLACE FUNCTION pgtrail._revert_restore_sql(p_rel text, p_join text, p_cols text[], p_coldefs text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT format('UPDATE %1$s AS t SET (%2$s) = ROW(%3$s) '
                  'FROM jsonb_to_recordset($1) AS k(%6$s, pgtrail_expect jsonb) '
                  'WHERE %4$s AND jsonb_build_object(%5$s) @> k.pgtrail_expect',
                  p_rel,
                  (SELECT string_agg(quote_ident(c), ', ') FROM unnest(p_cols) AS c),
                  (SELECT string_agg('k.' || quote_ident(c), ', ') FROM unnest(p_cols) AS c),
                  p_join,
                  (SELECT string_agg(format('%L, t.%I', c, c), ', ') FROM unnest(p_cols) AS c),
                  p_coldefs)
$fn$;

-- The ids of the changes one statement of a revert undoes: the first
-- change of each of its rows (p_first_ids), and, for its rows changed more
-- than once (their chains, NULL when there are none), every change of
-- theirs; sorted, each once.
CREATE OR REPLACE FUNCTION pgtrail._revert_change_ids(p_first_ids bigint[], p_chains bigint[])
RETURNS bigint[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF p_chains IS NULL THEN
        RETURN p_first_ids;
    END IF;
    RETURN (SELECT array_agg(i ORDER BY i)
            FROM (SELECT DISTINCT u.i
                  FROM (SELECT f AS i FROM unnest(p_first_ids) AS f
                        UNION ALL
                        SELECT m FROM unnest(p_chains) AS gc(chain)
                        JOIN pg_temp.pgtrail_revert_chain AS k ON k.chain = gc.chain, unnest(k.change_ids) AS m) AS u) AS ii);
END
$fn$;

-- The order of one table's key moves (the rows of pgtrail_revert_back
-- whose key goes back), so that no move takes a key another row still
-- has: a unique index that is not deferrable is checked row by row, even
-- within one statement (when every unique index of the table belongs to a
-- deferrable constraint, pgtrail.revert defers them and any order does).
-- The row that has the key a row goes back to is its holder; a row with
-- none moves in step 1, a row whose holder moves in step n moves in step
-- n + 1 (chains: a row moved into the key another left). Rows on a cycle
-- (keys swapped, rotated) and rows more than 8 steps down a chain go
-- through a temporary key: there in step 0, back to their own in the step
-- after all others (two statements however long the chain). A temporary
-- key differs from the row's key in one key column (see _revert_park; the
-- first column, ones that are no foreign key first, whose temporary values
-- the table's constraints accept). Without such a column, a long chain
-- takes a step per row, and a cycle is a conflict (key_cycle) that says
-- why no temporary key would do.
CREATE OR REPLACE FUNCTION pgtrail._revert_move_order(t pgtrail.audited_table)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_rel   text := format('%I.%I', t.table_schema, t.table_name);
    v_relid regclass := format('%I.%I', t.table_schema, t.table_name)::regclass;
    v_lvl   integer := 1;
    v_n     bigint;
    v_why   text;
    v_whys  text[] := '{}';
    c       record;
BEGIN
    UPDATE pg_temp.pgtrail_revert_back AS b SET holder = NULL, lvl = NULL, park = NULL
    WHERE b.holder IS NOT NULL OR b.lvl IS NOT NULL OR b.park IS NOT NULL;
    -- (Unique checks all deferred: one step.)
    IF NOT EXISTS (SELECT FROM pg_index AS i
                   WHERE i.indrelid = v_relid AND i.indisunique
                     AND NOT EXISTS (SELECT FROM pg_constraint AS x
                                     WHERE x.conrelid = v_relid AND x.conindid = i.indexrelid AND x.condeferrable)) THEN
        RETURN;
    END IF;
    UPDATE pg_temp.pgtrail_revert_back AS b SET holder = h.chain
    FROM pg_temp.pgtrail_revert_back AS h
    WHERE b.moved AND b.ex_final AND b.cols IS NOT NULL
      AND h.moved AND h.ex_final AND h.cols IS NOT NULL
      AND h.k_final = b.k_origin AND h.chain <> b.chain;
    IF NOT FOUND THEN
        -- (No row goes back to a key another row has: one step.)
        RETURN;
    END IF;
    UPDATE pg_temp.pgtrail_revert_back AS b SET lvl = 1
    WHERE b.moved AND b.ex_final AND b.cols IS NOT NULL AND b.holder IS NULL;
    LOOP
        UPDATE pg_temp.pgtrail_revert_back AS b SET lvl = v_lvl + 1
        FROM pg_temp.pgtrail_revert_back AS h
        WHERE b.lvl IS NULL AND b.holder = h.chain AND h.lvl = v_lvl;
        EXIT WHEN NOT FOUND;
        v_lvl := v_lvl + 1;
        EXIT WHEN v_lvl >= 8;
    END LOOP;
    SELECT count(*) INTO v_n FROM pg_temp.pgtrail_revert_back AS b WHERE b.holder IS NOT NULL AND b.lvl IS NULL;
    IF v_n = 0 THEN
        RETURN;
    END IF;

    -- The temporary keys: the first column whose values the table takes.
    FOR c IN SELECT u.c AS col, a.atttypid::regtype AS typ, a.atttypmod AS typmod, a.attnum
             FROM unnest(t.key_columns) WITH ORDINALITY AS u(c, i)
             JOIN pg_attribute AS a ON a.attrelid = v_relid AND a.attname = u.c AND NOT a.attisdropped
             WHERE a.attgenerated = '' AND a.attidentity <> 'a'
             ORDER BY EXISTS (SELECT FROM pg_constraint AS f
                              WHERE f.conrelid = v_relid AND f.contype = 'f' AND a.attnum = ANY (f.conkey)),
                      -- (Rows of other tables may point at this one.)
                      EXISTS (SELECT FROM pg_constraint AS f
                              WHERE f.confrelid = v_relid AND f.contype = 'f' AND a.attnum = ANY (f.confkey)
                                AND NOT (f.condeferrable AND f.confupdtype = 'a')), u.i LOOP
        v_why := pgtrail._revert_park(t, c.col, c.typ, c.typmod, c.attnum, v_n);
        EXIT WHEN v_why IS NULL;
        v_whys := v_whys || v_why;
    END LOOP;

    IF EXISTS (SELECT FROM pg_temp.pgtrail_revert_back AS b WHERE b.park IS NOT NULL) THEN
        -- Parked rows go back after every other move.
        UPDATE pg_temp.pgtrail_revert_back AS b SET lvl = v_lvl + 1 WHERE b.park IS NOT NULL;
        RETURN;
    END IF;
    -- No temporary key: chains take a step per row; cycles cannot be undone.
    LOOP
        UPDATE pg_temp.pgtrail_revert_back AS b SET lvl = v_lvl + 1
        FROM pg_temp.pgtrail_revert_back AS h
        WHERE b.lvl IS NULL AND b.holder = h.chain AND h.lvl = v_lvl;
        EXIT WHEN NOT FOUND;
        v_lvl := v_lvl + 1;
    END LOOP;
    INSERT INTO pg_temp.pgtrail_revert_conflict (chain, table_id, key, kind, columns, message)
    SELECT b.chain, t.id, b.k_final, 'key_cycle', t.key_columns,
           CASE WHEN cardinality(v_whys) = 0
                THEN format('this row and others take each other''s keys (a cycle of key changes), and no key column of %s '
                            'can hold a temporary key (an integer, numeric, text, varchar or uuid column): revert these rows in steps',
                            v_rel)
                ELSE format('this row and others take each other''s keys (a cycle of key changes), and no temporary key of %s '
                            'would be accepted (%s): revert these rows in steps',
                            v_rel, array_to_string(v_whys, '; ')) END
    FROM pg_temp.pgtrail_revert_back AS b
    WHERE b.holder IS NOT NULL AND b.lvl IS NULL;
END
$fn$;

-- Temporary keys in column p_col for the rows of pgtrail_revert_back that
-- go through one (holder, no step yet; p_n of them): b.park, the row's key
-- with another value in p_col. An integer or numeric above the largest
-- value the table and the revert's keys have (below the smallest, if that
-- would not fit the type); a text, varchar or uuid made from the row's key
-- (as long as a varchar(n) takes, and none in use). Then the values are
-- checked as the table would check them, with the row as it is: its CHECK
-- constraints on the column and its foreign keys through the column that
-- are not deferrable (pgtrail.revert defers the others); and no row of
-- another table may point at a row through the column by a foreign key
-- that is not deferred (not deferrable, or RESTRICT) or carries the
-- temporary key over to it (CASCADE, SET NULL, SET DEFAULT): the first
-- would fail at the end of the statement that parks the row, the second
-- would change that row behind the revert's back. NULL when every row
-- has one; else why not (and no row has one).
CREATE OR REPLACE FUNCTION pgtrail._revert_park(
    t pgtrail.audited_table, p_col text, p_type regtype, p_typmod integer, p_attnum smallint, p_n bigint)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_rel   text := format('%I.%I', t.table_schema, t.table_name);
    v_relid regclass := format('%I.%I', t.table_schema, t.table_name)::regclass;
    v_join  text;
    v_rows  text;
    v_max   numeric;
    v_min   numeric;
    v_bound numeric;
    v_low   numeric;
    v_step  numeric := 1;
    v_scale integer;
    v_len   integer;
    v_bad   boolean;
    v_why   text;
    x       record;
BEGIN
    IF p_type IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype, 'numeric'::regtype) THEN
        EXECUTE format('SELECT max(x.%1$I)::numeric, min(x.%1$I)::numeric FROM %2$s AS x', p_col, v_rel)
            INTO v_max, v_min;
        SELECT greatest(v_max, max((k.k_origin ->> p_col)::numeric), max((k.k_final ->> p_col)::numeric)),
               least(v_min, min((k.k_origin ->> p_col)::numeric), min((k.k_final ->> p_col)::numeric))
        INTO v_max, v_min
        FROM pg_temp.pgtrail_revert_chain AS k WHERE k.table_id = t.id AND NOT k.keyless;
        v_max := floor(coalesce(v_max, 0));
        v_min := ceil(coalesce(v_min, 0));
        v_bound := CASE p_type WHEN 'int2'::regtype THEN 32767 WHEN 'int4'::regtype THEN 2147483647
                               WHEN 'int8'::regtype THEN 9223372036854775807
                   END;
        v_low := -v_bound - 1;
        IF p_type = 'numeric'::regtype AND p_typmod >= 4 THEN
            -- numeric(p, s): p - s digits before the point. The scale is an
            -- 11-bit signed number (negative from PostgreSQL 15 on: values
            -- rounded to tens, hundreds...): temporary keys then step by
            -- 10 ^ -s, which the column keeps as they are.
            v_scale := (((p_typmod - 4) & 2047) # 1024) - 1024;
            v_step := round(10::numeric ^ greatest(-v_scale, 0));
            v_bound := 10::numeric ^ greatest(((p_typmod - 4) >> 16) - v_scale, 0) - v_step;
            v_low := -v_bound;
            -- (Multiples of the step, as every value of the column is.)
            v_max := floor(v_max / v_step) * v_step;
            v_min := ceil(v_min / v_step) * v_step;
        END IF;
        IF v_bound IS NULL OR v_max + p_n * v_step <= v_bound THEN
            UPDATE pg_temp.pgtrail_revert_back AS b SET park = b.k_final || jsonb_build_object(p_col, v_max + r.i * v_step)
            FROM (SELECT b2.chain, row_number() OVER (ORDER BY b2.chain) AS i
                  FROM pg_temp.pgtrail_revert_back AS b2 WHERE b2.holder IS NOT NULL AND b2.lvl IS NULL) AS r
            WHERE b.chain = r.chain;
        ELSIF v_min - p_n * v_step >= v_low THEN
            UPDATE pg_temp.pgtrail_revert_back AS b SET park = b.k_final || jsonb_build_object(p_col, v_min - r.i * v_step)
            FROM (SELECT b2.chain, row_number() OVER (ORDER BY b2.chain) AS i
                  FROM pg_temp.pgtrail_revert_back AS b2 WHERE b2.holder IS NOT NULL AND b2.lvl IS NULL) AS r
            WHERE b.chain = r.chain;
        ELSE
            RETURN format('%I: no %s values free above or below its values', p_col, p_n);
        END IF;
    ELSIF p_type IN ('text'::regtype, 'varchar'::regtype, 'uuid'::regtype) THEN
        v_len := CASE WHEN p_type = 'varchar'::regtype AND p_typmod > 4 THEN p_typmod - 4 END;
        UPDATE pg_temp.pgtrail_revert_back AS b
        SET park = b.k_final || jsonb_build_object(p_col,
                       CASE WHEN p_type = 'uuid'::regtype THEN md5('pgtrail revert ' || b.k_final::text)::uuid::text
                            WHEN v_len IS NULL OR v_len >= 47 THEN 'pgtrail-revert-' || md5(b.k_final::text)
                            ELSE left(md5('pgtrail revert ' || b.k_final::text), v_len) END)
        WHERE b.holder IS NOT NULL AND b.lvl IS NULL;
        -- (Free and distinct, as they all but certainly are: else none.)
        EXECUTE format('SELECT EXISTS (SELECT FROM %1$s AS x WHERE x.%2$I::text IN '
                       '(SELECT b.park ->> %3$L FROM pg_temp.pgtrail_revert_back AS b WHERE b.park IS NOT NULL))',
                       v_rel, p_col, p_col) INTO v_bad;
        IF v_bad OR EXISTS (SELECT FROM pg_temp.pgtrail_revert_chain AS k
                            JOIN pg_temp.pgtrail_revert_back AS b ON b.park IS NOT NULL
                             AND (k.k_origin ->> p_col) = (b.park ->> p_col)
                            WHERE k.table_id = t.id)
           OR (SELECT count(DISTINCT b.park ->> p_col) <> count(*) FROM pg_temp.pgtrail_revert_back AS b
               WHERE b.park IS NOT NULL) THEN
            UPDATE pg_temp.pgtrail_revert_back AS b SET park = NULL WHERE b.park IS NOT NULL;
            RETURN format('%I: the temporary values %s are in use', p_col,
                          CASE WHEN v_len < 47 THEN format('short enough for %s', format_type(p_type, p_typmod))
                               ELSE 'made from the keys' END);
        END IF;
    ELSE
        RETURN format('%I: a %s cannot hold a temporary key', p_col, format_type(p_type, p_typmod));
    END IF;

    -- The rows as they would be with their temporary keys, for the checks.
    v_join := (SELECT string_agg(format('pgtrail_t.%I = pgtrail_k.%I', c, c), ' AND ') FROM unnest(t.key_columns) AS c);
    v_rows := format('SELECT (jsonb_populate_record(pgtrail_t.*, pgtrail_b.park)).* '
                     'FROM pg_temp.pgtrail_revert_back AS pgtrail_b '
                     'CROSS JOIN LATERAL jsonb_populate_record(NULL::%1$s, pgtrail_b.k_final) AS pgtrail_k '
                     'JOIN %1$s AS pgtrail_t ON %2$s '
                     'WHERE pgtrail_b.park IS NOT NULL', v_rel, v_join);
    FOR x IN SELECT c.conname, c.contype, pg_get_expr(c.conbin, c.conrelid) AS expr,
                    c.confrelid::regclass::text AS parent,
                    ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY AS k(n, i)
                          JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i) AS child_cols,
                    ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY AS k(n, i)
                          JOIN pg_attribute AS a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i) AS parent_cols
             FROM pg_constraint AS c
             WHERE c.conrelid = v_relid AND p_attnum = ANY (c.conkey)
               AND (c.contype = 'c' OR (c.contype = 'f' AND NOT c.condeferrable))
             ORDER BY c.conname LOOP
        BEGIN
            IF x.contype = 'c' THEN
                EXECUTE format('SELECT EXISTS (SELECT FROM (%s) AS pgtrail_x WHERE NOT coalesce((%s), true))', v_rows, x.expr)
                    INTO v_bad;
                v_why := format('%I: check constraint %I', p_col, x.conname);
            ELSE
                EXECUTE format('SELECT EXISTS (SELECT FROM (%s) AS pgtrail_x WHERE %s AND NOT EXISTS '
                               '(SELECT FROM %s AS pgtrail_p WHERE %s))',
                               v_rows,
                               (SELECT string_agg(format('pgtrail_x.%I IS NOT NULL', c), ' AND ') FROM unnest(x.child_cols) AS c),
                               x.parent,
                               (SELECT string_agg(format('pgtrail_p.%I = pgtrail_x.%I', p, c), ' AND ')
                                FROM unnest(x.parent_cols, x.child_cols) AS u(p, c)))
                    INTO v_bad;
                v_why := format('%I: foreign key %I (not deferrable) to %s', p_col, x.conname, x.parent);
            END IF;
        EXCEPTION WHEN OTHERS THEN
            v_bad := true;
            v_why := format('%I: constraint %I (%s)', p_col, x.conname, SQLERRM);
        END;
        IF v_bad THEN
            UPDATE pg_temp.pgtrail_revert_back AS b SET park = NULL WHERE b.park IS NOT NULL;
            RETURN v_why;
        END IF;
    END LOOP;
    -- Rows of other tables pointing at the parked rows, as they are now.
    v_rows := format('SELECT pgtrail_t.* '
                     'FROM pg_temp.pgtrail_revert_back AS pgtrail_b '
                     'CROSS JOIN LATERAL jsonb_populate_record(NULL::%1$s, pgtrail_b.k_final) AS pgtrail_k '
                     'JOIN %1$s AS pgtrail_t ON %2$s '
                     'WHERE pgtrail_b.park IS NOT NULL', v_rel, v_join);
    FOR x IN SELECT c.conname, c.conrelid::regclass::text AS child, c.confupdtype, c.condeferrable,
                    ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY AS k(n, i)
                          JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i) AS child_cols,
                    ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY AS k(n, i)
                          JOIN pg_attribute AS a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i) AS parent_cols
             FROM pg_constraint AS c
             WHERE c.confrelid = v_relid AND c.contype = 'f' AND c.conparentid = 0 AND p_attnum = ANY (c.confkey)
               AND NOT (c.condeferrable AND c.confupdtype = 'a')
             ORDER BY c.conname LOOP
        BEGIN
            EXECUTE format('SELECT EXISTS (SELECT FROM (%s) AS pgtrail_x JOIN %s AS pgtrail_c ON %s)',
                           v_rows, x.child,
                           (SELECT string_agg(format('pgtrail_c.%I = pgtrail_x.%I', c, p), ' AND ')
                            FROM unnest(x.child_cols, x.parent_cols) AS u(c, p)))
                INTO v_bad;
            v_why := format('%I: rows of %s point at these rows through foreign key %I (%s)', p_col, x.child, x.conname,
                            CASE WHEN x.confupdtype IN ('a', 'r')
                                 THEN format('ON UPDATE %s, not deferrable: a temporary key would leave them pointing at no row',
                                             pgtrail._revert_fk_action(x.confupdtype))
                                 ELSE format('ON UPDATE %s: a temporary key would change them too',
                                             pgtrail._revert_fk_action(x.confupdtype)) END);
        EXCEPTION WHEN OTHERS THEN
            v_bad := true;
            v_why := format('%I: foreign key %I of %s (%s)', p_col, x.conname, x.child, SQLERRM);
        END;
        IF v_bad THEN
            UPDATE pg_temp.pgtrail_revert_back AS b SET park = NULL WHERE b.park IS NOT NULL;
            RETURN v_why;
        END IF;
    END LOOP;
    RETURN NULL;
END
$fn$;

-- Key cycles that no temporary key can break, as conflicts (key_cycle),
-- found with the other conflicts so that the policy decides about them as
-- about the others: refuse lists them, skip leaves their rows as they are
-- (every row of the cycle, and the rows waiting for a key one of them
-- has). The order of the moves, worked out from the rows whose key goes
-- back, is kept in pgtrail_revert_moves: the last round's is the order of
-- the statements (a round with conflicts is followed by another, or by no
-- statements at all).
CREATE OR REPLACE FUNCTION pgtrail._revert_key_cycles()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    t pgtrail.audited_table;
BEGIN
    PERFORM pgtrail._revert_clear('pgtrail_revert_moves');
    FOR t IN SELECT a.* FROM pgtrail.audited_table AS a
             WHERE a.id IN (SELECT h.table_id FROM pg_temp.pgtrail_revert_shape AS h WHERE h.moves > 0)
             ORDER BY a.id LOOP
        PERFORM pgtrail._revert_clear('pgtrail_revert_back');
        INSERT INTO pg_temp.pgtrail_revert_back (chain, ex_final, moved, k_origin, k_final, cols)
        SELECT k.chain, true, true, k.k_origin, k.k_final, t.key_columns
        FROM pg_temp.pgtrail_revert_chain AS k
        WHERE k.table_id = t.id AND k.active AND NOT k.keyless AND k.ex_origin AND k.ex_final
          AND k.k_origin <> k.k_final;
        PERFORM pgtrail._revert_move_order(t);
        INSERT INTO pg_temp.pgtrail_revert_moves (table_id, chain, holder, lvl, park)
        SELECT t.id, b.chain, b.holder, b.lvl, b.park
        FROM pg_temp.pgtrail_revert_back AS b
        WHERE b.holder IS NOT NULL OR b.lvl IS NOT NULL OR b.park IS NOT NULL;
    END LOOP;
END
$fn$;

-- The statements of the plan, into pg_temp.pgtrail_revert_stmt: per table,
-- one per kind and set of columns, with its rows as a JSON array; the
-- values that cannot be restored, into pg_temp.pgtrail_revert_lost.
CREATE OR REPLACE FUNCTION pgtrail._revert_statements()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    t         pgtrail.audited_table;
    v_rel     text;
    v_relid   regclass;
    v_join    text;
    v_cols    text[];
    v_writable text[];
    v_identity text[];
    v_generated text[];
    v_always  text[];
    g         record;
    v_ignored text;
    v_clean   boolean;
    -- Whether pgtrail.revert is planning to apply (see pgtrail.revert).
    v_apply   boolean := coalesce(current_setting('pgtrail.revert_applying', true), '') = 'on';
    v_direct  boolean;
    v_one     boolean;
    v_every   boolean;
    v_member  text;
    v_coldefs text;
    v_shape   record;
BEGIN
    -- (run_sql, run_rows, run_lo and run_hi: a statement pgtrail.revert
    -- runs straight from the working table of rows, see below.)
    IF to_regclass('pg_temp.pgtrail_revert_stmt') IS NULL THEN
        CREATE TEMP TABLE pgtrail_revert_stmt (
            grp serial, table_id integer, kind text, cols text[], sql text, data jsonb, keys jsonb,
            change_ids bigint[], rows bigint, note text, step integer, lvl integer, what text,
            run_sql text, run_rows text, run_lo bigint, run_hi bigint) ON COMMIT DROP;
        -- (A statement's data holds all its rows, megabytes for a large
        -- revert: compressing it costs more than storing it as it is.)
        ALTER TABLE pg_temp.pgtrail_revert_stmt ALTER COLUMN data SET STORAGE EXTERNAL,
            ALTER COLUMN keys SET STORAGE EXTERNAL, ALTER COLUMN change_ids SET STORAGE EXTERNAL;
    END IF;
    IF to_regclass('pg_temp.pgtrail_revert_lost') IS NULL THEN
        CREATE TEMP TABLE pgtrail_revert_lost (
            table_id integer, key jsonb, kind text, columns text[], change_ids bigint[], why text) ON COMMIT DROP;
    END IF;
    -- Per row: the columns it gets back (in jsonb's key order, which is
    -- canonical: rows with the same columns group together), their values
    -- and what the row must hold now; the columns that cannot be written.
    -- (pg_temp.pgtrail_revert_back: see _revert_scratch.)
    PERFORM pgtrail._revert_clear('pgtrail_revert_stmt', 'pgtrail_revert_lost');

    -- A row whose reference to a parent an ON UPDATE CASCADE foreign key
    -- changed, when the revert puts that parent's referenced columns back
    -- (a key moved back, a column restored): the parent's statement
    -- carries the reference back too, before or after the row's own
    -- statement runs. So that statement does not expect the reference it
    -- has now (the row would not be found as planned), only the row's other
    -- columns; it still writes the reference, to what it already is or will
    -- be. The row matches when the columns of its reference that changed
    -- are those the parent's change changed, and went exactly from the
    -- parent's old values to its new ones (the columns neither changed are
    -- not compared: at worst a row is matched to a parent it does not refer
    -- to, and its statement writes the same values with a looser last
    -- check). The conflicts were found before, with what the row holds now.
    -- (Rows and parents each matched by one join, per foreign key.)
    WITH fk AS MATERIALIZED (
        SELECT x.oid AS fk, ca.id AS child_id, pa.id AS parent_id,
               ARRAY(SELECT a.attname::text FROM unnest(x.conkey) WITH ORDINALITY AS u(n, i)
                     JOIN pg_attribute AS a ON a.attrelid = x.conrelid AND a.attnum = u.n ORDER BY u.i) AS child_cols,
               ARRAY(SELECT a.attname::text FROM unnest(x.confkey) WITH ORDINALITY AS u(n, i)
                     JOIN pg_attribute AS a ON a.attrelid = x.confrelid AND a.attnum = u.n ORDER BY u.i) AS parent_cols,
               ca.key_columns AS child_key
        FROM pg_constraint AS x
        JOIN pg_class AS cc ON cc.oid = x.conrelid
        JOIN pg_namespace AS cn ON cn.oid = cc.relnamespace
        JOIN pgtrail.audited_table AS ca ON ca.table_schema = cn.nspname AND ca.table_name = cc.relname
        JOIN pg_class AS pc ON pc.oid = x.confrelid
        JOIN pg_namespace AS pn ON pn.oid = pc.relnamespace
        JOIN pgtrail.audited_table AS pa ON pa.table_schema = pn.nspname AND pa.table_name = pc.relname
        WHERE x.contype = 'f' AND x.confupdtype = 'c' AND x.conparentid = 0
          AND cardinality(ca.key_columns) > 0
          AND EXISTS (SELECT FROM pg_temp.pgtrail_revert_chain AS p
                      WHERE p.table_id = pa.id AND p.active AND p.ex_origin AND p.ex_final)
          AND EXISTS (SELECT FROM pg_temp.pgtrail_revert_chain AS c
                      WHERE c.table_id = ca.id AND c.active AND c.ex_origin AND c.ex_final)),
    c AS MATERIALIZED (
        SELECT fk.fk, fk.child_cols, c.chain,
               ARRAY(SELECT CASE WHEN c.origin ? u.cc THEN c.expect -> u.cc END
                     FROM unnest(fk.child_cols) WITH ORDINALITY AS u(cc, i) ORDER BY u.i) AS now,
               ARRAY(SELECT c.origin -> u.cc FROM unnest(fk.child_cols) WITH ORDINALITY AS u(cc, i) ORDER BY u.i) AS was
        FROM fk
        JOIN pg_temp.pgtrail_revert_chain AS c ON c.table_id = fk.child_id
        WHERE c.active AND c.ex_origin AND c.ex_final AND c.k_origin = c.k_final
          AND c.origin ?| fk.child_cols AND NOT fk.child_cols && fk.child_key),
    p AS MATERIALIZED (
        SELECT fk.fk,
               v.now, v.was
        FROM fk
        JOIN pg_temp.pgtrail_revert_chain AS p ON p.table_id = fk.parent_id
        -- (A column the parent keeps as it is: NULL on both sides.)
        CROSS JOIN LATERAL (
            SELECT array_agg(CASE WHEN w.now IS DISTINCT FROM w.was THEN w.now END ORDER BY w.i) AS now,
                   array_agg(CASE WHEN w.now IS DISTINCT FROM w.was THEN w.was END ORDER BY w.i) AS was
            FROM (SELECT u.i, (p.k_final || coalesce(p.expect, '{}')) -> u.pc AS now,
                         (p.k_final || coalesce(p.expect, '{}') || p.k_origin || coalesce(p.origin, '{}')) -> u.pc AS was
                  FROM unnest(fk.parent_cols) WITH ORDINALITY AS u(pc, i)) AS w) AS v
        WHERE p.active AND p.ex_origin AND p.ex_final)
    UPDATE pg_temp.pgtrail_revert_chain AS k SET expect = k.expect - f.cols
    FROM (SELECT c.chain, array_agg(DISTINCT u.cc) AS cols
          FROM c
          JOIN p ON p.fk = c.fk AND p.now = c.now AND p.was = c.was
          CROSS JOIN LATERAL unnest(c.child_cols) AS u(cc)
          WHERE p.now IS DISTINCT FROM p.was
          GROUP BY c.chain) AS f
    WHERE k.chain = f.chain;

    FOR t IN SELECT a.* FROM pgtrail.audited_table AS a
             WHERE a.id IN (SELECT h.table_id FROM pg_temp.pgtrail_revert_shape AS h WHERE h.active > 0)
             ORDER BY a.id LOOP
        SELECT * INTO v_shape FROM pg_temp.pgtrail_revert_shape AS h WHERE h.table_id = t.id;
        v_rel := format('%I.%I', t.table_schema, t.table_name);
        v_relid := v_rel::regclass;
        -- Columns a statement may write: not generated, not dropped.
        SELECT array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE a.attgenerated = ''),
               array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE a.attidentity <> ''),
               array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE a.attgenerated <> '')
        INTO v_writable, v_identity, v_generated
        FROM pg_attribute AS a
        WHERE a.attrelid = v_relid AND a.attnum > 0 AND NOT a.attisdropped;
        v_identity := coalesce(v_identity, '{}');
        v_generated := coalesce(v_generated, '{}');
        v_writable := coalesce(v_writable, '{}');
        -- Identity columns GENERATED ALWAYS: INSERT overrides them, UPDATE cannot set them.
        v_always := ARRAY(SELECT a.attname::text FROM pg_attribute AS a
                          WHERE a.attrelid = v_relid AND a.attidentity = 'a' AND NOT a.attisdropped);
        v_ignored := CASE WHEN cardinality(t.ignore_columns) > 0
                          THEN format('ignored column(s) %s are not in the trail: left to their default', array_to_string(t.ignore_columns, ', '))
                     END;

        IF cardinality(t.key_columns) = 0 THEN
            -- Copies to remove.
            INSERT INTO pg_temp.pgtrail_revert_stmt (table_id, kind, what, cols, sql, data, keys, change_ids, rows, note)
            SELECT t.id, 'DELETE', 'delete_copies', NULL,
                   format('DELETE FROM %1$s AS t USING ('
                          'SELECT h.o, h.c FROM (SELECT y.tableoid AS o, y.ctid AS c, w.n, '
                          'row_number() OVER (PARTITION BY w.r ORDER BY y.tableoid, y.ctid) AS i '
                          'FROM %1$s AS y JOIN jsonb_to_recordset($1) AS w(r jsonb, n bigint) ON to_jsonb(y.*) - %2$L::text[] = w.r) AS h '
                          'WHERE h.i <= h.n) AS g WHERE t.tableoid = g.o AND t.ctid = g.c', v_rel, t.ignore_columns),
                   jsonb_agg(jsonb_build_object('r', k.k_final, 'n', -k.net) ORDER BY k.chain),
                   jsonb_agg(k.k_final ORDER BY k.chain),
                   (SELECT array_agg(DISTINCT i ORDER BY i) FROM pg_temp.pgtrail_revert_chain AS k2, unnest(k2.change_ids) AS i
                    WHERE k2.table_id = t.id AND k2.active AND k2.net < 0),
                   -sum(k.net), 'a table without key: each row is found by its whole content, copies counted'
            FROM pg_temp.pgtrail_revert_chain AS k
            WHERE k.table_id = t.id AND k.active AND k.net < 0
            HAVING count(*) > 0;
            -- Copies to insert, grouped by the columns they have.
            FOR g IN SELECT ARRAY(SELECT c FROM jsonb_object_keys(k.k_final) AS c WHERE c = ANY (v_writable) ORDER BY c) AS cols,
                            jsonb_agg(jsonb_build_object('r', k.k_final, 'n', k.net) ORDER BY k.chain) AS data,
                            jsonb_agg(k.k_final ORDER BY k.chain) AS keys,
                            array_agg(k.chain) AS chains, sum(k.net) AS n
                     FROM pg_temp.pgtrail_revert_chain AS k
                     WHERE k.table_id = t.id AND k.active AND k.net > 0
                     GROUP BY 1 LOOP
                INSERT INTO pg_temp.pgtrail_revert_stmt (table_id, kind, what, cols, sql, data, keys, change_ids, rows, note)
                SELECT t.id, 'INSERT', 'insert_copies', g.cols,
                       format('INSERT INTO %1$s (%2$s)%3$s SELECT %4$s FROM jsonb_to_recordset($1) AS w(r jsonb, n bigint) '
                              'CROSS JOIN LATERAL generate_series(1, w.n) AS copies '
                              'CROSS JOIN LATERAL jsonb_populate_record(NULL::%1$s, w.r) AS s',
                              v_rel,
                              (SELECT string_agg(quote_ident(c), ', ') FROM unnest(g.cols) AS c),
                              CASE WHEN g.cols && v_identity THEN ' OVERRIDING SYSTEM VALUE' ELSE '' END,
                              (SELECT string_agg('s.' || quote_ident(c), ', ') FROM unnest(g.cols) AS c)),
                       g.data, g.keys,
                       (SELECT array_agg(DISTINCT i ORDER BY i) FROM pg_temp.pgtrail_revert_chain AS k2, unnest(k2.change_ids) AS i
                        WHERE k2.chain = ANY (g.chains)),
                       g.n, concat_ws('; ', 'a table without key: copies counted', v_ignored);
            END LOOP;
            CONTINUE;
        END IF;

        v_join := (SELECT string_agg(format('t.%I = k.%I', c, c), ' AND ') FROM unnest(t.key_columns) AS c);

        -- A table whose values cannot hold a redaction or erasure marker: no
        -- redacted column, no erasure, every column a JSON scalar.
        v_clean := cardinality(t.redact_columns) = 0
                   AND NOT EXISTS (SELECT FROM pgtrail.erasure AS x WHERE x.table_id = t.id)
                   AND pgtrail._revert_scalar_row(v_relid);

        -- Rows the selection created: deleted, if they still hold what the trail says.
        -- (Applying, in such a table, straight from pgtrail_revert_chain,
        -- as the fast path's restores below: run_sql reads each row's key
        -- and what it must hold from there, by ranges of chain numbers, and
        -- the statement carries no data. What the row must hold is then
        -- its expect whole: a clean table's values lose nothing. Its keys
        -- are kept only when the table also has rows to insert or move
        -- back, which _revert_order compares with them.)
        v_member := format('c.table_id = %s AND c.active AND NOT c.ex_origin AND c.ex_final', t.id);
        INSERT INTO pg_temp.pgtrail_revert_stmt (table_id, kind, what, cols, sql, data, keys, change_ids, rows, note,
                                                 run_sql, run_rows, run_lo, run_hi)
        SELECT t.id, 'DELETE', 'delete', NULL,
               -- (The keys as one set of rows, which a nested loop reads
               -- again at no cost: with a table its statistics say is empty,
               -- the planner loops over the table's rows, and a row made of
               -- JSON per key and table row cost seconds for a thousand.)
               format('DELETE FROM %1$s AS t '
                      'USING ROWS FROM (jsonb_populate_recordset(NULL::%1$s, jsonb_path_query_array($1, ''$[*].k'')), '
                      'jsonb_path_query($1, ''$[*].e'')) AS k '
                      'WHERE %2$s AND to_jsonb(t.*) @> k.jsonb_path_query', v_rel, v_join),
               -- (What the row must hold: the values the trail says, but
               -- those it lost; value by value only when one may be lost.)
               jsonb_agg(jsonb_build_object('k', k.k_final, 'e',
                   CASE WHEN cardinality(t.redact_columns) = 0 AND strpos(coalesce(k.expect::text, ''), 'pgtrail_erased') = 0
                        THEN coalesce(k.expect, '{}')
                        ELSE (SELECT coalesce(jsonb_object_agg(e.key, e.value), '{}') FROM jsonb_each(k.expect) AS e
                              WHERE NOT pgtrail._revert_lost(t.redact_columns, e.key, e.value)) END) ORDER BY k.chain)
                   FILTER (WHERE NOT (v_apply AND v_clean)),
               jsonb_agg(k.k_final ORDER BY k.chain)
                   FILTER (WHERE NOT (v_apply AND v_clean) OR v_shape.removes > 0 OR v_shape.moves > 0),
               (SELECT array_agg(i ORDER BY i) FROM (SELECT DISTINCT i FROM pg_temp.pgtrail_revert_chain AS k2, unnest(k2.change_ids) AS i
                WHERE k2.table_id = t.id AND k2.active AND NOT k2.ex_origin AND k2.ex_final) AS ii),
               count(*), NULL,
               CASE WHEN v_apply AND v_clean THEN
                   format('DELETE FROM %1$s AS t USING ('
                          'SELECT %2$s, coalesce(c.expect, ''{}'') AS pgtrail_expect '
                          'FROM pg_temp.pgtrail_revert_chain AS c '
                          'WHERE c.chain > $1 AND c.chain <= $2 AND %3$s) AS k '
                          'WHERE %4$s AND to_jsonb(t.*) @> k.pgtrail_expect',
                          v_rel, pgtrail._revert_scalar_read_sql(v_relid, '{}', t.key_columns), v_member, v_join) END,
               CASE WHEN v_apply AND v_clean THEN format('SELECT c.chain FROM pg_temp.pgtrail_revert_chain AS c WHERE %s', v_member) END,
               -- (A range of chain numbers when they are one, as a table's
               -- created rows are when it has no others: see the restores.)
               CASE WHEN v_apply AND v_clean AND max(k.chain) - min(k.chain) + 1 = count(*) THEN min(k.chain) END,
               CASE WHEN v_apply AND v_clean AND max(k.chain) - min(k.chain) + 1 = count(*) THEN max(k.chain) END
        FROM pg_temp.pgtrail_revert_chain AS k
        WHERE k.table_id = t.id AND k.active AND NOT k.ex_origin AND k.ex_final
          -- (See _revert_shape.)
          AND v_shape.creates > 0
        HAVING count(*) > 0;

        -- Rows of the fast path (one change each, no key change) in a table
        -- whose values cannot hold a redaction or erasure marker (v_clean,
        -- above): an UPDATE's columns that UPDATE may all set, or a
        -- DELETE's that are all still columns, go back as they are. Their
        -- statements' rows are made straight from them (below), without
        -- pgtrail_revert_back.

        -- Each value a row goes back to: written (ok), lost (why), or
        -- neither (a generated column, a key that did not move). Most rows
        -- have nothing lost, only columns the table has, and no identity
        -- column UPDATE cannot set: their values are their old values (but
        -- the key, unless it moved), with jsonb operators only. The others
        -- go column by column.
        PERFORM pgtrail._revert_clear('pgtrail_revert_back');
        -- (Not when every active row of the table is a fast path row
        -- written straight from the plan (below), as its group in
        -- pgtrail_revert_colset says: the statement would read them all to
        -- find none.)
        IF NOT (v_clean AND pgtrail._revert_all_fast(t.id, v_shape.active)
                AND NOT EXISTS (SELECT FROM pg_temp.pgtrail_revert_colset AS c
                                WHERE c.table_id = t.id AND c.active AND c.ex_origin
                                  AND NOT coalesce(c.ex_final AND cardinality(c.cols) > 0 AND c.cols <@ v_writable
                                                   AND NOT c.cols && v_always, false))) THEN
            INSERT INTO pg_temp.pgtrail_revert_back
            WITH k AS MATERIALIZED (
                SELECT k.chain, k.ex_final, k.k_origin, k.k_final, k.origin, k.expect, k.change_ids,
                       coalesce((cardinality(t.redact_columns) = 0
                                 OR NOT (k.origin ?| t.redact_columns OR coalesce(k.expect ?| t.redact_columns, false)))
                                AND strpos(k.origin::text, 'pgtrail_erased') = 0
                                AND strpos(coalesce(k.expect::text, ''), 'pgtrail_erased') = 0
                                AND (k.origin - v_writable) = '{}'
                                AND (NOT k.ex_final
                                     OR (NOT k.origin ?| v_always AND k.origin ?& ARRAY(SELECT jsonb_object_keys(k.expect)))),
                                false) AS fast
                FROM pg_temp.pgtrail_revert_chain AS k
                WHERE k.table_id = t.id AND k.active AND k.ex_origin
                  -- (Not the rows made straight from the fast path's, below.)
                  AND NOT coalesce(v_clean AND k.at IS NOT NULL
                                   AND CASE WHEN k.ex_final
                                            THEN cardinality(k.cols) > 0 AND k.cols <@ v_writable AND NOT k.cols && v_always
                                            ELSE (k.origin - v_writable) = '{}' END, false)
            )
            SELECT k.chain, k.ex_final, k.k_origin <> k.k_final, k.k_origin, k.k_final,
                   nullif(ARRAY(SELECT jsonb_object_keys(f.s)), '{}'), f.s,
                   CASE WHEN k.ex_final AND k.k_origin = k.k_final THEN k.expect - t.key_columns ELSE k.expect END,
                   NULL::text[], NULL::text[], k.change_ids
            FROM k
            CROSS JOIN LATERAL (SELECT CASE WHEN k.ex_final AND k.k_origin = k.k_final
                                            THEN k.origin - t.key_columns ELSE k.origin END AS s) AS f
            WHERE k.fast
            UNION ALL
            SELECT k.chain, k.ex_final, k.k_origin <> k.k_final, k.k_origin, k.k_final,
                   v.cols, v.s, coalesce(v.e, '{}'), v.lost_cols, v.whys, k.change_ids
            FROM k
            CROSS JOIN LATERAL (
                SELECT array_agg(w.col) FILTER (WHERE w.ok) AS cols,
                       jsonb_object_agg(w.col, w.old) FILTER (WHERE w.ok) AS s,
                       jsonb_object_agg(w.col, w.cur) FILTER (
                           WHERE w.ok AND w.cur IS NOT NULL AND NOT pgtrail._revert_lost(t.redact_columns, w.col, w.cur)) AS e,
                       array_agg(w.col) FILTER (WHERE w.why IS NOT NULL) AS lost_cols,
                       array_agg(w.why) FILTER (WHERE w.why IS NOT NULL) AS whys
                FROM (SELECT u.col, u.old, u.cur, u.why,
                             u.why IS NULL AND u.col = ANY (v_writable)
                                 AND (NOT k.ex_final OR k.k_origin <> k.k_final OR NOT u.col = ANY (t.key_columns))
                                 AND NOT (k.ex_final AND u.col = ANY (v_always)) AS ok
                      FROM (SELECT e.key AS col, e.value AS old, k.expect -> e.key AS cur,
                                   CASE WHEN pgtrail._revert_lost(t.redact_columns, e.key, e.value)
                                             THEN CASE WHEN e.value ? 'pgtrail_erased' THEN 'erased' ELSE 'redacted' END
                                        WHEN NOT e.key = ANY (v_writable || v_generated) THEN 'no longer a column of the table'
                                        WHEN k.ex_final AND e.key = ANY (v_always)
                                             AND (k.k_origin <> k.k_final OR NOT e.key = ANY (t.key_columns))
                                             THEN 'an identity column UPDATE cannot set'
                                   END AS why
                            FROM jsonb_each(k.origin) AS e) AS u) AS w) AS v
            WHERE NOT k.fast;
        END IF;

        -- Rows whose key goes back: in an order that frees each key before
        -- another row takes it.
        -- (Worked out by _revert_key_cycles, for the same rows.)
        IF EXISTS (SELECT FROM pg_temp.pgtrail_revert_moves AS m WHERE m.table_id = t.id) THEN
            UPDATE pg_temp.pgtrail_revert_back AS b SET holder = m.holder, lvl = m.lvl, park = m.park
            FROM pg_temp.pgtrail_revert_moves AS m
            WHERE m.table_id = t.id AND m.chain = b.chain AND b.moved AND b.ex_final AND b.cols IS NOT NULL;
        END IF;

        -- Applying (pgtrail.revert), the fast path's rows of a table whose
        -- restored rows are all theirs are written straight from
        -- pgtrail_revert_chain: each statement (one per set of columns, as
        -- below, in the same order and with the same change ids and row
        -- count) is also given the same UPDATE reading its rows from there
        -- (run_sql, by ranges of chain numbers: $1 < chain <= $2) and the
        -- query of its rows' chain numbers (run_rows), and no data: its rows
        -- are not made JSON, aggregated and sliced into batches again. The
        -- plan shows the statement with its data (revert_plan); the checks
        -- are the same (conflicts found above, each row's guard, each
        -- batch's row count).
        v_direct := v_apply AND v_clean
                    AND NOT EXISTS (SELECT FROM pg_temp.pgtrail_revert_back AS b
                                    WHERE b.ex_final AND b.cols IS NOT NULL AND NOT b.moved);
        IF v_direct THEN
            v_member := format('c.table_id = %s AND c.at IS NOT NULL AND c.active AND c.ex_origin AND c.ex_final '
                               'AND cardinality(c.cols) > 0 AND c.cols <@ %L::text[] AND NOT c.cols && %L::text[]',
                               t.id, v_writable, v_always);
            -- (A fast path row's origin holds exactly its columns, cols: its
            -- columns to restore, as the statements' data has them, are
            -- the keys of its origin but the key columns, in jsonb's key
            -- order. Worked out once per distinct cols, not per row.)
            -- (The groups' rows counted and bounded without their ids; the
            -- ids of each set of columns sorted once, apart: not every row
            -- sorted by its columns' text beside them.)
            -- (When they all have the same columns to restore, as the rows
            -- of a bulk UPDATE mostly have, the groups are those of
            -- pgtrail_revert_colset, which holds every fast path row, and
            -- the ids those of every such row: no row is grouped by its
            -- columns.)
            SELECT count(*) = 1 AND bool_and(x.cols_t IS NOT NULL) INTO v_one
            FROM (SELECT DISTINCT nullif(ARRAY(SELECT jsonb_object_keys(coalesce(
                             (SELECT jsonb_object_agg(c, true) FROM unnest(d.cols) AS c
                              WHERE NOT c = ANY (t.key_columns)), '{}'))), '{}')::text COLLATE "C" AS cols_t
                  FROM pg_temp.pgtrail_revert_colset AS d
                  WHERE d.table_id = t.id AND d.active AND d.ex_origin AND d.ex_final
                    AND cardinality(d.cols) > 0 AND d.cols <@ v_writable AND NOT d.cols && v_always) AS x;
            -- (And when every group of the table's rows is restored so, as
            -- a bulk UPDATE's are, those rows are every row of the table in
            -- pgtrail_revert_chain, and these, the fast path's, are one per
            -- selected change of the table: their ids are the selection's,
            -- each once, read without the rows' filters and in the order
            -- they were selected in, mostly theirs.)
            v_every := v_one AND NOT EXISTS (
                SELECT FROM pg_temp.pgtrail_revert_colset AS d
                WHERE d.table_id = t.id
                  AND NOT coalesce(d.active AND d.ex_origin AND d.ex_final AND cardinality(d.cols) > 0
                                   AND d.cols <@ v_writable AND NOT d.cols && v_always, false));
            FOR g IN WITH e AS MATERIALIZED (
                         SELECT nullif(ARRAY(SELECT jsonb_object_keys(coalesce(
                                    (SELECT jsonb_object_agg(c, true) FROM unnest(d.cols) AS c
                                     WHERE NOT c = ANY (t.key_columns)), '{}'))), '{}')::text COLLATE "C" AS cols_t,
                                d.ids, d.n, d.lo, d.hi
                         FROM (SELECT k.cols, array_agg(k.change_ids[1]) AS ids, count(*) AS n,
                                      min(k.chain) AS lo, max(k.chain) AS hi
                               FROM pg_temp.pgtrail_revert_chain AS k
                               WHERE NOT v_one AND k.table_id = t.id AND k.at IS NOT NULL AND k.active
                                 AND k.ex_origin AND k.ex_final
                                 AND cardinality(k.cols) > 0 AND k.cols <@ v_writable AND NOT k.cols && v_always
                               GROUP BY k.cols
                               UNION ALL
                               SELECT d.cols, NULL, d.n, d.lo, d.hi
                               FROM pg_temp.pgtrail_revert_colset AS d
                               WHERE v_one AND d.table_id = t.id AND d.active AND d.ex_origin AND d.ex_final
                                 AND cardinality(d.cols) > 0 AND d.cols <@ v_writable AND NOT d.cols && v_always) AS d)
                     SELECT ARRAY(SELECT c FROM unnest(x.cols) AS c ORDER BY c) AS cols, x.cols_t, x.n,
                            CASE WHEN v_every
                                 THEN (SELECT array_agg(s.id ORDER BY s.id) FROM pg_temp.pgtrail_revert_sel AS s
                                       WHERE s.table_id = t.id)
                                 WHEN v_one
                                 THEN (SELECT array_agg(DISTINCT k.change_ids[1] ORDER BY k.change_ids[1])
                                       FROM pg_temp.pgtrail_revert_chain AS k
                                       WHERE k.table_id = t.id AND k.at IS NOT NULL AND k.active
                                         AND k.ex_origin AND k.ex_final
                                         AND cardinality(k.cols) > 0 AND k.cols <@ v_writable AND NOT k.cols && v_always)
                                 ELSE (SELECT array_agg(DISTINCT u.id ORDER BY u.id)
                                       FROM e AS f CROSS JOIN LATERAL unnest(f.ids) AS u(id) WHERE f.cols_t = x.cols_t) END AS ids,
                            x.groups, x.lo, x.hi
                     FROM (SELECT e.cols_t, e.cols_t::text[] AS cols, sum(e.n)::bigint AS n, count(*) OVER () AS groups,
                                  min(e.lo) AS lo, max(e.hi) AS hi
                           FROM e
                           GROUP BY e.cols_t) AS x
                     -- (Rows with no column to restore make no statement;
                     -- counted as a group, they make the others filter by
                     -- their columns.)
                     WHERE x.cols_t IS NOT NULL
                     ORDER BY x.cols LOOP
                v_coldefs := pgtrail._revert_coldefs(v_relid, g.cols, t.key_columns);
                INSERT INTO pg_temp.pgtrail_revert_stmt (table_id, kind, what, cols, sql, data, keys, change_ids, rows, note, lvl,
                                                         run_sql, run_rows, run_lo, run_hi)
                SELECT t.id, 'UPDATE', 'restore', g.cols,
                       pgtrail._revert_restore_sql(v_rel, v_join, g.cols, v_coldefs),
                       NULL, NULL, g.ids, g.n, NULL, NULL,
                       -- (The rows as the statement's data would hold them:
                       -- the key and the old values, what the row must hold
                       -- without the key; read once, materialized as the
                       -- data's rows are.)
                       -- (The guard column by column: what the row must
                       -- hold, its expect, has exactly the restored
                       -- columns (and maybe the key's), as a fast path
                       -- row's origin has (see _revert_rows). A
                       -- text-valued column, which capture records as
                       -- its text (pgtrail._object_sql), is compared as
                       -- text, NULL with JSON null; another as JSON, as
                       -- jsonb_build_object would make it. The same test
                       -- as the live row's columns as one JSON object
                       -- containing expect, without making one per row.)
                       format('WITH k AS MATERIALIZED ('
                              'SELECT %6$s, %5$s '
                              'FROM pg_temp.pgtrail_revert_chain AS c '
                              'WHERE c.chain > $1 AND c.chain <= $2 AND %8$s) '
                              'UPDATE %1$s AS t SET (%2$s) = ROW(%3$s) FROM k '
                              'WHERE %4$s AND %7$s',
                              v_rel,
                              (SELECT string_agg(quote_ident(c), ', ') FROM unnest(g.cols) AS c),
                              (SELECT string_agg('k.' || quote_ident(c), ', ') FROM unnest(g.cols) AS c),
                              v_join,
                              (SELECT string_agg(format('c.expect %s %L AS pgtrail_e%s',
                                                        CASE WHEN pgtrail._text_valued(v_relid, c) THEN '->>' ELSE '->' END, c, o),
                                                 ', ' ORDER BY o)
                               FROM unnest(g.cols) WITH ORDINALITY AS u(c, o)),
                              pgtrail._revert_scalar_read_sql(v_relid, g.cols, t.key_columns),
                              (SELECT string_agg(CASE WHEN pgtrail._text_valued(v_relid, c)
                                                      THEN format('k.pgtrail_e%s IS NOT DISTINCT FROM t.%I::pg_catalog.text', o, c)
                                                      ELSE format('k.pgtrail_e%s OPERATOR(pg_catalog.=) '
                                                                  'coalesce(pg_catalog.to_jsonb(t.%I), ''null''::pg_catalog.jsonb)', o, c) END,
                                                 ' AND ' ORDER BY o)
                               FROM unnest(g.cols) WITH ORDINALITY AS u(c, o)),
                              v_member || v_group),
                       format('SELECT c.chain FROM pg_temp.pgtrail_revert_chain AS c WHERE %s', v_member || v_group),
                       -- (When its rows are every row from its first chain
                       -- number to its last, as the rows of a table's only
                       -- set of columns are: pgtrail.revert makes its
                       -- batches from those numbers, without reading them.)
                       CASE WHEN g.hi - g.lo + 1 = g.n THEN g.lo END, CASE WHEN g.hi - g.lo + 1 = g.n THEN g.hi END
                FROM (SELECT CASE WHEN g.groups > 1
                                  THEN format(' AND nullif(ARRAY(SELECT jsonb_object_keys(CASE WHEN c.origin ?| %1$L::text[] '
                                              'THEN c.origin - %1$L::text[] ELSE c.origin END)), ''{}'')::text COLLATE "C" = %2$L',
                                              t.key_columns, g.cols_t)
                                  ELSE '' END AS v_group) AS one;
            END LOOP;
        END IF;

        -- Rows the selection changed: the columns it changed get their old
        -- values back (the key too, if it moved); grouped by those columns
        -- (and, for keys, by the step of the order above).
        -- Not moved: the key and the values to set in one flat object, with
        -- what the row must hold now beside them (pgtrail_expect).
        -- (One sort of the rows, by group and row, on the columns' text in
        -- byte order; the aggregates take the rows in that order, where an
        -- ordered aggregate would sort them again, once per aggregate.)
        FOR g IN SELECT x.moved, x.lvl, ARRAY(SELECT c FROM unnest(x.cols) AS c ORDER BY c) AS cols,
                        x.chains, x.data, x.keys, x.n, x.first_ids, x.parked
                 FROM (SELECT q.moved, q.lvl, q.cols_t::text[] AS cols, bool_or(q.parked) AS parked,
                              -- (Rows changed more than once: their change ids are looked up.)
                              array_agg(q.chain) FILTER (WHERE cardinality(q.ids) > 1) AS chains,
                              jsonb_agg(CASE WHEN q.moved THEN jsonb_build_object('k', q.k_final, 's', q.s, 'e', q.e)
                                             ELSE jsonb_set(q.k_final || q.s, '{pgtrail_expect}', coalesce(q.e, 'null'))
                                        END) AS data,
                              jsonb_agg(q.k_final) AS keys, count(*) AS n,
                              array_agg(DISTINCT q.ids[1] ORDER BY q.ids[1]) AS first_ids
                       -- (From a temporary key, every key column goes back.)
                       FROM (SELECT b.moved, coalesce(b.lvl, 1) AS lvl,
                                    CASE WHEN b.park IS NULL THEN b.cols
                                         ELSE ARRAY(SELECT jsonb_object_keys(b.k_origin || b.s)) END::text COLLATE "C" AS cols_t,
                                    b.chain, coalesce(b.park, b.k_final) AS k_final,
                                    CASE WHEN b.park IS NULL THEN b.s ELSE b.k_origin || b.s END AS s,
                                    CASE WHEN b.park IS NULL THEN b.e ELSE b.e || b.park END AS e, b.ids,
                                    b.park IS NOT NULL AS parked
                             FROM pg_temp.pgtrail_revert_back AS b
                             WHERE b.ex_final AND b.cols IS NOT NULL
                             UNION ALL
                             -- (Rows that go through a temporary key: there first.)
                             SELECT true, 0, ARRAY(SELECT jsonb_object_keys(b.park))::text COLLATE "C", b.chain,
                                    b.k_final, b.park, b.e, b.ids, false
                             FROM pg_temp.pgtrail_revert_back AS b
                             WHERE b.park IS NOT NULL
                             UNION ALL
                             -- (The fast path's rows, as pgtrail_revert_back
                             -- would have them.)
                             SELECT false, 1, d.cols::text COLLATE "C", d.chain, d.k_final, d.s, d.e, d.change_ids, false
                             -- (Key columns removed only from a row that
                             -- has them: jsonb's "-" copies the object even
                             -- when it removes nothing.)
                             FROM (SELECT k.chain, k.k_final, k.change_ids, f.s,
                                          CASE WHEN k.expect ?| t.key_columns THEN k.expect - t.key_columns ELSE k.expect END AS e,
                                          nullif(ARRAY(SELECT jsonb_object_keys(f.s)), '{}') AS cols
                                   FROM pg_temp.pgtrail_revert_chain AS k
                                   CROSS JOIN LATERAL (SELECT CASE WHEN k.origin ?| t.key_columns THEN k.origin - t.key_columns
                                                                   ELSE k.origin END AS s OFFSET 0) AS f
                                   WHERE v_clean AND NOT v_direct AND k.table_id = t.id AND k.at IS NOT NULL AND k.active
                                     AND k.ex_origin AND k.ex_final
                                     AND cardinality(k.cols) > 0 AND k.cols <@ v_writable AND NOT k.cols && v_always
                                   OFFSET 0) AS d
                             WHERE d.cols IS NOT NULL
                             ORDER BY 1, 2, 3, 4) AS q
                       GROUP BY q.moved, q.lvl, q.cols_t) AS x
                 ORDER BY x.moved, x.lvl, x.cols LOOP
            INSERT INTO pg_temp.pgtrail_revert_stmt (table_id, kind, what, cols, sql, data, keys, change_ids, rows, note, lvl)
            SELECT t.id, CASE WHEN g.moved THEN 'MOVE' ELSE 'UPDATE' END,
                   CASE WHEN NOT g.moved THEN 'restore' WHEN g.lvl = 0 THEN 'park' WHEN g.parked THEN 'unpark' ELSE 'move' END,
                   g.cols,
                   CASE WHEN g.moved THEN
                   format('UPDATE %1$s AS t SET (%2$s) = ROW(%3$s) FROM jsonb_array_elements($1) AS d(d) '
                          'CROSS JOIN LATERAL jsonb_populate_record(NULL::%1$s, d.d -> ''k'') AS k '
                          'CROSS JOIN LATERAL jsonb_populate_record(NULL::%1$s, d.d -> ''s'') AS s '
                          'WHERE %4$s AND to_jsonb(t.*) @> (d.d -> ''e'')',
                          v_rel,
                          (SELECT string_agg(quote_ident(c), ', ') FROM unnest(g.cols) AS c),
                          (SELECT string_agg('s.' || quote_ident(c), ', ') FROM unnest(g.cols) AS c),
                          v_join)
                   ELSE
                   pgtrail._revert_restore_sql(v_rel, v_join, g.cols,
                                               pgtrail._revert_coldefs(v_relid, g.cols, t.key_columns))
                   END,
                   g.data, g.keys,
                   pgtrail._revert_change_ids(g.first_ids, g.chains),
                   g.n, CASE WHEN g.moved AND g.lvl = 0
                             THEN 'the key goes to a temporary value first, as these rows take each other''s keys: moved back in a later step'
                             WHEN g.moved THEN 'the key goes back to what it was' END,
                   CASE WHEN g.moved THEN g.lvl END;
        END LOOP;

        -- Rows the selection deleted: inserted whole, grouped by their columns.
        FOR g IN SELECT ARRAY(SELECT c FROM unnest(x.cols) AS c ORDER BY c) AS cols,
                        x.chains, x.data, x.keys, x.n, x.first_ids
                 FROM (SELECT q.cols_t::text[] AS cols,
                              array_agg(q.chain) FILTER (WHERE cardinality(q.ids) > 1) AS chains,
                              jsonb_agg(q.s) AS data, jsonb_agg(q.k_origin) AS keys, count(*) AS n,
                              array_agg(DISTINCT q.ids[1] ORDER BY q.ids[1]) AS first_ids
                       FROM (SELECT b.cols::text COLLATE "C" AS cols_t, b.chain, b.k_origin, b.s, b.ids
                             FROM pg_temp.pgtrail_revert_back AS b
                             WHERE NOT b.ex_final AND b.cols IS NOT NULL
                             UNION ALL
                             SELECT d.cols::text COLLATE "C", d.chain, d.k_origin, d.origin, d.change_ids
                             FROM (SELECT k.chain, k.k_origin, k.origin, k.change_ids,
                                          nullif(ARRAY(SELECT jsonb_object_keys(k.origin)), '{}') AS cols
                                   FROM pg_temp.pgtrail_revert_chain AS k
                                   WHERE v_clean AND k.table_id = t.id AND k.at IS NOT NULL AND k.active
                                     AND k.ex_origin AND NOT k.ex_final AND (k.origin - v_writable) = '{}'
                                     -- (See _revert_shape.)
                                     AND v_shape.removes > 0
                                   OFFSET 0) AS d
                             WHERE d.cols IS NOT NULL
                             ORDER BY 1, 2) AS q
                       GROUP BY q.cols_t) AS x
                 ORDER BY x.cols LOOP
            INSERT INTO pg_temp.pgtrail_revert_stmt (table_id, kind, what, cols, sql, data, keys, change_ids, rows, note)
            SELECT t.id, 'INSERT', 'insert', g.cols,
                   format('INSERT INTO %1$s (%2$s)%3$s SELECT %4$s FROM jsonb_populate_recordset(NULL::%1$s, $1) AS s',
                          v_rel,
                          (SELECT string_agg(quote_ident(c), ', ') FROM unnest(g.cols) AS c),
                          CASE WHEN g.cols && v_identity THEN ' OVERRIDING SYSTEM VALUE' ELSE '' END,
                          (SELECT string_agg('s.' || quote_ident(c), ', ') FROM unnest(g.cols) AS c)),
                   g.data, g.keys,
                   pgtrail._revert_change_ids(g.first_ids, g.chains),
                   g.n, v_ignored;
        END LOOP;

        -- What cannot be written back: redacted or erased values, columns
        -- that are gone, identity columns UPDATE cannot set.
        INSERT INTO pg_temp.pgtrail_revert_lost (table_id, key, kind, columns, change_ids, why)
        SELECT t.id, CASE WHEN l.ex_final THEN l.k_final ELSE l.k_origin END,
               CASE WHEN l.ex_final THEN 'left as it is' ELSE 'left to its default' END,
               l.cols, k.change_ids, l.why
        FROM (SELECT b.chain, b.ex_final, b.k_origin, b.k_final,
                     ARRAY(SELECT c FROM unnest(b.lost_cols) AS c ORDER BY c) AS cols,
                     (SELECT string_agg(DISTINCT w, ', ') FROM unnest(b.whys) AS w) AS why
              FROM pg_temp.pgtrail_revert_back AS b WHERE b.lost_cols IS NOT NULL) AS l
        JOIN pg_temp.pgtrail_revert_chain AS k ON k.chain = l.chain;
    END LOOP;
    PERFORM pgtrail._revert_order();
END
$fn$;

-- Steps: the statements in an order that keeps keys unique and foreign
-- keys valid (see the top of this file). Deferrable foreign keys are
-- deferred by pgtrail.revert, so only the others order statements. Where
-- the rules form a cycle, the default order (DELETE, MOVE, UPDATE, INSERT)
-- decides, and PostgreSQL's checks have the last word.
CREATE OR REPLACE FUNCTION pgtrail._revert_order()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_step integer := 0;
    v_next integer;
BEGIN
    IF to_regclass('pg_temp.pgtrail_revert_edge') IS NULL THEN
        CREATE TEMP TABLE pgtrail_revert_edge (a integer, b integer) ON COMMIT DROP;
    END IF;
    PERFORM pgtrail._revert_clear('pgtrail_revert_edge');
    -- One table: keys freed before they are taken again.
    INSERT INTO pg_temp.pgtrail_revert_edge
    SELECT x.grp, y.grp
    FROM pg_temp.pgtrail_revert_stmt AS x
    JOIN pg_temp.pgtrail_revert_stmt AS y ON y.table_id = x.table_id AND y.grp <> x.grp
    WHERE ((x.kind = 'DELETE' AND y.kind IN ('MOVE', 'INSERT')) OR (x.kind = 'MOVE' AND y.kind = 'INSERT'))
      AND EXISTS (SELECT FROM jsonb_array_elements(x.keys) AS kx
                  JOIN jsonb_array_elements(CASE WHEN y.kind = 'MOVE'
                                                 THEN (SELECT jsonb_agg(d -> 's') FROM jsonb_array_elements(y.data) AS d)
                                                 ELSE y.keys END) AS ky
                    ON ky @> kx);
    -- One table: key moves step by step (see _revert_move_order).
    INSERT INTO pg_temp.pgtrail_revert_edge
    SELECT x.grp, y.grp
    FROM pg_temp.pgtrail_revert_stmt AS x
    JOIN pg_temp.pgtrail_revert_stmt AS y ON y.table_id = x.table_id AND y.kind = 'MOVE' AND y.lvl > x.lvl
    WHERE x.kind = 'MOVE';
    -- Foreign keys that are not deferrable: child C references parent P.
    INSERT INTO pg_temp.pgtrail_revert_edge
    SELECT e.a, e.b
    FROM (SELECT c.oid, c.conrelid, c.confrelid,
                 ARRAY(SELECT a.attname::text FROM unnest(c.conkey) AS k JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = k) AS child_cols,
                 ARRAY(SELECT a.attname::text FROM unnest(c.confkey) AS k JOIN pg_attribute AS a ON a.attrelid = c.confrelid AND a.attnum = k) AS parent_cols
          FROM pg_constraint AS c
          WHERE c.contype = 'f' AND NOT c.condeferrable AND c.conparentid = 0) AS fk
    JOIN (SELECT s.*, format('%I.%I', a.table_schema, a.table_name)::regclass AS rel
          FROM pg_temp.pgtrail_revert_stmt AS s JOIN pgtrail.audited_table AS a ON a.id = s.table_id) AS p ON p.rel = fk.confrelid
    JOIN (SELECT s.*, format('%I.%I', a.table_schema, a.table_name)::regclass AS rel
          FROM pg_temp.pgtrail_revert_stmt AS s JOIN pgtrail.audited_table AS a ON a.id = s.table_id) AS c ON c.rel = fk.conrelid
    CROSS JOIN LATERAL (
        -- Parents there before children point at them.
        SELECT p.grp AS a, c.grp AS b
        WHERE (p.kind = 'INSERT' OR (p.kind IN ('MOVE', 'UPDATE') AND p.cols && fk.parent_cols))
          AND (c.kind = 'INSERT' OR (c.kind IN ('MOVE', 'UPDATE') AND c.cols && fk.child_cols))
          AND p.grp <> c.grp
        UNION ALL
        -- Children gone or pointing elsewhere before parents go.
        SELECT c.grp, p.grp
        WHERE (p.kind = 'DELETE' OR (p.kind IN ('MOVE', 'UPDATE') AND p.cols && fk.parent_cols AND p.rel <> c.rel))
          AND (c.kind = 'DELETE' OR (c.kind IN ('MOVE', 'UPDATE') AND c.cols && fk.child_cols))
          AND p.grp <> c.grp
    ) AS e;

    UPDATE pg_temp.pgtrail_revert_stmt SET step = NULL;
    LOOP
        SELECT s.grp INTO v_next
        FROM pg_temp.pgtrail_revert_stmt AS s
        WHERE s.step IS NULL
        ORDER BY EXISTS (SELECT FROM pg_temp.pgtrail_revert_edge AS e
                         JOIN pg_temp.pgtrail_revert_stmt AS o ON o.grp = e.a AND o.step IS NULL
                         WHERE e.b = s.grp),
                 array_position(ARRAY['DELETE', 'MOVE', 'UPDATE', 'INSERT'], s.kind), s.table_id, s.grp
        LIMIT 1;
        EXIT WHEN v_next IS NULL;
        v_step := v_step + 1;
        UPDATE pg_temp.pgtrail_revert_stmt SET step = v_step WHERE grp = v_next;
    END LOOP;
END
$fn$;

-- Who a revert is by: the actor of the current context (pgtrail.set_context,
-- SET LOCAL pgtrail.*, or the settings pgtrail.toml maps), else the
-- database user of the connection.
CREATE OR REPLACE FUNCTION pgtrail._revert_actor()
RETURNS jsonb
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v jsonb;
BEGIN
    SELECT jsonb_object_agg(f.field, f.value) INTO v
    FROM (SELECT DISTINCT ON (c.field) c.field, c.value
          FROM (SELECT x.field, 0 AS position, nullif(current_setting('pgtrail.' || x.field, true), '') AS value
                FROM unnest(ARRAY['actor_id', 'actor_name', 'actor_type']) AS x(field)
                UNION ALL
                SELECT s.field, s.position, nullif(current_setting(s.setting, true), '')
                FROM pgtrail.context_source AS s WHERE s.field IN ('actor_id', 'actor_name', 'actor_type')) AS c
          WHERE c.value IS NOT NULL
          ORDER BY c.field, c.position) AS f;
    v := coalesce(v, '{}');
    IF NOT v ?| ARRAY['actor_id', 'actor_name'] THEN
        v := v || jsonb_build_object('actor_name', session_user::text);
    END IF;
    RETURN v;
END
$fn$;

-- The selected tables of a selector ("tables"), as audited table ids; NULL: all.
CREATE OR REPLACE FUNCTION pgtrail._revert_tables(p_selector jsonb)
RETURNS integer[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT CASE WHEN p_selector ? 'tables'
                THEN ARRAY(SELECT (pgtrail._revert_table(e, '"tables"')).id FROM jsonb_array_elements_text(p_selector -> 'tables') AS e) END
$fn$;

CREATE OR REPLACE FUNCTION pgtrail.revert_plan(selector jsonb, on_conflict text DEFAULT 'refuse')
RETURNS TABLE (step integer, change_ids bigint[], table_name text, operation text, key jsonb, sql text,
               conflict jsonb, rows bigint, columns text[], note text, data jsonb, kind text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- Planning its own queries costs more than running them (JIT compiles for
-- seconds where estimates of temporary tables and jsonb functions are high).
-- Its working tables are analyzed for row counts and distinct values: a
-- small sample is enough, and a large one costs more than it informs.
SET jit = off
SET default_statistics_target = 10
AS $fn$
#variable_conflict use_column
DECLARE
    v_max     bigint;
    v_n       bigint;
    v_tables  integer[];
    v_round   integer := 0;
    v_added   bigint[];
    v_work_mem text := current_setting('work_mem');
BEGIN
    IF on_conflict IS NULL OR on_conflict NOT IN ('refuse', 'skip', 'cascade') THEN
        RAISE EXCEPTION 'pgtrail.revert: on_conflict must be refuse, skip or cascade, got %', coalesce(on_conflict, 'NULL')
            USING ERRCODE = '22023',
                  HINT = 'refuse (the default) changes nothing when a later change conflicts; skip leaves those rows as they are; cascade also reverts the later changes.';
    END IF;
    BEGIN
        v_max := coalesce((selector ->> 'max_rows')::bigint, 1000000);
    EXCEPTION WHEN OTHERS THEN
        RAISE EXCEPTION 'pgtrail.revert: "max_rows" must be a number, got %', selector -> 'max_rows' USING ERRCODE = '22023';
    END;
    -- Its sorts and hashes of every selected change (by key, by chain
    -- number) in memory: work_mem at least 64MB while it plans, as capture
    -- does for a large statement (the default 4MB sends the sort of a
    -- 100,000-row revert's keys to a file, 5 % of the revert's time). Set
    -- back at the end (an error undoes it with the transaction).
    PERFORM set_config('work_mem', greatest(pg_size_bytes(v_work_mem), 67108864)::text || 'B', true);
    PERFORM pgtrail._revert_scratch();
    PERFORM pgtrail._revert_select(selector);
    ANALYZE pg_temp.pgtrail_revert_sel (id, table_id, op);
    IF NOT EXISTS (SELECT FROM pg_temp.pgtrail_revert_sel) THEN
        RAISE EXCEPTION 'pgtrail.revert: no recorded change matches %', selector
            USING ERRCODE = '22023',
                  HINT = 'Check the selector against pgtrail.changes (a transaction id, an actor''s name or id, a context value and its time window).';
    END IF;
    v_tables := pgtrail._revert_tables(selector);

    LOOP
        v_round := v_round + 1;
        PERFORM pgtrail._revert_rows();
        SELECT (SELECT count(*) FROM pg_temp.pgtrail_revert_change)
               + (SELECT coalesce(sum(h.fast), 0) FROM pg_temp.pgtrail_revert_shape AS h) INTO v_n;
        IF v_n > v_max THEN
            RAISE EXCEPTION 'pgtrail.revert: the selection holds % row changes, more than the cap of %', v_n, v_max
                USING ERRCODE = '54000',
                      HINT = 'Narrow the selection (tables, a shorter window), or raise the cap: "max_rows" in the selector, --max-rows on the command line.';
        END IF;
        PERFORM pgtrail._revert_conflicts();
        PERFORM pgtrail._revert_key_cycles();
        EXIT WHEN NOT EXISTS (SELECT FROM pg_temp.pgtrail_revert_conflict) OR on_conflict = 'refuse' OR v_round > 100;
        IF on_conflict = 'skip' THEN
            -- Leave the conflicting rows out, and look again: a row left out
            -- may stand in the way of another.
            INSERT INTO pg_temp.pgtrail_revert_log (kind, table_id, key, change_ids, conflict)
            SELECT 'SKIP', c.table_id, coalesce(c.key, k.k_final),
                   coalesce(k.change_ids, ARRAY[c.change_id]),
                   jsonb_agg(pgtrail._revert_conflict_json(c.kind, c.change_id, c.txid, c.ctx, c.at, c.op, c.columns, c.message) ORDER BY c.at, c.change_id)
            FROM pg_temp.pgtrail_revert_conflict AS c
            LEFT JOIN pg_temp.pgtrail_revert_chain AS k ON k.chain = c.chain
            GROUP BY c.chain, c.table_id, coalesce(c.key, k.k_final), coalesce(k.change_ids, ARRAY[c.change_id]),
                     CASE WHEN c.chain IS NULL THEN c.change_id END;
            INSERT INTO pg_temp.pgtrail_revert_skipkey (id, key)
            SELECT DISTINCT x.id, x.pk FROM pg_temp.pgtrail_revert_change AS x
            WHERE x.synthetic AND (x.chain IN (SELECT c.chain FROM pg_temp.pgtrail_revert_conflict AS c)
                                   OR EXISTS (SELECT FROM pg_temp.pgtrail_revert_conflict AS c
                                              JOIN pg_temp.pgtrail_revert_chain AS k ON k.chain = c.chain AND k.keyless
                                              WHERE x.id = ANY (k.change_ids) AND k.k_final = x.pk));
            DELETE FROM pg_temp.pgtrail_revert_sel AS s
            WHERE s.id IN (SELECT x.id FROM pg_temp.pgtrail_revert_change AS x
                           JOIN pg_temp.pgtrail_revert_conflict AS c ON c.chain = x.chain
                           WHERE NOT x.synthetic
                           UNION ALL
                           SELECT k.change_ids[1] FROM pg_temp.pgtrail_revert_conflict AS c
                           JOIN pg_temp.pgtrail_revert_chain AS k ON k.chain = c.chain AND k.at IS NOT NULL
                           UNION ALL
                           SELECT i FROM pg_temp.pgtrail_revert_conflict AS c
                           JOIN pg_temp.pgtrail_revert_chain AS k ON k.chain = c.chain AND k.keyless
                           CROSS JOIN LATERAL unnest(k.change_ids) AS i
                           WHERE NOT EXISTS (SELECT FROM pg_temp.pgtrail_revert_change AS x WHERE x.id = i AND x.synthetic)
                           UNION ALL
                           SELECT c.change_id FROM pg_temp.pgtrail_revert_conflict AS c WHERE c.kind = 'truncate_not_captured'
                           UNION ALL
                           SELECT s2.id FROM pg_temp.pgtrail_revert_sel AS s2
                           JOIN pg_temp.pgtrail_revert_conflict AS c ON c.kind = 'table' AND c.table_id = s2.table_id);
            CONTINUE;
        END IF;
        -- cascade: the transactions of the later changes join the selection.
        SELECT array_agg(DISTINCT c.txid) INTO v_added
        FROM pg_temp.pgtrail_revert_conflict AS c WHERE c.kind IN ('later_change', 'referenced', 'parent_gone') AND c.txid IS NOT NULL;
        EXIT WHEN v_added IS NULL;
        INSERT INTO pg_temp.pgtrail_revert_log (kind, table_id, key, change_ids, conflict)
        SELECT 'CASCADE', NULL, jsonb_build_object('txid', c.txid),
               ARRAY(SELECT y.id FROM pgtrail.change AS y
                     WHERE y.txid = c.txid AND (v_tables IS NULL OR y.table_id = ANY (v_tables))
                       AND NOT EXISTS (SELECT FROM pg_temp.pgtrail_revert_sel AS s WHERE s.id = y.id) ORDER BY y.id),
               jsonb_agg(pgtrail._revert_conflict_json(c.kind, c.change_id, c.txid, c.ctx, c.at, c.op, c.columns, c.message)
                         || jsonb_build_object('row', jsonb_build_object('table', (SELECT format('%I.%I', a.table_schema, a.table_name)
                                                                                   FROM pgtrail.audited_table AS a WHERE a.id = c.table_id),
                                                                         'key', c.key))
                         ORDER BY c.at, c.change_id)
        FROM pg_temp.pgtrail_revert_conflict AS c WHERE c.kind IN ('later_change', 'referenced', 'parent_gone') AND c.txid IS NOT NULL
        GROUP BY c.txid;
        PERFORM pgtrail._revert_sel_key();
        INSERT INTO pg_temp.pgtrail_revert_sel (id, at, only_key, txid, ctx, table_id, op, pk, old_pk, old_values, new_values, changed_fields)
        SELECT y.id, y.changed_at, NULL, y.txid, y.ctx, y.table_id, y.op, y.pk, y.old_pk, y.old_values, y.new_values, y.changed_fields FROM pgtrail.change AS y
        WHERE y.txid = ANY (v_added) AND (v_tables IS NULL OR y.table_id = ANY (v_tables))
        ON CONFLICT DO NOTHING;
    END LOOP;

    IF NOT EXISTS (SELECT FROM pg_temp.pgtrail_revert_conflict) THEN
        PERFORM pgtrail._revert_statements();
    END IF;
    -- (Key cycles are conflicts found above, with the others.)
    IF NOT EXISTS (SELECT FROM pg_temp.pgtrail_revert_conflict) THEN
        RETURN QUERY
        -- (A statement pgtrail.revert runs straight from the working
        -- tables, run_sql, comes without its rows: no data, no keys.)
        SELECT s.step, s.change_ids, format('%I.%I', a.table_schema, a.table_name), s.kind,
               CASE WHEN s.run_sql IS NULL THEN s.keys END, s.sql,
               NULL::jsonb, s.rows, s.cols, s.note, s.data, s.what
        FROM pg_temp.pgtrail_revert_stmt AS s JOIN pgtrail.audited_table AS a ON a.id = s.table_id
        ORDER BY s.step;
        RETURN QUERY
        SELECT NULL::integer, l.change_ids, format('%I.%I', a.table_schema, a.table_name), 'LOST', l.key, NULL::text,
               NULL::jsonb, 1::bigint, l.columns,
               format('%s cannot be restored (%s): %s', array_to_string(l.columns, ', '), l.why, l.kind),
               NULL::jsonb, NULL::text
        FROM pg_temp.pgtrail_revert_lost AS l JOIN pgtrail.audited_table AS a ON a.id = l.table_id
        ORDER BY a.table_schema, a.table_name, l.key::text;
        -- (Only when there are such rows: see _revert_shape.)
        IF EXISTS (SELECT FROM pg_temp.pgtrail_revert_shape AS h WHERE h.nothing > 0) THEN
        RETURN QUERY
        SELECT NULL::integer, k.change_ids, format('%I.%I', a.table_schema, a.table_name), 'NOTHING', k.k_final, NULL::text,
               NULL::jsonb, 0::bigint, NULL::text[],
               CASE WHEN k.keyless THEN 'the selection added and removed as many copies of this row: nothing to undo'
                    WHEN k.active THEN 'the selection moved this row''s key and back, changing nothing else: nothing to undo'
                    ELSE 'the selection created and deleted this row: nothing to undo' END,
               NULL::jsonb, NULL::text
        FROM pg_temp.pgtrail_revert_chain AS k JOIN pgtrail.audited_table AS a ON a.id = k.table_id
        -- (Also a row whose key the selection moved and moved back with no
        -- other column changed: no statement writes it, as none of the
        -- kinds above takes a row with its key in place and only key
        -- columns to restore, yet its changes are reverted, so listed.)
        -- (A fast path row's origin holds exactly its columns, cols.)
        WHERE NOT k.active
           OR (NOT k.keyless AND k.ex_origin AND k.ex_final AND k.k_origin = k.k_final
               AND CASE WHEN k.at IS NOT NULL THEN coalesce(cardinality(k.cols), 0) = 0 OR k.cols <@ a.key_columns
                        ELSE coalesce(k.origin, '{}') - a.key_columns = '{}' END)
        ORDER BY k.chain;
        END IF;
    END IF;
    RETURN QUERY
    SELECT NULL::integer, g.change_ids,
           (SELECT format('%I.%I', a.table_schema, a.table_name) FROM pgtrail.audited_table AS a WHERE a.id = g.table_id),
           g.kind, g.key, NULL::text, g.conflict, NULL::bigint, NULL::text[],
           CASE g.kind WHEN 'SKIP' THEN 'left as it is: ' || (g.conflict -> 0 ->> 'message')
                       ELSE format('transaction %s%s reverted too: its changes depend on the selection', g.key ->> 'txid',
                                   coalesce(' (' || (g.conflict -> 0 ->> 'actor') || ')', '')) END,
           NULL::jsonb, NULL::text
    FROM pg_temp.pgtrail_revert_log AS g;
    RETURN QUERY
    SELECT NULL::integer, k.change_ids,
           (SELECT format('%I.%I', a.table_schema, a.table_name) FROM pgtrail.audited_table AS a WHERE a.id = c.table_id),
           'CONFLICT', coalesce(c.key, k.k_final), NULL::text,
           pgtrail._revert_conflict_json(c.kind, c.change_id, c.txid, c.ctx, c.at, c.op, c.columns, c.message),
           NULL::bigint, c.columns, NULL::text, NULL::jsonb, NULL::text
    FROM pg_temp.pgtrail_revert_conflict AS c
    LEFT JOIN pg_temp.pgtrail_revert_chain AS k ON k.chain = c.chain
    ORDER BY c.table_id, coalesce(c.key, k.k_final)::text, c.at, c.change_id;
    PERFORM set_config('work_mem', v_work_mem, true);
END
$fn$;

COMMENT ON FUNCTION pgtrail.revert_plan(jsonb, text) IS
    'What reverting the selected changes would do: each statement (with its rows as $1), conflicts, rows skipped or cascaded, values that cannot be restored. Changes nothing.';

-- A conflict as JSON: the later change, its time and actor, the columns.
CREATE OR REPLACE FUNCTION pgtrail._revert_conflict_json(
    p_kind text, p_change_id bigint, p_txid bigint, p_ctx smallint, p_at timestamptz, p_op "char",
    p_columns text[], p_message text)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'kind', p_kind,
        'change_id', p_change_id,
        'txid', p_txid,
        'op', CASE p_op WHEN 'I' THEN 'INSERT' WHEN 'U' THEN 'UPDATE' WHEN 'D' THEN 'DELETE' WHEN 'T' THEN 'TRUNCATE' END,
        'changed_at', p_at,
        'actor', coalesce(x.actor_name, x.actor_id),
        'actor_id', x.actor_id,
        'actor_name', x.actor_name,
        'reason', x.reason,
        'columns', CASE WHEN cardinality(p_columns) > 0 THEN to_jsonb(p_columns) END,
        'message', coalesce(p_message,
            format('changed later by change %s (%s%s%s)', p_change_id,
                   CASE p_op WHEN 'I' THEN 'INSERT' WHEN 'U' THEN 'UPDATE' WHEN 'D' THEN 'DELETE' ELSE 'TRUNCATE' END,
                   CASE WHEN cardinality(p_columns) > 0 THEN ' of ' || array_to_string(p_columns, ', ') ELSE '' END,
                   CASE WHEN coalesce(x.actor_name, x.actor_id) IS NOT NULL
                        THEN ' by ' || coalesce(x.actor_name, x.actor_id) ELSE '' END))))
    FROM (SELECT 1) AS one
    LEFT JOIN pgtrail.transaction AS x ON x.txid = p_txid AND x.ctx = p_ctx
$fn$;

CREATE OR REPLACE FUNCTION pgtrail.revert(selector jsonb, on_conflict text DEFAULT 'refuse', reason text DEFAULT NULL)
RETURNS TABLE (step integer, change_ids bigint[], table_name text, operation text, key jsonb, sql text,
               conflict jsonb, rows bigint, columns text[], note text, data jsonb, kind text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- Planning its own queries costs more than running them (JIT compiles for
-- seconds where estimates of temporary tables and jsonb functions are high).
-- Its working tables are analyzed for row counts and distinct values: a
-- small sample is enough, and a large one costs more than it informs.
SET jit = off
SET default_statistics_target = 10
AS $fn$
#variable_conflict use_column
DECLARE
    v_reason   text := coalesce(nullif(btrim(reason), ''), nullif(current_setting('pgtrail.reason', true), ''));
    v_batch    integer;
    v_lock     text;
    v_old_lock text := current_setting('lock_timeout');
    v_progress boolean := coalesce(current_setting('pgtrail.progress', true), '') = 'on';
    v_actor    jsonb;
    v_prev     jsonb;
    v_extra    jsonb;
    v_total    bigint;
    v_done     bigint := 0;
    v_n        bigint;
    v_try      integer;
    v_detail   text;
    v_data     jsonb;
    v_ends     bigint[];
    v_upto     bigint[];
    v_changes  bigint;
    v_txids    jsonb;
    v_selected bigint;
    -- (Under refuse, see below.)
    v_guarded  boolean := on_conflict = 'refuse';
    v_mismatch text;
    s          record;
    b          record;
BEGIN
    IF v_reason IS NULL THEN
        RAISE EXCEPTION 'pgtrail.revert: a revert needs a reason'
            USING ERRCODE = '22023',
                  HINT = 'Pass reason => ''why'' (it is kept with the revert''s changes), e.g. reason => ''ticket #4211: undo the batch script''.';
    END IF;
    BEGIN
        v_batch := coalesce((selector ->> 'batch_rows')::integer, 10000);
        v_lock := coalesce(selector ->> 'lock_timeout', '5s');
        PERFORM set_config('lock_timeout', v_lock, true);
    EXCEPTION WHEN OTHERS THEN
        RAISE EXCEPTION 'pgtrail.revert: "batch_rows" must be a number and "lock_timeout" a duration, got % and %',
                selector -> 'batch_rows', selector -> 'lock_timeout'
            USING ERRCODE = '22023', HINT = 'E.g. "batch_rows": 10000, "lock_timeout": "5s".';
    END;
    IF v_batch < 1 THEN
        RAISE EXCEPTION 'pgtrail.revert: "batch_rows" must be at least 1' USING ERRCODE = '22023';
    END IF;

    IF to_regclass('pg_temp.pgtrail_revert_run') IS NOT NULL THEN
        DROP TABLE pg_temp.pgtrail_revert_run;
    END IF;
    CREATE TEMP TABLE pgtrail_revert_run (
        ord bigint, step integer, change_ids bigint[], table_name text, operation text, key jsonb, sql text,
        conflict jsonb, rows bigint, columns text[], note text, data jsonb, kind text) ON COMMIT DROP;
    -- (Not compressed: see pgtrail_revert_stmt.)
    ALTER TABLE pg_temp.pgtrail_revert_run ALTER COLUMN data SET STORAGE EXTERNAL,
        ALTER COLUMN key SET STORAGE EXTERNAL, ALTER COLUMN change_ids SET STORAGE EXTERNAL;
    -- The plan, made again in this transaction (conflicts are checked
    -- against the rows as they are now), as revert_plan makes it, but that
    -- statements it can write straight from its working tables carry no
    -- data (see _revert_statements): pgtrail.revert_applying says so.
    -- Under refuse, the rows an UPDATE's guard compares with the live rows
    -- as the plan would are not compared by the plan too
    -- (pgtrail.revert_guarded, see _revert_conflicts): when a batch does
    -- not find its rows as planned, its writes are undone and the plan is
    -- made again with that comparison, which lists the conflicts (PGTR6)
    -- as it would have; if it finds none, the revert fails as it did (a row
    -- changed while reverting).
    <<attempt>>
    LOOP
        DELETE FROM pg_temp.pgtrail_revert_run;
        PERFORM set_config('pgtrail.revert_applying', 'on', true);
        PERFORM set_config('pgtrail.revert_guarded', CASE WHEN v_guarded AND v_mismatch IS NULL THEN 'on' ELSE '' END, true);
        INSERT INTO pg_temp.pgtrail_revert_run
        SELECT row_number() OVER () AS ord, p.* FROM pgtrail.revert_plan(selector, on_conflict) AS p;
        PERFORM set_config('pgtrail.revert_applying', '', true);
        PERFORM set_config('pgtrail.revert_guarded', '', true);

        SELECT count(*), string_agg(format('%s %s: %s', r.table_name, r.key, r.conflict ->> 'message')
                                    || coalesce(format(' at %s', r.conflict ->> 'changed_at'), ''), E'\n' ORDER BY r.ord)
                         FILTER (WHERE r.ord <= (SELECT min(x.ord) + 19 FROM pg_temp.pgtrail_revert_run AS x WHERE x.operation = 'CONFLICT'))
        INTO v_n, v_detail
        FROM pg_temp.pgtrail_revert_run AS r WHERE r.operation = 'CONFLICT';
        IF v_n > 0 THEN
            RAISE EXCEPTION 'pgtrail.revert: % conflict(s) with later changes; nothing was changed', v_n
                USING ERRCODE = 'PGTR6',
                      DETAIL = v_detail || CASE WHEN v_n > 20 THEN format(E'\n... and %s more', v_n - 20) ELSE '' END,
                      HINT = 'Review them with pgtrail.revert_plan(selector); on_conflict => ''skip'' leaves those rows as they are, ''cascade'' also reverts the later changes.';
        END IF;
        IF v_mismatch IS NOT NULL THEN
            RAISE EXCEPTION '%', v_mismatch USING ERRCODE = '40001', HINT = 'Plan the revert again and retry.';
        END IF;

        -- (The writes, and the context they are made under: undone when a
        -- guard finds a row not as planned, see above.)
        BEGIN
            -- The revert's own context: who, why, and what it reverts.
            v_actor := pgtrail._revert_actor();
            v_prev := jsonb_build_object(
                'actor_id', current_setting('pgtrail.actor_id', true), 'actor_name', current_setting('pgtrail.actor_name', true),
                'actor_type', current_setting('pgtrail.actor_type', true), 'reason', current_setting('pgtrail.reason', true),
                'context', current_setting('pgtrail.context', true));
            BEGIN
                v_extra := nullif(v_prev ->> 'context', '')::jsonb;
                IF jsonb_typeof(v_extra) <> 'object' THEN
                    v_extra := NULL;
                END IF;
            EXCEPTION WHEN OTHERS THEN
                v_extra := NULL;
            END;
            -- How many changes the plan undoes, and their transactions. (The plan's
            -- changes are those of pg_temp.pgtrail_revert_sel, the plan's own copy:
            -- no probe of every partition of the trail per id. When the plan undoes
            -- every selected change, as it mostly does, their transactions are the
            -- selection's, read without matching the ids. Else the ids are matched:
            -- "+ 0" keeps the planner off the selection's key index, which it picks
            -- when it takes the ids of a statement's array for a handful.)
            -- (The ids counted by the sort of an aggregate's DISTINCT, not a
            -- hash: a statement's ids come sorted, and a sorted input is
            -- found so in one pass. No id is NULL: each is a change's. The
            -- selection's count and transactions in one pass over it.)
            SELECT count(DISTINCT i) INTO v_changes
            FROM pg_temp.pgtrail_revert_run AS r, unnest(r.change_ids) AS i
            WHERE r.operation IN ('DELETE', 'UPDATE', 'MOVE', 'INSERT', 'NOTHING', 'LOST');
            SELECT count(*), jsonb_agg(DISTINCT c.txid ORDER BY c.txid) INTO v_selected, v_txids
            FROM pg_temp.pgtrail_revert_sel AS c;
            IF v_changes <> v_selected THEN
                SELECT jsonb_agg(DISTINCT c.txid) INTO v_txids
                FROM (SELECT DISTINCT i FROM pg_temp.pgtrail_revert_run AS r, unnest(r.change_ids) AS i
                      WHERE r.operation IN ('DELETE', 'UPDATE', 'MOVE', 'INSERT', 'NOTHING', 'LOST')) AS d
                JOIN pg_temp.pgtrail_revert_sel AS c ON c.id + 0 = d.i;
            END IF;
            v_extra := coalesce(v_extra, '{}') || jsonb_build_object('revert', jsonb_strip_nulls(jsonb_build_object(
                'selector', selector - ARRAY['max_rows', 'batch_rows', 'lock_timeout'],
                'on_conflict', on_conflict,
                'changes', v_changes,
                'transactions', v_txids)));
            PERFORM pgtrail.set_context(actor_id => v_actor ->> 'actor_id', actor_name => v_actor ->> 'actor_name',
                                        actor_type => v_actor ->> 'actor_type', reason => v_reason, extra => v_extra);

            SET CONSTRAINTS ALL DEFERRED;
            -- (Rows counted once: a row parked on a temporary key is counted when it
            -- moves back to its own.)
            SELECT coalesce(sum(r.rows), 0) INTO v_total FROM pg_temp.pgtrail_revert_run AS r
            WHERE r.step IS NOT NULL AND r.kind <> 'park';
            IF v_progress THEN
                RAISE NOTICE 'pgtrail revert progress: 0 of % rows', v_total;
            END IF;
            FOR s IN SELECT r.step, r.table_name, r.operation, r.sql, r.data,
                            -- (A table without key: each row of the data says how
                            -- many copies it stands for, as "n".)
                            r.kind IN ('delete_copies', 'insert_copies') AS copies, r.kind = 'park' AS parking,
                            x.run_sql, x.run_rows, x.run_lo, x.run_hi
                     FROM pg_temp.pgtrail_revert_run AS r
                     LEFT JOIN pg_temp.pgtrail_revert_stmt AS x ON x.step = r.step AND r.data IS NULL
                     WHERE r.step IS NOT NULL ORDER BY r.step LOOP
                -- A statement without data is run on its rows in the plan's working
                -- table, batch by batch: ranges of their chain numbers, v_batch rows
                -- each (the last chain number of each batch, and how many rows
                -- come before it and it, by one pass over its rows, or without
                -- one when its rows are a range of chain numbers).
                IF s.run_lo IS NOT NULL THEN
                    -- (Its rows are every chain number from run_lo to run_hi.)
                    SELECT array_agg(least(s.run_lo - 1 + g * v_batch, s.run_hi) ORDER BY g),
                           array_agg(least(g * v_batch, s.run_hi - s.run_lo + 1) ORDER BY g)
                    INTO v_ends, v_upto
                    FROM generate_series(1, (s.run_hi - s.run_lo) / v_batch + 1) AS g;
                ELSIF s.run_sql IS NOT NULL THEN
                    EXECUTE format('SELECT array_agg(q.chain ORDER BY q.i), array_agg(q.i ORDER BY q.i) '
                                   'FROM (SELECT r.chain, row_number() OVER (ORDER BY r.chain) AS i, count(*) OVER () AS n '
                                   '      FROM (%s) AS r) AS q '
                                   'WHERE q.i %% $1 = 0 OR q.i = q.n', s.run_rows)
                        USING v_batch INTO v_ends, v_upto;
                END IF;
                -- Batches of the others are slices of the statement's rows (jsonb
                -- arrays index in constant time, so slicing costs what the batch
                -- holds). Rows of a keyed table are one each: a column named "n" is
                -- no count. (The data read from the table once: a variable holds it
                -- in memory.)
                v_data := s.data;
                FOR b IN SELECT NULL::jsonb AS rows, coalesce(lag(z.e) OVER (ORDER BY z.o), 0) AS lo, z.e AS hi,
                                z.u - coalesce(lag(z.u) OVER (ORDER BY z.o), 0) AS n, z.o AS first
                         FROM unnest(v_ends, v_upto) WITH ORDINALITY AS z(e, u, o)
                         WHERE s.run_sql IS NOT NULL
                         UNION ALL
                         SELECT q.rows, NULL, NULL,
                                CASE WHEN s.copies
                                     THEN (SELECT sum(coalesce((x.e ->> 'n')::bigint, 1)) FROM jsonb_array_elements(q.rows) AS x(e))
                                     ELSE jsonb_array_length(q.rows) END AS n, g.first
                         FROM generate_series(0, jsonb_array_length(v_data) - 1, v_batch) AS g(first)
                         CROSS JOIN LATERAL (SELECT jsonb_path_query_array(v_data, format('$[%s to %s]', g.first, g.first + v_batch - 1)::jsonpath) AS rows) AS q
                         WHERE s.run_sql IS NULL
                         ORDER BY 5 LOOP
                    v_try := 0;
                    LOOP
                        BEGIN
                            IF s.run_sql IS NOT NULL THEN
                                EXECUTE s.run_sql USING b.lo, b.hi;
                            ELSE
                                EXECUTE s.sql USING b.rows;
                            END IF;
                            GET DIAGNOSTICS v_n = ROW_COUNT;
                            EXIT;
                        EXCEPTION WHEN lock_not_available THEN
                            v_try := v_try + 1;
                            IF v_try >= 3 THEN
                                RAISE EXCEPTION 'pgtrail.revert: step % (% of %) waited longer than % for row locks, three times; nothing was changed',
                                        s.step, s.operation, s.table_name, v_lock
                                    USING ERRCODE = '55P03',
                                          HINT = 'A long transaction holds these rows: try again later, or allow a longer "lock_timeout".';
                            END IF;
                            PERFORM pg_sleep(0.1 * v_try);
                        END;
                    END LOOP;
                    IF v_n <> b.n THEN
                        v_mismatch := format('pgtrail.revert: step %s (%s of %s) found %s of its %s row(s) as planned: a row changed while reverting; nothing was changed',
                                             s.step, s.operation, s.table_name, v_n, b.n);
                        IF v_guarded THEN
                            RAISE EXCEPTION '%', v_mismatch USING ERRCODE = 'PGTRG';
                        END IF;
                        RAISE EXCEPTION '%', v_mismatch USING ERRCODE = '40001', HINT = 'Plan the revert again and retry.';
                    END IF;
                    IF NOT s.parking THEN
                        v_done := v_done + b.n;
                    END IF;
                    IF v_progress AND NOT s.parking THEN
                        RAISE NOTICE 'pgtrail revert progress: % of % rows', v_done, v_total;
                    END IF;
                END LOOP;
            END LOOP;
        EXCEPTION WHEN SQLSTATE 'PGTRG' THEN
            CONTINUE attempt;
        END;
        EXIT attempt;
    END LOOP;
    SET CONSTRAINTS ALL IMMEDIATE;
    PERFORM set_config('lock_timeout', v_old_lock, true);

    -- Changes after the revert, in the same transaction, are the caller's again.
    PERFORM pgtrail.set_context(actor_id => nullif(v_prev ->> 'actor_id', ''), actor_name => nullif(v_prev ->> 'actor_name', ''),
                                actor_type => nullif(v_prev ->> 'actor_type', ''), reason => nullif(v_prev ->> 'reason', ''));
    PERFORM set_config('pgtrail.context', coalesce(v_prev ->> 'context', ''), true);

    RETURN QUERY SELECT r.step, r.change_ids, r.table_name, r.operation, r.key, r.sql, r.conflict, r.rows, r.columns, r.note, r.data,
                        r.kind
                 FROM pg_temp.pgtrail_revert_run AS r ORDER BY r.ord;
END
$fn$;

COMMENT ON FUNCTION pgtrail.revert(jsonb, text, text) IS
    'Reverts the selected changes in the caller''s transaction, under a context of its own (reason required); refuses (PGTR6) when later changes conflict, unless on_conflict is skip or cascade. Returns the plan''s lines (a statement written straight from the plan''s working tables without its rows: revert_plan shows them).';

REVOKE ALL ON FUNCTION pgtrail.revert_plan(jsonb, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION pgtrail.revert(jsonb, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION pgtrail._revert_actor() FROM PUBLIC;
