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
       x.client_addr
FROM pgtrail.change AS c
JOIN pgtrail.audited_table AS t ON t.id = c.table_id
LEFT JOIN pgtrail.transaction AS x ON x.txid = c.txid AND x.ctx = c.ctx;

COMMENT ON VIEW pgtrail.changes IS
    'One row per captured row change: what changed (op, pk, old_values, new_values, changed_fields), when, in which transaction, and who and why.';
