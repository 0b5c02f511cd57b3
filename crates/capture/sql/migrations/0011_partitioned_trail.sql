-- pgtrail migration 0011: the trail partitioned by time, archives and legal
-- holds (retention: `pgtrail maintain`, `pgtrail archive`, `pgtrail hold`).
--
-- pgtrail.change becomes a table partitioned by range of changed_at. The
-- existing table is not rewritten: it is renamed pgtrail.change_history and
-- attached as the partition of everything before tomorrow (UTC), so the
-- writes of the rest of today still land in it. Its bound is first added as
-- a NOT VALID CHECK constraint and validated, which is one read of the table
-- and no rewrite; ATTACH then trusts the constraint and does not scan again.
-- The new parent takes over the identity (its sequence goes on from the old
-- one) and the indexes: CREATE INDEX on the parent adopts the equal indexes
-- the old table already has instead of building them. The time partitions
-- after it are made by pgtrail.make_partitions (functions/45_partitions.sql,
-- called by `pgtrail apply` and `pgtrail maintain` with the config's grain);
-- pgtrail.change_default catches any change outside them (`pgtrail check`
-- reports such rows).
--
-- Change ids stay unique: they come from one identity sequence, and each
-- partition has its own primary key on id. The parent has none: a primary
-- key on a partitioned table must include changed_at, and building that
-- index over the existing history would lock capture out for as long as it
-- takes. Nothing refers to change ids with a foreign key.

DO $partition$
DECLARE
    v_last    bigint;
    v_bound   timestamptz := date_trunc('day', clock_timestamp(), 'UTC') + interval '1 day';
    v_index   record;
    v_pending boolean := EXISTS (SELECT FROM pgtrail.index_build);
    v_only    text;
BEGIN
    v_last := coalesce(pg_sequence_last_value(pg_get_serial_sequence('pgtrail.change', 'id')::regclass), 0);
    ALTER TABLE pgtrail.change RENAME TO change_history;
    FOR v_index IN
        SELECT i.relname FROM pg_index AS x JOIN pg_class AS i ON i.oid = x.indexrelid
        WHERE x.indrelid = 'pgtrail.change_history'::regclass AND i.relname LIKE 'change\_%'
    LOOP
        EXECUTE format('ALTER INDEX pgtrail.%I RENAME TO %I', v_index.relname,
                       'change_history_' || substr(v_index.relname, 8));
    END LOOP;
    -- Indexes an earlier upgrade left to build concurrently are built on the
    -- history partition (CREATE INDEX CONCURRENTLY does not work on a
    -- partitioned table); the partitions made from now on get them at once.
    UPDATE pgtrail.index_build
    SET definition = regexp_replace(definition, '^CREATE INDEX change_(\S+) ON pgtrail\.change ',
                                    'CREATE INDEX change_history_\1 ON pgtrail.change_history '),
        name = 'change_history_' || substr(name, 8),
        replaces = ARRAY(SELECT 'change_history_' || substr(r, 8) FROM unnest(replaces) AS r)
    WHERE definition LIKE '% ON pgtrail.change %';

    ALTER TABLE pgtrail.change_history ALTER COLUMN id DROP IDENTITY;
    -- Row triggers of the parent are cloned onto every partition (40_append_only.sql).
    DROP TRIGGER IF EXISTS pgtrail_append_only ON pgtrail.change_history;

    CREATE TABLE pgtrail.change (LIKE pgtrail.change_history INCLUDING DEFAULTS INCLUDING STORAGE)
        PARTITION BY RANGE (changed_at);
    EXECUTE format('ALTER TABLE pgtrail.change ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (CACHE 32 START WITH %s)',
                   v_last + 1);
    COMMENT ON TABLE pgtrail.change IS
        'One row per captured row change, partitioned by changed_at (pgtrail maintain makes, archives and drops partitions).';

    EXECUTE format('ALTER TABLE pgtrail.change_history ADD CONSTRAINT change_history_bound '
                   'CHECK (changed_at IS NOT NULL AND changed_at < %L) NOT VALID', v_bound);
    ALTER TABLE pgtrail.change_history VALIDATE CONSTRAINT change_history_bound;
    EXECUTE format('ALTER TABLE pgtrail.change ATTACH PARTITION pgtrail.change_history '
                   'FOR VALUES FROM (MINVALUE) TO (%L)', v_bound);
    ALTER TABLE pgtrail.change_history DROP CONSTRAINT change_history_bound;

    -- With index builds pending, the parent's indexes are made on the parent
    -- only (the history partition keeps the indexes it has).
    v_only := CASE WHEN v_pending THEN 'ONLY ' ELSE '' END;
    EXECUTE format('CREATE INDEX change_key_idx ON %spgtrail.change (table_id, jsonb_hash_extended(pk, 0))', v_only);
    EXECUTE format('CREATE INDEX change_old_key_idx ON %spgtrail.change (table_id, jsonb_hash_extended(old_pk, 0)) WHERE old_pk IS NOT NULL', v_only);
    EXECUTE format('CREATE INDEX change_txid_idx ON %spgtrail.change (txid)', v_only);
    EXECUTE format('CREATE INDEX change_time_brin ON %spgtrail.change USING brin (changed_at)', v_only);

    CREATE TABLE pgtrail.change_default PARTITION OF pgtrail.change DEFAULT;
    ALTER TABLE pgtrail.change_default ADD PRIMARY KEY (id);
END
$partition$;

-- Partitions written to an archive and then dropped: what they held, where
-- the file is, and the proof that covers them. Answers stop at the horizon
-- these rows draw ("history before ... is archived in ...").
CREATE TABLE pgtrail.archive (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partition    text        NOT NULL,
    -- The partition's bounds (from NULL: everything before until_at).
    from_at      timestamptz,
    until_at     timestamptz NOT NULL,
    first_id     bigint,
    last_id      bigint,
    first_at     timestamptz,
    last_at      timestamptz,
    row_count    bigint      NOT NULL,
    -- The file's name in the archive directory, and its SHA-256 (hex).
    file         text        NOT NULL,
    sha256       text        NOT NULL,
    -- The seal whose signed checkpoint covers every change of the file.
    seal_id      bigint      NOT NULL,
    archived_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    archived_by  text        NOT NULL DEFAULT session_user,
    pgtrail_version text     NOT NULL,
    UNIQUE (partition)
);

COMMENT ON TABLE pgtrail.archive IS
    'Partitions of the trail written to Parquet archives, verified, then dropped (pgtrail archive); verify --archive checks them.';

-- Legal holds: ranges of changes that must stay in the database (no archive
-- and no drop of a partition that holds any of them) until released.
CREATE TABLE pgtrail.hold (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The table held (schema-qualified name as recorded in audited_table),
    -- or NULL for every table.
    table_schema   text,
    table_name     text,
    -- One row (a key as recorded in pk), or NULL for the whole table.
    pk             jsonb,
    from_at        timestamptz,
    until_at       timestamptz,
    reason         text        NOT NULL CHECK (reason <> ''),
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    created_by     text        NOT NULL DEFAULT session_user,
    released_at    timestamptz,
    released_by    text,
    release_reason text,
    CHECK (from_at IS NULL OR until_at IS NULL OR from_at < until_at),
    CHECK ((table_schema IS NULL) = (table_name IS NULL)),
    CHECK (pk IS NULL OR table_name IS NOT NULL)
);

COMMENT ON TABLE pgtrail.hold IS
    'Legal holds (pgtrail hold add): the changes they match are never archived or dropped while the hold is not released.';
