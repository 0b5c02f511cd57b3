-- The record of who is acting and why, once per transaction and context:
-- the statements that write it are generated from the context settings
-- (pgtrail.toml's [context], in pgtrail.context_source) into every capture
-- function (20_capture.sql) and into pgtrail._record_transaction.

-- The context fields pgtrail records, each with the settings read for it in
-- order: pgtrail.<field> (set by set_context or SET LOCAL), then the
-- settings pgtrail.toml maps to it. The first four have columns of their own
-- in pgtrail.transaction; the others, and any field pgtrail.toml adds, go
-- into its context.
CREATE OR REPLACE FUNCTION pgtrail._context_fields()
RETURNS TABLE (field text, settings text[])
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT f.field, ARRAY['pgtrail.' || f.field]
                    || coalesce((SELECT array_agg(s.setting ORDER BY s.position)
                                 FROM pgtrail.context_source AS s WHERE s.field = f.field), '{}')
    FROM (SELECT unnest(ARRAY['actor_id', 'actor_name', 'actor_type', 'reason', 'migration', 'request_id',
                              'session_id', 'business_process', 'ip', 'user_agent']) AS field
          UNION
          SELECT s.field FROM pgtrail.context_source AS s) AS f
$fn$;

-- The expression reading one context field: its first non-empty setting.
CREATE OR REPLACE FUNCTION pgtrail._context_field_sql(p_field text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT CASE WHEN count(*) = 1 THEN min(format('NULLIF(pg_catalog.current_setting(%L, true), %L)', s, ''))
                ELSE 'COALESCE(' || string_agg(format('NULLIF(pg_catalog.current_setting(%L, true), %L)', s, ''),
                                               ', ' ORDER BY s.i) || ')' END
    FROM pgtrail._context_fields() AS f, unnest(f.settings) WITH ORDINALITY AS s(s, i)
    WHERE f.field = p_field
$fn$;

-- The statements that set v_context (jsonb, NULL when empty) to the
-- transaction's context beyond the four fields with columns: the settings
-- of the other fields (pgtrail.<field> and those pgtrail.toml maps), then
-- set_context's extra (pgtrail.context), which wins. Shared by the capture
-- functions (pgtrail._context_record_sql) and the context trigger of
-- WAL-mode tables (80_wal.sql).
--
-- Reading them all starts ~25 function calls, paid in every transaction
-- whatever the row needs. Usually none of those settings is set, or only
-- set_context's extra: one test of them all (the settings joined, NULLs
-- skipped; PL/pgSQL starts only the branch it takes) finds which. An extra
-- that set_context wrote is a JSON object already (set_context takes jsonb
-- and refuses other JSON): it leaves the same text in
-- pgtrail.context_checked, and an equal pgtrail.context is cast directly.
-- Any other text (a SET LOCAL pgtrail.context) goes through
-- pgtrail._extra_context, whose exception block (a subtransaction) keeps
-- malformed text from failing the write.
CREATE OR REPLACE FUNCTION pgtrail._context_extra_sql()
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_context text;
    v_guard   text;
BEGIN
    SELECT 'NULLIF(pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object('
           || string_agg(format('%L, %s', f.field, pgtrail._context_field_sql(f.field)), ', ' ORDER BY f.field)
           || ')) OPERATOR(pg_catalog.||) CASE WHEN COALESCE(pg_catalog.current_setting(''pgtrail.context'', true), '''') '
           || 'OPERATOR(pg_catalog.=) '''' THEN ''{}''::pg_catalog.jsonb '
           || 'ELSE pgtrail._extra_context(pg_catalog.current_setting(''pgtrail.context'', true)) END, '
           || '''{}''::pg_catalog.jsonb)'
    INTO v_context
    FROM pgtrail._context_fields() AS f
    WHERE f.field NOT IN ('actor_id', 'actor_name', 'actor_type', 'reason');

    SELECT CASE WHEN count(*) <= 99 THEN
               format(E'IF pg_catalog.array_to_string(ARRAY[%s]::pg_catalog.text[], '''') OPERATOR(pg_catalog.<>) '''' THEN\n'
                      '                v_context := %s;\n'
                      '            ELSIF COALESCE(pg_catalog.current_setting(''pgtrail.context'', true), '''') '
                      'OPERATOR(pg_catalog.<>) '''' THEN\n'
                      '                IF pg_catalog.current_setting(''pgtrail.context'', true) '
                      'OPERATOR(pg_catalog.=) pg_catalog.current_setting(''pgtrail.context_checked'', true) THEN\n'
                      '                    v_context := NULLIF(pg_catalog.current_setting(''pgtrail.context'', true)::pg_catalog.jsonb, '
                      '''{}''::pg_catalog.jsonb);\n'
                      '                ELSE\n'
                      '                    v_context := NULLIF(pgtrail._extra_context(pg_catalog.current_setting(''pgtrail.context'', true)), '
                      '''{}''::pg_catalog.jsonb);\n'
                      '                END IF;\n'
                      '            END IF;\n            ',
                      string_agg(format('pg_catalog.current_setting(%L, true)', s.s), ', ' ORDER BY f.field, s.i),
                      v_context)
           END
    INTO v_guard
    FROM pgtrail._context_fields() AS f, unnest(f.settings) WITH ORDINALITY AS s(s, i)
    WHERE f.field NOT IN ('actor_id', 'actor_name', 'actor_type', 'reason');
    RETURN coalesce(v_guard, format(E'v_context := %s;\n            ', v_context));
END
$fn$;

-- The statements that record the context of the current transaction
-- (variables v_txid and v_ctx) in pgtrail.transaction, and remember in the
-- transaction-local setting pgtrail.recorded that they did (a savepoint's
-- rollback rolls the setting back with the record, and the transaction's
-- end resets it). The mark is the transaction's number XOR the context's
-- (one operator and one int8 printed: about 6,000 instructions a
-- transaction less than 'txid:ctx' text), not the context's number alone:
-- any role may set a setting, and a session-level SET of a mark that
-- matched every transaction would keep its session facts (db user, role,
-- address) out of the trail. (A role that sets the mark within a
-- transaction, knowing its number, still can: only reading
-- pgtrail.transaction would tell, at a probe per statement.) A mark lost
-- within the transaction (RESET ALL, or a SET of it, after the context was
-- recorded) makes them run again: the context row is there already and is
-- kept as it is (ON CONFLICT DO NOTHING, about 13,700 instructions a
-- transaction; the write goes on), so nothing a session does with settings
-- can make capture fail a write. The caller computes the mark once, into
-- v_mark (its test and the set_config here share it: three function calls
-- fewer to start in the transaction's first statement), and runs them when
-- that setting is not v_mark. They refuse
-- the change when an actor is required and none is set: p_table is an SQL
-- expression naming the table in that error. The code they are part of
-- declares v_mark text (the mark) and v_context jsonb.
CREATE OR REPLACE FUNCTION pgtrail._context_record_sql(p_table text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_check text := pgtrail._context_extra_sql();
BEGIN
    IF EXISTS (SELECT FROM pgtrail.setting WHERE name = 'require_actor' AND value = 'true') THEN
        v_check := v_check || format(
            E'IF %s IS NULL AND %s IS NULL\n'
            '               AND COALESCE(%s, '''') OPERATOR(pg_catalog.<>) ''migration''\n'
            '               AND NOT COALESCE(v_context OPERATOR(pg_catalog.?) ''migration'', false) THEN\n'
            '                RAISE EXCEPTION ''pgtrail: change to %% has no actor'', %s USING ERRCODE = ''PGTR1'',\n'
            '                    DETAIL = %L,\n'
            '                    HINT = %L;\n'
            '            END IF;\n            ',
            pgtrail._context_field_sql('actor_id'), pgtrail._context_field_sql('actor_name'),
            pgtrail._context_field_sql('actor_type'), p_table,
            'This database requires every audited change to say who made it (require_actor = true).',
            'In the same transaction, run SELECT pgtrail.set_context(actor_id => ''42'', actor_name => ''alice@example.com''); '
                || 'or SET LOCAL pgtrail.actor_id = ''42''; migrations may set pgtrail.set_context(actor_type => ''migration'', '
                || 'extra => ''{"migration": "name"}'').');
    END IF;

    RETURN v_check || format(
        E'INSERT INTO pgtrail.transaction (txid, ctx, started_at, recorded_at, actor_id, actor_name, actor_type, reason,\n'
        '                context, db_user, db_role, application_name, client_addr, client_port, backend_pid)\n'
        '            VALUES (v_txid, v_ctx, pg_catalog.transaction_timestamp(), pg_catalog.clock_timestamp(),\n'
        '                %s,\n                %s,\n                %s,\n                %s,\n                %s,\n'
        '                SESSION_USER, NULLIF(pg_catalog.current_setting(''role''), ''none''),\n'
        '                NULLIF(pg_catalog.current_setting(''application_name''), ''''),\n'
        '                pg_catalog.inet_client_addr(), pg_catalog.inet_client_port(), pg_catalog.pg_backend_pid())\n'
        '            ON CONFLICT (txid, ctx) DO NOTHING\n'
        '            RETURNING pg_catalog.set_config(''pgtrail.recorded'', v_mark, true) INTO v_mark;',
        pgtrail._context_field_sql('actor_id'), pgtrail._context_field_sql('actor_name'),
        pgtrail._context_field_sql('actor_type'), pgtrail._context_field_sql('reason'), 'v_context');
END
$fn$;

-- (Re)generates pgtrail._record_transaction(txid, ctx, table), which
-- records the context of the current transaction for changes written
-- outside the capture functions (baselines, the rows of CREATE TABLE AS).
CREATE OR REPLACE FUNCTION pgtrail._compile_record_transaction()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    EXECUTE format(
        E'CREATE OR REPLACE FUNCTION pgtrail._record_transaction(p_txid bigint, p_ctx smallint, p_table text)\n'
        'RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS %L',
        format(E'\n-- pgtrail: generated from the context settings; do not edit.\n'
               'DECLARE\n    v_txid ALIAS FOR p_txid;\n    v_ctx ALIAS FOR p_ctx;\n    v_mark text := (v_txid OPERATOR(pg_catalog.#) v_ctx::pg_catalog.int8)::pg_catalog.text;\n    v_context jsonb;\nBEGIN\n'
               '    IF pg_catalog.current_setting(''pgtrail.recorded'', true) IS DISTINCT FROM v_mark THEN\n'
               '            %s\n    END IF;\nEND\n',
               pgtrail._context_record_sql('p_table')));
    PERFORM pgtrail._own_generated('pgtrail._record_transaction(bigint, smallint, text)');
    -- The context trigger of WAL-mode tables has the same settings compiled in (80_wal.sql).
    PERFORM pgtrail._compile_wal_context();
END
$fn$;
