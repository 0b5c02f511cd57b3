-- The floor (bench/WAL.md, DB=bare:FILE): floor_set_context_sql.sql's set_context
-- and, instead of a function call, a WHEN clause on the four TPC-B tables'
-- statement triggers: the cheapest test a design could make there (one
-- setting compared), false every time, so the function never runs. Not for use.
\ir floor_set_context_sql.sql
CREATE FUNCTION pgtrail.floor_trigger() RETURNS trigger LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN NULL;
END
$fn$;
CREATE TRIGGER floor BEFORE INSERT OR UPDATE OR DELETE ON pgbench_accounts FOR EACH STATEMENT
    WHEN (pg_catalog.current_setting('pgtrail.emitted', true) OPERATOR(pg_catalog.=) 'never') EXECUTE FUNCTION pgtrail.floor_trigger();
CREATE TRIGGER floor BEFORE INSERT OR UPDATE OR DELETE ON pgbench_tellers FOR EACH STATEMENT
    WHEN (pg_catalog.current_setting('pgtrail.emitted', true) OPERATOR(pg_catalog.=) 'never') EXECUTE FUNCTION pgtrail.floor_trigger();
CREATE TRIGGER floor BEFORE INSERT OR UPDATE OR DELETE ON pgbench_branches FOR EACH STATEMENT
    WHEN (pg_catalog.current_setting('pgtrail.emitted', true) OPERATOR(pg_catalog.=) 'never') EXECUTE FUNCTION pgtrail.floor_trigger();
CREATE TRIGGER floor BEFORE INSERT OR UPDATE OR DELETE ON pgbench_history FOR EACH STATEMENT
    WHEN (pg_catalog.current_setting('pgtrail.emitted', true) OPERATOR(pg_catalog.=) 'never') EXECUTE FUNCTION pgtrail.floor_trigger();
