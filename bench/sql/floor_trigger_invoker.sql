-- The floor (bench/WAL.md, DB=bare:FILE): floor_set_context_sql.sql's set_context
-- and the cheapest trigger on the four TPC-B tables, an empty PL/pgSQL
-- BEFORE ... FOR EACH STATEMENT function returning NULL (invoker). Not for use.
\ir floor_set_context_sql.sql
CREATE FUNCTION pgtrail.floor_trigger() RETURNS trigger LANGUAGE plpgsql 
AS $fn$
BEGIN
    RETURN NULL;
END
$fn$;
CREATE TRIGGER floor BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON pgbench_accounts FOR EACH STATEMENT EXECUTE FUNCTION pgtrail.floor_trigger();
CREATE TRIGGER floor BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON pgbench_tellers FOR EACH STATEMENT EXECUTE FUNCTION pgtrail.floor_trigger();
CREATE TRIGGER floor BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON pgbench_branches FOR EACH STATEMENT EXECUTE FUNCTION pgtrail.floor_trigger();
CREATE TRIGGER floor BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON pgbench_history FOR EACH STATEMENT EXECUTE FUNCTION pgtrail.floor_trigger();
