-- pgtrail migration 0017: WAL-mode transactions whose changes came without
-- a signed context message.
--
-- The context trigger (80_wal.sql) emits a signed message before the first
-- change of every transaction on a WAL-mode table; a transaction-local mark
-- keeps it from emitting again. A role can set that mark itself before its
-- first write (SET LOCAL, set_config: settings are anyone's to set), and
-- then no message is emitted: its changes would reach the trail with no
-- context (database user, role and client unknown), which trigger mode
-- never allows. Plain SQL cannot keep a role from setting a setting, so the
-- follower notices instead: a change decoded, at or after signed_from,
-- before any message that verifies in its transaction was not preceded by
-- the trigger's message. The follower records each such transaction here,
-- in the transaction that writes its changes (once, whatever the restarts),
-- counts them in `pgtrail follow --format json` (unsigned_transactions),
-- and `pgtrail check` shows them.
CREATE TABLE pgtrail.wal_unsigned (
    -- The trail's txid of the transaction (pgtrail.changes.txid).
    txid         bigint      PRIMARY KEY,
    -- Its changes decoded before any verified context message.
    changes      integer     NOT NULL,
    committed_at timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

REVOKE ALL ON pgtrail.wal_unsigned FROM PUBLIC;

COMMENT ON TABLE pgtrail.wal_unsigned IS
    'WAL-mode transactions whose changes came before any signed context message (the context trigger kept from emitting): recorded by pgtrail follow, shown by pgtrail check.';
