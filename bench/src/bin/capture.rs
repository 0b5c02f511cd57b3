//! Capture overhead benchmark: pgtrail's set-based capture against no audit,
//! against a generic row-level trigger, and against the "insert floor" (a
//! statement-level trigger that only inserts one indexed trail row per
//! change: the lower bound of any trigger design), on one throwaway cluster,
//! with the variants interleaved round by round. See `bench/README.md`.
//!
//! ```text
//! cargo run --release -p pgtrail-bench --bin capture -- [--rounds N] [--quick] [--json FILE]
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use pgtrail_bench::pgbench::{Pgbench, Run};
use pgtrail_bench::procstat;
use pgtrail_bench::stats::{
    Series, SummaryRow, Target, Variant, fmt_value, round_order, summary_json, summary_table,
};
use pgtrail_cluster::Cluster;
use serde_json::json;
use tokio_postgres::Client;

/// The comparison row-level trigger; created in the benchmark database only.
const ROW_TRIGGER_SQL: &str = include_str!("../../sql/row_trigger.sql");
/// Name of the row-level trigger on `acct`.
const ROW_TRIGGER: &str = "bench_row_capture";
/// The comparison lower bound: one INSERT ... SELECT per statement, nothing
/// else; created in the benchmark database only.
const INSERT_FLOOR_SQL: &str = include_str!("../../sql/insert_floor.sql");
/// Name of the insert-floor trigger on `acct`.
const INSERT_FLOOR_TRIGGER: &str = "bench_floor_capture";
/// The comparison triggers on `acct`, each enabled only for its variant.
const ACCT_COMPARISONS: [(Variant, &str); 2] = [
    (Variant::RowTrigger, ROW_TRIGGER),
    (Variant::InsertFloor, INSERT_FLOOR_TRIGGER),
];
/// Variants of the workloads on `acct` (b and c).
const ACCT_VARIANTS: [Variant; 4] = [
    Variant::NoAudit,
    Variant::Pgtrail,
    Variant::RowTrigger,
    Variant::InsertFloor,
];
/// pgtrail's capture triggers on every audited table.
const CAPTURE_TRIGGERS: [&str; 4] = [
    "pgtrail_capture_insert",
    "pgtrail_capture_update",
    "pgtrail_capture_delete",
    "pgtrail_capture_truncate",
];
const PGBENCH_TABLES: [&str; 4] = [
    "pgbench_accounts",
    "pgbench_branches",
    "pgbench_tellers",
    "pgbench_history",
];
const TPCB_DB: &str = "bench_tpcb";
const ACCT_DB: &str = "bench_acct";

/// Workload b: one 2-column UPDATE of a random row per transaction.
const SINGLE_ROW_SCRIPT: &str = "\\set id random(1, :rows)
\\set r random(1, 1000000000)
UPDATE acct SET email = 'u' || :id::text || '.' || :r::text || '@example.com', name = 'Name ' || :r::text WHERE id = :id;
";

/// Workload c: one statement changing `bulk_rows` rows (2 columns each).
const BULK_UPDATE: &str =
    "UPDATE acct SET email = email || 'x', name = name || 'y' WHERE id BETWEEN $1 AND $2";

/// The 15-column table of workloads b and c.
const ACCT_DDL: &str = "
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
)";

const ACCT_FILL: &str = "
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
FROM generate_series(1::bigint, $1::bigint) AS g";

#[derive(Debug, Parser)]
#[command(
    about = "Measure pgtrail's capture overhead against no audit, a row-level trigger and the insert floor"
)]
struct Args {
    /// Rounds per workload [default: 3, or 2 with --quick].
    #[arg(long)]
    rounds: Option<usize>,
    /// Short run (~2 minutes): 2 rounds, 5-second pgbench measurements.
    #[arg(long)]
    quick: bool,
    /// Seconds per pgbench measurement [default: 20, or 5 with --quick].
    #[arg(long)]
    seconds: Option<u64>,
    /// pgbench scale factor of the TPC-B-like workload.
    #[arg(long, default_value_t = 10)]
    scale: u32,
    /// Rows of the 15-column table.
    #[arg(long, default_value_t = 1_000_000)]
    rows: i64,
    /// Rows changed by the one bulk UPDATE statement.
    #[arg(long, default_value_t = 100_000)]
    bulk_rows: i64,
    /// pgbench clients (-c).
    #[arg(long, default_value_t = 4)]
    clients: u32,
    /// pgbench threads (-j).
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// Workloads to run, any of a, b, c (d is measured during b and c).
    #[arg(long, default_value = "abc")]
    workloads: String,
    /// Skip the unmeasured diagnostic step (function statistics, auto_explain,
    /// wait events); --quick always skips it.
    #[arg(long)]
    no_diagnostics: bool,
    /// Also write the summary and every per-round value as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

impl Args {
    fn rounds(&self) -> usize {
        self.rounds.unwrap_or(if self.quick { 2 } else { 3 }).max(1)
    }

    fn seconds(&self) -> u64 {
        self.seconds.unwrap_or(if self.quick { 5 } else { 20 }).max(1)
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.bulk_rows < 1 || args.rows < args.bulk_rows {
        bail!("--bulk-rows must be between 1 and --rows");
    }
    let started = Instant::now();
    let cluster = pgtrail_bench::server::start(&[
        ("shared_buffers", "1GB"),
        ("max_wal_size", "4GB"),
        ("checkpoint_timeout", "30min"),
        ("synchronous_commit", "on"),
    ])?;
    let result = run(&args, &cluster, started).await;
    drop(cluster);
    result
}

async fn connect(cluster: &Cluster, dbname: &str) -> Result<Client> {
    pgtrail_bench::server::connect(cluster, dbname).await
}

/// The pgbench script file; removed when dropped.
struct ScriptFile(PathBuf);

impl ScriptFile {
    fn write(text: &str) -> Result<ScriptFile> {
        let path = std::env::temp_dir().join(format!("pgtrail-bench-{}.sql", std::process::id()));
        fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
        Ok(ScriptFile(path))
    }
}

impl Drop for ScriptFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Everything the workloads share.
struct Bench<'a> {
    args: &'a Args,
    pgbench: Pgbench,
    tpcb: Client,
    acct: Client,
    clk_tck: u64,
    /// Next bulk-UPDATE range number; each range is used once in turn.
    next_range: i64,
}

async fn run(args: &Args, cluster: &Cluster, started: Instant) -> Result<()> {
    let rounds = args.rounds();
    let seconds = args.seconds();
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
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("pgtrail capture benchmark");
    println!("  server:   {version}");
    println!("  machine:  {cpus} CPUs, {memory} memory");
    println!(
        "  settings: shared_buffers=1GB max_wal_size=4GB checkpoint_timeout=30min synchronous_commit=on fsync=on"
    );
    println!(
        "  plan:     {rounds} rounds; pgbench -c {} -j {} -T {seconds} -M prepared -n; scale {}; {} rows; bulk {} rows",
        args.clients, args.threads, args.scale, args.rows, args.bulk_rows
    );
    println!();

    for db in [TPCB_DB, ACCT_DB] {
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .with_context(|| format!("create database {db}"))?;
    }

    let pgbench = Pgbench {
        program: cluster.program("pgbench"),
        host: cluster.host().to_owned(),
        port: cluster.port(),
        user: "postgres".to_owned(),
    };

    let step = Instant::now();
    pgbench.initialize(TPCB_DB, args.scale).await?;
    let mut tpcb = connect(cluster, TPCB_DB).await?;
    install_pgtrail(&mut tpcb).await?;
    tpcb.batch_execute("VACUUM ANALYZE")
        .await
        .context("vacuum the pgbench tables")?;
    println!(
        "setup: pgbench -i -s {} and pgtrail on the 4 pgbench tables ({:.0} s)",
        args.scale,
        step.elapsed().as_secs_f64()
    );

    let step = Instant::now();
    let mut acct = connect(cluster, ACCT_DB).await?;
    acct.batch_execute(ACCT_DDL).await.context("create acct")?;
    acct.execute(ACCT_FILL, &[&args.rows])
        .await
        .context("fill acct")?;
    acct.batch_execute("VACUUM ANALYZE acct")
        .await
        .context("vacuum acct")?;
    install_pgtrail(&mut acct).await?;
    acct.batch_execute(ROW_TRIGGER_SQL)
        .await
        .context("create the comparison row trigger (bench/sql/row_trigger.sql)")?;
    acct.batch_execute(&format!(
        "CREATE TRIGGER {ROW_TRIGGER} AFTER INSERT OR UPDATE OR DELETE ON public.acct \
         FOR EACH ROW EXECUTE FUNCTION bench_rowtrail.capture_row('1', '{{id}}')"
    ))
    .await
    .context("attach the row trigger")?;
    acct.batch_execute(INSERT_FLOOR_SQL)
        .await
        .context("create the insert-floor trigger function (bench/sql/insert_floor.sql)")?;
    acct.batch_execute(&format!(
        "CREATE TRIGGER {INSERT_FLOOR_TRIGGER} AFTER UPDATE ON public.acct \
         REFERENCING NEW TABLE AS new_table \
         FOR EACH STATEMENT EXECUTE FUNCTION bench_floor.capture_update()"
    ))
    .await
    .context("attach the insert-floor trigger")?;
    set_variant(&acct, &["acct"], &ACCT_COMPARISONS, Variant::NoAudit).await?;
    let size: String = acct
        .query_one("SELECT pg_size_pretty(pg_total_relation_size('acct'))", &[])
        .await
        .context("size of acct")?
        .get(0);
    println!(
        "setup: acct with {} rows ({size}), pgtrail, the row trigger and the insert floor ({:.0} s)",
        args.rows,
        step.elapsed().as_secs_f64()
    );
    println!();

    let mut bench = Bench {
        args,
        pgbench,
        tpcb,
        acct,
        clk_tck: procstat::clock_ticks_per_second(),
        next_range: 0,
    };
    let mut series: Vec<Series> = Vec::new();
    if args.workloads.contains('a') {
        series.extend(bench.tpcb_workload(rounds, seconds).await?);
    }
    if args.workloads.contains('b') {
        series.extend(bench.single_row_workload(rounds, seconds).await?);
    }
    if args.workloads.contains('c') {
        let bulk_acct = connect(cluster, ACCT_DB).await?;
        series.extend(bench.bulk_workload(rounds, &bulk_acct).await?);
    }
    // Put the size metrics (d) last.
    series.sort_by_key(|s| s.workload.starts_with('d'));

    if !args.no_diagnostics && !args.quick {
        bench.diagnostics(cluster).await?;
    }

    let rows: Vec<SummaryRow> = series.iter().flat_map(Series::summary).collect();
    let elapsed = started.elapsed();
    println!();
    println!(
        "Summary: medians over {rounds} rounds; ratio = median of per-round ratios audited/no-audit \
         (same round); total run time {:.0} s",
        elapsed.as_secs_f64()
    );
    println!();
    print!("{}", summary_table(&rows));

    if let Some(path) = &args.json {
        let doc = json!({
            "server_version": version,
            "cpus": cpus,
            "memory": memory,
            "rounds": rounds,
            "pgbench_seconds": seconds,
            "pgbench_clients": args.clients,
            "pgbench_threads": args.threads,
            "scale": args.scale,
            "rows": args.rows,
            "bulk_rows": args.bulk_rows,
            "duration_seconds": elapsed.as_secs_f64(),
            "summary": summary_json(&rows),
            "series": series.iter().map(Series::to_json).collect::<Vec<_>>(),
        });
        let text = serde_json::to_string_pretty(&doc).context("serialize the summary")?;
        fs::write(path, text + "\n").with_context(|| format!("write {}", path.display()))?;
        println!();
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Installs pgtrail and attaches capture to every table of schema public.
async fn install_pgtrail(client: &mut Client) -> Result<()> {
    let config =
        pgtrail::config::Config::parse("", "pgtrail.toml").context("parse the (empty) pgtrail config")?;
    pgtrail::plan::apply(client, &config)
        .await
        .context("install pgtrail (pgtrail::plan::apply)")?;
    Ok(())
}

/// Enables exactly the capture of `variant` on `tables` (of schema public):
/// pgtrail's triggers for [`Variant::Pgtrail`], and each of `comparisons`
/// (a variant and the name of its trigger on every table) for its variant.
async fn set_variant(
    client: &Client,
    tables: &[&str],
    comparisons: &[(Variant, &str)],
    variant: Variant,
) -> Result<()> {
    let onoff = |on: bool| if on { "ENABLE" } else { "DISABLE" };
    let mut sql = String::new();
    for table in tables {
        for trigger in CAPTURE_TRIGGERS {
            sql.push_str(&format!(
                "ALTER TABLE public.{table} {} TRIGGER {trigger};\n",
                onoff(variant == Variant::Pgtrail)
            ));
        }
        for &(owner, trigger) in comparisons {
            sql.push_str(&format!(
                "ALTER TABLE public.{table} {} TRIGGER {trigger};\n",
                onoff(variant == owner)
            ));
        }
    }
    client
        .batch_execute(&sql)
        .await
        .with_context(|| format!("switch capture to {}", variant.label()))
}

/// Outside any timing: `vacuum` (a VACUUM statement), then CHECKPOINT, so
/// every measurement starts from the same state.
async fn settle(client: &Client, vacuum: &str) -> Result<()> {
    client
        .batch_execute(vacuum)
        .await
        .with_context(|| format!("run {vacuum}"))?;
    client.batch_execute("CHECKPOINT").await.context("run CHECKPOINT")
}

/// Size of the trail a variant writes to, and its newest change id.
#[derive(Debug, Clone, Copy)]
struct TrailMark {
    bytes: i64,
    max_id: i64,
}

/// The tables of the trail `variant` writes (with their indexes); the first
/// one holds one row per change. Empty for no audit.
fn trail_tables(variant: Variant) -> &'static [&'static str] {
    match variant {
        Variant::NoAudit => &[],
        Variant::Pgtrail => &["pgtrail.change", "pgtrail.transaction"],
        Variant::RowTrigger => &["bench_rowtrail.change"],
        Variant::InsertFloor => &["bench_floor.change"],
    }
}

async fn trail_mark(client: &Client, variant: Variant) -> Result<Option<TrailMark>> {
    let tables = trail_tables(variant);
    let Some(changes) = tables.first() else {
        return Ok(None);
    };
    let size = tables
        .iter()
        .map(|t| format!("pg_total_relation_size('{t}')"))
        .collect::<Vec<_>>()
        .join(" + ");
    let sql = format!("SELECT {size}, (SELECT coalesce(max(id), 0) FROM {changes})");
    let row = client.query_one(&sql, &[]).await.context("measure the trail")?;
    Ok(Some(TrailMark {
        bytes: row.get(0),
        max_id: row.get(1),
    }))
}

/// Bytes the trail grew per change recorded since `before`, and the count.
async fn trail_growth(
    client: &Client,
    variant: Variant,
    before: Option<TrailMark>,
) -> Result<Option<(f64, i64)>> {
    let (Some(before), Some(after)) = (before, trail_mark(client, variant).await?) else {
        return Ok(None);
    };
    let Some(table) = trail_tables(variant).first() else {
        return Ok(None);
    };
    let sql = format!("SELECT count(*) FROM {table} WHERE id > $1");
    let changes: i64 = client
        .query_one(&sql, &[&before.max_id])
        .await
        .context("count recorded changes")?
        .get(0);
    if changes == 0 {
        return Ok(None);
    }
    Ok(Some((
        (after.bytes - before.bytes) as f64 / changes as f64,
        changes,
    )))
}

fn print_ratios(series: &Series, round: usize) {
    let ratios: Vec<String> = Variant::AUDITED
        .into_iter()
        .filter_map(|v| {
            series
                .round_ratio(round, v)
                .map(|r| format!("{}/no-audit {r:.3}", v.label()))
        })
        .collect();
    if !ratios.is_empty() {
        println!(
            "  round {}  {} ratio: {}",
            round + 1,
            series.metric,
            ratios.join(", ")
        );
    }
}

impl Bench<'_> {
    /// a: pgbench's built-in TPC-B-like script, all four tables audited.
    async fn tpcb_workload(&mut self, rounds: usize, seconds: u64) -> Result<Vec<Series>> {
        println!("== a. TPC-B-like (pgbench built-in), {seconds} s per measurement");
        let mut tps = Series::new("a TPC-B (pgbench)", "tps", Target::RatioAtLeast(0.90));
        let mut bytes = Series::new("d audit size", "bytes/change TPC-B", Target::None);
        let variants = [Variant::NoAudit, Variant::Pgtrail];
        for round in 0..rounds {
            for variant in round_order(&variants, round) {
                set_variant(&self.tpcb, &PGBENCH_TABLES, &[], variant).await?;
                settle(
                    &self.tpcb,
                    "VACUUM pgbench_branches, pgbench_tellers, pgbench_accounts, pgbench_history",
                )
                .await?;
                let before = trail_mark(&self.tpcb, variant).await?;
                let outcome = self
                    .pgbench
                    .run(&Run {
                        dbname: TPCB_DB,
                        script: None,
                        clients: self.args.clients,
                        threads: self.args.threads,
                        seconds,
                    })
                    .await?;
                tps.record(round, variant, outcome.tps);
                let growth = trail_growth(&self.tpcb, variant, before).await?;
                if let Some((per_change, _)) = growth {
                    bytes.record(round, variant, per_change);
                }
                println!(
                    "  round {}  {:<12}  tps {:>8.1}  ({} transactions){}",
                    round + 1,
                    variant.label(),
                    outcome.tps,
                    outcome.transactions,
                    growth.map_or(String::new(), |(b, n)| format!(
                        "  trail {b:.0} bytes/change over {n} changes"
                    ))
                );
            }
            print_ratios(&tps, round);
        }
        println!();
        Ok(vec![tps, bytes])
    }

    /// b (and d): one 2-column UPDATE of a random row per transaction.
    async fn single_row_workload(&mut self, rounds: usize, seconds: u64) -> Result<Vec<Series>> {
        println!("== b. single-row UPDATE of 2 columns, {seconds} s per measurement");
        let script = ScriptFile::write(&SINGLE_ROW_SCRIPT.replace(":rows", &self.args.rows.to_string()))?;
        let mut tps = Series::new("b 1-row UPDATE", "tps", Target::RatioAtLeast(0.90));
        let mut bytes = Series::new(
            "d audit size",
            "bytes/change 1-row UPDATE",
            Target::ValueAtMost(500.0),
        );
        for round in 0..rounds {
            for variant in round_order(&ACCT_VARIANTS, round) {
                set_variant(&self.acct, &["acct"], &ACCT_COMPARISONS, variant).await?;
                settle(&self.acct, "VACUUM acct").await?;
                let before = trail_mark(&self.acct, variant).await?;
                let outcome = self
                    .pgbench
                    .run(&Run {
                        dbname: ACCT_DB,
                        script: Some(&script.0),
                        clients: self.args.clients,
                        threads: self.args.threads,
                        seconds,
                    })
                    .await?;
                tps.record(round, variant, outcome.tps);
                let growth = trail_growth(&self.acct, variant, before).await?;
                if let Some((per_change, _)) = growth {
                    bytes.record(round, variant, per_change);
                }
                println!(
                    "  round {}  {:<12}  tps {:>8.1}  ({} transactions){}",
                    round + 1,
                    variant.label(),
                    outcome.tps,
                    outcome.transactions,
                    growth.map_or(String::new(), |(b, n)| format!(
                        "  trail {b:.0} bytes/change over {n} changes"
                    ))
                );
            }
            print_ratios(&tps, round);
        }
        println!();
        Ok(vec![tps, bytes])
    }

    /// The `[lo, hi]` id range of the next bulk UPDATE: a different block of
    /// rows each time, so every row it touches really changes.
    fn next_bulk_range(&mut self) -> (i64, i64) {
        let blocks = (self.args.rows / self.args.bulk_rows).max(1);
        let lo = (self.next_range % blocks) * self.args.bulk_rows + 1;
        self.next_range += 1;
        (lo, lo + self.args.bulk_rows - 1)
    }

    /// c (and d): one UPDATE statement of `bulk_rows` rows, committed.
    async fn bulk_workload(&mut self, rounds: usize, bulk: &Client) -> Result<Vec<Series>> {
        let n = self.args.bulk_rows;
        println!("== c. one UPDATE statement of {n} rows (2 columns), committed");
        let mut wall = Series::new("c bulk UPDATE", "wall ms", Target::RatioAtMost(2.0));
        let mut cpu = Series::new("c bulk UPDATE", "backend CPU us/row", Target::None);
        let mut bytes = Series::new("d audit size", "bytes/change bulk UPDATE", Target::None);
        let pid: i32 = bulk
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .context("pg_backend_pid()")?
            .get(0);
        let statement = bulk
            .prepare(BULK_UPDATE)
            .await
            .context("prepare the bulk UPDATE")?;
        for round in 0..rounds {
            for variant in round_order(&ACCT_VARIANTS, round) {
                set_variant(&self.acct, &["acct"], &ACCT_COMPARISONS, variant).await?;
                settle(&self.acct, "VACUUM acct").await?;
                let before = trail_mark(&self.acct, variant).await?;
                let (lo, hi) = self.next_bulk_range();
                // Let the catalog change (ALTER TABLE ... TRIGGER) be seen
                // outside the timing: re-plan now.
                bulk.batch_execute("SELECT 1")
                    .await
                    .context("ping the bulk session")?;
                let cpu_before = procstat::cpu_ticks(pid)?;
                let start = Instant::now();
                let changed = bulk
                    .execute(&statement, &[&lo, &hi])
                    .await
                    .context("run the bulk UPDATE")?;
                let elapsed = start.elapsed();
                let cpu_after = procstat::cpu_ticks(pid)?;
                if changed != n as u64 {
                    bail!("bulk UPDATE changed {changed} rows, expected {n}");
                }
                let cpu_us = (cpu_after - cpu_before) as f64 * 1e6 / self.clk_tck as f64;
                let per_row = cpu_us / n as f64;
                wall.record(round, variant, ms(elapsed));
                cpu.record(round, variant, per_row);
                let growth = trail_growth(&self.acct, variant, before).await?;
                if let Some((per_change, _)) = growth {
                    bytes.record(round, variant, per_change);
                }
                println!(
                    "  round {}  {:<12}  wall {:>8.1} ms  backend CPU {:>6.2} us/row{}",
                    round + 1,
                    variant.label(),
                    ms(elapsed),
                    per_row,
                    growth.map_or(String::new(), |(b, n)| format!(
                        "  trail {b:.0} bytes/change over {n} changes"
                    ))
                );
            }
            print_ratios(&wall, round);
            print_ratios(&cpu, round);
        }
        println!();
        Ok(vec![wall, cpu, bytes])
    }

    /// Not measured: where the capture time goes. For each variant, a few
    /// hundred single-row UPDATEs and one bulk UPDATE with
    /// `track_functions = all`; for pgtrail also auto_explain (with nested
    /// statements) of one single-row and one bulk UPDATE.
    async fn diagnostics(&mut self, cluster: &Cluster) -> Result<()> {
        const SINGLE: i64 = 300;
        println!(
            "== diagnostics (not measured, instrumented): track_functions = all, auto_explain for pgtrail"
        );
        self.sample_wait_events().await?;
        for variant in ACCT_VARIANTS {
            let explain = variant == Variant::Pgtrail;
            set_variant(&self.acct, &["acct"], &ACCT_COMPARISONS, variant).await?;
            settle(&self.acct, "VACUUM acct").await?;
            self.acct
                .batch_execute("SELECT pg_stat_reset()")
                .await
                .context("reset statistics")?;

            // Single-row UPDATEs, each its own transaction.
            let diag = connect(cluster, ACCT_DB).await?;
            diag.batch_execute("SET track_functions = 'all'")
                .await
                .context("SET track_functions")?;
            let single = diag
                .prepare(
                    "UPDATE acct SET email = 'd' || $1::text || '.' || $2::text || '@example.com', \
                     name = 'Diag ' || $2::text WHERE id = $1",
                )
                .await
                .context("prepare the single-row UPDATE")?;
            // A value never written before, so that every UPDATE is a real change.
            let nonce = format!("{}-{}", variant.label(), std::process::id());
            let start = Instant::now();
            for i in 0..SINGLE {
                let id = (i * 7919) % self.args.rows + 1;
                diag.execute(&single, &[&id, &nonce])
                    .await
                    .context("run a diagnostic single-row UPDATE")?;
            }
            let per_update = ms(start.elapsed()) / SINGLE as f64;
            let log_offset = fs::metadata(cluster.log_file()).map_or(0, |m| m.len());
            if explain {
                load_auto_explain(&diag).await?;
                diag.execute(&single, &[&(self.args.rows / 2), &nonce])
                    .await
                    .context("run the explained single-row UPDATE")?;
            }
            drop(single);
            drop(diag);
            // A backend flushes its function statistics when it exits.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            println!(
                "  {} | {SINGLE} single-row UPDATEs, one at a time: {per_update:.3} ms each (client side)",
                variant.label()
            );
            print_function_stats(&self.acct, SINGLE).await?;
            if explain {
                print_log_since(&cluster.log_file(), log_offset, 3);
            }
            if variant == Variant::NoAudit {
                continue;
            }

            // One bulk UPDATE, in an explicit transaction so that
            // pg_stat_xact_user_functions shows it before COMMIT.
            settle(&self.acct, "VACUUM acct").await?;
            let diag = connect(cluster, ACCT_DB).await?;
            diag.batch_execute("SET track_functions = 'all'")
                .await
                .context("SET track_functions")?;
            if explain {
                load_auto_explain(&diag).await?;
            }
            let log_offset = fs::metadata(cluster.log_file()).map_or(0, |m| m.len());
            let (lo, hi) = self.next_bulk_range();
            diag.batch_execute("BEGIN").await.context("BEGIN")?;
            let start = Instant::now();
            diag.execute(BULK_UPDATE, &[&lo, &hi])
                .await
                .context("run the diagnostic bulk UPDATE")?;
            let elapsed = start.elapsed();
            let functions = diag
                .query(
                    "SELECT schemaname || '.' || funcname, calls, total_time, self_time \
                     FROM pg_stat_xact_user_functions ORDER BY self_time DESC LIMIT 12",
                    &[],
                )
                .await
                .context("read pg_stat_xact_user_functions")?;
            diag.batch_execute("COMMIT").await.context("COMMIT")?;
            println!(
                "  {} | one bulk UPDATE of {} rows: {:.0} ms (instrumented)",
                variant.label(),
                self.args.bulk_rows,
                ms(elapsed)
            );
            print_function_rows(&functions, 1);
            if explain {
                tokio::time::sleep(Duration::from_millis(300)).await;
                print_log_since(&cluster.log_file(), log_offset, 2);
            }
        }
        set_variant(&self.acct, &["acct"], &ACCT_COMPARISONS, Variant::NoAudit).await?;
        println!();
        Ok(())
    }
}

impl Bench<'_> {
    /// Runs workload b for a few seconds per variant while sampling what the
    /// pgbench backends wait on (pg_stat_activity, every 50 ms).
    async fn sample_wait_events(&mut self) -> Result<()> {
        const SECONDS: u64 = 5;
        let script = ScriptFile::write(&SINGLE_ROW_SCRIPT.replace(":rows", &self.args.rows.to_string()))?;
        for variant in ACCT_VARIANTS {
            set_variant(&self.acct, &["acct"], &ACCT_COMPARISONS, variant).await?;
            settle(&self.acct, "VACUUM acct").await?;
            let run = Run {
                dbname: ACCT_DB,
                script: Some(&script.0),
                clients: self.args.clients,
                threads: self.args.threads,
                seconds: SECONDS,
            };
            let pgbench = self.pgbench.run(&run);
            tokio::pin!(pgbench);
            let mut counts: BTreeMap<String, u64> = BTreeMap::new();
            let mut samples = 0u64;
            let outcome = loop {
                tokio::select! {
                    outcome = &mut pgbench => break outcome?,
                    () = tokio::time::sleep(Duration::from_millis(50)) => {
                        let rows = self
                            .acct
                            .query(
                                "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') \
                                 FROM pg_stat_activity \
                                 WHERE datname = current_database() AND application_name = 'pgbench' \
                                   AND state = 'active'",
                                &[],
                            )
                            .await
                            .context("sample pg_stat_activity")?;
                        samples += 1;
                        for row in rows {
                            *counts.entry(row.get(0)).or_default() += 1;
                        }
                    }
                }
            };
            let mut counts: Vec<(String, u64)> = counts.into_iter().collect();
            counts.sort_by_key(|c| std::cmp::Reverse(c.1));
            let shown: Vec<String> = counts
                .iter()
                .take(6)
                .map(|(event, n)| format!("{event} {:.2}", *n as f64 / samples.max(1) as f64))
                .collect();
            println!(
                "  {} | workload b, {SECONDS} s, {:.0} tps; active backends by wait event (mean per sample): {}",
                variant.label(),
                outcome.tps,
                shown.join(", ")
            );
        }
        Ok(())
    }
}

async fn load_auto_explain(client: &Client) -> Result<()> {
    client
        .batch_execute(
            "LOAD 'auto_explain';
             SET auto_explain.log_min_duration = 0;
             SET auto_explain.log_analyze = on;
             SET auto_explain.log_buffers = on;
             SET auto_explain.log_nested_statements = on;",
        )
        .await
        .context("load auto_explain")
}

/// The database's function statistics (after `pg_stat_reset()`), per `per` calls.
async fn print_function_stats(client: &Client, per: i64) -> Result<()> {
    client
        .batch_execute("SELECT pg_stat_clear_snapshot()")
        .await
        .context("clear the statistics snapshot")?;
    let rows = client
        .query(
            "SELECT schemaname || '.' || funcname, calls, total_time, self_time \
             FROM pg_stat_user_functions WHERE calls > 0 ORDER BY self_time DESC LIMIT 12",
            &[],
        )
        .await
        .context("read pg_stat_user_functions")?;
    print_function_rows(&rows, per);
    Ok(())
}

fn print_function_rows(rows: &[tokio_postgres::Row], per: i64) {
    if rows.is_empty() {
        println!("      (no user functions called)");
        return;
    }
    let unit = if per == 1 { "" } else { "/UPDATE" };
    println!(
        "      {:<38} {:>12} {:>14} {:>14}",
        "function",
        format!("calls{unit}"),
        format!("total ms{unit}"),
        format!("self ms{unit}")
    );
    let per = per as f64;
    for row in rows {
        let name: String = row.get(0);
        let calls: i64 = row.get(1);
        let total: f64 = row.get(2);
        let own: f64 = row.get(3);
        println!(
            "      {name:<38} {:>12} {:>14} {:>14}",
            fmt_value(calls as f64 / per),
            fmt_value(total / per),
            fmt_value(own / per)
        );
    }
}

/// One auto_explain entry of the server log.
struct Explained {
    duration_ms: f64,
    lines: Vec<String>,
}

/// Prints auto_explain's entries written to the server log since `offset`:
/// each statement's duration and text in order, then the plans of the
/// `full_plans` slowest statements.
fn print_log_since(path: &Path, offset: u64, full_plans: usize) {
    let Ok(log) = fs::read(path) else {
        println!("      (cannot read the server log {})", path.display());
        return;
    };
    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(log.len());
    let text = String::from_utf8_lossy(&log[start..]);
    let mut entries: Vec<Explained> = Vec::new();
    let mut current: Option<Explained> = None;
    for line in text.lines() {
        if line.starts_with('\t') || line.starts_with(' ') {
            if let Some(entry) = current.as_mut() {
                entry.lines.push(line.trim_start_matches('\t').to_owned());
            }
            continue;
        }
        entries.extend(current.take());
        if let Some(rest) = line.split("LOG:  duration: ").nth(1) {
            if rest.contains("plan:") {
                let duration_ms = rest
                    .split_whitespace()
                    .next()
                    .and_then(|d| d.parse().ok())
                    .unwrap_or(0.0);
                current = Some(Explained {
                    duration_ms,
                    lines: Vec::new(),
                });
            }
        }
    }
    entries.extend(current);
    let clip = |s: &str, n: usize| -> String {
        if s.chars().count() > n {
            format!("{}...", s.chars().take(n).collect::<String>())
        } else {
            s.to_owned()
        }
    };
    let query = |e: &Explained| -> String {
        let text = e
            .lines
            .iter()
            .find_map(|l| l.strip_prefix("Query Text: "))
            .unwrap_or("?");
        clip(&text.split_whitespace().collect::<Vec<_>>().join(" "), 110)
    };
    println!("      auto_explain, statements in the order they finished (nested ones first):");
    for e in &entries {
        println!("      {:>10.3} ms  {}", e.duration_ms, query(e));
    }
    let mut slowest: Vec<&Explained> = entries.iter().collect();
    slowest.sort_by(|a, b| b.duration_ms.total_cmp(&a.duration_ms));
    for e in slowest.into_iter().take(full_plans) {
        println!(
            "      plan of the {:.3} ms statement {}:",
            e.duration_ms,
            query(e)
        );
        for line in e.lines.iter().filter(|l| !l.starts_with("Query Text: ")) {
            println!("        | {}", clip(line, 200));
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
