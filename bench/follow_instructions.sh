#!/usr/bin/env bash
# The follower's cost per change in instructions (callgrind): exact, whatever
# the machine's load. Counts the follower process, its trail writer's
# backend (the binary COPY into pgtrail.change, the context rows and the
# position), its first backend (catalog and settings reads) and the slot's
# walsender (decoding), each over the changes drained.
#
# One throwaway PostgreSQL cluster (wal_level = logical, autovacuum and jit
# off, synchronous_commit off). Per NAME=PGTRAIL_BINARY a database made by
# `pgbench -i -s SCALE`, WAL mode applied by that binary, and N TPC-B
# transactions with set_context written (4 clients, the follower stopped):
# the same workload in each. The server is then restarted under
# `valgrind --tool=callgrind --trace-children=yes` (each backend writes its
# own file when it exits), and each database in turn is drained by its
# binary's `pgtrail follow --once`, itself run under callgrind.
#
# usage: bench/follow_instructions.sh [--transactions N] [--scale S] [--keep DIR] \
#            NAME=PGTRAIL_BINARY ...
#   --keep DIR   copy the callgrind files into DIR/NAME/ (writer.out, walsender.out,
#                follower.out, backend.out) for callgrind_annotate
# e.g. bench/follow_instructions.sh --transactions 5000 before=/path/to/old/pgtrail \
#          now=target/release/pgtrail
# Needs valgrind, pgbench and the server binaries (PGTRAIL_PG_BIN or pg_config).
set -euo pipefail

n=5000
scale=10
keep=""
while [[ $# -gt 0 && "$1" == --* ]]; do
    case "$1" in
        --transactions) n="$2"; shift 2 ;;
        --scale) scale="$2"; shift 2 ;;
        --keep) keep="$2"; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[[ $# -gt 0 ]] || { sed -n '2,22p' "$0"; exit 2; }

. "$(dirname "$0")/lib/scratch_cluster.sh"
scratch_cluster follow-instructions out follower -- "shared_buffers = 256MB"
chmod 1777 "$root/out"

tpcb_script "SELECT pgtrail.set_context(actor_id => 'bench', reason => 'tpcb');"$'\n' "$scale" > "$root/tpcb"
names=()
declare -A binary
for spec in "$@"; do
    name="${spec%%=*}"
    binary[$name]="${spec#*=}"
    names+=("$name")
    url="host=$root port=$port user=postgres dbname=$name"
    "$bin/createdb" "${pg[@]}" "$name"
    "$bin/pgbench" "${pg[@]}" -i -s "$scale" -q "$name" >/dev/null 2>&1
    printf '[capture]\nmode = "wal"\n' > "$root/$name.toml"
    "${binary[$name]}" apply --config "$root/$name.toml" --database-url "$url" >/dev/null
    "$bin/psql" "${pg[@]}" -X -q -d "$name" -c 'VACUUM ANALYZE' >/dev/null
    "$bin/pgbench" "${pg[@]}" -n -M prepared -c 4 -j 2 -t $((n / 4)) -f "$root/tpcb" "$name" >/dev/null 2>"$root/pgbench.err" \
        || { cat "$root/pgbench.err" >&2; exit 1; }
done
as_server "$bin/pg_ctl" -D "$root/data" -w stop >/dev/null
as_server bash -c "valgrind --tool=callgrind --trace-children=yes -q \
    --callgrind-out-file='$root/out/callgrind.out.%p' '$bin/postgres' -D '$root/data' > '$root/valgrind.log' 2>&1 &"
for _ in $(seq 300); do "$bin/pg_isready" "${pg[@]}" -q && break; sleep 1; done

# The instructions of the callgrind file among $@ whose functions include $1.
total_with() {
    local fn="$1"; shift
    local f
    for f in "$@"; do
        if grep -q "$fn" "$f"; then
            grep -h '^totals:' "$f" | awk '{print $2}'
            return
        fi
    done
    echo 0
}

echo "name changes follower_process writer_backend first_backend walsender (instructions per change)"
for name in "${names[@]}"; do
    url="host=$root port=$port user=postgres dbname=$name"
    sleep 1
    rm -f "$root"/out/callgrind.out.*
    valgrind --tool=callgrind -q --callgrind-out-file="$root/follower/$name.out" \
        "${binary[$name]}" follow --once --format json --database-url "$url" > "$root/$name.json"
    changes=$(grep -o '"changes": *[0-9]*' "$root/$name.json" | grep -o '[0-9]*$')
    # Every backend of the drain has exited once the walsender's file is written.
    for _ in $(seq 600); do
        [[ $(grep -l '^totals:' "$root"/out/callgrind.out.* 2>/dev/null | wc -l) -ge 3 ]] && break
        sleep 0.2
    done
    sleep 2
    files=("$root"/out/callgrind.out.*)
    writer=$(total_with 'fn=.*CopyFrom' "${files[@]}")
    walsender=$(total_with 'fn=.*logicalrep_write_' "${files[@]}")
    first=$(total_with 'fn=.*pg_try_advisory_lock' "${files[@]}")
    follower=$(grep -h '^totals:' "$root/follower/$name.out" | awk '{print $2}')
    per() { echo $(( $1 / (changes > 0 ? changes : 1) )); }
    echo "$name $changes $(per "$follower") $(per "$writer") $(per "$first") $(per "$walsender")"
    if [[ -n "$keep" ]]; then
        mkdir -p "$keep/$name"
        cp "$root/follower/$name.out" "$keep/$name/follower.out"
        for f in "${files[@]}"; do
            grep -q 'fn=.*CopyFrom' "$f" && cp "$f" "$keep/$name/writer.out"
            grep -q 'fn=.*logicalrep_write_' "$f" && cp "$f" "$keep/$name/walsender.out"
            grep -q 'fn=.*pg_try_advisory_lock' "$f" && cp "$f" "$keep/$name/backend.out"
        done
    fi
done
