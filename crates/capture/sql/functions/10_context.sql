-- Who is acting and why: the context an application sets for its transaction,
-- and the record of it that capture writes once per transaction.

-- (Re)generates pgtrail._outside_transaction(), the setting
-- outside_transaction of pgtrail.setting as a constant: an SQL function
-- that set_context's commit check inlines (so it has no SET clause and is
-- pinned by nothing: it names no object), instead of reading the table in
-- every transaction. Replacing it invalidates the plans that inlined it.
CREATE OR REPLACE FUNCTION pgtrail._compile_outside_transaction()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    EXECUTE format(
        E'CREATE OR REPLACE FUNCTION pgtrail._outside_transaction()\nRETURNS text\nLANGUAGE sql IMMUTABLE PARALLEL SAFE\n'
        'AS $body$SELECT %L::pg_catalog.text$body$',
        coalesce((SELECT value FROM pgtrail.setting WHERE name = 'outside_transaction'), 'warn'));
END
$fn$;

SELECT pgtrail._compile_outside_transaction();

-- set_context's refusal of an extra that is not a JSON object (p_type:
-- its jsonb_typeof); never returns.
CREATE OR REPLACE FUNCTION pgtrail._set_context_bad_extra(p_type text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RAISE EXCEPTION 'pgtrail.set_context: extra must be a JSON object, got %', p_type
        USING ERRCODE = '22023',
              HINT = 'Pass e.g. ''{"request_id": "r-1", "business_process": "refund"}''::jsonb.';
END
$fn$;

-- The first set_context of a transaction arms the commit check (below):
-- notes the statement, and unless the transaction is read-only (a standby
-- cannot queue the check) writes its backend's row of
-- pgtrail.context_check (an UPDATE of the row the backend's first check
-- inserted: cheaper than INSERT ... ON CONFLICT, which probes the index
-- twice). As the trail's owner, since the caller has no right on that
-- table, but with no pinned search_path (every name qualified, operators
-- too): a settings save and restore less.
CREATE OR REPLACE FUNCTION pgtrail._context_check_arm()
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
AS $fn$
DECLARE
    v_set pg_catalog.text := pg_catalog.set_config('pgtrail.context_statement',
                                                   pg_catalog.statement_timestamp()::pg_catalog.text, true);
BEGIN
    IF pg_catalog.current_setting('transaction_read_only') OPERATOR(pg_catalog.=) 'off' THEN
        UPDATE pgtrail.context_check SET backend_pid = backend_pid
        WHERE backend_pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid();
        IF NOT FOUND THEN
            INSERT INTO pgtrail.context_check AS c (backend_pid) VALUES (pg_catalog.pg_backend_pid())
            ON CONFLICT (backend_pid) DO UPDATE SET backend_pid = c.backend_pid;
        END IF;
    END IF;
    RETURN '';
END
$fn$;

-- Sets the context for the current transaction only (set_config(..., true)),
-- so it can never leak into the next transaction on a pooled connection.
-- Calling it again inside the same transaction starts a new context for the
-- changes that follow; changes already made keep the context they had.
-- Overloads below take actor_id as a number or a uuid, and extra as json,
-- so drivers that bind typed parameters need no casts.
--
-- One SQL expression, with no SECURITY DEFINER and no SET clause, so that
-- PostgreSQL inlines it into the calling statement: a prepared
-- `SELECT pgtrail.set_context(...)` then runs its set_config calls with no
-- function call of its own, no PL/pgSQL and no settings save and restore
-- (a PL/pgSQL SECURITY DEFINER function cost about 180,000 instructions a
-- call, its expressions prepared again in every transaction; bench/WAL.md).
-- It sets nothing but the caller's own transaction-local settings, which
-- any role may set, so it needs no rights of its own; every name in it is
-- qualified, so the caller's search_path cannot change what it calls. The
-- commit check (below) is armed by the first call of a transaction through
-- pgtrail._context_check_arm(), the one part that needs the owner's rights;
-- with [context] outside_transaction = "ignore" the planner folds it away.
-- An extra that is not a JSON object is refused (by
-- pgtrail._set_context_bad_extra) before anything is set.
CREATE OR REPLACE FUNCTION pgtrail.set_context(
    actor_id   text  DEFAULT NULL,
    actor_name text  DEFAULT NULL,
    actor_type text  DEFAULT NULL,
    reason     text  DEFAULT NULL,
    extra      jsonb DEFAULT NULL
) RETURNS void
LANGUAGE sql VOLATILE
AS $fn$
    SELECT CASE WHEN
        (CASE WHEN COALESCE(pg_catalog.jsonb_typeof(extra), 'object') OPERATOR(pg_catalog.=) 'object'
              THEN pg_catalog.set_config('pgtrail.actor_id', COALESCE(actor_id, ''), true)
              ELSE pgtrail._set_context_bad_extra(pg_catalog.jsonb_typeof(extra)) END)
        OPERATOR(pg_catalog.||) pg_catalog.set_config('pgtrail.actor_name', COALESCE(actor_name, ''), true)
        OPERATOR(pg_catalog.||) pg_catalog.set_config('pgtrail.actor_type', COALESCE(actor_type, ''), true)
        OPERATOR(pg_catalog.||) pg_catalog.set_config('pgtrail.reason', COALESCE(reason, ''), true)
        -- The extra's text twice (set_config returns what it set): the
        -- capture casts a pgtrail.context equal to pgtrail.context_checked
        -- without the checks a SET LOCAL one needs (15_context_record.sql).
        OPERATOR(pg_catalog.||) pg_catalog.set_config('pgtrail.context_checked',
            pg_catalog.set_config('pgtrail.context', COALESCE(extra::pg_catalog.text, ''), true), true)
        OPERATOR(pg_catalog.||) pg_catalog.set_config('pgtrail.context_seq',
            CASE WHEN pg_catalog.current_setting('pgtrail.context_seq', true) OPERATOR(pg_catalog.~) '^[0-9]{1,5}$'
                 THEN LEAST(pg_catalog.current_setting('pgtrail.context_seq', true)::pg_catalog.int4 OPERATOR(pg_catalog.+) 1,
                            32767)::pg_catalog.text
                 ELSE '1' END, true)
        -- The new context has no WAL-mode message yet (80_wal.sql).
        OPERATOR(pg_catalog.||) pg_catalog.set_config('pgtrail.emitted', '', true)
        -- Once per transaction: have its end checked (outside a transaction
        -- block the context ends with this very statement), see below.
        -- pgtrail._outside_transaction() is a constant, folded when the
        -- calling statement is planned.
        OPERATOR(pg_catalog.||) CASE WHEN pgtrail._outside_transaction() OPERATOR(pg_catalog.<>) 'ignore'
                                      AND COALESCE(pg_catalog.current_setting('pgtrail.context_statement', true), '')
                                          OPERATOR(pg_catalog.=) ''
                                     THEN pgtrail._context_check_arm() ELSE '' END
        IS NULL THEN NULL ELSE ''::pg_catalog.void END
$fn$;

COMMENT ON FUNCTION pgtrail.set_context(text, text, text, text, jsonb) IS
    'Sets who is acting and why for the current transaction only. extra holds anything else: request_id, business_process, migration, ip, user_agent, ...';

-- actor_id as a number (smallint, integer, bigint and numeric convert to
-- numeric implicitly) or a uuid. actor_id has no default here, so a call
-- without it, or with a text or unknown-typed one, resolves to the text
-- version above: exactly one version fits any call.
CREATE OR REPLACE FUNCTION pgtrail.set_context(
    actor_id numeric, actor_name text DEFAULT NULL, actor_type text DEFAULT NULL,
    reason text DEFAULT NULL, extra jsonb DEFAULT NULL)
RETURNS void
LANGUAGE sql
AS $fn$
    SELECT pgtrail.set_context($1::pg_catalog.text, $2, $3, $4, $5)
$fn$;

CREATE OR REPLACE FUNCTION pgtrail.set_context(
    actor_id uuid, actor_name text DEFAULT NULL, actor_type text DEFAULT NULL,
    reason text DEFAULT NULL, extra jsonb DEFAULT NULL)
RETURNS void
LANGUAGE sql
AS $fn$
    SELECT pgtrail.set_context($1::pg_catalog.text, $2, $3, $4, $5)
$fn$;

-- extra as json or text (a driver's JSON or string type rather than
-- jsonb), with all five arguments given (NULL for those not set): the
-- versions with defaults take jsonb. (json and jsonb are alike to
-- PostgreSQL's choice of a function, so a version of each with defaults
-- would make a call with an untyped literal ambiguous; given all five, an
-- untyped extra goes to the text version.)
CREATE OR REPLACE FUNCTION pgtrail.set_context(
    actor_id text, actor_name text, actor_type text, reason text, extra json)
RETURNS void
LANGUAGE sql
AS $fn$
    SELECT pgtrail.set_context($1::pg_catalog.text, $2, $3, $4, $5::pg_catalog.jsonb)
$fn$;

CREATE OR REPLACE FUNCTION pgtrail.set_context(
    actor_id text, actor_name text, actor_type text, reason text, extra text)
RETURNS void
LANGUAGE sql
AS $fn$
    SELECT pgtrail.set_context($1::pg_catalog.text, $2, $3, $4, $5::pg_catalog.jsonb)
$fn$;

CREATE OR REPLACE FUNCTION pgtrail.set_context(
    actor_id numeric, actor_name text, actor_type text, reason text, extra json)
RETURNS void
LANGUAGE sql
AS $fn$
    SELECT pgtrail.set_context($1::pg_catalog.text, $2, $3, $4, $5::pg_catalog.jsonb)
$fn$;

CREATE OR REPLACE FUNCTION pgtrail.set_context(
    actor_id numeric, actor_name text, actor_type text, reason text, extra text)
RETURNS void
LANGUAGE sql
AS $fn$
    SELECT pgtrail.set_context($1::pg_catalog.text, $2, $3, $4, $5::pg_catalog.jsonb)
$fn$;

CREATE OR REPLACE FUNCTION pgtrail.set_context(
    actor_id uuid, actor_name text, actor_type text, reason text, extra json)
RETURNS void
LANGUAGE sql
AS $fn$
    SELECT pgtrail.set_context($1::pg_catalog.text, $2, $3, $4, $5::pg_catalog.jsonb)
$fn$;

CREATE OR REPLACE FUNCTION pgtrail.set_context(
    actor_id uuid, actor_name text, actor_type text, reason text, extra text)
RETURNS void
LANGUAGE sql
AS $fn$
    SELECT pgtrail.set_context($1::pg_catalog.text, $2, $3, $4, $5::pg_catalog.jsonb)
$fn$;

-- The commit check of set_context. Outside a transaction block (autocommit)
-- a context ends with the statement that sets it, so the changes that
-- follow have none. PostgreSQL cannot tell a function whether it runs in a
-- transaction block, so the check is made at commit: set_context (once per
-- transaction, through pgtrail._context_check_arm) writes its backend's row
-- of pgtrail.context_check (an unlogged table: no WAL; the row is updated in
-- place from the second transaction on), whose deferred trigger fires when
-- the transaction commits (about 0.05 ms of server CPU per transaction,
-- some 145,000 instructions: three times set_context's own; bench/WAL.md);
-- if the statement then is still set_context's own and nothing was
-- captured in the transaction (no capture trigger's row, no WAL-mode
-- context message), the context was set for nothing. [context]
-- outside_transaction in pgtrail.toml says what then: 'warn' (default),
-- 'refuse' (the commit fails: in autocommit, the call itself), 'ignore' (no
-- check, no cost). A read-only transaction is not checked (a standby cannot
-- queue the check).
-- Until 0.6.0 the check was a function of its own.
DROP FUNCTION IF EXISTS pgtrail._check_context_at_commit();

CREATE OR REPLACE FUNCTION pgtrail._context_check_trigger()
RETURNS trigger
LANGUAGE plpgsql
-- Neither SECURITY DEFINER nor a pinned search_path (it reads the
-- committing role's own settings; every name is qualified): a settings save
-- and restore less at every commit.
AS $fn$
DECLARE
    v_mode text;
BEGIN
    -- Still set_context's statement, nothing captured (by a capture trigger,
    -- or a WAL-mode context message), and that statement alone in its
    -- message (a message of several statements is one implicit
    -- transaction: the context lived through it). The statement is tested
    -- alone first: PL/pgSQL prepares an expression whole (each function and
    -- operator in it looked up) once per transaction, however little of it
    -- runs, and most transactions end in another statement (5,000 to 11,000
    -- instructions a transaction less than one expression; bench/WAL.md).
    IF pg_catalog.current_setting('pgtrail.context_statement', true)
           OPERATOR(pg_catalog.=) pg_catalog.statement_timestamp()::pg_catalog.text THEN
        IF COALESCE(pg_catalog.current_setting('pgtrail.recorded', true), '') OPERATOR(pg_catalog.=) ''
           AND COALESCE(pg_catalog.current_setting('pgtrail.emitted', true), '') OPERATOR(pg_catalog.=) ''
           AND pg_catalog.strpos(pg_catalog.rtrim(COALESCE(pg_catalog.current_query(), ''), E' \t\r\n;'), ';')
               OPERATOR(pg_catalog.=) 0 THEN
            -- Read only here: most transactions end in another statement.
            v_mode := pgtrail._outside_transaction();
            IF v_mode OPERATOR(pg_catalog.=) 'refuse' THEN
                RAISE EXCEPTION 'pgtrail.set_context was called outside a transaction block: the context ended with its own statement'
                    USING ERRCODE = '25P01',
                          DETAIL = 'Outside BEGIN ... COMMIT each statement is its own transaction, and the context is transaction-local, so the changes that follow would have no actor. This database refuses it ([context] outside_transaction = "refuse").',
                          HINT = 'Run BEGIN first, then set_context, the changes and COMMIT, on the same connection.';
            ELSIF v_mode OPERATOR(pg_catalog.=) 'warn' THEN
                RAISE WARNING 'pgtrail.set_context was called outside a transaction block: the context ended with its own statement'
                    USING DETAIL = 'Outside BEGIN ... COMMIT each statement is its own transaction, and the context is transaction-local, so the changes that follow have no actor.',
                          HINT = 'Run BEGIN first, then set_context, the changes and COMMIT, on the same connection. ([context] outside_transaction = "ignore" silences this.)';
            END IF;
        END IF;
    END IF;
    RETURN NULL;
END
$fn$;

DROP TRIGGER IF EXISTS context_check ON pgtrail.context_check;
CREATE CONSTRAINT TRIGGER context_check AFTER INSERT OR UPDATE ON pgtrail.context_check
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION pgtrail._context_check_trigger();

-- Stores what set_context does outside a transaction block: warn, refuse
-- or ignore. Called by `pgtrail apply`.
CREATE OR REPLACE FUNCTION pgtrail.configure_set_context(p_outside_transaction text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF p_outside_transaction IS NULL OR p_outside_transaction NOT IN ('warn', 'refuse', 'ignore') THEN
        RAISE EXCEPTION 'pgtrail.configure_set_context: outside_transaction must be warn, refuse or ignore, not %',
                coalesce(p_outside_transaction, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    INSERT INTO pgtrail.setting (name, value) VALUES ('outside_transaction', p_outside_transaction)
    ON CONFLICT (name) DO UPDATE SET value = excluded.value;
    IF pgtrail._outside_transaction() IS DISTINCT FROM p_outside_transaction THEN
        PERFORM pgtrail._compile_outside_transaction();
        PERFORM pgtrail._own_generated('pgtrail._outside_transaction()');
    END IF;
END
$fn$;

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

-- Replaces the installation's context settings: which client settings feed
-- which field ({"actor_id": ["app.user_id"], "migration": [...]}) and
-- whether every change needs an actor, and regenerates the capture
-- functions, which have them compiled in. Called by `pgtrail apply`.
CREATE OR REPLACE FUNCTION pgtrail.configure_context(p_sources jsonb, p_require_actor boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF jsonb_typeof(p_sources) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'pgtrail.configure_context: sources must be a JSON object' USING ERRCODE = '22023';
    END IF;
    IF p_sources IS NOT DISTINCT FROM (
           SELECT coalesce(jsonb_object_agg(g.field, g.settings), '{}'::jsonb)
           FROM (SELECT field, jsonb_agg(setting ORDER BY position) AS settings
                 FROM pgtrail.context_source GROUP BY field) AS g)
       AND EXISTS (SELECT FROM pgtrail.setting WHERE name = 'require_actor' AND value = p_require_actor::text)
       AND to_regprocedure('pgtrail._record_transaction(bigint, smallint, text)') IS NOT NULL
    THEN
        RETURN;  -- nothing changed: the generated functions stay
    END IF;
    DELETE FROM pgtrail.context_source;
    INSERT INTO pgtrail.context_source (field, position, setting)
    SELECT f.key, s.position::integer, s.setting
    FROM jsonb_each(p_sources) AS f
    CROSS JOIN LATERAL jsonb_array_elements_text(f.value) WITH ORDINALITY AS s(setting, position);
    INSERT INTO pgtrail.setting (name, value) VALUES ('require_actor', p_require_actor::text)
    ON CONFLICT (name) DO UPDATE SET value = excluded.value;
    -- The context statements are compiled into every capture function.
    PERFORM pgtrail._compile_all();
END
$fn$;

-- Runs p_sql, a GRANT or REVOKE of pgtrail's own (on its generated
-- functions, or giving its owner role access to an audited table), which
-- the DDL watch then does not record as an access change
-- (37_ddl_watch.sql); GRANTs and REVOKEs by anyone else are recorded.
CREATE OR REPLACE FUNCTION pgtrail._privilege_ddl(p_sql text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_before text := coalesce(current_setting('pgtrail.installing', true), '');
BEGIN
    PERFORM set_config('pgtrail.installing', 'on', true);
    EXECUTE p_sql;
    PERFORM set_config('pgtrail.installing', v_before, true);
END
$fn$;
