//! `pgtrail blame TABLE KEY`: per column of one row, its current value and
//! the change that set it: when, in which transaction, by whom and why.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::Value;

use super::log::{
    RowFunction, actor_text, cell, diff_value, key_text, print_csv, rows_of_one_row, time_text,
};
use crate::cli::{Common, OutputFormat};
use crate::output;

const COLUMNS: [&str; 9] = [
    "column_name",
    "value",
    "changed_at",
    "change_id",
    "txid",
    "actor_id",
    "actor_name",
    "actor_type",
    "reason",
];

pub async fn run(common: &Common, table: &str, key: &str) -> Result<ExitCode> {
    let client = super::connect(common).await?;
    let (table, pk, rows) = rows_of_one_row(&client, table, key, RowFunction::Blame).await?;
    super::say_horizon_as(&client, common.output != OutputFormat::Table).await?;
    match common.output {
        OutputFormat::Json => output::print_json(&Value::Array(rows))?,
        OutputFormat::Csv => print_csv(&COLUMNS, &rows)?,
        OutputFormat::Table => {
            if rows.is_empty() {
                output::say(
                    output::DIM,
                    &format!("no recorded changes of {} {}", table.display(), key_text(&pk)),
                );
                return Ok(ExitCode::SUCCESS);
            }
            let mut lines =
                vec![["COLUMN", "VALUE", "CHANGED", "TX", "CHANGE", "BY", "REASON"].map(String::from)];
            for row in &rows {
                lines.push([
                    cell(&row["column_name"]),
                    diff_value(Some(&row["value"])),
                    time_text(&row["changed_at"]),
                    cell(&row["txid"]),
                    cell(&row["change_id"]),
                    actor_text(row),
                    cell(&row["reason"]),
                ]);
            }
            output::print_styled(&lines, true, |_, _| output::PLAIN);
        }
    }
    Ok(ExitCode::SUCCESS)
}
