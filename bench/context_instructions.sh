#!/usr/bin/env bash
# The writer's cost of set_context and of WAL mode's context message, in
# instructions (callgrind): exact, whatever the machine's load.
#
# One throwaway PostgreSQL cluster (wal_level = logical, autovacuum, jit off,
# synchronous_commit off), databases made by `pgbench -i -s 1` and set up
# with the server running normally, then the server restarted under
# `valgrind --tool=callgrind --trace-children=yes` (each backend writes its
# own file when it exits). A measurement runs a pgbench script with one
# connection N and 2N times (-M prepared), each a fresh connection; the
# backend's total at 2N minus at N, over N, is one transaction. Pairs of
# script and database are interleaved, their order rotated each round.
#
# usage: bench/context_instructions.sh [--rounds R] [--transactions N] [--scripts S,S] \
#            DB=PGTRAIL_BINARY:MODE[:OUTSIDE[:SQL_FILE]] ...
#   DB=none            a database without pgtrail (no audit)
#   DB=BIN:wal         pgtrail applied by BIN, every table in WAL mode
#   DB=BIN:trigger     the same in trigger mode
#   DB=bare:SQL_FILE   a database without pgtrail where SQL_FILE is run (it
#                      defines the pgtrail.set_context the scripts call and
#                      whatever else is measured: bench/sql/floor_*.sql)
#   OUTSIDE            [context] outside_transaction (warn by default)
#   SQL_FILE           run with psql in DB right after `pgtrail apply` (a
#                      variant to measure, e.g. bench/sql/wal_variant_*.sql)
# e.g. bench/context_instructions.sh noaudit=none before=/path/to/old/pgtrail:wal \
#          now=target/release/pgtrail:wal ignore=target/release/pgtrail:wal:ignore
#
# Scripts, each per database (no audit: the same without set_context):
#   tpcb-ctx   pgbench's TPC-B with SELECT pgtrail.set_context(...) after BEGIN
#   tpcb       TPC-B without set_context
#   ctx-only   BEGIN; set_context; END      (against `BEGIN; SELECT 1; END`)
#   one-ctx    BEGIN; set_context; one UPDATE of pgbench_branches; END
# Needs valgrind, pgbench and the server binaries (PGTRAIL_PG_BIN or pg_config).
set -euo pipefail

rounds=3
n=300
scripts=tpcb-ctx,tpcb,ctx-only,one-ctx
while [[ $# -gt 0 && "$1" == --* ]]; do
    case "$1" in
        --rounds) rounds="$2"; shift 2 ;;
        --transactions) n="$2"; shift 2 ;;
        --scripts) scripts="$2"; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[[ $# -gt 0 ]] || { sed -n '2,33p' "$0"; exit 2; }

. "$(dirname "$0")/lib/scratch_cluster.sh"
scratch_cluster context-instructions out scripts
chmod 1777 "$root/out"

ctx="SELECT pgtrail.set_context(actor_id => 'bench', reason => 'tpcb');"
tpcb_script "$ctx"$'\n' > "$root/scripts/tpcb-ctx"
tpcb_script "" > "$root/scripts/tpcb"
printf 'BEGIN;\n%s\nEND;\n' "$ctx" > "$root/scripts/ctx-only"
printf 'BEGIN;\nSELECT 1;\nEND;\n' > "$root/scripts/ctx-only.plain"
printf '\\set bid random(1, 1)\nBEGIN;\n%s\nUPDATE pgbench_branches SET bbalance = bbalance + 1 WHERE bid = :bid;\nEND;\n' "$ctx" > "$root/scripts/one-ctx"
printf '\\set bid random(1, 1)\nBEGIN;\nUPDATE pgbench_branches SET bbalance = bbalance + 1 WHERE bid = :bid;\nEND;\n' > "$root/scripts/one-ctx.plain"
cp "$root/scripts/tpcb" "$root/scripts/tpcb-ctx.plain"
cp "$root/scripts/tpcb" "$root/scripts/tpcb.plain"

scratch_databases "$@"
as_server "$bin/pg_ctl" -D "$root/data" -w stop >/dev/null
as_server bash -c "valgrind --tool=callgrind --trace-children=yes -q \
    --callgrind-out-file='$root/out/callgrind.out.%p' '$bin/postgres' -D '$root/data' > '$root/valgrind.log' 2>&1 &"
for _ in $(seq 300); do "$bin/pg_isready" "${pg[@]}" -q && break; sleep 1; done

# The instructions of the one backend of `pgbench -c 1 -t $3 -f $1 $2`
# (pgbench's first connection, which only looks, is the smaller file).
backend_total() {
    sleep 1
    rm -f "$root"/out/callgrind.out.*
    "$bin/pgbench" "${pg[@]}" -n -M prepared -c 1 -t "$3" -f "$1" "$2" >/dev/null 2>"$root/pgbench.err" \
        || { cat "$root/pgbench.err" >&2; exit 1; }
    for _ in $(seq 600); do
        [[ $(grep -l '^totals:' "$root"/out/callgrind.out.* 2>/dev/null | wc -l) -ge 2 ]] && break
        sleep 0.2
    done
    sleep 1
    grep -h '^totals:' "$root"/out/callgrind.out.* | awk '{print $2}' | sort -n | tail -1
}

pairs=()
for script in ${scripts//,/ }; do
    for db in "${dbs[@]}"; do pairs+=("$script:$db"); done
done
for db in "${dbs[@]}"; do
    file="$root/scripts/tpcb-ctx"
    [[ -n "${plain[$db]:-}" ]] && file="$root/scripts/tpcb-ctx.plain"
    backend_total "$file" "$db" 20 >/dev/null   # warm the shared caches
done
echo "round script database instructions_per_transaction"
for r in $(seq "$rounds"); do
    k=${#pairs[@]}
    for i in $(seq 0 $((k - 1))); do
        IFS=: read -r script db <<<"${pairs[$(((i + r) % k))]}"
        file="$root/scripts/$script"
        [[ -n "${plain[$db]:-}" ]] && file="$root/scripts/$script.plain"
        a=$(backend_total "$file" "$db" "$n")
        b=$(backend_total "$file" "$db" $((2 * n)))
        echo "$r $script $db $(((b - a) / n))"
    done
done
