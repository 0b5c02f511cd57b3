#!/usr/bin/env bash
# A large UPDATE's cost with its capture, in instructions (callgrind): exact,
# whatever the machine's load, for comparing revisions of the capture
# functions side by side.
#
# One throwaway PostgreSQL cluster (see lib/scratch_cluster.sh) holding
# `accounts` of the revert bench (40,000 rows, 4 recorded columns), `wide`
# (16 columns) and `wide60` (61 columns), 40,000 rows each, audited by
# `pgtrail apply`. The cluster is copied once per variant, with that
# variant's SQL file (e.g. another revision's functions/20_capture.sql) run
# in it and the capture functions generated again. Each measurement is a
# single-user backend (`postgres --single`) under `valgrind
# --tool=callgrind` on a fresh copy of a variant's cluster, running one
# UPDATE of 20,000 rows between BEGIN and ROLLBACK:
#   A   accounts, one column      A2  accounts, two columns
#   W   wide, one column          W3  wide, three columns
#   W60 wide60, one column
# The count is of the whole statement, the UPDATE itself included.
#
# usage: bench/capture_instructions.sh [--cases A,W] PGTRAIL_BINARY NAME=SQL_FILE ...
#   e.g. git show REV:crates/capture/sql/functions/20_capture.sql > before.sql
#        bench/capture_instructions.sh target/release/pgtrail \
#            before=before.sql after=crates/capture/sql/functions/20_capture.sql
# Needs valgrind and the server binaries (PGTRAIL_PG_BIN or pg_config); some
# 40 s a measurement.
set -euo pipefail

cases=A,A2,W,W3,W60
while [[ $# -gt 0 && "$1" == --* ]]; do
    case "$1" in
        --cases) cases="$2"; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[[ $# -ge 2 ]] || { sed -n '2,24p' "$0"; exit 2; }
pgtrail="$(realpath "$1")"
shift

. "$(dirname "$0")/lib/scratch_cluster.sh"
scratch_cluster capture-instructions out scripts -- "shared_buffers = 256MB"
chmod 1777 "$root/out"
psql=("$bin/psql" "${pg[@]}" -X -q -v ON_ERROR_STOP=1 -d cv)

"$bin/createdb" "${pg[@]}" cv
"${psql[@]}" -v accounts=40000 -f "$(dirname "$0")/sql/revert_accounts.sql"
wide_table() { # NAME TEXT_COLUMNS
    "${psql[@]}" -c "CREATE TABLE $1 (id int PRIMARY KEY, $(for i in $(seq 1 "$2"); do printf 'c%d text, ' "$i"; done) n int)" \
        -c "INSERT INTO $1 SELECT g, $(for i in $(seq 1 "$2"); do printf "'v%d-' || g, " "$i"; done) g FROM generate_series(1, 40000) g"
}
wide_table wide 14
wide_table wide60 59
printf '[capture]\ninclude = ["accounts", "wide", "wide60"]\nignore_columns = ["updated_at"]\n' > "$root/pgtrail.toml"
"$pgtrail" apply --config "$root/pgtrail.toml" --database-url "host=$root port=$port user=postgres dbname=cv" >/dev/null
"${psql[@]}" -c "VACUUM ANALYZE"
statement() {
    case "$1" in
        A) echo 'UPDATE accounts SET email = $$x$$ || email WHERE id <= 20000' ;;
        A2) echo 'UPDATE accounts SET email = $$x$$ || email, name = $$y$$ || name WHERE id <= 20000' ;;
        W) echo 'UPDATE wide SET c3 = $$x$$ || c3 WHERE id <= 20000' ;;
        W3) echo 'UPDATE wide SET c3 = $$x$$ || c3, c7 = c7 || $$z$$, n = n + 1 WHERE id <= 20000' ;;
        W60) echo 'UPDATE wide60 SET c3 = $$x$$ || c3 WHERE id <= 20000' ;;
        *) echo "unknown case $1" >&2; exit 2 ;;
    esac
}
# (Single-user mode reads one command a line.)
for case_ in ${cases//,/ }; do
    printf 'BEGIN\n%s\nROLLBACK\n' "$(statement "$case_")" > "$root/scripts/$case_"
done
as_server "$bin/pg_ctl" -D "$root/data" -m fast stop >/dev/null

names=()
for spec in "$@"; do
    name="${spec%%=*}"
    names+=("$name")
    cp -a "$root/data" "$root/variant-$name"
    as_server "$bin/pg_ctl" -D "$root/variant-$name" -l "$root/log" -w start >/dev/null
    "${psql[@]}" -f "${spec#*=}" >/dev/null 2>&1
    "${psql[@]}" -c "SELECT pgtrail._compile_all()" -c "CHECKPOINT" >/dev/null
    as_server "$bin/pg_ctl" -D "$root/variant-$name" -m fast stop >/dev/null
done

printf '%-6s %-12s %16s\n' case variant instructions
for case_ in ${cases//,/ }; do
    for name in "${names[@]}"; do
        copy="$root/run" out="$root/out/$name.$case_"
        rm -rf "$copy"
        cp -a "$root/variant-$name" "$copy"
        as_server valgrind --tool=callgrind --callgrind-out-file="$out" \
            "$bin/postgres" --single -D "$copy" cv < "$root/scripts/$case_" > "$out.stdout" 2>&1
        if grep -q ERROR "$out.stdout"; then
            echo "capture_instructions: $name $case_ failed:" >&2
            grep ERROR "$out.stdout" >&2
            exit 1
        fi
        printf '%-6s %-12s %16s\n' "$case_" "$name" "$(awk '/^(summary|totals):/ { print $2; exit }' "$out")"
    done
done
