//! `pgtrail tx TXID`: everything one transaction did, grouped by who and
//! why (a transaction may set its context more than once), with diffs, a
//! page of `--limit` changes at a time (`--after` the last one shown).

use std::process::ExitCode;

use anyhow::Result;
use serde_json::{Value, json};

use super::history::print_change_header;
use super::log::{actor_text, cell, key_text, print_diff, require_installed, time_text};
use crate::cli::{Common, Format};
use crate::output;

/// `--limit`'s default: a page to read in a terminal.
const DEFAULT_LIMIT: i64 = 100;

pub async fn run(common: &Common, txid: i64, limit: i64, after: Option<i64>) -> Result<ExitCode> {
    let client = super::connect(common).await?;
    require_installed(&client).await?;
    let pgtrail::query::TransactionPage {
        changes: rows,
        total,
        before,
        next,
    } = pgtrail::query::transaction_page(&client, txid, limit, after.unwrap_or(0)).await?;
    match common.format {
        // As the API's transaction: `next` is what --after takes.
        Format::Json => output::print_json(&json!({
            "txid": txid,
            "change_count": total,
            "changes": rows,
            "next": next.map(|id| id.to_string()),
        }))?,
        Format::Table => {
            let Some(first) = rows.first() else {
                let text = match after {
                    Some(after) if total > 0 => {
                        format!(
                            "no changes after change {after} in transaction {txid} ({total} change(s) in all)"
                        )
                    }
                    _ => format!("no recorded changes in transaction {txid}"),
                };
                output::say(output::DIM, &text);
                return Ok(ExitCode::SUCCESS);
            };
            output::say(
                output::HEADER,
                &format!(
                    "transaction {txid}: {total} change(s){} from {}, as {}{}",
                    if rows.len() as i64 == total {
                        String::new()
                    } else {
                        format!(", shown {}-{}", before + 1, before + rows.len() as i64)
                    },
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
            if let Some(next) = next {
                let more = total - before - rows.len() as i64;
                let size = if limit == DEFAULT_LIMIT {
                    String::new()
                } else {
                    format!(" --limit {limit}")
                };
                output::say(
                    output::DIM,
                    &format!(
                        "{more} more change(s): pgtrail tx {txid} --after {next}{size} \
                         (all {total} at once: pgtrail tx {txid} --limit {total})"
                    ),
                );
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
