-- How a row is recorded, in pieces the generated capture functions
-- (20_capture.sql), the query functions and reconcile share: a row's key,
-- redaction markers, the diff of two whole rows, and the extra context.

-- Helper of pgtrail._key below, for keys of more than two columns.
CREATE OR REPLACE FUNCTION pgtrail._key_of_many(p_row jsonb, p_columns text[])
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT jsonb_object_agg(c, p_row -> c) FROM unnest(p_columns) AS c
$fn$;

-- The row's identity: its key columns, or the whole row when it has no key.
-- Written to be inlined (a single expression, no SET clause, STABLE like
-- jsonb_build_object): it is only ever inlined into functions that pin
-- search_path, and names nothing outside pg_catalog but pgtrail's own,
-- schema-qualified helpers.
CREATE OR REPLACE FUNCTION pgtrail._key(p_row jsonb, p_columns text[])
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $fn$
    SELECT CASE pg_catalog.cardinality(p_columns)
        WHEN 0 THEN p_row
        WHEN 1 THEN pg_catalog.jsonb_build_object(p_columns[1], p_row OPERATOR(pg_catalog.->) p_columns[1])
        WHEN 2 THEN pg_catalog.jsonb_build_object(p_columns[1], p_row OPERATOR(pg_catalog.->) p_columns[1],
                                                  p_columns[2], p_row OPERATOR(pg_catalog.->) p_columns[2])
        ELSE pgtrail._key_of_many(p_row, p_columns)
    END
$fn$;

-- Redaction markers. A redacted value is recorded as {"redacted": "r:<20
-- hex digits>"}: a keyed digest (the key lives in pgtrail.secret, readable
-- by the owner only) of the table, the row's identity, the column and the
-- value. Equal values in different rows get different markers, so a reader
-- cannot tell which rows share a secret; within one row, a marker shows
-- that the value changed, or came back. (pgtrail 0.3.0 and earlier wrote
-- {"redacted": "<16 hex digits>"}, a digest of column and value only: those
-- markers stay in the trail as they were, see pgtrail._marker_v1.)
--
-- The scope of a row's markers is the table's id and the row's identity:
-- its key as JSON text, or for a table without a key its other recorded
-- columns (pgtrail._marker_scope). Inlined like pgtrail._key.
CREATE OR REPLACE FUNCTION pgtrail._marker(p_secret bytea, p_scope text, p_column text, p_value jsonb)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $fn$
    SELECT pg_catalog.jsonb_build_object('redacted', 'r:' OPERATOR(pg_catalog.||) pg_catalog.left(pg_catalog.encode(
        pg_catalog.sha256(p_secret OPERATOR(pg_catalog.||) pg_catalog.convert_to(
            p_scope OPERATOR(pg_catalog.||) '/' OPERATOR(pg_catalog.||) p_column OPERATOR(pg_catalog.||) '='
            OPERATOR(pg_catalog.||) COALESCE(p_value::pg_catalog.text, 'null'), 'UTF8')), 'hex'), 20))
$fn$;

CREATE OR REPLACE FUNCTION pgtrail._marker_scope(p_table integer, p_row jsonb, p_key_columns text[], p_redact_columns text[])
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $fn$
    SELECT p_table::pg_catalog.text OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) (
        CASE WHEN pg_catalog.cardinality(p_key_columns) = 0 THEN p_row OPERATOR(pg_catalog.-) p_redact_columns
             ELSE pgtrail._key(p_row, p_key_columns) END)::pg_catalog.text
$fn$;

-- Helper of pgtrail._redact_part below.
CREATE OR REPLACE FUNCTION pgtrail._redact_values(
    p_part jsonb, p_row jsonb, p_table integer, p_key_columns text[], p_redact_columns text[], p_secret bytea)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT p_part || (SELECT jsonb_object_agg(c, pgtrail._marker(p_secret, s.scope, c, p_part -> c))
                      FROM (SELECT pgtrail._marker_scope(p_table, p_row, p_key_columns, p_redact_columns) AS scope) AS s,
                           unnest(p_redact_columns) AS c
                      WHERE p_part ? c)
$fn$;

-- Values p_part of the row p_row (both JSON, ignored columns removed) as
-- capture records them: redacted values replaced by their markers. With
-- p_part = p_row, the whole row. Written to be inlined like pgtrail._key;
-- the work happens only where a redacted column is present.
CREATE OR REPLACE FUNCTION pgtrail._redact_part(
    p_part jsonb, p_row jsonb, p_table integer, p_key_columns text[], p_redact_columns text[], p_secret bytea)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $fn$
    SELECT CASE
        WHEN p_part IS NULL OR pg_catalog.cardinality(p_redact_columns) = 0
             OR NOT (p_part OPERATOR(pg_catalog.?|) p_redact_columns) THEN p_part
        ELSE pgtrail._redact_values(p_part, p_row, p_table, p_key_columns, p_redact_columns, p_secret)
    END
$fn$;

-- A whole row (ignored columns removed) as capture records it. Inlined.
CREATE OR REPLACE FUNCTION pgtrail._redact_row(
    p_row jsonb, p_table integer, p_key_columns text[], p_redact_columns text[], p_secret bytea)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $fn$
    SELECT pgtrail._redact_part(p_row, p_row, p_table, p_key_columns, p_redact_columns, p_secret)
$fn$;

-- A live row read as capture records it: ignored columns removed, redacted
-- values replaced by their markers. Inlined.
CREATE OR REPLACE FUNCTION pgtrail._as_recorded(p_row jsonb, t pgtrail.audited_table, p_secret bytea)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $fn$
    SELECT pgtrail._redact_row(p_row OPERATOR(pg_catalog.-) (t).ignore_columns, (t).id, (t).key_columns,
                               (t).redact_columns, p_secret)
$fn$;

-- The hash by which the trail's indexes find a row's changes
-- (change_key_idx, change_old_key_idx): queries test it, then the key.
-- Inlined, so that the index's expression matches.
CREATE OR REPLACE FUNCTION pgtrail._h(p_key jsonb)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$
    SELECT pg_catalog.jsonb_hash_extended(p_key, 0)
$fn$;

-- The marker pgtrail 0.3.0 and earlier wrote for a value (reconcile
-- compares a live value with a value recorded then).
CREATE OR REPLACE FUNCTION pgtrail._marker_v1(p_secret bytea, p_column text, p_value jsonb)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT jsonb_build_object('redacted',
        left(encode(sha256(p_secret || convert_to(p_column || '=' || coalesce(p_value::text, 'null'), 'UTF8')), 'hex'), 16))
$fn$;

-- The difference between two whole rows: the changed fields (sorted), and
-- their old and new values. jsonb equality ignores the scale of numbers
-- (1.5 = 1.50); the stored value changed all the same, so their text is
-- compared too. No changed field: all three are NULL. (PL/pgSQL, whose plan
-- is cached; no SET clause, which would cost a settings save and restore
-- per call: only the owner may execute it, from functions that pin
-- search_path.)
CREATE OR REPLACE FUNCTION pgtrail._diff(
    p_old jsonb, p_new jsonb, OUT fields text[], OUT old_values jsonb, OUT new_values jsonb)
LANGUAGE plpgsql STABLE
AS $fn$
BEGIN
    SELECT array_agg(e.key ORDER BY e.key), jsonb_object_agg(e.key, p_old -> e.key), jsonb_object_agg(e.key, e.value)
    INTO fields, old_values, new_values
    FROM jsonb_each(p_new) AS e
    WHERE (p_old -> e.key) IS DISTINCT FROM e.value
       OR (jsonb_typeof(e.value) = 'number' AND (p_old -> e.key)::text <> e.value::text);
END
$fn$;

-- The value of the setting pgtrail.context (set_context's extra, or SET
-- LOCAL pgtrail.context = '...') as a JSON object: an object as it is, any
-- other JSON wrapped as {"context": ...}, text that is not JSON kept as
-- {"unparsed_context": ...}: no setting can make a write fail.
CREATE OR REPLACE FUNCTION pgtrail._extra_context(p_raw text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_extra jsonb;
BEGIN
    IF p_raw IS NULL OR p_raw = '' THEN
        RETURN '{}'::jsonb;
    END IF;
    BEGIN
        v_extra := p_raw::jsonb;
    EXCEPTION WHEN others THEN
        RETURN jsonb_build_object('unparsed_context', p_raw);
    END;
    IF jsonb_typeof(v_extra) <> 'object' THEN
        RETURN jsonb_build_object('context', v_extra);
    END IF;
    RETURN v_extra;
END
$fn$;
