-- pgtrail migration 0008: capture never fails on an index of the trail.
--
-- The btree indexes of pgtrail 0.3.0 and earlier on a row's key
-- (change_row_idx, change_old_row_idx) and on the actors
-- (transaction_actor_idx, transaction_actor_name_idx) hold the values
-- themselves, and a btree entry may not exceed 2,704 bytes: with them, an
-- INSERT of a row over that size into a table without a key (its whole row
-- is its key), or any write after set_context with an actor of a few
-- kilobytes, fails. Migration 0004 replaced them by indexes on a hash of
-- the key and on the first 200 characters of an actor, but on a trail of
-- more than 100,000 changes it left both to `pgtrail apply`, which builds
-- the new indexes concurrently after its transaction: until it has, and for
-- good when the install went through `pgtrail sql`, writes could fail. The
-- old indexes go now, in the upgrade's transaction (dropping an index takes
-- no time): until the new ones are built, queries by key and by actor read
-- the trail without an index (slower, the same answers), and no write
-- fails. `pgtrail check` lists the indexes still to build.
DROP INDEX IF EXISTS pgtrail.change_row_idx;
DROP INDEX IF EXISTS pgtrail.change_old_row_idx;
DROP INDEX IF EXISTS pgtrail.transaction_actor_idx;
DROP INDEX IF EXISTS pgtrail.transaction_actor_name_idx;
