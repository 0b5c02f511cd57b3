//! WAL mode against trigger mode and no audit (issue 15), side by side in
//! one run on one throwaway cluster, rounds interleaved and rotated:
//!
//! - writer backend CPU per transaction (TPC-B with `set_context` in the
//!   audited databases; single-row UPDATE), and WAL written per transaction;
//!   two more writer variants split what WAL mode adds: `wal-no-context`
//!   (the WAL-mode database without `set_context`: the context trigger and
//!   its message) and `replica-full` (no pgtrail, the tables `REPLICA
//!   IDENTITY FULL`: whole old rows in the WAL alone);
//! - pgbench throughput (TPC-B, single-row UPDATE) with the follower
//!   stopped, and TPC-B with the follower running on the same machine;
//! - the follower draining what the workloads left in the slot: changes
//!   per second, and CPU per change (its server backend plus this process,
//!   where the decoding and batching run, and, since 2026-12-07, the
//!   follower's own thread: each drain runs it on a current-thread runtime
//!   of its own, as `pgtrail follow` runs it);
//! - once, at the end: the lag from a commit to its rows in the trail
//!   (p50, p99) under a steady load at `--lag-rate` changes per second:
//!   TPC-B (4 changes a transaction), or with `--lag-rows N` transactions
//!   of one `set_context` and one UPDATE of N rows (pgbench cannot offer
//!   10,000 TPC-B transactions' changes a second on a small machine; at
//!   10 rows it needs 1,000 transactions a second).
//!
//! The follower streams the slot (a replication connection). With
//! `--follower-only`, only the follower is measured, its two ways of reading
//! the slot side by side, rounds interleaved and rotated: `stream` and `sql`
//! (peek, then advance), or `stream-server-values` (streamed, every value
//! turned into JSON by the server, as before integers, booleans and text
//! were converted in the follower), or `stream-basic-values` (only integers,
//! booleans and text converted in the follower, as before `char(n)`,
//! `numeric`, `uuid`, `jsonb`, dates and timestamps were). Each round, for each in turn: `--drain-transactions`
//! TPC-B transactions (with `set_context`) are written with the follower
//! stopped, then drained (changes per second; server CPU per change: the
//! follower's backend plus, streaming, its walsender; this process's CPU per
//! change); then the lag under `--lag-rate` for `--lag-seconds`.
//!
//! `cargo run --release -p pgtrail-bench --bin wal -- --rounds 5`
//! `cargo run --release -p pgtrail-bench --bin wal -- --follower-only --rounds 3`
//! `cargo run --release -p pgtrail-bench --bin wal -- --follower-only --ways stream,stream-server-values --rounds 3`
//! `cargo run --release -p pgtrail-bench --bin wal -- --follower-only --ways stream,stream-basic-values --rounds 5`
//! `cargo run --release -p pgtrail-bench --bin wal -- --follower-only --lag-only --ways stream --lag-rows 10 --lag-rate 10000`
//! `cargo run --release -p pgtrail-bench --bin wal -- --follower-only --ways stream,stream-serial --rounds 5`
//! `cargo run --release -p pgtrail-bench --bin wal -- --follower-only --ways stream,stream-scalar-values --drain-workload types --rounds 3`
//!
//! `stream-scalar-values` leaves floats, `bytea`, `json`, arrays, intervals
//! and times to the server (as before the follower converted them);
//! `--drain-workload types` drains transactions of one UPDATE of 4 rows of
//! a table of those types instead of TPC-B.
//!
//! `stream-serial` builds each batch and then writes it on the one
//! connection; `stream` (since 2026-12-06) hands each built batch to a
//! trail writer with a connection of its own and builds the next meanwhile.
//! The follower's backend CPU is both connections' backends.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use pgtrail::follow::FollowOptions;
use pgtrail_bench::pgbench::{Pgbench, Run};
use pgtrail_bench::stats::{median, table};
use pgtrail_bench::{procstat, server};
use rand::Rng;
use tokio_postgres::Client;

#[derive(Parser, Debug)]
struct Args {
    /// Rounds; each variant runs once per round, in rotated order.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// pgbench scale.
    #[arg(long, default_value_t = 10)]
    scale: u32,
    /// Transactions of each CPU measurement (one connection).
    #[arg(long, default_value_t = 2000)]
    transactions: u32,
    /// Seconds of each pgbench run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// pgbench clients.
    #[arg(long, default_value_t = 4)]
    clients: u32,
    /// Changes per second of the steady load the lag is measured under.
    #[arg(long, default_value_t = 10_000)]
    lag_rate: u32,
    /// Seconds of the lag measurement.
    #[arg(long, default_value_t = 20)]
    lag_seconds: u64,
    /// Rows each transaction of the lag load changes: 0 for TPC-B (4
    /// changes), otherwise one `set_context` and one UPDATE of that many
    /// consecutive `pgbench_accounts` rows (pgbench offers --lag-rate
    /// changes a second with a tenth of the transactions at 10).
    #[arg(long, default_value_t = 0)]
    lag_rows: u32,
    /// With --follower-only: measure the lag only (no drains).
    #[arg(long)]
    lag_only: bool,
    /// Measure only the follower: streaming against SQL (peek, then advance).
    #[arg(long)]
    follower_only: bool,
    /// With --follower-only: TPC-B transactions (4 changes each) written
    /// before each drain.
    #[arg(long, default_value_t = 5000)]
    drain_transactions: u32,
    /// With --follower-only: what each drain's transactions write: TPC-B,
    /// or `types` (one `set_context` and one UPDATE of 4 rows of a table
    /// of floats, `bytea`, `json`, arrays, an interval and times: 4
    /// changes a transaction).
    #[arg(long, value_enum, default_value_t = Workload::Tpcb)]
    drain_workload: Workload,
    /// With --follower-only: the ways compared, side by side.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Transport::Stream, Transport::Sql])]
    ways: Vec<Transport>,
}

/// What a `--follower-only` drain's transactions write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Workload {
    /// TPC-B with `set_context`.
    Tpcb,
    /// `set_context` and one UPDATE of 4 rows of `typed`.
    Types,
}

/// Rows of the `types` workload's table.
const TYPED_ROWS: u32 = 10_000;

/// How the follower reads the slot, and writes the trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Transport {
    /// Streamed; the rows written by binary COPY (the default).
    Stream,
    /// Over SQL (peek, then advance); the rows written by binary COPY.
    Sql,
    /// Streamed, every value turned into JSON by the server (integers,
    /// booleans and text too, as before the follower converted them).
    StreamServerValues,
    /// Streamed, only integers, booleans, `text` and `varchar` turned into
    /// JSON by the follower (`char(n)`, `numeric`, timestamps and the rest
    /// by the server, as before the follower converted those too).
    StreamBasicValues,
    /// Streamed, floats, `bytea`, `json`, arrays, intervals and times
    /// turned into JSON by the server (as before the follower converted
    /// those too).
    StreamScalarValues,
    /// Streamed, each batch built and then written on the one connection
    /// (as before the trail writer's second connection wrote batch N while
    /// N+1 was built).
    StreamSerial,
}

impl Transport {
    fn label(self) -> &'static str {
        match self {
            Transport::Stream => "stream",
            Transport::Sql => "sql",
            Transport::StreamServerValues => "stream-server-values",
            Transport::StreamBasicValues => "stream-basic-values",
            Transport::StreamScalarValues => "stream-scalar-values",
            Transport::StreamSerial => "stream-serial",
        }
    }

    fn streams(self) -> bool {
        matches!(
            self,
            Transport::Stream
                | Transport::StreamServerValues
                | Transport::StreamBasicValues
                | Transport::StreamScalarValues
                | Transport::StreamSerial
        )
    }

    /// Whether batches are written on a second connection while the next
    /// is built.
    fn pipeline(self) -> bool {
        self != Transport::StreamSerial
    }

    /// Which values the follower converts itself.
    fn values(self) -> pgtrail::follow::Values {
        match self {
            Transport::StreamServerValues => pgtrail::follow::Values::Server,
            Transport::StreamBasicValues => pgtrail::follow::Values::Basic,
            Transport::StreamScalarValues => pgtrail::follow::Values::Scalar,
            Transport::Stream | Transport::Sql | Transport::StreamSerial => pgtrail::follow::Values::Here,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Variant {
    NoAudit,
    Trigger,
    Wal,
    /// The WAL-mode database, TPC-B without `set_context` (writer CPU only):
    /// what the context trigger and its message cost without it.
    WalNoContext,
    /// No pgtrail, the tables `REPLICA IDENTITY FULL` (writer CPU only):
    /// what logging whole old rows costs alone.
    ReplicaFull,
}

impl Variant {
    const ALL: [Variant; 3] = [Variant::NoAudit, Variant::Trigger, Variant::Wal];
    /// The variants whose writer CPU and WAL are measured.
    const WRITERS: [Variant; 5] = [
        Variant::NoAudit,
        Variant::Trigger,
        Variant::Wal,
        Variant::WalNoContext,
        Variant::ReplicaFull,
    ];

    fn label(self) -> &'static str {
        match self {
            Variant::NoAudit => "no-audit",
            Variant::Trigger => "trigger",
            Variant::Wal => "wal",
            Variant::WalNoContext => "wal-no-context",
            Variant::ReplicaFull => "replica-full",
        }
    }

    fn database(self) -> &'static str {
        match self {
            Variant::NoAudit => "noaudit",
            Variant::Trigger => "trigger_mode",
            Variant::Wal | Variant::WalNoContext => "wal_mode",
            Variant::ReplicaFull => "replica_full",
        }
    }
}

/// The slot's walsender.
const WALSENDER: &str = "SELECT active_pid FROM pg_replication_slots WHERE slot_name = pgtrail.wal_slot()";

/// The follower's trail writer (its second connection).
const WRITER: &str = "SELECT pid FROM pg_stat_activity
     WHERE application_name = 'pgtrail follow writer' AND datname = current_database()";

/// Values per metric and label (a variant, or "wal+follower"), per round.
#[derive(Default)]
struct Results {
    values: BTreeMap<(String, String), Vec<f64>>,
}

impl Results {
    fn record(&mut self, metric: &str, label: &str, value: f64) {
        println!("  {metric:<38} {label:<14} {value:>12.4}");
        self.values
            .entry((metric.to_string(), label.to_string()))
            .or_default()
            .push(value);
    }

    fn get(&self, metric: &str, label: &str) -> &[f64] {
        self.values
            .get(&(metric.to_string(), label.to_string()))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Per round: `label`'s value against no-audit's (ratio or difference); the median.
    fn compared(&self, metric: &str, label: &str, ratio: bool) -> Option<f64> {
        let base = self.get(metric, "no-audit");
        let values: Vec<f64> = self
            .get(metric, label)
            .iter()
            .zip(base)
            .map(|(v, b)| if ratio { v / b } else { v - b })
            .collect();
        median(&values)
    }
}

const ONE_ROWS: i32 = 100_000;

fn tpcb_script(scale: u32, context: bool) -> String {
    format!(
        "\\set aid random(1, {})\n\\set bid random(1, {scale})\n\\set tid random(1, {})\n\\set delta random(-5000, 5000)\n\
         BEGIN;\n{}UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;\n\
         SELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n\
         UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;\n\
         UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;\n\
         INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);\n\
         END;\n",
        100_000 * scale,
        10 * scale,
        if context {
            "SELECT pgtrail.set_context(actor_id => 'bench', reason => 'tpcb');\n"
        } else {
            ""
        }
    )
}

/// The `types` drain workload: one `set_context` and one UPDATE of 4
/// consecutive rows of `typed` (in key order: clients wait, never
/// deadlock), every typed column changed: 4 changes a transaction.
fn types_script() -> String {
    format!(
        "\\set id random(1, {})\n\
         BEGIN;\nSELECT pgtrail.set_context(actor_id => 'bench', reason => 'types');\n\
         UPDATE typed SET n = n + 1, f8 = random() * 1e6, f4 = random(), b = decode(md5(random()::text), 'hex'), \
         j = json_build_object('n', n, 'x', random(), 'tags', json_build_array('a', 'b c')), \
         ia = ARRAY[n, id, NULL], ta = ARRAY['row', 'n ' || n], iv = iv + interval '1.5 seconds', \
         tm = tm + interval '1 second', tz = tz + interval '1 second' WHERE id BETWEEN :id AND :id + 3;\n\
         END;\n",
        TYPED_ROWS - 3
    )
}

/// The lag load at `--lag-rows`: one `set_context` and one UPDATE of `rows`
/// consecutive accounts (in key order, so clients wait, never deadlock).
fn rows_script(scale: u32, rows: u32) -> String {
    format!(
        "\\set aid random(1, {})\n\\set delta random(-5000, 5000)\n\
         BEGIN;\nSELECT pgtrail.set_context(actor_id => 'bench', reason => 'lag');\n\
         UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid BETWEEN :aid AND :aid + {};\n\
         END;\n",
        (100_000 * scale).saturating_sub(rows).max(1),
        rows.saturating_sub(1)
    )
}

fn update_script() -> String {
    format!("\\set id random(1, {ONE_ROWS})\nUPDATE one SET n = n + 1 WHERE id = :id;\n")
}

struct Bench {
    args: Args,
    cluster: pgtrail_cluster::Cluster,
    pgbench: Pgbench,
    clients: BTreeMap<Variant, Client>,
    scripts: tempfile_dir::Dir,
    clk_tck: u64,
    results: Results,
}

/// A scratch directory for the pgbench scripts (removed at the end).
mod tempfile_dir {
    use std::path::{Path, PathBuf};

    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new() -> std::io::Result<Dir> {
            let path = std::env::temp_dir().join(format!("pgtrail-bench-wal-{}", std::process::id()));
            std::fs::create_dir_all(&path)?;
            Ok(Dir(path))
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Bench {
    fn script(&self, name: &str) -> std::path::PathBuf {
        self.scripts.path().join(name)
    }

    fn client(&self, variant: Variant) -> &Client {
        &self.clients[&variant]
    }

    async fn setup(&mut self) -> Result<()> {
        let admin = server::connect(&self.cluster, "postgres").await?;
        let variants: &[Variant] = if self.args.follower_only {
            &[Variant::Wal]
        } else {
            &[
                Variant::NoAudit,
                Variant::Trigger,
                Variant::Wal,
                Variant::ReplicaFull,
            ]
        };
        for &variant in variants {
            let db = variant.database();
            admin.batch_execute(&format!("CREATE DATABASE {db}")).await?;
            self.pgbench.initialize(db, self.args.scale).await?;
            let mut client = server::connect(&self.cluster, db).await?;
            client
                .batch_execute(&format!(
                    "CREATE TABLE one (id integer PRIMARY KEY, n integer NOT NULL, note text);
                     INSERT INTO one SELECT i, 0, 'row ' || i FROM generate_series(1, {ONE_ROWS}) AS i"
                ))
                .await?;
            if self.args.follower_only && self.args.drain_workload == Workload::Types {
                client
                    .batch_execute(&format!(
                        "CREATE TABLE typed (id integer PRIMARY KEY, n integer NOT NULL, f8 double precision,
                                             f4 real, b bytea, j json, ia integer[], ta text[],
                                             iv interval, tm time, tz timetz);
                         INSERT INTO typed
                         SELECT i, 0, random() * 1e6, random(), decode(md5(i::text), 'hex'),
                                json_build_object('i', i, 'x', random(), 'tags', json_build_array('a', 'b c')),
                                ARRAY[i, i + 1, NULL], ARRAY['row', 'number ' || i],
                                make_interval(secs => i * 1.5), '12:00'::time + make_interval(secs => i),
                                '12:00+02'::timetz + make_interval(secs => i)
                         FROM generate_series(1, {TYPED_ROWS}) AS i"
                    ))
                    .await?;
            }
            client.batch_execute("VACUUM ANALYZE").await?;
            let toml = match variant {
                Variant::NoAudit | Variant::WalNoContext => None,
                Variant::ReplicaFull => {
                    client
                        .batch_execute(
                            "ALTER TABLE pgbench_accounts REPLICA IDENTITY FULL;
                             ALTER TABLE pgbench_tellers REPLICA IDENTITY FULL;
                             ALTER TABLE pgbench_branches REPLICA IDENTITY FULL;
                             ALTER TABLE pgbench_history REPLICA IDENTITY FULL;
                             ALTER TABLE one REPLICA IDENTITY FULL;",
                        )
                        .await?;
                    None
                }
                Variant::Trigger => Some(""),
                Variant::Wal => Some("[capture]\nmode = \"wal\"\n"),
            };
            if let Some(toml) = toml {
                let config = pgtrail::config::Config::parse(toml, "pgtrail.toml")?;
                pgtrail::plan::apply(&mut client, &config)
                    .await
                    .with_context(|| format!("install pgtrail in {db}"))?;
            }
            self.clients.insert(variant, client);
        }
        let second = server::connect(&self.cluster, Variant::WalNoContext.database()).await?;
        self.clients.insert(Variant::WalNoContext, second);
        for (name, text) in [
            ("tpcb.sql", tpcb_script(self.args.scale, false)),
            ("tpcb_ctx.sql", tpcb_script(self.args.scale, true)),
            ("update.sql", update_script()),
            ("rows_ctx.sql", rows_script(self.args.scale, self.args.lag_rows)),
            ("types_ctx.sql", types_script()),
        ] {
            std::fs::write(self.script(name), text)?;
        }
        Ok(())
    }

    /// Writer backend CPU (µs) and WAL (bytes) per transaction of one
    /// connection: TPC-B (with set_context when audited) or a single-row UPDATE.
    async fn cpu(&mut self, variant: Variant, tpcb: bool) -> Result<(f64, f64)> {
        let client = self.client(variant);
        let n = self.args.transactions;
        let scale = self.args.scale as i32;
        let pid: i32 = client.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
        let mut rng = rand::rng();
        let context = matches!(variant, Variant::Trigger | Variant::Wal)
            .then_some("SELECT pgtrail.set_context(actor_id => 'bench', reason => 'tpcb')");
        let update_a = client
            .prepare("UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2")
            .await?;
        let select_a = client
            .prepare("SELECT abalance FROM pgbench_accounts WHERE aid = $1")
            .await?;
        let update_t = client
            .prepare("UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2")
            .await?;
        let update_b = client
            .prepare("UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2")
            .await?;
        let insert_h = client
            .prepare("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)")
            .await?;
        let set_context = match context {
            Some(sql) => Some(client.prepare(sql).await?),
            None => None,
        };
        let update_one = client.prepare("UPDATE one SET n = n + 1 WHERE id = $1").await?;
        let wal_before: String = client
            .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
            .await?
            .get(0);
        let cpu = procstat::cpu_ticks(pid)?;
        for _ in 0..n {
            if tpcb {
                let aid: i32 = rng.random_range(1..=100_000 * scale);
                let bid: i32 = rng.random_range(1..=scale);
                let tid: i32 = rng.random_range(1..=10 * scale);
                let delta: i32 = rng.random_range(-5000..=5000);
                client.batch_execute("BEGIN").await?;
                if let Some(set_context) = &set_context {
                    client.query(set_context, &[]).await?;
                }
                client.execute(&update_a, &[&delta, &aid]).await?;
                client.query(&select_a, &[&aid]).await?;
                client.execute(&update_t, &[&delta, &tid]).await?;
                client.execute(&update_b, &[&delta, &bid]).await?;
                client.execute(&insert_h, &[&tid, &bid, &aid, &delta]).await?;
                client.batch_execute("COMMIT").await?;
            } else {
                let id: i32 = rng.random_range(1..=ONE_ROWS);
                client.execute(&update_one, &[&id]).await?;
            }
        }
        let cpu_us = (procstat::cpu_ticks(pid)? - cpu) as f64 * 1e6 / self.clk_tck as f64 / f64::from(n);
        let wal: f64 = client
            .query_one(
                "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1::text::pg_lsn)::float8",
                &[&wal_before],
            )
            .await?
            .get(0);
        Ok((cpu_us, wal / f64::from(n)))
    }

    async fn throughput(&self, variant: Variant, script: &str) -> Result<f64> {
        let path = self.script(script);
        let outcome = self
            .pgbench
            .run(&Run {
                dbname: variant.database(),
                script: Some(Path::new(&path)),
                clients: self.args.clients,
                threads: 2,
                seconds: self.args.seconds,
            })
            .await?;
        Ok(outcome.tps)
    }

    /// Where a streaming follower connects.
    fn replication(&self, transport: Transport) -> Result<Option<pgtrail::follow::Replication>> {
        Ok(match transport.streams() {
            false => None,
            true => Some(
                pgtrail::connect::Target::parse(&self.cluster.url(Variant::Wal.database()), "the bench")?
                    .replication()
                    .context("a replication target")?,
            ),
        })
    }

    /// Drains the WAL-mode slot: (changes, seconds, server CPU µs per
    /// change: the follower's backend and, streaming, its walsender; this
    /// process's CPU µs per change).
    async fn drain(&self, transport: Transport) -> Result<(u64, f64, f64, f64)> {
        let (changes, seconds, backend, walsender, process) = self.drain_split(transport).await?;
        Ok((changes, seconds, backend + walsender, process))
    }

    /// [`Bench::drain`], the server's CPU split: (changes, seconds, backend
    /// µs per change, walsender µs per change, process µs per change).
    async fn drain_split(&self, transport: Transport) -> Result<(u64, f64, f64, f64, f64)> {
        let (changes, seconds, backend, walsender, process, _) = self.drain_threaded(transport).await?;
        Ok((changes, seconds, backend, walsender, process))
    }

    /// [`Bench::drain_split`], and the CPU µs per change of the follower's
    /// own thread. The follower runs as `pgtrail follow` runs it: on one
    /// thread of its own, in a current-thread runtime (its replication
    /// stream's reader and its trail writer tasks with it); this process's
    /// figure adds the bench's runtime beside it (the samplers of the
    /// server processes).
    async fn drain_threaded(&self, transport: Transport) -> Result<(u64, f64, f64, f64, f64, f64)> {
        let url = self.cluster.url(Variant::Wal.database());
        let own = i32::try_from(std::process::id())?;
        let process = procstat::cpu_ticks(own)?;
        let (done_tx, done_rx) = tokio::sync::watch::channel(false);
        // Over SQL the slot's active process is the backend itself: no
        // walsender to add.
        let walsender = match transport.streams() {
            true => Some(self.ticks_of(WALSENDER, done_rx.clone()).await?),
            false => None,
        };
        // Pipelined, the trail is written by a second connection of its own.
        let writer = self.ticks_of(WRITER, done_rx).await?;
        let options = FollowOptions {
            once: true,
            replication: self.replication(transport)?,
            values: transport.values(),
            pipeline: transport.pipeline(),
            ..FollowOptions::default()
        };
        let follower = std::thread::spawn(move || -> Result<_> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let mut client = server::connect_url(&url).await?;
                let pid: i32 = client.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
                let (backend, thread) = (procstat::cpu_ticks(pid)?, procstat::thread_cpu_ticks()?);
                let started = Instant::now();
                let report = pgtrail::follow::run(&mut client, &options, std::future::pending()).await?;
                let seconds = started.elapsed().as_secs_f64();
                let thread = procstat::thread_cpu_ticks()? - thread;
                let backend = procstat::cpu_ticks(pid)? - backend;
                Ok((report, seconds, backend, thread))
            })
        });
        let (report, seconds, backend, thread) = tokio::task::spawn_blocking(move || follower.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the follower's thread panicked"))??;
        // The sampler may have ended already (the walsender exited).
        let _ = done_tx.send(true);
        let walsender = match walsender {
            Some(task) => task.await??,
            None => 0,
        };
        let writer = writer.await??;
        let per = |ticks: u64| ticks as f64 * 1e6 / self.clk_tck as f64 / report.changes.max(1) as f64;
        let process = per(procstat::cpu_ticks(own)? - process);
        Ok((
            report.changes,
            seconds,
            per(backend + writer),
            per(walsender),
            process,
            per(thread),
        ))
    }

    /// The CPU ticks of the server process `find` names (the slot's
    /// walsender, or the follower's trail writer), sampled every 2 ms until
    /// `done` (it exits when the follower ends); 0 if it never appeared.
    async fn ticks_of(
        &self,
        find: &'static str,
        mut done: tokio::sync::watch::Receiver<bool>,
    ) -> Result<tokio::task::JoinHandle<Result<u64>>> {
        let watcher = server::connect(&self.cluster, Variant::Wal.database()).await?;
        Ok(tokio::spawn(async move {
            let mut pid: Option<i32> = None;
            let mut ticks = 0;
            loop {
                match pid {
                    None => {
                        pid = watcher.query_opt(find, &[]).await?.and_then(|r| r.get(0));
                    }
                    Some(pid) => match procstat::cpu_ticks(pid) {
                        Ok(now) => ticks = now,
                        Err(_) => return Ok(ticks),
                    },
                }
                if *done.borrow_and_update() {
                    return Ok(ticks);
                }
                tokio::select! {
                    _ = done.changed() => {}
                    () = tokio::time::sleep(Duration::from_millis(2)) => {}
                }
            }
        }))
    }

    /// A follower running until `stop` is set.
    fn follower(
        &self,
        stop: tokio::sync::watch::Receiver<bool>,
        transport: Transport,
    ) -> Result<tokio::task::JoinHandle<Result<u64>>> {
        let url = self.cluster.url(Variant::Wal.database());
        let options = FollowOptions {
            replication: self.replication(transport)?,
            values: transport.values(),
            pipeline: transport.pipeline(),
            ..FollowOptions::default()
        };
        Ok(tokio::spawn(async move {
            let (mut client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            let mut stop = stop;
            let report = pgtrail::follow::run(&mut client, &options, async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await?;
            Ok(report.changes)
        }))
    }

    /// pgbench on the bench's server with `--clients` clients, prepared
    /// statements and no vacuum; the caller adds the length and the script.
    fn tpcb_pgbench(&self) -> tokio::process::Command {
        let mut pgbench = tokio::process::Command::new(&self.pgbench.program);
        pgbench
            .args([
                "-h",
                &self.pgbench.host,
                "-p",
                &self.pgbench.port.to_string(),
                "-U",
                &self.pgbench.user,
            ])
            .args([
                "-c",
                &self.args.clients.to_string(),
                "-j",
                "2",
                "-n",
                "-M",
                "prepared",
            ]);
        pgbench
    }

    /// `--drain-transactions` TPC-B transactions with `set_context` in the
    /// WAL-mode database, the follower stopped.
    async fn load(&self) -> Result<()> {
        let path = self.script(match self.args.drain_workload {
            Workload::Tpcb => "tpcb_ctx.sql",
            Workload::Types => "types_ctx.sql",
        });
        let per_client = (self.args.drain_transactions / self.args.clients.max(1)).max(1);
        let output = self
            .tpcb_pgbench()
            .args(["-t", &per_client.to_string(), "-f"])
            .arg(&path)
            .arg(Variant::Wal.database())
            .kill_on_drop(true)
            .output()
            .await?;
        if !output.status.success() {
            bail!("pgbench failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(())
    }

    /// One round of `--follower-only`: each way of reading the slot in
    /// turn (rotated), a drain and a lag measurement each.
    async fn follower_round(&mut self, round: usize) -> Result<()> {
        let mut order = self.args.ways.clone();
        let len = order.len().max(1);
        order.rotate_left(round % len);
        println!(
            "round {} ({})",
            round + 1,
            order.iter().map(|t| t.label()).collect::<Vec<_>>().join(", ")
        );
        for &transport in order.iter().filter(|_| !self.args.lag_only) {
            self.load().await?;
            let (changes, seconds, backend, walsender, process, thread) =
                self.drain_threaded(transport).await?;
            let server = backend + walsender;
            let label = transport.label();
            self.results.record(
                "follower thread CPU µs/change (as `pgtrail follow`)",
                label,
                thread,
            );
            self.results.record(
                "changes/s on one core (1e6 / (server + thread))",
                label,
                1e6 / (server + thread),
            );
            self.results.record("drained changes", label, changes as f64);
            self.results
                .record("of it: backend (write; SQL: decode) µs/change", label, backend);
            self.results
                .record("of it: walsender (stream: decode) µs/change", label, walsender);
            self.results
                .record("follower changes/s (drain)", label, changes as f64 / seconds);
            self.results
                .record("follower server CPU µs/change", label, server);
            self.results
                .record("follower process CPU µs/change", label, process);
            self.results.record(
                "changes/s on one core (1e6 / (server + process))",
                label,
                1e6 / (server + process),
            );
            self.client(Variant::Wal).batch_execute("CHECKPOINT").await?;
        }
        for &transport in &order {
            let (p50, p99, offered, _) = self.lag(transport).await?;
            let label = transport.label();
            self.results.record("lag p50 ms", label, p50);
            self.results.record("lag p99 ms", label, p99);
            self.results.record("lag: changes/s achieved", label, offered);
            self.client(Variant::Wal).batch_execute("CHECKPOINT").await?;
        }
        Ok(())
    }

    fn follower_report(&self) {
        let r = &self.results;
        let mut rows = Vec::new();
        for metric in [
            "drained changes",
            "follower changes/s (drain)",
            "follower server CPU µs/change",
            "of it: backend (write; SQL: decode) µs/change",
            "of it: walsender (stream: decode) µs/change",
            "follower process CPU µs/change",
            "changes/s on one core (1e6 / (server + process))",
            "follower thread CPU µs/change (as `pgtrail follow`)",
            "changes/s on one core (1e6 / (server + thread))",
            "lag p50 ms",
            "lag p99 ms",
            "lag: changes/s achieved",
        ] {
            let values = |label: &str| {
                let v = r.get(metric, label);
                format!(
                    "{:.1} ({})",
                    median(v).unwrap_or(f64::NAN),
                    v.iter().map(|x| format!("{x:.1}")).collect::<Vec<_>>().join(", ")
                )
            };
            let mut row = vec![metric.to_string()];
            row.extend(self.args.ways.iter().map(|w| values(w.label())));
            rows.push(row);
        }
        let headers: Vec<String> = std::iter::once("metric".to_string())
            .chain(
                self.args
                    .ways
                    .iter()
                    .map(|w| format!("{}: median (rounds)", w.label())),
            )
            .collect();
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        let numeric: Vec<bool> = std::iter::once(false)
            .chain(self.args.ways.iter().map(|_| true))
            .collect();
        println!("\n{}", table(&headers, &numeric, &rows));
        let json = serde_json::json!({
            "rounds": self.args.rounds,
            "follower_only": true,
            "values": r.values.iter().map(|((m, l), v)| serde_json::json!({"metric": m, "variant": l, "values": v})).collect::<Vec<_>>(),
        });
        println!("{json}");
    }

    async fn round(&mut self, round: usize) -> Result<()> {
        let mut order = Variant::ALL.to_vec();
        let shift = round % order.len();
        order.rotate_left(shift);
        println!(
            "round {} ({})",
            round + 1,
            order.iter().map(|v| v.label()).collect::<Vec<_>>().join(", ")
        );
        let mut writers = Variant::WRITERS.to_vec();
        writers.rotate_left(round % Variant::WRITERS.len());
        for &variant in &writers {
            let (cpu, wal) = self.cpu(variant, true).await?;
            self.results
                .record("TPC-B writer CPU µs/tx", variant.label(), cpu);
            self.results.record("TPC-B WAL bytes/tx", variant.label(), wal);
            let (cpu, wal) = self.cpu(variant, false).await?;
            self.results
                .record("1-row UPDATE writer CPU µs/tx", variant.label(), cpu);
            self.results
                .record("1-row UPDATE WAL bytes/tx", variant.label(), wal);
            self.client(variant).batch_execute("CHECKPOINT").await?;
        }
        for &variant in &order {
            let script = if variant == Variant::NoAudit {
                "tpcb.sql"
            } else {
                "tpcb_ctx.sql"
            };
            let tps = self.throughput(variant, script).await?;
            self.results
                .record("TPC-B tps (follower stopped)", variant.label(), tps);
            let tps = self.throughput(variant, "update.sql").await?;
            self.results
                .record("1-row UPDATE tps (follower stopped)", variant.label(), tps);
            if variant == Variant::Wal {
                let (changes, seconds, backend, process) = self.drain(Transport::Stream).await?;
                self.results
                    .record("follower changes/s (drain)", "wal", changes as f64 / seconds);
                self.results
                    .record("follower server CPU µs/change", "wal", backend);
                self.results
                    .record("follower process CPU µs/change", "wal", process);
                // TPC-B with the follower running beside it.
                let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
                let follower = self.follower(stop_rx, Transport::Stream)?;
                let tps = self.throughput(variant, "tpcb_ctx.sql").await?;
                stop_tx.send(true)?;
                follower.await??;
                self.results.record("TPC-B tps (follower running)", "wal", tps);
                self.drain(Transport::Stream).await?;
            }
            self.client(variant).batch_execute("CHECKPOINT").await?;
        }
        Ok(())
    }

    /// Commit-to-trail lag under a steady load (`--lag-rate`), follower
    /// running: every 50 ms the WAL insert position is noted; the lag of a
    /// note is the time until the follower's stored position passes it
    /// (after the load, until every note is passed, at most 120 s).
    async fn lag(&mut self, transport: Transport) -> Result<(f64, f64, f64, u64)> {
        self.drain(transport).await?;
        let (per_tx, script) = match self.args.lag_rows {
            0 => (4, "tpcb_ctx.sql"),
            rows => (rows, "rows_ctx.sql"),
        };
        let rate = (self.args.lag_rate / per_tx).max(1);
        let path = self.script(script);
        let mut pgbench = self.tpcb_pgbench();
        pgbench
            .args([
                "-R",
                &rate.to_string(),
                "-T",
                &self.args.lag_seconds.to_string(),
                "-f",
            ])
            .arg(&path)
            .arg(Variant::Wal.database())
            .kill_on_drop(true);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let follower = self.follower(stop_rx, transport)?;
        let load = tokio::spawn(async move { pgbench.output().await });
        let watcher = server::connect(&self.cluster, Variant::Wal.database()).await?;
        let mut pending: std::collections::VecDeque<(Instant, String)> = Default::default();
        let mut lags = Vec::new();
        let mut ended: Option<Instant> = None;
        let mut unpassed = 0;
        let mut last_note = Instant::now() - Duration::from_secs(1);
        while !load.is_finished() || !pending.is_empty() {
            if !load.is_finished() && last_note.elapsed() >= Duration::from_millis(50) {
                let lsn: String = watcher
                    .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
                    .await?
                    .get(0);
                pending.push_back((Instant::now(), lsn));
                last_note = Instant::now();
            }
            let position: Option<String> = watcher
                .query_opt(
                    "SELECT lsn::text FROM pgtrail.follow_position WHERE slot = pgtrail.wal_slot()",
                    &[],
                )
                .await?
                .map(|r| r.get(0));
            if let Some(position) = position {
                while let Some((at, lsn)) = pending.front() {
                    let passed: bool = watcher
                        .query_one("SELECT $1::text::pg_lsn <= $2::text::pg_lsn", &[lsn, &position])
                        .await?
                        .get(0);
                    if !passed {
                        break;
                    }
                    lags.push(at.elapsed().as_secs_f64() * 1000.0);
                    pending.pop_front();
                }
            }
            // Once the load ends, one more change is committed, so that a
            // note past the load's last commit is passed too; a note the
            // follower has not passed 120 s later counts with the time it
            // waited (a follower that fell behind is not let off).
            if load.is_finished() {
                match ended {
                    None => {
                        watcher
                            .batch_execute("UPDATE pgbench_branches SET bbalance = bbalance WHERE bid = 1")
                            .await?;
                        ended = Some(Instant::now());
                    }
                    Some(at) if at.elapsed() > Duration::from_secs(120) => {
                        unpassed = pending.len();
                        lags.extend(
                            pending
                                .drain(..)
                                .map(|(at, _)| at.elapsed().as_secs_f64() * 1000.0),
                        );
                        break;
                    }
                    Some(_) => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let output = load.await??;
        let outcome = pgtrail_bench::pgbench::parse_outcome(&String::from_utf8_lossy(&output.stdout))
            .context("pgbench --rate reported no tps")?;
        stop_tx.send(true)?;
        let written = follower.await??;
        if lags.is_empty() {
            bail!("no lag measured");
        }
        lags.sort_by(f64::total_cmp);
        let at = |q: f64| lags[((lags.len() - 1) as f64 * q).round() as usize];
        let achieved = outcome.tps * f64::from(per_tx);
        println!(
            "lag: {} notes ({unpassed} not passed within 120 s of the load's end), {} changes/s asked ({rate} tps of {per_tx} changes), {:.0} tps achieved ({achieved:.0} changes/s), follower wrote {written} changes, the last note passed {:.1} s after the load ended",
            lags.len(),
            rate * per_tx,
            outcome.tps,
            ended.map_or(0.0, |at| at.elapsed().as_secs_f64()),
        );
        Ok((at(0.5), at(0.99), achieved, written))
    }

    fn report(&self, lag: (f64, f64, f64, u64)) {
        let r = &self.results;
        let med = |metric: &str, label: &str| median(r.get(metric, label)).unwrap_or(f64::NAN);
        let mut rows = Vec::new();
        for (metric, ratio) in [
            ("TPC-B writer CPU µs/tx", false),
            ("1-row UPDATE writer CPU µs/tx", false),
            ("TPC-B WAL bytes/tx", false),
            ("1-row UPDATE WAL bytes/tx", false),
            ("TPC-B tps (follower stopped)", true),
            ("1-row UPDATE tps (follower stopped)", true),
        ] {
            let labels: &[&str] = if ratio {
                &["no-audit", "trigger", "wal"]
            } else {
                &["no-audit", "trigger", "wal", "wal-no-context", "replica-full"]
            };
            for &label in labels {
                let compared = if label == "no-audit" {
                    String::new()
                } else if ratio {
                    format!("{:.3}x", r.compared(metric, label, true).unwrap_or(f64::NAN))
                } else {
                    format!("+{:.1}", r.compared(metric, label, false).unwrap_or(f64::NAN))
                };
                rows.push(vec![
                    metric.to_string(),
                    label.to_string(),
                    format!("{:.1}", med(metric, label)),
                    compared,
                ]);
            }
        }
        let running = r.get("TPC-B tps (follower running)", "wal");
        let base = r.get("TPC-B tps (follower stopped)", "no-audit");
        let ratios: Vec<f64> = running.iter().zip(base).map(|(a, b)| a / b).collect();
        rows.push(vec![
            "TPC-B tps (follower running)".into(),
            "wal".into(),
            format!("{:.1}", med("TPC-B tps (follower running)", "wal")),
            format!("{:.3}x", median(&ratios).unwrap_or(f64::NAN)),
        ]);
        for metric in [
            "follower changes/s (drain)",
            "follower server CPU µs/change",
            "follower process CPU µs/change",
        ] {
            rows.push(vec![
                metric.into(),
                "wal".into(),
                format!("{:.1}", med(metric, "wal")),
                String::new(),
            ]);
        }
        rows.push(vec![
            format!("lag p50 / p99 ms at {:.0} changes/s", lag.2),
            "wal".into(),
            format!("{:.0} / {:.0}", lag.0, lag.1),
            String::new(),
        ]);
        println!(
            "\n{}",
            table(
                &["metric", "variant", "median", "vs no-audit (per round, median)"],
                &[false, false, true, true],
                &rows
            )
        );
        let json = serde_json::json!({
            "rounds": self.args.rounds,
            "values": r.values.iter().map(|((m, l), v)| serde_json::json!({"metric": m, "variant": l, "values": v})).collect::<Vec<_>>(),
            "lag_ms": {"p50": lag.0, "p99": lag.1, "changes_per_second": lag.2},
        });
        println!("{json}");
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let cluster = server::start(&[
        ("wal_level", "logical"),
        ("max_replication_slots", "10"),
        ("shared_buffers", "256MB"),
        ("max_wal_size", "4GB"),
        ("checkpoint_timeout", "30min"),
    ])?;
    let pgbench = Pgbench::on(&cluster);
    let mut bench = Bench {
        args,
        cluster,
        pgbench,
        clients: BTreeMap::new(),
        scripts: tempfile_dir::Dir::new()?,
        clk_tck: procstat::clock_ticks_per_second(),
        results: Results::default(),
    };
    let started = Instant::now();
    bench.setup().await?;
    if bench.args.follower_only {
        for round in 0..bench.args.rounds {
            bench.follower_round(round).await?;
        }
        bench.follower_report();
    } else {
        for round in 0..bench.args.rounds {
            bench.round(round).await?;
        }
        let lag = bench.lag(Transport::Stream).await?;
        bench.report(lag);
    }
    println!("elapsed {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}
