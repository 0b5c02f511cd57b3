-- pgtrail migration 0016: WAL mode's context messages are signed.
--
-- Anyone may call pg_logical_emit_message, so a role that writes an audited
-- table could emit a 'pgtrail' message of its own claiming another actor,
-- database user or client. pgtrail._wal_emit (80_wal.sql) now signs each
-- message with a key only the pgtrail owner reads, bound to the
-- transaction's id, and `pgtrail follow` ignores (and warns about) a
-- message whose signature does not verify.
--
-- One row: two independent 32-byte keys (each the sha256 of three
-- gen_random_uuid(), which come from the server's strong random source;
-- no pgcrypto), and signed_from: the WAL position from which every
-- message is signed. A message before it may be unsigned: it was written
-- by pgtrail 0.8.0 before this upgrade and may still be in the slot. An
-- installation without WAL-mode tables has no such message to accept, so
-- there it is 0/0: no unsigned message is ever accepted.
CREATE TABLE pgtrail.wal_message_key (
    only_row    boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    k_in        bytea   NOT NULL CHECK (octet_length(k_in) = 32),
    k_out       bytea   NOT NULL CHECK (octet_length(k_out) = 32),
    signed_from pg_lsn  NOT NULL
);

REVOKE ALL ON pgtrail.wal_message_key FROM PUBLIC;

INSERT INTO pgtrail.wal_message_key (k_in, k_out, signed_from)
SELECT sha256(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid())),
       sha256(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid())),
       CASE WHEN EXISTS (SELECT FROM pgtrail.audited_table WHERE capture_mode = 'wal')
            THEN pg_current_wal_insert_lsn() ELSE '0/0'::pg_lsn END;

COMMENT ON TABLE pgtrail.wal_message_key IS
    'The key that signs WAL mode''s context messages (pgtrail._wal_emit), and the WAL position from which every message is signed. Readable by the owner only.';
