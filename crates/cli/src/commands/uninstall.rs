//! `pgtrail uninstall`: stop capture everywhere; keep the trail unless
//! `--drop-trail`, which asks first on a terminal and needs `--yes` elsewhere.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use crate::cli::{Common, Format};
use crate::output;

pub async fn run(common: &Common, drop_trail: bool, yes: bool) -> Result<ExitCode> {
    let mut client = super::connect(common).await?;
    if drop_trail && !yes {
        let database: String = client
            .query_one("SELECT current_database()", &[])
            .await
            .context("reading the database name")?
            .get(0);
        if !std::io::stdin().is_terminal() {
            bail!(
                "--drop-trail deletes the whole audit trail of `{database}`; not on a terminal, so pass --yes to confirm"
            );
        }
        let answer = output::ask(&format!(
            "This deletes the audit trail of `{database}` for good. Type the database name to confirm: "
        ))?;
        if answer != database {
            eprintln!("not confirmed; nothing was changed");
            return Ok(ExitCode::from(2));
        }
    }
    let report = pgtrail::plan::uninstall(&mut client, drop_trail).await?;
    match common.format {
        Format::Json => output::print_json(&serde_json::json!({
            "detached": report.detached.iter().map(|(s, t)| format!("{s}.{t}")).collect::<Vec<_>>(),
            "dropped_trail": report.dropped_trail,
            "changes": report.changes,
            "dropped_slot": report.dropped_slot.as_ref().map(|(slot, lag)| serde_json::json!({"slot": slot, "unread_bytes": lag})),
        }))?,
        Format::Table => {
            let rows: Vec<[String; 2]> = report
                .detached
                .iter()
                .map(|(schema, table)| ["detached".to_string(), format!("{schema}.{table}")])
                .collect();
            output::print_rows(&rows);
            if let Some((slot, lag)) = &report.dropped_slot {
                println!("dropped WAL mode's slot {slot} ({lag} bytes of WAL not yet followed)");
            }
            if report.dropped_trail {
                println!(
                    "dropped the schema pgtrail and its {} recorded changes",
                    report.changes
                );
            } else {
                println!(
                    "capture stopped on {} tables; the trail ({} changes) stays in schema pgtrail",
                    report.detached.len(),
                    report.changes
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
