-- A split measured by bench/context_instructions.sh (bench/WAL.md): the context
-- trigger's function returning at once (no test, no message), so that what
-- WAL mode costs a statement without it shows (the trigger's call, replica
-- identity FULL). Loses the context: not for use.
CREATE OR REPLACE FUNCTION pgtrail._wal_context()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
AS $fn$
BEGIN
    RETURN NULL;
END
$fn$;
