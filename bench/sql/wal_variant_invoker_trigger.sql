-- A variant measured by bench/context_instructions.sh (bench/WAL.md): the context
-- trigger's function run as the invoker (not kept: a role without USAGE on the
-- schema pgtrail could not write). Not for use.
ALTER FUNCTION pgtrail._wal_context() SECURITY INVOKER;
GRANT EXECUTE ON FUNCTION pgtrail._wal_emit(text, text) TO PUBLIC;
