-- Comparison baseline for the capture benchmark, NOT part of pgtrail: the
-- "insert floor", the lower bound of what ANY trigger costs that writes one
-- indexed trail row per changed row. Its trail table has exactly the shape
-- and the indexes of pgtrail.change; its triggers are statement-level AFTER
-- triggers with a transition table, declared like pgtrail's (PL/pgSQL,
-- SECURITY DEFINER, SET search_path), whose whole body is one INSERT ...
-- SELECT of one row per changed row: the key as JSON and nothing else. No
-- context, no old or new values, no diff, no pairing of old and new rows:
-- it is not an audit trail. The distance from it to pgtrail is pgtrail's
-- own logic.
--
-- The benchmark generates one function per audited table and event
-- (bench_floor.capture_<table>_<op>), because the key column differs:
--
--   CREATE FUNCTION bench_floor.capture_acct_u() RETURNS trigger
--   LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
--   BEGIN
--       INSERT INTO bench_floor.change (txid, ctx, table_id, op, changed_at, pk)
--       SELECT txid_current(), 0, 1, 'U', clock_timestamp(), jsonb_build_object('id', r.id)
--       FROM pgtrail_new AS r;
--       RETURN NULL;
--   END $fn$;
--
-- attached as AFTER UPDATE ... REFERENCING NEW TABLE AS pgtrail_new FOR EACH STATEMENT.

CREATE SCHEMA bench_floor;

CREATE TABLE bench_floor.change (
    id             bigint      GENERATED ALWAYS AS IDENTITY (CACHE 32) PRIMARY KEY,
    txid           bigint      NOT NULL,
    ctx            smallint    NOT NULL,
    table_id       integer     NOT NULL,
    op             "char"      NOT NULL,
    changed_at     timestamptz NOT NULL,
    pk             jsonb,
    old_pk         jsonb,
    old_values     jsonb,
    new_values     jsonb,
    changed_fields text[]
);

CREATE INDEX change_key_idx ON bench_floor.change (table_id, jsonb_hash_extended(pk, 0));
CREATE INDEX change_old_key_idx ON bench_floor.change (table_id, jsonb_hash_extended(old_pk, 0)) WHERE old_pk IS NOT NULL;
CREATE INDEX change_txid_idx ON bench_floor.change (txid);
CREATE INDEX change_time_brin ON bench_floor.change USING brin (changed_at);
