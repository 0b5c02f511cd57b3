-- pgtrail migration 0004: indexes and constraints that cost capture less,
-- and indexes without a size limit.
--
-- A row's changes are found by a hash of its key (jsonb_hash_extended)
-- instead of the key itself: a btree over jsonb compares JSON on every
-- insert, grows with the key (about 40 bytes a change more than the hash),
-- and cannot hold a key over 2,704 bytes, which a table without a key (its
-- whole row is the key) reaches. Queries test the hash and then the key.
-- The actors' indexes hold the first 200 characters of a name or id, so an
-- actor of any length can be recorded. The BRIN on change.txid is gone: the
-- btree of 0003 serves every query it served.
--
-- Building an index locks out writes to the trail, and so capture, for as
-- long as it takes. On a trail of up to 100,000 changes it is done here, in
-- the install's transaction (well under a second); on a larger one the new
-- indexes are listed in pgtrail.index_build and `pgtrail apply` builds them
-- after its transaction with CREATE INDEX CONCURRENTLY, which does not block
-- writers, then drops the indexes they replace. Queries work with either.

CREATE TABLE pgtrail.index_build (
    name       text        PRIMARY KEY,
    -- CREATE INDEX ... (run as CREATE INDEX CONCURRENTLY IF NOT EXISTS)
    definition text        NOT NULL,
    -- Indexes dropped once it is built.
    replaces   text[]      NOT NULL DEFAULT '{}',
    listed_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

COMMENT ON TABLE pgtrail.index_build IS
    'Indexes an upgrade left to build concurrently; pgtrail apply builds them, pgtrail check reports them.';

INSERT INTO pgtrail.index_build (name, definition, replaces) VALUES
    ('change_key_idx',
     'CREATE INDEX change_key_idx ON pgtrail.change (table_id, jsonb_hash_extended(pk, 0))',
     '{change_row_idx}'),
    ('change_old_key_idx',
     'CREATE INDEX change_old_key_idx ON pgtrail.change (table_id, jsonb_hash_extended(old_pk, 0)) WHERE old_pk IS NOT NULL',
     '{change_old_row_idx}'),
    ('transaction_actor_id_prefix_idx',
     'CREATE INDEX transaction_actor_id_prefix_idx ON pgtrail.transaction ("left"(actor_id, 200)) WHERE actor_id IS NOT NULL',
     '{transaction_actor_idx}'),
    ('transaction_actor_name_prefix_idx',
     'CREATE INDEX transaction_actor_name_prefix_idx ON pgtrail.transaction ("left"(actor_name, 200)) WHERE actor_name IS NOT NULL',
     '{transaction_actor_name_idx}');

DROP INDEX pgtrail.change_txid_brin;

-- A CHECK constraint is parsed and planned again by every INSERT statement
-- (about 4 microseconds of each capture); op is only ever written by
-- pgtrail's own capture functions, and every change's op is sealed.
ALTER TABLE pgtrail.change DROP CONSTRAINT IF EXISTS change_op_check;

-- A small trail gets its indexes now.
DO $build$
DECLARE
    v_index record;
    v_old   text;
BEGIN
    IF (SELECT count(*) FROM (SELECT FROM pgtrail.change LIMIT 100001) AS s) > 100000 THEN
        RETURN;
    END IF;
    FOR v_index IN SELECT * FROM pgtrail.index_build ORDER BY name LOOP
        EXECUTE v_index.definition;
        FOREACH v_old IN ARRAY v_index.replaces LOOP
            EXECUTE format('DROP INDEX IF EXISTS pgtrail.%I', v_old);
        END LOOP;
    END LOOP;
    DELETE FROM pgtrail.index_build;
END
$build$;
