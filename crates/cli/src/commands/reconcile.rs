//! `pgtrail reconcile [TABLE]`: live rows that changed without a trace;
//! exit 0 none, 1 some, 2 error.

use std::process::ExitCode;

use anyhow::{Result, bail};

use super::log::{diff_value, key_text, resolve_table};
use crate::cli::{Common, Format};
use crate::output;

pub async fn run(common: &Common, table: Option<&str>) -> Result<ExitCode> {
    let client = super::connect(common).await?;
    let audited = match table {
        Some(table) => Some(resolve_table(&client, table).await?),
        None => None,
    };
    let report = pgtrail::integrity::reconcile(
        &client,
        audited.as_ref().map(|a| (a.schema.as_str(), a.name.as_str())),
    )
    .await?;
    if let Some(audited) = audited.as_ref().filter(|_| report.tables.is_empty()) {
        // Known to the trail, but not compared: "ok" would claim too much.
        bail!(
            "`{}` is not audited now (capture was detached, or the table was dropped): there are no live rows to reconcile\n  \
             help: `pgtrail log {}` still shows what the trail recorded",
            audited.display(),
            audited.display()
        );
    }
    match common.format {
        Format::Json => output::print_json(&serde_json::to_value(&report)?)?,
        Format::Table => {
            let mut rows = vec![[
                "TABLE".to_string(),
                "KEY".to_string(),
                "WHAT".to_string(),
                "DETAIL".to_string(),
            ]];
            for row in &report.rows {
                // Values as `history` shows them: text unquoted, redaction
                // markers as [redacted].
                let detail = match (&row.fields, &row.recorded, &row.live) {
                    (Some(fields), Some(recorded), Some(live)) => fields
                        .iter()
                        .map(|f| {
                            format!(
                                "{f}: {} → {}",
                                diff_value(recorded.get(f)),
                                diff_value(live.get(f))
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                    _ => String::new(),
                };
                rows.push([row.table.clone(), key_text(&row.pk), row.problem.clone(), detail]);
            }
            let without: Vec<&str> = report
                .tables
                .iter()
                .filter(|(_, baseline)| !baseline)
                .map(|(name, _)| name.as_str())
                .collect();
            if report.rows.is_empty() {
                // Without a baseline, a live row the trail never saw is not
                // judged: "every live row matches" would claim too much.
                let ok = if without.is_empty() {
                    format!(
                        "ok: every live row of {} table(s) matches the trail",
                        report.tables.len()
                    )
                } else {
                    format!(
                        "ok: no row the trail has seen changed without a trace in {} table(s)",
                        report.tables.len()
                    )
                };
                output::say(output::GOOD, &ok);
            } else {
                output::print_styled(
                    &rows,
                    true,
                    |column, _| if column == 2 { output::BAD } else { output::PLAIN },
                );
                output::say(
                    output::BAD,
                    &format!("{} row(s) changed without a trace", report.rows.len()),
                );
            }
            if !without.is_empty() {
                output::say(
                    output::DIM,
                    &format!(
                        "note: without a baseline, rows the trail never saw are not judged in {} \
                         (they may predate the install)",
                        without.join(", ")
                    ),
                );
            }
        }
    }
    Ok(if report.rows.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
