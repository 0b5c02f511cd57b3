-- A variant measured by bench/context_instructions.sh (bench/WAL.md): _wal_emit
-- without its SET search_path (not kept: see bench/WAL.md). Not for use.
DO $$ DECLARE d text := pg_get_functiondef('pgtrail._wal_emit(text,text)'::regprocedure);
BEGIN
  IF strpos(d, E' SET search_path TO ''pg_catalog'', ''pg_temp''\n') = 0 THEN RAISE EXCEPTION 'no SET clause in %', d; END IF;
  d := replace(d, E' SET search_path TO ''pg_catalog'', ''pg_temp''\n', '');
  EXECUTE d;
END $$;
