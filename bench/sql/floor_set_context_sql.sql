-- The floor of the writer's cost in plain SQL (bench/WAL.md), for
-- bench/context_instructions.sh's DB=bare:FILE: a database without pgtrail
-- whose pgtrail.set_context does nothing but its set_config calls (the
-- same seven as pgtrail's: actor_id, actor_name, actor_type, reason,
-- context, context_checked, context_seq, with no reads, no checks and no
-- commit check), an SQL function PostgreSQL inlines. Not for use.
CREATE SCHEMA pgtrail;
CREATE FUNCTION pgtrail.set_context(
    actor_id text DEFAULT NULL, actor_name text DEFAULT NULL, actor_type text DEFAULT NULL,
    reason text DEFAULT NULL, extra jsonb DEFAULT NULL)
RETURNS void
LANGUAGE sql VOLATILE
AS $fn$
    SELECT CASE WHEN
        pg_catalog.set_config('pgtrail.actor_id', COALESCE(actor_id, ''), true)
        OPERATOR(pg_catalog.||) pg_catalog.set_config('pgtrail.actor_name', COALESCE(actor_name, ''), true)
        OPERATOR(pg_catalog.||) pg_catalog.set_config('pgtrail.actor_type', COALESCE(actor_type, ''), true)
        OPERATOR(pg_catalog.||) pg_catalog.set_config('pgtrail.reason', COALESCE(reason, ''), true)
        OPERATOR(pg_catalog.||) pg_catalog.set_config('pgtrail.context_checked',
            pg_catalog.set_config('pgtrail.context', COALESCE(extra::pg_catalog.text, ''), true), true)
        OPERATOR(pg_catalog.||) pg_catalog.set_config('pgtrail.context_seq', '1', true)
        IS NULL THEN NULL ELSE ''::pg_catalog.void END
$fn$;
