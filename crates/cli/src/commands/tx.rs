//! `pgtrail tx TXID`: everything one transaction did, grouped by who and
//! why (a transaction may set its context more than once), with diffs.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::Value;

use super::history::print_change_header;
use super::log::{actor_text, cell, key_text, print_diff, query_json, require_installed, time_text};
use crate::cli::{Common, Format};
use crate::output;

pub async fn run(common: &Common, txid: i64) -> Result<ExitCode> {
    let client = super::connect(common).await?;
    require_installed(&client).await?;
    let rows = query_json(
        &client,
        "SELECT to_jsonb(c) FROM pgtrail.changes AS c WHERE c.txid = $1::bigint ORDER BY c.id",
        &[Box::new(txid)],
    )
    .await?;
    match common.format {
        Format::Json => output::print_json(&Value::Array(rows))?,
        Format::Table => {
            let Some(first) = rows.first() else {
                output::say(output::DIM, &format!("no recorded changes in transaction {txid}"));
                return Ok(ExitCode::SUCCESS);
            };
            output::say(
                output::HEADER,
                &format!(
                    "transaction {txid}: {} change(s) from {}, as {}{}",
                    rows.len(),
                    time_text(&first["changed_at"]),
                    cell(&first["db_user"]),
                    match first["application_name"].as_str().filter(|a| !a.is_empty()) {
                        Some(app) => format!(" via {app}"),
                        None => String::new(),
                    }
                ),
            );
            let mut who: Option<String> = None;
            for row in &rows {
                let this = context_line(row);
                if who.as_ref() != Some(&this) {
                    output::say(output::PLAIN, &this);
                    who = Some(this);
                }
                print_change_header(
                    row,
                    Some(format!(
                        "{}.{} {}",
                        cell(&row["table_schema"]),
                        cell(&row["table_name"]),
                        key_text(&row["pk"])
                    )),
                );
                print_diff(row, "    ");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `by ann@x (user), reason: ..., request_id=r-1`.
fn context_line(row: &Value) -> String {
    let mut line = format!("by {}", actor_text(row));
    if let Some(reason) = row["reason"].as_str().filter(|r| !r.is_empty()) {
        line.push_str(&format!(", reason: {reason}"));
    }
    if let Value::Object(context) = &row["context"] {
        for (key, value) in context {
            line.push_str(&format!(", {key}={}", cell(value)));
        }
    }
    line
}
