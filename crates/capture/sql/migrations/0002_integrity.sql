-- pgtrail migration 0002: tamper evidence.
--
-- `pgtrail seal` appends the changes of finished transactions to a Merkle log
-- (RFC 6962) and signs its head with a key kept outside the database;
-- `pgtrail verify` recomputes the log from the trail. The leaf of a change
-- commits to each of its values through a salted hash, so `pgtrail erase`
-- can remove a value and keep every proof valid. The byte layout of leaves
-- is documented in the pgtrail-integrity crate.

-- The trail's name in signed checkpoints (the C2SP "origin" line).
INSERT INTO pgtrail.setting (name, value) VALUES ('origin', 'pgtrail/' || gen_random_uuid());

-- One row per seal: the signed head of the log after it (a checkpoint).
-- Seal n covers the changes of the transactions visible in its snapshot and
-- not in the snapshot of seal n - 1, in change id order.
CREATE TABLE pgtrail.seal (
    id          bigint      PRIMARY KEY CHECK (id > 0),
    sealed_at   timestamptz NOT NULL,
    sealed_by   text        NOT NULL DEFAULT session_user,
    snapshot    pg_snapshot NOT NULL,
    tree_size   bigint      NOT NULL CHECK (tree_size >= 0),
    root        bytea       NOT NULL,
    -- The roots of the perfect subtrees of the log (its compact frontier),
    -- so the next seal continues without reading the log again.
    frontier    bytea[]     NOT NULL,
    -- The checkpoint as signed: origin, size, root, extension lines.
    origin      text        NOT NULL,
    extensions  text[]      NOT NULL,
    key_name    text        NOT NULL,
    key_id      bigint      NOT NULL,
    signature   bytea       NOT NULL,
    -- The verifier key that signed, for convenience only: verify trusts a
    -- public key given to it (--public-key) over this one.
    public_key  text        NOT NULL
);

-- The leaves a seal appended, in log order, in chunks: change ids, the
-- 32-byte leaf hashes and the 16-byte seeds of the per-value salts.
CREATE TABLE pgtrail.seal_leaves (
    first_position bigint   PRIMARY KEY,
    seal_id        bigint   NOT NULL REFERENCES pgtrail.seal (id),
    change_ids     bigint[] NOT NULL,
    leaf_hashes    bytea    NOT NULL,
    seeds          bytea    NOT NULL
);
CREATE INDEX seal_leaves_seal_idx ON pgtrail.seal_leaves (seal_id);
-- Hashes and seeds are random and do not compress; compressing the ids costs
-- sealing more time (measured: a fifth of a 10M-change seal) than it saves.
ALTER TABLE pgtrail.seal_leaves
    ALTER COLUMN change_ids SET STORAGE EXTERNAL,
    ALTER COLUMN leaf_hashes SET STORAGE EXTERNAL,
    ALTER COLUMN seeds SET STORAGE EXTERNAL;

-- Erasures (`pgtrail erase`): who removed which values, when and why.
CREATE TABLE pgtrail.erasure (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    erased_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    db_user    text        NOT NULL DEFAULT session_user,
    table_id   integer     NOT NULL,
    pk         jsonb       NOT NULL,
    columns    text[],
    reason     text        NOT NULL,
    change_ids bigint[]    NOT NULL
);

-- What verify needs for a sealed change some of whose values were erased:
-- the commitment of each erased value, and the salt of each value kept (the
-- change's seed is destroyed, so an erased value cannot be guessed from its
-- commitment).
CREATE TABLE pgtrail.erased_value (
    change_id  bigint NOT NULL,
    field      text   NOT NULL,
    salt       bytea,
    commitment bytea,
    erasure_id bigint NOT NULL REFERENCES pgtrail.erasure (id),
    PRIMARY KEY (change_id, field),
    CHECK ((salt IS NULL) <> (commitment IS NULL))
);

-- When `pgtrail apply --baseline` recorded the rows a table already had
-- (reconcile and time travel then cover rows older than the install).
ALTER TABLE pgtrail.audited_table ADD COLUMN baseline_at timestamptz;
