-- Comparison baseline for the capture benchmark, NOT part of pgtrail and NOT
-- shipped. It is not a correct audit trail either: it records no context (who,
-- why, which transaction), computes no diff (it stores the two columns the
-- benchmark's UPDATEs set, whether they changed or not), pairs no old and new
-- rows, knows no keys other than acct's id, and ignores redaction, ignored
-- columns and the append-only guard.
--
-- What it is: the lower bound of what ANY trigger costs that writes one
-- indexed trail row per changed row. A statement-level AFTER UPDATE trigger
-- with a transition table, declared like pgtrail's capture triggers (PL/pgSQL,
-- SECURITY DEFINER, SET search_path), whose body is a single INSERT ... SELECT
-- into a table of exactly the shape and indexes of pgtrail.change. Whatever a
-- trigger design does, it cannot be cheaper than this per change; the distance
-- from this floor to pgtrail is pgtrail's own logic.
--
-- It is written for the benchmark's table acct (columns id, email, name) and
-- attached to it by the benchmark as
--   AFTER UPDATE ON acct REFERENCING NEW TABLE AS new_table
--   FOR EACH STATEMENT EXECUTE FUNCTION bench_floor.capture_update()

CREATE SCHEMA bench_floor;

CREATE TABLE bench_floor.change (
    id             bigint      GENERATED ALWAYS AS IDENTITY (CACHE 32) PRIMARY KEY,
    txid           bigint      NOT NULL,
    ctx            smallint    NOT NULL,
    table_id       integer     NOT NULL,
    op             "char"      NOT NULL CHECK (op IN ('I', 'U', 'D', 'T')),
    changed_at     timestamptz NOT NULL,
    pk             jsonb,
    old_pk         jsonb,
    old_values     jsonb,
    new_values     jsonb,
    changed_fields text[]
);

CREATE INDEX change_row_idx ON bench_floor.change (table_id, pk);
CREATE INDEX change_old_row_idx ON bench_floor.change (table_id, old_pk) WHERE old_pk IS NOT NULL;
CREATE INDEX change_txid_idx ON bench_floor.change (txid);
CREATE INDEX change_txid_brin ON bench_floor.change USING brin (txid);
CREATE INDEX change_time_brin ON bench_floor.change USING brin (changed_at);

CREATE FUNCTION bench_floor.capture_update()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    INSERT INTO bench_floor.change (txid, ctx, table_id, op, changed_at, pk, new_values)
    SELECT txid_current(), 0, 1, 'U', clock_timestamp(),
           jsonb_build_object('id', n.id),
           jsonb_build_object('email', n.email, 'name', n.name)
    FROM new_table AS n;
    RETURN NULL;
END
$fn$;
