#!/usr/bin/env bash
# `pgtrail revert --yes` end to end, builds of pgtrail side by side: what a
# person running the command waits for and what it costs the database.
#
# One throwaway PostgreSQL cluster (see lib/scratch_cluster.sh) holding the
# revert bench's tables (sql/revert_accounts.sql: `accounts`, 200,000 rows,
# and `events`), audited by `pgtrail apply` of the first build. Each round,
# for each build in an order turned round by round: one transaction updates
# the email of 100,000 accounts (a batch script's mistake, as in
# src/bin/revert.rs's bulk case), then that build runs
#   pgtrail revert --tx TXID --reason bench --yes
# Measured per run: wall time, the CLI process's CPU (user + system), and
# its backend's CPU, summed from the server's own per-statement figures
# (log_statement_stats, each statement's user and system time, exact to the
# microsecond; the runs are told apart by their application_name). Medians
# per build at the end, in µs a row.
#
# usage: bench/revert_cli.sh [--rounds N] [--rows N] NAME=PGTRAIL_BINARY ...
#   e.g. (git worktree add ../before REV && cd ../before && cargo build --release -p pgtrail-cli)
#        bench/revert_cli.sh before=../before/target/release/pgtrail after=target/release/pgtrail
# Needs the server binaries (PGTRAIL_PG_BIN or pg_config).
set -euo pipefail

rounds=4
rows=100000
while [[ $# -gt 0 && "$1" == --* ]]; do
    case "$1" in
        --rounds) rounds="$2"; shift 2 ;;
        --rows) rows="$2"; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[[ $# -ge 1 ]] || { sed -n '2,21p' "$0"; exit 2; }
names=()
binaries=()
for spec in "$@"; do
    names+=("${spec%%=*}")
    binaries+=("$(realpath "${spec#*=}")")
done

. "$(dirname "$0")/lib/scratch_cluster.sh"
scratch_cluster revert-cli -- "work_mem = 64MB" "shared_buffers = 256MB" "log_line_prefix = '%a|'"
psql=("$bin/psql" "${pg[@]}" -X -q -v ON_ERROR_STOP=1 -d rv)
url="host=$root port=$port user=postgres dbname=rv"

"$bin/createdb" "${pg[@]}" rv
"${psql[@]}" -v accounts=200000 -f "$(dirname "$0")/sql/revert_accounts.sql"
printf '[capture]\ninclude = ["accounts", "events"]\nignore_columns = ["updated_at"]\n' > "$root/pgtrail.toml"
"${binaries[0]}" apply --config "$root/pgtrail.toml" --database-url "$url" >/dev/null
"${psql[@]}" -c "VACUUM ANALYZE" -c "ALTER DATABASE rv SET log_statement_stats = on"

# The backend CPU of application APP in the server's log, in seconds: the
# sum of its statements' "N s user, M s system" lines.
backend_cpu() {
    awk -v app="$1|" '
        index($0, app) == 1 { mine = 1; next }
        /^[^\t!]/ { mine = 0 }
        mine && /s user, .* s system/ && !/total\]/ {
            for (i = 1; i <= NF; i++) {
                if ($(i + 1) == "s" && $(i + 2) ~ /^user/) cpu += $i
                if ($(i + 1) == "s" && $(i + 2) ~ /^system/) cpu += $i
            }
        }
        END { printf "%.6f", cpu }' "$root/log"
}

results="$root/results"
: > "$results"
run=0
for round in $(seq 1 "$rounds"); do
    count=${#names[@]}
    for offset in $(seq 0 $((count - 1))); do
        i=$(((offset + round - 1) % count))
        run=$((run + 1))
        txid=$("${psql[@]}" -At <<SQL
BEGIN;
SELECT pgtrail.set_context(actor_name => 'batch_script@system') \g /dev/null
UPDATE accounts SET email = 'run$run.' || id || '@broken.test' WHERE id <= $rows;
SELECT txid_current();
COMMIT;
SQL
)
        "${psql[@]}" -c "CHECKPOINT"
        app="revert-cli-$run"
        start=$(date +%s.%N)
        cli=$( { /usr/bin/env TIMEFORMAT='%U %S' PGAPPNAME="$app" bash -c 'time "$@" >/dev/null' _ \
                 "${binaries[$i]}" revert --tx "$txid" --reason bench --yes --database-url "$url"; } 2>&1 | tail -1)
        end=$(date +%s.%N)
        sleep 0.5 # (the backend's last lines reach the log)
        backend=$(backend_cpu "$app")
        wall=$(echo "$end - $start" | bc -l)
        cli_cpu=$(echo "$cli" | awk '{ printf "%.6f", $1 + $2 }')
        restored=$("${psql[@]}" -At -c "SELECT count(*) FROM accounts WHERE id <= $rows AND email NOT LIKE 'run$run.%'")
        [[ "$restored" == "$rows" ]] || { echo "run $run (${names[$i]}): $restored of $rows rows put back" >&2; exit 1; }
        printf '%s %s %s %s %s\n' "${names[$i]}" "$round" "$wall" "$cli_cpu" "$backend" >> "$results"
        printf 'round %s %-10s wall %6.2f s  cli %5.2f s  backend %5.2f s  (%.1f µs a row in all)\n' \
            "$round" "${names[$i]}" "$wall" "$cli_cpu" "$backend" \
            "$(echo "($cli_cpu + $backend) * 1000000 / $rows" | bc -l)" >&2
    done
done

python3 - "$results" "$rows" <<'PY'
import statistics, sys
rows = int(sys.argv[2])
by = {}
for line in open(sys.argv[1]):
    name, _, wall, cli, backend = line.split()
    by.setdefault(name, []).append((float(wall), float(cli), float(backend)))
print(f"{'build':<10} {'runs':>4} {'wall µs/row':>12} {'cli µs/row':>11} {'backend µs/row':>15} {'cpu µs/row':>11}")
for name, runs in by.items():
    med = lambda k: statistics.median(r[k] for r in runs) * 1e6 / rows
    cpu = statistics.median(r[1] + r[2] for r in runs) * 1e6 / rows
    print(f"{name:<10} {len(runs):>4} {med(0):>12.1f} {med(1):>11.1f} {med(2):>15.1f} {cpu:>11.1f}")
PY
