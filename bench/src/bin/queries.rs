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
//!    triggers, run by `--workers` sessions at once: batch jobs (bulk UPDATE
//!    and INSERT statements, 10,000 changes a transaction, actor type
//!    `system`) interleaved with people (transactions of 1-9 single-row
//!    UPDATEs, actor type `user`), each transaction under
//!    `pgtrail.set_context`. The load's real time stands for 30 days of
//!    activity: a one-hour window is 1/720 of it (see QUERIES.md).
//! 3. Records a moment, then changes a few thousand rows of `snap` after it.
//! 4. VACUUM ANALYZE, then times each query (warm-up runs first) over
//!    `--runs` runs with random keys, and shows the plans of the statements
//!    each query function runs (auto_explain with nested statements).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use clap::Parser;
use pgtrail_bench::server::Db;
use pgtrail_bench::{autoexplain, server};
use serde_json::{Value, json};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Statement};

#[path = "queries/serve.rs"]
mod serve;

/// Batch jobs (actor type `system`) that run the bulk transactions.
const JOBS: u64 = 10;
/// People (actor type `user`) who run the small transactions.
const USERS: u64 = 200;
/// People's transactions per unit of load work (one worker call each).
const HUMAN_CHUNK: i64 = 200;
/// The days of activity the load's real time stands for.
const SIMULATED_DAYS: f64 = 30.0;
/// Rows of each small table at the start, and rows per small-table statement.
const SMALL_ROWS: i64 = 100;
/// Warm-up runs of each query before the measured ones.
const WARMUP: usize = 5;
/// The digest of snap's rows (as JSON), to check table_as_of's answer.
const SNAP_DIGEST: &str = "SELECT count(*), md5(string_agg(r::text, ',' ORDER BY (r->>'id')::integer))";

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
    /// Then measure `pgtrail serve` on the same trail: timeline and row pages
    /// (HTML and JSON) requested by --clients concurrent clients.
    #[arg(long)]
    serve: bool,
    /// With --serve: measure `pgtrail serve` only, not the query functions
    /// (nor their plans) first.
    #[arg(long, requires = "serve")]
    serve_only: bool,
    /// Concurrent HTTP clients with --serve.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Rounds per client with --serve (each round requests each kind of page once).
    #[arg(long, default_value_t = 25)]
    rounds: usize,
    /// With --serve: also serve a copy of the trail at the SQL of before a
    /// fix, side by side with the current one, in the same rounds.
    #[arg(long, value_enum, requires = "serve")]
    serve_before: Option<serve::Before>,
    /// At the end, print the cluster's URL and keep it running until a line
    /// (or end of file) arrives on standard input, to try queries by hand.
    #[arg(long)]
    hold: bool,
    /// Leave the cluster running, its data directory in place, when the run
    /// ends, and print the command that measures it again (--reuse).
    #[arg(long, conflicts_with = "reuse")]
    keep: bool,
    /// With --keep: stop once the trail is loaded, stretched and vacuumed;
    /// measure it with --reuse.
    #[arg(long, requires = "keep")]
    load_only: bool,
    /// Measure the trail of a cluster an earlier --keep run left running
    /// (the URL it printed), without creating or loading anything.
    #[arg(
        long,
        value_name = "URL",
        conflicts_with_all = ["changes", "tables", "rows", "snap_rows", "quick", "serve_before", "workers"]
    )]
    reuse: Option<String>,
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
    /// Changes per batch transaction.
    tx_changes: i64,
    /// Rows of `big` updated per transaction (60%).
    big_per_tx: i64,
    /// Small-table statements per transaction (~35% of the changes).
    small_stmts_per_tx: i64,
    /// Rows of `snap` updated per transaction (the rest, ~5%).
    snap_per_tx: i64,
    /// Batch transactions.
    transactions: i64,
    /// People's transactions (1-9 single-row changes each, 5 on average).
    human_txs: i64,
}

impl Scale {
    fn new(args: &Args) -> Result<Scale> {
        let q = args.quick;
        let changes = args.changes.unwrap_or(if q { 300_000 } else { 10_000_000 });
        let tables = args.tables.unwrap_or(if q { 100 } else { 1_000 });
        let rows = args.rows.unwrap_or(if q { 100_000 } else { 1_000_000 });
        let snap_rows = args.snap_rows.unwrap_or(if q { 20_000 } else { 100_000 });
        Scale::of(args, [changes, tables, rows, snap_rows])
    }

    /// The scale of a trail of `[changes, tables, rows, snap_rows]`, with
    /// the runs and workers of `args`.
    fn of(args: &Args, [changes, tables, rows, snap_rows]: [i64; 4]) -> Result<Scale> {
        let runs = args.runs.unwrap_or(if args.quick { 20 } else { 50 }).max(1);
        if changes < 1_000 || tables < 1 || rows < 1_000 || snap_rows < 10_000 {
            bail!("need --changes >= 1000, --tables >= 1, --rows >= 1000, --snap-rows >= 10000");
        }
        // A tenth of the changes come from people, the rest from batch jobs.
        let human_txs = changes / 10 / 5;
        let batch_changes = changes - human_txs * 5;
        let tx_changes = (batch_changes / 1_000).clamp(1_000, 10_000);
        let big_per_tx = (tx_changes * 6 / 10).min(rows);
        let small_stmts_per_tx = tx_changes * 35 / 100 / SMALL_ROWS;
        let snap_per_tx = (tx_changes - big_per_tx - small_stmts_per_tx * SMALL_ROWS).min(snap_rows);
        let transactions = (batch_changes + tx_changes - 1) / tx_changes;
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
            human_txs,
        })
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let serve = args.serve.then_some(Serve {
        clients: args.clients.max(1),
        rounds: args.rounds.max(1),
        before: args.serve_before,
        only: args.serve_only,
    });
    if let Some(url) = &args.reuse {
        let db = Db::kept(url).await?;
        let kept = Kept::read(&db).await?;
        let scale = Scale::of(&args, kept.sizes)?;
        println!(
            "pgtrail query benchmark on the trail kept at {} (data directory {}): {} changes planned, \
             {} small tables, big {} rows, snap {} rows",
            db.url("postgres"),
            db.log_file()
                .parent()
                .map_or_else(String::new, |d| d.display().to_string()),
            scale.changes,
            scale.tables,
            scale.rows,
            scale.snap_rows
        );
        let result = measure(scale, &db, kept.loaded, started, serve).await;
        return hold(&db, args.hold, result);
    }
    let scale = Scale::new(&args)?;
    let cluster = server::start_kept(
        &[
            ("shared_buffers", "1GB"),
            ("max_wal_size", "20GB"),
            ("checkpoint_timeout", "30min"),
            ("synchronous_commit", "off"),
            ("work_mem", "16MB"),
        ],
        args.keep,
    )?;
    let db = Db::of(&cluster);
    let keep = args.keep.then_some(args.load_only);
    let result = run(scale, &db, started, serve, keep).await;
    if args.keep {
        println!();
        println!(
            "kept: the cluster goes on running at {} (data directory {}). Measure it again with:",
            db.url("postgres"),
            cluster.data_dir().display()
        );
        println!(
            "  cargo run --release -p pgtrail-bench --bin queries -- --reuse {} --serve --serve-only --clients {} --rounds {}",
            db.url("postgres"),
            args.clients,
            args.rounds
        );
        println!(
            "  (stop it: pg_ctl stop -D {0}; start it again: su postgres -s /bin/sh -c \"$(cat {0}/postmaster.opts) \
             >>{0}/server.log 2>&1 &\"; remove it: rm -rf {1})",
            cluster.data_dir().display(),
            cluster.socket_dir().display()
        );
    }
    let result = hold(&db, args.hold, result);
    drop(cluster);
    result
}

/// With `--hold`: prints the server's URL and waits for a line on stdin.
fn hold(db: &Db, hold: bool, result: Result<()>) -> Result<()> {
    if hold {
        println!(
            "holding the cluster at {} until a line arrives on stdin",
            db.url("postgres")
        );
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    }
    result
}

async fn connect(db: &Db) -> Result<Client> {
    server::connect_url(&db.url("postgres")).await
}

/// The load's real time, stretched linearly around its end so that it lasts
/// SIMULATED_DAYS: every timestamp of the trail (changes, transactions,
/// attach times) and of the benchmark's own records goes through the same
/// map, so their order and proportions stay those of the load. Capture
/// stamps changes with the real clock, so this is the only way to build a
/// trail that spans weeks in minutes.
struct Stretch {
    end: SystemTime,
    span: Duration,
    factor: f64,
}

impl Stretch {
    fn new(start: SystemTime, end: SystemTime) -> Stretch {
        let span = end
            .duration_since(start)
            .unwrap_or_default()
            .max(Duration::from_millis(1));
        Stretch {
            end,
            span,
            factor: SIMULATED_DAYS * 86_400.0 / span.as_secs_f64(),
        }
    }

    fn map(&self, t: SystemTime) -> SystemTime {
        match self.end.duration_since(t) {
            Ok(before) => self.end - before.mul_f64(self.factor),
            Err(after) => self.end + after.duration().mul_f64(self.factor),
        }
    }

    /// Rewrites the trail's timestamps (the append-only guards are
    /// triggers, off in replica mode; the changes in `sessions` slices of
    /// their ids at once, one session each), then lists the contexts whose
    /// changes now go on for more than pgtrail._context_span() after their
    /// start, as capture would have had they taken that long (the query of
    /// migration 0003), and compacts the rewritten tables: the changes'
    /// partitions with CLUSTER by id, since the sessions' new row versions
    /// interleave their pages (VACUUM FULL would keep that order, and the
    /// BRIN index on changed_at would then bound nothing; capture writes
    /// the trail in id order). Returns the correlation of changed_at with
    /// the heap's order after it (1 when in time order).
    async fn apply(&self, db: &Db, client: &Client, sessions: usize) -> Result<f64> {
        let map =
            |column: &str| format!("{column} = $1::timestamptz - ($1::timestamptz - {column}) * $2::float8");
        client
            .batch_execute("SET session_replication_role = replica")
            .await
            .context("replica mode for the rewrite")?;
        for (table, columns) in [
            ("pgtrail.transaction", vec!["started_at", "recorded_at"]),
            ("pgtrail.audited_table", vec!["attached_at"]),
        ] {
            let set: Vec<String> = columns.iter().map(|c| map(c)).collect();
            client
                .execute(
                    &format!("UPDATE {table} SET {}", set.join(", ")),
                    &[&self.end, &self.factor],
                )
                .await
                .with_context(|| format!("stretch the timestamps of {table}"))?;
        }
        let span = client
            .query_one(
                "SELECT coalesce(min(id), 0), coalesce(max(id), 0) FROM pgtrail.change",
                &[],
            )
            .await
            .context("the trail's ids")?;
        let (first, last): (i64, i64) = (span.get(0), span.get(1));
        let slices = sessions.max(1) as i64;
        let width = (last - first) / slices + 1;
        let mut updates = Vec::new();
        for i in 0..slices {
            let (lo, hi) = (first + i * width, first + (i + 1) * width);
            let (url, end, factor, set) = (db.url("postgres"), self.end, self.factor, map("changed_at"));
            updates.push(tokio::spawn(async move {
                let session = server::connect_url(&url).await?;
                session
                    .batch_execute("SET session_replication_role = replica")
                    .await
                    .context("replica mode for the rewrite")?;
                session
                    .execute(
                        &format!("UPDATE pgtrail.change SET {set} WHERE id >= $3 AND id < $4"),
                        &[&end, &factor, &lo, &hi],
                    )
                    .await
                    .context("stretch the timestamps of pgtrail.change")
            }));
        }
        for update in updates {
            update.await.context("join a stretch session")??;
        }
        client
            .batch_execute(
                "DELETE FROM pgtrail.long_context;
                 INSERT INTO pgtrail.long_context (txid, ctx)
                 SELECT c.txid, c.ctx
                 FROM pgtrail.change AS c
                 JOIN pgtrail.transaction AS x ON x.txid = c.txid AND x.ctx = c.ctx
                 GROUP BY c.txid, c.ctx, x.started_at
                 HAVING min(c.changed_at) < x.started_at
                     OR max(c.changed_at) > x.started_at + pgtrail._context_span();
                 RESET session_replication_role;",
            )
            .await
            .context("list the long contexts of the stretched trail")?;
        // Each partition of the trail by its index on id alone.
        let partitions = client
            .query(
                "SELECT p.relid::regclass::text, quote_ident(ic.relname)
                 FROM pg_partition_tree('pgtrail.change') AS p
                 JOIN pg_index AS i ON i.indrelid = p.relid AND i.indisunique AND i.indnkeyatts = 1
                 JOIN pg_class AS ic ON ic.oid = i.indexrelid
                 JOIN pg_attribute AS a ON a.attrelid = p.relid AND a.attnum = i.indkey[0] AND a.attname = 'id'
                 WHERE p.isleaf
                 ORDER BY 1",
                &[],
            )
            .await
            .context("the trail's partitions")?;
        client.batch_execute("SET maintenance_work_mem = '1GB'").await?;
        for row in &partitions {
            let (table, index): (String, String) = (row.get(0), row.get(1));
            client
                .batch_execute(&format!("CLUSTER {table} USING {index}"))
                .await
                .with_context(|| format!("compact {table} in id order"))?;
        }
        // (One statement a call: VACUUM cannot run in the implicit
        // transaction of several.)
        for sql in [
            "RESET maintenance_work_mem",
            "VACUUM FULL pgtrail.transaction",
            "ANALYZE pgtrail.change",
        ] {
            client.batch_execute(sql).await.context(sql)?;
        }
        let correlation: Option<f32> = client
            .query_one(
                "SELECT (SELECT s.correlation FROM pg_stats AS s
                         JOIN pg_partition_tree('pgtrail.change') AS p
                           ON p.relid = format('%I.%I', s.schemaname, s.tablename)::regclass
                         JOIN pg_class AS c ON c.oid = p.relid
                         WHERE s.attname = 'changed_at' AND p.isleaf
                         ORDER BY c.reltuples DESC LIMIT 1)",
                &[],
            )
            .await
            .context("the correlation of changed_at")?
            .get(0);
        Ok(f64::from(correlation.unwrap_or(0.0)))
    }
}

/// A person's transaction, as one statement: set_context, then one
/// single-row UPDATE per element of the arrays (`big` ids; small table
/// numbers with their row ids). Returns the time after set_context.
const PERSON_FUNCTION: &str = r#"
CREATE FUNCTION bench_person(p_actor text, p_name text, p_reason text,
                             p_big integer[], p_tables integer[], p_rows integer[])
RETURNS timestamptz LANGUAGE plpgsql AS $fn$
DECLARE
    v_at timestamptz;
BEGIN
    PERFORM pgtrail.set_context(p_actor, p_name, 'user', p_reason);
    v_at := clock_timestamp();
    FOR i IN 1 .. coalesce(array_length(p_big, 1), 0) LOOP
        IF p_big[i] % 2 = 0 THEN
            UPDATE big SET a = a + 1 WHERE id = p_big[i];
        ELSE
            UPDATE big SET b = md5(b) WHERE id = p_big[i];
        END IF;
    END LOOP;
    FOR i IN 1 .. coalesce(array_length(p_tables, 1), 0) LOOP
        EXECUTE format('UPDATE %I SET a = a + 1 WHERE id = $1', 't' || lpad(p_tables[i]::text, 4, '0'))
            USING p_rows[i];
    END LOOP;
    RETURN v_at;
END
$fn$;
"#;

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

/// One batch transaction, as the client saw it.
#[derive(Debug, Clone)]
struct TxRecord {
    job: u64,
    /// Server clock_timestamp() after set_context.
    start: SystemTime,
    changes: u64,
}

/// One person's transaction: who, and the server's clock_timestamp() after
/// its set_context.
#[derive(Debug, Clone)]
struct HumanTx {
    user: u64,
    at: SystemTime,
}

/// A unit of load work, handed to whichever session is free.
#[derive(Debug, Clone, Copy)]
enum Job {
    /// Batch transaction number k.
    Batch(i64),
    /// People's transactions `k * HUMAN_CHUNK ..` (one statement each).
    People(i64),
}

/// Batch transactions spread evenly among the people's chunks, so both
/// kinds of activity share the whole timeline.
fn schedule(scale: &Scale) -> Vec<Job> {
    let batches = scale.transactions;
    let total = batches + (scale.human_txs + HUMAN_CHUNK - 1) / HUMAN_CHUNK;
    (0..total)
        .map(|j| {
            let before = j * batches / total;
            if (j + 1) * batches / total > before {
                Job::Batch(before)
            } else {
                Job::People(j - before)
            }
        })
        .collect()
}

fn job_id(job: u64) -> String {
    format!("job-{job:02}")
}

fn user_id(user: u64) -> String {
    format!("user-{user:03}")
}

fn small_table(i: i64) -> String {
    format!("t{i:04}")
}

/// What `--serve` measures.
#[derive(Debug, Clone, Copy)]
struct Serve {
    clients: usize,
    rounds: usize,
    before: Option<serve::Before>,
    /// `--serve-only`.
    only: bool,
}

/// What the load left for the measurements.
#[derive(Debug, Clone)]
struct Loaded {
    txs: Vec<TxRecord>,
    people: Vec<HumanTx>,
    load_start: SystemTime,
    load_end: SystemTime,
    /// The moment of table_as_of, and what snap held then.
    moment: SystemTime,
    snap_at_moment: i64,
    snap_digest: String,
}

/// A trail an earlier `--keep` run left: its sizes and what its load
/// recorded, kept as the comment of database `postgres` (the trail says the
/// rest: the batch jobs' and people's transactions).
struct Kept {
    sizes: [i64; 4],
    loaded: Loaded,
}

fn micros(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn from_micros(us: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_micros(us.max(0) as u64)
}

impl Kept {
    async fn write(client: &Client, scale: &Scale, loaded: &Loaded) -> Result<()> {
        let state = json!({
            "bench": "queries",
            "sizes": [scale.changes, scale.tables, scale.rows, scale.snap_rows],
            "batch_changes": loaded.txs.iter().map(|t| t.changes).sum::<u64>(),
            "load_start_us": micros(loaded.load_start),
            "load_end_us": micros(loaded.load_end),
            "moment_us": micros(loaded.moment),
            "snap_at_moment": loaded.snap_at_moment,
            "snap_digest": loaded.snap_digest,
        });
        let comment: String = client
            .query_one(
                "SELECT format('COMMENT ON DATABASE postgres IS %L', $1::text)",
                &[&state.to_string()],
            )
            .await?
            .get(0);
        client
            .batch_execute(&comment)
            .await
            .context("keep the load's records (COMMENT ON DATABASE postgres)")
    }

    async fn read(db: &Db) -> Result<Kept> {
        let client = connect(db).await?;
        let comment: Option<String> = client
            .query_one(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = 'postgres'",
                &[],
            )
            .await
            .context("read the kept run's records")?
            .get(0);
        let state: Value = comment
            .as_deref()
            .and_then(|c| serde_json::from_str(c).ok())
            .filter(|v: &Value| v["bench"] == "queries")
            .with_context(|| {
                format!(
                    "{} holds no trail kept by `queries --keep` (no records in the comment of database postgres)",
                    db.url("postgres")
                )
            })?;
        let int = |name: &str| -> Result<i64> {
            state[name]
                .as_i64()
                .with_context(|| format!("the kept run's records have no {name}"))
        };
        let sizes: Vec<i64> = state["sizes"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default();
        let sizes: [i64; 4] = sizes
            .try_into()
            .map_err(|_| anyhow::anyhow!("the kept run's records have no sizes"))?;
        let moment = from_micros(int("moment_us")?);
        let rows = client
            .query(
                "SELECT actor_id, actor_type, started_at FROM pgtrail.transaction
                 WHERE actor_type IN ('system', 'user') AND started_at < $1 ORDER BY started_at",
                &[&moment],
            )
            .await
            .context("read the load's transactions")?;
        let (mut txs, mut people) = (Vec::new(), Vec::new());
        for row in rows {
            let (actor, kind, at): (Option<String>, String, SystemTime) =
                (row.get(0), row.get(1), row.get(2));
            let number = actor
                .as_deref()
                .and_then(|a| a.split_once('-'))
                .and_then(|(_, n)| n.parse::<u64>().ok());
            match (kind.as_str(), number) {
                ("system", Some(job)) => txs.push(TxRecord {
                    job,
                    start: at,
                    changes: 0,
                }),
                ("user", Some(user)) => people.push(HumanTx { user, at }),
                _ => {}
            }
        }
        // Only their sum is used (the changes an hour holds).
        let per_tx = int("batch_changes")? as u64 / txs.len().max(1) as u64;
        for t in &mut txs {
            t.changes = per_tx;
        }
        Ok(Kept {
            sizes,
            loaded: Loaded {
                txs,
                people,
                load_start: from_micros(int("load_start_us")?),
                load_end: from_micros(int("load_end_us")?),
                moment,
                snap_at_moment: int("snap_at_moment")?,
                snap_digest: state["snap_digest"].as_str().unwrap_or_default().to_owned(),
            },
        })
    }
}

/// Creates, loads and measures; with `keep` (`Some(load_only)`), records
/// what the load made for `--reuse`, and with `load_only` stops there.
async fn run(
    scale: Scale,
    cluster: &Db,
    started: Instant,
    serve: Option<Serve>,
    keep: Option<bool>,
) -> Result<()> {
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
        "  plan:     {} small tables of {SMALL_ROWS} rows, big {} rows, snap {} rows; trail of {} changes: \
         {} people's transactions of 1-9 single-row UPDATEs ({USERS} users), and {} batch transactions ({JOBS} jobs) of ~{} \
         ({} big + {} x {SMALL_ROWS} small + {} snap), {} sessions; {} runs per query after {WARMUP} warm-up runs",
        scale.tables,
        scale.rows,
        scale.snap_rows,
        scale.changes,
        scale.human_txs,
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
    ddl.push_str(PERSON_FUNCTION);
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
    let jobs = Arc::new(schedule(&scale));
    let next = Arc::new(AtomicI64::new(0));
    let mut workers = Vec::new();
    for w in 0..scale.workers {
        let client = connect(cluster).await?;
        let (jobs, next) = (Arc::clone(&jobs), Arc::clone(&next));
        workers.push(tokio::spawn(async move {
            load_worker(client, scale, jobs, next, w == 0).await
        }));
    }
    let mut txs: Vec<TxRecord> = Vec::new();
    let mut people: Vec<HumanTx> = Vec::new();
    for w in workers {
        let (batch, human) = w.await.context("join a load worker")??;
        txs.extend(batch);
        people.extend(human);
    }
    txs.sort_by_key(|t| t.start);
    people.sort_by_key(|t| t.at);
    let load_end: SystemTime = admin.query_one("SELECT clock_timestamp()", &[]).await?.get(0);
    let loaded: u64 = txs.iter().map(|t| t.changes).sum();
    let load_secs = step.elapsed().as_secs_f64();
    let human_changes: i64 = admin
        .query_one(
            "SELECT count(*) FROM pgtrail.change AS c JOIN pgtrail.transaction AS x USING (txid, ctx) \
             WHERE x.actor_type = 'user'",
            &[],
        )
        .await
        .context("count the people's changes")?
        .get(0);
    println!(
        "load: {} changes in {load_secs:.0} s ({:.0} changes/s): batch jobs {loaded} in {} transactions, \
         people {human_changes} in {} transactions",
        loaded + human_changes as u64,
        (loaded + human_changes as u64) as f64 / load_secs,
        txs.len(),
        people.len()
    );

    // The moment of table_as_of, then a few thousand changes of snap after it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let moment: SystemTime = admin.query_one("SELECT clock_timestamp()", &[]).await?.get(0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // What snap holds at the moment, to check table_as_of's answer against.
    let at_moment = admin
        .query_one(
            &format!("{SNAP_DIGEST} FROM (SELECT to_jsonb(s) AS r FROM snap AS s) AS q"),
            &[],
        )
        .await
        .context("digest snap at the moment")?;
    let (snap_at_moment, snap_digest): (i64, String) = (at_moment.get(0), at_moment.get(1));
    let after = snap_changes_after(&mut admin, scale.snap_rows).await?;
    println!(
        "snap: {after} changes after the table_as_of moment (updates of ~{} rows, {} deletes, {} inserts)",
        scale.snap_rows / 50 + scale.snap_rows / 97,
        scale.snap_rows / 1000,
        scale.snap_rows / 500
    );

    // Stretch the trail's time to SIMULATED_DAYS (the bench's rewrite, not
    // something pgtrail does), so that windows are real hours.
    let step = Instant::now();
    let clock = Stretch::new(load_start, load_end);
    let correlation = clock.apply(cluster, &admin, scale.workers).await?;
    let (load_start, load_end, moment) = (clock.map(load_start), clock.map(load_end), clock.map(moment));
    for t in &mut txs {
        t.start = clock.map(t.start);
    }
    for p in &mut people {
        p.at = clock.map(p.at);
    }
    println!(
        "time: the trail's {:.0} s stretched {:.0}x to {SIMULATED_DAYS:.0} days in {:.0} s (timestamps in {} sessions, \
         long contexts, CLUSTER by id; changed_at's correlation with the heap's order {correlation:.4})",
        clock.span.as_secs_f64(),
        clock.factor,
        step.elapsed().as_secs_f64(),
        scale.workers
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
    let loaded = Loaded {
        txs,
        people,
        load_start,
        load_end,
        moment,
        snap_at_moment,
        snap_digest,
    };
    if let Some(load_only) = keep {
        Kept::write(&admin, &scale, &loaded).await?;
        if load_only {
            println!(
                "loaded in {:.0} s; not measured (--load-only)",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
    }
    if let Some(before) = serve.and_then(|s| s.before) {
        // Copying the database needs nobody connected to it.
        drop(admin);
        serve::copy_before(cluster, before).await?;
    }
    println!();
    measure(scale, cluster, loaded, started, serve).await
}

/// The measurements: the query functions, their plans, and with `serve`,
/// `pgtrail serve`.
async fn measure(
    scale: Scale,
    cluster: &Db,
    loaded: Loaded,
    started: Instant,
    serve: Option<Serve>,
) -> Result<()> {
    let Loaded {
        txs,
        people,
        load_start,
        load_end,
        moment,
        snap_at_moment,
        snap_digest,
    } = loaded;
    let client = connect(cluster).await?;
    let ctx = QueryContext::new(&client, &txs, &people, load_start, load_end, moment, scale).await?;
    if let Some(Serve {
        clients,
        rounds,
        before,
        only: true,
    }) = serve
    {
        println!();
        serve::bench(cluster, &ctx, clients, rounds, before.is_some()).await?;
        println!();
        println!("total run time {:.0} s", started.elapsed().as_secs_f64());
        return Ok(());
    }
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
    let answer = client
        .query_one(
            &format!("{SNAP_DIGEST} FROM pgtrail.table_as_of('snap', $1) AS r"),
            &[&moment],
        )
        .await
        .context("digest table_as_of's answer")?;
    let (answer_rows, answer_digest): (i64, String) = (answer.get(0), answer.get(1));
    if (answer_rows, &answer_digest) != (snap_at_moment, &snap_digest) {
        bail!(
            "table_as_of('snap') returned {answer_rows} rows (digest {answer_digest}); snap had {snap_at_moment} rows \
             (digest {snap_digest}) at the moment"
        );
    }
    println!(
        "  check: table_as_of returned {table_rows:.0} rows per run, the same {snap_at_moment} rows snap had at the \
         moment (md5 of the rows' JSON {snap_digest})"
    );
    println!();

    // Plans.
    explain_all(cluster, &ctx, &mut rng).await?;

    if let Some(Serve {
        clients,
        rounds,
        before,
        ..
    }) = serve
    {
        println!();
        serve::bench(cluster, &ctx, clients, rounds, before.is_some()).await?;
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
        let (target, result) = match target {
            Some(t) => (format!("< {t} ms"), if m.median < t { "PASS" } else { "FAIL" }),
            None => (
                format!("{:.1} us/row", m.median * 1000.0 / m.mean_rows.max(1.0)),
                "-",
            ),
        };
        println!(
            "{:<48} {:>10.3} {:>10.3} {:>10.3} {:>10.1}  {:<9} {:<6}",
            m.label, m.median, m.p95, m.max, m.mean_rows, target, result
        );
    }
    Ok(())
}

/// One load session: takes jobs until all are done.
async fn load_worker(
    mut client: Client,
    scale: Scale,
    jobs: Arc<Vec<Job>>,
    next: Arc<AtomicI64>,
    report: bool,
) -> Result<(Vec<TxRecord>, Vec<HumanTx>)> {
    let human = client
        .prepare(
            "SELECT bench_person($1::text, $2::text, $3::text, $4::integer[], $5::integer[], $6::integer[])",
        )
        .await
        .context("prepare bench_person")?;
    let mut batch = Vec::new();
    let mut people = Vec::new();
    let started = Instant::now();
    let mut last_report = 0;
    loop {
        let j = next.fetch_add(1, Ordering::SeqCst);
        let Some(&job) = jobs.get(j as usize) else {
            break;
        };
        match job {
            Job::Batch(k) => {
                let mut tries = 0;
                loop {
                    match load_transaction(&mut client, &scale, k).await {
                        Err(e) if is_deadlock(&e) && tries < 5 => tries += 1,
                        outcome => break batch.push(outcome?),
                    }
                }
            }
            Job::People(chunk) => {
                let first = chunk * HUMAN_CHUNK;
                for h in first..(first + HUMAN_CHUNK).min(scale.human_txs) {
                    let mut tries = 0;
                    loop {
                        match person_transaction(&client, &human, &scale, h).await {
                            Err(e) if is_deadlock(&e) && tries < 5 => tries += 1,
                            outcome => break people.push(outcome?),
                        }
                    }
                }
            }
        }
        let decile = j * 10 / jobs.len() as i64;
        if report && decile > last_report {
            last_report = decile;
            println!(
                "  load: {}% of the work started after {:.0} s",
                decile * 10,
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok((batch, people))
}

/// Whether the server aborted a load transaction to break a deadlock
/// (people and batch jobs can lock the same rows in opposite orders, as in
/// real life); such a transaction is run again.
fn is_deadlock(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|e| e.downcast_ref::<tokio_postgres::Error>())
        .any(|e| e.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED))
}

/// Person transaction `h`: one statement calling `bench_person`, which sets
/// the context of a user (a few users do most of the work) and runs 1-9
/// single-row UPDATEs of random rows of `big` and the small tables.
async fn person_transaction(
    client: &Client,
    statement: &Statement,
    scale: &Scale,
    h: i64,
) -> Result<HumanTx> {
    let mut rng = Rng(0xB0B ^ (h as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let u = rng.unit();
    let user = ((USERS as f64) * u * u) as u64;
    let n = rng.range(1, 9);
    let (mut big, mut tables, mut rows) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        if rng.unit() < 0.6 {
            big.push(rng.range(1, scale.rows) as i32);
        } else {
            tables.push(rng.range(1, scale.tables) as i32);
            rows.push(rng.range(1, SMALL_ROWS) as i32);
        }
    }
    let at: SystemTime = client
        .query_one(
            statement,
            &[
                &user_id(user),
                &format!("User {user:03}"),
                &format!("ticket {h}"),
                &big,
                &tables,
                &rows,
            ],
        )
        .await?
        .get(0);
    Ok(HumanTx { user, at })
}

/// Load transaction `k` of a batch job: set_context, then one bulk UPDATE
/// of `big`, small-table UPDATEs and INSERTs, one UPDATE of `snap`.
/// Which rows and columns follow from `k`, so concurrent transactions touch
/// different rows.
async fn load_transaction(client: &mut Client, scale: &Scale, k: i64) -> Result<TxRecord> {
    let mut rng = Rng(0xA11CE ^ (k as u64).wrapping_mul(0x9E37_79B9));
    let job = rng.next() % JOBS;
    let tx = client.transaction().await.context("BEGIN")?;
    tx.execute(
        "SELECT pgtrail.set_context($1::text, $2::text, 'system', $3::text)",
        &[&job_id(job), &format!("Job {job:02}"), &format!("load batch {k}")],
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
    tx.commit().await.context("COMMIT")?;
    Ok(TxRecord { job, start, changes })
}

/// After the table_as_of moment: updates of ~3% of snap's rows (some twice),
/// deletes of 0.1%, inserts of 0.2% new rows; returns the number of changes.
async fn snap_changes_after(client: &mut Client, snap_rows: i64) -> Result<u64> {
    let mut n = 0;
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pgtrail.set_context($1::text, $2::text, 'user', $3::text)",
        &[&"user-000", &"User 000", &"after the moment"],
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
            // The trail is partitioned: its sizes are its partitions' sums.
            "SELECT (SELECT count(*) FROM pgtrail.change),
                    (SELECT sum(pg_total_relation_size(relid))::bigint FROM pg_partition_tree('pgtrail.change')),
                    (SELECT sum(pg_relation_size(relid))::bigint FROM pg_partition_tree('pgtrail.change')),
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
            "SELECT c.relname, coalesce((SELECT sum(pg_relation_size(t.relid))::bigint FROM pg_partition_tree(c.oid) AS t),
                                        pg_relation_size(c.oid))
             FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid
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
    ActorLog,
    ActorView,
    JobWindow,
    TableAsOf,
}

impl Kind {
    const ALL: [Kind; 8] = [
        Kind::History,
        Kind::RowAsOf,
        Kind::Blame,
        Kind::ActorWindow,
        Kind::ActorLog,
        Kind::ActorView,
        Kind::JobWindow,
        Kind::TableAsOf,
    ];

    fn label(self) -> &'static str {
        match self {
            Kind::History => "history(big, one row)",
            Kind::RowAsOf => "row_as_of(big, one row, random t)",
            Kind::Blame => "blame(big, one row), column b",
            Kind::ActorWindow => "actor_changes: a person's hour",
            Kind::ActorLog => "pgtrail log --actor --since --until",
            Kind::ActorView => "(view filter: a person's hour)",
            Kind::JobWindow => "actor_changes: a batch job's hour",
            Kind::TableAsOf => "table_as_of(snap, all rows)",
        }
    }

    /// The target median, when the issue sets one.
    fn target_ms(self) -> Option<f64> {
        match self {
            Kind::TableAsOf => Some(3000.0),
            // All of a job's hour: thousands of rows; its cost is reported
            // per row returned.
            Kind::JobWindow => None,
            // For comparison: the same rows through a filter on the view,
            // which reads every change of the hour.
            Kind::ActorView => None,
            _ => Some(5.0),
        }
    }

    fn sql(self) -> String {
        match self {
            Kind::History => "SELECT * FROM pgtrail.history('big', $1)".into(),
            Kind::RowAsOf => "SELECT pgtrail.row_as_of('big', $1, $2)".into(),
            Kind::Blame => "SELECT * FROM pgtrail.blame('big', $1) WHERE column_name = $2".into(),
            Kind::ActorWindow | Kind::JobWindow => "SELECT * FROM pgtrail.actor_changes($1, $2, $3)".into(),
            Kind::ActorView => {
                "SELECT * FROM pgtrail.changes WHERE actor_id = $1 AND changed_at >= $2 AND changed_at < $3"
                    .into()
            }
            Kind::ActorLog => log_query().0,
            Kind::TableAsOf => "SELECT count(*) FROM pgtrail.table_as_of('snap', $1)".into(),
        }
    }
}

/// The query `pgtrail log --actor A --since S --until U` runs (its default
/// limit of 50 rows included), built by the library as the CLI builds it;
/// parameters: actor, since and until as text, limit.
fn log_query() -> (String, usize) {
    let filter = pgtrail::query::LogFilter {
        actor: Some(String::new()),
        since: Some(pgtrail::query::TimeArg::Absolute(String::new())),
        until: Some(pgtrail::query::TimeArg::Absolute(String::new())),
        limit: Some(50),
        by_actor_index: true,
        ..Default::default()
    };
    let (sql, params) = filter.build();
    (sql, params.len())
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

/// An hour of one actor, in the load's compressed time, around one of its
/// transactions (a window in which the actor did something).
#[derive(Debug, Clone)]
struct Window {
    actor: String,
    from: SystemTime,
    to: SystemTime,
    /// `from` and `to` as PostgreSQL prints them, for the CLI's text parameters.
    from_text: String,
    to_text: String,
}

struct QueryContext<'a> {
    client: &'a Client,
    statements: Vec<(Kind, Statement)>,
    people: Vec<Window>,
    jobs: Vec<Window>,
    load_start: SystemTime,
    load_end: SystemTime,
    moment: SystemTime,
    scale: Scale,
}

/// Candidate windows of each kind.
const WINDOWS: usize = 500;

impl<'a> QueryContext<'a> {
    async fn new(
        client: &'a Client,
        txs: &[TxRecord],
        people: &[HumanTx],
        load_start: SystemTime,
        load_end: SystemTime,
        moment: SystemTime,
        scale: Scale,
    ) -> Result<QueryContext<'a>> {
        let mut statements = Vec::new();
        for kind in Kind::ALL {
            let statement = client
                .prepare(&kind.sql())
                .await
                .with_context(|| format!("prepare {}", kind.sql()))?;
            statements.push((kind, statement));
        }
        if txs.is_empty() || people.is_empty() {
            bail!("the load recorded no batch or no person transactions");
        }
        let load_span = load_end.duration_since(load_start).unwrap_or_default();
        let hour = Duration::from_secs(3600);
        let mut rng = Rng(0x0DD_BA11);
        let mut people_windows = Vec::with_capacity(WINDOWS);
        let mut job_windows = Vec::with_capacity(WINDOWS);
        for _ in 0..WINDOWS {
            let p = &people[rng.range(0, people.len() as i64 - 1) as usize];
            people_windows.push(window(client, user_id(p.user), p.at, hour, &mut rng).await?);
            let t = &txs[rng.range(0, txs.len() as i64 - 1) as usize];
            job_windows.push(window(client, job_id(t.job), t.start, hour, &mut rng).await?);
        }
        let all_in_hour = txs.iter().map(|t| t.changes).sum::<u64>() as f64 / (SIMULATED_DAYS * 24.0)
            + (people.len() as f64 * 5.0) / (SIMULATED_DAYS * 24.0);
        println!(
            "windows: the trail spans {:.1} days, so an hour holds ~{all_in_hour:.0} changes of all actors; \
             {WINDOWS} hours of people and {WINDOWS} of jobs, each around one of the actor's transactions at a random offset",
            load_span.as_secs_f64() / 86_400.0,
        );
        Ok(QueryContext {
            client,
            statements,
            people: people_windows,
            jobs: job_windows,
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

    fn random_window(&self, kind: Kind, rng: &mut Rng) -> &Window {
        let windows = if kind == Kind::JobWindow {
            &self.jobs
        } else {
            &self.people
        };
        &windows[rng.range(0, windows.len() as i64 - 1) as usize]
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
            Kind::ActorWindow | Kind::ActorView | Kind::JobWindow => {
                let w = self.random_window(kind, rng);
                c.query(st, &[&w.actor, &w.from, &w.to]).await?.len() as f64
            }
            Kind::ActorLog => {
                let w = self.random_window(kind, rng);
                c.query(st, &[&w.actor, &w.from_text, &w.to_text, &50i64])
                    .await?
                    .len() as f64
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

/// The hour of `actor` that contains `at` at a random offset.
async fn window(
    client: &Client,
    actor: String,
    at: SystemTime,
    hour: Duration,
    rng: &mut Rng,
) -> Result<Window> {
    let from = at - hour.mul_f64(rng.unit());
    let to = from + hour;
    let row = client
        .query_one(
            "SELECT $1::timestamptz::text, $2::timestamptz::text",
            &[&from, &to],
        )
        .await
        .context("print a window's bounds")?;
    Ok(Window {
        actor,
        from,
        to,
        from_text: row.get(0),
        to_text: row.get(1),
    })
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

/// EXPLAIN (ANALYZE, BUFFERS) of a window query (`kind`) over `w`.
async fn explain_actor(client: &Client, kind: Kind, w: &Window) -> Result<()> {
    println!(
        "  {} | {} from {} to {}: EXPLAIN (ANALYZE, BUFFERS)",
        kind.label(),
        w.actor,
        w.from_text,
        w.to_text
    );
    let sql = format!("EXPLAIN (ANALYZE, BUFFERS) {}", kind.sql());
    let plan = if kind == Kind::ActorLog {
        client
            .query(&sql, &[&w.actor, &w.from_text, &w.to_text, &50i64])
            .await
    } else {
        client.query(&sql, &[&w.actor, &w.from, &w.to]).await
    }
    .with_context(|| format!("EXPLAIN {}", kind.label()))?;
    for row in plan {
        println!("        | {}", row.get::<_, String>(0));
    }
    Ok(())
}

/// Not measured: the plans of what each query runs.
async fn explain_all(cluster: &Db, ctx: &QueryContext<'_>, rng: &mut Rng) -> Result<()> {
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
            Kind::History => diag.query(&kind.sql(), &[&key]).await?.len(),
            Kind::RowAsOf => diag.query(&kind.sql(), &[&key, &at]).await?.len(),
            _ => diag.query(&kind.sql(), &[&key, &"b"]).await?.len(),
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

    // Actor windows: the statement inside actor_changes (auto_explain), and
    // the CLI's query and the view filter (EXPLAIN).
    for kind in [Kind::ActorWindow, Kind::JobWindow] {
        let w = ctx.random_window(kind, rng);
        autoexplain::load(&diag, "0").await?;
        let offset = autoexplain::log_offset(&log);
        let start = Instant::now();
        let n = diag.query(&kind.sql(), &[&w.actor, &w.from, &w.to]).await?.len();
        let elapsed = start.elapsed().as_secs_f64() * 1000.0;
        autoexplain::unload(&diag).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        println!(
            "  {} | {} from {} to {}: {n} rows, {elapsed:.1} ms instrumented",
            kind.label(),
            w.actor,
            w.from_text,
            w.to_text
        );
        autoexplain::print(&autoexplain::entries_since(&log, offset), 5, 1);
    }
    for kind in [Kind::ActorLog, Kind::ActorView] {
        explain_actor(&diag, kind, ctx.random_window(kind, rng)).await?;
    }

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
        .query_one(&Kind::TableAsOf.sql(), &[&ctx.moment])
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
