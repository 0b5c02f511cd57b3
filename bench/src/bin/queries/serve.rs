//! `--serve`: `pgtrail serve` over the query benchmark's trail. One server
//! (or, with `--serve-before FIX`, two side by side: the trail at the
//! current SQL and a copy without that fix) runs in this
//! process, each on its own thread and single-threaded runtime, so that its
//! CPU time can be read apart; `--clients` clients each run `--rounds`
//! rounds, a round requesting every page of every server once, in an order
//! rotated by client and round: the timeline with no filter and a person's
//! hour, a row of `big`, a person's transaction, each as a page and as
//! JSON. Reported per server and page: median, p95, p99 and max latency;
//! per server: the CPU of its thread and of its PostgreSQL backends per
//! request; before the requests, the plan of the row page's seal lookup.
//! See `bench/SERVE.md`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use pgtrail_bench::procstat;
use pgtrail_bench::server::Db;
use tokio_postgres::Client;

use super::{Kind, QueryContext, Rng, WARMUP, percentile};

async fn connect(db: &Db, dbname: &str) -> Result<Client> {
    super::server::connect_url(&db.url(dbname)).await
}

/// The database holding the copy of the trail at the SQL of before.
pub(super) const BEFORE_DB: &str = "trail_before";

/// Which fix the copy of the trail is served without.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Before {
    /// The TRUNCATE lookups of `pgtrail.history` (`_row_life`,
    /// `_cut_after`, `_known_from`) and of the revert plan through the key
    /// index (`pgtrail._h(x.pk) IS NULL AND`, commit "Row pages: TRUNCATE
    /// lookups through the key index").
    TruncateLookup,
    /// `_row_life`'s row estimate (`ROWS 20`; without it, 1,000, and
    /// history joined its rows to a hash of all of pgtrail.transaction).
    RowEstimate,
}

impl Before {
    /// What the fix added to the functions' definitions, as
    /// `pg_get_functiondef` prints it.
    fn added(self) -> &'static str {
        match self {
            Before::TruncateLookup => "pgtrail._h(x.pk) IS NULL AND ",
            Before::RowEstimate => " ROWS 20\n",
        }
    }

    /// The definition without the fix.
    fn undo(self, definition: &str) -> String {
        match self {
            Before::TruncateLookup => definition.replace(self.added(), ""),
            Before::RowEstimate => definition.replace(self.added(), "\n"),
        }
    }
}

/// Copies the trail (database `postgres`, which nothing may be connected
/// to) into [`BEFORE_DB`] and puts back the SQL of before there: every
/// function of schema pgtrail whose definition holds what the fix added
/// is created again without it. The copy's reader role (its name follows
/// the database's) is made a member of the original's, so it has the same
/// rights.
pub(super) async fn copy_before(cluster: &Db, fix: Before) -> Result<()> {
    let step = Instant::now();
    let template = connect(cluster, "template1").await?;
    template
        .batch_execute(&format!("CREATE DATABASE {BEFORE_DB} TEMPLATE postgres"))
        .await
        .context("copy the trail (CREATE DATABASE ... TEMPLATE postgres)")?;
    drop(template);
    let original = connect(cluster, "postgres").await?;
    let reader: String = original
        .query_one("SELECT pgtrail.role_name('reader')::text", &[])
        .await?
        .get(0);
    drop(original);
    let before = connect(cluster, BEFORE_DB).await?;
    let copy_reader: String = before
        .query_one("SELECT pgtrail.role_name('reader')::text", &[])
        .await?
        .get(0);
    before
        .batch_execute(&format!(
            "CREATE ROLE \"{copy_reader}\" NOLOGIN IN ROLE \"{reader}\""
        ))
        .await
        .context("the copy's reader role")?;
    let functions = before
        .query(
            "SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid) FROM pg_proc AS p
             WHERE p.pronamespace = 'pgtrail'::regnamespace AND p.prokind = 'f' AND strpos(pg_get_functiondef(p.oid), $1) > 0
             ORDER BY 1",
            &[&fix.added()],
        )
        .await
        .context("find the functions of the fix")?;
    let mut names = Vec::new();
    for row in &functions {
        let (name, definition): (String, String) = (row.get(0), row.get(1));
        before
            .batch_execute(&fix.undo(&definition))
            .await
            .with_context(|| format!("{name} as before"))?;
        names.push(name);
    }
    if !names.iter().any(|n| n.starts_with("pgtrail._row_life")) {
        bail!(
            "pgtrail._row_life has no {:?}: the SQL of before cannot be made from this one",
            fix.added()
        );
    }
    println!(
        "before: the trail copied to database {BEFORE_DB}, served without {:?} ({fix:?}) in {}; {:.0} s",
        fix.added(),
        names.join(", "),
        step.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The pages requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Page {
    TimelineAllHtml,
    TimelineAllJson,
    TimelineJson,
    TimelineHtml,
    RowHtml,
    RowJson,
    TxHtml,
    TxJson,
}

impl Page {
    const ALL: [Page; 8] = [
        Page::TimelineAllHtml,
        Page::TimelineAllJson,
        Page::TimelineJson,
        Page::TimelineHtml,
        Page::RowHtml,
        Page::RowJson,
        Page::TxHtml,
        Page::TxJson,
    ];

    fn label(self) -> &'static str {
        match self {
            Page::TimelineAllHtml => "GET / (timeline page, no filter)",
            Page::TimelineAllJson => "GET /api/v1/changes (no filter)",
            Page::TimelineJson => "GET /api/v1/changes (a person's hour)",
            Page::TimelineHtml => "GET / (timeline page, a person's hour)",
            Page::RowHtml => "GET /row/big?key= (row page)",
            Page::RowJson => "GET /api/v1/rows/big/history?key=",
            Page::TxHtml => "GET /tx/N (a person's transaction)",
            Page::TxJson => "GET /api/v1/transactions/N (the same)",
        }
    }
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// One GET over a fresh connection; returns the status.
async fn http_get(addr: SocketAddr, path: &str, token: &str) -> Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .context("connect to the server")?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let head = String::from_utf8_lossy(&answer[..answer.len().min(32)]).into_owned();
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no HTTP status in {head:?}"))
}

/// CPU time (user + system) of thread `tid` of this process, in clock ticks.
fn thread_ticks(tid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))
        .ok()
        .and_then(|s| procstat::parse_cpu_ticks(&s))
        .unwrap_or(0)
}

/// The id of the calling thread (from `/proc/thread-self`).
fn current_tid() -> i32 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// A server running on its own thread, and what it used.
struct Running {
    name: &'static str,
    addr: SocketAddr,
    tid: i32,
    backends: Arc<Mutex<Vec<i32>>>,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<Result<()>>,
}

impl Running {
    /// CPU ticks of its thread and of its PostgreSQL backends so far.
    fn ticks(&self) -> (u64, u64) {
        let backends = self.backends.lock().map(|b| b.clone()).unwrap_or_default();
        let pg = backends
            .iter()
            .map(|&pid| procstat::cpu_ticks(pid).unwrap_or(0))
            .sum();
        (thread_ticks(self.tid), pg)
    }

    fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the {} server's thread panicked", self.name))?
    }
}

/// Starts `pgtrail serve` on database `dbname` on a thread of its own (a
/// single-threaded runtime), with one reader token and `connections`
/// database connections, whose backend pids it records.
fn start(cluster: &Db, name: &'static str, dbname: &str, token: &str, connections: usize) -> Result<Running> {
    let target = pgtrail::connect::Target::parse(&cluster.url(dbname), "the benchmark cluster")?;
    let target = Arc::new(target);
    let backends = Arc::new(Mutex::new(Vec::new()));
    let recorded = backends.clone();
    let connect: pgtrail::serve::Connect = Arc::new(move || {
        let (target, recorded) = (target.clone(), recorded.clone());
        Box::pin(async move {
            let client = pgtrail::connect::connect(&target)
                .await
                .map_err(|e| e.to_string())?;
            let pid: i32 = client
                .query_one("SELECT pg_backend_pid()", &[])
                .await
                .map_err(|e| e.to_string())?
                .get(0);
            if let Ok(mut pids) = recorded.lock() {
                pids.push(pid);
            }
            Ok(client)
        })
    });
    let options = pgtrail::serve::Options {
        listen: "127.0.0.1:0".parse()?,
        tokens: vec![pgtrail::serve::ServeToken {
            name: "bench".into(),
            role: pgtrail::serve::TokenRole::Reader,
            sha256: pgtrail::serve::hash_token(token),
        }],
        connections,
        ..pgtrail::serve::Options::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready, bound) = std::sync::mpsc::channel::<Result<(SocketAddr, i32)>>();
    let thread = std::thread::Builder::new()
        .name(format!("serve-{name}"))
        .spawn(move || -> Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("the server's runtime")?;
            runtime.block_on(async move {
                let server = match pgtrail::serve::Server::bind(options, connect).await {
                    Ok(server) => server,
                    Err(error) => {
                        let _ = ready.send(Err(anyhow::anyhow!("{error}")));
                        return Ok(());
                    }
                };
                let _ = ready.send(Ok((server.local_addr(), current_tid())));
                server
                    .run(async move {
                        let _ = stopped.await;
                    })
                    .await
                    .context("serve")
            })
        })
        .context("start the server's thread")?;
    let (addr, tid) = bound.recv().context("the server's thread ended")??;
    Ok(Running {
        name,
        addr,
        tid,
        backends,
        stop,
        thread,
    })
}

/// Seals the trail of database `dbname` (one seal of every change).
async fn seal(cluster: &Db, dbname: &str, key: &pgtrail::integrity::crypto::SignerKey) -> Result<()> {
    let sealing = Instant::now();
    let mut sealer = connect(cluster, dbname).await?;
    // A trail kept by an earlier run (--reuse) was sealed by it, with a key
    // that run did not keep.
    let sealed: Option<i64> = sealer
        .query_one("SELECT max(id) FROM pgtrail.seal", &[])
        .await
        .context("read the last seal")?
        .get(0);
    if let Some(id) = sealed {
        println!("pgtrail serve: the trail of {dbname} was sealed before (last seal {id}): not sealed again");
        return Ok(());
    }
    let sealed = pgtrail::integrity::seal(&mut sealer, key, &mut |_| {}).await?;
    println!(
        "pgtrail serve: the trail of {dbname} sealed first ({} changes in one seal, {:.1} s)",
        sealed.appended,
        sealing.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The load average (1, 5 and 15 minutes) as /proc has it.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Runs the HTTP measurement: see the module's documentation.
pub(super) async fn bench(
    cluster: &Db,
    ctx: &QueryContext<'_>,
    clients: usize,
    rounds: usize,
    before: bool,
) -> Result<()> {
    // The trail sealed first, as a trail in service is: the row and
    // transaction pages say which seal holds each change they show.
    let key = pgtrail::integrity::crypto::SignerKey::generate("bench.example/serve")?;
    let mut databases = vec![("after", "postgres")];
    if before {
        databases.insert(0, ("before", BEFORE_DB));
    }
    for (_, dbname) in &databases {
        seal(cluster, dbname, &key).await?;
    }
    let token = pgtrail::serve::new_token()?;
    let mut servers = Vec::new();
    for (name, dbname) in &databases {
        servers.push(start(cluster, name, dbname, &token, clients)?);
    }

    explain_seal_lookup(ctx).await?;

    let hours = Arc::new(hours(ctx).await?);
    let txids = Arc::new(person_transactions(ctx).await?);
    let rows = ctx.scale.rows;
    let path = move |page: Page, rng: &mut Rng, hours: &[String], txids: &[i64]| -> String {
        let hour = &hours[rng.range(0, hours.len() as i64 - 1) as usize];
        let key = rng.range(1, rows);
        let txid = txids[rng.range(0, txids.len() as i64 - 1) as usize];
        match page {
            Page::TimelineAllHtml => "/".to_owned(),
            Page::TimelineAllJson => "/api/v1/changes".to_owned(),
            Page::TimelineJson => format!("/api/v1/changes?{hour}"),
            Page::TimelineHtml => format!("/?{hour}"),
            Page::RowHtml => format!("/row/big?key={key}"),
            Page::RowJson => format!("/api/v1/rows/big/history?key={key}"),
            Page::TxHtml => format!("/tx/{txid}"),
            Page::TxJson => format!("/api/v1/transactions/{txid}"),
        }
    };
    // Every (server, page), the order a round requests them in rotated.
    let requests: Vec<(usize, Page)> = (0..servers.len())
        .flat_map(|s| Page::ALL.into_iter().map(move |p| (s, p)))
        .collect();
    let requests = Arc::new(requests);
    let addrs: Arc<Vec<SocketAddr>> = Arc::new(servers.iter().map(|s| s.addr).collect());

    // Warm-up: each page of each server a few times.
    let mut warm = Rng(0x3A3A);
    for &(s, page) in requests.iter() {
        for _ in 0..WARMUP {
            let status = http_get(addrs[s], &path(page, &mut warm, &hours, &txids), &token).await?;
            if status != 200 {
                bail!("{} ({}): HTTP {status}", page.label(), servers[s].name);
            }
        }
    }
    let load_start = load_average();
    let ticks_before: Vec<(u64, u64)> = servers.iter().map(Running::ticks).collect();
    let wall = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (hours, txids, token, requests, addrs) = (
            hours.clone(),
            txids.clone(),
            token.clone(),
            requests.clone(),
            addrs.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0xC11E_0000 + client as u64);
            let mut times: Vec<(usize, Page, f64)> = Vec::new();
            for round in 0..rounds {
                for i in 0..requests.len() {
                    let (s, page) = requests[(i + client + round) % requests.len()];
                    let target = path(page, &mut rng, &hours, &txids);
                    let start = Instant::now();
                    let status = http_get(addrs[s], &target, &token).await?;
                    if status != 200 {
                        bail!("{target}: HTTP {status}");
                    }
                    times.push((s, page, start.elapsed().as_secs_f64() * 1000.0));
                }
            }
            Ok::<_, anyhow::Error>(times)
        }));
    }
    let mut all: Vec<(usize, Page, f64)> = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    let elapsed = wall.elapsed().as_secs_f64();
    let ticks_after: Vec<(u64, u64)> = servers.iter().map(Running::ticks).collect();
    let load_end = load_average();
    let names: Vec<&'static str> = servers.iter().map(|s| s.name).collect();
    for server in servers {
        server.stop()?;
    }

    println!(
        "pgtrail serve: {} server(s) side by side ({}), {clients} concurrent clients x {rounds} rounds \
         (each page of each server once a round, order rotated by client and round), one HTTP connection per \
         request, {clients} connections to PostgreSQL per server; load average {load_start} before, {load_end} after",
        names.len(),
        names.join(", ")
    );
    println!(
        "{:<8} {:<40} {:>10} {:>10} {:>10} {:>10}  {:<9} {:<6}",
        "server", "page", "median ms", "p95 ms", "p99 ms", "max ms", "target", "result"
    );
    println!("{}", "-".repeat(112));
    for page in Page::ALL {
        for (s, name) in names.iter().enumerate() {
            let mut times: Vec<f64> = all
                .iter()
                .filter(|(k, p, _)| *k == s && *p == page)
                .map(|(_, _, t)| *t)
                .collect();
            times.sort_by(f64::total_cmp);
            let p95 = percentile(&times, 0.95);
            println!(
                "{name:<8} {:<40} {:>10.2} {:>10.2} {:>10.2} {:>10.2}  {:<9} {:<6}",
                page.label(),
                percentile(&times, 0.5),
                p95,
                percentile(&times, 0.99),
                times[times.len() - 1],
                "p95 < 200",
                if p95 < 200.0 { "PASS" } else { "FAIL" }
            );
        }
    }
    let hz = procstat::clock_ticks_per_second() as f64;
    for (s, name) in names.iter().enumerate() {
        let requests = all.iter().filter(|(k, _, _)| *k == s).count().max(1) as f64;
        let server_ms = ticks_after[s].0.saturating_sub(ticks_before[s].0) as f64 * 1000.0 / hz / requests;
        let pg_ms = ticks_after[s].1.saturating_sub(ticks_before[s].1) as f64 * 1000.0 / hz / requests;
        println!(
            "{name:<8} CPU per request: the server's thread {server_ms:.2} ms, its PostgreSQL backends {pg_ms:.2} ms \
             ({requests:.0} requests)"
        );
    }
    println!(
        "throughput {:.0} requests/s over all servers ({} requests in {elapsed:.1} s)",
        all.len() as f64 / elapsed,
        all.len()
    );
    Ok(())
}

/// People's hours, with their bounds as RFC 3339 (what a person types), as
/// query strings.
async fn hours(ctx: &QueryContext<'_>) -> Result<Vec<String>> {
    let client: &Client = ctx.client;
    let mut rng = Rng(0x5E7E_0001);
    let mut hours = Vec::new();
    for _ in 0..100 {
        let w = ctx.random_window(Kind::ActorWindow, &mut rng);
        let row = client
            .query_one(
                "SELECT to_char($1::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                        to_char($2::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
                &[&w.from, &w.to],
            )
            .await?;
        let (from, to): (String, String) = (row.get(0), row.get(1));
        hours.push(format!(
            "actor={}&since={}&until={}",
            url_encode(&w.actor),
            url_encode(&from),
            url_encode(&to)
        ));
    }
    Ok(hours)
}

/// Transactions of people (a few changes each), for the transaction pages.
async fn person_transactions(ctx: &QueryContext<'_>) -> Result<Vec<i64>> {
    let rows = ctx
        .client
        .query(
            "SELECT x.txid FROM pgtrail.transaction AS x
             WHERE x.actor_type = 'user' AND EXISTS (SELECT FROM pgtrail.change AS c WHERE c.txid = x.txid)
             ORDER BY hashint8(x.txid) LIMIT 500",
            &[],
        )
        .await
        .context("pick people's transactions")?;
    let txids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    if txids.is_empty() {
        bail!("the trail has no transaction of a person");
    }
    Ok(txids)
}

/// Not measured: the plan of "which seal holds these changes" as a row
/// page asks it (serve's `seals_of`: one change per transaction of the
/// row's history, looked up through the id span of `pgtrail.seal_leaves`,
/// migration 0012), for a few random rows of `big` on the sealed trail.
/// An index scan of `seal_leaves_id_span_idx` reads one leaf row per
/// change; a sequential scan would read every sealed change id.
async fn explain_seal_lookup(ctx: &QueryContext<'_>) -> Result<()> {
    let client: &Client = ctx.client;
    let leaves = client
        .query_one(
            "SELECT count(*), coalesce(sum(cardinality(change_ids)), 0)::bigint,
                    pg_size_pretty(pg_total_relation_size('pgtrail.seal_leaves'))
             FROM pgtrail.seal_leaves",
            &[],
        )
        .await
        .context("size of pgtrail.seal_leaves")?;
    let (rows, ids, size): (i64, i64, String) = (leaves.get(0), leaves.get(1), leaves.get(2));
    println!("pgtrail serve: pgtrail.seal_leaves holds {ids} change ids in {rows} rows ({size})");
    let mut rng = Rng(0x5EA1_0001);
    for _ in 0..3 {
        let key = ctx.random_key(&mut rng);
        let probes: Vec<i64> = client
            .query(
                "SELECT min(h.id) FROM pgtrail.history('big', $1) AS h WHERE h.id IS NOT NULL GROUP BY h.txid",
                &[&key],
            )
            .await
            .context("a row's changes")?
            .iter()
            .map(|r| r.get(0))
            .collect();
        // The statement of serve's seals_of (crates/serve/src/api.rs).
        let plan = client
            .query(
                "EXPLAIN (ANALYZE, BUFFERS)
                 SELECT jsonb_build_object('change_id', c.id, 'seal_id', s.id, 'sealed_at', s.sealed_at)
                 FROM unnest($1::bigint[]) AS c(id)
                 JOIN pgtrail.seal_leaves AS l ON l.id_span @> c.id
                 JOIN pgtrail.seal AS s ON s.id = l.seal_id
                 WHERE c.id = ANY (l.change_ids)",
                &[&probes],
            )
            .await
            .context("EXPLAIN the seal lookup")?;
        println!(
            "  seals of big {key} ({} transactions, probes {probes:?}): EXPLAIN (ANALYZE, BUFFERS)",
            probes.len()
        );
        for row in plan {
            println!("        | {}", row.get::<_, String>(0));
        }
    }
    Ok(())
}
