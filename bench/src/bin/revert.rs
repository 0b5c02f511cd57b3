//! Revert benchmark: plan and apply the revert of one 100,000-row
//! transaction and of 1,000 small transactions, on one throwaway cluster.
//! See `bench/REVERT.md`.
//!
//! ```text
//! cargo run --release -p pgtrail-bench --bin revert -- [--rows N] [--transactions N]
//!     [--rounds N] [--variant NAME=FUNCTIONS.sql ...]
//! ```
//!
//! With `--variant` (twice or more), each round measures every variant on the
//! same cluster, one after the other, in an order rotated from round to
//! round: before a variant's cases its file is run (e.g. the
//! `functions/70_revert.sql` of another revision, which replaces the revert
//! functions). Each case reverts a transaction of its own, made just before.
//!
//! 1. Creates `accounts` (`--rows` × 2 rows, more when the rounds need
//!    them) and `events` (a foreign key to
//!    `accounts`, an identity key), audited by pgtrail.
//! 2. Bulk: one transaction updates the email of `--rows` accounts; its
//!    revert is planned (`pgtrail.revert_plan`), then applied
//!    (`pgtrail.revert`), timing the writes by its progress notices (the
//!    first is sent when writing starts, one after each batch).
//! 3. Small: `--transactions` transactions each update one account and
//!    insert one event; all of them are reverted at once (by txid).
//! 4. Before each commit, lists the table locks the revert's transaction
//!    holds on the audited tables: row locks only (ROW EXCLUSIVE), never
//!    ACCESS EXCLUSIVE.
//!
//! Beside the wall times it reads the server backend's CPU time for the plan
//! and for the revert, in nanoseconds (`/proc/<pid>/schedstat`; the cluster
//! runs on this machine): on a shared machine the CPU per row is the steadier
//! figure. The revert's is split where its first progress notice arrives
//! (sent as the writes start): the plan it makes again, then the writes.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use pgtrail_bench::{procstat, server};
use serde_json::{Value, json};
use tokio_postgres::{AsyncMessage, Client, NoTls};

#[derive(Debug, Parser)]
#[command(about = "Measure planning and applying reverts")]
struct Args {
    /// Rows changed by the bulk transaction.
    #[arg(long, default_value_t = 100_000)]
    rows: i64,
    /// Small transactions reverted at once.
    #[arg(long, default_value_t = 1_000)]
    transactions: i64,
    /// Rounds (each measures every variant once).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// NAME=FILE: a variant, the SQL file run before its cases (the revert
    /// functions of some revision). None: the functions this build installs.
    #[arg(long = "variant")]
    variants: Vec<String>,
}

/// The revert's progress notices as they arrived: when, rows done, and the
/// backend's CPU time then (nanoseconds; none before its pid is known).
/// The first is sent when the writes start: CPU before it is the plan the
/// revert makes again, after it the writes.
type Notices = Arc<Mutex<Vec<(Instant, u64, Option<u64>)>>>;

/// A connection whose notices are collected, and the pid of its backend
/// (0 until the caller sets it), read as each notice arrives.
async fn connect_with_progress(url: &str) -> Result<(Client, Notices, Arc<AtomicI32>)> {
    let (client, mut connection) = tokio_postgres::connect(url, NoTls).await.context("connect")?;
    let notices: Notices = Arc::default();
    let pid = Arc::new(AtomicI32::new(0));
    let sink = notices.clone();
    let backend = pid.clone();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = futures_util::StreamExt::next(&mut messages).await {
            if let AsyncMessage::Notice(notice) = message
                && let Some((done, _)) = pgtrail::revert::progress::parse(notice.message())
            {
                let cpu = match backend.load(Ordering::Relaxed) {
                    0 => None,
                    pid => procstat::cpu_nanos(pid).ok(),
                };
                if let Ok(mut list) = sink.lock() {
                    list.push((Instant::now(), done, cpu));
                }
            }
        }
    });
    Ok((client, notices, pid))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let cluster = server::start(&[
        ("shared_buffers", "1GB"),
        ("max_wal_size", "10GB"),
        ("synchronous_commit", "off"),
        ("work_mem", "64MB"),
    ])?;
    let url = cluster.url("postgres");
    let setup = server::connect(&cluster, "postgres").await?;
    setup
        .batch_execute(&format!(
            "CREATE TABLE accounts (id int PRIMARY KEY, email text NOT NULL, name text, balance numeric(12,2),
                                    updated_at timestamptz DEFAULT now());
             CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                                  account_id int NOT NULL REFERENCES accounts, kind text, at timestamptz DEFAULT now());
             INSERT INTO accounts (id, email, name, balance)
             SELECT g, 'user' || g || '@example.com', 'User ' || g, g % 1000 FROM generate_series(1, {}) AS g;",
            (args.rows * 2).max(args.rows + args.transactions * (args.rounds.max(1) * args.variants.len().max(1)) as i64)
        ))
        .await
        .context("schema")?;
    let mut installer = server::connect(&cluster, "postgres").await?;
    let config = pgtrail::config::Config::parse(
        "[capture]\ninclude = [\"accounts\", \"events\"]\nignore_columns = [\"updated_at\"]\n",
        "bench pgtrail.toml",
    )?;
    pgtrail::plan::apply(&mut installer, &config).await?;
    setup.batch_execute("VACUUM ANALYZE").await?;

    let mut variants: Vec<(String, Option<String>)> = Vec::new();
    for v in &args.variants {
        let Some((name, file)) = v.split_once('=') else {
            bail!("--variant takes NAME=FILE, got `{v}`");
        };
        let sql = std::fs::read_to_string(file).with_context(|| format!("read {file}"))?;
        variants.push((name.to_string(), Some(sql)));
    }
    if variants.is_empty() {
        variants.push(("this build".to_string(), None));
    }

    let mut results = Vec::new();
    let mut small_base = args.rows;
    for round in 0..args.rounds {
        for k in 0..variants.len() {
            let (name, sql) = &variants[(k + round) % variants.len()];
            if let Some(sql) = sql {
                setup
                    .batch_execute(sql)
                    .await
                    .with_context(|| format!("load variant {name}"))?;
            }
            eprintln!("round {}, {name}:", round + 1);
            // Bulk: one transaction of `rows` updates.
            let bulk = txid_of(
                &setup,
                &format!(
                    "SELECT pgtrail.set_context(actor_name => 'batch_script@system');
                     UPDATE accounts SET email = lower(name) || '@broken-{round}-{k}.test' WHERE id <= {}",
                    args.rows
                ),
            )
            .await?;
            let mut bulk_result = measure(&url, "one transaction", &[bulk], args.rows).await?;
            bulk_result["variant"] = json!(name);
            bulk_result["round"] = json!(round + 1);
            results.push(bulk_result);

            // Small: `transactions` transactions of two rows each, on accounts
            // no other case has touched.
            let mut small = Vec::new();
            for i in 0..args.transactions {
                let id = small_base + 1 + i;
                small.push(
                    txid_of(
                        &setup,
                        &format!(
                            "SELECT pgtrail.set_context(actor_name => 'clerk-{}', reason => 'ticket {i}');
                             UPDATE accounts SET name = 'Renamed {i}' WHERE id = {id};
                             INSERT INTO events (account_id, kind) VALUES ({id}, 'renamed')",
                            i % 20
                        ),
                    )
                    .await?,
                );
            }
            small_base += args.transactions;
            let mut small_result = measure(&url, "small transactions", &small, args.transactions * 2).await?;
            small_result["variant"] = json!(name);
            small_result["round"] = json!(round + 1);
            results.push(small_result);
        }
    }

    let mut summary = Vec::new();
    for (name, _) in &variants {
        for case in ["one transaction", "small transactions"] {
            let of = |field: &str| -> Vec<f64> {
                results
                    .iter()
                    .filter(|r| r["variant"] == json!(name) && r["name"] == json!(case))
                    .filter_map(|r| r[field].as_f64())
                    .collect()
            };
            let median = |field: &str| pgtrail_bench::stats::median(&of(field));
            summary.push(json!({
                "variant": name,
                "case": case,
                "plan_seconds": median("plan_seconds"),
                "revert_seconds": median("revert_seconds"),
                "write_seconds": median("write_seconds"),
                "plan_cpu_us_per_row": median("plan_cpu_us_per_row"),
                "revert_cpu_us_per_row": median("revert_cpu_us_per_row"),
                "revert_plan_cpu_us_per_row": median("revert_plan_cpu_us_per_row"),
                "write_cpu_us_per_row": median("write_cpu_us_per_row"),
                "rows_per_second_written": median("rows_per_second_written"),
                "rows_per_second_overall": median("rows_per_second_overall"),
            }));
        }
    }
    for row in &summary {
        eprintln!("median {row}");
    }

    let report = json!({
        "rows": args.rows, "transactions": args.transactions, "rounds": args.rounds,
        "results": results, "medians": summary,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    drop(cluster);
    Ok(())
}

async fn txid_of(client: &Client, sql: &str) -> Result<i64> {
    client.batch_execute("BEGIN").await?;
    client.batch_execute(sql).await.context("workload")?;
    let txid: i64 = client.query_one("SELECT txid_current()", &[]).await?.get(0);
    client.batch_execute("COMMIT").await?;
    Ok(txid)
}

/// Plans and applies one revert on a connection of its own, as `pgtrail
/// revert` does (nothing a session keeps is carried from one variant to
/// the next).
async fn measure(url: &str, name: &str, txids: &[i64], expected: i64) -> Result<Value> {
    let (client, notices, backend) = connect_with_progress(url).await?;
    let selector = json!({ "txids": txids });
    let pid: i32 = client.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
    backend.store(pid, Ordering::Relaxed);
    let seconds = |nanos: u64| nanos as f64 / 1e9;
    let cpu_before_plan = procstat::cpu_nanos(pid)?;
    let started = Instant::now();
    let plan = client
        .query(
            "SELECT step, rows FROM pgtrail.revert_plan($1) WHERE step IS NOT NULL",
            &[&selector],
        )
        .await
        .context("revert_plan")?;
    let plan_time = started.elapsed();
    let plan_cpu = seconds(procstat::cpu_nanos(pid)?.saturating_sub(cpu_before_plan));
    let statements = plan.len();
    let planned_rows: i64 = plan.iter().filter_map(|r| r.get::<_, Option<i64>>(1)).sum();

    if let Ok(mut list) = notices.lock() {
        list.clear();
    }
    client
        .batch_execute("BEGIN; SET LOCAL pgtrail.progress = 'on'")
        .await?;
    let cpu_before_revert = procstat::cpu_nanos(pid)?;
    let started = Instant::now();
    client
        .query(
            "SELECT operation FROM pgtrail.revert($1, 'refuse', 'benchmark')",
            &[&selector],
        )
        .await
        .context("revert")?;
    let revert_time = started.elapsed();
    let cpu_after_revert = procstat::cpu_nanos(pid)?;
    let revert_cpu = seconds(cpu_after_revert.saturating_sub(cpu_before_revert));
    let locks: Vec<String> = client
        .query(
            "SELECT DISTINCT l.mode FROM pg_locks AS l
             WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation'
               AND l.relation IN ('accounts'::regclass, 'events'::regclass) ORDER BY 1",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    client.batch_execute("COMMIT").await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // (The writes: from the first notice, sent as they start, to the last;
    // their CPU from the first notice to the revert's end.)
    let (writes, written, writes_from_cpu) = match notices.lock() {
        Ok(list) => match (list.first(), list.last()) {
            (Some(first), Some(last)) => (last.0.duration_since(first.0), last.1, first.2),
            _ => (Duration::ZERO, 0, None),
        },
        Err(_) => (Duration::ZERO, 0, None),
    };
    let write_cpu = writes_from_cpu.map(|from| seconds(cpu_after_revert.saturating_sub(from)));
    if written as i64 != expected || planned_rows < expected {
        bail!("{name}: expected {expected} rows, planned {planned_rows}, wrote {written}");
    }
    if locks.iter().any(|m| m == "AccessExclusiveLock") {
        bail!("{name}: the revert took an ACCESS EXCLUSIVE lock");
    }
    let rate = written as f64 / writes.as_secs_f64().max(1e-9);
    let per_row = |seconds: f64| seconds * 1e6 / (written.max(1) as f64);
    let write_cpu_per_row = write_cpu.map(per_row);
    eprintln!(
        "{name}: {written} rows; plan {:.2} s ({:.1} µs CPU/row); revert {:.2} s ({:.1} µs CPU/row: plan again {}, writes {}; writing {:.2} s: {:.0} rows/s; overall {:.0} rows/s); table locks: {}",
        plan_time.as_secs_f64(),
        per_row(plan_cpu),
        revert_time.as_secs_f64(),
        per_row(revert_cpu),
        write_cpu_per_row.map_or("?".to_string(), |w| format!("{:.1}", per_row(revert_cpu) - w)),
        write_cpu_per_row.map_or("?".to_string(), |w| format!("{w:.1}")),
        writes.as_secs_f64(),
        rate,
        written as f64 / revert_time.as_secs_f64(),
        locks.join(", ")
    );
    Ok(json!({
        "name": name,
        "transactions": txids.len(),
        "statements": statements,
        "rows": written,
        "plan_seconds": plan_time.as_secs_f64(),
        "plan_cpu_seconds": plan_cpu,
        "plan_cpu_us_per_row": per_row(plan_cpu),
        "revert_seconds": revert_time.as_secs_f64(),
        "revert_cpu_seconds": revert_cpu,
        "revert_cpu_us_per_row": per_row(revert_cpu),
        "revert_plan_cpu_us_per_row": write_cpu_per_row.map(|w| per_row(revert_cpu) - w),
        "write_cpu_us_per_row": write_cpu_per_row,
        "write_seconds": writes.as_secs_f64(),
        "rows_per_second_written": rate,
        "rows_per_second_overall": written as f64 / revert_time.as_secs_f64(),
        "table_locks": locks,
    }))
}
