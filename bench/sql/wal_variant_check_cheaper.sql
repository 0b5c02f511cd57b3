-- A variant measured by bench/context_instructions.sh (bench/WAL.md): the commit
-- check's note of set_context's statement as 16 hex digits of its timestamp's
-- binary form (encode(timestamptz_send(...), 'hex')) instead of its text
-- (timestamptz_out, DateStyle and zone), and at commit the settings of what
-- was captured tested before the statement's timestamp (in a transaction
-- that wrote, the check ends there). Not for use.
CREATE OR REPLACE FUNCTION pgtrail._context_check_arm()
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
AS $fn$
DECLARE
    v_set pg_catalog.text := pg_catalog.set_config('pgtrail.context_statement',
        pg_catalog.encode(pg_catalog.timestamptz_send(pg_catalog.statement_timestamp()), 'hex'), true);
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
CREATE OR REPLACE FUNCTION pgtrail._context_check_trigger()
RETURNS trigger
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_mode text;
BEGIN
    IF COALESCE(pg_catalog.current_setting('pgtrail.emitted', true), '') OPERATOR(pg_catalog.=) ''
       AND COALESCE(pg_catalog.current_setting('pgtrail.recorded', true), '') OPERATOR(pg_catalog.=) ''
       AND pg_catalog.current_setting('pgtrail.context_statement', true) OPERATOR(pg_catalog.=)
           pg_catalog.encode(pg_catalog.timestamptz_send(pg_catalog.statement_timestamp()), 'hex')
       AND pg_catalog.strpos(pg_catalog.rtrim(COALESCE(pg_catalog.current_query(), ''), E' \t\r\n;'), ';')
           OPERATOR(pg_catalog.=) 0 THEN
        v_mode := pgtrail._outside_transaction();
        IF v_mode OPERATOR(pg_catalog.=) 'refuse' THEN
            RAISE EXCEPTION 'pgtrail.set_context was called outside a transaction block: the context ended with its own statement'
                USING ERRCODE = '25P01';
        ELSIF v_mode OPERATOR(pg_catalog.=) 'warn' THEN
            RAISE WARNING 'pgtrail.set_context was called outside a transaction block: the context ended with its own statement';
        END IF;
    END IF;
    RETURN NULL;
END
$fn$;
