-- pgtrail migration 0009: set_context's check at commit (functions/10_context.sql).

-- One row per transaction that called pgtrail.set_context, queued so that a
-- deferred trigger fires at its commit, and deleted by it. Unlogged: the
-- rows never outlive their transaction, and writing them costs no WAL.
CREATE UNLOGGED TABLE pgtrail.context_check (
    backend_pid integer NOT NULL
);

-- What set_context does outside a transaction block ([context]
-- outside_transaction): warn, refuse or ignore.
INSERT INTO pgtrail.setting (name, value) VALUES ('outside_transaction', 'warn')
ON CONFLICT (name) DO NOTHING;
