-- The floor (bench/WAL.md, DB=bare:FILE): floor_set_context_sql.sql's set_context
-- also hashing 250 bytes with sha256 (set_config's result and 240 bytes more, so
-- that nothing is folded at planning), to measure one sha256 alone. Not for use.
CREATE SCHEMA pgtrail;
CREATE FUNCTION pgtrail.set_context(
    actor_id text DEFAULT NULL, actor_name text DEFAULT NULL, actor_type text DEFAULT NULL,
    reason text DEFAULT NULL, extra jsonb DEFAULT NULL)
RETURNS void
LANGUAGE sql VOLATILE
AS $fn$
    SELECT CASE WHEN
        pg_catalog.sha256(pg_catalog.convert_to((pg_catalog.set_config('pgtrail.actor_id', COALESCE(actor_id, ''), true)
        OPERATOR(pg_catalog.||) pg_catalog.set_config('pgtrail.actor_name', COALESCE(actor_name, ''), true)
        OPERATOR(pg_catalog.||) pg_catalog.set_config('pgtrail.actor_type', COALESCE(actor_type, ''), true)
        OPERATOR(pg_catalog.||) pg_catalog.set_config('pgtrail.reason', COALESCE(reason, ''), true)
        OPERATOR(pg_catalog.||) pg_catalog.set_config('pgtrail.context_checked',
            pg_catalog.set_config('pgtrail.context', COALESCE(extra::pg_catalog.text, ''), true), true)
        OPERATOR(pg_catalog.||) pg_catalog.set_config('pgtrail.context_seq', '1', true)) OPERATOR(pg_catalog.||) 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx', 'UTF8'))
        IS NULL THEN NULL ELSE ''::pg_catalog.void END
$fn$;
