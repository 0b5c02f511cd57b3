-- The floor (bench/WAL.md, DB=bare:FILE): floor_set_context_sql.sql's set_context
-- also arming the cheapest commit check SQL allows (the only commit hook is a
-- deferred trigger, which only a row change queues): a SECURITY DEFINER
-- PL/pgSQL function updating the backend's row of an unlogged table, whose
-- deferred constraint trigger runs an empty PL/pgSQL function at commit, every
-- transaction (no once-per-transaction test). Not for use.
CREATE SCHEMA pgtrail;
CREATE UNLOGGED TABLE pgtrail.context_check (backend_pid integer PRIMARY KEY);
CREATE FUNCTION pgtrail.check_trigger() RETURNS trigger LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN NULL;
END
$fn$;
CREATE CONSTRAINT TRIGGER context_check AFTER INSERT OR UPDATE ON pgtrail.context_check
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION pgtrail.check_trigger();
CREATE FUNCTION pgtrail.arm() RETURNS text LANGUAGE plpgsql SECURITY DEFINER
AS $fn$
BEGIN
    UPDATE pgtrail.context_check SET backend_pid = backend_pid
    WHERE backend_pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid();
    IF NOT FOUND THEN
        INSERT INTO pgtrail.context_check (backend_pid) VALUES (pg_catalog.pg_backend_pid());
    END IF;
    RETURN '';
END
$fn$;
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
        OPERATOR(pg_catalog.||) pgtrail.arm()
        IS NULL THEN NULL ELSE ''::pg_catalog.void END
$fn$;
