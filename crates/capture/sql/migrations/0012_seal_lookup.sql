-- pgtrail migration 0012: finding the seal that holds a change without
-- reading every sealed change id.
--
-- Each row of pgtrail.seal_leaves holds up to 50,000 change ids, in id
-- order (a seal appends its changes in id order). Asking which seal holds
-- change 123 used to read (detoast) every row's id array: on a fully
-- sealed 10M-change trail, 200 arrays of 400 kB per question, which is
-- what a row page or a transaction page of `pgtrail serve` asks. The span
-- of a row's ids (first to last; least/greatest so that a row edited out
-- of order still gets a span rather than an error) is kept beside the ids,
-- computed by PostgreSQL on insert, and indexed: a lookup reads only the
-- rows whose span holds the id (one, or a few where a long transaction's
-- changes were sealed later than younger ones) and checks the id array of
-- those. Adding the column rewrites seal_leaves once (about 56 bytes per
-- sealed change); capture does not read or lock that table.
ALTER TABLE pgtrail.seal_leaves
    ADD COLUMN id_span int8range GENERATED ALWAYS AS (
        int8range(least(change_ids[1], change_ids[cardinality(change_ids)]),
                  greatest(change_ids[1], change_ids[cardinality(change_ids)]), '[]')) STORED;
CREATE INDEX seal_leaves_id_span_idx ON pgtrail.seal_leaves USING gist (id_span);
