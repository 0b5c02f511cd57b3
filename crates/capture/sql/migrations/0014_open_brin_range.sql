-- pgtrail migration 0014: the block range the trail is filling is left
-- unsummarized in its BRIN indexes (pgtrail.transaction's started_at, each
-- partition's changed_at), as pgtrail._open_brin_range (45_partitions.sql)
-- leaves it in the partitions made from now on: CREATE INDEX summarized it,
-- and while that summary exists every captured statement widens it (about
-- 11,000 instructions per BRIN). No table is rewritten or scanned; the
-- lock taken (SHARE UPDATE EXCLUSIVE, on the trail's tables only) does not
-- block writes.
DO $open_brin$
DECLARE
    v_index record;
BEGIN
    FOR v_index IN
        SELECT i.indexrelid::regclass AS index, i.indrelid::regclass AS tbl
        FROM pg_index AS i
        JOIN pg_class AS c ON c.oid = i.indexrelid
        JOIN pg_am AS a ON a.oid = c.relam
        JOIN pg_class AS t ON t.oid = i.indrelid
        WHERE t.relnamespace = 'pgtrail'::regnamespace AND a.amname = 'brin'
          AND c.relkind = 'i' AND t.relkind = 'r'
    LOOP
        PERFORM brin_desummarize_range(
            v_index.index, greatest(pg_relation_size(v_index.tbl) / current_setting('block_size')::bigint - 1, 0));
    END LOOP;
END
$open_brin$;
