-- Comparison baseline for the capture benchmark, NOT part of pgtrail: a
-- generic row-level PL/pgSQL AFTER trigger (FOR EACH ROW) recording the same
-- per-row information as pgtrail's set-based capture (key as jsonb, old/new
-- diff computed with jsonb_each, changed fields) into a table of the same
-- shape and with the same indexes as pgtrail.change.
--
-- It does less than pgtrail: no per-transaction context record
-- (pgtrail.transaction), no ignored or redacted columns, no append-only guard.
--
-- Arguments: TG_ARGV[0] table id, TG_ARGV[1] key columns as a text[] literal
-- ('{}' = whole row identifies it).

CREATE SCHEMA bench_rowtrail;

CREATE TABLE bench_rowtrail.change (
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

CREATE INDEX change_row_idx ON bench_rowtrail.change (table_id, pk);
CREATE INDEX change_old_row_idx ON bench_rowtrail.change (table_id, old_pk) WHERE old_pk IS NOT NULL;
CREATE INDEX change_txid_brin ON bench_rowtrail.change USING brin (txid);
CREATE INDEX change_time_brin ON bench_rowtrail.change USING brin (changed_at);

CREATE FUNCTION bench_rowtrail.capture_row()
RETURNS trigger
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_keys   text[] := TG_ARGV[1]::text[];
    v_old    jsonb;
    v_new    jsonb;
    v_pk     jsonb;
    v_old_pk jsonb;
    v_fields text[];
    v_odiff  jsonb;
    v_ndiff  jsonb;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        v_old := to_jsonb(OLD);
        v_old_pk := CASE WHEN cardinality(v_keys) = 0 THEN v_old
                         ELSE (SELECT jsonb_object_agg(c, v_old -> c) FROM unnest(v_keys) AS c) END;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        v_new := to_jsonb(NEW);
        v_pk := CASE WHEN cardinality(v_keys) = 0 THEN v_new
                     ELSE (SELECT jsonb_object_agg(c, v_new -> c) FROM unnest(v_keys) AS c) END;
    END IF;

    IF TG_OP = 'UPDATE' THEN
        SELECT array_agg(e.key ORDER BY e.key),
               jsonb_object_agg(e.key, v_old -> e.key),
               jsonb_object_agg(e.key, e.value)
        INTO v_fields, v_odiff, v_ndiff
        FROM jsonb_each(v_new) AS e
        WHERE (v_old -> e.key) IS DISTINCT FROM e.value;
        IF v_fields IS NULL THEN
            RETURN NULL;
        END IF;
        INSERT INTO bench_rowtrail.change (txid, ctx, table_id, op, changed_at, pk, old_pk,
                                           old_values, new_values, changed_fields)
        VALUES (txid_current(), 0, TG_ARGV[0]::integer, 'U', clock_timestamp(), v_pk,
                CASE WHEN v_old_pk IS DISTINCT FROM v_pk THEN v_old_pk END,
                v_odiff, v_ndiff, v_fields);
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO bench_rowtrail.change (txid, ctx, table_id, op, changed_at, pk, new_values)
        VALUES (txid_current(), 0, TG_ARGV[0]::integer, 'I', clock_timestamp(), v_pk, v_new);
    ELSE
        INSERT INTO bench_rowtrail.change (txid, ctx, table_id, op, changed_at, pk, old_values)
        VALUES (txid_current(), 0, TG_ARGV[0]::integer, 'D', clock_timestamp(), v_old_pk, v_old);
    END IF;
    RETURN NULL;
END
$fn$;
