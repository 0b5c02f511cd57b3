-- pgtrail migration 0010: WAL capture mode (`[capture] mode = "wal"`).
--
-- A table in WAL mode has no capture triggers: its changes reach the trail
-- through logical decoding (the publication pgtrail and a logical
-- replication slot, read by `pgtrail follow`; see functions/80_wal.sql).

-- How the table is captured: 'trigger' (capture triggers, in the writing
-- transaction) or 'wal' (logical decoding, written by `pgtrail follow`).
-- replica_identity_before: the table's replica identity (pg_class
-- .relreplident) before WAL mode set it to FULL, restored when the table
-- leaves WAL mode; NULL when pgtrail did not change it.
ALTER TABLE pgtrail.audited_table
    ADD COLUMN capture_mode text NOT NULL DEFAULT 'trigger',
    ADD COLUMN replica_identity_before "char",
    ADD CONSTRAINT audited_table_capture_mode_check CHECK (capture_mode IN ('trigger', 'wal'));

-- Where `pgtrail follow` is in the slot: the end LSN of the last decoded
-- transaction whose changes are in the trail. Written in the same
-- transaction as those changes, so that a follower that dies, or a second
-- one, never writes a transaction twice; the slot is advanced to it only
-- after that transaction commits.
CREATE TABLE pgtrail.follow_position (
    slot       text        PRIMARY KEY,
    lsn        pg_lsn      NOT NULL,
    -- The trail's number of that transaction, and when it committed.
    txid       bigint,
    committed_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

COMMENT ON TABLE pgtrail.follow_position IS
    'Where pgtrail follow is in the logical replication slot: the end LSN of the last transaction written to the trail.';

-- pgtrail.attach takes the capture mode as a new argument (30_attach.sql).
DROP FUNCTION IF EXISTS pgtrail.attach(regclass, text[], text, text, text[], text[], text, bigint);
