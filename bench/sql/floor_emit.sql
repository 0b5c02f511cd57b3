-- The floor (bench/WAL.md, DB=bare:FILE): floor_set_context_sql.sql's set_context
-- also emitting one transactional logical message of 213 bytes (the size of a
-- context message with few fields set), to measure pg_logical_emit_message alone. Not for use.
CREATE SCHEMA pgtrail;
CREATE FUNCTION pgtrail.set_context(
    actor_id text DEFAULT NULL, actor_name text DEFAULT NULL, actor_type text DEFAULT NULL,
    reason text DEFAULT NULL, extra jsonb DEFAULT NULL)
RETURNS void
LANGUAGE sql VOLATILE
AS $fn$
    SELECT CASE WHEN
        ((pg_catalog.set_config('pgtrail.actor_id', COALESCE(actor_id, ''), true)
        OPERATOR(pg_catalog.||) pg_catalog.set_config('pgtrail.actor_name', COALESCE(actor_name, ''), true)
        OPERATOR(pg_catalog.||) pg_catalog.set_config('pgtrail.actor_type', COALESCE(actor_type, ''), true)
        OPERATOR(pg_catalog.||) pg_catalog.set_config('pgtrail.reason', COALESCE(reason, ''), true)
        OPERATOR(pg_catalog.||) pg_catalog.set_config('pgtrail.context_checked',
            pg_catalog.set_config('pgtrail.context', COALESCE(extra::pg_catalog.text, ''), true), true)
        OPERATOR(pg_catalog.||) pg_catalog.set_config('pgtrail.context_seq', '1', true)) IS NULL OR pg_catalog.pg_logical_emit_message(true, 'pgtrail', '{"ctx":1,"started_at":"2026-12-06T22:00:00.123456+00:00","recorded_at":"2026-12-06T22:00:00.123789+00:00","actor_id":"bench","actor_name":null,"actor_type":null,"reason":"tpcb","context":null,"db_user":"postgres"}') IS NULL)
        IS NULL THEN NULL ELSE ''::pg_catalog.void END
$fn$;
