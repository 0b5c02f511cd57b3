//! `pgtrail at TABLE [KEY] --time T`: a row, or every row of a table, as it
//! was at a moment, rebuilt from the trail.

use std::cmp::Ordering;
use std::process::ExitCode;

use anyhow::{Context, Result};
use pgtrail::query::as_params;
use serde_json::Value;

use super::log::{Audited, cell, db_error, diff_value, key_text, print_csv, resolve_table, time, time_text};
use crate::cli::{Clock, Common, OutputFormat};
use crate::output;

pub async fn run(
    common: &Common,
    table: &str,
    key: Option<&str>,
    at: &str,
    clock: Clock,
) -> Result<ExitCode> {
    let moment = time(Some(at))?.context("--time is required")?;
    let client = super::connect(common).await?;
    let table = resolve_table(&client, table).await?;
    let moment_sql = moment.sql(2);
    super::say_horizon_as(&client, common.output != OutputFormat::Table).await?;
    match key {
        Some(key) => {
            let pk = table.key(key)?;
            let sql = format!(
                "SELECT pgtrail.row_as_of($1::text::regclass, $3::jsonb, {moment_sql}, $4::text), to_jsonb({moment_sql})"
            );
            let params: Vec<pgtrail::query::Param> = vec![
                Box::new(table.regclass()),
                Box::new(moment.value()),
                Box::new(pk.clone()),
                Box::new(clock.as_str().to_string()),
            ];
            let row = client
                .query_one(&sql, &as_params(&params))
                .await
                .map_err(db_error)?;
            let state: Option<Value> = row.get(0);
            let when = time_text(&row.get::<_, Value>(1));
            let what = format!("{} {}", table.display(), key_text(&pk));
            print_row(common, state, &what, &when)?;
        }
        None => {
            let sql = format!(
                "SELECT r, to_jsonb({moment_sql}) FROM (SELECT NULL::jsonb) AS dummy(d) \
                 LEFT JOIN pgtrail.table_as_of($1::text::regclass, {moment_sql}, $3::text) AS r ON true"
            );
            let params: Vec<pgtrail::query::Param> = vec![
                Box::new(table.regclass()),
                Box::new(moment.value()),
                Box::new(clock.as_str().to_string()),
            ];
            let result = client.query(&sql, &as_params(&params)).await.map_err(db_error)?;
            let when = result
                .first()
                .map(|r| time_text(&r.get::<_, Value>(1)))
                .unwrap_or_default();
            let mut rows: Vec<Value> = result
                .iter()
                .filter_map(|r| r.get::<_, Option<Value>>(0))
                .collect();
            rows.sort_by(|a, b| compare_keys(a, b, &table.key_columns));
            print_table(common, &table, rows, &when)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_row(common: &Common, state: Option<Value>, what: &str, when: &str) -> Result<()> {
    match common.output {
        OutputFormat::Json => output::print_json(&state.unwrap_or(Value::Null))?,
        OutputFormat::Csv => {
            let rows: Vec<Value> = state.into_iter().collect();
            let columns = columns_of(&rows);
            let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
            print_csv(&columns, &rows)?;
        }
        OutputFormat::Table => match state {
            None => output::say(output::DIM, &format!("{what} did not exist at {when}")),
            Some(Value::Object(map)) => {
                output::say(output::HEADER, &format!("{what} at {when}"));
                let lines: Vec<[String; 2]> = map
                    .iter()
                    .map(|(column, value)| [format!("{column}:"), diff_value(Some(value))])
                    .collect();
                output::print_rows(&lines);
            }
            Some(other) => output::say(output::PLAIN, &cell(&other)),
        },
    }
    Ok(())
}

fn print_table(common: &Common, table: &Audited, rows: Vec<Value>, when: &str) -> Result<()> {
    let columns = {
        let mut columns = columns_of(&rows);
        // The live table's column order when it still exists.
        let position = |c: &String| {
            table
                .columns
                .iter()
                .position(|(name, _)| name == c)
                .unwrap_or(usize::MAX)
        };
        columns.sort_by_key(|c| position(c));
        columns
    };
    match common.output {
        OutputFormat::Json => output::print_json(&Value::Array(rows))?,
        OutputFormat::Csv => {
            let names: Vec<&str> = columns.iter().map(String::as_str).collect();
            print_csv(&names, &rows)?;
        }
        OutputFormat::Table => {
            output::say(
                output::HEADER,
                &format!("{} at {when}: {} row(s)", table.display(), rows.len()),
            );
            if rows.is_empty() {
                return Ok(());
            }
            // Rows of any width: print through a Vec of cells.
            let mut lines: Vec<Vec<String>> = vec![columns.clone()];
            for row in &rows {
                lines.push(columns.iter().map(|c| cell(&row[c.as_str()])).collect());
            }
            print_dynamic(&lines);
        }
    }
    Ok(())
}

/// Columns in the order they first appear.
fn columns_of(rows: &[Value]) -> Vec<String> {
    let mut columns: Vec<String> = Vec::new();
    for row in rows {
        if let Value::Object(map) = row {
            for key in map.keys() {
                if !columns.contains(key) {
                    columns.push(key.clone());
                }
            }
        }
    }
    columns
}

fn compare_keys(a: &Value, b: &Value, key_columns: &[String]) -> Ordering {
    for column in key_columns {
        let ordering = compare_json(&a[column.as_str()], &b[column.as_str()]);
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    a.to_string().cmp(&b.to_string())
}

fn compare_json(a: &Value, b: &Value) -> Ordering {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        _ => cell(a).cmp(&cell(b)),
    }
}

/// Aligned columns for a table whose width is known only at run time; the
/// first line is the bold header.
fn print_dynamic(lines: &[Vec<String>]) {
    use std::io::Write;
    let width = lines.first().map_or(0, Vec::len);
    let mut widths = vec![0usize; width];
    for line in lines {
        for (w, c) in widths.iter_mut().zip(line) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = anstream::stdout().lock();
    let header = output::HEADER;
    for (index, line) in lines.iter().enumerate() {
        let mut text = String::from("  ");
        for (column, (cell, w)) in line.iter().zip(&widths).enumerate() {
            text.push_str(cell);
            if column + 1 < width {
                text.push_str(&" ".repeat(w - cell.chars().count() + 2));
            }
        }
        let text = text.trim_end();
        if index == 0 {
            let _ = writeln!(out, "{header}{text}{header:#}");
        } else {
            let _ = writeln!(out, "{text}");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rows_sort_by_key_numbers_as_numbers() {
        let mut rows = vec![json!({"id": 10}), json!({"id": 9}), json!({"id": 100})];
        rows.sort_by(|a, b| compare_keys(a, b, &["id".into()]));
        assert_eq!(
            rows,
            vec![json!({"id": 9}), json!({"id": 10}), json!({"id": 100})]
        );
        assert_eq!(
            columns_of(&[json!({"a": 1}), json!({"b": 2, "a": 3})]),
            vec!["a", "b"]
        );
    }
}
