-- Append-only: nobody, through normal statements, edits or removes what the
-- trail recorded. Privileges already keep application roles out; these guards
-- stop the owner and superusers too (short of dropping the guard, which is DDL
-- and which the integrity checks of `pgtrail verify` are there to catch).

CREATE OR REPLACE FUNCTION pgtrail._refuse_change()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    -- `pgtrail erase` replaces values (pgtrail.change) and destroys the
    -- seeds of their salts (pgtrail.seal_leaves; a later erasure of the same
    -- change turns kept salts into commitments; an archive file written again
    -- without the values gets its new name and hash in pgtrail.archive), in
    -- a transaction it marks with pgtrail.erasing; nothing else is ever updated. (A superuser can
    -- set the mark too, as they can drop this guard: what they change is
    -- what `pgtrail verify` detects.)
    -- (The trail's partitions fire the trigger under their own names.)
    IF TG_OP = 'UPDATE' AND current_setting('pgtrail.erasing', true) = txid_current()::text
       AND (TG_TABLE_NAME IN ('change', 'seal_leaves', 'erased_value', 'archive')
            OR EXISTS (SELECT FROM pg_inherits
                       WHERE inhrelid = TG_RELID AND inhparent = 'pgtrail.change'::regclass)) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'pgtrail: % on %.% is not allowed: the audit trail is append-only',
        TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'PGTR2',
              HINT = 'Records are never edited or deleted; retention and erasure have their own pgtrail commands.';
END
$fn$;

-- CREATE OR REPLACE TRIGGER needs PostgreSQL 14; this works on 13 too.
DO $guards$
DECLARE
    v_table text;
BEGIN
    FOREACH v_table IN ARRAY ARRAY['change', 'transaction', 'long_context', 'ddl_event', 'seal', 'seal_leaves', 'erasure', 'erased_value', 'archive'] LOOP
        IF NOT EXISTS (SELECT FROM pg_trigger
                       WHERE tgrelid = format('pgtrail.%I', v_table)::regclass
                         AND tgname = 'pgtrail_append_only') THEN
            EXECUTE format('CREATE TRIGGER pgtrail_append_only BEFORE UPDATE OR DELETE ON pgtrail.%I '
                           'FOR EACH ROW EXECUTE FUNCTION pgtrail._refuse_change()', v_table);
        END IF;
        IF NOT EXISTS (SELECT FROM pg_trigger
                       WHERE tgrelid = format('pgtrail.%I', v_table)::regclass
                         AND tgname = 'pgtrail_append_only_truncate') THEN
            EXECUTE format('CREATE TRIGGER pgtrail_append_only_truncate BEFORE TRUNCATE ON pgtrail.%I '
                           'FOR EACH STATEMENT EXECUTE FUNCTION pgtrail._refuse_change()', v_table);
        END IF;
    END LOOP;
END
$guards$;
