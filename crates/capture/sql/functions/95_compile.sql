-- Last step of every install and upgrade: the generated functions
-- (20_capture.sql, 15_context_record.sql) are generated again by this
-- version, and the capture triggers of tables attached by an older version
-- are pointed at their table's generated function, or completed with the
-- BEFORE TRUNCATE trigger (within pgtrail.managing, so no capture gap is
-- recorded), after their schema changes are recorded (38_lineage.sql). The
-- generic capture functions of pgtrail
-- 0.3.0 and earlier go once no trigger calls them.
DO $compile$
DECLARE
    v_table    record;
    v_function regprocedure;
BEGIN
    PERFORM pgtrail._compile_record_transaction();
    FOR v_table IN
        SELECT a.id, pgtrail._audited_rel(a.id) AS rel
        FROM pgtrail.audited_table AS a
        WHERE a.detached_at IS NULL
        ORDER BY a.id
    LOOP
        CONTINUE WHEN v_table.rel IS NULL;
        -- Columns as this version tracks them (38_lineage.sql); changes made
        -- without the DDL watch are recorded now.
        PERFORM pgtrail._follow_table(v_table.id, v_table.rel);
        IF EXISTS (SELECT FROM pg_trigger AS t
                   WHERE t.tgrelid = v_table.rel AND t.tgname = ANY (pgtrail.trigger_names())
                     AND t.tgfoid IS DISTINCT FROM to_regprocedure(pgtrail._capture_function(v_table.id) || '()'))
           -- Attached by a version without the BEFORE TRUNCATE trigger.
           OR (EXISTS (SELECT FROM pg_trigger AS t
                       WHERE t.tgrelid = v_table.rel AND t.tgname = 'pgtrail_capture_insert')
               AND NOT EXISTS (SELECT FROM pg_trigger AS t
                               WHERE t.tgrelid = v_table.rel AND t.tgname = 'pgtrail_capture_before_truncate')) THEN
            PERFORM pgtrail._create_triggers(v_table.rel, v_table.id);
        ELSE
            PERFORM pgtrail._compile_capture(v_table.id, v_table.rel);
        END IF;
    END LOOP;
    FOR v_function IN
        SELECT p.oid::regprocedure
        FROM pg_proc AS p
        WHERE p.pronamespace = 'pgtrail'::regnamespace
          AND p.proname IN ('capture_rows', 'capture_update', 'capture_truncate')
          AND NOT EXISTS (SELECT FROM pg_trigger AS t WHERE t.tgfoid = p.oid)
    LOOP
        EXECUTE format('DROP FUNCTION %s', v_function);
    END LOOP;
END
$compile$;
