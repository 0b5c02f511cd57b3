#!/usr/bin/env bash
# The writer's backend CPU per transaction, in time (bench/WAL.md): the
# figure the issue's target is stated in, for the same databases and
# scripts as bench/context_instructions.sh (whose instruction counts are the
# steady figures; this converts them to time on this machine).
#
# One throwaway PostgreSQL cluster (wal_level = logical, autovacuum and jit
# off, synchronous_commit off), databases made by `pgbench -i -s 1` and set
# up as bench/context_instructions.sh sets them up. A measurement runs
# `pgbench -n -M prepared -c 1 -t N` of one script in one database and reads
# its backend's /proc/PID/stat (utime + stime, 10 ms ticks) every 20 ms until
# it exits (at most two ticks of its end are missed); databases interleaved,
# their order rotated each round; medians.
#
# usage: bench/writer_cpu.sh [--rounds R] [--transactions N] [--script tpcb-ctx|one-ctx|ctx-only] DB=SPEC ...
#   SPEC as bench/context_instructions.sh takes it: none, bare:SQL_FILE,
#   PGTRAIL_BINARY:MODE[:OUTSIDE[:SQL_FILE]]
# Needs pgbench and the server binaries (PGTRAIL_PG_BIN or pg_config).
set -euo pipefail

rounds=3
n=20000
script=tpcb-ctx
while [[ $# -gt 0 && "$1" == --* ]]; do
    case "$1" in
        --rounds) rounds="$2"; shift 2 ;;
        --transactions) n="$2"; shift 2 ;;
        --script) script="$2"; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[[ $# -gt 0 ]] || { sed -n '2,20p' "$0"; exit 2; }

. "$(dirname "$0")/lib/scratch_cluster.sh"
scratch_cluster writer-cpu scripts

ctx="SELECT pgtrail.set_context(actor_id => 'bench', reason => 'tpcb');"
tpcb_script "$ctx"$'\n' > "$root/scripts/tpcb-ctx"
tpcb_script "" > "$root/scripts/tpcb-ctx.plain"
printf 'BEGIN;\n%s\nEND;\n' "$ctx" > "$root/scripts/ctx-only"
printf 'BEGIN;\nSELECT 1;\nEND;\n' > "$root/scripts/ctx-only.plain"
printf '\\set bid random(1, 1)\nBEGIN;\n%s\nUPDATE pgbench_branches SET bbalance = bbalance + 1 WHERE bid = :bid;\nEND;\n' "$ctx" > "$root/scripts/one-ctx"
printf '\\set bid random(1, 1)\nBEGIN;\nUPDATE pgbench_branches SET bbalance = bbalance + 1 WHERE bid = :bid;\nEND;\n' > "$root/scripts/one-ctx.plain"

scratch_databases "$@"

# The CPU ticks of the backend of `pgbench -c 1 -t $2 -f $3 $1`.
backend_ticks() {
    PGAPPNAME="writer-cpu-$1" "$bin/pgbench" "${pg[@]}" -n -M prepared -c 1 -t "$2" -f "$3" "$1" >/dev/null 2>"$root/pgbench.err" &
    local bench=$! pid="" seen=0 p stat="" line
    while kill -0 "$bench" 2>/dev/null; do
        # pgbench's first connection only looks: the pid kept is the one
        # found five times in a row.
        if [[ $seen -lt 5 ]]; then
            p=$("$bin/psql" "${pg[@]}" -X -At -d postgres -c \
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'writer-cpu-$1' ORDER BY backend_start DESC LIMIT 1" 2>/dev/null || true)
            if [[ -n "$p" && "$p" == "$pid" ]]; then seen=$((seen + 1)); else pid="$p"; seen=0; stat=""; fi
        fi
        if [[ -n "$pid" ]] && read -r line 2>/dev/null < "/proc/$pid/stat"; then
            stat="$line"
        fi
        sleep 0.02
    done
    wait "$bench" || { cat "$root/pgbench.err" >&2; exit 1; }
    [[ -n "$stat" ]] || { echo "backend of $1 not found" >&2; exit 1; }
    local f=(${stat#*) })
    echo $((f[11] + f[12]))
}

for db in "${dbs[@]}"; do   # warm the caches
    file="$root/scripts/$script"
    [[ -n "${plain[$db]:-}" ]] && file="$root/scripts/$script.plain"
    backend_ticks "$db" 1000 "$file" >/dev/null
done
echo "round script database us_per_transaction"
k=${#dbs[@]}
for r in $(seq "$rounds"); do
    for i in $(seq 0 $((k - 1))); do
        db="${dbs[$(((i + r) % k))]}"
        file="$root/scripts/$script"
        [[ -n "${plain[$db]:-}" ]] && file="$root/scripts/$script.plain"
        t=$(backend_ticks "$db" "$n" "$file")
        echo "$r $script $db $(awk -v t="$t" -v n="$n" 'BEGIN { printf "%.2f", t * 10000 / n }')"
    done
done
