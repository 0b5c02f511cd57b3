-- Comparison baseline for the capture benchmark, NOT part of pgtrail: the
-- "contract floor", a lower bound of what any plain-SQL capture costs that
-- records what pgtrail's contract asks of every transaction (DESIGN.md and
-- issue 10's point 4): each change with its key and values, and the
-- transaction's context stored ONCE per transaction (its own row), read from
-- the settings the contract names (set_context's and SET LOCAL pgtrail.*),
-- with the session facts the database knows, by a SECURITY DEFINER function
-- with a pinned search_path, fired once per statement with a transition
-- table (what keeps a 100,000-row statement at a fraction of a row
-- trigger's per-row cost).
--
-- Every choice below is the cheaper one, in the floor's favour:
--   * one function per table and event (no TG_OP tests), the key and the
--     columns compiled in;
--   * the change row: the key as JSON and the row as `to_jsonb` (INSERT:
--     new values; DELETE: old values); for an UPDATE, the two columns the
--     benchmark's UPDATE sets, old and new, read from the one old and one
--     new row without pairing them by key or testing which column changed
--     (right for a one-row statement only: a lower bound, not a capture);
--   * no partitioned trail (no tuple routing), the trail with the indexes
--     pgtrail's queries need (as bench/sql/insert_floor.sql), the
--     transaction table with its primary key only (pgtrail's has actor
--     indexes too);
--   * the "already recorded" mark is the transaction id alone (pgtrail's
--     also tells a second set_context in one transaction apart);
--   * set_context's extra (`pgtrail.context`) cast straight to jsonb, and
--     the six other pgtrail.* fields not read (pgtrail tests them with one
--     expression and reads them when one is set), no mapped settings, no
--     require_actor test, no capture-gap or DDL watch, no redaction.
--
-- Installed by the benchmark as a peer (`capture_parts --peer-sql
-- contract-floor=bench/sql/contract_floor.sql --peer-enable "SELECT
-- contract_floor.enable('{table}')"`); `enable` generates the three
-- functions for a table whose key is one column named id and attaches them.

CREATE SCHEMA contract_floor;

CREATE TABLE contract_floor.transaction (
    txid             bigint      NOT NULL,
    ctx              smallint    NOT NULL,
    started_at       timestamptz NOT NULL,
    actor_id         text,
    actor_name       text,
    actor_type       text,
    reason           text,
    context          jsonb,
    db_user          text        NOT NULL,
    db_role          text,
    application_name text,
    client_addr      inet,
    client_port      integer,
    backend_pid      integer     NOT NULL,
    PRIMARY KEY (txid, ctx)
);

CREATE TABLE contract_floor.change (
    id             bigint      GENERATED ALWAYS AS IDENTITY (CACHE 32) PRIMARY KEY,
    txid           bigint      NOT NULL,
    ctx            smallint    NOT NULL,
    table_id       integer     NOT NULL,
    op             "char"      NOT NULL,
    changed_at     timestamptz NOT NULL,
    pk             jsonb,
    old_pk         jsonb,
    old_values     jsonb,
    new_values     jsonb,
    changed_fields text[]
);

CREATE INDEX change_key_idx ON contract_floor.change (table_id, jsonb_hash_extended(pk, 0));
CREATE INDEX change_old_key_idx ON contract_floor.change (table_id, jsonb_hash_extended(old_pk, 0)) WHERE old_pk IS NOT NULL;
CREATE INDEX change_txid_idx ON contract_floor.change (txid);
CREATE INDEX change_time_brin ON contract_floor.change USING brin (changed_at);

-- The other layout ("inline"): the context on the transaction's first change
-- row (twelve nullable columns, NULL on every later change), found again by
-- the txid index the trail has anyway; no second row, no second index.
CREATE TABLE contract_floor.change_inline (LIKE contract_floor.change INCLUDING ALL,
    started_at       timestamptz,
    actor_id         text,
    actor_name       text,
    actor_type       text,
    reason           text,
    context          jsonb,
    db_user          text,
    db_role          text,
    application_name text,
    client_addr      inet,
    client_port      integer,
    backend_pid      integer
);

-- The context's values, as the columns of either layout list them.
CREATE FUNCTION contract_floor.context_values_sql() RETURNS text
LANGUAGE sql IMMUTABLE AS $fn$
SELECT $sql$pg_catalog.transaction_timestamp(),
            NULLIF(pg_catalog.current_setting('pgtrail.actor_id', true), ''),
            NULLIF(pg_catalog.current_setting('pgtrail.actor_name', true), ''),
            NULLIF(pg_catalog.current_setting('pgtrail.actor_type', true), ''),
            NULLIF(pg_catalog.current_setting('pgtrail.reason', true), ''),
            NULLIF(pg_catalog.current_setting('pgtrail.context', true), '')::pg_catalog.jsonb,
            SESSION_USER, NULLIF(pg_catalog.current_setting('role'), 'none'),
            NULLIF(pg_catalog.current_setting('application_name'), ''),
            pg_catalog.inet_client_addr(), pg_catalog.inet_client_port(), pg_catalog.pg_backend_pid()$sql$
$fn$;

-- The change's INSERT of one event into trail p_trail; with p_context, the
-- context's columns too (the inline layout's first change).
CREATE FUNCTION contract_floor.change_sql(p_event text, p_trail text, p_context boolean) RETURNS text
LANGUAGE sql IMMUTABLE AS $fn$
SELECT format(E'INSERT INTO contract_floor.%I (txid, ctx, table_id, op, changed_at, pk, %s%s)\n'
              '        SELECT v_txid, 0, 1, %L, pg_catalog.clock_timestamp(), pg_catalog.jsonb_build_object(''id'', %s.id), %s%s\n'
              '        FROM %s;\n',
              p_trail,
              CASE p_event WHEN 'INSERT' THEN 'new_values' WHEN 'DELETE' THEN 'old_values'
                           ELSE 'old_values, new_values, changed_fields' END,
              CASE WHEN p_context THEN ', started_at, actor_id, actor_name, actor_type, reason, context, db_user, '
                                       'db_role, application_name, client_addr, client_port, backend_pid' ELSE '' END,
              left(p_event, 1),
              CASE p_event WHEN 'UPDATE' THEN 'n' ELSE 'r' END,
              CASE p_event WHEN 'UPDATE' THEN
                  'pg_catalog.jsonb_build_object(''email'', o.email, ''name'', o.name), '
                  'pg_catalog.jsonb_build_object(''email'', n.email, ''name'', n.name), ''{email,name}'''
              ELSE 'pg_catalog.to_jsonb(r)' END,
              CASE WHEN p_context THEN ', ' || contract_floor.context_values_sql() ELSE '' END,
              CASE p_event WHEN 'INSERT' THEN 'pgtrail_new AS r' WHEN 'DELETE' THEN 'pgtrail_old AS r'
                           ELSE 'pgtrail_old AS o, pgtrail_new AS n' END)
$fn$;

-- The capture function's body for one event and layout: 'row' (the
-- context in a row of contract_floor.transaction, as pgtrail stores it) or
-- 'inline' (on the first change row). Either way the context is written
-- once per transaction (v_txid is the transaction's id; the mark says it
-- was written).
CREATE FUNCTION contract_floor.body_sql(p_event text, p_layout text) RETURNS text
LANGUAGE sql IMMUTABLE AS $fn$
SELECT E'\nDECLARE\n    v_txid bigint := pg_catalog.txid_current();\n    v_mark text;\nBEGIN\n'
    || E'    IF pg_catalog.current_setting(''contract_floor.recorded'', true) IS DISTINCT FROM v_txid::pg_catalog.text THEN\n'
    || CASE p_layout WHEN 'row' THEN
           E'        INSERT INTO contract_floor.transaction (txid, ctx, started_at, actor_id, actor_name, actor_type, reason,\n'
           '            context, db_user, db_role, application_name, client_addr, client_port, backend_pid)\n'
           '        VALUES (v_txid, 0, ' || contract_floor.context_values_sql() || E')\n'
           || E'        RETURNING pg_catalog.set_config(''contract_floor.recorded'', v_txid::pg_catalog.text, true) INTO v_mark;\n'
           '    END IF;\n    ' || contract_floor.change_sql(p_event, 'change', false)
       ELSE
           '        ' || contract_floor.change_sql(p_event, 'change_inline', true)
           || E'        v_mark := pg_catalog.set_config(''contract_floor.recorded'', v_txid::pg_catalog.text, true);\n'
           '    ELSE\n        ' || contract_floor.change_sql(p_event, 'change_inline', false)
           || E'    END IF;\n'
       END
    || E'    RETURN NULL;\nEND\n'
$fn$;

-- Generates and attaches the three capture functions of table p_table
-- (schema public, key column id), in layout p_layout ('row' or 'inline').
CREATE FUNCTION contract_floor.enable(p_table text, p_layout text DEFAULT 'row') RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    v_event text;
    v_fn    text;
BEGIN
    IF p_layout NOT IN ('row', 'inline') THEN
        RAISE EXCEPTION 'contract_floor.enable: layout must be row or inline, not %', p_layout;
    END IF;
    FOREACH v_event IN ARRAY ARRAY['INSERT', 'UPDATE', 'DELETE'] LOOP
        v_fn := format('contract_floor.%I', 'capture_' || p_table || '_' || lower(v_event));
        EXECUTE format('CREATE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER '
                       'SET search_path = pg_catalog, pg_temp AS %L', v_fn, contract_floor.body_sql(v_event, p_layout));
        EXECUTE format('CREATE TRIGGER %I AFTER %s ON public.%I REFERENCING %s TABLE AS %I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION %s()',
                       'contract_floor_' || lower(v_event), v_event, p_table,
                       CASE v_event WHEN 'INSERT' THEN 'NEW' WHEN 'DELETE' THEN 'OLD' ELSE 'OLD TABLE AS pgtrail_old NEW' END,
                       CASE v_event WHEN 'DELETE' THEN 'pgtrail_old' ELSE 'pgtrail_new' END,
                       v_fn);
    END LOOP;
END
$fn$;
