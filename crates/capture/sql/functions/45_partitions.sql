-- The trail's time partitions (migration 0011): which there are, and making
-- the next ones. Partitions are named change_pYYYYMMDD after their lower
-- bound (UTC); change_history holds what the trail had before it was
-- partitioned and change_default anything outside every partition. Bounds
-- are whole days, weeks (from Monday) or months in UTC, whatever the
-- session's time zone.

-- Every partition of pgtrail.change with its bounds (NULL lower bound:
-- from the beginning; the default partition has neither).
CREATE OR REPLACE FUNCTION pgtrail.partitions()
RETURNS TABLE (name text, from_at timestamptz, until_at timestamptz, is_default boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT c.relname::text,
           CASE WHEN b.m[1] = 'MINVALUE' THEN NULL ELSE trim(b.m[1], '''')::timestamptz END,
           CASE WHEN b.m[2] = 'MAXVALUE' THEN NULL ELSE trim(b.m[2], '''')::timestamptz END,
           pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'
    FROM pg_inherits AS i
    JOIN pg_class AS c ON c.oid = i.inhrelid
    LEFT JOIN LATERAL (SELECT regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                           '^FOR VALUES FROM \((.*)\) TO \((.*)\)$') AS m) AS b ON true
    WHERE i.inhparent = 'pgtrail.change'::regclass
    ORDER BY 3 NULLS LAST, 2 NULLS FIRST
$fn$;

COMMENT ON FUNCTION pgtrail.partitions() IS
    'The partitions of pgtrail.change and their bounds (NULL from_at: from the beginning).';

-- The start of the grain period after the one holding `at` (UTC).
CREATE OR REPLACE FUNCTION pgtrail._grain_next(p_at timestamptz, p_grain text)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT (date_trunc(p_grain, p_at AT TIME ZONE 'UTC') + ('1 ' || p_grain)::interval) AT TIME ZONE 'UTC'
$fn$;

-- Leaves the block range that table p_table is filling unsummarized in
-- each of its BRIN indexes. CREATE INDEX summarizes every range, the one
-- being filled too (for an empty table, range 0 as empty); while that
-- summary exists, every insert into the range widens it (the trail's times
-- only grow), about 8,600 instructions per BRIN and statement, until the
-- range's 128 pages are full. A range without a summary costs an insert a
-- lookup and a scan only its pages (BRIN scans read unsummarized ranges
-- whole); VACUUM summarizes it once it is full, as it does every later
-- range (bench/RESULTS.md, 0.7.0). Takes SHARE UPDATE EXCLUSIVE on p_table, which writes do not wait on.
CREATE OR REPLACE FUNCTION pgtrail._open_brin_range(p_table regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_index regclass;
BEGIN
    FOR v_index IN
        SELECT i.indexrelid::regclass
        FROM pg_index AS i
        JOIN pg_class AS c ON c.oid = i.indexrelid
        JOIN pg_am AS a ON a.oid = c.relam
        WHERE i.indrelid = p_table AND a.amname = 'brin' AND c.relkind = 'i'
    LOOP
        PERFORM brin_desummarize_range(
            v_index, greatest(pg_relation_size(p_table) / current_setting('block_size')::bigint - 1, 0));
    END LOOP;
END
$fn$;

-- Makes the partitions that cover from the end of the last one to the end
-- of `premake` grain periods after the current one; returns their names.
-- The first one may be shorter than a period (it starts where the last one
-- ended). Runs as the trail's owner, so the partitions are the owner's.
CREATE OR REPLACE FUNCTION pgtrail.make_partitions(p_grain text, p_premake integer)
RETURNS SETOF text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_from   timestamptz;
    v_until  timestamptz;
    v_target timestamptz;
    v_name   text;
BEGIN
    IF p_grain IS NULL OR p_grain NOT IN ('day', 'week', 'month') THEN
        RAISE EXCEPTION 'pgtrail.make_partitions: grain must be day, week or month, not %', p_grain
            USING ERRCODE = '22023';
    END IF;
    IF p_premake IS NULL OR p_premake < 0 THEN
        RAISE EXCEPTION 'pgtrail.make_partitions: premake must be 0 or more, not %', p_premake
            USING ERRCODE = '22023';
    END IF;
    -- One maker at a time ("pgtrail-parts").
    PERFORM pg_advisory_xact_lock(8102654963425194867);
    v_target := pgtrail._grain_next(clock_timestamp(), p_grain);
    FOR i IN 1 .. p_premake LOOP
        v_target := pgtrail._grain_next(v_target, p_grain);
    END LOOP;
    v_from := (SELECT max(p.until_at) FROM pgtrail.partitions() AS p);
    IF v_from IS NULL THEN
        v_from := date_trunc(p_grain, clock_timestamp() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    END IF;
    WHILE v_from < v_target LOOP
        v_until := pgtrail._grain_next(v_from, p_grain);
        v_name := 'change_p' || to_char(v_from AT TIME ZONE 'UTC', 'YYYYMMDD');
        IF to_regclass(format('pgtrail.%I', v_name)) IS NOT NULL THEN
            v_name := v_name || to_char(v_from AT TIME ZONE 'UTC', '"t"HH24MISS');
        END IF;
        EXECUTE format('CREATE TABLE pgtrail.%I PARTITION OF pgtrail.change FOR VALUES FROM (%L) TO (%L)',
                       v_name, v_from, v_until);
        EXECUTE format('ALTER TABLE pgtrail.%I ADD PRIMARY KEY (id)', v_name);
        PERFORM pgtrail._open_brin_range(format('pgtrail.%I', v_name)::regclass);
        PERFORM pgtrail._guard_partitions();
        RETURN NEXT v_name;
        v_from := v_until;
    END LOOP;
END
$fn$;

COMMENT ON FUNCTION pgtrail.make_partitions(text, integer) IS
    'Makes the trail''s partitions up to premake grain periods (day, week, month) after the current one; returns their names.';

-- TRUNCATE triggers are not inherited: every partition gets its own guard.
CREATE OR REPLACE FUNCTION pgtrail._guard_partitions()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_part text;
BEGIN
    FOR v_part IN
        SELECT p.name FROM pgtrail.partitions() AS p
        WHERE NOT EXISTS (SELECT FROM pg_trigger AS t
                          WHERE t.tgrelid = format('pgtrail.%I', p.name)::regclass
                            AND t.tgname = 'pgtrail_append_only_truncate')
    LOOP
        EXECUTE format('CREATE TRIGGER pgtrail_append_only_truncate BEFORE TRUNCATE ON pgtrail.%I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION pgtrail._refuse_change()', v_part);
    END LOOP;
END
$fn$;

SELECT pgtrail._guard_partitions();

REVOKE ALL ON FUNCTION pgtrail.make_partitions(text, integer) FROM PUBLIC;
