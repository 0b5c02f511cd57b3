-- Who is acting and why: the context an application sets for its transaction,
-- and the record of it that capture writes once per transaction.

-- Sets the context for the current transaction only (set_config(..., true)),
-- so it can never leak into the next transaction on a pooled connection.
-- Calling it again inside the same transaction starts a new context for the
-- changes that follow; changes already made keep the context they had.
CREATE OR REPLACE FUNCTION pgtrail.set_context(
    actor_id   text  DEFAULT NULL,
    actor_name text  DEFAULT NULL,
    actor_type text  DEFAULT NULL,
    reason     text  DEFAULT NULL,
    extra      jsonb DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_seq integer;
BEGIN
    IF extra IS NOT NULL AND jsonb_typeof(extra) <> 'object' THEN
        RAISE EXCEPTION 'pgtrail.set_context: extra must be a JSON object, got %', jsonb_typeof(extra)
            USING ERRCODE = '22023',
                  HINT = 'Pass e.g. ''{"request_id": "r-1", "business_process": "refund"}''::jsonb.';
    END IF;
    v_seq := CASE WHEN current_setting('pgtrail.context_seq', true) ~ '^[0-9]{1,5}$'
                  THEN least(current_setting('pgtrail.context_seq', true)::integer + 1, 32767)
                  ELSE 1 END;
    PERFORM set_config('pgtrail.actor_id', coalesce(actor_id, ''), true);
    PERFORM set_config('pgtrail.actor_name', coalesce(actor_name, ''), true);
    PERFORM set_config('pgtrail.actor_type', coalesce(actor_type, ''), true);
    PERFORM set_config('pgtrail.reason', coalesce(reason, ''), true);
    PERFORM set_config('pgtrail.context', coalesce(extra::text, ''), true);
    PERFORM set_config('pgtrail.context_seq', v_seq::text, true);
END
$fn$;

COMMENT ON FUNCTION pgtrail.set_context(text, text, text, text, jsonb) IS
    'Sets who is acting and why for the current transaction only. extra holds anything else: request_id, business_process, migration, ip, user_agent, ...';

-- The number of the current context within the transaction: 0, plus one for
-- each pgtrail.set_context() call so far. Inlined into the capture functions.
CREATE OR REPLACE FUNCTION pgtrail._context_seq()
RETURNS smallint
LANGUAGE sql STABLE
AS $fn$
    SELECT CASE WHEN pg_catalog.current_setting('pgtrail.context_seq', true) OPERATOR(pg_catalog.~) '^[0-9]{1,5}$'
                THEN LEAST(pg_catalog.current_setting('pgtrail.context_seq', true)::integer, 32767)::smallint
                ELSE 0::smallint END
$fn$;

-- How long after its transaction began a context's changes can still be
-- found by that start (pgtrail.actor_changes). Contexts whose changes go on
-- longer are listed in pgtrail.long_context by capture, right after the
-- statement that wrote such a change. Migration 0003 uses the same hour.
CREATE OR REPLACE FUNCTION pgtrail._context_span()
RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$
    SELECT interval '1 hour'
$fn$;

-- Whether a change stamped p_at falls outside the current transaction's
-- first _context_span(), or before its start (a clock step back, or a
-- baseline stamped with its table's attach time). Inlined into the capture
-- functions, which pass clock_timestamp() after writing a statement's changes.
CREATE OR REPLACE FUNCTION pgtrail._outside_context_span(p_at timestamptz)
RETURNS boolean
LANGUAGE sql STABLE
AS $fn$
    SELECT p_at OPERATOR(pg_catalog.>)
               (pg_catalog.transaction_timestamp() OPERATOR(pg_catalog.+) pgtrail._context_span())
        OR p_at OPERATOR(pg_catalog.<) pg_catalog.transaction_timestamp()
$fn$;

-- Writes the record of the current transaction's context p_ctx: called by
-- capture once per transaction and context, after it found none. Refuses
-- the change when an actor is required and none is set. No SECURITY DEFINER
-- and no SET clause (measured: about 10% of a single-row UPDATE's
-- throughput): only the owner may execute it, and its only callers are the
-- capture functions, which already run as the owner with a pinned search_path.
CREATE OR REPLACE FUNCTION pgtrail._record_transaction(p_txid bigint, p_ctx smallint, p_table text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_raw    text;
    v_extra  jsonb;
    v_values jsonb;
BEGIN
    -- Each field's first non-empty value: pgtrail.<field> (set_context, SET
    -- LOCAL), then the settings mapped to it in pgtrail.toml, in order.
    v_values := jsonb_strip_nulls(jsonb_build_object(
        'actor_id', nullif(current_setting('pgtrail.actor_id', true), ''),
        'actor_name', nullif(current_setting('pgtrail.actor_name', true), ''),
        'actor_type', nullif(current_setting('pgtrail.actor_type', true), ''),
        'reason', nullif(current_setting('pgtrail.reason', true), ''),
        'migration', nullif(current_setting('pgtrail.migration', true), ''),
        'request_id', nullif(current_setting('pgtrail.request_id', true), ''),
        'session_id', nullif(current_setting('pgtrail.session_id', true), ''),
        'business_process', nullif(current_setting('pgtrail.business_process', true), ''),
        'ip', nullif(current_setting('pgtrail.ip', true), ''),
        'user_agent', nullif(current_setting('pgtrail.user_agent', true), '')));
    -- Mapped settings fill the fields still empty (the query runs only when
    -- pgtrail.toml maps any).
    SELECT v_values || coalesce(jsonb_object_agg(firsts.field, firsts.value), '{}'::jsonb) INTO v_values
    FROM (
        SELECT DISTINCT ON (c.field) c.field, c.value
        FROM (
            SELECT s.field, 0 AS position, nullif(current_setting('pgtrail.' || s.field, true), '') AS value
            FROM pgtrail.context_source AS s
            UNION ALL
            SELECT s.field, s.position, nullif(current_setting(s.setting, true), '')
            FROM pgtrail.context_source AS s
        ) AS c
        WHERE c.value IS NOT NULL AND NOT v_values ? c.field
        ORDER BY c.field, c.position
    ) AS firsts;

    -- extra context: set_context's extra wins over single settings.
    v_raw := nullif(current_setting('pgtrail.context', true), '');
    IF v_raw IS NOT NULL THEN
        BEGIN
            v_extra := v_raw::jsonb;
            IF jsonb_typeof(v_extra) <> 'object' THEN
                v_extra := jsonb_build_object('context', v_extra);
            END IF;
        EXCEPTION WHEN others THEN
            v_extra := jsonb_build_object('unparsed_context', v_raw);
        END;
    END IF;
    v_extra := (v_values - ARRAY['actor_id', 'actor_name', 'actor_type', 'reason']) || coalesce(v_extra, '{}'::jsonb);
    IF v_extra = '{}'::jsonb THEN
        v_extra := NULL;
    END IF;

    IF NOT (v_values ?| ARRAY['actor_id', 'actor_name'])
       AND coalesce(v_values ->> 'actor_type', '') <> 'migration'
       AND NOT coalesce(v_extra ? 'migration', false)
       AND EXISTS (SELECT FROM pgtrail.setting WHERE name = 'require_actor' AND value = 'true')
    THEN
        RAISE EXCEPTION 'pgtrail: change to % has no actor', p_table
            USING ERRCODE = 'PGTR1',
                  DETAIL = 'This database requires every audited change to say who made it (require_actor = true).',
                  HINT = 'In the same transaction, run SELECT pgtrail.set_context(actor_id => ''42'', actor_name => ''alice@example.com''); '
                      || 'or SET LOCAL pgtrail.actor_id = ''42''; migrations may set pgtrail.set_context(actor_type => ''migration'', extra => ''{"migration": "name"}'').';
    END IF;

    INSERT INTO pgtrail.transaction (
        txid, ctx, started_at, recorded_at, actor_id, actor_name, actor_type, reason, context,
        db_user, db_role, application_name, client_addr, client_port, backend_pid)
    VALUES (
        p_txid, p_ctx, transaction_timestamp(), clock_timestamp(),
        v_values ->> 'actor_id', v_values ->> 'actor_name', v_values ->> 'actor_type', v_values ->> 'reason',
        v_extra,
        session_user, nullif(current_setting('role'), 'none'),
        nullif(current_setting('application_name'), ''),
        inet_client_addr(), inet_client_port(), pg_backend_pid());
END
$fn$;

-- Replaces the installation's context settings: which client settings feed
-- which field ({"actor_id": ["app.user_id"], "migration": [...]}) and
-- whether every change needs an actor. Called by `pgtrail apply`.
CREATE OR REPLACE FUNCTION pgtrail.configure_context(p_sources jsonb, p_require_actor boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF jsonb_typeof(p_sources) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'pgtrail.configure_context: sources must be a JSON object' USING ERRCODE = '22023';
    END IF;
    DELETE FROM pgtrail.context_source;
    INSERT INTO pgtrail.context_source (field, position, setting)
    SELECT f.key, s.position::integer, s.setting
    FROM jsonb_each(p_sources) AS f
    CROSS JOIN LATERAL jsonb_array_elements_text(f.value) WITH ORDINALITY AS s(setting, position);
    INSERT INTO pgtrail.setting (name, value) VALUES ('require_actor', p_require_actor::text)
    ON CONFLICT (name) DO UPDATE SET value = excluded.value;
END
$fn$;
