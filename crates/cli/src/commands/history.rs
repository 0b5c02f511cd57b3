//! `pgtrail history TABLE KEY`: one row's timeline, oldest first, each change
//! with its field-by-field diff (JSON: each change with the row's state after it).

use std::process::ExitCode;

use anyhow::Result;
use serde_json::Value;

use super::log::{RowFunction, actor_text, cell, key_text, op_style, print_diff, rows_of_one_row, time_text};
use crate::cli::{Common, Format};
use crate::output;

pub async fn run(common: &Common, table: &str, key: &str) -> Result<ExitCode> {
    let client = super::connect(common).await?;
    let (table, pk, rows) = rows_of_one_row(&client, table, key, RowFunction::History).await?;
    match common.format {
        Format::Json => {
            super::say_horizon_as(&client, true).await?;
            output::print_json(&Value::Array(rows))?
        }
        Format::Table => {
            let row_name = format!("{} {}", table.display(), key_text(&pk));
            super::say_horizon(&client).await?;
            if rows.is_empty() {
                output::say(output::DIM, &format!("no recorded changes of {row_name}"));
                return Ok(ExitCode::SUCCESS);
            }
            output::say(
                output::HEADER,
                &format!("{row_name}: {} change(s), oldest first", rows.len()),
            );
            for row in &rows {
                print_change_header(row, None);
                print_diff(row, "    ");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `#12  2026-03-14 09:30:15+00:00  UPDATE  tx 81234  ann@x (user)  "reason"`,
/// with `what` (table and key) after the kind when given.
pub(super) fn print_change_header(row: &Value, what: Option<String>) {
    let op = cell(&row["op"]);
    let style = op_style(true, &op);
    let mut line = format!(
        "#{}  {}  {style}{op}{style:#}",
        cell(&row["id"]),
        time_text(&row["changed_at"])
    );
    if let Some(what) = what {
        line.push_str(&format!("  {what}"));
    } else {
        line.push_str(&format!("  tx {}", cell(&row["txid"])));
        if let Value::Object(key) = &row["pk"] {
            // A key change shows the key the row had after it.
            if row["op"] == "UPDATE"
                && row["changed_fields"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|f| f.as_str().is_some_and(|f| key.contains_key(f))))
            {
                line.push_str(&format!("  key now {}", key_text(&row["pk"])));
            }
        }
        line.push_str(&format!("  by {}", actor_text(row)));
        if let Some(reason) = row["reason"].as_str().filter(|r| !r.is_empty()) {
            line.push_str(&format!("  ({reason})"));
        }
    }
    let _ = std::io::Write::write_all(&mut anstream::stdout().lock(), format!("{line}\n").as_bytes());
}
