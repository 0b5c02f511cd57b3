-- pgtrail.changes: the documented query surface, one row per captured row
-- change. Its columns are a public contract (see DESIGN.md); add, never rename.

CREATE OR REPLACE VIEW pgtrail.changes AS
SELECT c.id,
       c.txid,
       c.changed_at,
       t.table_schema,
       t.table_name,
       CASE c.op WHEN 'I' THEN 'INSERT' WHEN 'U' THEN 'UPDATE' WHEN 'D' THEN 'DELETE' ELSE 'TRUNCATE' END AS op,
       c.pk,
       c.old_values,
       c.new_values,
       -- Stored for full images; with diff images the changed fields are
       -- exactly the keys of new_values (saving ~35 bytes a change).
       CASE WHEN c.op = 'U' THEN coalesce(c.changed_fields,
           ARRAY(SELECT k FROM jsonb_object_keys(c.new_values) AS k ORDER BY k)) END AS changed_fields,
       x.actor_id,
       x.actor_name,
       x.actor_type,
       x.reason,
       x.context,
       x.db_user,
       x.application_name,
       x.client_addr,
       -- The transaction's start: the now() that DEFAULT now() columns hold.
       x.started_at AS tx_started_at
FROM pgtrail.change AS c
JOIN pgtrail.audited_table AS t ON t.id = c.table_id
LEFT JOIN pgtrail.transaction AS x ON x.txid = c.txid AND x.ctx = c.ctx;

COMMENT ON VIEW pgtrail.changes IS
    'One row per captured row change: what changed (op, pk, old_values, new_values, changed_fields), when, in which transaction, and who and why.';

-- What one actor did from `since` (included) to `until` (excluded): the rows
-- of pgtrail.changes whose actor_id or actor_name is `actor`. Unlike a filter
-- on the view, it reads only that actor's contexts whose transaction began
-- in the window or up to _context_span() before it, plus the rare contexts
-- listed in pgtrail.long_context, and then only those contexts' changes: its
-- cost follows what the actor did, not what everybody did in the window.
-- One generic plan per session (the window's bounds do not change it). Runs
-- as the owner, like the other query functions; pgtrail_reader may call it.
CREATE OR REPLACE FUNCTION pgtrail.actor_changes(actor text, since timestamptz, until timestamptz)
RETURNS SETOF pgtrail.changes
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $fn$
BEGIN
    RETURN QUERY
    SELECT v.*
    FROM pgtrail.changes AS v
    WHERE v.id IN (
        SELECT c.id
        -- (The actors' indexes hold the first 200 characters of a name or id.)
        FROM (SELECT x.txid, x.ctx FROM pgtrail.transaction AS x
              WHERE left(x.actor_id, 200) = left(actor_changes.actor, 200) AND x.actor_id = actor_changes.actor
                AND x.started_at >= actor_changes.since - pgtrail._context_span()
                AND x.started_at < actor_changes.until
              UNION
              SELECT x.txid, x.ctx FROM pgtrail.transaction AS x
              WHERE left(x.actor_name, 200) = left(actor_changes.actor, 200) AND x.actor_name = actor_changes.actor
                AND x.started_at >= actor_changes.since - pgtrail._context_span()
                AND x.started_at < actor_changes.until
              UNION
              -- One primary-key probe per long context (OFFSET 0 keeps it a
              -- probe rather than a scan of all the actor's transactions).
              SELECT l.txid, l.ctx FROM pgtrail.long_context AS l
              WHERE EXISTS (SELECT FROM pgtrail.transaction AS x
                            WHERE x.txid = l.txid AND x.ctx = l.ctx
                              AND (x.actor_id = actor_changes.actor OR x.actor_name = actor_changes.actor)
                            OFFSET 0)) AS k
        -- Each context's changes through change_txid_idx; the time filter
        -- stays outside (OFFSET 0): through the BRIN on changed_at it would
        -- cost more than the few rows it removes.
        CROSS JOIN LATERAL (SELECT c.id, c.changed_at FROM pgtrail.change AS c
                            WHERE c.txid = k.txid AND c.ctx = k.ctx OFFSET 0) AS c
        WHERE c.changed_at >= actor_changes.since AND c.changed_at < actor_changes.until);
END
$fn$;

COMMENT ON FUNCTION pgtrail.actor_changes(text, timestamptz, timestamptz) IS
    'The rows of pgtrail.changes made by one actor (actor_id or actor_name) from since (included) to until (excluded), read through that actor''s contexts.';
