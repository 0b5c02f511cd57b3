//! `pgtrail log`: changes, newest first, with filters. Also the pieces every
//! query command shares: finding the audited table, parsing a key or a
//! moment, running a query whose rows are JSON, and printing values, keys,
//! actors, diffs and CSV.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use pgtrail::query::{LogFilter, Param, TimeArg, as_params, is_redacted, parse_context_filter, parse_op};
use serde_json::{Map, Value};
use tokio_postgres::Client;

use crate::cli::{Common, LogArgs, OutputFormat};
use crate::output;

pub async fn run(common: &Common, args: &LogArgs) -> Result<ExitCode> {
    let mut filter = LogFilter {
        actor: args.actor.clone(),
        actor_type: args.actor_type.clone(),
        op: args.op.as_deref().map(parse_op).transpose()?.map(str::to_string),
        field: args.field.clone(),
        txid: args.tx,
        migration: args.migration.clone(),
        context: args
            .context
            .iter()
            .map(|c| parse_context_filter(c))
            .collect::<Result<_, _>>()?,
        since: time(args.since.as_deref())?,
        until: time(args.until.as_deref())?,
        limit: Some(args.limit),
        ..LogFilter::default()
    };
    let client = super::connect(common).await?;
    if let Some(table) = &args.table {
        let table = resolve_table(&client, table).await?;
        if let Some(key) = &args.key {
            filter.key = Some(table.key(key)?);
        }
        filter.table = Some((table.schema, table.name));
    } else {
        require_installed(&client).await?;
    }
    if let Some(field) = &filter.field {
        pgtrail::query::check_field(
            &client,
            filter.table.as_ref().map(|(s, n)| (s.as_str(), n.as_str())),
            field,
        )
        .await
        .map_err(|e| match e {
            pgtrail::query::FieldError::Unknown { message, help } => {
                anyhow::anyhow!("--field: {message}\n  help: {help}")
            }
            pgtrail::query::FieldError::Database(error) => db_error(error),
        })?;
    }
    check_window(&client, filter.since.as_ref(), filter.until.as_ref()).await?;
    if filter.actor.is_some() {
        filter.by_actor_index = has_actor_changes(&client).await?;
    }
    // (Read window by window when nothing bounds the filter: see `newest`.)
    let rows = pgtrail::query::newest(&client, &filter, |filter| {
        let client = &client;
        async move {
            let (sql, params) = filter.build();
            let sql = format!("SELECT to_jsonb(q) FROM ({sql}) AS q ORDER BY q.changed_at DESC, q.id DESC");
            query_json(client, &sql, &params).await
        }
    })
    .await?;
    if common.output != OutputFormat::Table {
        super::say_horizon_as(&client, true).await?;
    }
    match common.output {
        OutputFormat::Json => output::print_json(&Value::Array(rows))?,
        OutputFormat::Csv => print_csv(
            &[
                "id",
                "txid",
                "changed_at",
                "table_schema",
                "table_name",
                "op",
                "pk",
                "changed_fields",
                "old_values",
                "new_values",
                "actor_id",
                "actor_name",
                "actor_type",
                "reason",
                "context",
                "db_user",
                "application_name",
                "client_addr",
            ],
            &rows,
        )?,
        OutputFormat::Table => {
            super::say_horizon(&client).await?;
            if rows.is_empty() {
                output::say(output::DIM, "no changes match");
                return Ok(ExitCode::SUCCESS);
            }
            let mut header: Vec<String> = [
                "ID", "TIME", "TX", "TABLE", "OP", "KEY", "FIELDS", "ACTOR", "REASON",
            ]
            .map(String::from)
            .to_vec();
            header.extend(args.show.iter().map(|k| k.to_uppercase()));
            let mut table = vec![header];
            for row in &rows {
                let mut line = vec![
                    cell(&row["id"]),
                    time_text(&row["changed_at"]),
                    cell(&row["txid"]),
                    format!("{}.{}", cell(&row["table_schema"]), cell(&row["table_name"])),
                    cell(&row["op"]),
                    key_text(&row["pk"]),
                    fields_text(&row["changed_fields"]),
                    actor_text(row),
                    cell(&row["reason"]),
                ];
                line.extend(args.show.iter().map(|k| cell(&row["context"][k.as_str()])));
                table.push(line);
            }
            output::print_table(
                &table,
                true,
                |column, text| op_style(column == 4, text),
                output::width_limit(),
                &[0, 1, 2, 4],
            );
            if rows.len() as i64 == args.limit {
                output::step(&format!(
                    "the newest {} changes; --limit N shows more",
                    args.limit
                ));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--since` after `--until` selects nothing: an error, not an empty answer.
pub(super) async fn check_window(
    client: &Client,
    since: Option<&TimeArg>,
    until: Option<&TimeArg>,
) -> Result<()> {
    let (Some(since), Some(until)) = (since, until) else {
        return Ok(());
    };
    let sql = format!(
        "SELECT {s} > {u}, {s}::text, {u}::text",
        s = since.sql(1),
        u = until.sql(2)
    );
    let row = client
        .query_one(&sql, &[&since.value(), &until.value()])
        .await
        .map_err(db_error)?;
    if row.get::<_, bool>(0) {
        bail!(
            "--since ({}) is after --until ({}): no change can be in between\n  help: swap them, or leave one out",
            row.get::<_, String>(1),
            row.get::<_, String>(2)
        );
    }
    Ok(())
}

// ---- shared by the query commands ----

pub(super) use pgtrail::query::Audited;

/// [`Audited::resolve`], a database error described the CLI's way.
pub(super) async fn resolve_table(client: &Client, input: &str) -> Result<Audited> {
    Audited::resolve(client, input)
        .await
        .map_err(|error| match error {
            pgtrail::query::ResolveError::Database(error) => db_error(error),
            other => anyhow!(other),
        })
}

/// Stops with a clear message when pgtrail is not installed in the database.
pub(super) async fn require_installed(client: &Client) -> Result<()> {
    let installed: bool = client
        .query_one("SELECT to_regclass('pgtrail.changes') IS NOT NULL", &[])
        .await
        .map_err(db_error)?
        .get(0);
    if !installed {
        bail!(
            "pgtrail is not installed in this database\n  help: `pgtrail apply` installs it and starts recording changes"
        );
    }
    Ok(())
}

/// Whether the database has `pgtrail.actor_changes` (0.3.0 and later); an
/// older install is read through the view until `pgtrail apply` upgrades it.
async fn has_actor_changes(client: &Client) -> Result<bool> {
    Ok(client
        .query_one(
            "SELECT to_regprocedure('pgtrail.actor_changes(text, timestamptz, timestamptz)') IS NOT NULL",
            &[],
        )
        .await
        .map_err(db_error)?
        .get(0))
}

/// A moment typed by the user; errors carry the accepted forms.
pub(super) fn time(input: Option<&str>) -> Result<Option<TimeArg>> {
    Ok(input.map(pgtrail::query::parse_time).transpose()?)
}

/// One readable error from the database: pgtrail's own errors (SQLSTATE
/// PGTRn) as their message and hint; anything else with all its details.
pub(super) fn db_error(error: tokio_postgres::Error) -> anyhow::Error {
    if let Some(db) = error
        .as_db_error()
        .filter(|db| db.code().code().starts_with("PGTR"))
    {
        return match db.hint() {
            Some(hint) => anyhow!("{}\n  help: {hint}", db.message()),
            None => anyhow!("{}", db.message()),
        };
    }
    anyhow!(pgtrail::catalog::pg_error::describe(&error))
}

/// One row's answer from a pgtrail query function taking `(regclass, pk)`,
/// such as `history` or `blame`: the resolved table, the parsed key and the
/// function's rows as JSON objects.
pub(super) async fn rows_of_one_row(
    client: &Client,
    table: &str,
    key: &str,
    function: RowFunction,
) -> Result<(Audited, Value, Vec<Value>)> {
    let table = resolve_table(client, table).await?;
    let pk = table.key(key)?;
    let sql = match function {
        RowFunction::History => "SELECT to_jsonb(r) FROM pgtrail.history($1::text::regclass, $2::jsonb) AS r",
        RowFunction::Blame => "SELECT to_jsonb(r) FROM pgtrail.blame($1::text::regclass, $2::jsonb) AS r",
    };
    let rows = query_json(client, sql, &[Box::new(table.regclass()), Box::new(pk.clone())]).await?;
    Ok((table, pk, rows))
}

/// The query functions about one row.
#[derive(Debug, Clone, Copy)]
pub(super) enum RowFunction {
    History,
    Blame,
}

/// Runs a query whose one column is a JSON object per row.
pub(super) async fn query_json(client: &Client, sql: &str, params: &[Param]) -> Result<Vec<Value>> {
    let rows = client.query(sql, &as_params(params)).await.map_err(db_error)?;
    rows.iter()
        .map(|row| row.try_get::<_, Value>(0).context("reading a row"))
        .collect()
}

/// A value in an aligned table: text as is, NULL empty, redaction markers
/// as `[redacted]`, anything else as compact JSON.
pub(super) fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        other if is_redacted(other) => "[redacted]".into(),
        other => other.to_string(),
    }
}

/// A value in a diff: like [`cell`], but NULL is `null` and text is quoted
/// when it could be mistaken (empty, or with spaces at its ends).
pub(super) fn diff_value(value: Option<&Value>) -> String {
    match value {
        None => "∅".into(),
        Some(Value::Null) => "null".into(),
        Some(Value::String(text)) if text.is_empty() || text.trim() != text => format!("{text:?}"),
        Some(other) => cell(other),
    }
}

/// `2026-03-14T09:30:15.123456+00:00` → `2026-03-14 09:30:15+00:00`.
pub(super) fn time_text(value: &Value) -> String {
    let Some(text) = value.as_str() else {
        return cell(value);
    };
    let text = text.replacen('T', " ", 1);
    match text.find('.') {
        Some(dot) => {
            let rest = &text[dot + 1..];
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            format!("{}{}", &text[..dot], &rest[digits..])
        }
        None => text,
    }
}

/// `{"id": 42}` → `id=42`; `{"a": 1, "b": "x"}` → `a=1,b=x`.
pub(super) fn key_text(value: &Value) -> String {
    match value {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", cell(v)))
            .collect::<Vec<_>>()
            .join(","),
        other => cell(other),
    }
}

fn fields_text(value: &Value) -> String {
    match value {
        Value::Array(fields) => fields.iter().map(cell).collect::<Vec<_>>().join(","),
        other => cell(other),
    }
}

/// `name (type)`, the id when there is no name, the migration's name when
/// there is neither (from `context` or a `migration` field), `-` when
/// nobody is known.
pub(super) fn actor_text(row: &Value) -> String {
    let who = [
        &row["actor_name"],
        &row["actor_id"],
        &row["context"]["migration"],
        &row["migration"],
    ]
    .into_iter()
    .find_map(|v| v.as_str().filter(|s| !s.is_empty()))
    .unwrap_or("-");
    match row["actor_type"].as_str().filter(|s| !s.is_empty()) {
        Some(kind) => format!("{who} ({kind})"),
        None => who.to_string(),
    }
}

pub(super) fn op_style(is_op: bool, text: &str) -> anstyle::Style {
    match (is_op, text) {
        (true, "INSERT") => output::GOOD,
        (true, "DELETE" | "TRUNCATE") => output::BAD,
        (true, "UPDATE") => output::WARN,
        _ => output::PLAIN,
    }
}

/// The field-by-field diff of one change, one `field: old → new` line each
/// (insert: `field: new`, delete: `field: old`), indented by `indent`.
pub(super) fn print_diff(row: &Value, indent: &str) {
    let empty = Map::new();
    let old = row["old_values"].as_object().unwrap_or(&empty);
    let new = row["new_values"].as_object().unwrap_or(&empty);
    let mut out = anstream::stdout().lock();
    let (bad, good, dim) = (output::BAD, output::GOOD, output::DIM);
    match row["op"].as_str().unwrap_or("") {
        "INSERT" => {
            for (field, value) in new {
                let value = diff_value(Some(value));
                let _ = writeln!(out, "{indent}{field}: {good}{value}{good:#}");
            }
        }
        "DELETE" => {
            for (field, value) in old {
                let value = diff_value(Some(value));
                let _ = writeln!(out, "{indent}{field}: {bad}{value}{bad:#}");
            }
        }
        "UPDATE" => {
            let fields: Vec<String> = match &row["changed_fields"] {
                Value::Array(fields) => fields
                    .iter()
                    .filter_map(|f| f.as_str().map(String::from))
                    .collect(),
                _ => new.keys().cloned().collect(),
            };
            for field in fields {
                let before = diff_value(old.get(&field));
                let after = diff_value(new.get(&field));
                let _ = writeln!(
                    out,
                    "{indent}{field}: {bad}{before}{bad:#} → {good}{after}{good:#}"
                );
            }
        }
        _ => {
            let rows = truncate_text(row);
            let _ = writeln!(out, "{indent}{dim}every row of the table{rows}{dim:#}");
        }
    }
}

/// What a TRUNCATE change says of the rows it removed (its new_values):
/// nothing for the event only (`truncate = "event"`).
fn truncate_text(row: &Value) -> String {
    let values = &row["new_values"];
    match values["rows"].as_str() {
        Some("recorded") => format!(
            " ({} row(s), each recorded as a DELETE)",
            values["count"].as_i64().unwrap_or(0)
        ),
        Some(_) => match (values["limit"].as_i64(), values["error"].as_str()) {
            (Some(limit), _) => format!(" (more than {limit} rows: not recorded one by one)"),
            (None, Some(error)) => format!(" (rows not recorded: {error})"),
            (None, None) => " (rows not recorded)".to_string(),
        },
        None => String::new(),
    }
}

/// CSV text of a value: text as is, NULL empty, anything else compact JSON.
fn csv_cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Rows of JSON objects as CSV with these columns.
pub(super) fn print_csv(columns: &[&str], rows: &[Value]) -> Result<()> {
    let mut writer = csv::Writer::from_writer(std::io::stdout().lock());
    writer.write_record(columns)?;
    for row in rows {
        writer.write_record(columns.iter().map(|c| csv_cell(&row[*c])))?;
    }
    writer.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_truncate_says_what_became_of_its_rows() {
        let row = |values: Value| json!({"op": "TRUNCATE", "new_values": values});
        assert_eq!(truncate_text(&row(json!(null))), "");
        assert_eq!(
            truncate_text(&row(json!({"rows": "recorded", "count": 3}))),
            " (3 row(s), each recorded as a DELETE)"
        );
        assert_eq!(
            truncate_text(&row(json!({"rows": "not_recorded", "limit": 100}))),
            " (more than 100 rows: not recorded one by one)"
        );
        assert_eq!(
            truncate_text(&row(json!({"rows": "not_recorded", "error": "boom"}))),
            " (rows not recorded: boom)"
        );
    }

    #[test]
    fn values_keys_times_and_actors_read_well() {
        assert_eq!(cell(&json!({"redacted": "9f2c"})), "[redacted]");
        assert_eq!(cell(&json!(null)), "");
        assert_eq!(cell(&json!({"a": 1})), r#"{"a":1}"#);
        assert_eq!(diff_value(Some(&json!(""))), r#""""#);
        assert_eq!(diff_value(None), "∅");
        assert_eq!(key_text(&json!({"a": 1, "b": "x"})), "a=1,b=x");
        assert_eq!(
            time_text(&json!("2026-03-14T09:30:15.123456+00:00")),
            "2026-03-14 09:30:15+00:00"
        );
        assert_eq!(
            time_text(&json!("2026-03-14T09:30:15+02:00")),
            "2026-03-14 09:30:15+02:00"
        );
        assert_eq!(
            actor_text(&json!({"actor_id": "7", "actor_name": "ann@x", "actor_type": "user"})),
            "ann@x (user)"
        );
        assert_eq!(actor_text(&json!({"actor_id": "7", "actor_name": null})), "7");
        assert_eq!(actor_text(&json!({})), "-");
    }
}
