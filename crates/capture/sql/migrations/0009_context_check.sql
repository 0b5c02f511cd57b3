-- pgtrail migration 0009: set_context's check at commit (functions/10_context.sql).

-- One row per backend, written (inserted, then updated in place) by each
-- transaction that called pgtrail.set_context, so that a deferred trigger
-- fires at its commit. The row is never deleted: an update of the same
-- value is a HOT update that the page prunes by itself, so the table stays
-- one row per backend that ever called set_context and a transaction pays
-- no scan. Unlogged: writing it costs no WAL.
CREATE UNLOGGED TABLE pgtrail.context_check (
    backend_pid integer PRIMARY KEY
);

-- What set_context does outside a transaction block ([context]
-- outside_transaction): warn, refuse or ignore.
INSERT INTO pgtrail.setting (name, value) VALUES ('outside_transaction', 'warn')
ON CONFLICT (name) DO NOTHING;
