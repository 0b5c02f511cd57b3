-- Queries over the trail: a row's history with its full state after each
-- change, a row or a whole table as it was at a moment, and blame.
--
-- How states are known. With images = 'diff' an UPDATE records only the
-- changed fields, and rows inserted before pgtrail was installed have no
-- INSERT, so a state is reconstructed from a known full state:
--   * forwards from an INSERT (its new_values is the whole row), overlaying
--     each UPDATE's new_values;
--   * backwards from the live row (for a row that still exists), or from a
--     DELETE's old_values (the whole old row), undoing each UPDATE by
--     overlaying its old_values;
--   * an UPDATE with full images (changed_fields stored) carries both rows.
-- The live row is read as capture records it: ignored columns dropped,
-- redacted columns replaced by the same markers (pgtrail._as_recorded).
--
-- A row's life is followed across key changes (old_pk -> pk) in both
-- directions, and ends at its DELETE or at the first TRUNCATE of the table
-- after it began. A TRUNCATE whose rows were all recorded (truncate =
-- 'capture', new_values ->> 'rows' = 'recorded': 25_truncate.sql) ends
-- them with the DELETEs recorded before it; the queries skip it as they
-- would skip any event. Forwards, the trail knows every row from the last
-- TRUNCATE up to a moment, or from the install when the table was empty
-- then or its rows were recorded then (pgtrail._known_from). Changes are ordered by (changed_at, id). A moment `at`
-- counts every change whose changed_at <= at (changed_at is the end of the
-- statement that made it, not the commit of its transaction).
--
-- Errors (SQLSTATE): PGTR3 a moment before the table was audited; PGTR4 not
-- an audited table (or detached: the live table no longer matches the
-- trail); PGTR5 the trail cannot tell (a TRUNCATE after the moment removed
-- rows that predate the install and were never recorded, and nothing
-- before the moment tells which rows there were).
--
-- Limits. Changes of one statement are read one after another in the order
-- they were recorded, which is exact when a unique key is checked row by row
-- (PRIMARY KEY, replica identity), not for swaps or shifts of keys in one
-- statement under a DEFERRABLE or non-unique configured key. Tables without
-- a key count copies of identical rows instead, which any order gives right.
-- When a key was used by several rows over time, history and blame follow
-- the last row that had it. The four public functions run with the rights
-- of pgtrail's owner (SECURITY DEFINER, pinned search_path): they read the
-- live row and mark its redacted values with the secret that readers never
-- see. Only the owner and the role pgtrail_reader may execute them; a reader
-- sees, through them, what the trail already shows it.

-- The audited table behind a regclass (a partition: its partitioned
-- table's), or error PGTR4.
CREATE OR REPLACE FUNCTION pgtrail._audited(p_tbl regclass)
RETURNS pgtrail.audited_table
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    t pgtrail.audited_table;
BEGIN
    -- By its capture triggers (whatever it is called now), else by name; a
    -- partition gives its partitioned table's.
    SELECT a.* INTO t FROM pgtrail.audited_table AS a WHERE a.id = pgtrail._audited_id_of(p_tbl);
    IF NOT FOUND THEN
        SELECT a.* INTO t
        FROM pg_class AS c
        JOIN pg_namespace AS n ON n.oid = c.relnamespace
        JOIN pgtrail.audited_table AS a ON a.table_schema = n.nspname AND a.table_name = c.relname
        WHERE c.oid = p_tbl;
    END IF;
    IF NOT FOUND OR t.detached_at IS NOT NULL THEN
        RAISE EXCEPTION 'pgtrail: % is not audited%: run pgtrail apply, and check that pgtrail.toml includes it', p_tbl,
                CASE WHEN t.detached_at IS NOT NULL THEN format(' (capture was detached at %s)', t.detached_at) ELSE '' END
            USING ERRCODE = 'PGTR4',
                  HINT = 'Run pgtrail apply, and check that pgtrail.toml includes this table.';
    END IF;
    -- The query functions read the live table as their owner (pgtrail_owner).
    IF NOT has_table_privilege(p_tbl, 'SELECT')
       OR NOT has_schema_privilege(t.table_schema, 'USAGE') THEN
        RAISE EXCEPTION 'pgtrail: % cannot read %, so the trail cannot rebuild its rows', current_user, p_tbl
            USING ERRCODE = '42501',
                  HINT = format('As the table''s owner: GRANT USAGE ON SCHEMA %I TO %I; GRANT SELECT ON %s TO %I;',
                                t.table_schema, current_user, p_tbl, current_user);
    END IF;
    RETURN t;
END
$fn$;

-- Error PGTR3 when `at` is before the table was audited.
CREATE OR REPLACE FUNCTION pgtrail._check_moment(t pgtrail.audited_table, p_at timestamptz)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF p_at < t.attached_at THEN
        RAISE EXCEPTION 'pgtrail: %.% has been audited since %, so the trail cannot tell how it was at %',
                quote_ident(t.table_schema), quote_ident(t.table_name), t.attached_at, p_at
            USING ERRCODE = 'PGTR3',
                  HINT = format('Ask about a moment at or after %s.', t.attached_at);
    END IF;
END
$fn$;

-- Error PGTR5: the trail cannot tell.
CREATE OR REPLACE FUNCTION pgtrail._cannot_tell(t pgtrail.audited_table, p_at timestamptz)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RAISE EXCEPTION 'pgtrail: the trail cannot tell how %.% was at %: a later TRUNCATE removed rows without recording them, and the trail does not know every row the table had then',
            quote_ident(t.table_schema), quote_ident(t.table_name), p_at
        USING ERRCODE = 'PGTR5',
              HINT = 'Moments after the first TRUNCATE since the install can be answered. '
                  || 'truncate = "capture" in pgtrail.toml records the rows a TRUNCATE removes.';
END
$fn$;

-- The live row with key p_pk, as capture would record it, or NULL.
CREATE OR REPLACE FUNCTION pgtrail._live_row(t pgtrail.audited_table, p_tbl regclass, p_pk jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_secret bytea;
    v_row    jsonb;
BEGIN
    IF cardinality(t.redact_columns) > 0 THEN
        SELECT value INTO v_secret FROM pgtrail.secret WHERE name = 'redaction';
    END IF;
    IF cardinality(t.key_columns) = 0 OR t.key_columns && t.redact_columns THEN
        -- The key holds redaction markers (or is the whole row): compare keys as recorded.
        EXECUTE format('SELECT r.j FROM (SELECT pgtrail._as_recorded(to_jsonb(x.*), $6, $3) AS j FROM %s AS x) AS r '
                       'WHERE pgtrail._key(r.j, $4) = $5 LIMIT 1', p_tbl)
        INTO v_row
        USING t.ignore_columns, t.redact_columns, v_secret, t.key_columns, p_pk, t;
    ELSE
        -- Through the key's index: the JSON key back to typed values.
        EXECUTE format('SELECT pgtrail._as_recorded(to_jsonb(x.*), $5, $3) '
                       'FROM jsonb_populate_record(NULL::%s, $4) AS p JOIN %s AS x ON %s LIMIT 1',
                       p_tbl, p_tbl,
                       (SELECT string_agg(format('x.%I = p.%I', k, k), ' AND ') FROM unnest(t.key_columns) AS k))
        INTO v_row
        USING t.ignore_columns, t.redact_columns, v_secret, p_pk, t;
    END IF;
    IF v_row IS NOT NULL AND pgtrail._key(v_row, t.key_columns) IS DISTINCT FROM p_pk THEN
        RETURN NULL;
    END IF;
    RETURN v_row;
END
$fn$;

-- The life of the row that had key p_pk (named as today) at p_at (else the
-- next one to have it): its changes in order (r_seq 1..n), each with the
-- state after it, whether that state is known, and the row's key after it
-- (named as today); plus r_seq 0, the state before the first recorded
-- change. Each state names columns as they were named at (r_names_at,
-- r_names_id): its change's position (for r_seq 0, just before the first
-- change; NULL: now). Across schema changes (38_lineage.sql) the row's
-- changes are found under every spelling its key had, and states are
-- carried forwards and backwards along the column lineage.
DROP FUNCTION IF EXISTS pgtrail._row_life(pgtrail.audited_table, regclass, jsonb, timestamptz);
CREATE FUNCTION pgtrail._row_life(
    t pgtrail.audited_table, p_tbl regclass, p_pk jsonb, p_at timestamptz)
RETURNS TABLE (r_seq integer, r_id bigint, r_op "char", r_changed_at timestamptz, r_txid bigint,
               r_ctx smallint, r_pk jsonb, r_old_pk jsonb, r_old_values jsonb, r_new_values jsonb,
               r_changed_fields text[], r_state jsonb, r_known boolean, r_key jsonb,
               r_names_at timestamptz, r_names_id bigint)
LANGUAGE plpgsql STABLE
-- A row's life is a few changes: with the default estimate (1,000 rows) the
-- planner of history and blame hashed all of pgtrail.transaction to join
-- them (a scan that grows with the trail); 20 makes it look each one up.
ROWS 20
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_life     pgtrail.change[] := '{}';
    a          pgtrail.change;
    c          pgtrail.change;
    p          pgtrail.change;
    v_tr       pgtrail.change;
    v_key      jsonb;
    v_spell    jsonb[];
    v_hash     bigint[];
    v_cur_at   timestamptz;
    v_cur_id   bigint;
    v_n        integer;
    v_fwd      jsonb[];
    v_fknown   boolean[];
    v_bwd      jsonb[];
    v_bknown   boolean[];
    v_full_row boolean := cardinality(t.key_columns) = 0;
    v_live     jsonb;
    v_lineage  boolean := pgtrail._has_lineage(t.id);
BEGIN
    v_spell := CASE WHEN v_lineage THEN pgtrail._key_spellings(t.id, p_pk, NULL, NULL) ELSE ARRAY[p_pk] END;
    v_hash := pgtrail._hashes(v_spell);
    -- The anchor: the last change of this key up to p_at, else the first after.
    SELECT x.* INTO a FROM pgtrail.change AS x
    WHERE x.table_id = t.id AND ((pgtrail._h(x.pk) = ANY (v_hash) AND x.pk = ANY (v_spell))
                                 OR (pgtrail._h(x.old_pk) = ANY (v_hash) AND x.old_pk = ANY (v_spell)))
      AND x.changed_at <= p_at
    ORDER BY x.changed_at DESC, x.id DESC LIMIT 1;
    IF NOT FOUND THEN
        SELECT x.* INTO a FROM pgtrail.change AS x
        WHERE x.table_id = t.id AND ((pgtrail._h(x.pk) = ANY (v_hash) AND x.pk = ANY (v_spell))
                                     OR (pgtrail._h(x.old_pk) = ANY (v_hash) AND x.old_pk = ANY (v_spell)))
        ORDER BY x.changed_at, x.id LIMIT 1;
    END IF;
    IF a.id IS NULL THEN
        -- Never changed since the install: the live row is the whole story.
        v_live := pgtrail._live_row(t, p_tbl, p_pk);
        RETURN QUERY SELECT 0, NULL::bigint, NULL::"char", '-infinity'::timestamptz, NULL::bigint, NULL::smallint,
                            NULL::jsonb, NULL::jsonb, NULL::jsonb, NULL::jsonb, NULL::text[],
                            v_live, true, CASE WHEN v_live IS NOT NULL THEN p_pk END,
                            NULL::timestamptz, NULL::bigint;
        RETURN;
    END IF;
    v_life := ARRAY[a];

    -- Backwards: the changes that led to the anchor, through earlier keys.
    c := a;
    v_cur_at := a.changed_at;
    v_cur_id := a.id;
    LOOP
        EXIT WHEN c.op IN ('I', 'T');
        v_key := CASE WHEN c.op = 'U' THEN coalesce(c.old_pk, c.pk) ELSE c.pk END;
        v_spell := CASE WHEN v_lineage THEN pgtrail._key_spellings(t.id, v_key, c.changed_at, c.id) ELSE ARRAY[v_key] END;
        v_hash := pgtrail._hashes(v_spell);
        SELECT x.* INTO c FROM pgtrail.change AS x
        WHERE x.table_id = t.id AND ((pgtrail._h(x.pk) = ANY (v_hash) AND x.pk = ANY (v_spell))
                                     OR (pgtrail._h(x.old_pk) = ANY (v_hash) AND x.old_pk = ANY (v_spell)))
          AND (x.changed_at, x.id) < (v_cur_at, v_cur_id)
        ORDER BY x.changed_at DESC, x.id DESC LIMIT 1;
        EXIT WHEN c.id IS NULL;
        -- Only a change that left the row with this key belongs to its life.
        EXIT WHEN NOT (c.op IN ('I', 'U') AND c.pk = ANY (v_spell));
        EXIT WHEN EXISTS (SELECT FROM pgtrail.change AS x
                          WHERE x.table_id = t.id AND pgtrail._h(x.pk) IS NULL AND x.pk IS NULL AND x.op = 'T'
                            AND (x.new_values ->> 'rows') IS DISTINCT FROM 'recorded'
                            AND (x.changed_at, x.id) > (c.changed_at, c.id)
                            AND (x.changed_at, x.id) < (v_cur_at, v_cur_id));
        v_life := array_prepend(c, v_life);
        v_cur_at := c.changed_at;
        v_cur_id := c.id;
    END LOOP;

    -- Forwards: what followed, through later keys, up to its DELETE or TRUNCATE.
    -- (A TRUNCATE has no key: `pgtrail._h(x.pk) IS NULL` finds it in the key
    -- index under table_id and NULL; `x.pk IS NULL` alone reads the table.)
    c := a;
    v_cur_at := a.changed_at;
    v_cur_id := a.id;
    LOOP
        EXIT WHEN c.op IN ('D', 'T');
        v_key := c.pk;
        v_spell := CASE WHEN v_lineage THEN pgtrail._key_spellings(t.id, v_key, c.changed_at, c.id) ELSE ARRAY[v_key] END;
        v_hash := pgtrail._hashes(v_spell);
        SELECT x.* INTO v_tr FROM pgtrail.change AS x
        WHERE x.table_id = t.id AND pgtrail._h(x.pk) IS NULL AND x.pk IS NULL AND x.op = 'T' AND (x.new_values ->> 'rows') IS DISTINCT FROM 'recorded'
          AND (x.changed_at, x.id) > (v_cur_at, v_cur_id)
        ORDER BY x.changed_at, x.id LIMIT 1;
        SELECT x.* INTO c FROM pgtrail.change AS x
        WHERE x.table_id = t.id AND ((pgtrail._h(x.pk) = ANY (v_hash) AND x.pk = ANY (v_spell))
                                     OR (pgtrail._h(x.old_pk) = ANY (v_hash) AND x.old_pk = ANY (v_spell)))
          AND (x.changed_at, x.id) > (v_cur_at, v_cur_id)
        ORDER BY x.changed_at, x.id LIMIT 1;
        IF c.id IS NOT NULL AND (v_tr.id IS NULL OR (c.changed_at, c.id) < (v_tr.changed_at, v_tr.id)) THEN
            EXIT WHEN NOT ((c.op = 'D' AND c.pk = ANY (v_spell)) OR (c.op = 'U' AND coalesce(c.old_pk, c.pk) = ANY (v_spell)));
            v_life := array_append(v_life, c);
            v_cur_at := c.changed_at;
            v_cur_id := c.id;
            CONTINUE;
        END IF;
        IF v_tr.id IS NOT NULL THEN
            v_life := array_append(v_life, v_tr);
        END IF;
        EXIT;
    END LOOP;

    -- States: index i + 1 holds the state after change i (1 = before the
    -- first), named as at change i (1: as at the first change).
    v_n := cardinality(v_life);
    v_fwd := array_fill(NULL::jsonb, ARRAY[v_n + 1]);
    v_bwd := array_fill(NULL::jsonb, ARRAY[v_n + 1]);
    v_fknown := array_fill(false, ARRAY[v_n + 1]);
    v_bknown := array_fill(false, ARRAY[v_n + 1]);

    c := v_life[1];
    v_fknown[1] := c.op = 'I';
    FOR i IN 1 .. v_n LOOP
        c := v_life[i];
        IF c.op = 'I' THEN
            v_fwd[i + 1] := CASE WHEN v_full_row THEN c.pk ELSE c.new_values END;
            v_fknown[i + 1] := true;
        ELSIF c.op IN ('D', 'T') THEN
            v_fknown[i + 1] := true;
        ELSIF v_full_row THEN
            v_fwd[i + 1] := c.pk;
            v_fknown[i + 1] := true;
        ELSIF c.changed_fields IS NOT NULL THEN
            v_fwd[i + 1] := c.new_values;
            v_fknown[i + 1] := true;
        ELSIF v_fknown[i] AND v_fwd[i] IS NOT NULL THEN
            IF v_lineage AND i > 1 THEN
                p := v_life[i - 1];
                v_fwd[i + 1] := pgtrail._names_forward(t.id, v_fwd[i], p.changed_at, p.id, c.changed_at, c.id, true)
                                || c.new_values;
            ELSE
                v_fwd[i + 1] := v_fwd[i] || c.new_values;
            END IF;
            v_fknown[i + 1] := true;
        END IF;
    END LOOP;

    c := v_life[v_n];
    IF c.op IN ('D', 'T') THEN
        v_bknown[v_n + 1] := true;
    ELSIF v_full_row THEN
        v_bwd[v_n + 1] := c.pk;
        v_bknown[v_n + 1] := true;
    ELSE
        v_key := c.pk;
        IF v_lineage THEN
            v_key := pgtrail._names_forward(t.id, c.pk, c.changed_at, c.id, NULL, NULL, false);
        END IF;
        v_bwd[v_n + 1] := pgtrail._live_row(t, p_tbl, v_key);
        IF v_lineage THEN
            v_bwd[v_n + 1] := pgtrail._names_backward(t.id, v_bwd[v_n + 1], NULL, NULL, c.changed_at, c.id);
        END IF;
        v_bknown[v_n + 1] := v_bwd[v_n + 1] IS NOT NULL;
    END IF;
    FOR i IN REVERSE v_n .. 1 LOOP
        c := v_life[i];
        IF c.op = 'I' THEN
            v_bknown[i] := true;
        ELSIF c.op = 'D' THEN
            v_bwd[i] := c.old_values;
            v_bknown[i] := true;
        ELSIF c.op = 'T' THEN
            NULL;
        ELSIF v_full_row THEN
            v_bwd[i] := coalesce(c.old_pk, c.pk);
            v_bknown[i] := true;
        ELSIF c.changed_fields IS NOT NULL THEN
            v_bwd[i] := c.old_values;
            v_bknown[i] := true;
        ELSIF v_bknown[i + 1] AND v_bwd[i + 1] IS NOT NULL THEN
            v_bwd[i] := v_bwd[i + 1] || c.old_values;
            v_bknown[i] := true;
        END IF;
        -- Named as at change i; the state after change i - 1 is named as at it.
        IF v_lineage AND i > 1 AND v_bknown[i] AND v_bwd[i] IS NOT NULL THEN
            p := v_life[i - 1];
            v_bwd[i] := pgtrail._names_backward(t.id, v_bwd[i], c.changed_at, c.id, p.changed_at, p.id);
            v_bknown[i] := v_bwd[i] IS NOT NULL;
        END IF;
    END LOOP;

    c := v_life[1];
    RETURN QUERY SELECT 0, NULL::bigint, NULL::"char", '-infinity'::timestamptz, NULL::bigint, NULL::smallint,
                        NULL::jsonb, NULL::jsonb, NULL::jsonb, NULL::jsonb, NULL::text[],
                        CASE WHEN v_fknown[1] THEN v_fwd[1] ELSE v_bwd[1] END,
                        v_fknown[1] OR v_bknown[1],
                        CASE WHEN c.op IN ('U', 'D') AND v_lineage
                             THEN pgtrail._names_forward(t.id, CASE c.op WHEN 'U' THEN coalesce(c.old_pk, c.pk) ELSE c.pk END,
                                                         c.changed_at, c.id, NULL, NULL, false)
                             ELSE CASE c.op WHEN 'U' THEN coalesce(c.old_pk, c.pk) WHEN 'D' THEN c.pk END END,
                        c.changed_at, c.id;
    FOR i IN 1 .. v_n LOOP
        c := v_life[i];
        RETURN QUERY SELECT i, c.id, c.op, c.changed_at, c.txid, c.ctx, c.pk, c.old_pk, c.old_values,
                            c.new_values, c.changed_fields,
                            CASE WHEN v_fknown[i + 1] THEN v_fwd[i + 1] ELSE v_bwd[i + 1] END,
                            v_fknown[i + 1] OR v_bknown[i + 1],
                            CASE WHEN c.op IN ('I', 'U') THEN
                                CASE WHEN v_lineage THEN pgtrail._names_forward(t.id, c.pk, c.changed_at, c.id, NULL, NULL, false)
                                     ELSE c.pk END END,
                            c.changed_at, c.id;
    END LOOP;
END
$fn$;

-- Whether a TRUNCATE after p_at removed rows without recording them.
CREATE OR REPLACE FUNCTION pgtrail._cut_after(t pgtrail.audited_table, p_at timestamptz)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT EXISTS (SELECT FROM pgtrail.change AS x
                   WHERE x.table_id = t.id AND pgtrail._h(x.pk) IS NULL AND x.pk IS NULL AND x.op = 'T' AND x.changed_at > p_at
                     AND (x.new_values ->> 'rows') IS DISTINCT FROM 'recorded')
$fn$;

-- The last point up to p_at from which the trail knows every row of table
-- t from its INSERT (changes after (at, id) in (changed_at, id) order): the
-- last TRUNCATE up to p_at (the table was empty after it), else the install
-- when the trail holds every row the table had then (it was empty, or a
-- baseline or auto_attach recorded its rows as INSERTs at attached_at;
-- id 0, before those); NULLs when there is none.
CREATE OR REPLACE FUNCTION pgtrail._known_from(t pgtrail.audited_table, p_at timestamptz, OUT at timestamptz, OUT id bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT coalesce(tr.changed_at, c.since), coalesce(tr.id, CASE WHEN c.since IS NOT NULL THEN 0 END)
    FROM (SELECT CASE WHEN (t.complete_since_attach OR t.baseline_at >= t.attached_at) AND t.attached_at <= p_at
                      THEN t.attached_at END AS since) AS c
    LEFT JOIN LATERAL (SELECT x.changed_at, x.id FROM pgtrail.change AS x
                       WHERE x.table_id = t.id AND pgtrail._h(x.pk) IS NULL AND x.pk IS NULL AND x.op = 'T' AND x.changed_at <= p_at
                       ORDER BY x.changed_at DESC, x.id DESC LIMIT 1) AS tr ON true
$fn$;

-- Whether a TRUNCATE after p_at may have removed rows the trail never
-- recorded (one whose rows were all recorded never does), and nothing up
-- to p_at tells which rows the table had (pgtrail._known_from).
CREATE OR REPLACE FUNCTION pgtrail._truncated_unknown(t pgtrail.audited_table, p_at timestamptz)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT pgtrail._cut_after(t, p_at) AND (SELECT k.at IS NULL FROM pgtrail._known_from(t, p_at) AS k)
$fn$;

-- row_as_of without the checks of its arguments.
CREATE OR REPLACE FUNCTION pgtrail._row_as_of(t pgtrail.audited_table, p_tbl regclass, p_pk jsonb, p_at timestamptz)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    r          record;
    v_n        bigint;
    v_live     bigint;
    v_since    timestamptz;
    v_since_id bigint;
BEGIN
    IF cardinality(t.key_columns) = 0 THEN
        -- The whole row is the key, and identical rows may repeat: count the
        -- copies of this row at p_at (as recorded: not across schema changes
        -- made since).
        IF EXISTS (SELECT FROM pgtrail.schema_change AS x
                   WHERE x.table_id = t.id AND x.kind <> 'rename_table' AND x.changed_at > p_at) THEN
            PERFORM pgtrail._cannot_tell_keyless_lineage(t, p_at);
        END IF;
        IF pgtrail._cut_after(t, p_at) THEN
            SELECT k.at, k.id INTO v_since, v_since_id FROM pgtrail._known_from(t, p_at) AS k;
            IF v_since IS NULL THEN
                PERFORM pgtrail._cannot_tell(t, p_at);
            END IF;
            -- Forwards from the last TRUNCATE (or the install) up to p_at.
            SELECT coalesce(sum(d.n), 0) INTO v_n
            FROM pgtrail.change AS x
            CROSS JOIN LATERAL (VALUES (x.pk, CASE WHEN x.op = 'D' THEN -1 WHEN x.op = 'I' OR x.old_pk IS NOT NULL THEN 1 ELSE 0 END),
                                       (x.old_pk, -1)) AS d(k, n)
            WHERE x.table_id = t.id AND ((pgtrail._h(x.pk) = pgtrail._h(p_pk) AND x.pk = p_pk) OR (pgtrail._h(x.old_pk) = pgtrail._h(p_pk) AND x.old_pk = p_pk)) AND d.k = p_pk AND x.changed_at <= p_at
              AND (x.changed_at, x.id) > (v_since, v_since_id);
        ELSE
            -- Backwards from the live table.
            EXECUTE format('SELECT count(*) FROM (SELECT pgtrail._as_recorded(to_jsonb(x.*), $5, $3) AS j FROM %s AS x) AS r '
                           'WHERE r.j = $4', p_tbl)
            INTO v_live
            USING t.ignore_columns, t.redact_columns,
                  (SELECT value FROM pgtrail.secret WHERE name = 'redaction' AND cardinality(t.redact_columns) > 0),
                  p_pk, t;
            SELECT v_live - coalesce(sum(d.n), 0) INTO v_n
            FROM pgtrail.change AS x
            CROSS JOIN LATERAL (VALUES (x.pk, CASE WHEN x.op = 'D' THEN -1 WHEN x.op = 'I' OR x.old_pk IS NOT NULL THEN 1 ELSE 0 END),
                                       (x.old_pk, -1)) AS d(k, n)
            WHERE x.table_id = t.id AND ((pgtrail._h(x.pk) = pgtrail._h(p_pk) AND x.pk = p_pk) OR (pgtrail._h(x.old_pk) = pgtrail._h(p_pk) AND x.old_pk = p_pk)) AND d.k = p_pk AND x.changed_at > p_at;
        END IF;
        RETURN CASE WHEN v_n > 0 THEN p_pk END;
    END IF;

    SELECT * INTO r FROM pgtrail._row_life(t, p_tbl, p_pk, p_at) AS l
    WHERE l.r_changed_at <= p_at ORDER BY l.r_seq DESC LIMIT 1;
    IF r.r_key IS DISTINCT FROM p_pk THEN
        IF r.r_seq = 0 AND pgtrail._truncated_unknown(t, p_at) THEN
            PERFORM pgtrail._cannot_tell(t, p_at);
        END IF;
        RETURN NULL;
    END IF;
    IF NOT r.r_known THEN
        PERFORM pgtrail._cannot_tell(t, p_at);
    END IF;
    IF r.r_state IS NOT NULL AND pgtrail._has_lineage(t.id) THEN
        -- Named as at p_at: the state of a change before it is carried
        -- forwards; the state before the first change (or the live row),
        -- backwards, which a column dropped since makes unknown.
        IF r.r_seq > 0 THEN
            RETURN pgtrail._names_forward(t.id, r.r_state, r.r_names_at, r.r_names_id, p_at, NULL, true);
        END IF;
        r.r_state := pgtrail._names_backward(t.id, r.r_state, r.r_names_at, r.r_names_id, p_at, NULL);
        IF r.r_state IS NULL THEN
            PERFORM pgtrail._cannot_tell_dropped(t, p_at);
        END IF;
    END IF;
    RETURN r.r_state;
END
$fn$;

-- Error PGTR5: a column dropped after the moment held values the trail
-- never saw.
CREATE OR REPLACE FUNCTION pgtrail._cannot_tell_dropped(t pgtrail.audited_table, p_at timestamptz)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RAISE EXCEPTION 'pgtrail: the trail cannot tell how %.% was at %: a column dropped since held values it never recorded',
            quote_ident(t.table_schema), quote_ident(t.table_name), p_at
        USING ERRCODE = 'PGTR5',
              HINT = 'Rows recorded whole (inserted while audited, or by pgtrail apply --baseline) can be answered.';
END
$fn$;

CREATE OR REPLACE FUNCTION pgtrail.row_as_of(tbl regclass, pk jsonb, at timestamptz)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    t pgtrail.audited_table;
BEGIN
    -- A partition's rows are answered as rows of its partitioned table
    -- (a row may have moved between partitions).
    tbl := pgtrail._root_of(tbl);
    t := pgtrail._audited(tbl);
    IF pk IS NULL OR at IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM pgtrail._check_moment(t, at);
    RETURN pgtrail._row_as_of(t, tbl, pk, at);
END
$fn$;

COMMENT ON FUNCTION pgtrail.row_as_of(regclass, jsonb, timestamptz) IS
    'The row with key pk as it was at the moment at (ignored columns left out, redacted ones as markers); NULL if it did not exist then.';

-- The two clocks a moment can be read on. 'change' (the default): a change
-- counts from its changed_at, the end of the statement that made it.
-- 'transaction': a change counts from its transaction's start
-- (tx_started_at in pgtrail.changes: the now() that DEFAULT now() columns
-- hold), so "the row when this moderation was created" (its created_at)
-- includes what the moderation's own transaction did before and after the
-- INSERT. On that clock a row at p_at is the row just after the last change
-- made to it by a transaction begun by p_at; a row's changes are never
-- reordered, so one made between by a transaction begun later (it had to
-- commit before the earlier one touched the row) counts too.
CREATE OR REPLACE FUNCTION pgtrail._check_clock(p_clock text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF p_clock IS NULL OR p_clock NOT IN ('change', 'transaction') THEN
        RAISE EXCEPTION 'pgtrail: unknown clock %', coalesce(quote_literal(p_clock), 'NULL')
            USING ERRCODE = '22023',
                  HINT = '''change'' counts each change from its own time (changed_at); ''transaction'' from its transaction''s start (tx_started_at, the now() of DEFAULT now() columns).';
    END IF;
END
$fn$;

-- The changes of table t (of its row p_pk, when given) made after p_at by
-- transactions begun by then: their keys (pk and old_pk) and times. For a
-- whole table only the contexts begun within _context_span() before p_at,
-- and the long ones, are read.
CREATE OR REPLACE FUNCTION pgtrail._open_at(t pgtrail.audited_table, p_pk jsonb, p_at timestamptz)
RETURNS TABLE (k jsonb, changed_at timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT d.k, x.changed_at
    FROM pgtrail.change AS x
    JOIN pgtrail.transaction AS tx ON tx.txid = x.txid AND tx.ctx = x.ctx
    CROSS JOIN LATERAL (VALUES (x.pk), (x.old_pk)) AS d(k)
    WHERE x.table_id = t.id AND x.changed_at > p_at AND tx.started_at <= p_at AND d.k IS NOT NULL
      AND (p_pk IS NULL OR (pgtrail._h(x.pk) = pgtrail._h(p_pk) AND x.pk = p_pk)
                        OR (pgtrail._h(x.old_pk) = pgtrail._h(p_pk) AND x.old_pk = p_pk))
      AND (p_pk IS NOT NULL OR x.changed_at <= p_at + pgtrail._context_span()
           OR EXISTS (SELECT FROM pgtrail.long_context AS l WHERE l.txid = x.txid AND l.ctx = x.ctx))
$fn$;

-- p_at on the change clock: the time of the last change that p_at on
-- p_clock includes (of the row p_pk; of the whole table when NULL).
CREATE OR REPLACE FUNCTION pgtrail._change_clock(t pgtrail.audited_table, p_pk jsonb, p_at timestamptz, p_clock text)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    PERFORM pgtrail._check_clock(p_clock);
    IF p_clock = 'change' OR p_at IS NULL THEN
        RETURN p_at;
    END IF;
    RETURN greatest(p_at, (SELECT max(o.changed_at) FROM pgtrail._open_at(t, p_pk, p_at) AS o));
END
$fn$;

-- row_as_of on a chosen clock ('change' or 'transaction', above).
CREATE OR REPLACE FUNCTION pgtrail.row_as_of(tbl regclass, pk jsonb, at timestamptz, clock text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    t pgtrail.audited_table;
BEGIN
    PERFORM pgtrail._check_clock(clock);
    tbl := pgtrail._root_of(tbl);
    t := pgtrail._audited(tbl);
    IF pk IS NULL OR at IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM pgtrail._check_moment(t, at);
    RETURN pgtrail._row_as_of(t, tbl, pk, pgtrail._change_clock(t, pk, at, clock));
END
$fn$;

COMMENT ON FUNCTION pgtrail.row_as_of(regclass, jsonb, timestamptz, text) IS
    'The row with key pk as it was at the moment at, on the clock ''change'' (each change from its changed_at) or ''transaction'' (from its transaction''s start, tx_started_at).';

-- table_as_of on a chosen clock: on 'transaction', the rows changed after
-- the moment by transactions begun by then are answered one by one.
CREATE OR REPLACE FUNCTION pgtrail.table_as_of(tbl regclass, at timestamptz, clock text)
RETURNS SETOF jsonb
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    t      pgtrail.audited_table;
    v_keys jsonb[];
BEGIN
    PERFORM pgtrail._check_clock(clock);
    IF clock = 'change' OR at IS NULL THEN
        RETURN QUERY SELECT s FROM pgtrail.table_as_of(tbl, at) AS s;
        RETURN;
    END IF;
    t := pgtrail._audited(pgtrail._root_of(tbl));
    PERFORM pgtrail._check_moment(t, at);
    IF cardinality(t.key_columns) = 0 THEN
        -- Rows without a key are counted, not followed: the whole table at
        -- the last change of a transaction begun by the moment.
        RETURN QUERY SELECT s FROM pgtrail.table_as_of(tbl, pgtrail._change_clock(t, NULL, at, clock)) AS s;
        RETURN;
    END IF;
    SELECT coalesce(array_agg(DISTINCT o.k), '{}') INTO v_keys FROM pgtrail._open_at(t, NULL, at) AS o;
    RETURN QUERY
    SELECT s FROM pgtrail.table_as_of(tbl, at) AS s
    WHERE NOT pgtrail._key(s, t.key_columns) = ANY (v_keys);
    RETURN QUERY
    SELECT r.s FROM (SELECT pgtrail._row_as_of(t, tbl, k.k, pgtrail._change_clock(t, k.k, at, clock)) AS s
                     FROM unnest(v_keys) AS k(k)) AS r
    WHERE r.s IS NOT NULL;
END
$fn$;

COMMENT ON FUNCTION pgtrail.table_as_of(regclass, timestamptz, text) IS
    'Every row of the table as it was at the moment at, on the clock ''change'' or ''transaction'' (see row_as_of).';

-- The audited table a partition's rows are recorded under (its
-- partitioned table), or p_tbl itself.
CREATE OR REPLACE FUNCTION pgtrail._root_of(p_tbl regclass)
RETURNS regclass
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT CASE WHEN c.relispartition THEN coalesce(pg_partition_root(p_tbl), p_tbl)::regclass ELSE p_tbl END
    FROM pg_class AS c WHERE c.oid = p_tbl
$fn$;

-- Error PGTR5: a table without a key cannot be followed across schema
-- changes (its rows are their keys, recorded as they were).
CREATE OR REPLACE FUNCTION pgtrail._cannot_tell_keyless_lineage(t pgtrail.audited_table, p_at timestamptz)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RAISE EXCEPTION 'pgtrail: the trail cannot tell how %.% was at %: it has no key, and its columns changed since',
            quote_ident(t.table_schema), quote_ident(t.table_name), p_at
        USING ERRCODE = 'PGTR5',
              HINT = 'Give the table a primary key (or a key in pgtrail.toml) to follow its rows across schema changes.';
END
$fn$;

-- table_as_of of a keyed table whose columns changed (38_lineage.sql): every
-- row answered by _row_as_of, named as at the moment. Rows no change
-- touched since the moment are the live ones, carried back along the
-- lineage, unless a column was dropped since (its values then are known
-- only from the trail) or a TRUNCATE came since (no way back from the live
-- table).
CREATE OR REPLACE FUNCTION pgtrail._table_as_of_by_key(
    t pgtrail.audited_table, p_tbl regclass, p_at timestamptz, p_secret bytea,
    p_since timestamptz, p_since_id bigint, p_after boolean)
RETURNS SETOF jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_keys    jsonb[];
    v_live    jsonb[] := '{}';
    v_through boolean := p_after OR EXISTS (SELECT FROM pgtrail.schema_change AS s
                                           WHERE s.table_id = t.id AND s.kind = 'drop' AND s.changed_at > p_at);
BEGIN
    -- Keys the trail knows (named as today): every key changed since the
    -- last TRUNCATE up to the moment when the live rows cannot be carried
    -- back, else only those changed after the moment.
    SELECT coalesce(array_agg(DISTINCT k.k), '{}') INTO v_keys
    FROM (SELECT pgtrail._names_forward(t.id, d.k, x.changed_at, x.id, NULL, NULL, false) AS k
          FROM pgtrail.change AS x CROSS JOIN LATERAL (VALUES (x.pk), (x.old_pk)) AS d(k)
          WHERE x.table_id = t.id AND d.k IS NOT NULL
            AND CASE WHEN v_through THEN p_since IS NULL OR (x.changed_at, x.id) > (p_since, p_since_id)
                     ELSE x.changed_at > p_at END) AS k
    WHERE k.k IS NOT NULL;
    IF NOT p_after THEN
        EXECUTE format('SELECT coalesce(array_agg(pgtrail._key(pgtrail._as_recorded(to_jsonb(x.*), $1, $2), $3)), ''{}'') FROM %s AS x',
                       p_tbl)
        INTO v_live USING t, p_secret, t.key_columns;
    END IF;
    IF v_through THEN
        RETURN QUERY
        SELECT r.s FROM (SELECT pgtrail._row_as_of(t, p_tbl, k.k, p_at) AS s
                         FROM (SELECT unnest(v_keys) UNION SELECT unnest(v_live)) AS k(k)) AS r
        WHERE r.s IS NOT NULL;
        RETURN;
    END IF;
    -- Rows untouched since the moment: the live ones, named as then.
    RETURN QUERY EXECUTE format(
        'SELECT pgtrail._names_backward($4, r.j, NULL, NULL, $5, NULL) '
        'FROM (SELECT pgtrail._as_recorded(to_jsonb(x.*), $1, $2) AS j FROM %s AS x) AS r '
        'WHERE NOT pgtrail._key(r.j, $3) = ANY ($6)', p_tbl)
    USING t, p_secret, t.key_columns, t.id, p_at, v_keys;
    RETURN QUERY
    SELECT r.s FROM (SELECT pgtrail._row_as_of(t, p_tbl, k.k, p_at) AS s FROM unnest(v_keys) AS k(k)) AS r
    WHERE r.s IS NOT NULL;
END
$fn$;

-- table_as_of. Keyless tables count the copies of each row. With a key, the
-- live rows whose key no change touched since the moment are as they were;
-- the keys that were changed are rolled back set-based, by one query over
-- the changes of all of them at once, which decides each key's state as
-- _row_life and _row_as_of would (the same life, the same state, forwards
-- preferred):
--   * A key's changes (pk = key) are numbered in order; the anchor is the
--     last one up to the moment. No row if the anchor is a DELETE, if a
--     TRUNCATE came between the anchor and the moment, or if there is no
--     anchor and the key's first change is an INSERT.
--   * Forwards: the row's life up to the anchor begins after the key's last
--     DELETE, or the last TRUNCATE, before it. If that part holds a whole
--     row (an INSERT, or an UPDATE with full images), the state is the last
--     such row overlaid with the new_values of the UPDATEs after it up to
--     the anchor, the later winning.
--   * Backwards (no TRUNCATE after the moment): from the old_values of the
--     first change after the moment that holds the whole old row (a DELETE,
--     an UPDATE with full images), else from the live row, overlaid with the
--     old_values of the UPDATEs between the moment and it, the earlier
--     winning, field by field.
-- Keys that a key change (old_pk -> pk) moved a row to or from, and the rare
-- states these rules do not settle (an INSERT of a key whose row was never
-- deleted, no live row to start back from, a later TRUNCATE and no whole row
-- before the moment: where _row_as_of answers PGTR5), take the per-key path,
-- _row_as_of, as before.
CREATE OR REPLACE FUNCTION pgtrail.table_as_of(tbl regclass, at timestamptz)
RETURNS SETOF jsonb
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    t          pgtrail.audited_table;
    v_secret   bytea;
    v_after    boolean;
    v_since    timestamptz;
    v_since_id bigint;
    v_keys     jsonb[];
    v_live     text;
    v_jit      text;
BEGIN
    IF pgtrail._root_of(tbl) <> tbl AND pgtrail._audited_id_of(tbl) IS NOT NULL THEN
        RAISE EXCEPTION 'pgtrail: % is a partition of the audited table %, whose rows move between its partitions',
                tbl, pgtrail._root_of(tbl)
            USING ERRCODE = 'PGTR4',
                  HINT = format('Ask for the whole table, pgtrail.table_as_of(%L, ...), and filter by its partition key.',
                                pgtrail._root_of(tbl)::text);
    END IF;
    t := pgtrail._audited(tbl);
    IF at IS NULL THEN
        RETURN;
    END IF;
    PERFORM pgtrail._check_moment(t, at);
    IF cardinality(t.redact_columns) > 0 THEN
        SELECT value INTO v_secret FROM pgtrail.secret WHERE name = 'redaction';
    END IF;
    -- The last TRUNCATE up to the moment, if any (it ended every row before
    -- it), else the install if the trail knows every row from there.
    SELECT k.at, k.id INTO v_since, v_since_id FROM pgtrail._known_from(t, at) AS k;
    -- A later TRUNCATE that removed rows without recording them.
    v_after := pgtrail._cut_after(t, at);
    IF v_after AND v_since IS NULL THEN
        -- A later TRUNCATE cut the way back from the live table, and nothing
        -- earlier gives a way forwards.
        PERFORM pgtrail._cannot_tell(t, at);
    END IF;

    IF cardinality(t.key_columns) = 0 THEN
        -- Identical rows may repeat: count copies of each row (as recorded:
        -- not across schema changes made since the moment).
        IF EXISTS (SELECT FROM pgtrail.schema_change AS x
                   WHERE x.table_id = t.id AND x.kind <> 'rename_table' AND x.changed_at > at) THEN
            PERFORM pgtrail._cannot_tell_keyless_lineage(t, at);
        END IF;
        RETURN QUERY EXECUTE format(
            'WITH net AS ('
            '    SELECT d.k, sum(d.n) AS n FROM pgtrail.change AS x '
            '    CROSS JOIN LATERAL (VALUES (x.pk, CASE WHEN x.op = ''D'' THEN -1 WHEN x.op = ''I'' OR x.old_pk IS NOT NULL THEN 1 ELSE 0 END), '
            '                               (x.old_pk, -1)) AS d(k, n) '
            '    WHERE x.table_id = $4 AND x.op <> ''T'' AND d.k IS NOT NULL '
            '      AND CASE WHEN $5 THEN (x.changed_at, x.id) > ($6, $9) AND x.changed_at <= $7 ELSE x.changed_at > $7 END '
            '    GROUP BY d.k), '
            'live AS ('
            '    SELECT r.j AS k, count(*) AS n '
            '    FROM (SELECT pgtrail._as_recorded(to_jsonb(x.*), $8, $3) AS j FROM %s AS x WHERE NOT $5) AS r '
            '    GROUP BY r.j) '
            'SELECT c.k FROM ('
            '    SELECT coalesce(live.k, net.k) AS k, '
            '           CASE WHEN $5 THEN coalesce(net.n, 0) ELSE coalesce(live.n, 0) - coalesce(net.n, 0) END AS n '
            '    FROM live FULL JOIN net ON net.k = live.k) AS c '
            'CROSS JOIN generate_series(1, c.n::bigint) AS g', tbl)
        USING t.ignore_columns, t.redact_columns, v_secret, t.id, v_after, v_since, at, t, v_since_id;
        RETURN;
    END IF;

    IF pgtrail._has_lineage(t.id) THEN
        -- Columns were renamed, dropped, added or retyped (38_lineage.sql):
        -- rows are answered one key at a time, each named as at the moment.
        RETURN QUERY SELECT r.s FROM pgtrail._table_as_of_by_key(t, tbl, at, v_secret, v_since, v_since_id, v_after) AS r(s);
        RETURN;
    END IF;

    IF v_after THEN
        -- Every row there at the moment was inserted after the last TRUNCATE
        -- before it: the keys changed in between, rebuilt forwards.
        SELECT coalesce(array_agg(DISTINCT d.k), '{}') INTO v_keys
        FROM pgtrail.change AS x CROSS JOIN LATERAL (VALUES (x.pk), (x.old_pk)) AS d(k)
        WHERE x.table_id = t.id AND (x.changed_at, x.id) > (v_since, v_since_id) AND x.changed_at <= at AND d.k IS NOT NULL;
    ELSE
        -- The keys changed since the moment are rolled back; every other
        -- live row is as it was.
        SELECT coalesce(array_agg(DISTINCT d.k), '{}') INTO v_keys
        FROM pgtrail.change AS x CROSS JOIN LATERAL (VALUES (x.pk), (x.old_pk)) AS d(k)
        WHERE x.table_id = t.id AND x.changed_at > at AND d.k IS NOT NULL;
        RETURN QUERY EXECUTE format(
            'SELECT r.j FROM (SELECT pgtrail._as_recorded(to_jsonb(x.*), $6, $3) AS j FROM %s AS x) AS r '
            'LEFT JOIN unnest($5::jsonb[]) AS k(k) ON k.k = pgtrail._key(r.j, $4) WHERE k.k IS NULL', tbl)
        USING t.ignore_columns, t.redact_columns, v_secret, t.key_columns, v_keys, t;
    END IF;
    IF cardinality(v_keys) = 0 THEN
        RETURN;
    END IF;

    -- The live row of a key that is rolled back from it (h.k of the CTE
    -- `how` below, how = 'L'), read as pgtrail._live_row reads one.
    IF t.key_columns && t.redact_columns THEN
        -- The key holds redaction markers: compare keys as recorded.
        v_live := format(
            'SELECT DISTINCT ON (r.k) r.k, r.j '
            'FROM (SELECT pgtrail._key(q.j, $4) AS k, q.j '
            '      FROM (SELECT pgtrail._as_recorded(to_jsonb(x.*), $11, $3) AS j FROM %s AS x) AS q) AS r '
            'WHERE r.k IN (SELECT h.k FROM how AS h WHERE h.how = ''L'')', tbl);
    ELSE
        -- Through the key's index: the JSON key back to typed values.
        v_live := format(
            'SELECT h.k, r.j FROM how AS h '
            'CROSS JOIN LATERAL (SELECT pgtrail._as_recorded(to_jsonb(x.*), $11, $3) AS j '
            '                    FROM jsonb_populate_record(NULL::%1$s, h.k) AS p JOIN %1$s AS x ON %2$s LIMIT 1) AS r '
            'WHERE h.how = ''L'' AND pgtrail._key(r.j, $4) = h.k',
            tbl, (SELECT string_agg(format('x.%I = p.%I', k, k), ' AND ') FROM unnest(t.key_columns) AS k));
    END IF;

    -- The rollback (see above). $6 table id, $7 the moment, ($8, $9) the
    -- last TRUNCATE up to it, $10 whether one came after it. No JIT: the
    -- planner overestimates the lookups per key, and compiling would take
    -- longer than running (restored below).
    v_jit := current_setting('jit');
    PERFORM set_config('jit', 'off', true);
    RETURN QUERY EXECUTE format($sql$
        WITH ch AS MATERIALIZED (
            -- Every change that left a row with one of the keys, numbered per
            -- key. (OFFSET 0 keeps these index lookups per key: given more
            -- work_mem, the planner would rather hash all the table's changes.)
            SELECT k.k, x.id, x.op, x.changed_at, x.old_pk, x.old_values, x.new_values, x.changed_fields,
                   row_number() OVER (PARTITION BY k.k ORDER BY x.changed_at, x.id) AS n
            FROM unnest($5::jsonb[]) AS k(k)
            CROSS JOIN LATERAL (SELECT * FROM pgtrail.change AS y
                                WHERE y.table_id = $6 AND pgtrail._h(y.pk) = pgtrail._h(k.k) AND y.pk = k.k OFFSET 0) AS x
        ),
        life AS (
            -- Per change: where the life it belongs to began (after the last
            -- earlier DELETE, or change before the last TRUNCATE up to the
            -- moment; 0 = with the first change), and the last whole row
            -- known up to it (an INSERT or a full-image UPDATE).
            SELECT c.*,
                   coalesce(max(CASE WHEN c.op = 'D' OR (c.changed_at, c.id) < ($8, $9) THEN c.n END)
                                OVER (PARTITION BY c.k ORDER BY c.n ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
                            0) AS lo,
                   max(CASE WHEN c.op = 'I' OR (c.op = 'U' AND c.changed_fields IS NOT NULL) THEN c.n END)
                       OVER (PARTITION BY c.k ORDER BY c.n ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS f,
                   lead(c.changed_at) OVER (PARTITION BY c.k ORDER BY c.n) AS next_at
            FROM ch AS c
        ),
        anchor AS (
            -- The last change of each key up to the moment.
            SELECT l.k, l.n, l.op, l.changed_at, l.id, l.lo, l.f
            FROM life AS l WHERE l.changed_at <= $7 AND (l.next_at IS NULL OR l.next_at > $7)
        ),
        stop AS (
            -- The first change after the moment that holds the whole old row
            -- (DELETE, full-image UPDATE), or that is an INSERT.
            SELECT DISTINCT ON (c.k) c.k, c.n, c.op, c.old_values
            FROM ch AS c
            WHERE c.changed_at > $7 AND (c.op IN ('I', 'D') OR c.changed_fields IS NOT NULL)
            ORDER BY c.k, c.n
        ),
        moved AS (
            -- Keys a key change moved a row to.
            SELECT DISTINCT c.k FROM ch AS c WHERE c.old_pk IS NOT NULL
        ),
        how AS MATERIALIZED (
            -- 'N' no row, 'F' forwards, 'B' backwards from a whole old row,
            -- 'L' backwards from the live row, 'K' the per-key path.
            SELECT k.k, a.n AS a_n, a.f, s.n AS s_n, s.old_values AS base,
                   CASE
                       WHEN m.k IS NOT NULL
                         OR EXISTS (SELECT FROM pgtrail.change AS y
                                    WHERE y.table_id = $6 AND pgtrail._h(y.old_pk) = pgtrail._h(k.k) AND y.old_pk = k.k) THEN 'K'
                       WHEN a.op = 'D' OR (a.changed_at, a.id) < ($8, $9) OR (a.n IS NULL AND s.n = 1 AND s.op = 'I') THEN 'N'
                       WHEN a.f > a.lo THEN 'F'
                       WHEN $10 OR s.op = 'I' THEN 'K'
                       WHEN s.n IS NOT NULL THEN 'B'
                       ELSE 'L'
                   END AS how
            FROM unnest($5::jsonb[]) AS k(k)
            LEFT JOIN moved AS m ON m.k = k.k
            LEFT JOIN anchor AS a ON a.k = k.k
            LEFT JOIN stop AS s ON s.k = k.k
        ),
        live AS (%s),
        pieces AS (
            -- Forwards: new_values of the UPDATEs after the last whole row up
            -- to the anchor, the later winning.
            SELECT h.k, c.n AS rank, c.new_values AS v
            FROM how AS h JOIN ch AS c ON c.k = h.k
            WHERE h.how = 'F' AND c.n > h.f AND c.n <= h.a_n
            UNION ALL
            -- Backwards: old_values of the UPDATEs after the moment, before
            -- the whole old row, the earlier winning.
            SELECT h.k, -c.n, c.old_values
            FROM how AS h JOIN ch AS c ON c.k = h.k
            WHERE h.how IN ('B', 'L') AND c.n > coalesce(h.a_n, 0) AND (h.s_n IS NULL OR c.n < h.s_n)
        ),
        overlay AS (
            SELECT o.k, jsonb_object_agg(o.key, o.value) AS v
            FROM (SELECT DISTINCT ON (p.k, e.key) p.k, e.key, e.value
                  FROM pieces AS p CROSS JOIN LATERAL jsonb_each(p.v) AS e
                  ORDER BY p.k, e.key, p.rank DESC) AS o
            GROUP BY o.k
        )
        SELECT r.s FROM (
            SELECT CASE h.how
                       WHEN 'F' THEN w.new_values || coalesce(o.v, '{}')
                       WHEN 'B' THEN h.base || coalesce(o.v, '{}')
                       -- No live row: the per-key path tells (PGTR5).
                       WHEN 'L' THEN coalesce(lv.j || coalesce(o.v, '{}'), pgtrail._row_as_of($11, $12, h.k, $7))
                       WHEN 'K' THEN pgtrail._row_as_of($11, $12, h.k, $7)
                   END AS s
            FROM how AS h
            LEFT JOIN overlay AS o ON o.k = h.k
            LEFT JOIN live AS lv ON lv.k = h.k
            LEFT JOIN ch AS w ON h.how = 'F' AND w.k = h.k AND w.n = h.f
        ) AS r
        WHERE r.s IS NOT NULL
        $sql$, v_live)
    USING t.ignore_columns, t.redact_columns, v_secret, t.key_columns, v_keys,
          t.id, at, v_since, v_since_id, v_after, t, tbl;
    PERFORM set_config('jit', v_jit, true);
END
$fn$;

COMMENT ON FUNCTION pgtrail.table_as_of(regclass, timestamptz) IS
    'Every row of the table as it was at the moment at (ignored columns left out, redacted ones as markers).';

CREATE OR REPLACE FUNCTION pgtrail.history(tbl regclass, pk jsonb)
RETURNS TABLE (id bigint, txid bigint, changed_at timestamptz, op text, pk jsonb, changed_fields text[],
               old_values jsonb, new_values jsonb, state jsonb, actor_id text, actor_name text,
               actor_type text, reason text, context jsonb)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT l.r_id, l.r_txid, l.r_changed_at,
           CASE l.r_op WHEN 'I' THEN 'INSERT' WHEN 'U' THEN 'UPDATE' WHEN 'D' THEN 'DELETE' ELSE 'TRUNCATE' END,
           l.r_pk,
           CASE WHEN l.r_op = 'U' THEN coalesce(l.r_changed_fields,
               ARRAY(SELECT k FROM jsonb_object_keys(l.r_new_values) AS k ORDER BY k)) END,
           l.r_old_values, l.r_new_values,
           CASE WHEN l.r_known THEN l.r_state END,
           x.actor_id, x.actor_name, x.actor_type, x.reason, x.context
    FROM pgtrail._root_of($1) AS rel
    CROSS JOIN LATERAL pgtrail._audited(rel) AS t
    CROSS JOIN LATERAL pgtrail._row_life(t, rel, $2, 'infinity') AS l
    LEFT JOIN pgtrail.transaction AS x ON x.txid = l.r_txid AND x.ctx = l.r_ctx
    WHERE l.r_seq > 0
    ORDER BY l.r_seq
$fn$;

COMMENT ON FUNCTION pgtrail.history(regclass, jsonb) IS
    'Every change of one row, oldest first, followed across key changes, each with the full state of the row after it (NULL after DELETE or TRUNCATE).';

CREATE OR REPLACE FUNCTION pgtrail.blame(tbl regclass, pk jsonb)
RETURNS TABLE (column_name text, value jsonb, changed_at timestamptz, change_id bigint, txid bigint,
               actor_id text, actor_name text, actor_type text, reason text)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
    WITH tab AS MATERIALIZED (
        SELECT r.rel, t, pgtrail._has_lineage(t.id) AS lineage
        FROM pgtrail._root_of($1) AS r(rel) CROSS JOIN LATERAL pgtrail._audited(r.rel) AS t
    ),
    life AS MATERIALIZED (
        -- Each change with the columns it set, named as today.
        SELECT l.*,
               CASE WHEN l.r_op IN ('I', 'U') THEN
                   CASE WHEN tab.lineage
                        THEN pgtrail._fields_forward((tab.t).id, coalesce(l.r_changed_fields,
                                 ARRAY(SELECT jsonb_object_keys(CASE WHEN jsonb_typeof(coalesce(l.r_new_values, l.r_pk)) = 'object'
                                                                     THEN coalesce(l.r_new_values, l.r_pk) ELSE '{}' END))),
                                 l.r_changed_at, l.r_id)
                        ELSE coalesce(l.r_changed_fields,
                                 ARRAY(SELECT jsonb_object_keys(CASE WHEN jsonb_typeof(coalesce(l.r_new_values, l.r_pk)) = 'object'
                                                                     THEN coalesce(l.r_new_values, l.r_pk) ELSE '{}' END))) END
               END AS set_fields
        FROM tab CROSS JOIN LATERAL pgtrail._row_life(tab.t, tab.rel, $2, 'infinity') AS l
    ),
    cur AS (
        -- The row's current (or last) state, named as today: columns dropped
        -- since are not the row's any more.
        SELECT l.r_seq,
               CASE WHEN tab.lineage AND l.r_seq > 0
                    THEN pgtrail._names_forward((tab.t).id, l.r_state, l.r_names_at, l.r_names_id, NULL, NULL, true)
                    ELSE l.r_state END AS state
        FROM life AS l, tab
        WHERE l.r_known AND l.r_state IS NOT NULL ORDER BY l.r_seq DESC LIMIT 1
    ),
    cols AS (
        SELECT e.key, e.value, cur.r_seq FROM cur CROSS JOIN LATERAL jsonb_each(cur.state) AS e
    )
    SELECT cols.key, cols.value, src.r_changed_at, src.r_id, src.r_txid,
           x.actor_id, x.actor_name, x.actor_type, x.reason
    FROM cols
    LEFT JOIN LATERAL (
        SELECT * FROM life AS l
        WHERE l.r_seq BETWEEN 1 AND cols.r_seq AND cols.key = ANY (l.set_fields)
        ORDER BY l.r_seq DESC LIMIT 1
    ) AS src ON true
    LEFT JOIN pgtrail.transaction AS x ON x.txid = src.r_txid AND x.ctx = src.r_ctx
    LEFT JOIN pg_attribute AS a ON a.attrelid = pgtrail._root_of($1) AND a.attname = cols.key AND NOT a.attisdropped
    ORDER BY a.attnum NULLS LAST, cols.key
$fn$;

COMMENT ON FUNCTION pgtrail.blame(regclass, jsonb) IS
    'Per column of the row''s current (or last) state: its value and the change that last set it (NULLs when it predates the install).';

-- Readers of the trail only (pgtrail_reader: 90_privileges.sql).
REVOKE ALL ON FUNCTION pgtrail.history(regclass, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION pgtrail.row_as_of(regclass, jsonb, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION pgtrail.table_as_of(regclass, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION pgtrail.row_as_of(regclass, jsonb, timestamptz, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION pgtrail.table_as_of(regclass, timestamptz, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION pgtrail.blame(regclass, jsonb) FROM PUBLIC;
