//! `pgtrail follow [--once]`: WAL mode's reader (the pgtrail-follow crate).

use std::process::ExitCode;

use anyhow::Result;
use pgtrail::follow::{FollowError, FollowOptions};

use crate::cli::{Common, Format};
use crate::output;

pub async fn run(common: &Common, once: bool, batch_size: i32) -> Result<ExitCode> {
    let mut client = super::connect(common).await?;
    let options = FollowOptions {
        once,
        batch_size,
        ..FollowOptions::default()
    };
    let report = match pgtrail::follow::run(&mut client, &options, shutdown()).await {
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
            "position": report.position,
        }))?,
        Format::Table => println!(
            "{} transactions, {} changes written from slot {}{}",
            report.transactions,
            report.changes,
            report.slot,
            report
                .position
                .map(|p| format!(" (position {p})"))
                .unwrap_or_default()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGTERM or SIGINT: the follower finishes its batch and
/// stops. The handlers are installed now, before the follower starts.
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
