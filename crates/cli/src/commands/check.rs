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
    let unsigned = unsigned_transactions(&client, installed.version.is_some()).await;
    let encoding = server_encoding(&client).await?;
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
            "wal_unsigned": unsigned.as_ref().map(|u| u.to_json()),
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
            "server_encoding": encoding,
            "encoding_warning": encoding_warning(&encoding),
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
            if let Some(line) = unsigned.as_ref().and_then(Unsigned::warning) {
                output::say(output::WARN, &format!("warning: {line}"));
            }
            if let Some(line) = encoding_warning(&encoding) {
                output::say(output::WARN, &format!("warning: {line}"));
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

/// WAL-mode transactions recorded without a signed context message
/// (`pgtrail.wal_unsigned`): history a reviewer should see, like a closed
/// capture gap, so said as a warning and not counted as a problem.
enum Unsigned {
    Summary(pgtrail::follow::unsigned::UnsignedSummary),
    Unreadable(String),
}

impl Unsigned {
    fn warning(&self) -> Option<String> {
        match self {
            Unsigned::Summary(s) if s.transactions == 0 => None,
            Unsigned::Summary(s) => Some(format!(
                "{} WAL-mode transaction{} ({} change{}) came without a signed context message and {} recorded without context \
                 (the context trigger was kept from emitting, or its message did not verify){}; they are listed in pgtrail.wal_unsigned",
                s.transactions,
                if s.transactions == 1 { "" } else { "s" },
                s.changes,
                if s.changes == 1 { "" } else { "s" },
                if s.transactions == 1 { "is" } else { "are" },
                s.latest
                    .as_ref()
                    .map(|(txid, at)| format!("; the latest: txid {txid}, committed {at}"))
                    .unwrap_or_default()
            )),
            Unsigned::Unreadable(error) => Some(format!("pgtrail.wal_unsigned could not be read: {error}")),
        }
    }

    fn to_json(&self) -> serde_json::Value {
        match self {
            Unsigned::Summary(s) => serde_json::json!({
                "transactions": s.transactions,
                "changes": s.changes,
                "latest_txid": s.latest.as_ref().map(|(txid, _)| txid),
                "latest_committed_at": s.latest.as_ref().map(|(_, at)| at),
            }),
            Unsigned::Unreadable(error) => serde_json::json!({ "error": error }),
        }
    }
}

async fn unsigned_transactions(client: &tokio_postgres::Client, installed: bool) -> Option<Unsigned> {
    if !installed {
        return None;
    }
    match pgtrail::follow::unsigned::summary(client).await {
        Ok(summary) => summary.map(Unsigned::Summary),
        Err(error) => Some(Unsigned::Unreadable(error.to_string())),
    }
}

/// The database's encoding (`server_encoding`).
async fn server_encoding(client: &tokio_postgres::Client) -> Result<String> {
    let row = client
        .query_one("SELECT pg_catalog.current_setting('server_encoding')", &[])
        .await?;
    Ok(row.get(0))
}

/// A database in `SQL_ASCII` stores any bytes as text: capture records
/// them, but pgtrail reads the trail as UTF-8, so a value that is not UTF-8
/// stops `history`, `seal`, `archive` and the others (SQLSTATE 22021).
/// Said as a warning (nothing is wrong until such a value is written).
fn encoding_warning(encoding: &str) -> Option<String> {
    (encoding == "SQL_ASCII").then(|| {
        "the database's encoding is SQL_ASCII: pgtrail records any text, but reads its trail as UTF-8, so a value \
         that is not UTF-8 stops history, seal, archive and the other commands (SQLSTATE 22021); convert the \
         database to UTF-8 (dump it, create it again with `createdb -E UTF8`, restore)"
            .to_string()
    })
}
