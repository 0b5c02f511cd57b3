-- pgtrail migration 0006: column lineage.
--
-- The trail records values under the names columns had when they changed.
-- After RENAME COLUMN, DROP COLUMN, ADD COLUMN or ALTER COLUMN ... TYPE the
-- queries must still read them right: the DDL watch records each such change
-- of an audited table here (in the order of the changes: ids come from the
-- same sequence, times from the same clock), and the queries translate
-- recorded names along it (38_lineage.sql).

-- The columns of each audited table as pgtrail last saw them:
-- [{"n": attnum, "name": ..., "type": ...}], in attnum order. NULL until
-- first seen (the install fills it in).
ALTER TABLE pgtrail.audited_table ADD COLUMN columns jsonb;

CREATE TABLE pgtrail.schema_change (
    id         bigint      PRIMARY KEY,
    table_id   integer     NOT NULL,
    changed_at timestamptz NOT NULL,
    -- The transaction (trail number) and context of the DDL.
    txid       bigint      NOT NULL,
    ctx        smallint    NOT NULL,
    -- 'rename_table' (names schema-qualified), 'add', 'drop', 'rename' (a
    -- column), 'type' (ALTER COLUMN ... TYPE).
    kind       text        NOT NULL CHECK (kind IN ('rename_table', 'add', 'drop', 'rename', 'type')),
    attnum     smallint,
    -- The name before; after a rename, new_name.
    name       text        NOT NULL,
    new_name   text,
    old_type   text,
    new_type   text,
    -- 'add': the value the rows already there got (JSON null when NULL),
    -- unless `rewritten`.
    value      jsonb,
    -- The rows' values were rewritten (ALTER TYPE, or ADD COLUMN with a
    -- volatile default, an identity or a generated column): each row whose
    -- recorded value changed has an UPDATE of its own, by the DDL's author.
    rewritten  boolean     NOT NULL DEFAULT false
);

CREATE INDEX schema_change_table_idx ON pgtrail.schema_change (table_id, changed_at, id);

COMMENT ON TABLE pgtrail.schema_change IS
    'Schema changes of audited tables, in the order of the trail''s changes: the queries follow renamed, dropped, added and retyped columns along them.';
