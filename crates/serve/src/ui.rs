//! The web pages: server-rendered HTML with one embedded style sheet and
//! no script. A timeline with filters and free search, a row's page (its
//! changes with old and new side by side, the changed part of text
//! marked), blame, a transaction, a table as of a moment, the login form.
//! Links everywhere (actor → their changes, transaction → its page, key →
//! the row's page) and exports of every list as CSV or JSON through the API.

use std::fmt::Write;

use axum::Form;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use serde_json::Value;

use crate::Shared;
use crate::api::{self, Params};
use crate::auth::{COOKIE, url_encode};
use crate::error::ApiError;

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/", get(timeline))
        .route("/row/{table}", get(row))
        .route("/blame/{table}", get(blame))
        .route("/tx/{txid}", get(transaction))
        .route("/table/{table}", get(table_as_of))
        .route("/login", get(login_form).post(login))
        .route("/logout", axum::routing::post(logout))
        .route("/assets/style.css", get(style))
        .fallback(not_found)
}

const STYLE: &str = include_str!("style.css");

async fn style() -> Response {
    let mut response = STYLE.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    response
}

async fn not_found(uri: axum::http::Uri) -> Response {
    let path = uri.path();
    let error = ApiError::not_found(format!("no page or endpoint at {path}"))
        .with_help("the API is described at /api/openapi.json; the pages start at /");
    if path.starts_with("/api/") {
        return error.into_response();
    }
    page_error(error)
}

/// Text safe in HTML text and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A query string's value, encoded.
fn enc(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        other if pgtrail_query::is_redacted(other) => "[redacted]".into(),
        other => other.to_string(),
    }
}

/// `{"id": 42}` → `id=42`.
fn key_text(value: &Value) -> String {
    match value {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", cell(v)))
            .collect::<Vec<_>>()
            .join(","),
        other => cell(other),
    }
}

fn time_text(value: &Value) -> String {
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

fn actor_of(row: &Value) -> Option<String> {
    [&row["actor_name"], &row["actor_id"], &row["context"]["migration"]]
        .into_iter()
        .find_map(|v| v.as_str().filter(|s| !s.is_empty()).map(str::to_string))
}

/// The actor, linked to their changes.
fn actor_link(row: &Value) -> String {
    let Some(who) = actor_of(row) else {
        return "<span class=dim>unknown</span>".into();
    };
    let kind = row["actor_type"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(|k| format!(" <span class=dim>({})</span>", escape(k)))
        .unwrap_or_default();
    let filter = match row["actor_id"].as_str().or(row["actor_name"].as_str()) {
        Some(actor) => format!("actor={}", enc(actor)),
        None => format!("migration={}", enc(&who)),
    };
    format!("<a href=\"/?{filter}\">{}</a>{kind}", escape(&who))
}

fn table_name(row: &Value) -> String {
    format!("{}.{}", cell(&row["table_schema"]), cell(&row["table_name"]))
}

fn row_link(row: &Value) -> String {
    let table = table_name(row);
    let key = serde_json::to_string(&row["pk"]).unwrap_or_default();
    format!(
        "<a href=\"/row/{}?key={}\">{}</a>",
        escape(&enc(&table)),
        escape(&enc(&key)),
        escape(&key_text(&row["pk"]))
    )
}

fn tx_link(row: &Value) -> String {
    let txid = cell(&row["txid"]);
    format!("<a href=\"/tx/{0}\">{0}</a>", escape(&txid))
}

fn op_badge(op: &str) -> String {
    format!(
        "<span class=\"op op-{}\">{}</span>",
        escape(&op.to_ascii_lowercase()),
        escape(op)
    )
}

/// The page around `body`.
pub(crate) fn page(title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} · pgtrail</title><link rel=\"stylesheet\" href=\"/assets/style.css\"></head>\
         <body><a class=\"skip\" href=\"#main\">Skip to content</a>\
         <header><nav aria-label=\"pgtrail\"><a href=\"/\" class=\"brand\">pgtrail</a> \
         <a href=\"/\">Timeline</a> <a href=\"/api/openapi.json\">API</a>\
         <form method=\"post\" action=\"/logout\" class=\"logout\"><button type=\"submit\">Log out</button></form></nav></header>\
         <main id=\"main\"><h1>{t}</h1>{body}</main></body></html>",
        t = escape(title)
    );
    Html(html).into_response()
}

pub(crate) fn page_error(error: ApiError) -> Response {
    let mut body = format!("<p class=\"error\" role=\"alert\">{}</p>", escape(&error.message));
    if let Some(help) = &error.help {
        let _ = write!(body, "<p>{}</p>", escape(help));
    }
    let mut response = page(
        if error.status == StatusCode::NOT_FOUND {
            "Not found"
        } else {
            "Something is wrong"
        },
        &body,
    );
    *response.status_mut() = error.status;
    response
}

/// What the proofs say, as a banner: sealed up to when, and capture gaps.
fn proof_banner(proof: &Value) -> String {
    let mut out = String::from("<section class=\"proof\" aria-label=\"proofs\">");
    match proof["sealed_up_to"].as_str() {
        Some(at) => {
            let _ = write!(
                out,
                "<p>Sealed up to <strong>{}</strong> (seal {}); changes after it are not sealed yet.</p>",
                escape(&time_text(&Value::String(at.into()))),
                escape(&cell(&proof["last_seal"]["id"]))
            );
        }
        None => out.push_str("<p>Not sealed: no seal has been made (<code>pgtrail seal</code>).</p>"),
    }
    let gaps = proof["capture_gaps"].as_array().cloned().unwrap_or_default();
    if gaps.is_empty() {
        out.push_str("<p>No capture gap touches what is shown.</p>");
    } else {
        out.push_str("<p class=\"warn\"><strong>Capture gaps</strong> touch what is shown: changes then were not recorded.</p><ul>");
        for gap in gaps {
            let _ = write!(
                out,
                "<li>{}: off from {} until {} ({} by {})</li>",
                escape(&cell(&gap["table"])),
                escape(&time_text(&gap["off_from"])),
                escape(
                    &gap["off_until"]
                        .as_str()
                        .map_or("now".into(), |t| time_text(&Value::String(t.into())))
                ),
                escape(&cell(&gap["turned_off_with"])),
                escape(&cell(&gap["turned_off_by"]))
            );
        }
        out.push_str("</ul>");
    }
    out.push_str("</section>");
    out
}

/// A value of a diff: the part that differs from `other` marked.
fn marked(value: Option<&Value>, other: Option<&Value>, class: &str) -> String {
    let Some(value) = value else {
        return "<span class=dim>∅</span>".into();
    };
    let text = match value {
        Value::Null => return "<span class=dim>null</span>".into(),
        other if pgtrail_query::is_redacted(other) => return "<span class=dim>[redacted]</span>".into(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let other = match other {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Null) | None => return format!("<mark class={class}>{}</mark>", escape(&text)),
        Some(other) => other.to_string(),
    };
    // The common start and end stay plain; the middle is what changed.
    let a: Vec<char> = text.chars().collect();
    let b: Vec<char> = other.chars().collect();
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let start: String = a[..prefix].iter().collect();
    let middle: String = a[prefix..a.len() - suffix].iter().collect();
    let end: String = a[a.len() - suffix..].iter().collect();
    format!(
        "{}<mark class={class}>{}</mark>{}",
        escape(&start),
        escape(&middle),
        escape(&end)
    )
}

/// A change's fields: old and new side by side.
fn diff_table(row: &Value) -> String {
    let empty = serde_json::Map::new();
    let old = row["old_values"].as_object().unwrap_or(&empty);
    let new = row["new_values"].as_object().unwrap_or(&empty);
    let op = row["op"].as_str().unwrap_or("");
    let fields: Vec<String> = match op {
        "INSERT" => new.keys().cloned().collect(),
        "DELETE" => old.keys().cloned().collect(),
        "UPDATE" => match &row["changed_fields"] {
            Value::Array(fields) => fields
                .iter()
                .filter_map(|f| f.as_str().map(String::from))
                .collect(),
            _ => new.keys().cloned().collect(),
        },
        _ => return "<p class=dim>every row of the table</p>".into(),
    };
    let mut out = String::from(
        "<table class=\"diff\"><thead><tr><th scope=\"col\">field</th><th scope=\"col\">old</th><th scope=\"col\">new</th></tr></thead><tbody>",
    );
    for field in fields {
        let before = if op == "INSERT" { None } else { old.get(&field) };
        let after = if op == "DELETE" { None } else { new.get(&field) };
        let _ = write!(
            out,
            "<tr><th scope=\"row\">{}</th><td class=old>{}</td><td class=new>{}</td></tr>",
            escape(&field),
            if op == "INSERT" {
                String::new()
            } else {
                marked(before, after, "del")
            },
            if op == "DELETE" {
                String::new()
            } else {
                marked(after, before, "ins")
            },
        );
    }
    out.push_str("</tbody></table>");
    out
}

fn change_heading(row: &Value, with_row: bool, seals: &Value) -> String {
    let op = cell(&row["op"]);
    let id = cell(&row["id"]);
    let sealed = match seals.get(&id) {
        Some(seal) => format!(
            " <span class=\"sealed\">sealed {}</span>",
            escape(&time_text(&seal["sealed_at"]))
        ),
        None => " <span class=\"unsealed\">not sealed</span>".into(),
    };
    let what = if with_row {
        format!(" {} {}", escape(&table_name(row)), row_link(row))
    } else {
        String::new()
    };
    let reason = row["reason"]
        .as_str()
        .filter(|r| !r.is_empty())
        .map(|r| format!(" <q>{}</q>", escape(r)))
        .unwrap_or_default();
    format!(
        "<h2 id=\"change-{id}\">{} #{id} <time>{}</time>{what} · tx {} · by {}{reason}{sealed}</h2>",
        op_badge(&op),
        escape(&time_text(&row["changed_at"])),
        tx_link(row),
        actor_link(row),
        id = escape(&id),
    )
}

/// The export links of a list: the API's CSV and JSON of the same query.
fn exports(api_path: &str, query: &str) -> String {
    let join = if query.is_empty() { "" } else { "&" };
    format!(
        "<p class=\"exports\">Export: <a href=\"{p}?{q}{join}format=csv\" download>CSV</a> · <a href=\"{p}{qq}\" download>JSON</a></p>",
        p = escape(api_path),
        q = escape(query),
        qq = if query.is_empty() {
            String::new()
        } else {
            format!("?{}", escape(query))
        },
    )
}

fn field(name: &str, label: &str, value: Option<&str>, placeholder: &str) -> String {
    format!(
        "<div class=\"field\"><label for=\"f-{name}\">{label}</label><input id=\"f-{name}\" name=\"{name}\" value=\"{}\" placeholder=\"{}\"></div>",
        escape(value.unwrap_or("")),
        escape(placeholder)
    )
}

// ---- pages ----

async fn timeline(State(state): State<Shared>, RawQuery(raw): RawQuery) -> Response {
    match timeline_page(state, raw).await {
        Ok(response) => response,
        Err(error) => page_error(error),
    }
}

async fn timeline_page(state: Shared, raw: Option<String>) -> Result<Response, ApiError> {
    let params = Params::parse(raw.as_deref())?;
    let client = state.pool.get().await?;
    let get = |name: &str| params.get(name);
    let mut body = String::from("<form method=\"get\" action=\"/\" class=\"filters\" role=\"search\">");
    body.push_str(&field("q", "Search", get("q"), "an email, a name, a value…"));
    body.push_str(&field("table", "Table", get("table"), "public.users"));
    body.push_str(&field("key", "Key", get("key"), "42 or id=42"));
    body.push_str(&field("actor", "Actor", get("actor"), "id or name"));
    body.push_str(&field(
        "actor_type",
        "Actor type",
        get("actor_type"),
        "user, service…",
    ));
    body.push_str(&field("op", "Operation", get("op"), "INSERT, UPDATE…"));
    body.push_str(&field("field", "Field", get("field"), "email"));
    body.push_str(&field("tx", "Transaction", get("tx"), "txid"));
    body.push_str(&field("migration", "Migration", get("migration"), "0042_x"));
    body.push_str(&field("context", "Context", get("context"), "request_id=r-1"));
    body.push_str(&field("since", "Since", get("since"), "2h ago, 2026-03-14"));
    body.push_str(&field("until", "Until", get("until"), "now"));
    body.push_str("<button type=\"submit\">Filter</button></form>");
    let mut proof_params = Params::default();
    for name in ["since", "until", "table"] {
        if let Some(value) = params.get(name) {
            proof_params.0.push((name.into(), value.into()));
        }
    }
    let list_params = Params(params.0.iter().filter(|(n, _)| n != "format").cloned().collect());
    let page_of = api::find_changes(&client, &list_params).await;
    let page_of = match page_of {
        Ok(page) => page,
        Err(error) => {
            let _ = write!(
                body,
                "<p class=\"error\" role=\"alert\">{}</p>{}",
                escape(&error.message),
                error
                    .help
                    .map(|h| format!("<p>{}</p>", escape(&h)))
                    .unwrap_or_default()
            );
            let mut response = page("Timeline", &body);
            *response.status_mut() = error.status;
            return Ok(response);
        }
    };
    let proof = api::proof_status(&client, &proof_params).await?;
    body.push_str(&proof_banner(&proof));
    let query: String = list_params
        .0
        .iter()
        .filter(|(n, _)| n != "after")
        .map(|(n, v)| format!("{}={}", enc(n), enc(v)))
        .collect::<Vec<_>>()
        .join("&");
    body.push_str(&exports("/api/v1/changes", &query));
    if page_of.changes.is_empty() {
        body.push_str("<p>No changes match.</p>");
    } else {
        body.push_str(
            "<div class=\"scroll\"><table class=\"changes\"><caption>Changes, newest first</caption><thead><tr>\
             <th scope=\"col\">time</th><th scope=\"col\">op</th><th scope=\"col\">table</th><th scope=\"col\">key</th>\
             <th scope=\"col\">fields</th><th scope=\"col\">by</th><th scope=\"col\">why</th><th scope=\"col\">tx</th></tr></thead><tbody>",
        );
        for row in &page_of.changes {
            let fields = match &row["changed_fields"] {
                Value::Array(fields) => fields.iter().map(cell).collect::<Vec<_>>().join(", "),
                _ => String::new(),
            };
            let _ = write!(
                body,
                "<tr><td><time>{}</time></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&time_text(&row["changed_at"])),
                op_badge(&cell(&row["op"])),
                escape(&table_name(row)),
                row_link(row),
                escape(&fields),
                actor_link(row),
                escape(&cell(&row["reason"])),
                tx_link(row),
            );
        }
        body.push_str("</tbody></table></div>");
    }
    if let Some(next) = &page_of.next {
        let join = if query.is_empty() { "" } else { "&" };
        let _ = write!(
            body,
            "<p><a rel=\"next\" href=\"/?{}{join}after={}\">Older changes →</a></p>",
            escape(&query),
            escape(&enc(next))
        );
    }
    Ok(page("Timeline", &body))
}

async fn row(State(state): State<Shared>, Path(table): Path<String>, RawQuery(raw): RawQuery) -> Response {
    match row_page(state, table, raw).await {
        Ok(response) => response,
        Err(error) => page_error(error),
    }
}

async fn row_page(state: Shared, table: String, raw: Option<String>) -> Result<Response, ApiError> {
    let params = Params::parse(raw.as_deref())?;
    params.only(&["key", "at"])?;
    let key = params.required("key", "42")?;
    let client = state.pool.get().await?;
    let (audited, pk, rows) = api::row_history(&client, &table, key).await?;
    let seals = api::seals_of(&client, &rows).await?;
    let key_json = serde_json::to_string(&pk).unwrap_or_default();
    let title = format!("{} {}", audited.display(), key_text(&pk));
    let query = format!("key={}", enc(&key_json));
    let table_enc = enc(&audited.display());
    let mut body = format!(
        "<p><a href=\"/blame/{t}?{q}\">Blame</a> · <a href=\"/?table={t}&amp;{q}\">In the timeline</a></p>",
        t = escape(&table_enc),
        q = escape(&query)
    );
    // (The table resolved once: a row page's queries are what its speed is.)
    let proof = api::proof_of(&client, None, None, Some(&audited)).await?;
    body.push_str(&proof_banner(&proof));
    // The state at a moment.
    let _ = write!(
        body,
        "<form method=\"get\" class=\"asof\"><input type=\"hidden\" name=\"key\" value=\"{}\">{}<button type=\"submit\">Show</button></form>",
        escape(&key_json),
        field("at", "State at", params.get("at"), "2026-03-14 09:30, 2h ago")
    );
    if let Some(at) = params.time("at")? {
        let (_, _, state) = api::row_state(&client, &table, key, &at).await?;
        let _ = write!(
            body,
            "<section aria-label=\"state\"><h2>As of {}</h2>",
            escape(&at.value())
        );
        match state {
            Value::Object(map) => {
                body.push_str("<table class=\"state\"><tbody>");
                for (column, value) in map {
                    let _ = write!(
                        body,
                        "<tr><th scope=\"row\">{}</th><td>{}</td></tr>",
                        escape(&column),
                        escape(&cell(&value))
                    );
                }
                body.push_str("</tbody></table>");
            }
            _ => body.push_str("<p>The row did not exist then.</p>"),
        }
        body.push_str("</section>");
    }
    body.push_str(&exports(&format!("/api/v1/rows/{table_enc}/history"), &query));
    if rows.is_empty() {
        body.push_str("<p>No recorded changes of this row.</p>");
    }
    let _ = write!(body, "<p>{} change(s), oldest first.</p>", rows.len());
    for row in &rows {
        body.push_str("<article class=\"change\">");
        body.push_str(&change_heading(row, false, &seals));
        body.push_str(&diff_table(row));
        body.push_str("</article>");
    }
    Ok(page(&title, &body))
}

async fn blame(State(state): State<Shared>, Path(table): Path<String>, RawQuery(raw): RawQuery) -> Response {
    match blame_page(state, table, raw).await {
        Ok(response) => response,
        Err(error) => page_error(error),
    }
}

async fn blame_page(state: Shared, table: String, raw: Option<String>) -> Result<Response, ApiError> {
    let params = Params::parse(raw.as_deref())?;
    params.only(&["key"])?;
    let key = params.required("key", "42")?;
    let client = state.pool.get().await?;
    let (audited, pk, rows) = api::row_blame(&client, &table, key).await?;
    let key_json = serde_json::to_string(&pk).unwrap_or_default();
    let table_enc = enc(&audited.display());
    let query = format!("key={}", enc(&key_json));
    let mut body = format!(
        "<p><a href=\"/row/{}?{}\">The row's changes</a></p>",
        escape(&table_enc),
        escape(&query)
    );
    body.push_str(&exports(&format!("/api/v1/rows/{table_enc}/blame"), &query));
    body.push_str(
        "<div class=\"scroll\"><table><caption>Each column and the change that set it</caption><thead><tr><th scope=\"col\">column</th><th scope=\"col\">value</th>\
         <th scope=\"col\">changed</th><th scope=\"col\">by</th><th scope=\"col\">why</th><th scope=\"col\">tx</th></tr></thead><tbody>",
    );
    for row in &rows {
        let _ = write!(
            body,
            "<tr><th scope=\"row\">{}</th><td>{}</td><td><a href=\"/row/{}?{}#change-{}\"><time>{}</time></a></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&cell(&row["column_name"])),
            escape(&cell(&row["value"])),
            escape(&table_enc),
            escape(&query),
            escape(&cell(&row["change_id"])),
            escape(&time_text(&row["changed_at"])),
            actor_link(row),
            escape(&cell(&row["reason"])),
            tx_link(row),
        );
    }
    body.push_str("</tbody></table></div>");
    Ok(page(
        &format!("Blame of {} {}", audited.display(), key_text(&pk)),
        &body,
    ))
}

async fn transaction(
    State(state): State<Shared>,
    Path(txid): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    match transaction_page(state, txid, raw).await {
        Ok(response) => response,
        Err(error) => page_error(error),
    }
}

async fn transaction_page(state: Shared, txid: String, raw: Option<String>) -> Result<Response, ApiError> {
    let params = Params::parse(raw.as_deref())?;
    params.only(&["after", "limit"])?;
    let txid: i64 = txid
        .parse()
        .map_err(|_| ApiError::bad_request(format!("a transaction id is a whole number, not `{txid}`")))?;
    let client = state.pool.get().await?;
    let page_of = api::transaction_page(&client, txid, &params).await?;
    let rows = &page_of.changes;
    let total = page_of.total;
    let whole = rows.len() as i64 == total;
    let mut body = match rows.first() {
        Some(first) => format!(
            "<p>{} change(s) at <time>{}</time> as database user {}{}.</p>",
            total,
            escape(&time_text(&first["changed_at"])),
            escape(&cell(&first["db_user"])),
            first["application_name"]
                .as_str()
                .filter(|a| !a.is_empty())
                .map(|a| format!(" via {}", escape(a)))
                .unwrap_or_default()
        ),
        None => format!("<p>{total} change(s).</p>"),
    };
    if !whole {
        let _ = write!(
            body,
            "<p>This page shows {} of them, in the order they were made.</p>",
            rows.len()
        );
    }
    let ids: Vec<i64> = rows.iter().filter_map(|r| r["id"].as_i64()).collect();
    let seals = api::seals_of(&client, rows).await?;
    let sealed = ids
        .iter()
        .filter(|id| seals.get(id.to_string()).is_some())
        .count();
    // (A seal holds whole transactions: a page sealed is the whole of it.)
    if !ids.is_empty() && sealed == ids.len() {
        let _ = write!(
            body,
            "<p class=\"sealed\">Sealed: all {total} change(s) are in a seal.</p>"
        );
    } else if !ids.is_empty() {
        let _ = write!(
            body,
            "<p class=\"unsealed\">{} of {} change(s){} sealed; the rest are not sealed yet.</p>",
            sealed,
            ids.len(),
            if whole { "" } else { " on this page" }
        );
    }
    let limit = params.get("limit").map(|l| format!("limit={}", enc(l)));
    body.push_str(&exports(
        &format!("/api/v1/transactions/{txid}"),
        limit.as_deref().unwrap_or(""),
    ));
    let _ = write!(
        body,
        "<p><a href=\"/revert?tx={txid}\">Plan a revert of this transaction</a></p>"
    );
    for row in rows {
        body.push_str("<article class=\"change\">");
        body.push_str(&change_heading(row, true, &seals));
        body.push_str(&diff_table(row));
        body.push_str("</article>");
    }
    if let Some(next) = &page_of.next {
        let limit = limit.map(|l| format!("{l}&")).unwrap_or_default();
        let _ = write!(
            body,
            "<p><a rel=\"next\" href=\"/tx/{txid}?{}after={}\">Next changes of this transaction →</a></p>",
            escape(&limit),
            escape(&enc(next))
        );
    }
    Ok(page(&format!("Transaction {txid}"), &body))
}

async fn table_as_of(
    State(state): State<Shared>,
    Path(table): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    match table_page(state, table, raw).await {
        Ok(response) => response,
        Err(error) => page_error(error),
    }
}

async fn table_page(state: Shared, table: String, raw: Option<String>) -> Result<Response, ApiError> {
    let params = Params::parse(raw.as_deref())?;
    params.only(&["at"])?;
    let at = params
        .time("at")?
        .unwrap_or(pgtrail_query::TimeArg::Absolute("now".into()));
    let client = state.pool.get().await?;
    let (audited, rows) = api::rows_as_of(&client, &table, &at, 1000).await?;
    let table_enc = enc(&audited.display());
    let mut body = format!(
        "<form method=\"get\" class=\"asof\">{}<button type=\"submit\">Show</button></form>",
        field("at", "As of", params.get("at"), "2026-03-14 09:30, 2h ago")
    );
    body.push_str(&exports(
        &format!("/api/v1/tables/{table_enc}/as-of"),
        &format!("at={}", enc(&at.value())),
    ));
    let columns: Vec<String> = match rows.first() {
        Some(Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    };
    if rows.is_empty() {
        body.push_str("<p>No rows then.</p>");
    } else {
        let _ = write!(
            body,
            "<div class=\"scroll\"><table><caption>{} row(s) as of {} (1000 at most)</caption><thead><tr>",
            rows.len(),
            escape(&at.value())
        );
        for column in &columns {
            let _ = write!(body, "<th scope=\"col\">{}</th>", escape(column));
        }
        body.push_str("</tr></thead><tbody>");
        for row in &rows {
            body.push_str("<tr>");
            for (i, column) in columns.iter().enumerate() {
                let text = escape(&cell(&row[column.as_str()]));
                if i == 0 {
                    // The first column links to the row's page when it is the key.
                    let key: serde_json::Map<String, Value> = audited
                        .key_columns
                        .iter()
                        .map(|k| (k.clone(), row[k.as_str()].clone()))
                        .collect();
                    if audited.key_columns.is_empty() {
                        let _ = write!(body, "<td>{text}</td>");
                    } else {
                        let key = serde_json::to_string(&key).unwrap_or_default();
                        let _ = write!(
                            body,
                            "<td><a href=\"/row/{}?key={}\">{text}</a></td>",
                            escape(&table_enc),
                            escape(&enc(&key))
                        );
                    }
                } else {
                    let _ = write!(body, "<td>{text}</td>");
                }
            }
            body.push_str("</tr>");
        }
        body.push_str("</tbody></table></div>");
    }
    Ok(page(
        &format!("{} as of {}", audited.display(), at.value()),
        &body,
    ))
}

// ---- login ----

async fn login_form(RawQuery(raw): RawQuery) -> Response {
    let params = Params::parse(raw.as_deref()).unwrap_or_default();
    let next = params
        .get("next")
        .filter(|n| n.starts_with('/') && !n.starts_with("//"))
        .unwrap_or("/");
    page(
        "Log in",
        &format!(
            "<form method=\"post\" action=\"/login\" class=\"login\"><input type=\"hidden\" name=\"next\" value=\"{}\">\
             <label for=\"f-token\">Token</label><input id=\"f-token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required>\
             <button type=\"submit\">Log in</button></form>",
            escape(next)
        ),
    )
}

#[derive(serde::Deserialize)]
struct Login {
    token: String,
    next: Option<String>,
}

async fn login(
    State(state): State<Shared>,
    headers: axum::http::HeaderMap,
    Form(form): Form<Login>,
) -> Response {
    if state.auth.check(&form.token).is_none() {
        let mut response = page(
            "Log in",
            "<p class=\"error\" role=\"alert\">That token is not one this server accepts.</p><p><a href=\"/login\">Try again</a></p>",
        );
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        return response;
    }
    let next = form
        .next
        .filter(|n| n.starts_with('/') && !n.starts_with("//"))
        .unwrap_or_else(|| "/".into());
    let mut response = Redirect::to(&url_encode_path(&next)).into_response();
    // Over HTTPS (served directly or behind a TLS proxy) the cookie is sent over HTTPS only.
    let secure = state.https
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    if let Ok(cookie) = HeaderValue::from_str(&format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/{}",
        form.token.trim(),
        if secure { "; Secure" } else { "" }
    )) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// A local path with its query, kept as it came (only characters that
/// cannot be in a header are encoded).
fn url_encode_path(next: &str) -> String {
    match next.split_once('?') {
        Some((path, query)) => format!(
            "{}?{}",
            url_encode(path),
            query.replace(|c: char| c.is_control(), "")
        ),
        None => url_encode(next),
    }
}

async fn logout() -> Response {
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("pgtrail_token=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    response
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_changed_part_of_text_is_marked() {
        assert_eq!(
            marked(
                Some(&json!("ann@old.example")),
                Some(&json!("ann@new.example")),
                "del"
            ),
            "ann@<mark class=del>old</mark>.example"
        );
        assert_eq!(
            marked(Some(&json!("<b>")), None, "ins"),
            "<mark class=ins>&lt;b&gt;</mark>"
        );
        assert_eq!(marked(None, Some(&json!(1)), "ins"), "<span class=dim>∅</span>");
        assert_eq!(
            marked(Some(&json!({"redacted": "ab"})), Some(&json!("x")), "ins"),
            "<span class=dim>[redacted]</span>"
        );
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(enc("a b/c=d"), "a%20b%2Fc%3Dd");
    }
}
