//! `pgtrail follow [--once] [--sink nats://HOST:PORT] [--stream NAME] [--no-trail] [--sql]`:
//! WAL mode's reader (the pgtrail-follow crate), with the NATS JetStream
//! sink of pgtrail-nats. It streams the slot on a replication connection
//! to the same server, database and role; over SQL with `--sql`, or when
//! the connection needs TLS.

use std::process::ExitCode;

use anyhow::Result;
use pgtrail::follow::{FollowError, FollowOptions};

use crate::cli::{Common, Format};
use crate::output;

/// The command's options.
pub struct Args {
    pub once: bool,
    pub batch_size: i32,
    pub sink: Option<String>,
    pub stream: String,
    pub no_trail: bool,
    /// Read the slot over SQL (peek, then advance) instead of streaming it.
    pub sql: bool,
}

pub async fn run(common: &Common, args: Args) -> Result<ExitCode> {
    // First: a SIGTERM while connecting stops the follower as cleanly as
    // one while it streams.
    let shutdown = shutdown();
    // The sink's URL is checked before anything is read or connected.
    let sink_target = match &args.sink {
        Some(url) => Some(pgtrail::nats::Target::parse(url, Some(&args.stream))?),
        None => None,
    };
    let target = pgtrail::connect::Target::from_env(common.database_url.as_deref())?;
    let mut client = pgtrail::connect::connect(&target).await?;
    let replication = if args.sql {
        None
    } else {
        let replication = target.replication();
        if replication.is_none() {
            tracing::info!(
                "pgtrail follow: the connection needs TLS, which the replication client does not speak: \
                 reading the slot over SQL (each change is decoded twice)"
            );
        }
        replication
    };
    let mut sink = match sink_target {
        Some(target) => Some(pgtrail::nats::NatsSink::connect(target).await?),
        None => None,
    };
    let options = FollowOptions {
        once: args.once,
        batch_size: args.batch_size,
        write_trail: !args.no_trail,
        replication,
        ..FollowOptions::default()
    };
    let sink_ref = sink.as_mut().map(|s| s as &mut dyn pgtrail::follow::Sink);
    let report = match pgtrail::follow::run_with(&mut client, &options, sink_ref, shutdown).await {
        Ok(report) => report,
        Err(FollowError::Busy) => {
            output::say(output::BAD, &FollowError::Busy.to_string());
            return Ok(ExitCode::from(1));
        }
        Err(error) => return Err(error.into()),
    };
    match common.format {
        Format::Json => output::print_json(&serde_json::json!({
            "slot": report.slot,
            "transactions": report.transactions,
            "changes": report.changes,
            "published": report.published,
            "rejected_messages": report.rejected_messages,
            "unsigned_transactions": report.unsigned_transactions,
            "position": report.position,
        }))?,
        Format::Table => {
            println!(
                "{} transactions, {} changes written from slot {}{}{}",
                report.transactions,
                report.changes,
                report.slot,
                if args.sink.is_some() {
                    format!(", {} published to NATS", report.published)
                } else {
                    String::new()
                },
                report
                    .position
                    .map(|p| format!(" (position {p})"))
                    .unwrap_or_default()
            );
            if report.unsigned_transactions > 0 {
                output::say(
                    output::BAD,
                    &format!(
                        "{} transactions' changes came without a signed context message and are recorded without context \
                         (listed in pgtrail.wal_unsigned; `pgtrail check` shows them)",
                        report.unsigned_transactions
                    ),
                );
            }
            if report.rejected_messages > 0 {
                output::say(
                    output::BAD,
                    &format!(
                        "{} context messages were not signed for their transaction and were ignored \
                         (their changes are recorded without that context; the log names each)",
                        report.rejected_messages
                    ),
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGTERM or SIGINT: the follower finishes its batch and
/// stops. The handlers are installed now, when it is called (first thing
/// in [`run`]), not when it is first polled.
fn shutdown() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let signals = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
    async move {
        let (Ok(mut term), Ok(mut int)) = signals else {
            // Without signal handlers the default applies: the process ends.
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("pgtrail follow: SIGTERM, stopping after this batch"),
            _ = int.recv() => tracing::info!("pgtrail follow: SIGINT, stopping after this batch"),
        }
    }
}
