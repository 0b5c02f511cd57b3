//! Reverts over HTTP: the plan (`GET /api/v1/revert/plan`, the page
//! `/revert`) for every token, and applying it (`POST /api/v1/revert`, the
//! page's form) for operator tokens only, under the contract of
//! `pgtrail revert`: the plan is shown first and its `plan_id` sent back
//! (a revert that would now do something else is refused), a reason is
//! required, the conflict policy is the caller's, and the revert's changes
//! are recorded with the operator's token name as their actor.
//!
//! Applying needs writing: it runs on a connection of the server's own
//! database user, not switched to the reader role, so that user needs what
//! `pgtrail revert` needs (EXECUTE on `pgtrail.revert`, which the reader
//! role does not have, and the right to write the reverted tables). A form
//! posted with the login cookie carries a CSRF token derived from the
//! session's token (and the middleware refuses cross-site posts).

use std::fmt::Write;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use pgtrail_config::TokenRole;
use pgtrail_query::{Audited, TimeArg, parse_context_filter, parse_time};
use pgtrail_revert::apply::ApplyOptions;
use pgtrail_revert::{Plan, Policy, Request, RevertError, RowTarget, Selector};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use crate::Shared;
use crate::api::Params;
use crate::auth::{Who, cookie_token};
use crate::error::ApiError;
use crate::ui::{escape, page, page_error};

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/revert/plan", get(plan_api))
        .route("/api/v1/revert", post(apply_api))
        .route("/revert", get(plan_page).post(apply_page))
}

/// The parameters that say what to revert and how: the selectors of
/// `pgtrail revert` (`tx`; `table` and `key` with `to` or `after_change`;
/// `actor`, or `context` and `migration`, with `since` and `until`), its
/// table restriction (`only`), cap (`max_rows`) and conflict policy.
const SELECTOR: [&str; 13] = [
    "tx",
    "table",
    "key",
    "to",
    "after_change",
    "actor",
    "context",
    "migration",
    "since",
    "until",
    "only",
    "max_rows",
    "conflicts",
];

/// What applying takes besides the selector.
const APPLYING: [&str; 3] = ["reason", "plan_id", "csrf"];

/// What a revert is asked for with, and an example of each.
const SAY_WHAT: &str = "?tx=TXID (repeatable); ?table=T&key=K (&to=MOMENT or &after_change=ID); \
                        ?actor=A&since=MOMENT (&until=MOMENT); or ?context=KEY=VALUE (repeatable; \
                        migration=NAME is context=migration=NAME)&since=MOMENT (&until=MOMENT); \
                        with &only=TABLE (repeatable) to keep to some tables";

/// Whether the parameters name any selector (the page without one shows
/// the form to choose).
fn has_selector(params: &Params) -> bool {
    ["tx", "table", "actor", "context", "migration"]
        .iter()
        .any(|name| params.get(name).is_some())
}

/// The revert request the parameters describe.
async fn request_of(client: &Client, params: &Params) -> Result<Request, ApiError> {
    let by_context = params.get("context").is_some() || params.get("migration").is_some();
    let kinds = [
        params.get("tx").is_some(),
        params.get("table").is_some(),
        params.get("actor").is_some(),
        by_context,
    ];
    match kinds.iter().filter(|k| **k).count() {
        0 => return Err(ApiError::bad_request("say what to revert").with_help(SAY_WHAT)),
        1 => {}
        _ => {
            return Err(ApiError::bad_request(
                "say what to revert with exactly one of `tx`, `table` and `key`, `actor`, or `context` (or `migration`)",
            )
            .with_help("`only` keeps a selection to some tables; `table` names the one row's table"));
        }
    }
    let selector = if kinds[0] {
        let txids = params
            .all("tx")
            .iter()
            .map(|t| {
                t.trim()
                    .parse::<i64>()
                    .map_err(|_| ApiError::bad_request(format!("`tx` must be a transaction id, not `{t}`")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Selector::Transactions(txids)
    } else if let Some(table) = params.get("table") {
        let audited = Audited::resolve(client, table).await?;
        let key = audited.key(params.required("key", "42")?)?;
        let to = match (params.get("to"), params.integer("after_change")?) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request("give `to` or `after_change`, not both"));
            }
            (Some(at), None) => RowTarget::Time(absolute(client, &parse_time(at)?).await?),
            (None, Some(id)) => RowTarget::AfterChange(id),
            (None, None) => RowTarget::LastChange,
        };
        Selector::Row {
            table: audited.display(),
            key,
            to,
        }
    } else {
        let Some(since) = params.time("since")? else {
            return Err(ApiError::bad_request("`actor` and `context` need `since`")
                .with_help("e.g. ?actor=ann&since=2h ago, or ?context=request_id=r-42&since=1d ago"));
        };
        let since = absolute(client, &since).await?;
        let until = match params.time("until")? {
            Some(until) => Some(absolute(client, &until).await?),
            None => None,
        };
        match params.get("actor") {
            Some(actor) => Selector::Actor {
                actor: actor.to_string(),
                since,
                until,
            },
            None => {
                let mut context = serde_json::Map::new();
                for pair in params.all("context") {
                    let (key, value) = parse_context_filter(pair)?;
                    if context.insert(key.clone(), Value::String(value)).is_some() {
                        return Err(ApiError::bad_request(format!(
                            "context key `{key}` is given twice"
                        )));
                    }
                }
                if let Some(migration) = params.get("migration")
                    && context
                        .insert("migration".into(), Value::String(migration.to_string()))
                        .is_some()
                {
                    return Err(ApiError::bad_request(
                        "`migration` and `context=migration=...` both given",
                    ));
                }
                Selector::Context {
                    context,
                    since,
                    until,
                }
            }
        }
    };
    let mut request = Request::new(selector);
    request.tables = params.all("only").into_iter().map(str::to_string).collect();
    if let Some(max_rows) = params.integer("max_rows")? {
        if max_rows < 1 {
            return Err(ApiError::bad_request(format!(
                "`max_rows` must be 1 or more, not {max_rows}"
            )));
        }
        request.max_rows = Some(max_rows);
    }
    if let Some(policy) = params.get("conflicts") {
        request.policy = policy
            .parse::<Policy>()
            .map_err(|e| ApiError::bad_request(e).with_help("conflicts=refuse, skip or cascade"))?;
    }
    Ok(request)
}

/// A moment as an absolute `timestamptz` text, as the revert selector takes it.
async fn absolute(client: &Client, at: &TimeArg) -> Result<String, ApiError> {
    let sql = format!("SELECT to_jsonb({})#>>'{{}}'", at.sql(1));
    Ok(client.query_one(&sql, &[&at.value()]).await?.get(0))
}

/// The HTTP answer to a revert's error (the CLI's message and help).
fn revert_error(error: RevertError) -> ApiError {
    let status = match &error {
        RevertError::Conflicts { .. } | RevertError::Changed(_) => StatusCode::CONFLICT,
        RevertError::Invalid { .. } => StatusCode::BAD_REQUEST,
        RevertError::NotInstalled => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::from_cli_text(status, &error.to_string())
}

/// The plan of `request`. Its SQL works in temporary tables: a read-write
/// transaction (the reader's connections default to read-only), rolled
/// back after, so the plan leaves nothing behind.
async fn plan_of(client: &Client, request: &Request) -> Result<Plan, ApiError> {
    client.batch_execute("BEGIN READ WRITE").await?;
    let planned = pgtrail_revert::plan::plan(client, request).await;
    client.batch_execute("ROLLBACK").await?;
    planned.map_err(revert_error)
}

/// What identifies a plan: the SHA-256 of what its statements do (the
/// same statements, rows and changes, in the same order).
fn plan_id(plan: &Plan) -> String {
    let print = serde_json::to_string(&plan.fingerprint()).unwrap_or_default();
    Sha256::digest(print.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The CSRF token of a login session: derived from its token, so a page of
/// another site can neither read nor guess it.
fn csrf_of(session_token: &str) -> String {
    Sha256::digest(format!("pgtrail-csrf:{}", session_token.trim()).as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn plan_api(State(state): State<Shared>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let params = split_lists(Params::parse(raw.as_deref())?);
    params.only(&SELECTOR)?;
    let client = state.pool.get().await?;
    let request = request_of(&client, &params).await?;
    let plan = plan_of(&client, &request).await?;
    Ok(Json(json!({
        "selector": request.to_json(),
        "conflicts": request.policy.as_str(),
        "rows": plan.rows(),
        "plan": plan.items,
        "plan_id": plan_id(&plan),
        "applied": false,
    }))
    .into_response())
}

/// A revert applied: its transaction and what it did.
struct Done {
    txid: i64,
    plan: Plan,
}

/// Applies the revert `params` describe, for `who`, checking the role, the
/// CSRF token (requests without a bearer token), the reason and the plan id.
async fn apply(state: &Shared, who: &Who, headers: &HeaderMap, params: &Params) -> Result<Done, ApiError> {
    if who.1 != TokenRole::Operator {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "applying a revert needs an operator token; `{}` is a reader",
                who.0
            ),
        )
        .with_help("a reader may see the plan (GET /api/v1/revert/plan); an operator token applies it"));
    }
    let known: Vec<&str> = SELECTOR.iter().chain(APPLYING.iter()).copied().collect();
    params.only(&known)?;
    if !headers.contains_key(header::AUTHORIZATION) {
        let expected = cookie_token(headers).map(|t| csrf_of(&t));
        if expected.is_none() || params.get("csrf") != expected.as_deref() {
            return Err(
                ApiError::new(StatusCode::FORBIDDEN, "the form's CSRF token is missing or wrong").with_help(
                    "apply the revert from the plan's page (/revert), or send `Authorization: Bearer TOKEN`",
                ),
            );
        }
    }
    let reason = params
        .required("reason", "ticket 4211: undo the batch script")?
        .trim()
        .to_string();
    let shown = params.required("plan_id", "the plan_id of GET /api/v1/revert/plan")?;
    let mut client = state.pool.open_writer().await?;
    let request = request_of(&client, params).await?;
    // Planned once, by the revert itself (its plan made in its transaction,
    // conflicts and all), and committed only when it is the plan shown:
    // the same check as planning first and comparing, without that plan.
    // (Its statements written straight from the plan's working tables
    // carry no rows in the answer; the plan shown has them.)
    let options = ApplyOptions {
        reason,
        actor: Some(who.0.clone()),
        expected: None,
    };
    let mut changed = false;
    let applied = pgtrail_revert::apply::apply_if(&mut client, &request, &options, |plan| {
        changed = plan_id(plan) != shown;
        !changed
    })
    .await;
    if changed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "the trail changed since the plan was shown: the revert would now do something else; nothing was changed",
        )
        .with_help("plan it again, review the new plan and apply that one"));
    }
    let applied = applied.map_err(revert_error)?;
    tracing::info!(
        target: "pgtrail::serve::revert",
        token = %who.0,
        txid = applied.txid,
        rows = applied.plan.rows(),
        "revert applied"
    );
    Ok(Done {
        txid: applied.txid,
        plan: applied.plan,
    })
}

async fn apply_api(
    State(state): State<Shared>,
    Extension(who): Extension<Who>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    let params = split_lists(Params::parse(Some(&body))?);
    let done = apply(&state, &who, &headers, &params).await?;
    Ok(Json(json!({
        "applied": true,
        "txid": done.txid,
        "rows": done.plan.rows(),
        "plan": done.plan.items,
        "actor": who.0,
    }))
    .into_response())
}

async fn apply_page(
    State(state): State<Shared>,
    Extension(who): Extension<Who>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let params = match Params::parse(Some(&body)) {
        Ok(params) => split_lists(params),
        Err(error) => return page_error(error),
    };
    match apply(&state, &who, &headers, &params).await {
        Ok(done) => Redirect::to(&format!("/tx/{}", done.txid)).into_response(),
        Err(error) => page_error(error),
    }
}

async fn plan_page(
    State(state): State<Shared>,
    Extension(who): Extension<Who>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    match plan_page_body(state, who, headers, raw).await {
        Ok(response) => response,
        Err(error) => page_error(error),
    }
}

/// The form that chooses what to revert, filled in with `params`: one
/// field per selector parameter; several transactions or tables go in one
/// field, separated by commas.
fn selector_form(params: &Params, policy: &str) -> String {
    let value = |name: &str| escape(&params.all(name).join(", "));
    let field = |id: &str, name: &str, label: &str, placeholder: &str| {
        format!(
            "<div><label for=\"{id}\">{label}</label><input id=\"{id}\" name=\"{name}\" value=\"{}\" placeholder=\"{placeholder}\"></div>",
            value(name)
        )
    };
    let mut form = String::from("<form method=\"get\" action=\"/revert\" class=\"selector\">");
    form.push_str("<fieldset><legend>Transactions</legend>");
    form.push_str(&field("f-tx", "tx", "Transaction ids", "81234, 81235"));
    form.push_str("</fieldset><fieldset><legend>Or one row</legend>");
    form.push_str(&field("f-table", "table", "Table", "users"));
    form.push_str(&field("f-key", "key", "Key", "42 or std_no=901234"));
    form.push_str(&field("f-to", "to", "Back to the moment", "2026-12-01 03:00"));
    form.push_str(&field(
        "f-after-change",
        "after_change",
        "Or back to right after change",
        "change id",
    ));
    form.push_str("</fieldset><fieldset><legend>Or an actor's or a context's changes in a window</legend>");
    form.push_str(&field("f-actor", "actor", "Actor", "batch@system"));
    // One field per context pair given, and one more.
    let contexts = params.all("context");
    for (i, pair) in contexts.iter().map(|p| Some(*p)).chain([None]).enumerate() {
        let id = if i == 0 {
            "f-context".to_string()
        } else {
            format!("f-context-{}", i + 1)
        };
        let _ = write!(
            form,
            "<div><label for=\"{id}\">Context key=value</label><input id=\"{id}\" name=\"context\" value=\"{}\" placeholder=\"request_id=r-42\"></div>",
            escape(pair.unwrap_or(""))
        );
    }
    form.push_str(&field(
        "f-migration",
        "migration",
        "Migration",
        "0042_rename_acme",
    ));
    form.push_str(&field("f-since", "since", "Since", "2h ago"));
    form.push_str(&field("f-until", "until", "Until", "1h ago"));
    form.push_str("</fieldset><fieldset><legend>Limits</legend>");
    form.push_str(&field(
        "f-only",
        "only",
        "Only these tables",
        "orders, order_items",
    ));
    form.push_str(&field("f-max-rows", "max_rows", "At most rows", "1000000"));
    form.push_str(
        "<div><label for=\"f-conflicts\">Conflicts</label><select id=\"f-conflicts\" name=\"conflicts\">",
    );
    for (value, label) in [
        ("refuse", "refuse: change nothing"),
        ("skip", "skip: leave those rows"),
        ("cascade", "cascade: revert later changes too"),
    ] {
        let _ = write!(
            form,
            "<option value=\"{value}\"{}>{label}</option>",
            if value == policy { " selected" } else { "" }
        );
    }
    form.push_str("</select></div></fieldset><button type=\"submit\">Plan</button></form>");
    form
}

/// The parameters with comma lists split (the form's fields): `tx=1, 2` is `tx=1&tx=2`,
/// `only=a, b` is `only=a&only=b`.
fn split_lists(params: Params) -> Params {
    Params(
        params
            .0
            .into_iter()
            .flat_map(|(name, value)| {
                if name == "tx" || name == "only" {
                    value
                        .split(',')
                        .map(|v| v.trim().to_string())
                        .filter(|v| !v.is_empty())
                        .map(|v| (name.clone(), v))
                        .collect::<Vec<_>>()
                } else {
                    vec![(name, value)]
                }
            })
            .collect(),
    )
}

async fn plan_page_body(
    state: Shared,
    who: Who,
    headers: HeaderMap,
    raw: Option<String>,
) -> Result<Response, ApiError> {
    let params = split_lists(Params::parse(raw.as_deref())?);
    params.only(&SELECTOR)?;
    if !has_selector(&params) {
        let mut body = String::from(
            "<p>Choose what to revert, as with <code>pgtrail revert</code>: transactions, one row, or an actor's \
             or a context's changes in a window (a request id, a migration). The plan comes first; nothing is \
             changed until an operator applies it.</p>",
        );
        body.push_str(&selector_form(
            &params,
            params.get("conflicts").unwrap_or("refuse"),
        ));
        return Ok(page("Revert", &body));
    }
    let client = state.pool.get().await?;
    let request = request_of(&client, &params).await?;
    let plan = plan_of(&client, &request).await?;
    let policy = request.policy.as_str();
    let mut body = String::new();
    let _ = write!(
        body,
        "<p>What reverting would do: {} row(s) written, {} conflict(s) with later changes. Nothing is changed until an operator applies it.</p>",
        plan.rows(),
        plan.conflicts().count()
    );
    let selector_fields: String = params
        .0
        .iter()
        .filter(|(name, _)| name != "conflicts")
        .map(|(name, value)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape(name),
                escape(value)
            )
        })
        .collect();
    body.push_str(
        "<table class=\"plan\"><caption>The plan</caption><thead><tr><th scope=\"col\">Step</th><th scope=\"col\">Operation</th>\
         <th scope=\"col\">Table</th><th scope=\"col\">Key</th><th scope=\"col\">Rows</th><th scope=\"col\">Note</th></tr></thead><tbody>",
    );
    for item in &plan.items {
        let note = item
            .conflict
            .as_ref()
            .and_then(|c| c["message"].as_str().map(str::to_string))
            .or_else(|| item.note.clone())
            .unwrap_or_default();
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            item.step.map(|s| s.to_string()).unwrap_or_default(),
            escape(item.operation.as_str()),
            escape(item.table.as_deref().unwrap_or("")),
            escape(&item.key.as_ref().map(|k| k.to_string()).unwrap_or_default()),
            item.rows.map(|r| r.to_string()).unwrap_or_default(),
            escape(&note)
        );
    }
    body.push_str("</tbody></table>");
    if who.1 != TokenRole::Operator {
        body.push_str("<p>Applying a revert needs an operator token.</p>");
    } else if plan.conflicts().count() > 0 && request.policy == Policy::Refuse {
        body.push_str(
            "<p class=\"warn\">Later changes conflict: with <em>refuse</em> nothing can be applied. Choose skip or cascade below, or leave it.</p>",
        );
    } else {
        body.push_str("<form method=\"post\" action=\"/revert\" class=\"apply\">");
        body.push_str(&selector_fields);
        let _ = write!(
            body,
            "<input type=\"hidden\" name=\"conflicts\" value=\"{}\"><input type=\"hidden\" name=\"plan_id\" value=\"{}\">",
            escape(policy),
            escape(&plan_id(&plan))
        );
        if let Some(token) = cookie_token(&headers) {
            let _ = write!(
                body,
                "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
                escape(&csrf_of(&token))
            );
        }
        let _ = write!(
            body,
            "<label for=\"f-reason\">Reason (kept with the revert's changes)</label>\
             <input id=\"f-reason\" name=\"reason\" required placeholder=\"ticket 4211: undo the batch script\">\
             <button type=\"submit\">Apply this revert as {}</button></form>",
            escape(&who.0)
        );
    }
    // Changing the selection or the conflict policy shows the new plan.
    body.push_str("<h2>Change what to revert</h2>");
    body.push_str(&selector_form(&params, policy));
    Ok(page("Revert", &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csrf_token_depends_on_the_session_token() {
        assert_eq!(csrf_of("a"), csrf_of(" a "));
        assert_ne!(csrf_of("a"), csrf_of("b"));
        assert_eq!(csrf_of("a").len(), 64);
    }
}
