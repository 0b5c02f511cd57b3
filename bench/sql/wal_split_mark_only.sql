-- A split measured by bench/context_instructions.sh (bench/WAL.md): _wal_emit
-- setting the mark only (no settings read, no message, no signature), so that
-- the context trigger's test and its two calls show apart from the message.
-- Loses the context: not for use.
CREATE OR REPLACE FUNCTION pgtrail._wal_emit(p_schema text, p_table text)
RETURNS pg_lsn LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    v_seq text := pg_catalog.current_setting('pgtrail.context_seq', true);
    v_set text;
BEGIN
    v_set := pg_catalog.set_config('pgtrail.emitted', 'c' OPERATOR(pg_catalog.||) COALESCE(v_seq, '')
        OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) pg_catalog.txid_current()::pg_catalog.text, true);
    RETURN NULL;
END
$fn$;
