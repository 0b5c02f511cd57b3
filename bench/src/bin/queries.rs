//! Query benchmark: pgtrail's query functions over a large trail, on one
//! throwaway cluster. See `bench/QUERIES.md`.
//!
//! ```text
//! cargo run --release -p pgtrail-bench --bin queries -- [--changes N] [--tables N] [--rows N] [--quick]
//! ```
//!
//! 1. Creates `--tables` small audited tables, `big` (`--rows` rows) and
//!    `snap` (`--snap-rows` rows), and applies pgtrail (all of them audited).
//! 2. Generates a trail of `--changes` changes through the real capture
//!    triggers: transactions of bulk UPDATE and INSERT statements spread over
//!    the tables, each with `pgtrail.set_context` of one of 50 actors, run by
//!    `--workers` sessions at once, so the changes spread over real time.
//! 3. Records a moment, then changes a few thousand rows of `snap` after it.
//! 4. VACUUM ANALYZE, then times each query (warm-up runs first) over
//!    `--runs` runs with random keys, and shows the plans of the statements
//!    each query function runs (auto_explain with nested statements).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use clap::Parser;
use pgtrail_bench::autoexplain;
use pgtrail_cluster::{Cluster, ClusterOptions};
use serde_json::{Value, json};
use tokio_postgres::{Client, NoTls, Statement};

/// Distinct actors passed to `pgtrail.set_context`.
const ACTORS: u64 = 50;
/// Rows of each small table at the start, and rows per small-table statement.
const SMALL_ROWS: i64 = 100;
/// Warm-up runs of each query before the measured ones.
const WARMUP: usize = 5;

#[derive(Debug, Parser)]
#[command(about = "Measure pgtrail's query functions over a large trail")]
struct Args {
    /// Changes to record in the trail [default: 10,000,000, or 300,000 with --quick].
    #[arg(long)]
    changes: Option<i64>,
    /// Small audited tables [default: 1,000, or 100 with --quick].
    #[arg(long)]
    tables: Option<i64>,
    /// Rows of `big` [default: 1,000,000, or 100,000 with --quick].
    #[arg(long)]
    rows: Option<i64>,
    /// Rows of `snap`, the table read with table_as_of [default: 100,000, or 20,000 with --quick].
    #[arg(long)]
    snap_rows: Option<i64>,
    /// Measured runs per query [default: 50, or 20 with --quick].
    #[arg(long)]
    runs: Option<usize>,
    /// Sessions generating the trail at once.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Small run (~1 minute) to check that everything works.
    #[arg(long)]
    quick: bool,
    /// Skip the final experiment (an extra btree index on the trail's
    /// (txid, ctx), in the throwaway cluster only, then the actor window again).
    #[arg(long)]
    no_index_experiment: bool,
}

/// The sizes of a run, defaults filled in.
#[derive(Debug, Clone, Copy)]
struct Scale {
    changes: i64,
    tables: i64,
    rows: i64,
    snap_rows: i64,
    runs: usize,
    workers: usize,
    /// Changes per load transaction.
    tx_changes: i64,
    /// Rows of `big` updated per transaction (60%).
    big_per_tx: i64,
    /// Small-table statements per transaction (~35% of the changes).
    small_stmts_per_tx: i64,
    /// Rows of `snap` updated per transaction (the rest, ~5%).
    snap_per_tx: i64,
    /// Load transactions.
    transactions: i64,
    /// Run the extra-index experiment at the end.
    index_experiment: bool,
}

impl Scale {
    fn new(args: &Args) -> Result<Scale> {
        let q = args.quick;
        let changes = args.changes.unwrap_or(if q { 300_000 } else { 10_000_000 });
        let tables = args.tables.unwrap_or(if q { 100 } else { 1_000 });
        let rows = args.rows.unwrap_or(if q { 100_000 } else { 1_000_000 });
        let snap_rows = args.snap_rows.unwrap_or(if q { 20_000 } else { 100_000 });
        let runs = args.runs.unwrap_or(if q { 20 } else { 50 }).max(1);
        if changes < 1_000 || tables < 1 || rows < 1_000 || snap_rows < 10_000 {
            bail!("need --changes >= 1000, --tables >= 1, --rows >= 1000, --snap-rows >= 10000");
        }
        let tx_changes = (changes / 1_000).clamp(1_000, 10_000);
        let big_per_tx = (tx_changes * 6 / 10).min(rows);
        let small_stmts_per_tx = tx_changes * 35 / 100 / SMALL_ROWS;
        let snap_per_tx = (tx_changes - big_per_tx - small_stmts_per_tx * SMALL_ROWS).min(snap_rows);
        let transactions = (changes + tx_changes - 1) / tx_changes;
        Ok(Scale {
            changes,
            tables,
            rows,
            snap_rows,
            runs,
            workers: args.workers.max(1),
            tx_changes,
            big_per_tx,
            small_stmts_per_tx,
            snap_per_tx,
            transactions,
            index_experiment: !args.no_index_experiment,
        })
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let scale = Scale::new(&args)?;
    let started = Instant::now();
    let cluster = Cluster::start(ClusterOptions {
        settings: [
            ("shared_buffers", "1GB"),
            ("max_wal_size", "20GB"),
            ("checkpoint_timeout", "30min"),
            ("synchronous_commit", "off"),
            ("work_mem", "16MB"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        ..Default::default()
    })
    .context("start the throwaway PostgreSQL cluster")?;
    let result = run(scale, &cluster, started).await;
    drop(cluster);
    result
}

async fn connect(cluster: &Cluster) -> Result<Client> {
    let url = cluster.url("postgres");
    let (client, connection) = tokio_postgres::connect(&url, NoTls)
        .await
        .with_context(|| format!("connect to {url}"))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("connection error: {error}");
        }
    });
    Ok(client)
}

/// splitmix64: small, seeded, good enough for picking keys.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One load transaction, as the client saw it.
#[derive(Debug, Clone)]
struct TxRecord {
    actor: u64,
    /// Server clock_timestamp() after set_context and before COMMIT.
    start: SystemTime,
    end: SystemTime,
    changes: u64,
}

fn actor_id(actor: u64) -> String {
    format!("actor-{actor:02}")
}

fn small_table(i: i64) -> String {
    format!("t{i:04}")
}

async fn run(scale: Scale, cluster: &Cluster, started: Instant) -> Result<()> {
    let admin = connect(cluster).await?;
    let version: String = admin
        .query_one("SELECT version()", &[])
        .await
        .context("SELECT version()")?
        .get(0);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("pgtrail query benchmark");
    println!("  server:   {version}");
    println!("  machine:  {cpus} CPUs, {memory} memory");
    println!(
        "  settings: shared_buffers=1GB max_wal_size=20GB checkpoint_timeout=30min work_mem=16MB synchronous_commit=off;"
    );
    println!(
        "            during the LOAD phase only: fsync=off, full_page_writes=off, autovacuum=off (all back on before measuring)"
    );
    println!(
        "  plan:     {} small tables of {SMALL_ROWS} rows, big {} rows, snap {} rows; trail of {} changes in {} transactions of ~{} \
         ({} big + {} x {SMALL_ROWS} small + {} snap), {} sessions; {} runs per query after {WARMUP} warm-up runs",
        scale.tables,
        scale.rows,
        scale.snap_rows,
        scale.changes,
        scale.transactions,
        scale.tx_changes,
        scale.big_per_tx,
        scale.small_stmts_per_tx,
        scale.snap_per_tx,
        scale.workers,
        scale.runs
    );
    println!();

    // Setup.
    let step = Instant::now();
    for sql in [
        "ALTER SYSTEM SET fsync = off",
        "ALTER SYSTEM SET full_page_writes = off",
        "ALTER SYSTEM SET autovacuum = off",
        "SELECT pg_reload_conf()",
    ] {
        admin
            .batch_execute(sql)
            .await
            .with_context(|| format!("switch durability off for the load: {sql}"))?;
    }
    let mut ddl = String::from(
        "CREATE TABLE big (id integer PRIMARY KEY, a integer NOT NULL, b text NOT NULL, c numeric(12,2), d timestamptz);
         CREATE TABLE snap (id integer PRIMARY KEY, a integer NOT NULL, b text NOT NULL, c numeric(12,2));\n",
    );
    for i in 1..=scale.tables {
        let t = small_table(i);
        ddl.push_str(&format!(
            "CREATE TABLE {t} (id integer PRIMARY KEY, a integer NOT NULL, b text NOT NULL, c timestamptz);
             INSERT INTO {t} SELECT g, g, md5(g::text), now() FROM generate_series(1, {SMALL_ROWS}) AS g;\n"
        ));
    }
    admin.batch_execute(&ddl).await.context("create the tables")?;
    admin
        .execute(
            "INSERT INTO big SELECT g, g, md5(g::text), g / 100.0, now() FROM generate_series(1, $1::integer) AS g",
            &[&(scale.rows as i32)],
        )
        .await
        .context("fill big")?;
    admin
        .execute(
            "INSERT INTO snap SELECT g, g, md5(g::text), g / 100.0 FROM generate_series(1, $1::integer) AS g",
            &[&(scale.snap_rows as i32)],
        )
        .await
        .context("fill snap")?;
    admin
        .batch_execute("VACUUM ANALYZE")
        .await
        .context("vacuum the new tables")?;
    let mut admin = admin;
    let apply_step = Instant::now();
    let config =
        pgtrail::config::Config::parse("", "pgtrail.toml").context("parse the (empty) pgtrail config")?;
    pgtrail::plan::apply(&mut admin, &config)
        .await
        .context("install pgtrail (pgtrail::plan::apply)")?;
    let audited: i64 = admin
        .query_one(
            "SELECT count(*) FROM pgtrail.audited_table WHERE detached_at IS NULL",
            &[],
        )
        .await
        .context("count audited tables")?
        .get(0);
    println!(
        "setup: {} tables created and filled, pgtrail applied ({audited} audited tables; apply {:.0} s; setup {:.0} s)",
        scale.tables + 2,
        apply_step.elapsed().as_secs_f64(),
        step.elapsed().as_secs_f64()
    );

    // Load.
    let step = Instant::now();
    let load_start: SystemTime = admin.query_one("SELECT clock_timestamp()", &[]).await?.get(0);
    let next = Arc::new(AtomicI64::new(0));
    let mut workers = Vec::new();
    for w in 0..scale.workers {
        let client = connect(cluster).await?;
        let next = Arc::clone(&next);
        workers.push(tokio::spawn(async move {
            load_worker(client, scale, next, w == 0).await
        }));
    }
    let mut txs: Vec<TxRecord> = Vec::new();
    for w in workers {
        txs.extend(w.await.context("join a load worker")??);
    }
    txs.sort_by_key(|t| t.start);
    let load_end: SystemTime = admin.query_one("SELECT clock_timestamp()", &[]).await?.get(0);
    let loaded: u64 = txs.iter().map(|t| t.changes).sum();
    let load_secs = step.elapsed().as_secs_f64();
    println!(
        "load: {loaded} changes in {} transactions, {load_secs:.0} s ({:.0} changes/s)",
        txs.len(),
        loaded as f64 / load_secs
    );

    // The moment of table_as_of, then a few thousand changes of snap after it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let moment: SystemTime = admin.query_one("SELECT clock_timestamp()", &[]).await?.get(0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = snap_changes_after(&mut admin, scale.snap_rows).await?;
    let snap_at_moment: i64 = scale.snap_rows; // the trail after `moment` does not change the count (checked below).
    println!(
        "snap: {after} changes after the table_as_of moment (updates of ~{} rows, {} deletes, {} inserts)",
        scale.snap_rows / 50 + scale.snap_rows / 97,
        scale.snap_rows / 1000,
        scale.snap_rows / 500
    );

    // Back to durable settings; VACUUM ANALYZE.
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
    admin
        .batch_execute("VACUUM ANALYZE")
        .await
        .context("VACUUM ANALYZE")?;
    admin.batch_execute("CHECKPOINT").await.context("CHECKPOINT")?;
    let settings = admin
        .query_one(
            "SELECT current_setting('fsync'), current_setting('full_page_writes'), current_setting('autovacuum')",
            &[],
        )
        .await?;
    let (fsync, fpw, av): (String, String, String) = (settings.get(0), settings.get(1), settings.get(2));
    println!(
        "vacuum: VACUUM ANALYZE + CHECKPOINT {:.0} s; now fsync={fsync} full_page_writes={fpw} autovacuum={av}",
        step.elapsed().as_secs_f64()
    );
    print_trail_size(&admin).await?;
    println!();

    // Measurements.
    let client = connect(cluster).await?;
    let ctx = QueryContext::new(&client, &txs, load_start, load_end, moment, scale).await?;
    let mut rng = Rng(0x5EED_9A7E);
    let mut results: Vec<Measured> = Vec::new();
    for kind in Kind::ALL {
        let m = ctx.measure(kind, &mut rng).await?;
        println!(
            "  {:<34} median {:>9.3} ms  p95 {:>9.3} ms  min {:>9.3} ms  max {:>9.3} ms  rows/run {:.1}",
            m.label, m.median, m.p95, m.min, m.max, m.mean_rows
        );
        results.push(m);
    }
    let table_rows = results
        .iter()
        .find(|m| m.kind == Kind::TableAsOf)
        .map_or(0.0, |m| m.mean_rows);
    println!(
        "  check: table_as_of returned {table_rows:.0} rows per run; snap had {snap_at_moment} rows at the moment"
    );
    println!();

    // Plans.
    explain_all(cluster, &ctx, &mut rng).await?;

    // Experiment, not pgtrail's schema: the index the actor window lacks.
    if scale.index_experiment {
        println!();
        println!(
            "== experiment (NOT pgtrail's schema, this cluster only): CREATE INDEX bench_change_tx_idx ON pgtrail.change (txid, ctx)"
        );
        let step = Instant::now();
        admin
            .batch_execute("CREATE INDEX bench_change_tx_idx ON pgtrail.change (txid, ctx)")
            .await
            .context("create the experimental index")?;
        admin
            .batch_execute("ANALYZE pgtrail.change")
            .await
            .context("ANALYZE pgtrail.change")?;
        let size: i64 = admin
            .query_one("SELECT pg_relation_size('pgtrail.bench_change_tx_idx')", &[])
            .await?
            .get(0);
        println!(
            "  built and analyzed in {:.0} s, {}",
            step.elapsed().as_secs_f64(),
            mib(size)
        );
        let mut m = ctx.measure(Kind::ActorWindow, &mut rng).await?;
        m.label = format!("{} [+ (txid, ctx) index]", Kind::ActorWindow.label());
        println!(
            "  {:<34} median {:>9.3} ms  p95 {:>9.3} ms  min {:>9.3} ms  max {:>9.3} ms  rows/run {:.1}",
            m.label, m.median, m.p95, m.min, m.max, m.mean_rows
        );
        let w = &ctx.windows[rng.range(0, ctx.windows.len() as i64 - 1) as usize];
        explain_actor(&client, w).await?;
        results.push(m);
    }

    println!();
    println!(
        "Summary: warm, {} runs per query with random keys after {WARMUP} warm-up runs; total run time {:.0} s",
        scale.runs,
        started.elapsed().as_secs_f64()
    );
    println!();
    println!(
        "{:<48} {:>10} {:>10} {:>10} {:>10}  {:<9} {:<6}",
        "query", "median ms", "p95 ms", "max ms", "rows/run", "target", "result"
    );
    println!("{}", "-".repeat(113));
    for m in &results {
        let target = m.kind.target_ms();
        println!(
            "{:<48} {:>10.3} {:>10.3} {:>10.3} {:>10.1}  {:<9} {:<6}",
            m.label,
            m.median,
            m.p95,
            m.max,
            m.mean_rows,
            format!("< {target} ms"),
            if m.median < target { "PASS" } else { "FAIL" }
        );
    }
    Ok(())
}

/// One load session: takes transaction numbers until all are done.
async fn load_worker(
    mut client: Client,
    scale: Scale,
    next: Arc<AtomicI64>,
    report: bool,
) -> Result<Vec<TxRecord>> {
    let mut records = Vec::new();
    let started = Instant::now();
    let mut last_report = 0;
    loop {
        let k = next.fetch_add(1, Ordering::SeqCst);
        if k >= scale.transactions {
            break;
        }
        records.push(load_transaction(&mut client, &scale, k).await?);
        let decile = k * 10 / scale.transactions;
        if report && decile > last_report {
            last_report = decile;
            println!(
                "  load: {}% of the transactions started after {:.0} s",
                decile * 10,
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(records)
}

/// Load transaction `k`: set_context of a pseudo-random actor, then one bulk
/// UPDATE of `big`, small-table UPDATEs and INSERTs, one UPDATE of `snap`.
/// Which rows and columns follow from `k`, so concurrent transactions touch
/// different rows.
async fn load_transaction(client: &mut Client, scale: &Scale, k: i64) -> Result<TxRecord> {
    let mut rng = Rng(0xA11CE ^ (k as u64).wrapping_mul(0x9E37_79B9));
    let actor = rng.next() % ACTORS;
    let tx = client.transaction().await.context("BEGIN")?;
    tx.execute(
        "SELECT pgtrail.set_context($1::text, $2::text, 'user', $3::text)",
        &[
            &actor_id(actor),
            &format!("Actor {actor:02}"),
            &format!("load batch {k}"),
        ],
    )
    .await
    .context("pgtrail.set_context")?;
    let start: SystemTime = tx.query_one("SELECT clock_timestamp()", &[]).await?.get(0);
    let mut changes = 0u64;

    // big: a block of rows, cycling through the table; the columns changed
    // depend on the pass, so blame has different sources per column.
    let first = k * scale.big_per_tx;
    let pass = first / scale.rows;
    let lo = first % scale.rows;
    let hi = lo + scale.big_per_tx;
    let set = match pass % 3 {
        0 => "a = a + 1",
        1 => "b = md5(b || $3::text)",
        _ => "c = c + 1, d = clock_timestamp()",
    };
    let mut ranges = vec![(lo, hi.min(scale.rows))];
    if hi > scale.rows {
        ranges.push((0, hi - scale.rows));
    }
    for (lo, hi) in ranges {
        let sql = format!("UPDATE big SET {set} WHERE id > $1 AND id <= $2");
        let (lo, hi) = (lo as i32, hi as i32);
        changes += if pass % 3 == 1 {
            tx.execute(&sql, &[&lo, &hi, &k.to_string()]).await
        } else {
            tx.execute(&sql, &[&lo, &hi]).await
        }
        .context("UPDATE big")?;
    }

    // Small tables: every 5th pass inserts rows, the others update the first ones.
    for j in 0..scale.small_stmts_per_tx {
        let g = k * scale.small_stmts_per_tx + j;
        let table = small_table(g % scale.tables + 1);
        let pass = g / scale.tables;
        changes += if pass % 5 == 4 {
            tx.execute(
                &format!(
                    "INSERT INTO {table} SELECT m.m + g, g, md5((m.m + g)::text), clock_timestamp() \
                     FROM (SELECT max(id) AS m FROM {table}) AS m, generate_series(1, $1::integer) AS g"
                ),
                &[&(SMALL_ROWS as i32)],
            )
            .await
        } else {
            let set = match pass % 3 {
                0 => "a = a + 1",
                1 => "b = md5(b)",
                _ => "c = clock_timestamp(), a = a - 1",
            };
            tx.execute(
                &format!("UPDATE {table} SET {set} WHERE id <= $1"),
                &[&(SMALL_ROWS as i32)],
            )
            .await
        }
        .with_context(|| format!("change {table}"))?;
    }

    // snap: a block of rows, cycling.
    if scale.snap_per_tx > 0 {
        let lo = (k * scale.snap_per_tx) % scale.snap_rows;
        let hi = (lo + scale.snap_per_tx).min(scale.snap_rows);
        changes += tx
            .execute(
                "UPDATE snap SET a = a + 1, c = c + 1 WHERE id > $1 AND id <= $2",
                &[&(lo as i32), &(hi as i32)],
            )
            .await
            .context("UPDATE snap")?;
    }
    let end: SystemTime = tx.query_one("SELECT clock_timestamp()", &[]).await?.get(0);
    tx.commit().await.context("COMMIT")?;
    Ok(TxRecord {
        actor,
        start,
        end,
        changes,
    })
}

/// After the table_as_of moment: updates of ~3% of snap's rows (some twice),
/// deletes of 0.1%, inserts of 0.2% new rows; returns the number of changes.
async fn snap_changes_after(client: &mut Client, snap_rows: i64) -> Result<u64> {
    let mut n = 0;
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pgtrail.set_context($1::text, $2::text, 'user', $3::text)",
        &[&"actor-00", &"Actor 00", &"after the moment"],
    )
    .await?;
    n += tx
        .execute("UPDATE snap SET a = a + 1000 WHERE id % $1 = 0", &[&50i32])
        .await?;
    tx.commit().await?;
    let tx = client.transaction().await?;
    n += tx
        .execute(
            "UPDATE snap SET b = md5(b), c = c * 2 WHERE id % $1 = 0",
            &[&97i32],
        )
        .await?;
    n += tx
        .execute("DELETE FROM snap WHERE id % $1 = 1", &[&1000i32])
        .await?;
    n += tx
        .execute(
            "INSERT INTO snap SELECT $1::integer + g, g, md5(g::text), g FROM generate_series(1, $2::integer) AS g",
            &[&(snap_rows as i32 + 10), &((snap_rows / 500) as i32)],
        )
        .await?;
    tx.commit().await?;
    Ok(n)
}

async fn print_trail_size(client: &Client) -> Result<()> {
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM pgtrail.change),
                    pg_total_relation_size('pgtrail.change'),
                    pg_relation_size('pgtrail.change'),
                    (SELECT count(*) FROM pgtrail.transaction),
                    pg_total_relation_size('pgtrail.transaction')",
            &[],
        )
        .await
        .context("measure the trail")?;
    let (changes, total, heap, txs, tx_total): (i64, i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    println!(
        "trail: pgtrail.change {changes} rows, {} total ({} heap, {:.0} bytes/change total); \
         pgtrail.transaction {txs} rows, {}",
        mib(total),
        mib(heap),
        total as f64 / changes.max(1) as f64,
        mib(tx_total)
    );
    let indexes = client
        .query(
            "SELECT c.relname, pg_relation_size(c.oid) FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid
             WHERE i.indrelid IN ('pgtrail.change'::regclass, 'pgtrail.transaction'::regclass) ORDER BY 1",
            &[],
        )
        .await?;
    let list: Vec<String> = indexes
        .iter()
        .map(|r| format!("{} {}", r.get::<_, String>(0), mib(r.get(1))))
        .collect();
    println!("       indexes: {}", list.join(", "));
    let per_table = client
        .query(
            "SELECT t.table_name, count(*) FROM pgtrail.change AS c JOIN pgtrail.audited_table AS t ON t.id = c.table_id
             WHERE t.table_name IN ('big', 'snap') GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await?;
    let list: Vec<String> = per_table
        .iter()
        .map(|r| format!("{} {}", r.get::<_, String>(0), r.get::<_, i64>(1)))
        .collect();
    println!(
        "       changes per table: {} (the rest on the small tables)",
        list.join(", ")
    );
    Ok(())
}

fn mib(bytes: i64) -> String {
    format!("{:.0} MiB", bytes as f64 / 1_048_576.0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    History,
    RowAsOf,
    Blame,
    ActorWindow,
    TableAsOf,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::History,
        Kind::RowAsOf,
        Kind::Blame,
        Kind::ActorWindow,
        Kind::TableAsOf,
    ];

    fn label(self) -> &'static str {
        match self {
            Kind::History => "history(big, one row)",
            Kind::RowAsOf => "row_as_of(big, one row, random t)",
            Kind::Blame => "blame(big, one row), column b",
            Kind::ActorWindow => "changes: actor in a window",
            Kind::TableAsOf => "table_as_of(snap, all rows)",
        }
    }

    fn target_ms(self) -> f64 {
        match self {
            Kind::TableAsOf => 3000.0,
            _ => 5.0,
        }
    }

    fn sql(self) -> &'static str {
        match self {
            Kind::History => "SELECT * FROM pgtrail.history('big', $1)",
            Kind::RowAsOf => "SELECT pgtrail.row_as_of('big', $1, $2)",
            Kind::Blame => "SELECT * FROM pgtrail.blame('big', $1) WHERE column_name = $2",
            Kind::ActorWindow => {
                "SELECT * FROM pgtrail.changes WHERE actor_id = $1 AND changed_at BETWEEN $2 AND $3"
            }
            Kind::TableAsOf => "SELECT count(*) FROM pgtrail.table_as_of('snap', $1)",
        }
    }
}

/// One query's timings.
#[derive(Debug, Clone)]
struct Measured {
    kind: Kind,
    label: String,
    median: f64,
    p95: f64,
    min: f64,
    max: f64,
    mean_rows: f64,
}

/// An actor's window: `[from, to]` of real time holding ~1/10 of its changes.
#[derive(Debug, Clone)]
struct Window {
    actor: String,
    from: SystemTime,
    to: SystemTime,
    changes: u64,
}

struct QueryContext<'a> {
    client: &'a Client,
    statements: Vec<(Kind, Statement)>,
    windows: Vec<Window>,
    load_start: SystemTime,
    load_end: SystemTime,
    moment: SystemTime,
    scale: Scale,
}

impl<'a> QueryContext<'a> {
    async fn new(
        client: &'a Client,
        txs: &[TxRecord],
        load_start: SystemTime,
        load_end: SystemTime,
        moment: SystemTime,
        scale: Scale,
    ) -> Result<QueryContext<'a>> {
        let mut statements = Vec::new();
        for kind in Kind::ALL {
            let statement = client
                .prepare(kind.sql())
                .await
                .with_context(|| format!("prepare {}", kind.sql()))?;
            statements.push((kind, statement));
        }
        // Per actor, every run of consecutive transactions of it holding
        // about a tenth of its changes.
        let mut windows = Vec::new();
        for actor in 0..ACTORS {
            let mine: Vec<&TxRecord> = txs.iter().filter(|t| t.actor == actor).collect();
            if mine.is_empty() {
                continue;
            }
            let total: u64 = mine.iter().map(|t| t.changes).sum();
            let span = (mine.len() / 10).max(1);
            for i in 0..=(mine.len() - span) {
                let run = &mine[i..i + span];
                windows.push(Window {
                    actor: actor_id(actor),
                    from: run[0].start,
                    to: run[span - 1].end,
                    changes: run.iter().map(|t| t.changes).sum::<u64>().min(total),
                });
            }
        }
        if windows.is_empty() {
            bail!("no load transactions recorded");
        }
        let per_actor = txs.iter().map(|t| t.changes).sum::<u64>() as f64 / ACTORS as f64;
        let mean_changes = windows.iter().map(|w| w.changes).sum::<u64>() as f64 / windows.len() as f64;
        let mean_span = windows
            .iter()
            .map(|w| w.to.duration_since(w.from).unwrap_or_default().as_secs_f64())
            .sum::<f64>()
            / windows.len() as f64;
        let load_span = load_end
            .duration_since(load_start)
            .unwrap_or_default()
            .as_secs_f64();
        println!(
            "actor windows: {} candidates (runs of consecutive transactions of one actor); each holds {mean_changes:.0} \
             of the actor's changes on average ({:.3} of its ~{per_actor:.0}), spans {mean_span:.1} s of the {load_span:.1} s load",
            windows.len(),
            mean_changes / per_actor
        );
        Ok(QueryContext {
            client,
            statements,
            windows,
            load_start,
            load_end,
            moment,
            scale,
        })
    }

    fn statement(&self, kind: Kind) -> &Statement {
        &self
            .statements
            .iter()
            .find(|(k, _)| *k == kind)
            .expect("every kind is prepared")
            .1
    }

    fn random_key(&self, rng: &mut Rng) -> Value {
        json!({ "id": rng.range(1, self.scale.rows) })
    }

    fn random_moment(&self, rng: &mut Rng) -> SystemTime {
        let span = self.load_end.duration_since(self.load_start).unwrap_or_default();
        self.load_start + span.mul_f64(rng.unit())
    }

    /// Runs `kind` once with fresh random arguments; returns the rows it
    /// returned (for row_as_of, 1 when the row existed).
    async fn run_once(&self, kind: Kind, rng: &mut Rng) -> Result<(f64, f64)> {
        let st = self.statement(kind);
        let c = self.client;
        let start = Instant::now();
        let rows = match kind {
            Kind::History => c.query(st, &[&self.random_key(rng)]).await?.len() as f64,
            Kind::RowAsOf => {
                let row = c
                    .query_one(st, &[&self.random_key(rng), &self.random_moment(rng)])
                    .await?;
                f64::from(u8::from(row.get::<_, Option<Value>>(0).is_some()))
            }
            Kind::Blame => c.query(st, &[&self.random_key(rng), &"b"]).await?.len() as f64,
            Kind::ActorWindow => {
                let w = &self.windows[rng.range(0, self.windows.len() as i64 - 1) as usize];
                c.query(st, &[&w.actor, &w.from, &w.to]).await?.len() as f64
            }
            Kind::TableAsOf => c.query_one(st, &[&self.moment]).await?.get::<_, i64>(0) as f64,
        };
        Ok((start.elapsed().as_secs_f64() * 1000.0, rows))
    }

    async fn measure(&self, kind: Kind, rng: &mut Rng) -> Result<Measured> {
        for _ in 0..WARMUP {
            self.run_once(kind, rng)
                .await
                .with_context(|| format!("warm up {}", kind.label()))?;
        }
        let mut times = Vec::with_capacity(self.scale.runs);
        let mut rows = 0.0;
        for _ in 0..self.scale.runs {
            let (ms, n) = self
                .run_once(kind, rng)
                .await
                .with_context(|| format!("run {}", kind.label()))?;
            times.push(ms);
            rows += n;
        }
        times.sort_by(f64::total_cmp);
        Ok(Measured {
            kind,
            label: kind.label().to_owned(),
            median: percentile(&times, 0.5),
            p95: percentile(&times, 0.95),
            min: times[0],
            max: times[times.len() - 1],
            mean_rows: rows / self.scale.runs as f64,
        })
    }
}

/// Nearest-rank percentile of sorted values (the median averages the two
/// middle values of an even count).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    if p == 0.5 && n % 2 == 0 {
        return (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0;
    }
    let rank = ((p * n as f64).ceil() as usize).clamp(1, n);
    sorted[rank - 1]
}

/// EXPLAIN (ANALYZE, BUFFERS) of the actor-window query over `w`.
async fn explain_actor(client: &Client, w: &Window) -> Result<()> {
    println!(
        "  {} | {} in a window of {:.1} s holding ~{} of its changes: EXPLAIN (ANALYZE, BUFFERS)",
        Kind::ActorWindow.label(),
        w.actor,
        w.to.duration_since(w.from).unwrap_or_default().as_secs_f64(),
        w.changes
    );
    let plan = client
        .query(
            &format!("EXPLAIN (ANALYZE, BUFFERS) {}", Kind::ActorWindow.sql()),
            &[&w.actor, &w.from, &w.to],
        )
        .await
        .context("EXPLAIN the actor window")?;
    for row in plan {
        println!("        | {}", row.get::<_, String>(0));
    }
    Ok(())
}

/// Not measured: the plans of what each query runs.
async fn explain_all(cluster: &Cluster, ctx: &QueryContext<'_>, rng: &mut Rng) -> Result<()> {
    println!("== plans (one instrumented run each, not measured)");
    let log = cluster.log_file();

    // The per-row functions: every nested statement.
    let diag = connect(cluster).await?;
    for kind in [Kind::History, Kind::RowAsOf, Kind::Blame] {
        let key = ctx.random_key(rng);
        let at = ctx.random_moment(rng);
        autoexplain::load(&diag, "0").await?;
        let offset = autoexplain::log_offset(&log);
        let start = Instant::now();
        let n = match kind {
            Kind::History => diag.query(kind.sql(), &[&key]).await?.len(),
            Kind::RowAsOf => diag.query(kind.sql(), &[&key, &at]).await?.len(),
            _ => diag.query(kind.sql(), &[&key, &"b"]).await?.len(),
        };
        let elapsed = start.elapsed().as_secs_f64() * 1000.0;
        autoexplain::unload(&diag).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        println!(
            "  {} | key {key}: {n} rows, {elapsed:.1} ms instrumented",
            kind.label()
        );
        let entries = autoexplain::entries_since(&log, offset);
        autoexplain::print(&entries, 30, 2);
    }

    // The actor window: a plain query over the view.
    let w = &ctx.windows[rng.range(0, ctx.windows.len() as i64 - 1) as usize];
    explain_actor(&diag, w).await?;

    // table_as_of: statements over 5 ms (the per-key ones are the row_as_of
    // plans above), and function call counts and times.
    println!(
        "  {} | auto_explain of statements >= 5 ms; functions (track_functions = all)",
        Kind::TableAsOf.label()
    );
    autoexplain::load(&diag, "5ms").await?;
    diag.batch_execute("SET track_functions = 'all'; BEGIN")
        .await
        .context("track_functions")?;
    let offset = autoexplain::log_offset(&log);
    let start = Instant::now();
    let n: i64 = diag
        .query_one(Kind::TableAsOf.sql(), &[&ctx.moment])
        .await?
        .get(0);
    let elapsed = start.elapsed().as_secs_f64() * 1000.0;
    let functions = diag
        .query(
            "SELECT schemaname || '.' || funcname, calls, total_time, self_time \
             FROM pg_stat_xact_user_functions ORDER BY total_time DESC LIMIT 10",
            &[],
        )
        .await
        .context("read pg_stat_xact_user_functions")?;
    diag.batch_execute("COMMIT").await?;
    autoexplain::unload(&diag).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!("      {n} rows, {elapsed:.0} ms instrumented");
    println!(
        "      {:<34} {:>8} {:>12} {:>12}",
        "function", "calls", "total ms", "self ms"
    );
    for row in functions {
        println!(
            "      {:<34} {:>8} {:>12.1} {:>12.1}",
            row.get::<_, String>(0),
            row.get::<_, i64>(1),
            row.get::<_, f64>(2),
            row.get::<_, f64>(3)
        );
    }
    let entries = autoexplain::entries_since(&log, offset);
    autoexplain::print(&entries, 20, 3);
    Ok(())
}
