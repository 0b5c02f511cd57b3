//! `pgtrail check`: compare the database with the config and list every
//! problem, one per line, naming the table. Exit 0 clean, 1 problems, 2 errors.

use std::process::ExitCode;

use anyhow::Result;
use pgtrail::plan::{Problem, Shortfall, inspect};

use crate::cli::{Common, Format};
use crate::output;

pub async fn run(common: &Common) -> Result<ExitCode> {
    let config = super::load_config(common)?;
    let client = super::connect(common).await?;
    let (desired, _, installed, problems) = inspect(&client, &config).await?;
    // Periods in which capture was off (recorded by the DDL watch): closed
    // ones are history a reviewer should see; an open one adds, to the
    // problem listed for its trigger, since when and who turned it off.
    let gaps: Vec<String> = pgtrail::integrity::capture_gaps(&client)
        .await?
        .iter()
        .map(|gap| gap.message())
        .collect();
    // What an install without full rights lacks: the unaccepted owner and
    // DDL-watch shortfalls are among `problems`; the rest is said below.
    let privileges = match installed.version {
        Some(_) => Some(pgtrail::plan::Privileges::load(&client).await?),
        None => None,
    };
    let shortfalls = privileges
        .as_ref()
        .map(|p| p.installed_shortfalls())
        .unwrap_or_default();
    let watching = !shortfalls.contains(&Shortfall::NoDdlWatch);
    // Retention: partitions ahead, the default partition, what is past
    // retention, and archive files against their records.
    let retention = match installed.version {
        Some(_) => {
            let dir = config.retention.archive_dir.as_deref().map(std::path::Path::new);
            pgtrail::archive::partitions::check(&client, &config.retention, dir).await?
        }
        None => Vec::new(),
    };
    let ok = problems.is_empty() && retention.is_empty();
    match common.format {
        Format::Json => output::print_json(&serde_json::json!({
            "ok": ok,
            "installed_version": installed.version,
            "audited_tables": desired.tables.len(),
            "problems": problems.iter().map(to_json).collect::<Vec<_>>(),
            "capture_gaps": gaps,
            "retention": retention,
            "ddl_watch": watching,
            "wal": installed.wal.slot.as_ref().map(|s| serde_json::json!({
                "slot": installed.wal.slot_name,
                "active": s.active,
                "lag_bytes": s.lag_bytes,
                "lag_seconds": s.lag_seconds,
                "retained_bytes": s.retained_bytes,
                "wal_status": s.wal_status,
            })),
            "wal_rejected_messages": installed.wal.rejected.as_ref().map(|r| serde_json::json!({
                "total": r.total,
                "unacknowledged": r.unacknowledged,
                "last_txid": r.last_txid,
                "last_lsn": r.last_lsn,
                "last_committed_at": r.last_committed_at,
                "last_reason": r.last_reason,
                "acknowledged_at": r.acknowledged_at,
            })),
            "unprotected": super::unprotected::to_json(&shortfalls, &config.install),
        }))?,
        Format::Table => {
            for problem in &problems {
                output::say(output::BAD, &problem.to_string());
            }
            for problem in &retention {
                output::say(output::BAD, problem);
            }
            // Prefixed like apply's warnings: without colour, a gap line
            // before "ok:" must still read as a warning.
            for gap in &gaps {
                output::say(output::WARN, &format!("warning: {gap}"));
            }
            if let Some(slot) = &installed.wal.slot {
                output::say(
                    output::DIM,
                    &format!(
                        "note: WAL mode's slot {} is {}; {} bytes not yet in the trail ({:.0} s), {} bytes of WAL retained",
                        installed.wal.slot_name,
                        if slot.active {
                            "being read"
                        } else {
                            "not being read"
                        },
                        slot.lag_bytes,
                        slot.lag_seconds,
                        slot.retained_bytes
                    ),
                );
            }
            // Ignored context messages all acknowledged: said, not counted
            // (unacknowledged ones are among `problems`).
            if let Some(rejected) = installed.wal.rejected.as_ref().filter(|r| r.unacknowledged == 0) {
                output::say(
                    output::DIM,
                    &format!(
                        "note: pgtrail follow has ignored {} context message(s) not signed for their transaction, all acknowledged{}",
                        rejected.total,
                        rejected
                            .acknowledged_at
                            .map(|at| format!(" (last on {})", at.format("%Y-%m-%d %H:%M:%S UTC")))
                            .unwrap_or_default()
                    ),
                );
            }
            // Accepted in the config, or no reader role: said, not counted.
            for shortfall in &shortfalls {
                if matches!(shortfall, Shortfall::NoReaderRole { .. }) {
                    output::say(output::WARN, &format!("warning: {shortfall}"));
                } else if shortfall.accepted(&config.install) {
                    output::say(
                        output::DIM,
                        &format!(
                            "note: accepted in {} ([install] {}): {shortfall}",
                            config.origin(),
                            shortfall.accept_setting().unwrap_or_default()
                        ),
                    );
                }
            }
            if ok {
                output::say(
                    output::GOOD,
                    &format!(
                        "ok: pgtrail {} with {} audited table{} matches {}",
                        installed.version.as_deref().unwrap_or("?"),
                        desired.tables.len(),
                        if desired.tables.len() == 1 { "" } else { "s" },
                        config.origin()
                    ),
                );
            } else if !problems.is_empty() {
                eprintln!(
                    "{} problem(s); `pgtrail apply` repairs them (`pgtrail plan` shows how)",
                    problems.len() + retention.len()
                );
            } else {
                eprintln!("{} retention problem(s)", retention.len());
            }
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn to_json(problem: &Problem) -> serde_json::Value {
    serde_json::json!({
        "kind": problem.kind(),
        "table": problem.table().map(|(schema, name)| format!("{schema}.{name}")),
        "message": problem.to_string(),
    })
}
