-- WAL capture mode (`[capture] mode = "wal"`, migration 0010): a table in
-- WAL mode has no capture triggers. Its changes reach the trail through
-- logical decoding: the table is in the publication pgtrail (with
-- publish_via_partition_root, so partitions publish under their parent),
-- a logical replication slot (pgoutput) keeps the WAL, and `pgtrail follow`
-- reads the slot, computes the same rows capture would have written (the
-- rules of 12_keys_and_markers.sql, mirrored in crates/follow) and writes
-- them by binary COPY between pgtrail._follow_begin and
-- pgtrail._follow_write_position (the pgtrail.transaction rows, read from
-- the context messages, copied too) or pgtrail._follow_write_context
-- (those rows written here from the messages), below.
--
-- Context: a BEFORE ... FOR EACH STATEMENT trigger, pgtrail_wal_context,
-- emits once per transaction and context (not per row, not per statement:
-- later statements find the transaction-local mark and return, without
-- calling pgtrail._wal_emit) one transactional logical message with prefix
-- 'pgtrail' holding what capture would write into pgtrail.transaction:
-- the fields read from set_context, SET LOCAL pgtrail.* and the mapped
-- settings, and what the database knows. A rolled-back savepoint takes its
-- message and its mark back together. The follower gives each change the
-- context of the last message before it in its transaction.
--
-- Signed (migration 0016): pg_logical_emit_message is anyone's to call, so
-- a role that writes an audited table could emit a 'pgtrail' message of its
-- own naming another actor, database user or client. Each message is
--     64 lowercase hex digits: sha256(k_out || sha256(k_in || T || ':' || J))
--     J: the JSON object, UTF-8
-- where T is the transaction's txid_current() in decimal and k_in, k_out
-- are the two keys of pgtrail.wal_message_key, which only the pgtrail owner
-- reads (pgtrail._wal_emit is SECURITY DEFINER). Two keys, nested (NMAC):
-- sha256(key || message) alone could be extended by anyone who saw one
-- signature. T binds a signature to its transaction: a signed message copied
-- into another transaction does not verify there (a replay), and neither
-- does one emitted by hand. `pgtrail follow` verifies each message against
-- the transaction it decodes it in and ignores (with a warning) one that
-- does not verify, as if it had not been emitted: the changes are still
-- recorded, with the context of the last genuine message before them, or
-- none. A message without a signature (starting with '{') is accepted
-- only before pgtrail.wal_message_key.signed_from: one pgtrail 0.8.0 wrote
-- before the upgrade.
--
-- The mark is a setting, which any role may set: one that sets it before
-- its first write keeps the trigger from emitting at all. SQL cannot stop
-- that, so the follower notices: a change decoded before any message that
-- verifies in its transaction is recorded in pgtrail.wal_unsigned
-- (migration 0017, pgtrail._follow_record_unsigned below) and shown by
-- `pgtrail check`.
--
-- The slot is not created here: a slot cannot be created in a transaction
-- that has written, so `pgtrail apply` creates it (idempotently) before its
-- transaction, which then moves tables into WAL mode: a change committed
-- after that transaction is in the slot, one committed before it was
-- captured by its triggers.

-- The name of this database's logical replication slot (slots belong to the
-- whole cluster, so the name carries the database's OID).
CREATE OR REPLACE FUNCTION pgtrail.wal_slot()
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT 'pgtrail_' || oid::text FROM pg_database WHERE datname = current_database()
$fn$;

-- pgtrail.wal_publication(), pgtrail._wal_published() and
-- pgtrail._wal_capture_state() are in 37_ddl_watch.sql (the DDL watch uses them).

-- Puts table p_table (audited as p_id) into WAL mode: no capture triggers,
-- the context trigger on it and its partitions, REPLICA IDENTITY FULL on
-- all of them (an UPDATE's old values and changed fields, a DELETE's old
-- row, a table without a key and an unchanged TOASTed value all need the
-- old row whole), and membership in the publication. Within
-- pgtrail.managing: the DDL watch records no capture gap for it.
CREATE OR REPLACE FUNCTION pgtrail._wal_attach(p_table regclass, p_id integer)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_rel regclass;
BEGIN
    INSERT INTO pgtrail.managing (txid, table_id) VALUES (txid_current(), p_id);
    IF NOT EXISTS (SELECT FROM pg_publication WHERE pubname = pgtrail.wal_publication()) THEN
        EXECUTE format('CREATE PUBLICATION %I WITH (publish = %L, publish_via_partition_root = true)',
                       pgtrail.wal_publication(), 'insert, update, delete, truncate');
    END IF;
    -- The publication first: the DDL watch finds capture on after each
    -- statement below.
    IF NOT pgtrail._wal_published(p_table) THEN
        EXECUTE format('ALTER PUBLICATION %I ADD TABLE %s', pgtrail.wal_publication(), p_table);
    END IF;
    UPDATE pgtrail.audited_table
    SET replica_identity_before = coalesce(replica_identity_before,
            (SELECT NULLIF(relreplident, 'f') FROM pg_class WHERE oid = p_table))
    WHERE id = p_id AND capture_mode = 'wal';
    FOR v_rel IN
        SELECT p_table UNION ALL SELECT relid FROM pg_partition_tree(p_table) WHERE relid <> p_table
    LOOP
        PERFORM pgtrail._drop_capture_triggers(v_rel);
        IF (SELECT relreplident FROM pg_class WHERE oid = v_rel) <> 'f' THEN
            EXECUTE format('ALTER TABLE %s REPLICA IDENTITY FULL', v_rel);
        END IF;
        IF NOT EXISTS (SELECT FROM pg_trigger WHERE tgrelid = v_rel AND tgname = 'pgtrail_wal_context') THEN
            EXECUTE format(
                'CREATE TRIGGER pgtrail_wal_context BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s '
                'FOR EACH STATEMENT EXECUTE FUNCTION pgtrail._wal_context(%L)', v_rel, p_id);
        END IF;
    END LOOP;
    DELETE FROM pgtrail.managing WHERE txid = txid_current() AND table_id = p_id;
END
$fn$;

-- Takes table p_table (audited as p_id) out of WAL mode: the context
-- triggers go, it leaves the publication, and the replica identity WAL mode
-- set is restored (DEFAULT or NOTHING; an identity that was an index stays
-- FULL, since the index is not recorded). Does nothing to a table that is
-- not in WAL mode. Changes already in the slot are still written by
-- `pgtrail follow`.
CREATE OR REPLACE FUNCTION pgtrail._wal_detach(p_table regclass, p_id integer)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_rel    regclass;
    v_before "char" := (SELECT replica_identity_before FROM pgtrail.audited_table WHERE id = p_id);
BEGIN
    INSERT INTO pgtrail.managing (txid, table_id) VALUES (txid_current(), p_id);
    FOR v_rel IN
        SELECT p_table UNION ALL SELECT relid FROM pg_partition_tree(p_table) WHERE relid <> p_table
    LOOP
        IF EXISTS (SELECT FROM pg_trigger WHERE tgrelid = v_rel AND tgname = 'pgtrail_wal_context') THEN
            EXECUTE format('DROP TRIGGER pgtrail_wal_context ON %s', v_rel);
        END IF;
        IF v_before IN ('d', 'n') AND (SELECT relreplident FROM pg_class WHERE oid = v_rel) = 'f' THEN
            EXECUTE format('ALTER TABLE %s REPLICA IDENTITY %s', v_rel,
                           CASE v_before WHEN 'd' THEN 'DEFAULT' ELSE 'NOTHING' END);
        END IF;
    END LOOP;
    IF pgtrail._wal_published(p_table) THEN
        EXECUTE format('ALTER PUBLICATION %I DROP TABLE %s', pgtrail.wal_publication(), p_table);
    END IF;
    UPDATE pgtrail.audited_table SET replica_identity_before = NULL WHERE id = p_id;
    DELETE FROM pgtrail.managing WHERE txid = txid_current() AND table_id = p_id;
END
$fn$;

-- The context trigger of WAL-mode tables: whether this transaction's
-- current context has its message already (the mark, pgtrail.emitted, is
-- the transaction's id, which pgtrail._wal_emit sets when it emits, and
-- set_context sets back to '' for the new context it starts; a transaction
-- without an id has emitted nothing, since emitting gives it one; the id
-- makes a mark set for the whole session by SET match no transaction, so a
-- role cannot keep its session facts out of the trail that way); if not,
-- pgtrail._wal_emit (below) emits it and sets the mark. A rolled-back
-- savepoint takes the mark back with its message (and a set_context's
-- reset with its context).
--
-- Kept apart from pgtrail._wal_emit so that the statements after the first
-- cost one comparison: no pinned search_path here (a SET clause costs a
-- settings save and restore per call; every name it uses is qualified, the
-- comparison's operator too) and no DECLARE work: about 18,000
-- instructions per statement less than when the whole generated function
-- ran on each (callgrind, PostgreSQL 15, bench/WAL.md). PL/pgSQL compiles a
-- trigger's function once per trigger (so per table), and prepares each of
-- its expressions once per transaction and compiled copy, looking up every
-- function and operator in it: in a transaction writing several tables
-- each statement pays for the comparison's calls, so it has as few as the
-- mark allows (one setting read, the id printed, one comparison: about
-- 11,000 instructions a statement less than with the mark 'c' ||
-- context_seq || ':' || id). A WHEN on the trigger doing the same
-- comparison cost more than this call (PostgreSQL reads and plans a
-- trigger's WHEN for every statement). SECURITY DEFINER, so that no role
-- needs a right on pgtrail to write an audited table.
CREATE OR REPLACE FUNCTION pgtrail._wal_context()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
AS $fn$
DECLARE
    v_lsn pg_catalog.pg_lsn;
BEGIN
    -- (NULL, so emit, while the transaction has no id: emitting gives it one.)
    IF pg_catalog.current_setting('pgtrail.emitted', true) OPERATOR(pg_catalog.=)
       pg_catalog.txid_current_if_assigned()::pg_catalog.text THEN
        RETURN NULL;
    END IF;
    v_lsn := pgtrail._wal_emit(TG_TABLE_SCHEMA, TG_TABLE_NAME);
    RETURN NULL;
END
$fn$;

-- (Re)generates pgtrail._wal_emit(schema, table), which emits the context
-- message of WAL-mode tables for pgtrail._wal_context, from the context
-- settings (like pgtrail._record_transaction: called by
-- pgtrail._compile_record_transaction). With require_actor it refuses a
-- statement on a WAL-mode table when no actor is set. The message
-- is built as json, not jsonb (its text is all that is kept: no binary
-- form to build and print again), and its calls are assignments, which
-- PL/pgSQL evaluates as simple expressions, not PERFORM, which runs a query:
-- together 41,000 fewer instructions per one-statement transaction (the
-- trigger's cost there went from 254,000 to 212,000 instructions over a
-- 78,000-instruction UPDATE; callgrind, PostgreSQL 15, bench/WAL.md).
-- The message is signed (see the top of this file): the key is read from
-- pgtrail.wal_message_key once per message; a missing key row emits the
-- message unsigned, which the follower then ignores, rather than make the
-- write fail.
CREATE OR REPLACE FUNCTION pgtrail._compile_wal_context()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_context text;
    v_check   text := '';
BEGIN
    v_context := pgtrail._context_extra_sql();

    IF EXISTS (SELECT FROM pgtrail.setting WHERE name = 'require_actor' AND value = 'true') THEN
        v_check := format(
            E'IF %s IS NULL AND %s IS NULL\n'
            '           AND COALESCE(%s, '''') OPERATOR(pg_catalog.<>) ''migration''\n'
            '           AND NOT COALESCE(v_context OPERATOR(pg_catalog.?) ''migration'', false) THEN\n'
            '            RAISE EXCEPTION ''pgtrail: change to %%.%% has no actor'', p_schema, p_table\n'
            '                USING ERRCODE = ''PGTR1'', DETAIL = %L, HINT = %L;\n'
            '        END IF;\n',
            pgtrail._context_field_sql('actor_id'), pgtrail._context_field_sql('actor_name'),
            pgtrail._context_field_sql('actor_type'),
            'This database requires every audited change to say who made it (require_actor = true).',
            'In the same transaction, run SELECT pgtrail.set_context(actor_id => ''42'', actor_name => ''alice@example.com''); '
                || 'or SET LOCAL pgtrail.actor_id = ''42''; migrations may set pgtrail.set_context(actor_type => ''migration'', '
                || 'extra => ''{"migration": "name"}'').');
    END IF;

    EXECUTE format(
        E'CREATE OR REPLACE FUNCTION pgtrail._wal_emit(p_schema text, p_table text)\nRETURNS pg_lsn LANGUAGE plpgsql SECURITY DEFINER\n'
        'SET search_path = pg_catalog, pg_temp AS %L',
        format(E'\n-- pgtrail: generated from the context settings; do not edit.\n'
               'DECLARE\n'
               '    v_seq     text := pg_catalog.current_setting(''pgtrail.context_seq'', true);\n'
               '    v_ctx     smallint := CASE WHEN v_seq OPERATOR(pg_catalog.~) ''^[0-9]{1,5}$''\n'
               '                               THEN LEAST(v_seq::pg_catalog.int4, 32767) ELSE 0 END;\n'
               '    v_context jsonb;\n'
               '    v_lsn     pg_lsn;\n'
               '    v_set     text;\n'
               '    v_msg     text;\n'
               '    v_body    bytea;\n'
               '    v_txid    bigint;\n'
               '    v_k_in    bytea;\n'
               '    v_k_out   bytea;\n'
               'BEGIN\n'
               '    -- (pgtrail._wal_context, its only caller, has tested the mark.)\n'
               '        %s'
               '%s'
               '        v_msg := pg_catalog.json_build_object(\n'
               '            ''ctx'', v_ctx, ''started_at'', pg_catalog.transaction_timestamp(),\n'
               '            ''recorded_at'', pg_catalog.clock_timestamp(),\n'
               '            ''actor_id'', %s, ''actor_name'', %s, ''actor_type'', %s, ''reason'', %s,\n'
               '            ''context'', v_context, ''db_user'', SESSION_USER,\n'
               '            ''db_role'', NULLIF(pg_catalog.current_setting(''role''), ''none''),\n'
               '            ''application_name'', NULLIF(pg_catalog.current_setting(''application_name''), ''''),\n'
               '            ''client_addr'', pg_catalog.inet_client_addr(), ''client_port'', pg_catalog.inet_client_port(),\n'
               '            ''backend_pid'', pg_catalog.pg_backend_pid())::pg_catalog.text;\n'
               '        -- Signed for this transaction (the id the message would give it):\n'
               '        -- 64 hex digits of sha256(k_out || sha256(k_in || txid || '':'' || json)), then the json.\n'
               '        v_txid := pg_catalog.txid_current();\n'
               '        SELECT k.k_in, k.k_out INTO v_k_in, v_k_out FROM pgtrail.wal_message_key AS k;\n'
               '        v_body := pg_catalog.convert_to(v_msg, ''UTF8'');\n'
               '        v_lsn := pg_catalog.pg_logical_emit_message(true, ''pgtrail'', COALESCE(pg_catalog.convert_to(pg_catalog.encode(\n'
               '            pg_catalog.sha256(v_k_out || pg_catalog.sha256(v_k_in || pg_catalog.convert_to(v_txid::text || '':'', ''UTF8'') || v_body)),\n'
               '            ''hex''), ''UTF8''), ''''::bytea) || v_body);\n'
               '        v_set := pg_catalog.set_config(''pgtrail.emitted'', v_txid::pg_catalog.text, true);\n'
               '    RETURN v_lsn;\n'
               'END\n',
               v_context, v_check,
               pgtrail._context_field_sql('actor_id'), pgtrail._context_field_sql('actor_name'),
               pgtrail._context_field_sql('actor_type'), pgtrail._context_field_sql('reason')));
    PERFORM pgtrail._own_generated('pgtrail._wal_emit(text, text)');
END
$fn$;

-- How the follower writes a batch: in one transaction,
-- pgtrail._follow_begin locks and returns the stored position (NULL before
-- the first batch) and what turns a decoded 32-bit xid into the trail's
-- txid (the era, shifted, and the snapshot's xmax; the follower does the
-- arithmetic: the xid's epoch is xmax's, or the one before when the xid is
-- above xmax's low 32 bits); the follower leaves
-- out the transactions at or before the position, writes the trail rows by
-- binary COPY into pgtrail.change, then calls pgtrail._follow_write_context
-- for their pgtrail.transaction rows and the new position.
CREATE OR REPLACE FUNCTION pgtrail._follow_begin(p_slot text, OUT stored_lsn pg_lsn, OUT era bigint, OUT snapshot_xmax bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    SELECT f.lsn INTO stored_lsn FROM pgtrail.follow_position AS f WHERE f.slot = p_slot FOR UPDATE;
    era := pgtrail._era_now()::bigint << 48;
    snapshot_xmax := txid_snapshot_xmax(txid_current_snapshot());
END
$fn$;

-- The context rows of the transactions a batch wrote by COPY and the
-- follower's new position (p_lsn: the end of the batch's last
-- transaction). Per transaction after the stored position, in commit
-- order, whether or not it left trail rows: p_txid (the trail's txid),
-- p_at (its commit time); the last of them is the position's. Per (transaction, ctx): p_ctx_tx (the 1-based index of its
-- transaction), p_ctx_ctx, p_ctx_msg (the context trigger's message, NULL
-- when none was emitted).
CREATE OR REPLACE FUNCTION pgtrail._follow_write_context(
    p_slot text, p_lsn text, p_txid bigint[], p_at timestamptz[],
    p_ctx_tx integer[], p_ctx_ctx smallint[], p_ctx_msg jsonb[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_last integer := cardinality(p_txid);
BEGIN
    IF v_last = 0 THEN
        RETURN;
    END IF;
    WITH tx AS MATERIALIZED (
        SELECT u.n::integer AS n, u.txid, u.at FROM unnest(p_txid, p_at) WITH ORDINALITY AS u(txid, at, n)
    ),
    recorded AS (
        INSERT INTO pgtrail.transaction AS tr (txid, ctx, started_at, recorded_at, actor_id, actor_name, actor_type, reason,
                                               context, db_user, db_role, application_name, client_addr, client_port, backend_pid)
        SELECT x.txid, k.ctx, coalesce((m ->> 'started_at')::timestamptz, x.at),
               coalesce((m ->> 'recorded_at')::timestamptz, x.at),
               m ->> 'actor_id', m ->> 'actor_name', m ->> 'actor_type', m ->> 'reason',
               CASE WHEN m IS NULL THEN '{"context": "not_recorded"}'::jsonb ELSE NULLIF(m -> 'context', 'null') END,
               coalesce(m ->> 'db_user', '(unknown)'), m ->> 'db_role', m ->> 'application_name',
               (m ->> 'client_addr')::inet, (m ->> 'client_port')::integer, coalesce((m ->> 'backend_pid')::integer, 0)
        FROM unnest(p_ctx_tx, p_ctx_ctx, p_ctx_msg) AS k(tx, ctx, m)
        JOIN tx AS x ON x.n = k.tx
        -- (A transaction that also wrote a trigger-mode table has its
        -- context row already, recorded by the capture trigger from the
        -- same settings.)
        ON CONFLICT (txid, ctx) DO NOTHING
        RETURNING tr.txid, tr.ctx, tr.started_at
    )
    INSERT INTO pgtrail.long_context (txid, ctx)
    SELECT r.txid, r.ctx FROM recorded AS r JOIN tx AS x ON x.txid = r.txid
    WHERE (x.at - r.started_at) NOT BETWEEN '0'::interval AND pgtrail._context_span()
    ON CONFLICT DO NOTHING;

    INSERT INTO pgtrail.follow_position AS f (slot, lsn, txid, committed_at)
    VALUES (p_slot, p_lsn::pg_lsn, p_txid[v_last], p_at[v_last])
    ON CONFLICT (slot) DO UPDATE
    SET lsn = excluded.lsn, txid = excluded.txid, committed_at = excluded.committed_at, updated_at = clock_timestamp();
END
$fn$;

-- What _follow_write_context does after its pgtrail.transaction rows, for
-- a batch whose rows the follower read from the messages itself and wrote
-- by binary COPY (the same rows; it leaves a batch to
-- _follow_write_context when a message holds what it does not read as the
-- server would): the contexts begun outside _context_span() before their
-- commit listed in pgtrail.long_context, and the follower's new position.
-- p_txid, p_at as above; per row written: p_ctx_tx (the 1-based index of
-- its transaction), p_ctx_ctx, p_started (its started_at).
CREATE OR REPLACE FUNCTION pgtrail._follow_write_position(
    p_slot text, p_lsn text, p_txid bigint[], p_at timestamptz[],
    p_ctx_tx integer[], p_ctx_ctx smallint[], p_started timestamptz[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_last integer := cardinality(p_txid);
    v_span interval := pgtrail._context_span();
BEGIN
    IF v_last = 0 THEN
        RETURN;
    END IF;
    INSERT INTO pgtrail.long_context (txid, ctx)
    SELECT p_txid[k.tx], k.ctx
    FROM unnest(p_ctx_tx, p_ctx_ctx, p_started) AS k(tx, ctx, started_at)
    WHERE (p_at[k.tx] - k.started_at) NOT BETWEEN '0'::interval AND v_span
    ON CONFLICT DO NOTHING;

    INSERT INTO pgtrail.follow_position AS f (slot, lsn, txid, committed_at)
    VALUES (p_slot, p_lsn::pg_lsn, p_txid[v_last], p_at[v_last])
    ON CONFLICT (slot) DO UPDATE
    SET lsn = excluded.lsn, txid = excluded.txid, committed_at = excluded.committed_at, updated_at = clock_timestamp();
END
$fn$;

-- The transactions of a batch whose changes came before any verified
-- context message (migration 0017): p_txid (the trail's txid), p_changes
-- (how many), p_at (commit time). Called by the follower in the batch's
-- transaction, only when there are any.
CREATE OR REPLACE FUNCTION pgtrail._follow_record_unsigned(p_txid bigint[], p_changes integer[], p_at timestamptz[])
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $fn$
    INSERT INTO pgtrail.wal_unsigned (txid, changes, committed_at)
    SELECT u.txid, u.changes, u.at FROM unnest(p_txid, p_changes, p_at) AS u(txid, changes, at)
    ON CONFLICT (txid) DO NOTHING
$fn$;

-- The slot of this database as `pgtrail check` and `pgtrail follow` report
-- it: NULL when it does not exist.
CREATE OR REPLACE FUNCTION pgtrail.wal_status(
    OUT slot text, OUT active boolean, OUT lag_bytes bigint, OUT retained_bytes bigint,
    OUT wal_status text, OUT follow_lsn pg_lsn, OUT follow_committed_at timestamptz, OUT lag_seconds double precision)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT s.slot_name::text, s.active,
           pg_wal_lsn_diff(pg_current_wal_insert_lsn(), s.confirmed_flush_lsn)::bigint,
           pg_wal_lsn_diff(pg_current_wal_insert_lsn(), s.restart_lsn)::bigint,
           s.wal_status, f.lsn, f.committed_at,
           -- Seconds since the last transaction the follower wrote committed,
           -- when the slot holds more (else 0).
           CASE WHEN pg_wal_lsn_diff(pg_current_wal_insert_lsn(), s.confirmed_flush_lsn) > 0 AND f.committed_at IS NOT NULL
                THEN extract(epoch FROM clock_timestamp() - f.committed_at)::double precision ELSE 0 END
    FROM pg_replication_slots AS s
    LEFT JOIN pgtrail.follow_position AS f ON f.slot = s.slot_name::text
    WHERE s.slot_name = pgtrail.wal_slot()
$fn$;

-- The keys `pgtrail follow` verifies context messages with (signing.rs):
-- the current one (kind 'current', valid everywhere, with signed_from: the
-- position before which an unsigned message is accepted, honoured only on
-- the cluster that recorded it, migration 0018, else 0/0), and those
-- `pgtrail wal rotate-key` replaced: 'retired', valid below valid_below,
-- or 'retiring' (the rotation has not yet seen every transaction that may
-- have read it end), valid everywhere.
CREATE OR REPLACE FUNCTION pgtrail._wal_message_keys(
    OUT kind text, OUT k_in bytea, OUT k_out bytea, OUT valid_below pg_lsn, OUT signed_from pg_lsn)
RETURNS SETOF record
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT 'current', k.k_in, k.k_out, NULL::pg_lsn,
           CASE WHEN k.signed_on = (SELECT c.system_identifier FROM pg_control_system() AS c)
                THEN k.signed_from ELSE '0/0'::pg_lsn END
    FROM pgtrail.wal_message_key AS k
    UNION ALL
    SELECT CASE WHEN r.retired_at IS NULL THEN 'retiring' ELSE 'retired' END, r.k_in, r.k_out, r.retired_at, NULL
    FROM pgtrail.wal_retired_key AS r
$fn$;

-- `pgtrail wal rotate-key`, first step (its own transaction): the current
-- key becomes a retiring one and a new key signs from the commit on.
-- Retired keys the follower's position has passed are dropped: no message
-- in the slot can need them. Returns how many were dropped.
CREATE OR REPLACE FUNCTION pgtrail.wal_rotate_key()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_dropped integer;
BEGIN
    PERFORM FROM pgtrail.wal_message_key FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgtrail: pgtrail.wal_message_key has no key to rotate'
            USING HINT = 'Run pgtrail apply: it installs the key.';
    END IF;
    INSERT INTO pgtrail.wal_retired_key (k_in, k_out)
    SELECT k.k_in, k.k_out FROM pgtrail.wal_message_key AS k
    ON CONFLICT DO NOTHING;
    UPDATE pgtrail.wal_message_key
    SET k_in = sha256(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid())),
        k_out = sha256(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()));
    DELETE FROM pgtrail.wal_retired_key AS r
    WHERE r.retired_at IS NOT NULL
      AND r.retired_at <= (SELECT f.lsn FROM pgtrail.follow_position AS f WHERE f.slot = pgtrail.wal_slot());
    GET DIAGNOSTICS v_dropped = ROW_COUNT;
    RETURN v_dropped;
END
$fn$;

-- `pgtrail wal rotate-key`, last step, once every transaction that was
-- open when the new key was committed has ended (none can sign with a
-- retiring key any more): each retiring key is valid only below the WAL
-- position now. Returns that position, NULL when no key was retiring.
CREATE OR REPLACE FUNCTION pgtrail.wal_retire_keys()
RETURNS pg_lsn
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_at pg_lsn := pg_current_wal_insert_lsn();
BEGIN
    UPDATE pgtrail.wal_retired_key SET retired_at = v_at WHERE retired_at IS NULL;
    RETURN CASE WHEN FOUND THEN v_at END;
END
$fn$;

-- The context messages a batch's transactions held that the follower
-- ignored, written in the batch's transaction: per transaction, its txid
-- (the trail's), the last rejected message's position, the transaction's
-- end (commit_lsn) and commit time, how many, and why. Transactions at or
-- before the stored commit_lsn were counted already (a batch written again
-- after a crash).
CREATE OR REPLACE FUNCTION pgtrail._follow_rejected(
    p_slot text, p_txid bigint[], p_lsn text[], p_commit_lsn text[], p_at timestamptz[],
    p_count integer[], p_why text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_after pg_lsn;
BEGIN
    SELECT w.commit_lsn INTO v_after FROM pgtrail.wal_rejected AS w WHERE w.slot = p_slot FOR UPDATE;
    WITH r AS (
        SELECT u.txid, u.lsn::pg_lsn AS lsn, u.commit_lsn::pg_lsn AS commit_lsn, u.at, u.n, u.why
        FROM unnest(p_txid, p_lsn, p_commit_lsn, p_at, p_count, p_why) AS u(txid, lsn, commit_lsn, at, n, why)
        WHERE v_after IS NULL OR u.commit_lsn::pg_lsn > v_after
    ),
    total AS (
        SELECT sum(r.n)::bigint AS n FROM r
    ),
    last AS (
        SELECT r.* FROM r ORDER BY r.commit_lsn DESC LIMIT 1
    )
    INSERT INTO pgtrail.wal_rejected AS w (slot, rejected, last_txid, last_lsn, commit_lsn, last_committed_at, last_reason)
    SELECT p_slot, total.n, last.txid, last.lsn, last.commit_lsn, last.at, last.why
    FROM total, last
    ON CONFLICT (slot) DO UPDATE
    SET rejected = w.rejected + excluded.rejected, last_txid = excluded.last_txid, last_lsn = excluded.last_lsn,
        commit_lsn = excluded.commit_lsn, last_committed_at = excluded.last_committed_at,
        last_reason = excluded.last_reason, updated_at = clock_timestamp();
END
$fn$;

-- `pgtrail wal acknowledge`: the rejected context messages counted so far
-- were looked into; `pgtrail check` reports only those rejected after.
-- Returns how many were newly acknowledged.
CREATE OR REPLACE FUNCTION pgtrail.wal_acknowledge_rejected()
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $fn$
    WITH acknowledged AS (
        UPDATE pgtrail.wal_rejected AS w
        SET acknowledged = w.rejected, acknowledged_at = clock_timestamp()
        FROM (SELECT slot, rejected - acknowledged AS n FROM pgtrail.wal_rejected WHERE slot = pgtrail.wal_slot() FOR UPDATE) AS before
        WHERE w.slot = before.slot
        RETURNING before.n
    )
    SELECT coalesce(sum(n), 0)::bigint FROM acknowledged
$fn$;
