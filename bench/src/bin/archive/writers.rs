//! Writers beside `maintain` (`archive --writers N`): client sessions that
//! keep updating an audited table, each from its own connection on a thread
//! of its own (so maintain's work in this process does not delay them), and
//! record when each transaction ended and how long it took. A paced writer
//! (`--rate`) measures a transaction's latency from when it was due, so a
//! stall shows in full even while the writer could not send.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand::Rng;
use tokio_postgres::NoTls;

/// How long a writer waits for its session before the run fails (a server
/// that never answers would otherwise hang the bench at its end).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a writer waits for one UPDATE's answer before it counts it as
/// failed (far beyond any lock maintain takes).
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(120);

/// One transaction: when it ended (µs after the writers' start) and its
/// latency (µs).
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at_us: u64,
    pub latency_us: u64,
}

/// The running writers.
pub struct Writers {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<(Vec<Sample>, u64)>>,
}

/// What the writers run and how fast.
#[derive(Debug, Clone)]
pub struct Load {
    pub url: String,
    pub clients: u32,
    /// Transactions a second over all clients; 0 for as fast as they can.
    pub rate: f64,
    /// Rows 1..=rows of `orders` are updated, at random.
    pub rows: i64,
}

impl Writers {
    /// Starts the writers; `t0` is the origin of the samples' times.
    pub fn start(load: Load, t0: Instant) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("start the writers' runtime")?;
            runtime.block_on(run(load, t0, stopping))
        });
        Writers { stop, thread }
    }

    /// Stops the writers; returns every transaction's sample and the count
    /// of failed transactions.
    pub fn stop(self) -> Result<(Vec<Sample>, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.join() {
            Ok(result) => result,
            Err(_) => anyhow::bail!("the writers' thread panicked"),
        }
    }
}

async fn run(load: Load, t0: Instant, stop: Arc<AtomicBool>) -> Result<(Vec<Sample>, u64)> {
    let mut tasks = Vec::new();
    for _ in 0..load.clients {
        let (client, connection) =
            tokio::time::timeout(CONNECT_TIMEOUT, tokio_postgres::connect(&load.url, NoTls))
                .await
                .context("connect a writer: no answer from the server")?
                .context("connect a writer")?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                eprintln!("writer connection error: {error}");
            }
        });
        let statement = client
            .prepare("UPDATE orders SET total = total + 1, status = 'paid' WHERE id = $1")
            .await?;
        let stop = stop.clone();
        let load = load.clone();
        tasks.push(tokio::spawn(async move {
            let interval =
                (load.rate > 0.0).then(|| Duration::from_secs_f64(f64::from(load.clients) / load.rate));
            let mut samples = Vec::new();
            let mut failed = 0u64;
            let mut due = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let started = match interval {
                    Some(interval) => {
                        tokio::time::sleep_until(due.into()).await;
                        let at = due;
                        due += interval;
                        at
                    }
                    None => Instant::now(),
                };
                let id = rand::rng().random_range(1..=load.rows);
                match tokio::time::timeout(STATEMENT_TIMEOUT, client.execute(&statement, &[&id])).await {
                    Ok(Ok(_)) => {
                        let ended = Instant::now();
                        samples.push(Sample {
                            at_us: ended.duration_since(t0).as_micros() as u64,
                            latency_us: ended.duration_since(started).as_micros() as u64,
                        });
                    }
                    Ok(Err(error)) => {
                        failed += 1;
                        if failed <= 3 {
                            eprintln!("writer: {error}");
                        }
                    }
                    Err(_) => {
                        failed += 1;
                        eprintln!("writer: no answer in {} s", STATEMENT_TIMEOUT.as_secs());
                    }
                }
            }
            (samples, failed)
        }));
    }
    eprintln!("writers: {} sessions connected and writing", load.clients);
    let mut all = Vec::new();
    let mut failed = 0;
    for task in tasks {
        let (samples, f) = task.await?;
        all.extend(samples);
        failed += f;
    }
    all.sort_by_key(|s| s.at_us);
    Ok((all, failed))
}

/// Throughput and latency of the transactions that ended in `[from, until)`
/// (µs after the writers' start).
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub tps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

pub fn window(samples: &[Sample], from: u64, until: u64) -> Window {
    let mut latencies: Vec<u64> = samples
        .iter()
        .filter(|s| s.at_us >= from && s.at_us < until)
        .map(|s| s.latency_us)
        .collect();
    latencies.sort_unstable();
    let quantile = |q: f64| {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i] as f64 / 1000.0
    };
    Window {
        tps: latencies.len() as f64 / ((until - from) as f64 / 1e6),
        p50_ms: quantile(0.50),
        p99_ms: quantile(0.99),
        max_ms: latencies.last().map_or(f64::NAN, |&l| l as f64 / 1000.0),
    }
}
