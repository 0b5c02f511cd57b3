-- pgtrail migration 0005: transactions numbered so that they never collide.
--
-- The trail names a transaction by txid_current(), which counts within one
-- cluster only: restored into another cluster (pg_dump and pg_restore, how
-- people move servers), the database's new transactions reuse numbers the
-- trail already holds. So the trail counts clusters too. Each cluster the
-- trail has been written in is an era, known by the cluster's system
-- identifier; a transaction of era e is numbered e * 2^48 + txid_current()
-- (era 0, the cluster pgtrail was installed in, keeps PostgreSQL's own
-- numbers). The latest era is the current one: a write in a cluster whose
-- identifier is not the latest era's opens the next era. A promoted replica
-- keeps its primary's identifier and numbers; pg_upgrade gives a new
-- identifier and so a new era (needlessly, as it keeps the numbers, but
-- harmlessly).

CREATE TABLE pgtrail.era (
    era               integer     PRIMARY KEY CHECK (era >= 0 AND era < 32768),
    -- NULL when pg_control_system() may not be read (then eras cannot be told apart).
    system_identifier bigint,
    began_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- txid_current() of the transaction that opened the era.
    first_txid        bigint      NOT NULL
);

COMMENT ON TABLE pgtrail.era IS
    'The clusters the trail was written in; a transaction of era e is numbered e * 2^48 + txid_current().';

DO $era0$
DECLARE
    v_sysid bigint;
BEGIN
    BEGIN
        v_sysid := (SELECT system_identifier FROM pg_control_system());
    EXCEPTION WHEN insufficient_privilege THEN
        v_sysid := NULL;
    END;
    INSERT INTO pgtrail.era (era, system_identifier, first_txid) VALUES (0, v_sysid, txid_current());
END
$era0$;

-- The era a seal was taken in: its snapshot is a snapshot of that cluster.
ALTER TABLE pgtrail.seal ADD COLUMN era integer NOT NULL DEFAULT 0;
