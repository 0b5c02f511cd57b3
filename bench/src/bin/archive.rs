//! Archive benchmark: how fast old partitions go to Parquet, how small the
//! files are beside the partition in PostgreSQL, and how long the drop locks
//! the trail. See `bench/ARCHIVE.md`.
//!
//! ```text
//! cargo run --release -p pgtrail-bench --bin archive -- [--changes N]
//! ```
//!
//! 1. Starts a throwaway cluster under Debian's `faketime`, its clock 500
//!    days back, and audits `orders` (`[retention] partition = "month"`,
//!    `keep = "400 days"`).
//! 2. Writes `--changes` changes through capture, in transactions of up to
//!    1,000 rows, each with a context: inserts, then `--updates` of them
//!    (a fraction, 0.5 by default) UPDATEs of the rows inserted. Three
//!    quarters of the UPDATEs go to `orders` (diff images: one changed
//!    field, `status`, or two, `status` and `total`, statement by
//!    statement), a quarter to `payments` (`images = "full"`: whole old and
//!    new rows); a quarter of the inserts go to `payments`.
//! 3. Moves the clock to now, seals, then archives: changes per second,
//!    Parquet bytes against the partitions' size in PostgreSQL (table,
//!    TOAST and indexes), the time the detach and drop held the lock, and
//!    pgtrail's peak resident set while archiving.
//! 4. Runs `verify --archive` over the files: its time, CPU per archived
//!    change and peak resident set.
//!
//! `--collation icu` makes the database sort text with ICU's `en-US` (as
//! most databases do not sort by bytes), where the archive asks the server
//! the order of each diff-image UPDATE's set of changed fields.
//!
//! With `--writers N` it measures instead what `maintain` does to writers:
//!
//! ```text
//! cargo run --release -p pgtrail-bench --bin archive -- --writers 4 [--rate TPS] [--rounds 3] [--window 20] [--changes N] [--priority both|low|normal]
//! ```
//!
//! `--changes` changes are written in each of `--rounds` months far apart
//! (100 days apart, the last 200 days ago; two a round with `--priority
//! both`) and sealed; then, with the clock at now,
//! N sessions keep updating `orders` (each transaction one audited
//! `UPDATE`; `--rate` paces them to that many transactions a second in
//! all, latency counted from when each was due; 0, the default, runs them
//! as fast as they go) while windows of `--window` seconds alternate:
//! one without maintain, one in which `maintain` (premake, seal, archive
//! and drop the one month now due, at `--priority`; with `both`, a window
//! at each) runs from its start, the order turning round by round. Per
//! window with maintain: writers' transactions a second over the whole
//! window and over the time maintain ran, beside the same length from the
//! start of the round's window without (the whole window without when
//! maintain ran longer than it); p99 and longest latency.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use pgtrail::archive::{ArchiveOptions, Outcome, Priority};
use pgtrail::config::Config;
use pgtrail::integrity::crypto::SignerKey;
use pgtrail_cluster::{Cluster, ClusterOptions};

#[path = "archive/writers.rs"]
mod writers;

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
const CONFIG: &str = "[capture]\ninclude = [\"orders\", \"payments\"]\n\n[tables.payments]\nimages = \"full\"\n\n[retention]\npartition = \"month\"\npremake = 1\nkeep = \"400 days\"\n";

#[derive(Debug, Parser)]
#[command(about = "Measure archiving old partitions to Parquet")]
struct Args {
    /// Changes written 500 days ago.
    #[arg(long, default_value_t = 300_000)]
    changes: i64,
    /// Measure writers beside `maintain` with this many sessions (0: the
    /// archive speed benchmark instead).
    #[arg(long, default_value_t = 0)]
    writers: u32,
    /// Writers' transactions a second in all (0: as fast as they go).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Rounds of (without maintain, with maintain), each archiving a month.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Seconds of each window.
    #[arg(long, default_value_t = 20)]
    window: u64,
    /// With `--writers`: the archive's priority in maintain's windows,
    /// `low`, `normal`, or `both` (each round then has a window of each).
    #[arg(long, default_value = "both")]
    priority: String,
    /// The collation of the database `shop`: `c` (sorts text by its bytes)
    /// or `icu` (ICU's `en-US`, as most databases sort: the archive then
    /// asks the server the order of each set of changed fields).
    #[arg(long, default_value = "c")]
    collation: String,
    /// The fraction of `--changes` that are UPDATEs (0 to 0.9; the rest
    /// are inserts). Without `--writers` only.
    #[arg(long, default_value_t = 0.5)]
    updates: f64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    if !std::path::Path::new(LIBFAKETIME).exists() {
        bail!("{LIBFAKETIME} is missing: apt-get install faketime");
    }
    if args.writers > 0 {
        return during_maintain(&args).await;
    }
    let (clock_dir, clock, _cluster, mut client) = shop_under_faketime(500, &args.collation).await?;
    let config = Config::parse(CONFIG, "pgtrail.toml")?;
    pgtrail::plan::apply(&mut client, &config).await?;

    let started = Instant::now();
    let updates = write_changes(&client, args.changes, args.updates).await?;
    println!(
        "wrote {} changes ({updates} of them UPDATEs) in {:.1}s",
        args.changes,
        started.elapsed().as_secs_f64()
    );
    std::fs::write(&clock, "+0d\n")?;
    pgtrail::archive::partitions::premake(&client, &config.retention).await?;
    let key = SignerKey::generate("bench/archive")?;
    let sealed = Instant::now();
    pgtrail::integrity::seal(&mut client, &key, &mut |_| {}).await?;
    println!("sealed in {:.1}s", sealed.elapsed().as_secs_f64());

    let due = pgtrail::archive::due(&client, &config.retention.keep, &config.retention.tables).await?;
    let mut pg_bytes = 0i64;
    for partition in &due {
        let row = client
            .query_one(
                "SELECT pg_total_relation_size(format('pgtrail.%I', $1::text)::regclass)",
                &[&partition.name],
            )
            .await?;
        pg_bytes += row.get::<_, i64>(0);
    }
    let dir = clock_dir.join("archive");
    let options = ArchiveOptions {
        dir,
        keep: config.retention.keep,
        tables: config.retention.tables.clone(),
        dry_run: false,
        priority: Priority::Normal,
    };
    let backend: i32 = client.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
    let (client_cpu, server_cpu) = (cpu_seconds("self"), cpu_seconds(&backend.to_string()));
    let rss_before = reset_peak_rss();
    let started = Instant::now();
    // Each step's start: its message and the CPU of both processes then.
    let backend_pid = backend.to_string();
    let mut steps: Vec<(String, f64, f64)> = Vec::new();
    let step_start = (precise_cpu_self(), precise_cpu(&backend_pid));
    let outcomes = pgtrail::archive::archive(&mut client, &options, None, &mut |step| {
        steps.push((step.to_string(), precise_cpu_self(), precise_cpu(&backend_pid)));
    })
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    let (client_end, server_end) = (cpu_seconds("self"), cpu_seconds(&backend_pid));
    print_steps(
        &steps,
        step_start,
        (precise_cpu_self(), precise_cpu(&backend_pid)),
    );
    let client_cpu = client_end - client_cpu;
    let server_cpu = server_end - server_cpu;
    let archive_peak = peak_rss_kib();
    let (mut rows, mut bytes, mut lock_ms) = (0i64, 0u64, 0f64);
    let (mut partitions, mut empty) = (0, 0);
    let (mut write_seconds, mut read_back_seconds) = (0f64, 0f64);
    for outcome in &outcomes {
        match outcome {
            Outcome::Archived {
                rows: r,
                bytes: b,
                lock_ms: l,
                write_seconds: w,
                read_back_seconds: b2,
                ..
            } => {
                partitions += 1;
                empty += i32::from(*r == 0);
                write_seconds += w;
                read_back_seconds += b2;
                rows += r;
                bytes += b;
                lock_ms = lock_ms.max(*l);
            }
            other => println!("not archived: {other:?}"),
        }
    }
    println!("archived {partitions} partitions, {empty} of them empty");
    println!(
        "archived {rows} changes in {seconds:.2}s: {:.0} changes/s (write, read back, check, drop; one client core)",
        rows as f64 / seconds
    );
    println!(
        "  of which reading the partitions and writing Parquet {write_seconds:.2}s ({:.0} changes/s), reading back and comparing {read_back_seconds:.2}s ({:.0} changes/s)",
        rows as f64 / write_seconds.max(1e-9),
        rows as f64 / read_back_seconds.max(1e-9)
    );
    println!(
        "CPU: pgtrail {:.2} µs per change ({client_cpu:.2}s), its server backend {:.2} µs per change ({server_cpu:.2}s)",
        client_cpu * 1e6 / rows.max(1) as f64,
        server_cpu * 1e6 / rows.max(1) as f64
    );
    println!(
        "Parquet {bytes} bytes, PostgreSQL {pg_bytes} bytes: {:.1}% of the partitions' size",
        bytes as f64 * 100.0 / pg_bytes.max(1) as f64
    );
    println!("longest lock to detach and drop: {lock_ms:.1} ms");
    println!(
        "peak RSS of pgtrail while archiving: {} MiB (from {} MiB before)",
        archive_peak / 1024,
        rss_before / 1024
    );

    // verify --archive: every archived change recomputed from the files.
    let rss_before = reset_peak_rss();
    let (verify_cpu, started) = (cpu_seconds("self"), Instant::now());
    let report = pgtrail::integrity::verify(
        &mut client,
        &pgtrail::integrity::VerifyOptions {
            public_key: Some(key.verifier()),
            archive_dir: Some(options.dir.clone()),
            ..Default::default()
        },
    )
    .await?;
    let verify_seconds = started.elapsed().as_secs_f64();
    let verify_cpu = cpu_seconds("self") - verify_cpu;
    if !report.problems.is_empty() {
        bail!(
            "verify --archive found problems: {:?}",
            &report.problems[..report.problems.len().min(5)]
        );
    }
    println!(
        "verify --archive: {} archived changes checked in {verify_seconds:.2}s ({:.2} µs of pgtrail CPU each), peak RSS {} MiB (from {} MiB before)",
        report.archived_checked,
        verify_cpu * 1e6 / report.archived_checked.max(1) as f64,
        peak_rss_kib() / 1024,
        rss_before / 1024
    );
    let _ = std::fs::remove_dir_all(&clock_dir);
    Ok(())
}

/// Seals with a key, for `maintain`.
struct KeySealer(SignerKey);

impl pgtrail::archive::Sealer for KeySealer {
    fn seal<'a>(
        &'a self,
        client: &'a mut tokio_postgres::Client,
        priority: pgtrail::archive::Priority,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + 'a>> {
        Box::pin(async move {
            pgtrail::integrity::seal_at(client, &self.0, &mut |_| {}, priority)
                .await
                .map(|r| format!("{} appended", r.appended))
                .map_err(|e| e.to_string())
        })
    }
}

/// The retention config keeping `keep` days.
fn config_keeping(keep: u32) -> Result<Config> {
    Ok(Config::parse(
        &format!(
            "[capture]\ninclude = [\"orders\"]\n\n[retention]\npartition = \"month\"\npremake = 1\nkeep = \"{keep} days\"\n"
        ),
        "pgtrail.toml",
    )?)
}

/// `--writers`: writers' throughput and latency with and without `maintain`
/// archiving a month, windows side by side.
async fn during_maintain(args: &Args) -> Result<()> {
    let priorities: Vec<Priority> = match args.priority.as_str() {
        "both" => vec![Priority::Normal, Priority::Low],
        one => vec![one.parse().map_err(anyhow::Error::msg)?],
    };
    let rounds = args.rounds.clamp(1, 5);
    // A month per window with maintain: month m is written days_ago(m)
    // days ago and archived keeping days_ago(m) - 70 days: due then, and
    // the next month not yet.
    let months = rounds * priorities.len() as u32;
    let days_ago = |m: u32| 100 * (months - m) + 100;
    let (clock_dir, clock, cluster, mut client) = shop_under_faketime(days_ago(0), &args.collation).await?;
    let config = config_keeping(days_ago(0) - 70)?;
    pgtrail::plan::apply(&mut client, &config).await?;
    let mut next_id = 0i64;
    for m in 0..months {
        std::fs::write(&clock, format!("-{}d\n", days_ago(m)))?;
        pgtrail::archive::partitions::premake(&client, &config.retention).await?;
        let started = Instant::now();
        write_orders(&client, next_id, args.changes).await?;
        next_id += args.changes;
        println!(
            "wrote {} changes {} days ago in {:.1}s",
            args.changes,
            days_ago(m),
            started.elapsed().as_secs_f64()
        );
    }
    std::fs::write(&clock, "+0d\n")?;
    pgtrail::archive::partitions::premake(&client, &config.retention).await?;
    let key = SignerKey::generate("bench/archive")?;
    pgtrail::integrity::seal(&mut client, &key, &mut |_| {}).await?;
    client.batch_execute("VACUUM ANALYZE orders").await?;
    let sealer = KeySealer(key);
    let dir = clock_dir.join("archive");

    let t0 = Instant::now();
    let load = writers::Load {
        url: cluster.url("shop"),
        clients: args.writers,
        rate: args.rate,
        rows: next_id,
    };
    let writers = writers::Writers::start(load, t0);
    let window = Duration::from_secs(args.window);
    // Warm up: connections made, caches filled.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // (round, maintain's priority or None, start, end, maintain's end) in µs after t0.
    let mut windows: Vec<(u32, Option<Priority>, u64, u64, u64)> = Vec::new();
    let micros = |at: Instant| at.duration_since(t0).as_micros() as u64;
    let mut month = 0;
    for r in 0..rounds {
        // Without, then each priority, the order turning round by round.
        let mut order: Vec<Option<Priority>> = std::iter::once(None)
            .chain(priorities.iter().copied().map(Some))
            .collect();
        let turn = r as usize % order.len();
        order.rotate_left(turn);
        for with in order {
            let start = Instant::now();
            let mut ran = start;
            if let Some(priority) = with {
                let config = config_keeping(days_ago(month) - 70)?;
                month += 1;
                let backend: i32 = client.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
                let backend_cpu = cpu_seconds(&backend.to_string());
                // Each step's start, to say where maintain's time goes.
                let mut steps: Vec<(String, Instant)> = Vec::new();
                let report = pgtrail::archive::maintain(
                    &mut client,
                    &config.retention,
                    Some(&dir),
                    Some(&sealer),
                    false,
                    priority,
                    &mut |step| steps.push((step.to_string(), Instant::now())),
                )
                .await?;
                ran = Instant::now();
                let timeline: Vec<String> = steps
                    .iter()
                    .enumerate()
                    .map(|(i, (step, at))| {
                        let next = steps.get(i + 1).map_or(ran, |s| s.1);
                        let step = step.split(" (").next().unwrap_or(step);
                        format!("{step} {:.2}s", next.duration_since(*at).as_secs_f64())
                    })
                    .collect();
                println!(
                    "round {}, priority {priority}: maintain's backend {:.2}s of CPU; steps: {}",
                    r + 1,
                    cpu_seconds(&backend.to_string()) - backend_cpu,
                    timeline.join("; ")
                );
                for outcome in &report.archives {
                    match outcome {
                        Outcome::Archived {
                            partition,
                            rows,
                            lock_ms,
                            ..
                        } if *rows > 0 => println!(
                            "round {}, priority {priority}: maintain archived {partition} ({rows} changes) in {:.2}s, lock to detach and drop {lock_ms:.1} ms",
                            r + 1,
                            ran.duration_since(start).as_secs_f64()
                        ),
                        Outcome::Archived { .. } => {}
                        other => println!("round {}: {other:?}", r + 1),
                    }
                }
            }
            let end = start + window;
            if ran > end {
                println!("round {}: maintain ran longer than the window", r + 1);
            }
            tokio::time::sleep_until(end.max(ran).into()).await;
            windows.push((r, with, micros(start), micros(end.max(ran)), micros(ran)));
        }
    }
    let (samples, failed) = writers.stop()?;
    println!(
        "{} writers{}, {} transactions, {failed} failed",
        args.writers,
        if args.rate > 0.0 {
            format!(" paced to {} transactions/s in all", args.rate)
        } else {
            " as fast as they go".to_string()
        },
        samples.len()
    );
    println!(
        "| round | priority | maintain s | window tps without / with | while maintain ran: tps without / with | change | p50 ms without / with | p99 ms without / with | max ms without / with |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    // Per priority: [window tps without, with, during tps without, with, p99 without, with, max with, seconds].
    let mut figures: Vec<Vec<[f64; 8]>> = vec![Vec::new(); priorities.len()];
    for r in 0..rounds {
        let Some(without) = windows.iter().find(|w| w.0 == r && w.1.is_none()).copied() else {
            continue;
        };
        for (p, priority) in priorities.iter().enumerate() {
            let Some(with) = windows
                .iter()
                .find(|w| w.0 == r && w.1 == Some(*priority))
                .copied()
            else {
                continue;
            };
            // The time maintain ran, and as long from the start of the
            // window without (all of it when maintain ran longer: the
            // rest would be another window's).
            let span = with.4 - with.2;
            let span_without = span.min(without.3 - without.2);
            let (all_without, all_with) = (
                writers::window(&samples, without.2, without.3),
                writers::window(&samples, with.2, with.3),
            );
            let (during_without, during_with) = (
                writers::window(&samples, without.2, without.2 + span_without),
                writers::window(&samples, with.2, with.2 + span),
            );
            println!(
                "| {} | {priority} | {:.1} | {:.0} / {:.0} | {:.0} / {:.0} | {:+.0} % | {:.2} / {:.2} | {:.2} / {:.2} | {:.1} / {:.1} |",
                r + 1,
                span as f64 / 1e6,
                all_without.tps,
                all_with.tps,
                during_without.tps,
                during_with.tps,
                (during_with.tps / during_without.tps - 1.0) * 100.0,
                during_without.p50_ms,
                during_with.p50_ms,
                during_without.p99_ms,
                during_with.p99_ms,
                during_without.max_ms,
                during_with.max_ms
            );
            figures[p].push([
                all_without.tps,
                all_with.tps,
                during_without.tps,
                during_with.tps,
                during_without.p99_ms,
                during_with.p99_ms,
                during_with.max_ms,
                span as f64 / 1e6,
            ]);
        }
    }
    let median = |v: &[[f64; 8]], i: usize| {
        let mut xs: Vec<f64> = v.iter().map(|f| f[i]).collect();
        xs.sort_by(f64::total_cmp);
        xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
    };
    for (p, priority) in priorities.iter().enumerate() {
        let f = &figures[p];
        let mut changes: Vec<f64> = f.iter().map(|x| (x[3] / x[2] - 1.0) * 100.0).collect();
        changes.sort_by(f64::total_cmp);
        println!(
            "median, priority {priority}: maintain {:.1}s; window {:.0} / {:.0} tps; while maintain ran {:.0} / {:.0} tps (change per round, median {:+.0} %), p99 {:.2} / {:.2} ms, max with {:.1} ms",
            median(f, 7),
            median(f, 0),
            median(f, 1),
            median(f, 2),
            median(f, 3),
            changes.get(changes.len() / 2).copied().unwrap_or(f64::NAN),
            median(f, 4),
            median(f, 5),
            median(f, 6)
        );
    }
    let _ = std::fs::remove_dir_all(&clock_dir);
    Ok(())
}

/// CPU of pgtrail and of its backend per archived partition, from the
/// archive's progress steps (`NAME: writing ...`, `NAME: reading ... back`,
/// `NAME: detaching ...`): a partition's share runs from its first step
/// to the next partition's (the queries before a partition's first step,
/// its hold and seal checks, count with the partition before).
fn print_steps(steps: &[(String, f64, f64)], start: (f64, f64), end: (f64, f64)) {
    let name = |step: &str| {
        step.split_once(':')
            .map(|(n, _)| n.to_string())
            .unwrap_or_default()
    };
    let mut marks: Vec<(String, String, f64, f64)> = steps
        .iter()
        .map(|(step, c, s)| {
            let what = step.split_once(": ").map(|(_, w)| w).unwrap_or(step);
            let what = what.split_whitespace().next().unwrap_or("").to_string();
            (name(step), what, *c, *s)
        })
        .collect();
    marks.push((String::new(), "end".into(), end.0, end.1));
    if let Some(first) = marks.first() {
        println!(
            "  before the first partition: pgtrail {:.3}s, backend {:.3}s",
            first.2 - start.0,
            first.3 - start.1
        );
    }
    let mut i = 0;
    while i + 1 < marks.len() {
        let partition = marks[i].0.clone();
        let mut j = i;
        let mut parts = Vec::new();
        while j + 1 < marks.len() && marks[j].0 == partition {
            parts.push(format!(
                "{} {:.3}/{:.3}",
                marks[j].1,
                marks[j + 1].2 - marks[j].2,
                marks[j + 1].3 - marks[j].3
            ));
            j += 1;
        }
        println!(
            "  {partition}: pgtrail {:.3}s, backend {:.3}s (pgtrail/backend: {})",
            marks[j].2 - marks[i].2,
            marks[j].3 - marks[i].3,
            parts.join(", ")
        );
        i = j;
    }
}

/// CPU seconds of this process, its threads (ended ones too) included,
/// to the nanosecond (`CLOCK_PROCESS_CPUTIME_ID`).
fn precise_cpu_self() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) } == 0;
    if ok {
        t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
    } else {
        f64::NAN
    }
}

/// CPU seconds of a single-threaded process (a backend), to the
/// nanosecond (`/proc/PID/schedstat`).
fn precise_cpu(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse::<f64>().ok()))
        .map_or(f64::NAN, |ns| ns * 1e-9)
}

/// User plus system CPU seconds of a process (`self` or a pid) on Linux.
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // Fields after the command name (which ends with the last ')').
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here; 100 ticks a second.
    (ticks(11) + ticks(12)) / 100.0
}

/// Resets this process's peak resident set (Linux: `clear_refs` 5) and
/// returns its current resident set, KiB.
fn reset_peak_rss() -> u64 {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    status_kib("VmRSS:")
}

/// This process's peak resident set since the last reset, KiB.
fn peak_rss_kib() -> u64 {
    status_kib("VmHWM:")
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A throwaway cluster under `faketime`, its clock `days_ago` days in the
/// past (the clock file, in the returned directory, moves it), with the
/// database `shop` and its table `orders` (not yet audited).
async fn shop_under_faketime(
    days_ago: u32,
    collation: &str,
) -> Result<(
    std::path::PathBuf,
    std::path::PathBuf,
    Cluster,
    tokio_postgres::Client,
)> {
    let clock_dir = tempfile_dir()?;
    let clock = clock_dir.join("faketime.rc");
    std::fs::write(&clock, format!("-{days_ago}d\n"))?;
    let cluster = Cluster::start(ClusterOptions {
        fast: true,
        env: vec![
            ("LD_PRELOAD".into(), LIBFAKETIME.into()),
            ("FAKETIME_TIMESTAMP_FILE".into(), clock.display().to_string()),
            ("FAKETIME_NO_CACHE".into(), "1".into()),
        ],
        ..Default::default()
    })
    .context("start a cluster under faketime")?;
    let admin = pgtrail_bench::server::connect(&cluster, "postgres").await?;
    let create = match collation {
        "c" => "CREATE DATABASE shop",
        "icu" => "CREATE DATABASE shop LOCALE_PROVIDER icu ICU_LOCALE 'en-US' TEMPLATE template0",
        other => bail!("--collation {other}: `c` or `icu`"),
    };
    admin.batch_execute(create).await?;
    let client = pgtrail_bench::server::connect(&cluster, "shop").await?;
    client
        .batch_execute(
            "CREATE TABLE orders (id bigint PRIMARY KEY, status text, customer text, total numeric(10,2));
             CREATE TABLE payments (id bigint PRIMARY KEY, order_id bigint, amount numeric(10,2), method text, note text)",
        )
        .await?;
    Ok((clock_dir, clock, cluster, client))
}

/// Inserts orders `first + 1` ..= `first + count`, in transactions of 1,000
/// under a clerk's context (one change each).
async fn write_orders(client: &tokio_postgres::Client, first: i64, count: i64) -> Result<()> {
    let mut next_id = first;
    while next_id < first + count {
        let n = (first + count - next_id).min(1000);
        client
            .batch_execute(&format!(
                "BEGIN; SELECT pgtrail.set_context(actor_id => 'clerk{}', reason => 'bench', extra => '{{\"request_id\": \"r{next_id}\"}}');
                 INSERT INTO orders SELECT g, 'new', 'customer ' || g, g % 1000 FROM generate_series({}, {}) AS g;
                 COMMIT;",
                next_id % 17,
                next_id + 1,
                next_id + n
            ))
            .await?;
        next_id += n;
    }
    Ok(())
}

/// Writes `count` changes: inserts, then `updates` of them (a fraction)
/// UPDATEs of the rows inserted, in transactions of up to 1,000 rows
/// under a clerk's context. A quarter of the inserts and of the UPDATEs
/// go to `payments` (full images), the rest to `orders` (diff images:
/// `status`, or `status` and `total`, statement by statement). Returns
/// how many changes are UPDATEs.
async fn write_changes(client: &tokio_postgres::Client, count: i64, updates: f64) -> Result<i64> {
    if !(0.0..=0.9).contains(&updates) {
        bail!("--updates {updates}: a fraction from 0 to 0.9");
    }
    let updated = (count as f64 * updates).round() as i64;
    let inserted = count - updated;
    let payments = inserted / 4;
    let orders = inserted - payments;
    write_orders(client, 0, orders).await?;
    write_rows(
        client,
        payments,
        "INSERT INTO payments SELECT g, g, g % 500, 'card', NULL FROM generate_series({from}, {to}) AS g",
    )
    .await?;
    let payment_updates = if payments > 0 { updated / 4 } else { 0 };
    let order_updates = updated - payment_updates;
    update_rows(client, order_updates, orders, |batch| {
        if batch % 2 == 0 {
            "UPDATE orders SET status = 'r{batch}' WHERE id BETWEEN {from} AND {to}"
        } else {
            "UPDATE orders SET status = 'r{batch}', total = total + 1 WHERE id BETWEEN {from} AND {to}"
        }
    })
    .await?;
    update_rows(
        client,
        payment_updates,
        payments,
        |_| "UPDATE payments SET amount = amount + 1, note = 'r{batch}' WHERE id BETWEEN {from} AND {to}",
    )
    .await?;
    Ok(updated)
}

/// Runs `insert` (with `{from}` and `{to}`) for ids 1 ..= `count`, 1,000
/// at a time, each in a transaction with a context.
async fn write_rows(client: &tokio_postgres::Client, count: i64, insert: &str) -> Result<()> {
    let mut next = 0i64;
    while next < count {
        let n = (count - next).min(1000);
        let sql = insert
            .replace("{from}", &(next + 1).to_string())
            .replace("{to}", &(next + n).to_string());
        in_context(client, next, &sql).await?;
        next += n;
    }
    Ok(())
}

/// Makes `count` UPDATEs of rows 1 ..= `rows`, going round them up to
/// 1,000 at a time; `update(batch)` gives the statement (with `{batch}`,
/// `{from}` and `{to}`), which changes every row it matches.
async fn update_rows(
    client: &tokio_postgres::Client,
    count: i64,
    rows: i64,
    update: impl Fn(i64) -> &'static str,
) -> Result<()> {
    if count > 0 && rows == 0 {
        bail!("no rows to update");
    }
    let (mut done, mut batch) = (0i64, 0i64);
    while done < count {
        let from = done % rows;
        let n = (count - done).min(1000).min(rows - from);
        let sql = update(batch)
            .replace("{batch}", &batch.to_string())
            .replace("{from}", &(from + 1).to_string())
            .replace("{to}", &(from + n).to_string());
        in_context(client, done, &sql).await?;
        done += n;
        batch += 1;
    }
    Ok(())
}

/// Runs `sql` in a transaction under clerk `n % 17`'s context.
async fn in_context(client: &tokio_postgres::Client, n: i64, sql: &str) -> Result<()> {
    client
        .batch_execute(&format!(
            "BEGIN; SELECT pgtrail.set_context(actor_id => 'clerk{}', reason => 'bench', extra => '{{\"request_id\": \"r{n}\"}}');
             {sql};
             COMMIT;",
            n % 17
        ))
        .await?;
    Ok(())
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("pgtrail-archive-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    Ok(dir)
}
