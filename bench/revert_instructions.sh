#!/usr/bin/env bash
# A revert's cost in instructions (callgrind): exact, whatever the machine's
# load, for comparing revisions of the revert functions side by side.
#
# One throwaway PostgreSQL cluster (see lib/scratch_cluster.sh) holding the
# revert bench's data (bench/src/bin/revert.rs): `accounts` (200,000 rows)
# and `events`, audited by `pgtrail apply`; one transaction updating
# 100,000 accounts' email (the bulk case) and 1,000 transactions each
# renaming an account and inserting an event (the small case, 2,000 rows).
# The cluster is stopped and copied once per variant, with that variant's
# SQL file (e.g. another revision's functions/70_revert.sql) run in it.
# Each measurement is a single-user backend (`postgres --single`) under
# `valgrind --tool=callgrind` on a fresh copy of a variant's cluster:
#   A: revert_plan(case), then BEGIN; revert(case); ROLLBACK
#   B: revert_plan(case)
# A minus B is the revert (it plans again, then writes), in instructions.
# Runs of one variant and script give the same count to a few hundred
# instructions, so one round is enough; the instructions do not count the
# kernel's time (files made for working tables, pages copied in and out).
#
# usage: bench/revert_instructions.sh [--cases small,bulk] PGTRAIL_BINARY NAME=SQL_FILE ...
#   e.g. git show REV:crates/capture/sql/functions/70_revert.sql > before.sql
#        bench/revert_instructions.sh target/release/pgtrail \
#            before=before.sql after=crates/capture/sql/functions/70_revert.sql
# Needs valgrind and the server binaries (PGTRAIL_PG_BIN or pg_config). The
# bulk case takes some 5 minutes a variant under callgrind, the small one 30 s.
set -euo pipefail

cases=small,bulk
while [[ $# -gt 0 && "$1" == --* ]]; do
    case "$1" in
        --cases) cases="$2"; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[[ $# -ge 2 ]] || { sed -n '2,26p' "$0"; exit 2; }
pgtrail="$(realpath "$1")"
shift

. "$(dirname "$0")/lib/scratch_cluster.sh"
scratch_cluster revert-instructions out scripts -- "work_mem = 64MB" "shared_buffers = 256MB"
chmod 1777 "$root/out"
psql=("$bin/psql" "${pg[@]}" -X -q -v ON_ERROR_STOP=1 -d rv)

"$bin/createdb" "${pg[@]}" rv
"${psql[@]}" -v accounts=200000 -f "$(dirname "$0")/sql/revert_accounts.sql"
printf '[capture]\ninclude = ["accounts", "events"]\nignore_columns = ["updated_at"]\n' > "$root/pgtrail.toml"
"$pgtrail" apply --config "$root/pgtrail.toml" --database-url "host=$root port=$port user=postgres dbname=rv" >/dev/null
"${psql[@]}" -c "VACUUM ANALYZE"
bulk=$("${psql[@]}" -At <<'SQL'
BEGIN;
SELECT pgtrail.set_context(actor_name => 'batch_script@system') \g /dev/null
UPDATE accounts SET email = lower(name) || '@broken.test' WHERE id <= 100000;
SELECT txid_current();
COMMIT;
SQL
)
for i in $(seq 0 999); do
    printf "BEGIN; SELECT pgtrail.set_context(actor_name => 'clerk-%d', reason => 'ticket %d') \\\\g /dev/null\n" $((i % 20)) "$i"
    printf "UPDATE accounts SET name = 'Renamed %d' WHERE id = %d; INSERT INTO events (account_id, kind) VALUES (%d, 'renamed'); COMMIT;\n" \
        "$i" $((150001 + i)) $((150001 + i))
done | "${psql[@]}" >/dev/null
small=$("${psql[@]}" -At -c "SELECT jsonb_build_object('txids', jsonb_agg(DISTINCT txid ORDER BY txid))::text
                              FROM pgtrail.change WHERE table_id = (SELECT id FROM pgtrail.audited_table WHERE table_name = 'events')")
# (Single-user mode reads one command a line.)
selector_of() { if [[ "$1" == bulk ]]; then printf '{"txids": [%s]}' "$bulk"; else printf '%s' "$small"; fi; }
for case_ in ${cases//,/ }; do
    sel=$(selector_of "$case_")
    printf "SELECT count(*) FROM pgtrail.revert_plan('%s')\nBEGIN\nSELECT count(*) FROM pgtrail.revert('%s', 'refuse', 'bench')\nROLLBACK\n" \
        "$sel" "$sel" > "$root/scripts/$case_.A"
    printf "SELECT count(*) FROM pgtrail.revert_plan('%s')\n" "$sel" > "$root/scripts/$case_.B"
done
as_server "$bin/pg_ctl" -D "$root/data" -m fast stop >/dev/null

# One copy of the cluster per variant, its SQL file run in it.
names=()
for spec in "$@"; do
    name="${spec%%=*}"
    names+=("$name")
    cp -a "$root/data" "$root/variant-$name"
    as_server "$bin/pg_ctl" -D "$root/variant-$name" -l "$root/log" -w start >/dev/null
    "${psql[@]}" -f "${spec#*=}" >/dev/null 2>&1
    "${psql[@]}" -c "CHECKPOINT"
    as_server "$bin/pg_ctl" -D "$root/variant-$name" -m fast stop >/dev/null
done

# Instructions of one single-user run of SCRIPT on a fresh copy of VARIANT.
instructions() {
    local variant="$1" script="$2" copy="$root/run" out="$root/out/$1.$(basename "$2")"
    rm -rf "$copy"
    cp -a "$root/variant-$variant" "$copy"
    as_server valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$bin/postgres" --single -D "$copy" rv < "$script" > "$out.stdout" 2> "$out.stderr"
    if grep -q ERROR "$out.stdout" "$out.stderr"; then
        echo "revert_instructions: $variant $(basename "$script") failed:" >&2
        grep ERROR "$out.stdout" "$out.stderr" >&2
        exit 1
    fi
    awk '/^(summary|totals):/ { print $2; exit }' "$out"
}

printf '%-8s %-12s %16s %16s %16s\n' case variant "plan+revert" plan revert
for case_ in ${cases//,/ }; do
    for name in "${names[@]}"; do
        a=$(instructions "$name" "$root/scripts/$case_.A")
        b=$(instructions "$name" "$root/scripts/$case_.B")
        printf '%-8s %-12s %16d %16d %16d\n' "$case_" "$name" "$a" "$b" $((a - b))
    done
done
