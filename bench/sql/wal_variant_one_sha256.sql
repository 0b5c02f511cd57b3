-- A variant measured by bench/context_instructions.sh (bench/WAL.md): the context
-- message signed with one sha256 (sha256(k_in || txid || ':' || json)) instead of
-- two (not kept: see bench/WAL.md; the follower would not verify it). Not for use.
DO $$ DECLARE d text := pg_get_functiondef('pgtrail._wal_emit(text,text)'::regprocedure);
BEGIN
  IF strpos(d, 'pg_catalog.sha256(v_k_out || pg_catalog.sha256(') = 0 THEN RAISE EXCEPTION 'no nested sha256 in %', d; END IF;
  d := replace(d, 'pg_catalog.sha256(v_k_out || pg_catalog.sha256(', '(pg_catalog.sha256(');
  EXECUTE d;
END $$;
