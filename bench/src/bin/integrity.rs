//! Integrity benchmark: how fast `pgtrail::integrity::seal` and
//! `pgtrail::integrity::verify` go over a large trail, on one throwaway
//! cluster. See `bench/INTEGRITY.md`.
//!
//! ```text
//! cargo run --release -p pgtrail-bench --bin integrity -- [--changes N] [--quick] [--reps N]
//! ```
//!
//! 1. Builds a trail of `--changes` changes through the real capture
//!    triggers, in cycles of 100,000 changes (three transactions of 30,000 to
//!    35,000 changes, each with `pgtrail.set_context`): INSERTs into `acct`
//!    (15 columns) and `event`, 2-column UPDATEs of `acct` and `item`,
//!    INSERTs into `item` and DELETEs from `event`.
//! 2. Copies that database `--reps` times (`CREATE DATABASE ... TEMPLATE`)
//!    and seals each copy once: the first seal appends every change.
//! 3. Verifies one copy `--reps` times (full recompute).
//! 4. Unless `--no-breakdown`: where the time of a seal goes, by reading the
//!    same rows again while doing a little more of the seal's work each time.
//! 5. Adds `--more` changes to each copy and seals again (incremental), shows
//!    the plan of that seal's query, then verifies the whole log `--reps`
//!    times again.
//!
//! Every figure has wall-clock time, the CPU time of this process (the
//! client, one thread: the same current-thread runtime as the `pgtrail` CLI),
//! of the server backend, and of all server processes.

use std::collections::BTreeMap;
use std::fs;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures_util::TryStreamExt;
use pgtrail::integrity::crypto::{Hash, LeafBuilder, Seed, SignerKey, Tree, field_commitment, field_salt};
use pgtrail::integrity::{SealReport, VerifyOptions, seal, verify};
use pgtrail_bench::procstat;
use pgtrail_bench::stats::median;
use pgtrail_cluster::Cluster;
use serde_json::value::RawValue;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

/// The target of the issue, for seal and verify alike.
const TARGET_PER_SECOND: f64 = 300_000.0;

/// Changes per build cycle.
const CYCLE: i64 = 100_000;
/// Rows of `acct` and of `item` before pgtrail is applied (not in the trail).
const PREFILL: i64 = 1_000_000;
/// Per cycle: rows inserted into `acct` (15 fields each in the trail).
const ACCT_INSERTS: i64 = 10_000;
/// Per cycle: rows inserted into `event` (4 fields each).
const EVENT_INSERTS: i64 = 25_000;
/// Per cycle: rows of `acct` updated, 2 columns (old and new: 4 fields).
const ACCT_UPDATES: i64 = 30_000;
/// Per cycle: rows inserted into `item` (5 fields each).
const ITEM_INSERTS: i64 = 10_000;
/// Per cycle: rows of `item` updated, 2 columns (4 fields).
const ITEM_UPDATES: i64 = 20_000;
/// Per cycle: rows deleted from `event`, of those the cycle inserted.
const EVENT_DELETES: i64 = 5_000;
const _: () = assert!(
    ACCT_INSERTS + EVENT_INSERTS + ACCT_UPDATES + ITEM_INSERTS + ITEM_UPDATES + EVENT_DELETES == CYCLE
);
const _: () = assert!(EVENT_DELETES <= EVENT_INSERTS && ACCT_UPDATES <= PREFILL && ITEM_UPDATES <= PREFILL);
/// Distinct actors passed to `pgtrail.set_context`.
const ACTORS: i64 = 50;
/// The database the trail is built in; the measured ones are copies of it.
const BASE_DB: &str = "trail_base";

const TABLES_DDL: &str = "
CREATE TABLE acct (
    id         bigint PRIMARY KEY,
    email      text NOT NULL,
    name       text NOT NULL,
    city       text,
    country    text,
    phone      text,
    balance    numeric(12,2),
    credit     numeric(12,2),
    score      numeric,
    created_at timestamptz,
    updated_at timestamptz,
    last_seen  timestamptz,
    note       text,
    status     text,
    tier       integer
);
CREATE TABLE item (
    id         bigint PRIMARY KEY,
    sku        text NOT NULL,
    qty        integer NOT NULL,
    price      numeric(12,2),
    updated_at timestamptz
);
CREATE TABLE event (
    id      bigint PRIMARY KEY,
    kind    text NOT NULL,
    payload text,
    at      timestamptz NOT NULL
)";

/// Rows `$1..=$2` of `acct`.
const ACCT_INSERT: &str = "
INSERT INTO acct
SELECT g,
       'user' || g || '@example.com',
       'Name ' || g,
       'City ' || (g % 1000),
       'C' || (g % 200),
       '+1-555-' || lpad((g % 10000000)::text, 7, '0'),
       (g % 100000) / 100.0,
       (g % 5000)::numeric(12,2),
       round((random() * 100)::numeric, 4),
       now() - g * interval '1 minute',
       now() - g * interval '10 seconds',
       now() - (g % 1000) * interval '1 hour',
       'note ' || md5(g::text),
       CASE WHEN g % 10 = 0 THEN 'closed' ELSE 'active' END,
       (g % 5)::integer
FROM generate_series($1::bigint, $2::bigint) AS g";

/// Rows `$1..=$2` of `item`.
const ITEM_INSERT: &str = "
INSERT INTO item
SELECT g, 'SKU-' || lpad(g::text, 9, '0'), (g % 1000)::integer, (g % 100000) / 100.0, now()
FROM generate_series($1::bigint, $2::bigint) AS g";

/// Rows `$1..=$2` of `event`.
const EVENT_INSERT: &str = "
INSERT INTO event
SELECT g, (ARRAY['login', 'logout', 'view', 'buy', 'refund'])[1 + g % 5],
       md5(g::text) || md5((g + 1)::text), now() - g * interval '1 second'
FROM generate_series($1::bigint, $2::bigint) AS g";

/// Two columns of rows `$1..=$2` of `acct`, to values that name cycle `$3`
/// (so every row really changes).
const ACCT_UPDATE: &str = "
UPDATE acct SET email = 'u' || id || '.' || $3::bigint || '@example.com', name = 'Name ' || id || ' v' || $3::bigint
WHERE id BETWEEN $1 AND $2";

const ITEM_UPDATE: &str = "UPDATE item SET qty = qty + 1, price = price + 0.01 WHERE id BETWEEN $1 AND $2";

const EVENT_DELETE: &str = "DELETE FROM event WHERE id BETWEEN $1 AND $2";

/// The query `seal` runs to read the changes of its range, copied from
/// `crates/ledger/src/leaves.rs` (`CHANGES_OF_SEAL`) for the
/// breakdown; keep the two the same.
const CHANGES_OF_SEAL: &str = "
SELECT c.id, c.txid, c.ctx, c.table_id, c.op::text,
       (extract(epoch FROM c.changed_at) * 1000000)::bigint,
       c.pk::text, c.old_pk::text, c.changed_fields::text, c.old_values::text, c.new_values::text
FROM pgtrail.change AS c
WHERE c.txid >= $1 AND c.txid < $2
  AND pg_visible_in_snapshot(c.txid::text::xid8, $3::text::pg_snapshot)
  AND ($4::text IS NULL OR NOT pg_visible_in_snapshot(c.txid::text::xid8, $4::text::pg_snapshot))
ORDER BY c.id";

/// Changes held in memory for the in-memory hashing step of the breakdown.
const SAMPLE: usize = 200_000;

#[derive(Debug, Parser)]
#[command(about = "Measure pgtrail's seal and verify over a large trail")]
struct Args {
    /// Changes in the trail, rounded up to a multiple of 100,000
    /// [default: 10,000,000, or 1,000,000 with --quick].
    #[arg(long)]
    changes: Option<i64>,
    /// Smaller run (a 1,000,000-change trail), to check that everything works.
    #[arg(long)]
    quick: bool,
    /// Changes added before the incremental seal, rounded up to a multiple of 100,000.
    #[arg(long, default_value_t = 100_000)]
    more: i64,
    /// Repetitions of each measurement; the median is reported.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Sessions building the trail at once.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Skip the breakdown of where a seal's time goes.
    #[arg(long)]
    no_breakdown: bool,
}

/// The sizes of a run, defaults filled in.
#[derive(Debug, Clone, Copy)]
struct Plan {
    cycles: i64,
    more_cycles: i64,
    reps: usize,
    workers: usize,
    breakdown: bool,
}

impl Plan {
    fn new(args: &Args) -> Result<Plan> {
        let changes = args
            .changes
            .unwrap_or(if args.quick { 1_000_000 } else { 10_000_000 });
        if changes < 1 || args.more < 1 {
            bail!("--changes and --more must be positive");
        }
        Ok(Plan {
            cycles: (changes + CYCLE - 1) / CYCLE,
            more_cycles: (args.more + CYCLE - 1) / CYCLE,
            reps: args.reps.max(1),
            workers: args.workers.max(1),
            breakdown: !args.no_breakdown,
        })
    }

    fn changes(&self) -> u64 {
        (self.cycles * CYCLE) as u64
    }

    fn more(&self) -> u64 {
        (self.more_cycles * CYCLE) as u64
    }
}

/// One thread, like the `pgtrail` CLI: the client's side of seal and verify
/// (decoding, JSON, hashing) runs on one core.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let plan = Plan::new(&args)?;
    let started = Instant::now();
    let cluster = pgtrail_bench::server::start(&[
        ("shared_buffers", "1GB"),
        ("max_wal_size", "20GB"),
        ("checkpoint_timeout", "30min"),
    ])?;
    let result = run(plan, &cluster, started).await;
    drop(cluster);
    result
}

async fn connect(cluster: &Cluster, dbname: &str) -> Result<Client> {
    pgtrail_bench::server::connect(cluster, dbname).await
}

/// CPU time so far, in clock ticks.
#[derive(Debug, Clone, Copy)]
struct Mark {
    at: Instant,
    client: u64,
    backend: u64,
    server: u64,
}

/// What one measured step cost, in seconds.
#[derive(Debug, Clone, Copy)]
struct Cost {
    wall: f64,
    /// CPU of this process (all its threads; there is one).
    client: f64,
    /// CPU of the server backend of the measured session.
    backend: f64,
    /// CPU of all server processes (backends, parallel workers, WAL writer,
    /// checkpointer, ...), the backend included.
    server: f64,
}

/// Reads the CPU time of this process, of one backend and of the server.
struct Probe {
    own_pid: i32,
    backend: i32,
    postmaster: i32,
    ticks_per_second: f64,
}

impl Probe {
    async fn new(client: &Client) -> Result<Probe> {
        let backend: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .context("pg_backend_pid()")?
            .get(0);
        let path = format!("/proc/{backend}/stat");
        let stat = fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
        let postmaster = stat_fields(&stat)
            .and_then(|f| f.get(1).and_then(|p| p.parse().ok()))
            .with_context(|| format!("parent pid in {path}"))?;
        Ok(Probe {
            own_pid: i32::try_from(std::process::id()).context("own pid")?,
            backend,
            postmaster,
            ticks_per_second: procstat::clock_ticks_per_second() as f64,
        })
    }

    fn mark(&self) -> Result<Mark> {
        Ok(Mark {
            client: procstat::cpu_ticks(self.own_pid)?,
            backend: procstat::cpu_ticks(self.backend)?,
            server: server_ticks(self.postmaster)?,
            at: Instant::now(),
        })
    }

    fn since(&self, mark: Mark) -> Result<Cost> {
        let now = self.mark()?;
        let secs = |a: u64, b: u64| a.saturating_sub(b) as f64 / self.ticks_per_second;
        Ok(Cost {
            wall: (now.at - mark.at).as_secs_f64(),
            client: secs(now.client, mark.client),
            backend: secs(now.backend, mark.backend),
            server: secs(now.server, mark.server),
        })
    }
}

/// The fields of a `/proc/<pid>/stat` line from field 3 (state) on; the
/// command name before them is in parentheses and may contain spaces.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    Some(after_comm.split_whitespace().collect())
}

/// CPU ticks of the whole server: the postmaster's own and those of its
/// children that have exited (cutime, cstime), plus those of every live
/// child (utime, stime). A child that exits during a measurement is
/// counted whole, which overstates by what it used before the start.
fn server_ticks(postmaster: i32) -> Result<u64> {
    let field =
        |fields: &[&str], i: usize| -> u64 { fields.get(i).and_then(|v| v.parse().ok()).unwrap_or(0) };
    let path = format!("/proc/{postmaster}/stat");
    let stat = fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    let fields = stat_fields(&stat).with_context(|| format!("unexpected contents of {path}"))?;
    // Field 14 (utime) is index 11 here; 15 stime, 16 cutime, 17 cstime.
    let mut total = (11..15).map(|i| field(&fields, i)).sum::<u64>();
    let parent = postmaster.to_string();
    for entry in fs::read_dir("/proc").context("list /proc")? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else {
            continue;
        };
        // Processes come and go: skip those that are gone.
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some(fields) = stat_fields(&stat) {
            if fields.get(1) == Some(&parent.as_str()) {
                total += field(&fields, 11) + field(&fields, 12);
            }
        }
    }
    Ok(total)
}

/// One figure of the summary: the costs of its repetitions.
struct Figure {
    label: String,
    changes: u64,
    costs: Vec<Cost>,
    /// Whether the 300,000 changes/s target applies.
    target: bool,
}

impl Figure {
    fn new(label: &str, changes: u64, target: bool) -> Figure {
        Figure {
            label: label.to_owned(),
            changes,
            costs: Vec::new(),
            target,
        }
    }

    fn median_of(&self, f: impl Fn(&Cost) -> f64) -> f64 {
        median(&self.costs.iter().map(f).collect::<Vec<_>>()).unwrap_or(f64::NAN)
    }

    fn wall(&self) -> f64 {
        self.median_of(|c| c.wall)
    }

    fn client(&self) -> f64 {
        self.median_of(|c| c.client)
    }
}

/// The 1-minute load average of the machine (it is shared).
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

/// Prints one measured step.
fn print_cost(what: &str, changes: u64, cost: &Cost) {
    let n = changes as f64;
    println!(
        "  {what}: {changes} changes, wall {:.2} s = {:.0}/s; client CPU {:.2} s = {:.0}/s; \
         backend CPU {:.2} s = {:.2} us/change; all server CPU {:.2} s; load average {}",
        cost.wall,
        n / cost.wall,
        cost.client,
        n / cost.client,
        cost.backend,
        cost.backend * 1e6 / n,
        cost.server,
        load_average()
    );
}

async fn run(plan: Plan, cluster: &Cluster, started: Instant) -> Result<()> {
    let admin = connect(cluster, "postgres").await?;
    let version: String = admin
        .query_one("SELECT version()", &[])
        .await
        .context("SELECT version()")?
        .get(0);
    let memory = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let cpu_model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("pgtrail integrity benchmark (seal and verify)");
    println!("  server:   {version}");
    println!("  machine:  {cpus} CPUs ({cpu_model}), {memory} memory");
    println!(
        "  settings: shared_buffers=1GB max_wal_size=20GB checkpoint_timeout=30min, others default \
         (fsync=on, synchronous_commit=on, work_mem=4MB);"
    );
    println!("            while building the trail only: fsync=off, full_page_writes=off, autovacuum=off");
    println!(
        "  plan:     trail of {} changes in {} cycles of {CYCLE} ({} sessions); {} copies sealed once each; \
         verify {} times; then {} more changes per copy, sealed again, and verify {} times; client: one thread",
        plan.changes(),
        plan.cycles,
        plan.workers,
        plan.reps,
        plan.reps,
        plan.more(),
        plan.reps
    );
    println!();

    // Build the trail.
    admin
        .batch_execute(&format!("CREATE DATABASE {BASE_DB}"))
        .await
        .context("create the base database")?;
    for sql in [
        "ALTER SYSTEM SET fsync = off",
        "ALTER SYSTEM SET full_page_writes = off",
        "ALTER SYSTEM SET autovacuum = off",
        "SELECT pg_reload_conf()",
    ] {
        admin
            .batch_execute(sql)
            .await
            .with_context(|| format!("switch durability off for the build: {sql}"))?;
    }
    let step = Instant::now();
    let mut base = connect(cluster, BASE_DB).await?;
    base.batch_execute(TABLES_DDL)
        .await
        .context("create the tables")?;
    base.execute(ACCT_INSERT, &[&1i64, &PREFILL])
        .await
        .context("prefill acct")?;
    base.execute(ITEM_INSERT, &[&1i64, &PREFILL])
        .await
        .context("prefill item")?;
    base.batch_execute("VACUUM ANALYZE")
        .await
        .context("vacuum the tables")?;
    let config =
        pgtrail::config::Config::parse("", "pgtrail.toml").context("parse the (empty) pgtrail config")?;
    pgtrail::plan::apply(&mut base, &config)
        .await
        .context("install pgtrail (pgtrail::plan::apply)")?;
    println!(
        "setup: acct and item with {PREFILL} rows each (not in the trail), event empty, pgtrail applied ({:.0} s)",
        step.elapsed().as_secs_f64()
    );

    let step = Instant::now();
    let next = Arc::new(AtomicI64::new(0));
    let mut workers = Vec::new();
    for w in 0..plan.workers {
        let client = connect(cluster, BASE_DB).await?;
        let next = Arc::clone(&next);
        workers.push(tokio::spawn(async move {
            build_worker(client, plan.cycles, next, w == 0).await
        }));
    }
    let mut built = 0u64;
    for w in workers {
        built += w.await.context("join a build worker")??;
    }
    let build_secs = step.elapsed().as_secs_f64();
    if built != plan.changes() {
        bail!("built {built} changes, expected {}", plan.changes());
    }
    println!(
        "build: {built} changes in {} transactions, {build_secs:.0} s ({:.0} changes/s, {} sessions)",
        plan.cycles * 3,
        built as f64 / build_secs,
        plan.workers
    );

    let step = Instant::now();
    for sql in [
        "ALTER SYSTEM RESET fsync",
        "ALTER SYSTEM RESET full_page_writes",
        "ALTER SYSTEM RESET autovacuum",
        "SELECT pg_reload_conf()",
    ] {
        admin
            .batch_execute(sql)
            .await
            .with_context(|| format!("switch durability back on: {sql}"))?;
    }
    base.batch_execute("VACUUM ANALYZE")
        .await
        .context("VACUUM ANALYZE")?;
    base.batch_execute("CHECKPOINT").await.context("CHECKPOINT")?;
    let recorded: i64 = base
        .query_one("SELECT count(*) FROM pgtrail.change", &[])
        .await
        .context("count the trail")?
        .get(0);
    if recorded as u64 != plan.changes() {
        bail!("the trail holds {recorded} changes, expected {}", plan.changes());
    }
    let trail_bytes: i64 = base
        .query_one(
            "SELECT pg_total_relation_size('pgtrail.change') + pg_total_relation_size('pgtrail.transaction')",
            &[],
        )
        .await
        .context("size of the trail")?
        .get(0);
    println!(
        "vacuum: VACUUM ANALYZE + CHECKPOINT {:.0} s; trail {recorded} changes, {:.0} MiB ({:.0} bytes/change \
         incl. indexes)",
        step.elapsed().as_secs_f64(),
        trail_bytes as f64 / 1_048_576.0,
        trail_bytes as f64 / recorded as f64
    );
    // A template must have no sessions.
    drop(base);
    println!();

    let key = SignerKey::generate("pgtrail-bench").context("generate a signing key")?;
    let mut figures: Vec<Figure> = Vec::new();
    let mut seal_bytes: Vec<f64> = Vec::new();
    let copies: Vec<String> = (1..=plan.reps).map(|r| format!("sealed_{r}")).collect();

    // First seal: one per fresh copy.
    println!(
        "== first seal: all {} changes, once in each of {} fresh copies",
        plan.changes(),
        plan.reps
    );
    let mut first = Figure::new("seal, first (whole trail)", plan.changes(), true);
    let mut first_split: Vec<(f64, f64)> = Vec::new();
    let mut note = String::new();
    for db in &copies {
        let copy_start = Instant::now();
        copy_database(&admin, BASE_DB, db).await?;
        let copy_secs = copy_start.elapsed().as_secs_f64();
        let mut client = connect(cluster, db).await?;
        let probe = Probe::new(&client).await?;
        let (report, cost, read_secs) = measured_seal(&mut client, &probe, &key).await?;
        if report.appended != plan.changes() || report.tree_size != plan.changes() {
            bail!(
                "seal of {db} appended {} changes (log size {}), expected {}",
                report.appended,
                report.tree_size,
                plan.changes()
            );
        }
        let bytes = sealed_bytes(&client).await?;
        seal_bytes.push(bytes as f64 / plan.changes() as f64);
        print_cost(
            &format!("{db} (copied in {copy_secs:.0} s)"),
            plan.changes(),
            &cost,
        );
        print_split(read_secs, &cost);
        first_split.push((read_secs, cost.wall - read_secs));
        println!(
            "    pgtrail.seal + pgtrail.seal_leaves: {:.1} MiB = {:.1} bytes/change",
            bytes as f64 / 1_048_576.0,
            bytes as f64 / plan.changes() as f64
        );
        first.costs.push(cost);
        note = report.note;
    }
    figures.push(first);
    println!();

    let last = copies.last().context("at least one copy")?.clone();
    let verify_full = verify_reps(
        cluster,
        &last,
        &key,
        &note,
        plan.changes(),
        plan.reps,
        "verify, full (whole log)",
    )
    .await?;
    figures.push(verify_full);

    if plan.breakdown {
        breakdown(cluster, &last, plan.changes()).await?;
    }

    // Incremental: more changes in each copy, then a seal of just those.
    println!(
        "== incremental: {} more changes in each copy ({} cycle(s), one session), then seal again",
        plan.more(),
        plan.more_cycles
    );
    let mut incremental = Figure::new("seal, incremental (new changes)", plan.more(), true);
    let mut more_bytes: Vec<f64> = Vec::new();
    for db in &copies {
        let mut client = connect(cluster, db).await?;
        let before = sealed_bytes(&client).await?;
        let build = Instant::now();
        let mut added = 0;
        for k in plan.cycles..plan.cycles + plan.more_cycles {
            added += build_cycle(&mut client, k).await?;
        }
        let build_secs = build.elapsed().as_secs_f64();
        let probe = Probe::new(&client).await?;
        let (report, cost, read_secs) = measured_seal(&mut client, &probe, &key).await?;
        if report.appended != added || report.tree_size != plan.changes() + plan.more() {
            bail!(
                "incremental seal of {db} appended {} changes (log size {}), expected {added}",
                report.appended,
                report.tree_size
            );
        }
        let after = sealed_bytes(&client).await?;
        more_bytes.push((after - before) as f64 / added as f64);
        print_cost(
            &format!("{db} (the {added} changes built in {build_secs:.1} s, fsync on)"),
            added,
            &cost,
        );
        print_split(read_secs, &cost);
        incremental.costs.push(cost);
        note = report.note;
        drop(client);
        if db != &last {
            drop_database(&admin, db).await?;
        }
    }
    figures.push(incremental);
    explain_incremental(cluster, &last).await?;
    println!();

    let verify_again = verify_reps(
        cluster,
        &last,
        &key,
        &note,
        plan.changes() + plan.more(),
        plan.reps,
        "verify, full after the incremental seal",
    )
    .await?;
    figures.push(verify_again);

    // Summary.
    let mut build_figure = Figure::new(
        &format!("build the trail (capture, {} sessions)", plan.workers),
        plan.changes(),
        false,
    );
    build_figure.costs.push(Cost {
        wall: build_secs,
        client: f64::NAN,
        backend: f64::NAN,
        server: f64::NAN,
    });
    figures.push(build_figure);
    println!();
    println!(
        "Summary: medians of {} runs (build: 1 run); target {TARGET_PER_SECOND:.0} changes/s; total run time {:.0} s",
        plan.reps,
        started.elapsed().as_secs_f64()
    );
    println!();
    print_summary(&figures);
    println!();
    println!(
        "sealing adds {:.1} bytes/change (pgtrail.seal + pgtrail.seal_leaves, with TOAST and indexes) for the first \
         seal, {:.1} bytes/change for the incremental one (medians)",
        median(&seal_bytes).unwrap_or(f64::NAN),
        median(&more_bytes).unwrap_or(f64::NAN)
    );
    println!(
        "first seal: reading and hashing took {:.1} s, storing the leaves and committing {:.1} s (medians)",
        median(&first_split.iter().map(|s| s.0).collect::<Vec<_>>()).unwrap_or(f64::NAN),
        median(&first_split.iter().map(|s| s.1).collect::<Vec<_>>()).unwrap_or(f64::NAN)
    );
    Ok(())
}

/// Prints how a seal's wall time splits: reading and hashing the changes,
/// then storing the leaves and committing.
fn print_split(read_secs: f64, cost: &Cost) {
    println!(
        "    read and hashed in {read_secs:.2} s, then stored the leaves and committed in {:.2} s",
        cost.wall - read_secs
    );
}

/// Copies `template` to a new database `name` (file copy, which needs no
/// WAL for the data), retrying while the template's last session ends.
async fn copy_database(admin: &Client, template: &str, name: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match admin
            .batch_execute(&format!(
                "CREATE DATABASE {name} TEMPLATE {template} STRATEGY = FILE_COPY"
            ))
            .await
        {
            Err(error) if error.code() == Some(&SqlState::OBJECT_IN_USE) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            outcome => {
                return outcome.with_context(|| format!("copy {template} to {name}"));
            }
        }
    }
}

/// Drops database `name` to free its disk space, retrying while its last
/// session ends.
async fn drop_database(admin: &Client, name: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match admin.batch_execute(&format!("DROP DATABASE {name}")).await {
            Err(error) if error.code() == Some(&SqlState::OBJECT_IN_USE) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            outcome => return outcome.with_context(|| format!("drop {name}")),
        }
    }
}

/// `pg_total_relation_size` of pgtrail.seal and pgtrail.seal_leaves.
async fn sealed_bytes(client: &Client) -> Result<i64> {
    Ok(client
        .query_one(
            "SELECT pg_total_relation_size('pgtrail.seal') + pg_total_relation_size('pgtrail.seal_leaves')",
            &[],
        )
        .await
        .context("size of the seal tables")?
        .get(0))
}

/// One seal, timed, with a progress line every 10 s. Also returns how long
/// after the start the seal had read and hashed its last change: the rest is
/// storing the leaves and committing.
async fn measured_seal(
    client: &mut Client,
    probe: &Probe,
    key: &SignerKey,
) -> Result<(SealReport, Cost, f64)> {
    let started = Instant::now();
    let mut last_print = started;
    let mut read_done = started;
    let mark = probe.mark()?;
    let report = {
        let mut progress = |done: u64| {
            read_done = Instant::now();
            if last_print.elapsed() >= Duration::from_secs(10) {
                last_print = Instant::now();
                println!(
                    "    ... {done} changes read after {:.0} s",
                    started.elapsed().as_secs_f64()
                );
            }
        };
        seal(client, key, &mut progress).await.context("seal")?
    };
    let cost = probe.since(mark)?;
    Ok((report, cost, (read_done - started).as_secs_f64()))
}

/// `reps` full verifications of `db`, each in a new session.
async fn verify_reps(
    cluster: &Cluster,
    db: &str,
    key: &SignerKey,
    note: &str,
    changes: u64,
    reps: usize,
    label: &str,
) -> Result<Figure> {
    println!("== {label}: {changes} changes, {reps} times");
    let mut figure = Figure::new(label, changes, true);
    let options = VerifyOptions {
        public_key: Some(key.verifier()),
        checkpoint: Some(note.to_owned()),
        ..Default::default()
    };
    for rep in 1..=reps {
        let mut client = connect(cluster, db).await?;
        let probe = Probe::new(&client).await?;
        let mark = probe.mark()?;
        let report = verify(&mut client, &options).await.context("verify")?;
        let cost = probe.since(mark)?;
        if !report.intact() || report.tree_size != changes || report.unsealed != 0 {
            bail!(
                "verify of {db} found {} problem(s), log size {}, {} unsealed: {:?}",
                report.problems.len(),
                report.tree_size,
                report.unsealed,
                report
                    .problems
                    .iter()
                    .take(5)
                    .map(|p| p.message())
                    .collect::<Vec<_>>()
            );
        }
        print_cost(
            &format!("run {rep} ({} seals, intact)", report.seals),
            changes,
            &cost,
        );
        figure.costs.push(cost);
    }
    println!();
    Ok(figure)
}

fn print_summary(figures: &[Figure]) {
    let header = [
        "figure",
        "changes",
        "wall s",
        "changes/s (wall)",
        "client CPU s",
        "changes/s (client CPU)",
        "backend CPU us/change",
        "server CPU us/change",
        "wall >= 300k/s",
        "client CPU >= 300k/s",
    ];
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" }.to_owned();
    let rows: Vec<[String; 10]> = figures
        .iter()
        .map(|f| {
            let n = f.changes as f64;
            let wall = f.wall();
            let client = f.client();
            let backend = f.median_of(|c| c.backend);
            let server = f.median_of(|c| c.server);
            let num = |v: f64, s: String| if v.is_finite() { s } else { "-".to_owned() };
            [
                f.label.clone(),
                f.changes.to_string(),
                num(wall, format!("{wall:.2}")),
                num(wall, format!("{:.0}", n / wall)),
                num(client, format!("{client:.2}")),
                num(client, format!("{:.0}", n / client)),
                num(backend, format!("{:.2}", backend * 1e6 / n)),
                num(server, format!("{:.2}", server * 1e6 / n)),
                if f.target {
                    verdict(n / wall >= TARGET_PER_SECOND)
                } else {
                    "-".to_owned()
                },
                if f.target && client.is_finite() {
                    verdict(n / client >= TARGET_PER_SECOND)
                } else {
                    "-".to_owned()
                },
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            if i == 0 {
                s.push_str(&format!("{cell:<w$}", w = widths[i]));
            } else {
                s.push_str(&format!("{cell:>w$}", w = widths[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(&header.map(str::to_owned));
    line(&widths.map(|w| "-".repeat(w)));
    for row in &rows {
        line(row);
    }
}

/// One build session: takes cycle numbers until all are done; returns the
/// changes it made.
async fn build_worker(mut client: Client, cycles: i64, next: Arc<AtomicI64>, report: bool) -> Result<u64> {
    let started = Instant::now();
    let mut last_decile = 0;
    let mut changes = 0;
    loop {
        let k = next.fetch_add(1, Ordering::SeqCst);
        if k >= cycles {
            break;
        }
        changes += build_cycle(&mut client, k).await?;
        let decile = (k + 1) * 10 / cycles;
        if report && decile > last_decile {
            last_decile = decile;
            let secs = started.elapsed().as_secs_f64();
            println!(
                "  build: {}% of the cycles started after {secs:.0} s (~{:.0} changes/s)",
                decile * 10,
                ((k + 1) * CYCLE) as f64 / secs
            );
        }
    }
    Ok(changes)
}

/// Build cycle `k`: three transactions, each with its own context, of
/// 35,000, 30,000 and 35,000 changes. The rows follow from `k`, so that
/// concurrent cycles touch different rows and every UPDATE changes values.
async fn build_cycle(client: &mut Client, k: i64) -> Result<u64> {
    let acct_new = PREFILL + k * ACCT_INSERTS + 1;
    let item_new = PREFILL + k * ITEM_INSERTS + 1;
    let event_new = k * EVENT_INSERTS + 1;
    let acct_window = (k % (PREFILL / ACCT_UPDATES)) * ACCT_UPDATES + 1;
    let item_window = (k % (PREFILL / ITEM_UPDATES)) * ITEM_UPDATES + 1;
    type Step<'a> = (&'static str, Vec<&'a (dyn ToSql + Sync)>, i64);
    let (acct_new_hi, event_new_hi) = (acct_new + ACCT_INSERTS - 1, event_new + EVENT_INSERTS - 1);
    let (acct_window_hi, item_new_hi) = (acct_window + ACCT_UPDATES - 1, item_new + ITEM_INSERTS - 1);
    let item_window_hi = item_window + ITEM_UPDATES - 1;
    let event_deleted_hi = event_new + EVENT_DELETES - 1;
    let transactions: [(&str, Vec<Step<'_>>); 3] = [
        (
            "sign-ups and events",
            vec![
                (ACCT_INSERT, vec![&acct_new, &acct_new_hi], ACCT_INSERTS),
                (EVENT_INSERT, vec![&event_new, &event_new_hi], EVENT_INSERTS),
            ],
        ),
        (
            "account update",
            vec![(ACCT_UPDATE, vec![&acct_window, &acct_window_hi, &k], ACCT_UPDATES)],
        ),
        (
            "stock and clean-up",
            vec![
                (ITEM_INSERT, vec![&item_new, &item_new_hi], ITEM_INSERTS),
                (ITEM_UPDATE, vec![&item_window, &item_window_hi], ITEM_UPDATES),
                (EVENT_DELETE, vec![&event_new, &event_deleted_hi], EVENT_DELETES),
            ],
        ),
    ];
    let mut changes = 0u64;
    for (i, (reason, steps)) in transactions.iter().enumerate() {
        let actor = (k * 3 + i as i64) % ACTORS;
        let tx = client.transaction().await.context("BEGIN")?;
        tx.execute(
            "SELECT pgtrail.set_context($1::text, $2::text, 'user', $3::text)",
            &[
                &format!("actor-{actor:02}"),
                &format!("Actor {actor:02}"),
                &format!("{reason}, cycle {k}"),
            ],
        )
        .await
        .context("pgtrail.set_context")?;
        for (sql, params, expected) in steps {
            let done = tx
                .execute(*sql, params)
                .await
                .with_context(|| format!("cycle {k}: {}", sql.trim()))?;
            if done != *expected as u64 {
                bail!("cycle {k}: {done} rows instead of {expected}: {}", sql.trim());
            }
            changes += done;
        }
        tx.commit().await.context("COMMIT")?;
    }
    Ok(changes)
}

/// One change as the seal reads it (the columns of [`CHANGES_OF_SEAL`]).
struct ChangeText {
    id: i64,
    txid: i64,
    ctx: i16,
    table_id: i32,
    op: String,
    changed_at: i64,
    pk: Option<String>,
    old_pk: Option<String>,
    changed_fields: Option<String>,
    old_values: Option<String>,
    new_values: Option<String>,
}

impl ChangeText {
    fn from_row(row: &Row) -> Result<ChangeText> {
        Ok(ChangeText {
            id: row.try_get(0)?,
            txid: row.try_get(1)?,
            ctx: row.try_get(2)?,
            table_id: row.try_get(3)?,
            op: row.try_get(4)?,
            changed_at: row.try_get(5)?,
            pk: row.try_get(6)?,
            old_pk: row.try_get(7)?,
            changed_fields: row.try_get(8)?,
            old_values: row.try_get(9)?,
            new_values: row.try_get(10)?,
        })
    }

    /// `(name, JSON text of the value)`, sorted by name, as the seal's
    /// leaves take them.
    fn fields(&self) -> Result<Vec<(String, &str)>> {
        let mut fields = Vec::new();
        for (side, json) in [("new", &self.new_values), ("old", &self.old_values)] {
            let Some(json) = json else { continue };
            let object: BTreeMap<String, &RawValue> =
                serde_json::from_str(json).with_context(|| format!("change {}: {side}_values", self.id))?;
            fields.extend(object.into_iter().map(|(k, v)| (format!("{side}.{k}"), v.get())));
        }
        Ok(fields)
    }
}

/// The leaf of a change, built like the seal builds it (a fixed seed
/// derived from the id and a fixed transaction digest stand in for the
/// random seed and the real digest: same amount of hashing).
fn leaf(builder: &mut LeafBuilder, change: &ChangeText, fields: &[(String, &str)]) -> Result<Hash> {
    let mut seed: Seed = [0x5a; 16];
    seed[..8].copy_from_slice(&change.id.to_le_bytes());
    let transaction: Hash = [7; 32];
    let mut writer = builder.begin(change.id);
    let txid = change.txid.to_string();
    let ctx = change.ctx.to_string();
    let table = change.table_id.to_string();
    let at = change.changed_at.to_string();
    for value in [
        Some(txid.as_bytes()),
        Some(ctx.as_bytes()),
        Some(table.as_bytes()),
        Some(change.op.as_bytes()),
        Some(at.as_bytes()),
        change.pk.as_deref().map(str::as_bytes),
        change.old_pk.as_deref().map(str::as_bytes),
        change.changed_fields.as_deref().map(str::as_bytes),
        Some(transaction.as_slice()),
    ] {
        writer.header(value)?;
    }
    for (name, value) in fields {
        let commitment = field_commitment(&field_salt(&seed, name), name, Some(value.as_bytes()))?;
        writer.field(name, &commitment)?;
    }
    Ok(writer.finish())
}

/// Shows the plan of the incremental seal's query (seal 2's range), run
/// again with EXPLAIN ANALYZE: a narrow txid range plans differently from
/// the whole trail.
async fn explain_incremental(cluster: &Cluster, db: &str) -> Result<()> {
    let client = connect(cluster, db).await?;
    let row = client
        .query_one(
            "SELECT s.snapshot::text, p.snapshot::text,
                    pg_snapshot_xmin(p.snapshot)::text::bigint, pg_snapshot_xmax(s.snapshot)::text::bigint
             FROM pgtrail.seal AS s JOIN pgtrail.seal AS p ON p.id = s.id - 1
             WHERE s.id = 2",
            &[],
        )
        .await
        .context("read the snapshots of seals 1 and 2")?;
    let (snapshot, previous, low, high): (String, Option<String>, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let plan = client
        .query(
            &format!("EXPLAIN (ANALYZE, BUFFERS) {CHANGES_OF_SEAL}"),
            &[&low, &high, &snapshot, &previous],
        )
        .await
        .context("EXPLAIN ANALYZE the incremental seal's query")?;
    println!("  plan of the incremental seal's query (EXPLAIN ANALYZE, run again afterwards):");
    for line in &plan {
        let text: &str = line.get(0);
        println!("      | {text}");
    }
    Ok(())
}

/// How far each step of the breakdown goes with the rows it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Depth {
    /// Receive the rows only.
    Receive,
    /// Also decode the 11 columns into Rust values.
    Decode,
    /// Also parse `old_values` and `new_values` into fields.
    Json,
    /// Also build every leaf and the tree: all of a seal's computing.
    Hash,
}

/// Where a seal's time goes: the seal's query with the first seal's range,
/// first with EXPLAIN ANALYZE (the server alone), then streamed like the
/// seal streams it, doing more of the seal's work on each pass; and the
/// hashing alone on changes held in memory.
async fn breakdown(cluster: &Cluster, db: &str, changes: u64) -> Result<()> {
    println!("== breakdown of a seal's work (one run each, same rows as the first seal, not a target)");
    let mut client = connect(cluster, db).await?;
    let probe = Probe::new(&client).await?;
    let row = client
        .query_one(
            "SELECT snapshot::text, pg_snapshot_xmax(snapshot)::text::bigint FROM pgtrail.seal WHERE id = 1",
            &[],
        )
        .await
        .context("read the first seal's snapshot")?;
    let snapshot: String = row.get(0);
    let high: i64 = row.get(1);
    let low = 0i64;
    let previous: Option<String> = None;
    let params: [&(dyn ToSql + Sync); 4] = [&low, &high, &snapshot, &previous];

    let mark = probe.mark()?;
    let plan = client
        .query(&format!("EXPLAIN (ANALYZE, BUFFERS) {CHANGES_OF_SEAL}"), &params)
        .await
        .context("EXPLAIN ANALYZE the seal's query")?;
    let cost = probe.since(mark)?;
    print_cost(
        "server only (EXPLAIN ANALYZE: rows produced, text casts done, nothing sent)",
        changes,
        &cost,
    );
    for line in &plan {
        let text: &str = line.get(0);
        println!("      | {text}");
    }

    let mut sample: Vec<ChangeText> = Vec::new();
    for depth in [Depth::Receive, Depth::Decode, Depth::Json, Depth::Hash] {
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .context("BEGIN")?;
        let mark = probe.mark()?;
        let statement = tx
            .prepare(CHANGES_OF_SEAL)
            .await
            .context("prepare the seal's query")?;
        let mut rows = pin!(
            tx.query_raw(&statement, params)
                .await
                .context("run the seal's query")?
        );
        let mut builder = LeafBuilder::new();
        let mut tree = Tree::new();
        let mut count = 0u64;
        let mut fields_total = 0u64;
        let mut per_op: BTreeMap<(i32, String), (u64, u64)> = BTreeMap::new();
        while let Some(row) = rows.try_next().await.context("read a change")? {
            count += 1;
            if depth == Depth::Receive {
                continue;
            }
            let change = ChangeText::from_row(&row)?;
            if depth >= Depth::Json {
                let fields = change.fields()?;
                fields_total += fields.len() as u64;
                let entry = per_op.entry((change.table_id, change.op.clone())).or_default();
                entry.0 += 1;
                entry.1 += fields.len() as u64;
                if depth == Depth::Hash {
                    tree.push(leaf(&mut builder, &change, &fields)?)?;
                }
            }
            if depth == Depth::Hash && sample.len() < SAMPLE {
                sample.push(change);
            }
        }
        let cost = probe.since(mark)?;
        tx.rollback().await.context("ROLLBACK")?;
        if count != changes {
            bail!("the breakdown read {count} changes, expected {changes}");
        }
        let what = match depth {
            Depth::Receive => "receive rows (seal's query, streamed, nothing decoded)",
            Depth::Decode => "+ decode the 11 columns",
            Depth::Json => "+ parse old/new values (serde_json RawValue)",
            Depth::Hash => "+ salts, commitments, leaves, tree (all of seal but seeds and writing)",
        };
        print_cost(what, changes, &cost);
        if depth == Depth::Json {
            println!(
                "      {:.2} fields per change; by table id and op: {}",
                fields_total as f64 / count as f64,
                per_op
                    .iter()
                    .map(|((t, op), (n, f))| format!("{t}/{op} {n} x {:.1}", *f as f64 / *n as f64))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }

    // The hashing alone, on changes in memory.
    let parsed: Vec<Vec<(String, &str)>> = sample.iter().map(ChangeText::fields).collect::<Result<_>>()?;
    let mut builder = LeafBuilder::new();
    let mut tree = Tree::new();
    let mark = probe.mark()?;
    let cpu_start = Instant::now();
    for (change, fields) in sample.iter().zip(&parsed) {
        tree.push(leaf(&mut builder, change, fields)?)?;
    }
    let hash_secs = cpu_start.elapsed().as_secs_f64();
    let mut tree = Tree::new();
    let json_start = Instant::now();
    for change in &sample {
        let fields = change.fields()?;
        tree.push(leaf(&mut builder, change, &fields)?)?;
    }
    let json_hash_secs = json_start.elapsed().as_secs_f64();
    let cost = probe.since(mark)?;
    let n = sample.len() as f64;
    println!(
        "  in memory, first {} changes: hashing alone {:.2} us/change = {:.0}/s; JSON parse + hashing {:.2} us/change \
         = {:.0}/s (client CPU {:.2} s for both)",
        sample.len(),
        hash_secs * 1e6 / n,
        n / hash_secs,
        json_hash_secs * 1e6 / n,
        n / json_hash_secs,
        cost.client
    );
    println!();
    Ok(())
}
