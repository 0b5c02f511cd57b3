//! The JSON API (`/api/v1/...`) and the questions it asks the trail, which
//! the web pages ask too: changes with filters and keyset pagination, a
//! row's history, state at a moment and blame, a table as of a moment, a
//! transaction, the activity report and the proofs' status (revert plans,
//! and applying them, are `revert.rs`'s). Every value is a bind parameter;
//! queries go through the reader role.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use pgtrail_query::{Cursor, LogFilter, Param, TimeArg, as_params, newest, parse_context_filter, parse_op};
use serde_json::{Value, json};
use tokio_postgres::Client;

use crate::Shared;
use crate::error::ApiError;

/// A page holds at most this many changes.
pub(crate) const MAX_LIMIT: i64 = 500;
/// A page's size when none is asked for.
pub(crate) const DEFAULT_LIMIT: i64 = 50;

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/openapi.json", get(openapi))
        .route("/api/v1/tables", get(tables))
        .route("/api/v1/changes", get(changes))
        .route("/api/v1/rows/{table}/history", get(history))
        .route("/api/v1/rows/{table}/state", get(state))
        .route("/api/v1/rows/{table}/blame", get(blame))
        .route("/api/v1/tables/{table}/as-of", get(table_as_of))
        .route("/api/v1/transactions/{txid}", get(transaction))
        .route("/api/v1/reports/activity", get(activity))
        .route("/api/v1/proof", get(proof))
}

/// The query string as (name, value) pairs, names repeatable.
#[derive(Debug, Default, Clone)]
pub(crate) struct Params(pub(crate) Vec<(String, String)>);

impl Params {
    pub(crate) fn parse(raw: Option<&str>) -> Result<Params, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("the query string cannot be read: {e}")))?;
        Ok(Params(
            pairs.into_iter().filter(|(_, v)| !v.trim().is_empty()).collect(),
        ))
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Refuses names the endpoint does not know (a typo is an error, not an
    /// ignored filter).
    pub(crate) fn only(&self, known: &[&str]) -> Result<(), ApiError> {
        for (name, _) in &self.0 {
            if !known.contains(&name.as_str()) {
                let mut message = format!("unknown parameter `{name}`");
                if let Some(near) = pgtrail_config::suggest(name, known.iter().copied()) {
                    message.push_str(&format!("; did you mean `{near}`?"));
                }
                return Err(ApiError::bad_request(message)
                    .with_help(format!("the parameters are {}", known.join(", "))));
            }
        }
        Ok(())
    }

    pub(crate) fn required(&self, name: &str, example: &str) -> Result<&str, ApiError> {
        self.get(name).ok_or_else(|| {
            ApiError::bad_request(format!("`{name}` is needed")).with_help(format!("e.g. ?{name}={example}"))
        })
    }

    pub(crate) fn time(&self, name: &str) -> Result<Option<TimeArg>, ApiError> {
        Ok(self.get(name).map(pgtrail_query::parse_time).transpose()?)
    }

    pub(crate) fn integer(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|v| {
                v.trim()
                    .parse::<i64>()
                    .map_err(|_| ApiError::bad_request(format!("`{name}` must be a whole number, not `{v}`")))
            })
            .transpose()
    }
}

/// What the caller asked for: JSON (default) or CSV (`format=csv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Csv,
}

pub(crate) fn format_of(params: &Params) -> Result<Format, ApiError> {
    match params.get("format") {
        None | Some("json") => Ok(Format::Json),
        Some("csv") => Ok(Format::Csv),
        Some(other) => {
            Err(ApiError::bad_request(format!("unknown format `{other}`"))
                .with_help("format=json or format=csv"))
        }
    }
}

/// The CSV of rows of JSON objects with these columns: text as is, NULL
/// empty, anything else compact JSON.
pub(crate) fn csv_response(name: &str, columns: &[&str], rows: &[Value]) -> Result<Response, ApiError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let failed =
        |e: csv::Error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("writing CSV: {e}"));
    writer.write_record(columns).map_err(failed)?;
    for row in rows {
        writer
            .write_record(columns.iter().map(|c| match &row[*c] {
                Value::Null => String::new(),
                Value::String(text) => text.clone(),
                other => other.to_string(),
            }))
            .map_err(failed)?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("writing CSV: {e}")))?;
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}.csv\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// A CSV page has no room for `next`: its next page is a `Link` header
/// (RFC 8288), the same request (`path`, every parameter but `after`) with
/// `after` = `next`.
pub(crate) fn link_next(response: &mut Response, path: &str, params: &Params, next: Option<&str>) {
    let Some(next) = next else {
        return;
    };
    let mut pairs: Vec<(&str, &str)> = params
        .0
        .iter()
        .filter(|(name, _)| name != "after")
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    pairs.push(("after", next));
    let Ok(query) = serde_urlencoded::to_string(&pairs) else {
        return;
    };
    if let Ok(value) = HeaderValue::from_str(&format!("<{path}?{query}>; rel=\"next\"")) {
        response.headers_mut().insert(header::LINK, value);
    }
}

/// The columns of a change, in CSV exports.
pub(crate) const CHANGE_COLUMNS: [&str; 18] = [
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
];

pub(crate) const BLAME_COLUMNS: [&str; 9] = [
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

/// Runs a query whose one column is a JSON object per row.
pub(crate) async fn query_json(client: &Client, sql: &str, params: &[Param]) -> Result<Vec<Value>, ApiError> {
    let rows = client.query(sql, &as_params(params)).await?;
    rows.iter()
        .map(|row| {
            row.try_get::<_, Value>(0)
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("reading a row: {e}")))
        })
        .collect()
}

// ---- tables ----

pub(crate) use pgtrail_query::Audited;

pub(crate) async fn list_tables(client: &Client) -> Result<Vec<Value>, ApiError> {
    query_json(
        client,
        "SELECT to_jsonb(t) FROM (
             SELECT table_schema, table_name, key_columns, detached_at
             FROM pgtrail.audited_table ORDER BY table_schema, table_name) AS t",
        &[],
    )
    .await
}

async fn tables(State(state): State<Shared>) -> Result<Response, ApiError> {
    let client = state.pool.get().await?;
    Ok(Json(json!({"tables": list_tables(&client).await?})).into_response())
}

// ---- changes ----

/// The filters of `/api/v1/changes` (those of `pgtrail log`, and `q`, `after`, `limit`).
pub(crate) const CHANGE_FILTERS: [&str; 15] = [
    "table",
    "key",
    "actor",
    "actor_type",
    "op",
    "field",
    "tx",
    "migration",
    "context",
    "since",
    "until",
    "q",
    "after",
    "limit",
    "format",
];

/// A page's size: `limit`, 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when not given.
pub(crate) fn page_limit(params: &Params) -> Result<i64, ApiError> {
    let limit = params.integer("limit")?.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(
            ApiError::bad_request(format!("`limit` must be between 1 and {MAX_LIMIT}, not {limit}"))
                .with_help("follow `next` for more"),
        );
    }
    Ok(limit)
}

/// One page of changes, newest first, and the cursor of the next page.
pub(crate) struct Page {
    pub(crate) changes: Vec<Value>,
    pub(crate) next: Option<String>,
}

pub(crate) async fn find_changes(client: &Client, params: &Params) -> Result<Page, ApiError> {
    params.only(&CHANGE_FILTERS)?;
    let limit = page_limit(params)?;
    let mut filter = LogFilter {
        actor: params.get("actor").map(str::to_string),
        actor_type: params.get("actor_type").map(str::to_string),
        op: params.get("op").map(parse_op).transpose()?.map(str::to_string),
        field: params.get("field").map(str::to_string),
        txid: params.integer("tx")?,
        migration: params.get("migration").map(str::to_string),
        context: params
            .all("context")
            .into_iter()
            .map(parse_context_filter)
            .collect::<Result<_, _>>()?,
        since: params.time("since")?,
        until: params.time("until")?,
        search: params.get("q").map(str::to_string),
        before: params.get("after").map(Cursor::parse).transpose()?,
        // One more than the page, to know whether there is a next one.
        limit: Some(limit + 1),
        ..LogFilter::default()
    };
    match (params.get("table"), params.get("key")) {
        (Some(table), key) => {
            let table = Audited::resolve(client, table).await?;
            if let Some(key) = key {
                filter.key = Some(table.key(key)?);
            }
            filter.table = Some((table.schema, table.name));
        }
        (None, Some(_)) => {
            return Err(
                ApiError::bad_request("`key` needs `table`").with_help("e.g. ?table=public.users&key=42")
            );
        }
        (None, None) => {}
    }
    if let Some(field) = &filter.field {
        pgtrail_query::check_field(
            client,
            filter.table.as_ref().map(|(s, n)| (s.as_str(), n.as_str())),
            field,
        )
        .await
        .map_err(|e| match e {
            pgtrail_query::FieldError::Unknown { message, help } => {
                ApiError::bad_request(format!("field: {message}")).with_help(help)
            }
            pgtrail_query::FieldError::Database(error) => ApiError::database(error),
        })?;
    }
    if let (Some(since), Some(until)) = (&filter.since, &filter.until) {
        let sql = format!("SELECT {s} > {u}", s = since.sql(1), u = until.sql(2));
        let after: bool = client
            .query_one(&sql, &[&since.value(), &until.value()])
            .await?
            .get(0);
        if after {
            return Err(ApiError::bad_request(format!(
                "since ({}) is after until ({}): no change can be in between",
                since.value(),
                until.value()
            ))
            .with_help("swap them, or leave one out"));
        }
    }
    if filter.actor.is_some() {
        filter.by_actor_index = client
            .query_one(
                "SELECT to_regprocedure('pgtrail.actor_changes(text, timestamptz, timestamptz)') IS NOT NULL",
                &[],
            )
            .await?
            .get(0);
    }
    // (Read window by window when nothing bounds the filter: see `newest`.)
    let mut changes = newest(client, &filter, |f| async move { page_query(client, &f).await }).await?;
    let next = if changes.len() as i64 > limit {
        changes.truncate(limit as usize);
        changes
            .last()
            .and_then(|c| c["cursor"].as_str())
            .map(str::to_string)
    } else {
        None
    };
    for change in &mut changes {
        if let Value::Object(map) = change {
            map.remove("cursor");
        }
    }
    Ok(Page { changes, next })
}

/// Runs `filter`'s query, each change with its cursor.
async fn page_query(client: &Client, filter: &LogFilter) -> Result<Vec<Value>, ApiError> {
    let (sql, params) = filter.build();
    let sql = format!(
        "SELECT to_jsonb(q) || jsonb_build_object('cursor', {micros} || '.' || q.id)
         FROM ({sql}) AS q ORDER BY q.changed_at DESC, q.id DESC",
        micros = Cursor::MICROS_SQL.replace("changed_at", "q.changed_at"),
    );
    query_json(client, &sql, &params).await
}

async fn changes(State(state): State<Shared>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let params = Params::parse(raw.as_deref())?;
    let format = format_of(&params)?;
    let client = state.pool.get().await?;
    let page = find_changes(&client, &params).await?;
    match format {
        Format::Csv => {
            let mut response = csv_response("changes", &CHANGE_COLUMNS, &page.changes)?;
            link_next(&mut response, "/api/v1/changes", &params, page.next.as_deref());
            Ok(response)
        }
        Format::Json => Ok(Json(json!({"changes": page.changes, "next": page.next})).into_response()),
    }
}

// ---- one row ----

pub(crate) async fn row_history(
    client: &Client,
    table: &str,
    key: &str,
) -> Result<(Audited, Value, Vec<Value>), ApiError> {
    row_rows(
        client,
        table,
        key,
        "SELECT to_jsonb(r) FROM pgtrail.history($1::text::regclass, $2::jsonb) AS r",
    )
    .await
}

pub(crate) async fn row_blame(
    client: &Client,
    table: &str,
    key: &str,
) -> Result<(Audited, Value, Vec<Value>), ApiError> {
    row_rows(
        client,
        table,
        key,
        "SELECT to_jsonb(r) FROM pgtrail.blame($1::text::regclass, $2::jsonb) AS r",
    )
    .await
}

/// The rows `sql` (taking the table as $1 and the key as $2) returns for one row.
async fn row_rows(
    client: &Client,
    table: &str,
    key: &str,
    sql: &'static str,
) -> Result<(Audited, Value, Vec<Value>), ApiError> {
    let table = Audited::resolve(client, table).await?;
    let pk = table.key(key)?;
    let rows = query_json(client, sql, &[Box::new(table.regclass()), Box::new(pk.clone())]).await?;
    Ok((table, pk, rows))
}

/// The row's state at `at` (null: it did not exist then).
pub(crate) async fn row_state(
    client: &Client,
    table: &str,
    key: &str,
    at: &TimeArg,
) -> Result<(Audited, Value, Value), ApiError> {
    let table = Audited::resolve(client, table).await?;
    let pk = table.key(key)?;
    let sql = format!(
        "SELECT pgtrail.row_as_of($1::text::regclass, $2::jsonb, {})",
        at.sql(3)
    );
    let row = client
        .query_one(&sql, &[&table.regclass(), &pk, &at.value()])
        .await?;
    let state: Option<Value> = row
        .try_get(0)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("reading the row: {e}")))?;
    Ok((table, pk, state.unwrap_or(Value::Null)))
}

/// The seals that hold these changes (rows with `id` and `txid`): change
/// id → (seal id, sealed at).
///
/// A seal covers whole transactions, so one change per transaction is
/// looked up, and it is found through the span of ids each
/// `pgtrail.seal_leaves` row holds (migration 0012, indexed): only the
/// rows whose span holds the id have their id arrays read.
pub(crate) async fn seals_of(client: &Client, rows: &[Value]) -> Result<Value, ApiError> {
    let mut first_of_tx: std::collections::BTreeMap<i64, i64> = std::collections::BTreeMap::new();
    for row in rows {
        if let (Some(id), Some(txid)) = (row["id"].as_i64(), row["txid"].as_i64()) {
            first_of_tx.entry(txid).or_insert(id);
        }
    }
    if first_of_tx.is_empty() {
        return Ok(json!({}));
    }
    let probes: Vec<i64> = first_of_tx.values().copied().collect();
    let found = query_json(
        client,
        "SELECT jsonb_build_object('change_id', c.id, 'seal_id', s.id, 'sealed_at', s.sealed_at)
         FROM unnest($1::bigint[]) AS c(id)
         JOIN pgtrail.seal_leaves AS l ON l.id_span @> c.id
         JOIN pgtrail.seal AS s ON s.id = l.seal_id
         WHERE c.id = ANY (l.change_ids)",
        &[Box::new(probes)],
    )
    .await?;
    let mut seal_of_probe = std::collections::HashMap::new();
    for row in found {
        if let Some(id) = row["change_id"].as_i64() {
            seal_of_probe.insert(
                id,
                json!({"seal_id": row["seal_id"], "sealed_at": row["sealed_at"]}),
            );
        }
    }
    let mut out = serde_json::Map::new();
    for row in rows {
        if let (Some(id), Some(txid)) = (row["id"].as_i64(), row["txid"].as_i64())
            && let Some(seal) = first_of_tx.get(&txid).and_then(|probe| seal_of_probe.get(probe))
        {
            out.insert(id.to_string(), seal.clone());
        }
    }
    Ok(Value::Object(out))
}

async fn history(
    State(state): State<Shared>,
    Path(table): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(raw.as_deref())?;
    params.only(&["key", "format"])?;
    let format = format_of(&params)?;
    let key = params.required("key", "42")?;
    let client = state.pool.get().await?;
    let (table, pk, rows) = row_history(&client, &table, key).await?;
    if format == Format::Csv {
        return csv_response("history", &CHANGE_COLUMNS, &rows);
    }
    let seals = seals_of(&client, &rows).await?;
    Ok(Json(json!({"table": table.display(), "key": pk, "changes": rows, "seals": seals})).into_response())
}

async fn blame(
    State(state): State<Shared>,
    Path(table): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(raw.as_deref())?;
    params.only(&["key", "format"])?;
    let format = format_of(&params)?;
    let key = params.required("key", "42")?;
    let client = state.pool.get().await?;
    let (table, pk, rows) = row_blame(&client, &table, key).await?;
    match format {
        Format::Csv => csv_response("blame", &BLAME_COLUMNS, &rows),
        Format::Json => {
            Ok(Json(json!({"table": table.display(), "key": pk, "columns": rows})).into_response())
        }
    }
}

async fn state(
    State(state): State<Shared>,
    Path(table): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(raw.as_deref())?;
    params.only(&["key", "at"])?;
    let key = params.required("key", "42")?;
    let at = params.time("at")?.unwrap_or(TimeArg::Absolute("now".into()));
    let client = state.pool.get().await?;
    let (table, pk, row) = row_state(&client, &table, key, &at).await?;
    Ok(Json(json!({"table": table.display(), "key": pk, "at": at.value(), "row": row})).into_response())
}

/// The rows of a table as they were at a moment (at most `limit`, by key).
pub(crate) async fn rows_as_of(
    client: &Client,
    table: &str,
    at: &TimeArg,
    limit: i64,
) -> Result<(Audited, Vec<Value>), ApiError> {
    let table = Audited::resolve(client, table).await?;
    let sql = format!(
        "SELECT r.row FROM pgtrail.table_as_of($1::text::regclass, {}) AS r(row) LIMIT $3::bigint",
        at.sql(2)
    );
    let rows = client
        .query(&sql, &[&table.regclass(), &at.value(), &limit])
        .await?
        .iter()
        .map(|r| r.try_get::<_, Value>(0))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("reading a row: {e}")))?;
    Ok((table, rows))
}

async fn table_as_of(
    State(state): State<Shared>,
    Path(table): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(raw.as_deref())?;
    params.only(&["at", "limit"])?;
    let at = params.time("at")?.unwrap_or(TimeArg::Absolute("now".into()));
    let limit = params.integer("limit")?.unwrap_or(1000).clamp(1, 10_000);
    let client = state.pool.get().await?;
    let (table, rows) = rows_as_of(&client, &table, &at, limit).await?;
    Ok(Json(json!({"table": table.display(), "at": at.value(), "rows": rows})).into_response())
}

// ---- a transaction ----

/// The parameters of a transaction's page (API and HTML).
pub(crate) const TRANSACTION_PARAMS: [&str; 3] = ["after", "limit", "format"];

/// One page of a transaction's changes, in id order, the cursor of the
/// next page (the last id shown) and how many changes the transaction has
/// in all.
pub(crate) struct TransactionPage {
    pub(crate) changes: Vec<Value>,
    pub(crate) next: Option<String>,
    pub(crate) total: i64,
}

/// The page of transaction `txid`'s changes that `after` (a change id,
/// the previous page's `next`) and `limit` ask for
/// ([`pgtrail_query::transaction_page`]); not found when the transaction
/// has no recorded change.
pub(crate) async fn transaction_page(
    client: &Client,
    txid: i64,
    params: &Params,
) -> Result<TransactionPage, ApiError> {
    let limit = page_limit(params)?;
    let after = params.integer("after")?.unwrap_or(0);
    let page = pgtrail_query::transaction_page(client, txid, limit, after).await?;
    if page.total == 0 {
        return Err(ApiError::not_found(format!(
            "no recorded changes in transaction {txid}"
        )));
    }
    Ok(TransactionPage {
        changes: page.changes,
        next: page.next.map(|id| id.to_string()),
        total: page.total,
    })
}

async fn transaction(
    State(state): State<Shared>,
    Path(txid): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(raw.as_deref())?;
    params.only(&TRANSACTION_PARAMS)?;
    let format = format_of(&params)?;
    let txid: i64 = txid
        .parse()
        .map_err(|_| ApiError::bad_request(format!("a transaction id is a whole number, not `{txid}`")))?;
    let client = state.pool.get().await?;
    let page = transaction_page(&client, txid, &params).await?;
    if format == Format::Csv {
        let mut response = csv_response(&format!("transaction-{txid}"), &CHANGE_COLUMNS, &page.changes)?;
        link_next(
            &mut response,
            &format!("/api/v1/transactions/{txid}"),
            &params,
            page.next.as_deref(),
        );
        return Ok(response);
    }
    let seals = seals_of(&client, &page.changes).await?;
    Ok(Json(json!({
        "txid": txid,
        "change_count": page.total,
        "changes": page.changes,
        "next": page.next,
        "seals": seals,
    }))
    .into_response())
}

// ---- the activity report ----

pub(crate) async fn activity_report(client: &Client, params: &Params) -> Result<Value, ApiError> {
    params.only(&["since", "until", "burst", "window"])?;
    let since = params.time("since")?;
    let until = params.time("until")?;
    let burst = params.integer("burst")?.unwrap_or(100);
    let window = params.integer("window")?.unwrap_or(10);
    if burst < 1 || !(1..=10_080).contains(&window) {
        return Err(ApiError::bad_request(
            "`burst` must be at least 1 and `window` between 1 and 10080 minutes",
        ));
    }
    let window = window as i32;
    let report = pgtrail_query::activity(
        client,
        &pgtrail_query::ActivityRequest {
            since: since.as_ref(),
            until: until.as_ref(),
            show: &[],
            burst,
            window_minutes: window,
        },
    )
    .await?;
    Ok(json!({
        "since": since.as_ref().map(TimeArg::value),
        "until": until.as_ref().map(TimeArg::value),
        "burst": {"more_than": burst, "window_minutes": window},
        "by_actor": report.by_actor,
        "by_table": report.by_table,
        "bursts": report.bursts,
    }))
}

async fn activity(State(state): State<Shared>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let params = Params::parse(raw.as_deref())?;
    let client = state.pool.get().await?;
    Ok(Json(activity_report(&client, &params).await?).into_response())
}

// ---- proofs ----

/// What the proofs say: the last seal (and how many changes came after
/// it), and the capture gaps touching the window (`since`, `until`) or
/// the table.
pub(crate) async fn proof_status(client: &Client, params: &Params) -> Result<Value, ApiError> {
    params.only(&["since", "until", "table"])?;
    let since = params.time("since")?;
    let until = params.time("until")?;
    let table = match params.get("table") {
        Some(table) => Some(Audited::resolve(client, table).await?),
        None => None,
    };
    proof_of(client, since.as_ref(), until.as_ref(), table.as_ref()).await
}

/// What the proofs say about a window and a table already resolved (see
/// [`proof_status`]).
pub(crate) async fn proof_of(
    client: &Client,
    since: Option<&TimeArg>,
    until: Option<&TimeArg>,
    table: Option<&Audited>,
) -> Result<Value, ApiError> {
    let last_seal = query_json(
        client,
        "SELECT to_jsonb(x) FROM (
             SELECT s.id, s.sealed_at, s.sealed_by, s.tree_size, encode(s.root, 'hex') AS root
             FROM pgtrail.seal AS s ORDER BY s.id DESC LIMIT 1) AS x",
        &[],
    )
    .await?
    .pop()
    .unwrap_or(Value::Null);
    let since_sql = since.map_or("NULL::timestamptz".into(), |t| t.sql(1));
    let until_sql = until.map_or("NULL::timestamptz".into(), |t| t.sql(2));
    let sql = format!(
        "SELECT to_jsonb(x) FROM (
             SELECT format('%s.%s', g.table_schema, g.table_name) AS \"table\", g.off_from, g.off_until,
                    g.turned_off_by, g.turned_off_with, g.turned_on_by, g.turned_on_with
             FROM pgtrail.capture_gaps AS g
             WHERE ($1::text IS NULL OR g.off_until IS NULL OR g.off_until > {since_sql})
               AND ($2::text IS NULL OR g.off_from < {until_sql})
               AND ($3::text IS NULL OR (g.table_schema = $3 AND g.table_name = $4))) AS x
         ORDER BY x.off_from"
    );
    let gaps = query_json(
        client,
        &sql,
        &[
            Box::new(since.map(TimeArg::value)),
            Box::new(until.map(TimeArg::value)),
            Box::new(table.map(|t| t.schema.clone())),
            Box::new(table.map(|t| t.name.clone())),
        ],
    )
    .await?;
    Ok(json!({
        "last_seal": last_seal,
        "sealed_up_to": last_seal["sealed_at"],
        "capture_gaps": gaps,
    }))
}

async fn proof(State(state): State<Shared>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let params = Params::parse(raw.as_deref())?;
    let client = state.pool.get().await?;
    Ok(Json(proof_status(&client, &params).await?).into_response())
}

// ---- health and the OpenAPI document ----

async fn healthz(State(state): State<Shared>) -> Response {
    match state.pool.get().await {
        Ok(client) => match client.query_one("SELECT 1", &[]).await {
            Ok(_) => Json(json!({"status": "ok"})).into_response(),
            Err(e) => ApiError::database(e).into_response(),
        },
        Err(e) => e.into_response(),
    }
}

async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}
