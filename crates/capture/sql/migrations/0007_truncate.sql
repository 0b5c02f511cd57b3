-- pgtrail migration 0007: what a TRUNCATE of an audited table records, and
-- whether the trail holds every row the table ever had.

-- truncate: 'event' (the TRUNCATE change only) or 'capture' (every row it
-- removes as a DELETE change before it, up to truncate_row_limit rows; see
-- functions/25_truncate.sql). complete_since_attach: the trail holds every
-- row the table had when capture began (attached_at): it was empty then, or
-- its rows were recorded then, so every row it had since has a recorded
-- INSERT and time travel can go forwards from the start (60_queries.sql).
ALTER TABLE pgtrail.audited_table
    ADD COLUMN truncate text NOT NULL DEFAULT 'event',
    ADD COLUMN truncate_row_limit bigint,
    ADD COLUMN complete_since_attach boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT audited_table_truncate_check CHECK (truncate IN ('event', 'capture')),
    ADD CONSTRAINT audited_table_truncate_row_limit_check
        CHECK (CASE truncate WHEN 'capture' THEN truncate_row_limit > 0 ELSE truncate_row_limit IS NULL END);

-- pgtrail.attach takes the two settings as new arguments (30_attach.sql):
-- the old signature goes, so that calls are never ambiguous.
DROP FUNCTION IF EXISTS pgtrail.attach(regclass, text[], text, text, text[], text[]);
