-- Benchmark only, NOT part of pgtrail: turns an installed trail's
-- pgtrail.change into a table partitioned by month on changed_at (three
-- months back, three ahead, and a default partition), with the same
-- columns and indexes, so that the capture functions write through tuple
-- routing. It answers one question: what a time-partitioned trail costs
-- capture. (A partitioned table cannot have an identity column before
-- PostgreSQL 17 nor a unique index without the partition key: ids come from
-- a sequence, and the index on id is not unique.)

ALTER TABLE pgtrail.change RENAME TO change_unpartitioned;

CREATE SEQUENCE pgtrail.change_part_id_seq;

CREATE TABLE pgtrail.change (
    id             bigint      NOT NULL DEFAULT nextval('pgtrail.change_part_id_seq'),
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
) PARTITION BY RANGE (changed_at);

DO $parts$
DECLARE
    v_month date := date_trunc('month', now())::date - interval '3 months';
BEGIN
    FOR i IN 0 .. 6 LOOP
        EXECUTE format('CREATE TABLE pgtrail.%I PARTITION OF pgtrail.change FOR VALUES FROM (%L) TO (%L)',
                       'change_' || to_char(v_month, 'YYYY_MM'), v_month, (v_month + interval '1 month')::date);
        v_month := (v_month + interval '1 month')::date;
    END LOOP;
END
$parts$;
CREATE TABLE pgtrail.change_default PARTITION OF pgtrail.change DEFAULT;

CREATE INDEX ON pgtrail.change (id);
CREATE INDEX ON pgtrail.change (table_id, jsonb_hash_extended(pk, 0));
CREATE INDEX ON pgtrail.change (table_id, jsonb_hash_extended(old_pk, 0)) WHERE old_pk IS NOT NULL;
CREATE INDEX ON pgtrail.change (txid);
CREATE INDEX ON pgtrail.change USING brin (changed_at);

DO $owner$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgtrail_owner') THEN
        ALTER TABLE pgtrail.change OWNER TO pgtrail_owner;
        ALTER SEQUENCE pgtrail.change_part_id_seq OWNER TO pgtrail_owner;
    END IF;
END
$owner$;
