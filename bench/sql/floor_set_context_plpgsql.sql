-- The floor (bench/WAL.md, DB=bare:FILE): set_context as a PL/pgSQL function
-- doing the same seven set_config calls as floor_set_context_sql.sql. Not for use.
CREATE SCHEMA pgtrail;
CREATE FUNCTION pgtrail.set_context(
    actor_id text DEFAULT NULL, actor_name text DEFAULT NULL, actor_type text DEFAULT NULL,
    reason text DEFAULT NULL, extra jsonb DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $fn$
DECLARE
    v text;
BEGIN
    v := pg_catalog.set_config('pgtrail.actor_id', COALESCE(actor_id, ''), true);
    v := pg_catalog.set_config('pgtrail.actor_name', COALESCE(actor_name, ''), true);
    v := pg_catalog.set_config('pgtrail.actor_type', COALESCE(actor_type, ''), true);
    v := pg_catalog.set_config('pgtrail.reason', COALESCE(reason, ''), true);
    v := pg_catalog.set_config('pgtrail.context_checked',
             pg_catalog.set_config('pgtrail.context', COALESCE(extra::pg_catalog.text, ''), true), true);
    v := pg_catalog.set_config('pgtrail.context_seq', '1', true);
END
$fn$;
