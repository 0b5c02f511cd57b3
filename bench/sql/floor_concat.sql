-- The floor (bench/WAL.md, DB=bare:FILE): floor_sha256.sql without the sha256
-- (the same concatenation and convert_to, its length taken), so that the
-- difference of the two is the sha256 alone. Not for use.
CREATE SCHEMA pgtrail;
CREATE FUNCTION pgtrail.set_context(
    actor_id text DEFAULT NULL, actor_name text DEFAULT NULL, actor_type text DEFAULT NULL,
    reason text DEFAULT NULL, extra jsonb DEFAULT NULL)
RETURNS void
LANGUAGE sql VOLATILE
AS $fn$
    SELECT CASE WHEN
        pg_catalog.length(pg_catalog.convert_to((pg_catalog.set_config('pgtrail.actor_id', COALESCE(actor_id, ''), true)
        OPERATOR(pg_catalog.||) pg_catalog.set_config('pgtrail.actor_name', COALESCE(actor_name, ''), true)
        OPERATOR(pg_catalog.||) pg_catalog.set_config('pgtrail.actor_type', COALESCE(actor_type, ''), true)
        OPERATOR(pg_catalog.||) pg_catalog.set_config('pgtrail.reason', COALESCE(reason, ''), true)
        OPERATOR(pg_catalog.||) pg_catalog.set_config('pgtrail.context_checked',
            pg_catalog.set_config('pgtrail.context', COALESCE(extra::pg_catalog.text, ''), true), true)
        OPERATOR(pg_catalog.||) pg_catalog.set_config('pgtrail.context_seq', '1', true)) OPERATOR(pg_catalog.||) 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx', 'UTF8'))
        IS NULL THEN NULL ELSE ''::pg_catalog.void END
$fn$;
