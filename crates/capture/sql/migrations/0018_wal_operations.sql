-- pgtrail migration 0018: operating WAL mode's signed context messages.
--
-- 1. What `pgtrail follow` rejected persists, so that `pgtrail check`
--    reports it: per slot, how many context messages were ignored (not
--    signed for their transaction), how many of those someone acknowledged
--    (`pgtrail wal acknowledge`), and the last one's transaction, WAL
--    position, commit and reason. Written by pgtrail._follow_rejected
--    (80_wal.sql) in the transaction that writes the batch; commit_lsn (the
--    end of the last counted transaction) keeps a batch written again
--    after a crash from being counted twice.
CREATE TABLE pgtrail.wal_rejected (
    slot              text        PRIMARY KEY,
    rejected          bigint      NOT NULL DEFAULT 0,
    acknowledged      bigint      NOT NULL DEFAULT 0,
    last_txid         bigint,
    last_lsn          pg_lsn,
    commit_lsn        pg_lsn      NOT NULL,
    last_committed_at timestamptz,
    last_reason       text,
    updated_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    acknowledged_at   timestamptz
);

REVOKE ALL ON pgtrail.wal_rejected FROM PUBLIC;

COMMENT ON TABLE pgtrail.wal_rejected IS
    'Context messages pgtrail follow ignored (not signed for their transaction), per slot: counted, the last one described, and how many were acknowledged.';

-- 2. Keys replaced by `pgtrail wal rotate-key` (pgtrail.wal_rotate_key):
--    a message signed with one of them verifies only below retired_at, the
--    WAL position after which no transaction can still sign with it (NULL
--    while the rotation waits for the transactions that may have read it:
--    valid everywhere until then). Messages still in the slot keep their
--    context; one signed with a retired key after that position does not.
CREATE TABLE pgtrail.wal_retired_key (
    k_in        bytea       NOT NULL CHECK (octet_length(k_in) = 32),
    k_out       bytea       NOT NULL CHECK (octet_length(k_out) = 32),
    replaced_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    retired_at  pg_lsn,
    PRIMARY KEY (k_in, k_out)
);

REVOKE ALL ON pgtrail.wal_retired_key FROM PUBLIC;

COMMENT ON TABLE pgtrail.wal_retired_key IS
    'Keys of WAL mode''s context messages replaced by pgtrail wal rotate-key: valid for messages below retired_at (NULL: not yet retired). Readable by the owner only.';

-- 3. signed_from is a WAL position of this cluster: a dump restored on
--    another cluster carries it, where it means nothing (and could accept
--    unsigned messages). It is bound to the cluster's system identifier
--    (signed_on): the follower honours it only on the cluster that
--    recorded it, and elsewhere accepts no unsigned message. A slot that is
--    already past signed_from (or no slot at all) holds no unsigned message
--    to accept: then it is 0/0 everywhere.
ALTER TABLE pgtrail.wal_message_key ADD COLUMN signed_on bigint;

UPDATE pgtrail.wal_message_key
SET signed_on = (SELECT system_identifier FROM pg_control_system()),
    signed_from = CASE
        WHEN signed_from = '0/0'::pg_lsn THEN signed_from
        WHEN coalesce((SELECT s.confirmed_flush_lsn >= signed_from FROM pg_replication_slots AS s
                       WHERE s.slot_name = 'pgtrail_' || (SELECT oid::text FROM pg_database WHERE datname = current_database())),
                      true)
            THEN '0/0'::pg_lsn
        ELSE signed_from END;

COMMENT ON COLUMN pgtrail.wal_message_key.signed_on IS
    'The system identifier of the cluster whose WAL position signed_from is; on any other cluster every message must be signed.';
