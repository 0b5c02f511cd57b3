# What the bench's shell scripts share (sourced, not run): a throwaway
# PostgreSQL cluster, the TPC-B scripts they run with pgbench, and the
# databases they compare, each set up from a spec.
#
# scratch_cluster NAME [SUBDIR...] [-- EXTRA_CONF_LINE...]
#   Makes $root (a temporary directory named for NAME, with SUBDIRs), a
#   cluster in $root/data (wal_level = logical, autovacuum and jit off,
#   synchronous_commit off, a socket in $root only, a random port) and starts
#   it; stops and removes it when the script exits. Sets bin, root, port,
#   pg (psql's connection options) and as_server (runs a command as the
#   server's OS user when we are root). Server binaries: PGTRAIL_PG_BIN, else
#   pg_config's.
#
# tpcb_script SET_CONTEXT_LINE [SCALE]
#   Prints pgbench's TPC-B-like script, the line (or nothing) after BEGIN.
#
# scratch_databases SPEC...
#   SPEC is DB=none (no audit), DB=bare:SQL_FILE (no pgtrail; the file
#   defines what is measured), or DB=PGTRAIL_BINARY:MODE[:OUTSIDE[:SQL_FILE]]
#   (`pgtrail apply` of that binary, capture mode MODE, [context]
#   outside_transaction OUTSIDE, then SQL_FILE run in the database). Each
#   database is made by `pgbench -i -s 1`. Sets dbs (their names, in order)
#   and plain (the names of those without audit).

scratch_cluster() {
    local name="$1" extra=()
    shift
    bin="${PGTRAIL_PG_BIN:-$(pg_config --bindir)}"
    root="$(mktemp -d "${TMPDIR:-/tmp}/pgtrail-$name.XXXXXX")"
    chmod 755 "$root"
    port=$((50000 + RANDOM % 10000))
    pg=(-h "$root" -p "$port" -U postgres)
    while [[ $# -gt 0 ]]; do
        if [[ "$1" == -- ]]; then
            shift
            extra=("$@")
            break
        fi
        mkdir -p "$root/$1"
        shift
    done
    [[ $(id -u) == 0 ]] && chown -R postgres "$root"
    trap scratch_cluster_cleanup EXIT
    as_server "$bin/initdb" -D "$root/data" -U postgres -A trust >/dev/null
    {
        printf '%s\n' "wal_level = logical" "autovacuum = off" "jit = off" "synchronous_commit = off" \
            "unix_socket_directories = '$root'" "listen_addresses = ''" "port = $port" "max_wal_size = 4GB"
        [[ ${#extra[@]} -gt 0 ]] && printf '%s\n' "${extra[@]}"
    } >> "$root/data/postgresql.conf"
    as_server "$bin/pg_ctl" -D "$root/data" -l "$root/log" -w start >/dev/null
}

as_server() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

scratch_cluster_cleanup() {
    as_server "$bin/pg_ctl" -D "$root/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$root"
}

tpcb_script() {
    local scale="${2:-1}"
    printf '\\set aid random(1, %d)\n\\set bid random(1, %d)\n\\set tid random(1, %d)\n\\set delta random(-5000, 5000)\nBEGIN;\n%s' \
        $((100000 * scale)) "$scale" $((10 * scale)) "$1"
    printf 'UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;\n'
    printf 'SELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n'
    printf 'UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;\n'
    printf 'UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;\n'
    printf 'INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);\nEND;\n'
}

scratch_databases() {
    local spec db rest pgtrail mode outside sql
    dbs=()
    declare -gA plain=()
    for spec in "$@"; do
        db="${spec%%=*}"
        rest="${spec#*=}"
        IFS=: read -r pgtrail mode outside sql <<<"$rest"
        dbs+=("$db")
        "$bin/createdb" "${pg[@]}" "$db"
        "$bin/pgbench" "${pg[@]}" -i -s 1 -q "$db" >/dev/null 2>&1
        if [[ "$pgtrail" == none ]]; then
            plain[$db]=1
            continue
        fi
        if [[ "$pgtrail" == bare ]]; then
            "$bin/psql" "${pg[@]}" -X -q -v ON_ERROR_STOP=1 -d "$db" -f "$mode" >/dev/null
            continue
        fi
        {
            printf '[capture]\nmode = "%s"\n' "${mode:-trigger}"
            [[ -n "${outside:-}" ]] && printf '[context]\noutside_transaction = "%s"\n' "$outside"
        } > "$root/$db.toml"
        "$pgtrail" apply --config "$root/$db.toml" --database-url "host=$root port=$port user=postgres dbname=$db" >/dev/null
        if [[ -n "${sql:-}" ]]; then
            "$bin/psql" "${pg[@]}" -X -q -v ON_ERROR_STOP=1 -d "$db" -f "$sql" >/dev/null
        fi
    done
}
