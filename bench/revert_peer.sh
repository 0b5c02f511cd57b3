#!/usr/bin/env bash
# pgtrail's revert beside pgVolvra's undo (issue 14's closest peer), the same data on the same
# server: one 100,000-row UPDATE and 1,000 two-row transactions, each reverted in BEGIN ...
# ROLLBACK in a new session, backend CPU read from /proc/self/schedstat around the call.
#
# Usage: bench/revert_peer.sh setup|workload|rounds N [FIRST]|teardown|all N
# Needs: a PostgreSQL superuser connection ($PGHOST/$PGPORT/$PGUSER, default 127.0.0.1:5432
# postgres), a pgtrail binary ($PGTRAIL, default target/release/pgtrail) and pgVolvra's install
# script ($PEER_SQL: its sql/volvra.sql; not part of this repository). Results go to
# $OUT (default revert_peer.tsv) in a working directory ($WORK, default a new temporary one).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PGTRAIL=${PGTRAIL:-$root/target/release/pgtrail}
PGTRAIL=$(realpath -m "$PGTRAIL")
PEER_SQL=${PEER_SQL:?set PEER_SQL to the peer install script (pgVolvra sql/volvra.sql)}
PEER_SQL=$(realpath -m "$PEER_SQL")
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
WORK=${WORK:-$(mktemp -d)}
cd "$WORK"
echo "working directory: $WORK" >&2
P="psql -v ON_ERROR_STOP=1 -q -X"
URL="postgres://$PGUSER@$PGHOST:$PGPORT"
OUT=${OUT:-revert_peer.tsv}

# The bench's schema (bench/src/bin/revert.rs): accounts and events, 300,000 accounts.
schema=(-v accounts=300000 -f "$root/bench/sql/revert_accounts.sql")
cat > pgtrail.toml <<'TOML'
[capture]
include = ["accounts", "events"]
ignore_columns = ["updated_at"]
TOML

setup_pgtrail() {
  $P -c "DROP DATABASE IF EXISTS revpeer_pgtrail" -c "CREATE DATABASE revpeer_pgtrail"
  $P -d revpeer_pgtrail "${schema[@]}"
  "$PGTRAIL" apply --config pgtrail.toml --database-url $URL/revpeer_pgtrail
  $P -d revpeer_pgtrail -c "VACUUM ANALYZE"
}
setup_volvra() {
  $P -c "DROP DATABASE IF EXISTS revpeer_volvra" -c "CREATE DATABASE revpeer_volvra"
  $P -d revpeer_volvra "${schema[@]}"
  $P -d revpeer_volvra -f "$PEER_SQL"
  $P -d revpeer_volvra -c "SELECT volvra.enable('public.accounts')" -c "SELECT volvra.enable('public.events')"
  $P -d revpeer_volvra -c "VACUUM ANALYZE"
}

small_sql() { # PRODUCT: 1,000 transactions of 2 rows (one account renamed, one event inserted)
  for i in $(seq 0 999); do
    id=$((100001 + i))
    if [ "$1" = pgtrail ]; then
      echo "BEGIN; SELECT pgtrail.set_context(actor_name => 'clerk-$((i % 20))', reason => 'ticket $i') \\g /dev/null
UPDATE accounts SET name = 'Renamed $i' WHERE id = $id; INSERT INTO events (account_id, kind) VALUES ($id, 'renamed');
INSERT INTO pg_temp.txids VALUES (txid_current()); COMMIT;"
    else
      echo "BEGIN; SET LOCAL volvra.actor = 'clerk-$((i % 20))';
UPDATE accounts SET name = 'Renamed $i' WHERE id = $id; INSERT INTO events (account_id, kind) VALUES ($id, 'renamed'); COMMIT;"
    fi
  done
}

# One 100,000-row transaction (the bench's UPDATE of accounts.email), then the 1,000 small ones
# on accounts the bulk one did not touch.
workload_pgtrail() {
  small_sql pgtrail > small-pgtrail.sql
  $P -d revpeer_pgtrail -At <<'EOF' > state-pgtrail.env
BEGIN;
SELECT pgtrail.set_context(actor_name => 'batch_script@system') \g /dev/null
UPDATE accounts SET email = lower(name) || '@broken.test' WHERE id <= 100000;
SELECT 'PG_BULK_TXID=' || txid_current();
COMMIT;
CREATE TEMP TABLE txids (txid bigint);
\i small-pgtrail.sql
SELECT 'PG_SMALL_TXIDS=''' || json_agg(txid ORDER BY txid) || '''' FROM txids;
EOF
  $P -d revpeer_pgtrail -c "VACUUM ANALYZE"
}
workload_volvra() {
  small_sql volvra > small-volvra.sql
  $P -d revpeer_volvra -At <<'EOF' > state-volvra.env
SELECT 'VV_T0=''' || clock_timestamp() || '''';
BEGIN;
SET LOCAL volvra.actor = 'batch_script@system';
UPDATE accounts SET email = lower(name) || '@broken.test' WHERE id <= 100000;
COMMIT;
SELECT 'VV_T1=''' || clock_timestamp() || '''';
\i small-volvra.sql
SELECT 'VV_T2=''' || clock_timestamp() || '''';
EOF
  $P -d revpeer_volvra -c "VACUUM ANALYZE"
}

# measure DB PRODUCT CASE WHAT 'EXPR AS n FROM CALL' CHECK: one new session; backend CPU from
# /proc/self/schedstat (first field, ns on CPU) read right before and after the call, in BEGIN ... ROLLBACK.
measure() {
  local db=$1 product=$2 case_=$3 what=$4 call=$5 check=$6
  $P -d "$db" -At -F$'\t' <<EOF >> "$OUT"
SET work_mem = '64MB';
SET client_min_messages = warning;
BEGIN;
SELECT split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint AS c0,
       extract(epoch FROM clock_timestamp()) AS w0 \gset
SELECT $call \gset
SELECT split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint AS c1,
       extract(epoch FROM clock_timestamp()) AS w1 \gset
SELECT '$ROUND', '$product', '$case_', '$what', :n,
       round((:c1 - :c0) / 1e6, 1) AS cpu_ms, round((:w1 - :w0) * 1000) AS wall_ms,
       ($check) AS check_after,
       (SELECT string_agg(DISTINCT mode, ',') FROM pg_locks
         WHERE pid = pg_backend_pid() AND locktype = 'relation'
           AND relation IN ('accounts'::regclass, 'events'::regclass)) AS table_locks,
       '$(cut -d' ' -f1-3 /proc/loadavg)';
ROLLBACK;
EOF
}

pgtrail_cases() {
  local db=revpeer_pgtrail
  measure $db pgtrail bulk apply "coalesce(sum(rows), 0) AS n FROM pgtrail.revert('{\"txids\": [$PG_BULK_TXID]}', 'refuse', 'bench') WHERE step IS NOT NULL" \
    "SELECT count(*) FROM accounts WHERE email LIKE '%@broken.test'"
  measure $db pgtrail bulk plan "coalesce(sum(rows), 0) AS n FROM pgtrail.revert_plan('{\"txids\": [$PG_BULK_TXID]}') WHERE step IS NOT NULL" "NULL"
  measure $db pgtrail small apply "coalesce(sum(rows), 0) AS n FROM pgtrail.revert('{\"txids\": $PG_SMALL_TXIDS}', 'refuse', 'bench') WHERE step IS NOT NULL" \
    "SELECT count(*) FROM events"
  measure $db pgtrail small plan "coalesce(sum(rows), 0) AS n FROM pgtrail.revert_plan('{\"txids\": $PG_SMALL_TXIDS}') WHERE step IS NOT NULL" "NULL"
}

volvra_cases() {
  local db=revpeer_volvra
  measure $db volvra bulk apply "count(*) AS n FROM volvra.undo(target => 'public.accounts', from_ts => '$VV_T0', to_ts => '$VV_T1', confirm => true, max_rows => 200000)" \
    "SELECT count(*) FROM accounts WHERE email LIKE '%@broken.test'"
  measure $db volvra bulk preview "count(*) AS n FROM volvra.preview_undo(target => 'public.accounts', from_ts => '$VV_T0', to_ts => '$VV_T1')" "NULL"
  measure $db volvra small apply "count(*) AS n FROM volvra.undo(tables => ARRAY['public.accounts', 'public.events']::regclass[], from_ts => '$VV_T1', to_ts => '$VV_T2', confirm => true)" \
    "SELECT count(*) FROM events"
  measure $db volvra small preview "count(*) AS n FROM volvra.preview_undo(tables => ARRAY['public.accounts', 'public.events']::regclass[], from_ts => '$VV_T1', to_ts => '$VV_T2')" "NULL"
}

rounds() { # N [first-round-number]
  source ./state-pgtrail.env; source ./state-volvra.env
  local first=${2:-1}
  for r in $(seq "$first" $((first + $1 - 1))); do
    ROUND=$r
    # Rolled-back reverts leave dead rows in each trail: vacuum both before every round (not timed).
    $P -d revpeer_pgtrail -c "VACUUM"; $P -d revpeer_volvra -c "VACUUM"
    echo "round $r: $(uptime)" | tee -a rounds.log >&2
    if (( r % 2 )); then pgtrail_cases; volvra_cases; else volvra_cases; pgtrail_cases; fi
  done
}

teardown() {
  for db in revpeer_pgtrail revpeer_volvra; do $P -c "DROP DATABASE IF EXISTS $db"; done
  # the cluster-wide roles the two installs created
  for r in $($P -At -c "SELECT rolname FROM pg_roles WHERE rolname LIKE 'pgtrail\_revpeer\_pgtrail%' OR rolname IN ('volvra_admin', 'volvra_operator', 'volvra_viewer') ORDER BY rolname DESC"); do
    $P -c "DROP ROLE \"$r\""
  done
}

case ${1:-} in
  setup) setup_pgtrail; setup_volvra ;;
  setup_pgtrail|setup_volvra|workload_pgtrail|workload_volvra|teardown) "$1" ;;
  workload) workload_pgtrail; workload_volvra ;;
  rounds) rounds "${2:-4}" "${3:-1}" ;;
  all) setup_pgtrail; setup_volvra; workload_pgtrail; workload_volvra; rounds "${2:-4}" ;;
  *) echo "usage: $0 setup|workload|rounds N [FIRST]|teardown|all N" >&2; exit 2 ;;
esac
