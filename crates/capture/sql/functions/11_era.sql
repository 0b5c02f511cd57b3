-- Eras (migration 0005): the clusters the trail has been written in, and
-- the trail's transaction numbers, era * 2^48 + txid_current(), which never
-- collide when the trail is restored into another cluster whose own
-- numbers start over.

-- This cluster's system identifier, or NULL when it may not be read.
CREATE OR REPLACE FUNCTION pgtrail._system_identifier()
RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RETURN (SELECT system_identifier FROM pg_control_system());
EXCEPTION WHEN insufficient_privilege THEN
    RETURN NULL;
END
$fn$;

-- The current era: the latest one, as long as it is this cluster's. When
-- the trail has moved to another cluster, opens the next era and generates
-- every capture function again with it compiled in. Two sessions opening it
-- at once take turns on an advisory lock; the second (whose snapshot may
-- not show the first's era yet) finds the number taken and goes on with it.
CREATE OR REPLACE FUNCTION pgtrail._era_now()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_sysid  bigint := pgtrail._system_identifier();
    v_latest pgtrail.era;
    v_era    integer;
BEGIN
    SELECT * INTO v_latest FROM pgtrail.era ORDER BY era DESC LIMIT 1;
    IF v_sysid IS NULL OR v_latest.system_identifier IS NOT DISTINCT FROM v_sysid THEN
        -- This cluster's, or clusters cannot be told apart: the era goes on.
        RETURN v_latest.era;
    END IF;
    PERFORM pg_advisory_xact_lock(8101176133498366318);
    SELECT * INTO v_latest FROM pgtrail.era ORDER BY era DESC LIMIT 1;
    IF v_latest.system_identifier = v_sysid THEN
        RETURN v_latest.era;
    END IF;
    INSERT INTO pgtrail.era (era, system_identifier, first_txid)
    VALUES (v_latest.era + 1, v_sysid, txid_current())
    ON CONFLICT (era) DO NOTHING
    RETURNING era INTO v_era;
    IF v_era IS NULL THEN
        -- Opened by a session this snapshot does not see, in this cluster.
        RETURN v_latest.era + 1;
    END IF;
    RAISE LOG 'pgtrail: the trail moved to cluster %: era % begins', v_sysid, v_era;
    PERFORM pgtrail._compile_all();
    RETURN v_era;
END
$fn$;

-- The latest era, which the capture functions are generated with (after
-- pgtrail._era_now() has opened this cluster's era if it was needed).
CREATE OR REPLACE FUNCTION pgtrail._era_latest()
RETURNS integer
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT max(era) FROM pgtrail.era
$fn$;

-- The trail's number for the current transaction (outside the capture
-- functions, which have the era compiled in).
CREATE OR REPLACE FUNCTION pgtrail._txid()
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT txid_current() + (pgtrail._era_now()::bigint << 48)
$fn$;

-- Called by a capture function when the session has not yet checked that
-- it runs in the cluster of the era compiled into the function (p_txid is
-- the number the function gave the transaction). Returns the transaction's
-- number in the current era, opening it if the trail was restored into
-- another cluster, and remembers the check in the session setting
-- pgtrail.cluster_era. It runs before the function records anything.
CREATE OR REPLACE FUNCTION pgtrail._check_cluster(p_txid bigint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_era integer := pgtrail._era_now();
BEGIN
    PERFORM set_config('pgtrail.cluster_era', v_era::text, false);
    RETURN (p_txid & 281474976710655) + (v_era::bigint << 48);
END
$fn$;
