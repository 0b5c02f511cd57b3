//! Asking the trail (re-exported as `pgtrail::query`): parsing what a user types (a row key, a moment) and
//! building the queries on `pgtrail.changes`, every value a bind parameter.
//!
//! ```
//! use pgtrail_query::{parse_key, parse_time, TimeArg};
//! let key = parse_key("std_no=901234", &["std_no".into()], &[("std_no".into(), "text".into())]).unwrap();
//! assert_eq!(key, serde_json::json!({"std_no": "901234"}));
//! assert_eq!(parse_time("2h ago").unwrap(), TimeArg::Ago("2 hours".into()));
//! ```

mod activity;
mod audited;
mod field;
mod newest;
mod transaction;

pub use activity::{Activity, ActivityRequest, activity};
pub use audited::{Audited, KeyError, ResolveError};
pub use field::{FieldError, check_field};
pub use newest::{NEWEST_WINDOWS, newest};
use serde_json::{Map, Value};
use tokio_postgres::types::ToSql;
pub use transaction::{TransactionPage, transaction_page};

/// A bind parameter of a built query.
pub type Param = Box<dyn ToSql + Sync + Send>;

/// What a user typed that cannot be a key, a moment or a filter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("invalid key `{input}`: {reason}")]
    Key { input: String, reason: String },
    #[error(
        "invalid time `{input}`: {reason}\n  help: write a moment as 2026-03-14, 2026-03-14 09:30, \
         2026-03-14 09:30:15, 2026-03-14T09:30:15Z (RFC 3339, with an offset if you like), now, \
         or a time ago: 30s ago, 10 min ago, 2h ago, 3 days ago, 1w ago"
    )]
    Time { input: String, reason: String },
    #[error("invalid {what} `{input}`: {reason}")]
    Filter {
        what: &'static str,
        input: String,
        reason: String,
    },
}

fn key_error(input: &str, reason: impl Into<String>) -> QueryError {
    QueryError::Key {
        input: input.to_string(),
        reason: reason.into(),
    }
}

/// The JSON kind `to_jsonb` gives a value of a column of type `sql_type`
/// (as `format_type` names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonKind {
    Number,
    Boolean,
    String,
}

fn json_kind(sql_type: &str) -> JsonKind {
    let base = sql_type
        .split('(')
        .next()
        .unwrap_or(sql_type)
        .trim()
        .to_ascii_lowercase();
    match base.as_str() {
        "smallint" | "integer" | "bigint" | "int" | "int2" | "int4" | "int8" | "numeric" | "decimal"
        | "real" | "double precision" | "float4" | "float8" | "oid" => JsonKind::Number,
        "boolean" | "bool" => JsonKind::Boolean,
        _ => JsonKind::String,
    }
}

/// The values an integer type holds, or None for other types.
fn integer_range(sql_type: &str) -> Option<(i64, i64)> {
    match sql_type.trim().to_ascii_lowercase().as_str() {
        "smallint" | "int2" => Some((i64::from(i16::MIN), i64::from(i16::MAX))),
        "integer" | "int" | "int4" => Some((i64::from(i32::MIN), i64::from(i32::MAX))),
        "bigint" | "int8" => Some((i64::MIN, i64::MAX)),
        _ => None,
    }
}

/// A key given as JSON, checked against the table's key: every key column
/// once, no other column, and each value of its column's type (`"1"` for an
/// integer column is read as 1, `901234` for a text one as `"901234"`).
fn json_key(
    input: &str,
    object: Map<String, Value>,
    key_columns: &[String],
    type_of: impl Fn(&str) -> Option<String>,
) -> Result<Value, QueryError> {
    if key_columns.is_empty() {
        return Ok(Value::Object(object));
    }
    let key_list = key_columns.join(", ");
    let mut out = Map::new();
    for (column, value) in object {
        if !key_columns.contains(&column) {
            let mut reason = format!("`{column}` is not a key column; the key is ({key_list})");
            if let Some(near) = pgtrail_config::suggest(&column, key_columns.iter().map(String::as_str)) {
                reason.push_str(&format!("; did you mean `{near}`?"));
            }
            return Err(key_error(input, reason));
        }
        let sql_type = type_of(&column);
        let value = match (&value, sql_type.as_deref()) {
            // (A JSON string of a text column is taken as it is, spaces
            // and quotes included: only padded to a char(n) column's width.)
            (Value::String(text), Some(sql_type)) if matches!(json_kind(sql_type), JsonKind::String) => {
                text_value(text, Some(sql_type))
            }
            (Value::String(text), Some(sql_type)) => key_value(input, &column, text, Some(sql_type))?,
            (Value::Number(_) | Value::Bool(_), Some(sql_type)) => {
                key_value(input, &column, &value.to_string(), Some(sql_type))?
            }
            (Value::Null | Value::Array(_) | Value::Object(_), _) => {
                return Err(key_error(
                    input,
                    format!("`{column}` must be a single value, not {value}"),
                ));
            }
            _ => value,
        };
        out.insert(column, value);
    }
    let missing: Vec<String> = key_columns
        .iter()
        .filter(|c| !out.contains_key(c.as_str()))
        .map(|c| format!("`{c}`"))
        .collect();
    if !missing.is_empty() {
        return Err(key_error(
            input,
            format!(
                "missing key column(s) {}; the key is ({key_list})",
                missing.join(", ")
            ),
        ));
    }
    Ok(Value::Object(out))
}

/// One key value as `to_jsonb` stores it for a column of `sql_type`.
fn key_value(input: &str, column: &str, raw: &str, sql_type: Option<&str>) -> Result<Value, QueryError> {
    let raw = raw.trim();
    let raw = strip_quotes(raw);
    match sql_type.map(json_kind).unwrap_or(JsonKind::String) {
        JsonKind::String => Ok(text_value(raw, sql_type)),
        JsonKind::Number => {
            let number: Option<serde_json::Number> = serde_json::from_str(raw).ok();
            match number {
                Some(number) => match integer_range(sql_type.unwrap_or("")) {
                    Some(_) if !raw.bytes().all(|b| b.is_ascii_digit() || b == b'-') => Err(key_error(
                        input,
                        format!(
                            "`{column}` is {} but `{raw}` is not a whole number",
                            sql_type.unwrap_or("an integer")
                        ),
                    )),
                    Some((low, high)) if raw.parse::<i64>().map_or(true, |n| n < low || n > high) => {
                        Err(key_error(
                            input,
                            format!(
                                "`{column}` is {} but `{raw}` is out of its range ({low} to {high})",
                                sql_type.unwrap_or("an integer")
                            ),
                        ))
                    }
                    _ => Ok(Value::Number(number)),
                },
                None => Err(key_error(
                    input,
                    format!(
                        "`{column}` is {} but `{raw}` is not a number",
                        sql_type.unwrap_or("a number")
                    ),
                )),
            }
        }
        JsonKind::Boolean => match raw.to_ascii_lowercase().as_str() {
            "true" | "t" | "yes" | "on" | "1" => Ok(Value::Bool(true)),
            "false" | "f" | "no" | "off" | "0" => Ok(Value::Bool(false)),
            _ => Err(key_error(
                input,
                format!("`{column}` is boolean but `{raw}` is not true or false"),
            )),
        },
    }
}

/// A text value as `to_jsonb` stores it for a column of `sql_type`: a
/// `character(n)` value padded with spaces to n characters (PostgreSQL
/// keeps char(n) values padded; `character` alone is char(1)), any other
/// as it is.
fn text_value(text: &str, sql_type: Option<&str>) -> Value {
    let width = sql_type.and_then(|t| {
        let t = t.trim().to_ascii_lowercase();
        let rest = t.strip_prefix("character")?;
        match rest.trim() {
            "" => Some(1),
            args => args
                .strip_prefix('(')?
                .strip_suffix(')')?
                .trim()
                .parse::<usize>()
                .ok(),
        }
    });
    match width {
        Some(width) if text.chars().count() < width => Value::String(format!("{text:<width$}")),
        _ => Value::String(text.to_string()),
    }
}

fn strip_quotes(raw: &str) -> &str {
    for quote in ['\'', '"'] {
        if raw.len() >= 2 && raw.starts_with(quote) && raw.ends_with(quote) {
            return &raw[1..raw.len() - 1];
        }
    }
    raw
}

/// Parses a row key as typed on the command line into the `pk` JSON pgtrail
/// stores (`to_jsonb` of the key columns): `42` for a one-column key,
/// `std_no=901234`, `a=1,b=7`, or a JSON object (taken as is).
///
/// `key_columns` are the table's key columns (empty when the whole row
/// identifies it); `column_types` are (column, `format_type`) pairs of the
/// table, used to type the values and to suggest names.
pub fn parse_key(
    input: &str,
    key_columns: &[String],
    column_types: &[(String, String)],
) -> Result<Value, QueryError> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(key_error(input, "it is empty"));
    }
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        return match serde_json::from_str::<Value>(trimmed) {
            Ok(Value::Object(object)) => json_key(input, object, key_columns, |column| {
                column_types
                    .iter()
                    .find(|(name, _)| name == column)
                    .map(|(_, sql_type)| sql_type.clone())
            }),
            Ok(_) => Err(key_error(input, "JSON keys must be objects")),
            Err(error) => Err(key_error(input, format!("not valid JSON: {error}"))),
        };
    }
    let type_of = |column: &str| {
        column_types
            .iter()
            .find(|(name, _)| name == column)
            .map(|(_, sql_type)| sql_type.as_str())
    };
    let key_list = key_columns.join(", ");
    if !trimmed.contains('=') {
        return match key_columns {
            [column] => {
                let mut object = Map::new();
                object.insert(
                    column.clone(),
                    key_value(input, column, trimmed, type_of(column))?,
                );
                Ok(Value::Object(object))
            }
            [] => Err(key_error(
                input,
                "this table has no key, the whole row identifies it: write column=value,... or the row as JSON",
            )),
            columns => {
                // One value per key column (`1,x`): the hint names them
                // with the user's own values; else with example values.
                let given: Vec<&str> = trimmed.split(',').map(str::trim).collect();
                let example: Vec<String> = columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| match given.len() == columns.len() {
                        true => format!("{c}={}", given[i]),
                        false => format!("{c}={}", [1, 7, 3, 5][i % 4]),
                    })
                    .collect();
                Err(key_error(
                    input,
                    format!("this table's key is ({key_list}): write {}", example.join(",")),
                ))
            }
        };
    }
    let known: Vec<&str> = if key_columns.is_empty() {
        column_types.iter().map(|(name, _)| name.as_str()).collect()
    } else {
        key_columns.iter().map(String::as_str).collect()
    };
    let mut object = Map::new();
    for part in trimmed.split(',') {
        let Some((column, raw)) = part.split_once('=') else {
            return Err(key_error(input, format!("`{}` is not column=value", part.trim())));
        };
        let unquoted = unquote_identifier(column.trim());
        let column = unquoted.as_str();
        if column.is_empty() {
            return Err(key_error(input, format!("`{}` has no column name", part.trim())));
        }
        if !known.contains(&column) {
            let mut reason = if key_columns.is_empty() {
                format!("the table has no column `{column}`")
            } else {
                format!("`{column}` is not a key column; the key is ({key_list})")
            };
            if let Some(near) = pgtrail_config::suggest(column, known.iter().copied()) {
                reason.push_str(&format!("; did you mean `{near}`?"));
            }
            return Err(key_error(input, reason));
        }
        if object.contains_key(column) {
            return Err(key_error(input, format!("`{column}` is given twice")));
        }
        object.insert(
            column.to_string(),
            key_value(input, column, raw, type_of(column))?,
        );
    }
    let missing: Vec<&str> = key_columns
        .iter()
        .map(String::as_str)
        .filter(|c| !object.contains_key(*c))
        .collect();
    if !missing.is_empty() {
        return Err(key_error(
            input,
            format!(
                "missing key column(s) {}; the key is ({key_list})",
                missing
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok(Value::Object(object))
}

/// A moment given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeArg {
    /// A timestamp PostgreSQL reads as `timestamptz` (RFC 3339,
    /// `YYYY-MM-DD[ HH:MM[:SS]]`, `now`).
    Absolute(String),
    /// A PostgreSQL interval before now, e.g. `2 hours`.
    Ago(String),
}

impl TimeArg {
    /// The SQL expression of this moment with its value in placeholder `$n`
    /// (a text parameter).
    pub fn sql(&self, n: usize) -> String {
        match self {
            TimeArg::Absolute(_) => format!("${n}::text::timestamptz"),
            TimeArg::Ago(_) => format!("(now() - ${n}::text::interval)"),
        }
    }

    /// The value bound to the placeholder of [`TimeArg::sql`].
    pub fn value(&self) -> String {
        match self {
            TimeArg::Absolute(text) | TimeArg::Ago(text) => text.clone(),
        }
    }
}

fn time_error(input: &str, reason: impl Into<String>) -> QueryError {
    QueryError::Time {
        input: input.to_string(),
        reason: reason.into(),
    }
}

/// Parses a moment: an absolute time (checked here, read by PostgreSQL) or
/// a relative one such as `2h ago`, `30 min ago`, `3 days ago`, `1w ago`.
pub fn parse_time(input: &str) -> Result<TimeArg, QueryError> {
    let text = input.trim();
    if text.is_empty() {
        return Err(time_error(input, "it is empty"));
    }
    if text.eq_ignore_ascii_case("now") {
        return Ok(TimeArg::Absolute("now".into()));
    }
    let lower = text.to_ascii_lowercase();
    if let Some(amount) = lower.strip_suffix("ago") {
        return parse_ago(input, amount.trim()).map(TimeArg::Ago);
    }
    check_absolute(text).map_err(|reason| time_error(input, reason))?;
    Ok(TimeArg::Absolute(text.to_string()))
}

fn parse_ago(input: &str, amount: &str) -> Result<String, QueryError> {
    let digits_end = amount.find(|c: char| !c.is_ascii_digit()).unwrap_or(amount.len());
    let (number, unit) = amount.split_at(digits_end);
    if number.is_empty() {
        return Err(time_error(
            input,
            "a time ago starts with a number, as in `2h ago`",
        ));
    }
    let number: u64 = number
        .parse()
        .map_err(|_| time_error(input, "the number is too large"))?;
    let unit = match unit.trim() {
        "s" | "sec" | "secs" | "second" | "seconds" => "seconds",
        "m" | "min" | "mins" | "minute" | "minutes" => "minutes",
        "h" | "hr" | "hrs" | "hour" | "hours" => "hours",
        "d" | "day" | "days" => "days",
        "w" | "wk" | "wks" | "week" | "weeks" => "weeks",
        "mo" | "month" | "months" => "months",
        "y" | "yr" | "yrs" | "year" | "years" => "years",
        "" => {
            return Err(time_error(
                input,
                "the unit is missing, as in `2h ago` or `3 days ago`",
            ));
        }
        other => {
            return Err(time_error(
                input,
                format!("unknown unit `{other}` (s, min, h, d, w, mo, y)"),
            ));
        }
    };
    let unit = if number == 1 {
        unit.trim_end_matches('s')
    } else {
        unit
    };
    Ok(format!("{number} {unit}"))
}

/// Reads exactly `n` ASCII digits.
fn digits(text: &mut &str, n: usize) -> Option<u32> {
    let head = text.get(..n)?;
    if !head.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    *text = &text[n..];
    head.parse().ok()
}

fn expect(text: &mut &str, what: char) -> bool {
    match text.strip_prefix(what) {
        Some(rest) => {
            *text = rest;
            true
        }
        None => false,
    }
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `YYYY-MM-DD`, then optionally `[T ]HH:MM[:SS[.fraction]]`, then
/// optionally `Z` or `±HH[:MM]`.
fn check_absolute(text: &str) -> Result<(), String> {
    let mut rest = text;
    let bad_date = || "the date must be YYYY-MM-DD".to_string();
    let year = digits(&mut rest, 4).ok_or_else(bad_date)?;
    if !expect(&mut rest, '-') {
        return Err(bad_date());
    }
    let month = digits(&mut rest, 2).ok_or_else(bad_date)?;
    if !expect(&mut rest, '-') {
        return Err(bad_date());
    }
    let day = digits(&mut rest, 2).ok_or_else(bad_date)?;
    if !(1..=12).contains(&month) {
        return Err(format!("there is no month {month}"));
    }
    if day == 0 || day > days_in_month(year, month) {
        return Err(format!("{year}-{month:02} has no day {day}"));
    }
    if rest.is_empty() {
        return Ok(());
    }
    if !(expect(&mut rest, 'T') || expect(&mut rest, 't') || expect(&mut rest, ' ')) {
        return Err("the time follows the date after a space or `T`".into());
    }
    let bad_time = || "the time must be HH:MM or HH:MM:SS".to_string();
    let hour = digits(&mut rest, 2).ok_or_else(bad_time)?;
    if !expect(&mut rest, ':') {
        return Err(bad_time());
    }
    let minute = digits(&mut rest, 2).ok_or_else(bad_time)?;
    if hour > 23 || minute > 59 {
        return Err(format!("{hour:02}:{minute:02} is not a time of day"));
    }
    if expect(&mut rest, ':') {
        let second = digits(&mut rest, 2).ok_or_else(bad_time)?;
        if second > 60 {
            return Err(format!("{second} is not a second"));
        }
        if expect(&mut rest, '.') {
            let count = rest.bytes().take_while(u8::is_ascii_digit).count();
            if count == 0 || count > 9 {
                return Err("a fraction of a second has 1 to 9 digits".into());
            }
            rest = &rest[count..];
        }
    }
    if rest.is_empty() || rest == "Z" || rest == "z" {
        return Ok(());
    }
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    let Some(mut offset) = rest.strip_prefix('+').or_else(|| rest.strip_prefix('-')) else {
        return Err(format!("unexpected `{rest}` after the time"));
    };
    let bad_offset = || "the offset must be Z, +HH, +HH:MM or -HH:MM".to_string();
    let hours = digits(&mut offset, 2).ok_or_else(bad_offset)?;
    if !offset.is_empty() {
        expect(&mut offset, ':');
        let minutes = digits(&mut offset, 2).ok_or_else(bad_offset)?;
        if minutes > 59 || !offset.is_empty() {
            return Err(bad_offset());
        }
    }
    if hours > 15 {
        return Err(bad_offset());
    }
    Ok(())
}

/// A change kind, as `pgtrail.changes.op` spells it.
pub fn parse_op(input: &str) -> Result<&'static str, QueryError> {
    match input.trim().to_ascii_lowercase().as_str() {
        "insert" | "i" | "ins" | "create" => Ok("INSERT"),
        "update" | "u" | "upd" => Ok("UPDATE"),
        "delete" | "d" | "del" => Ok("DELETE"),
        "truncate" | "t" => Ok("TRUNCATE"),
        _ => Err(QueryError::Filter {
            what: "op",
            input: input.to_string(),
            reason: "the kinds are INSERT, UPDATE, DELETE and TRUNCATE".into(),
        }),
    }
}

/// Parses `key=value` (for `--context`).
pub fn parse_context_filter(input: &str) -> Result<(String, String), QueryError> {
    match input.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_string(), value.to_string())),
        _ => Err(QueryError::Filter {
            what: "context filter",
            input: input.to_string(),
            reason: "write key=value, e.g. request_id=r-42".into(),
        }),
    }
}

/// The filters of `pgtrail log`. Unset filters match everything.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// (schema, table), resolved against `pgtrail.audited_table`.
    pub table: Option<(String, String)>,
    /// A row key, as [`parse_key`] builds it (needs `table`).
    pub key: Option<Value>,
    /// Matches `actor_id` or `actor_name`.
    pub actor: Option<String>,
    pub actor_type: Option<String>,
    /// `INSERT`, `UPDATE`, `DELETE` or `TRUNCATE`.
    pub op: Option<String>,
    /// A changed field.
    pub field: Option<String>,
    pub txid: Option<i64>,
    /// `context->>'migration'`.
    pub migration: Option<String>,
    /// `context->>key = value`, all of them.
    pub context: Vec<(String, String)>,
    pub since: Option<TimeArg>,
    pub until: Option<TimeArg>,
    /// Free text found in the row's key, old or new values, actor or
    /// reason (case-insensitive; `%` and `_` are plain characters).
    pub search: Option<String>,
    /// Keyset pagination: only changes before this one in the order
    /// (`changed_at` in microseconds since the epoch, `id`), as
    /// [`Cursor`] gives it for the last row of a page.
    pub before: Option<Cursor>,
    pub limit: Option<i64>,
    /// With `actor`: read through `pgtrail.actor_changes` (pgtrail 0.3.0 and
    /// later), which reads only that actor's contexts, instead of filtering
    /// `pgtrail.changes`. Same rows either way.
    pub by_actor_index: bool,
}

/// Where a page of changes (newest first) ended: the last row's
/// `changed_at` in microseconds since the epoch, and its id. Written as
/// `MICROS.ID` in URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub micros: i64,
    pub id: i64,
}

impl Cursor {
    /// The SQL of a row's cursor parts, for a query to return beside the row.
    pub const MICROS_SQL: &str = "(extract(epoch FROM changed_at) * 1000000)::bigint";

    /// Reads `MICROS.ID`.
    pub fn parse(input: &str) -> Result<Cursor, QueryError> {
        let bad = || QueryError::Filter {
            what: "cursor",
            input: input.to_string(),
            reason: "a cursor is the `next` of the previous page, as it was given".into(),
        };
        let (micros, id) = input.split_once('.').ok_or_else(bad)?;
        Ok(Cursor {
            micros: micros.parse().map_err(|_| bad())?,
            id: id.parse().map_err(|_| bad())?,
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.micros, self.id)
    }
}

/// The columns of `pgtrail.changes` that `log` reads, in order.
pub const LOG_COLUMNS: &str = "id, txid, changed_at, table_schema, table_name, op, pk, \
    changed_fields, old_values, new_values, actor_id, actor_name, actor_type, reason, context, \
    db_user, application_name, client_addr";

/// Collects bind parameters and hands out their placeholders.
#[derive(Default)]
struct Binds {
    params: Vec<Param>,
}

impl Binds {
    fn push(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.params.push(Box::new(value));
        format!("${}", self.params.len())
    }

    fn push_time(&mut self, time: &TimeArg) -> String {
        self.params.push(Box::new(time.value()));
        time.sql(self.params.len())
    }
}

impl LogFilter {
    /// The query, newest first, and its parameters: on `pgtrail.changes`,
    /// or on `pgtrail.actor_changes(actor, since, until)` when
    /// [`LogFilter::by_actor_index`] is set (the window then goes into the
    /// function rather than into conditions).
    pub fn build(&self) -> (String, Vec<Param>) {
        let mut binds = Binds::default();
        let mut conditions = Vec::new();
        if let Some((schema, table)) = &self.table {
            let s = binds.push(schema.clone());
            let t = binds.push(table.clone());
            conditions.push(format!("table_schema = {s} AND table_name = {t}"));
        }
        if let Some(key) = &self.key {
            let k = binds.push(key.clone());
            // The hash first, as the trail's index on a row's key holds it
            // (a key may be too large for an index of its own).
            conditions.push(format!(
                "jsonb_hash_extended(pk, 0) = jsonb_hash_extended({k}::jsonb, 0) AND pk = {k}::jsonb"
            ));
        }
        let mut source = "pgtrail.changes".to_string();
        let by_actor = self.by_actor_index && self.actor.is_some();
        if let Some(actor) = &self.actor {
            let a = binds.push(actor.clone());
            if by_actor {
                // The window goes into the function; the bounds it does not
                // get are open.
                let since = self
                    .since
                    .as_ref()
                    .map_or("'-infinity'::timestamptz".to_string(), |t| binds.push_time(t));
                let until = self
                    .until
                    .as_ref()
                    .map_or("'infinity'::timestamptz".to_string(), |t| binds.push_time(t));
                source = format!("pgtrail.actor_changes({a}::text, {since}, {until})");
            } else {
                conditions.push(format!("(actor_id = {a} OR actor_name = {a})"));
            }
        }
        if let Some(actor_type) = &self.actor_type {
            let a = binds.push(actor_type.clone());
            conditions.push(format!("actor_type = {a}"));
        }
        if let Some(op) = &self.op {
            let o = binds.push(op.clone());
            conditions.push(format!("op = {o}"));
        }
        if let Some(field) = &self.field {
            let f = binds.push(field.clone());
            conditions.push(format!("{f}::text = ANY (changed_fields)"));
        }
        if let Some(txid) = self.txid {
            let t = binds.push(txid);
            conditions.push(format!("txid = {t}::bigint"));
        }
        if let Some(migration) = &self.migration {
            let m = binds.push(migration.clone());
            conditions.push(format!("context->>'migration' = {m}"));
        }
        for (key, value) in &self.context {
            let k = binds.push(key.clone());
            let v = binds.push(value.clone());
            conditions.push(format!("context->>({k}::text) = {v}::text"));
        }
        if !by_actor {
            if let Some(since) = &self.since {
                let s = binds.push_time(since);
                conditions.push(format!("changed_at >= {s}"));
            }
            if let Some(until) = &self.until {
                let u = binds.push_time(until);
                conditions.push(format!("changed_at < {u}"));
            }
        }
        if let Some(search) = &self.search {
            let pattern = format!(
                "%{}%",
                search
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            );
            let p = binds.push(pattern);
            conditions.push(format!(
                "(pk::text ILIKE {p} OR old_values::text ILIKE {p} OR new_values::text ILIKE {p} \
                 OR actor_id ILIKE {p} OR actor_name ILIKE {p} OR reason ILIKE {p})"
            ));
        }
        if let Some(cursor) = &self.before {
            let m = binds.push(cursor.micros);
            let i = binds.push(cursor.id);
            conditions.push(format!(
                "(changed_at, id) < ('epoch'::timestamptz + {m}::bigint * interval '1 microsecond', {i}::bigint)"
            ));
        }
        let mut sql = format!("SELECT {LOG_COLUMNS} FROM {source}");
        if !conditions.is_empty() {
            sql.push_str("\nWHERE ");
            sql.push_str(&conditions.join("\n  AND "));
        }
        sql.push_str("\nORDER BY changed_at DESC, id DESC");
        if let Some(limit) = self.limit {
            let l = binds.push(limit);
            sql.push_str(&format!("\nLIMIT {l}::bigint"));
        }
        (sql, binds.params)
    }
}

/// Parameters as `tokio_postgres` takes them.
pub fn as_params(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect()
}

/// Whether a JSON value is pgtrail's redaction marker (`{"redacted": "…"}`).
pub fn is_redacted(value: &Value) -> bool {
    matches!(value, Value::Object(map) if map.len() == 1 && map.get("redacted").is_some_and(Value::is_string))
}

/// A column name as written on the command line: bare (`Order Id`) or
/// SQL-quoted (`"Order Id"`, with `""` for a quote inside).
fn unquote_identifier(name: &str) -> String {
    match name.strip_prefix('"').and_then(|rest| rest.strip_suffix('"')) {
        Some(inner) if !inner.is_empty() => inner.replace("\"\"", "\""),
        _ => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn key_columns_may_be_written_sql_quoted() {
        let key = vec!["Order Id".to_string(), "select".to_string()];
        let types = vec![
            ("Order Id".to_string(), "integer".to_string()),
            ("select".to_string(), "integer".to_string()),
        ];
        let quoted =
            super::parse_key(r#""Order Id"=1,"select"=2"#, &key, &types).expect("quoted names parse");
        let bare = super::parse_key("Order Id=1,select=2", &key, &types).expect("bare names parse");
        assert_eq!(quoted, bare);
        assert_eq!(super::unquote_identifier(r#""a""b""#), r#"a"b"#);
    }

    use serde_json::json;

    use super::*;

    fn cols(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn types(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn a_bare_value_is_the_single_key_column_typed_like_to_jsonb() {
        let t = types(&[("id", "integer"), ("std_no", "text"), ("ok", "boolean")]);
        assert_eq!(parse_key("42", &cols(&["id"]), &t).unwrap(), json!({"id": 42}));
        assert_eq!(
            parse_key("901234", &cols(&["std_no"]), &t).unwrap(),
            json!({"std_no": "901234"})
        );
        assert_eq!(
            parse_key("true", &cols(&["ok"]), &t).unwrap(),
            json!({"ok": true})
        );
        let n = types(&[("price", "numeric(10,2)"), ("r", "double precision")]);
        assert_eq!(
            parse_key("price=1.50", &cols(&["price"]), &n).unwrap(),
            serde_json::from_str::<Value>(r#"{"price": 1.50}"#).unwrap(),
            "the number as typed: numeric keeps its scale"
        );
        assert_eq!(parse_key("r=-2", &cols(&["r"]), &n).unwrap(), json!({"r": -2}));
        let e = parse_key("abc", &cols(&["id"]), &t).unwrap_err().to_string();
        assert!(e.contains("`id` is integer but `abc` is not a number"), "{e}");
    }

    #[test]
    fn named_and_composite_keys() {
        let t = types(&[
            ("process_id", "bigint"),
            ("application_id", "integer"),
            ("name", "text"),
        ]);
        let key = cols(&["process_id", "application_id"]);
        assert_eq!(
            parse_key("process_id=1, application_id=7", &key, &t).unwrap(),
            json!({"process_id": 1, "application_id": 7})
        );
        assert_eq!(
            parse_key("std_no='0042'", &cols(&["std_no"]), &[]).unwrap(),
            json!({"std_no": "0042"})
        );
        let e = parse_key("1", &key, &t).unwrap_err().to_string();
        assert!(
            e.contains(
                "this table's key is (process_id, application_id): write process_id=1,application_id=7"
            ),
            "{e}"
        );
        let e = parse_key("12, 40", &key, &t).unwrap_err().to_string();
        assert!(
            e.contains("write process_id=12,application_id=40"),
            "the hint names the values given, one per key column: {e}"
        );
        let e = parse_key("process_id=1", &key, &t).unwrap_err().to_string();
        assert!(e.contains("missing key column(s) `application_id`"), "{e}");
        let e = parse_key("proces_id=1,application_id=2", &key, &t)
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean `process_id`?"), "{e}");
        let e = parse_key("process_id=1,process_id=2", &key, &t)
            .unwrap_err()
            .to_string();
        assert!(e.contains("given twice"), "{e}");
    }

    #[test]
    fn json_is_taken_as_is_and_keyless_tables_need_columns() {
        assert_eq!(
            parse_key(r#"{"id": "x"}"#, &cols(&["id"]), &[]).unwrap(),
            json!({"id": "x"})
        );
        assert!(parse_key("{nope", &cols(&["id"]), &[]).is_err());
        assert!(parse_key("[1]", &cols(&["id"]), &[]).is_err());
        let t = types(&[("a", "integer"), ("b", "text")]);
        assert_eq!(parse_key("a=1,b=x", &[], &t).unwrap(), json!({"a": 1, "b": "x"}));
        let e = parse_key("5", &[], &t).unwrap_err().to_string();
        assert!(e.contains("no key"), "{e}");
        let e = parse_key("c=1", &[], &t).unwrap_err().to_string();
        assert!(e.contains("no column `c`"), "{e}");
        assert!(parse_key("  ", &cols(&["id"]), &[]).is_err());
    }

    #[test]
    fn char_n_keys_are_padded_and_json_text_is_taken_as_it_is() {
        let t = types(&[
            ("code", "character(4)"),
            ("n", "integer"),
            ("label", "text"),
            ("v", "character varying(6)"),
        ]);
        let key = cols(&["code", "n"]);
        // (PostgreSQL stores char(4) 'k1' as 'k1  ', and so does to_jsonb.)
        assert_eq!(
            parse_key("code=k1,n=1", &key, &t).unwrap(),
            json!({"code": "k1  ", "n": 1})
        );
        assert_eq!(
            parse_key(r#"{"code": "k1", "n": 1}"#, &key, &t).unwrap(),
            json!({"code": "k1  ", "n": 1})
        );
        assert_eq!(
            parse_key(r#"{"code": "k1  ", "n": 1}"#, &key, &t).unwrap(),
            json!({"code": "k1  ", "n": 1})
        );
        assert_eq!(
            parse_key("abcd", &cols(&["code"]), &t).unwrap(),
            json!({"code": "abcd"})
        );
        // A JSON string keeps its spaces and quotes; varchar is not padded.
        assert_eq!(
            parse_key(r#"{"label": " a 'b' "}"#, &cols(&["label"]), &t).unwrap(),
            json!({"label": " a 'b' "})
        );
        assert_eq!(parse_key("v=ab", &cols(&["v"]), &t).unwrap(), json!({"v": "ab"}));
        assert_eq!(
            parse_key("c=é", &cols(&["c"]), &types(&[("c", "character")])).unwrap(),
            json!({"c": "é"})
        );
        assert_eq!(
            parse_key("c=é", &cols(&["c"]), &types(&[("c", "character(3)")])).unwrap(),
            json!({"c": "é  "})
        );
    }

    #[test]
    fn json_keys_are_read_as_their_columns_types_or_explained() {
        let t = types(&[("id", "integer"), ("std_no", "text"), ("n", "smallint")]);
        assert_eq!(
            parse_key(r#"{"id": "1"}"#, &cols(&["id"]), &t).unwrap(),
            json!({"id": 1})
        );
        assert_eq!(
            parse_key(r#"{"std_no": 901234}"#, &cols(&["std_no"]), &t).unwrap(),
            json!({"std_no": "901234"})
        );
        let e = parse_key(r#"{"id": "x"}"#, &cols(&["id"]), &t)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`id` is integer but `x` is not a number"), "{e}");
        let e = parse_key(r#"{"di": 1}"#, &cols(&["id"]), &t)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`di` is not a key column") && e.contains("did you mean `id`?"),
            "{e}"
        );
        let e = parse_key(r#"{}"#, &cols(&["id"]), &t).unwrap_err().to_string();
        assert!(e.contains("missing key column(s) `id`"), "{e}");
        let e = parse_key("1.5", &cols(&["id"]), &t).unwrap_err().to_string();
        assert!(
            e.contains("`id` is integer but `1.5` is not a whole number"),
            "{e}"
        );
        let e = parse_key(r#"{"id": 1.5}"#, &cols(&["id"]), &t)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a whole number"), "{e}");
        let e = parse_key("n=40000", &cols(&["n"]), &t).unwrap_err().to_string();
        assert!(e.contains("out of its range (-32768 to 32767)"), "{e}");
        assert_eq!(parse_key("-3", &cols(&["id"]), &t).unwrap(), json!({"id": -3}));
    }

    #[test]
    fn absolute_times_are_checked_before_the_database() {
        for ok in [
            "2026-03-14",
            "2026-03-14 09:30",
            "2026-03-14 09:30:15",
            "2026-03-14T09:30:15Z",
            "2026-03-14T09:30:15.123456+02:00",
            "2026-03-14 09:30:15-0500",
            "2024-02-29",
            "now",
        ] {
            assert_eq!(parse_time(ok), Ok(TimeArg::Absolute(ok.into())), "{ok}");
        }
        for bad in [
            "yesterday",
            "2026-13-01",
            "2023-02-29",
            "2026-03-14 25:00",
            "2026-03-14T09:30:15Zjunk",
            "14/03/2026",
            "2026-3-14",
            "",
            "2026-03-14 09:30:15.",
        ] {
            let error = parse_time(bad).unwrap_err().to_string();
            assert!(error.contains("help: write a moment as"), "{bad}: {error}");
        }
    }

    #[test]
    fn relative_times_become_intervals() {
        for (input, interval) in [
            ("2h ago", "2 hours"),
            ("30 min ago", "30 minutes"),
            ("3 days ago", "3 days"),
            ("1w ago", "1 week"),
            ("1 hour ago", "1 hour"),
            ("45s ago", "45 seconds"),
            ("6 MONTHS AGO", "6 months"),
        ] {
            assert_eq!(parse_time(input), Ok(TimeArg::Ago(interval.into())), "{input}");
        }
        for bad in ["ago", "h ago", "2 fortnights ago", "2 ago", "-2h ago"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
        assert_eq!(
            TimeArg::Ago("2 hours".into()).sql(3),
            "(now() - $3::text::interval)"
        );
        assert_eq!(TimeArg::Absolute("now".into()).sql(1), "$1::text::timestamptz");
    }

    #[test]
    fn the_log_query_binds_every_value() {
        let filter = LogFilter {
            table: Some(("public".into(), "users".into())),
            key: Some(json!({"id": 1})),
            actor: Some("o'neil".into()),
            actor_type: Some("user".into()),
            op: Some("UPDATE".into()),
            field: Some("email".into()),
            txid: Some(77),
            migration: Some("0042".into()),
            context: vec![("request_id".into(), "r-1".into())],
            since: Some(TimeArg::Ago("1 hour".into())),
            until: Some(TimeArg::Absolute("2026-01-01".into())),
            search: Some("50%_off".into()),
            before: Some(Cursor {
                micros: 1_700_000_000_000_000,
                id: 99,
            }),
            limit: Some(50),
            by_actor_index: false,
        };
        let (sql, params) = filter.build();
        assert_eq!(params.len(), 17);
        assert!(
            !sql.contains("o'neil") && !sql.contains("users") && !sql.contains("r-1"),
            "{sql}"
        );
        for expected in [
            "table_schema = $1 AND table_name = $2",
            "jsonb_hash_extended(pk, 0) = jsonb_hash_extended($3::jsonb, 0) AND pk = $3::jsonb",
            "(actor_id = $4 OR actor_name = $4)",
            "actor_type = $5",
            "op = $6",
            "$7::text = ANY (changed_fields)",
            "txid = $8::bigint",
            "context->>'migration' = $9",
            "context->>($10::text) = $11::text",
            "changed_at >= (now() - $12::text::interval)",
            "changed_at < $13::text::timestamptz",
            "(pk::text ILIKE $14 OR old_values::text ILIKE $14",
            "(changed_at, id) < ('epoch'::timestamptz + $15::bigint * interval '1 microsecond', $16::bigint)",
            "ORDER BY changed_at DESC, id DESC\nLIMIT $17::bigint",
        ] {
            assert!(sql.contains(expected), "{expected} in {sql}");
        }
        let (sql, params) = LogFilter::default().build();
        assert!(params.is_empty() && !sql.contains("WHERE"), "{sql}");
        assert!(!sql.contains("50%_off"));
    }

    #[test]
    fn a_cursor_reads_back_as_written_and_a_wrong_one_is_an_error() {
        let cursor = Cursor {
            micros: 1_764_979_200_123_456,
            id: 42,
        };
        assert_eq!(cursor.to_string(), "1764979200123456.42");
        assert_eq!(Cursor::parse(&cursor.to_string()), Ok(cursor));
        assert!(Cursor::parse("42").is_err());
        assert!(Cursor::parse("x.1").is_err());
    }

    #[test]
    fn an_actor_filter_reads_through_actor_changes_with_the_window() {
        let mut filter = LogFilter {
            actor: Some("ann".into()),
            op: Some("DELETE".into()),
            since: Some(TimeArg::Ago("1 hour".into())),
            by_actor_index: true,
            ..LogFilter::default()
        };
        let (sql, params) = filter.build();
        assert_eq!(params.len(), 3);
        assert!(
            sql.contains(
                "FROM pgtrail.actor_changes($1::text, (now() - $2::text::interval), 'infinity'::timestamptz)"
            ),
            "{sql}"
        );
        assert!(
            sql.contains("WHERE op = $3") && !sql.contains("changed_at >="),
            "{sql}"
        );
        filter.since = None;
        filter.until = Some(TimeArg::Absolute("2026-01-01".into()));
        let (sql, _) = filter.build();
        assert!(
            sql.contains("pgtrail.actor_changes($1::text, '-infinity'::timestamptz, $2::text::timestamptz)"),
            "{sql}"
        );
        filter.by_actor_index = false;
        let (sql, _) = filter.build();
        assert!(
            sql.contains("FROM pgtrail.changes") && sql.contains("(actor_id = $1 OR actor_name = $1)"),
            "{sql}"
        );
    }

    #[test]
    fn ops_context_filters_and_redaction_markers() {
        assert_eq!(parse_op("update").unwrap(), "UPDATE");
        assert_eq!(parse_op("D").unwrap(), "DELETE");
        assert!(
            parse_op("upsert")
                .unwrap_err()
                .to_string()
                .contains("INSERT, UPDATE")
        );
        assert_eq!(
            parse_context_filter("request_id=r=1").unwrap(),
            ("request_id".into(), "r=1".into())
        );
        assert!(parse_context_filter("=x").is_err());
        assert!(is_redacted(&json!({"redacted": "ab12"})));
        assert!(!is_redacted(&json!({"redacted": "ab12", "x": 1})));
        assert!(!is_redacted(&json!("redacted")));
    }
}
