-- pgtrail migration 0013: the WAL follower computes the trail rows itself
-- and writes them by binary COPY (pgtrail._follow_begin and
-- pgtrail._follow_write_context, 80_wal.sql); the SQL
-- that computed them in the database, one transaction or one batch at a
-- time, is no longer called by anything.
DROP FUNCTION IF EXISTS pgtrail._follow_write_batch(text, jsonb);
DROP FUNCTION IF EXISTS pgtrail._follow_write(text, pg_lsn, bigint, timestamptz, jsonb, jsonb);
DROP FUNCTION IF EXISTS pgtrail._follow_row(pgtrail.audited_table, text, jsonb, jsonb, bytea);
DROP FUNCTION IF EXISTS pgtrail._full_xid(bigint);
