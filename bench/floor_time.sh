#!/usr/bin/env bash
# The floor of the writer's cost in plain SQL, in CPU time (bench/WAL.md):
# each part timed in a loop in one backend, by its own /proc/self/stat
# (utime + stime, 10 ms ticks), against a loop of what it adds to.
#
# One throwaway PostgreSQL cluster, as bench/context_instructions.sh makes it
# (wal_level = logical, autovacuum and jit off, synchronous_commit off), one
# database; each measurement a DO block of N iterations in a fresh
# connection; the items interleaved, their order rotated each round; the
# figure is µs per iteration, the item's baseline subtracted (medians).
#
# usage: bench/floor_time.sh [--rounds R] [--statements N] [--expressions N]
# Needs the server binaries (PGTRAIL_PG_BIN or pg_config).
set -euo pipefail

rounds=3
ns=100000
ne=300000
while [[ $# -gt 0 && "$1" == --* ]]; do
    case "$1" in
        --rounds) rounds="$2"; shift 2 ;;
        --statements) ns="$2"; shift 2 ;;
        --expressions) ne="$2"; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

. "$(dirname "$0")/lib/scratch_cluster.sh"
scratch_cluster floor-time
psql=("$bin/psql" "${pg[@]}" -X -q -v ON_ERROR_STOP=1 -d postgres)
here="$(cd "$(dirname "$0")" && pwd)"
"${psql[@]}" <<'SQL'
CREATE SCHEMA floor_sql;
CREATE SCHEMA floor_plpgsql;
SQL
sed -e 's/^CREATE SCHEMA pgtrail;//' -e 's/pgtrail\.set_context/floor_sql.set_context/' \
    "$here/sql/floor_set_context_sql.sql" | "${psql[@]}"
sed -e 's/^CREATE SCHEMA pgtrail;//' -e 's/pgtrail\.set_context/floor_plpgsql.set_context/' \
    "$here/sql/floor_set_context_plpgsql.sql" | "${psql[@]}"
"${psql[@]}" <<'SQL'
CREATE FUNCTION floor_trigger() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;
CREATE FUNCTION floor_trigger_definer() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$BEGIN RETURN NULL; END$$;
CREATE TABLE t_none (id integer PRIMARY KEY, n integer);
CREATE TABLE t_invoker (LIKE t_none INCLUDING ALL);
CREATE TABLE t_definer (LIKE t_none INCLUDING ALL);
CREATE TABLE t_when (LIKE t_none INCLUDING ALL);
CREATE TRIGGER floor BEFORE INSERT OR UPDATE OR DELETE ON t_invoker FOR EACH STATEMENT EXECUTE FUNCTION floor_trigger();
CREATE TRIGGER floor BEFORE INSERT OR UPDATE OR DELETE ON t_definer FOR EACH STATEMENT EXECUTE FUNCTION floor_trigger_definer();
CREATE TRIGGER floor BEFORE INSERT OR UPDATE OR DELETE ON t_when FOR EACH STATEMENT
    WHEN (pg_catalog.current_setting('pgtrail.emitted', true) OPERATOR(pg_catalog.=) 'never') EXECUTE FUNCTION floor_trigger();
CREATE TABLE message_key (k_in bytea NOT NULL, k_out bytea NOT NULL);
INSERT INTO message_key VALUES (gen_random_uuid()::text::bytea, gen_random_uuid()::text::bytea);
SQL

# item: name|baseline item|N kind (s or e)|PL/pgSQL statement in the loop
items=(
  "perform_1||s|PERFORM 1;"
  "set_context_sql|perform_1|s|PERFORM floor_sql.set_context('bench', NULL, NULL, 'tpcb');"
  "set_context_plpgsql|perform_1|s|PERFORM floor_plpgsql.set_context('bench', NULL, NULL, 'tpcb');"
  "update_no_trigger||s|UPDATE t_none SET n = n WHERE id = -1;"
  "trigger_invoker|update_no_trigger|s|UPDATE t_invoker SET n = n WHERE id = -1;"
  "trigger_definer|update_no_trigger|s|UPDATE t_definer SET n = n WHERE id = -1;"
  "trigger_when|update_no_trigger|s|UPDATE t_when SET n = n WHERE id = -1;"
  "assign||e|b := m;"
  "emit_213_bytes|assign|e|l := pg_logical_emit_message(true, 'pgtrail', t);"
  "sha256_250_bytes|assign|e|b := sha256(m);"
  "key_select|assign|e|SELECT k.k_in, k.k_out INTO b, b2 FROM message_key AS k;"
)
msg='{"ctx":1,"started_at":"2026-12-06T22:00:00.123456+00:00","recorded_at":"2026-12-06T22:00:00.123789+00:00","actor_id":"bench","actor_name":null,"actor_type":null,"reason":"tpcb","context":null,"db_user":"postgres"}'
run_item() { # $1: N, $2: statement; prints CPU ticks
    "${psql[@]}" -At <<SQL
DO \$do\$
DECLARE
    t text := '$msg';
    m bytea := convert_to(repeat('x', 250), 'UTF8');
    b bytea;
    b2 bytea;
    l pg_lsn;
    s0 text;
    s1 text;
BEGIN
    s0 := pg_read_file('/proc/self/stat');
    FOR i IN 1..$1 LOOP
        $2
    END LOOP;
    s1 := pg_read_file('/proc/self/stat');
    RAISE NOTICE 'ticks %',
        (split_part(split_part(s1, ') ', 2), ' ', 12)::bigint + split_part(split_part(s1, ') ', 2), ' ', 13)::bigint)
      - (split_part(split_part(s0, ') ', 2), ' ', 12)::bigint + split_part(split_part(s0, ') ', 2), ' ', 13)::bigint);
END
\$do\$;
SQL
}
out="$root/figures"
echo "round item us_per_iteration"
k=${#items[@]}
for r in $(seq "$rounds"); do
    for i in $(seq 0 $((k - 1))); do
        IFS='|' read -r name base kind stmt <<<"${items[$(((i + r) % k))]}"
        n=$ns; [[ $kind == e ]] && n=$ne
        ticks=$(run_item "$n" "$stmt" 2>&1 | sed -n 's/.*ticks \([0-9]*\).*/\1/p')
        v=$(awk -v t="$ticks" -v n="$n" 'BEGIN { printf "%.4f", t * 10000 / n }')
        echo "$r $name $v" | tee -a "$out"
    done
done
echo
echo "item median_us baseline added_us (medians of the rounds)"
for item in "${items[@]}"; do
    IFS='|' read -r name base _ _ <<<"$item"
    med() { awk -v n="$1" '$2 == n { print $3 }' "$out" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
    m=$(med "$name")
    if [[ -n "$base" ]]; then
        b=$(med "$base")
        echo "$name $m $base $(awk -v m="$m" -v b="$b" 'BEGIN { printf "%.4f", m - b }')"
    else
        echo "$name $m - -"
    fi
done
