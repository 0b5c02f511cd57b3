-- pgtrail migration 0003: what one actor did in a time window, without
-- reading everything else that happened in it; and pgtrail's own trigger
-- changes told from anyone else's by a table only pgtrail writes (last part).
--
-- pgtrail.actor_changes(actor, since, until) finds the actor's contexts by
-- their transaction's start (indexes on the actor and on started_at), then
-- their changes (an index on txid). Every change of a context happens
-- between its transaction's start and one hour later, except for the few
-- contexts listed in pgtrail.long_context, which capture adds as soon as one
-- of their changes falls outside that span (pgtrail._context_span(), whose
-- hour this migration repeats: it runs before the functions exist).

-- Contexts with a change outside [started_at, started_at + 1 hour]: long
-- transactions, baselines (stamped with the attach time) and clock steps.
CREATE TABLE pgtrail.long_context (
    txid bigint   NOT NULL,
    ctx  smallint NOT NULL,
    PRIMARY KEY (txid, ctx)
);

COMMENT ON TABLE pgtrail.long_context IS
    'Contexts with a change outside their transaction''s first hour; pgtrail.actor_changes reads them whatever their start.';

-- The contexts recorded before this migration, found in the trail itself.
INSERT INTO pgtrail.long_context (txid, ctx)
SELECT c.txid, c.ctx
FROM pgtrail.change AS c
JOIN pgtrail.transaction AS x ON x.txid = c.txid AND x.ctx = c.ctx
GROUP BY c.txid, c.ctx, x.started_at
HAVING min(c.changed_at) < x.started_at OR max(c.changed_at) > x.started_at + interval '1 hour';

-- A transaction's changes (pgtrail.actor_changes, pgtrail tx). On txid
-- alone: the smallest btree entry there is (a context is found by filtering
-- ctx), and deduplicated to a few bytes a change for bulk transactions.
CREATE INDEX change_txid_idx ON pgtrail.change (txid);
-- An actor's transactions in a time range: the actor's entries in
-- transaction_actor_idx (migration 0001) or transaction_actor_name_idx
-- (deduplicated: a few bytes per transaction), ANDed with the pages a BRIN
-- on the start time gives for the range (transactions are appended in
-- time order).
CREATE INDEX transaction_actor_name_idx ON pgtrail.transaction (actor_name) WHERE actor_name IS NOT NULL;
CREATE INDEX transaction_time_brin ON pgtrail.transaction USING brin (started_at);

-- The audited tables whose capture triggers pgtrail's own functions are
-- changing right now (a row exists only while attach, detach or auto-attach
-- drop and create them, within their transaction). The DDL watch reads it
-- to tell pgtrail's trigger changes from anyone else's: only pgtrail_owner
-- and the installer may write it, unlike the advisory lock used before.
CREATE TABLE pgtrail.managing (
    txid     bigint  NOT NULL,
    table_id integer NOT NULL
);
DROP FUNCTION IF EXISTS pgtrail._installing();  -- 0.2.0's test of the advisory lock
