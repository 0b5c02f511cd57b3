//! The OpenAPI 3.1 document the server serves at `/api/openapi.json`,
//! maintained by hand beside the routes: a test checks that it lists
//! exactly [`API_PATHS`], and the server's tests call every one of them.

use serde_json::{Value, json};

/// Every API path the server answers, as the document writes them.
pub const API_PATHS: &[&str] = &[
    "/healthz",
    "/api/openapi.json",
    "/api/v1/tables",
    "/api/v1/changes",
    "/api/v1/rows/{table}/history",
    "/api/v1/rows/{table}/state",
    "/api/v1/rows/{table}/blame",
    "/api/v1/tables/{table}/as-of",
    "/api/v1/transactions/{txid}",
    "/api/v1/reports/activity",
    "/api/v1/proof",
    "/api/v1/revert/plan",
    "/api/v1/revert",
];

fn query(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": {"type": "string"}})
}

fn required_query(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": true, "description": description, "schema": {"type": "string"}})
}

fn path(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": {"type": "string"}})
}

fn table_param() -> Value {
    path("table", "an audited table: `name` or `schema.name`")
}

fn key_param() -> Value {
    required_query(
        "key",
        "the row's key: `42` for a one-column key, `col=value,...`, or a JSON object",
    )
}

fn format_param() -> Value {
    query("format", "`json` (default) or `csv` (an attachment)")
}

fn operation(summary: &str, parameters: Vec<Value>, ok: &str) -> Value {
    json!({
        "get": {
            "summary": summary,
            "parameters": parameters,
            "security": [{"bearer": []}],
            "responses": {
                "200": {"description": ok},
                "400": {"$ref": "#/components/responses/Error"},
                "401": {"$ref": "#/components/responses/Error"},
                "404": {"$ref": "#/components/responses/Error"}
            }
        }
    })
}

/// The document.
pub fn document() -> Value {
    let time = "a moment: `2026-03-14`, `2026-03-14 09:30`, RFC 3339, `now`, or `2h ago`, `3 days ago`";
    let mut paths = serde_json::Map::new();
    paths.insert(
        "/healthz".into(),
        json!({"get": {"summary": "Whether the server can reach the database (no token needed)", "security": [],
                       "responses": {"200": {"description": "`{\"status\": \"ok\"}`"}, "503": {"$ref": "#/components/responses/Error"}}}}),
    );
    paths.insert(
        "/api/openapi.json".into(),
        operation("This document", vec![], "the OpenAPI document"),
    );
    paths.insert(
        "/api/v1/tables".into(),
        operation(
            "The audited tables and their keys",
            vec![],
            "`{\"tables\": [{table_schema, table_name, key_columns, detached_at}]}`",
        ),
    );
    paths.insert(
        "/api/v1/changes".into(),
        operation(
            "Changes, newest first, with the filters of `pgtrail log`, one page at a time (keyset pagination)",
            vec![
                query("table", "an audited table"),
                query("key", "a row's key (needs `table`)"),
                query("actor", "actor id or name"),
                query("actor_type", "e.g. user, service, migration"),
                query("op", "INSERT, UPDATE, DELETE or TRUNCATE (i, u, d, t)"),
                query("field", "a changed column"),
                query("tx", "a transaction id"),
                query("migration", "the context's migration"),
                query("context", "`key=value` on the context; repeatable, all must match"),
                query("since", time),
                query("until", time),
                query("q", "free text in the key, old or new values, actor or reason"),
                query("after", "the `next` of the previous page"),
                query("limit", "changes per page, 1 to 500 (default 50)"),
                format_param(),
            ],
            "`{\"changes\": [change], \"next\": cursor or null}`; each change as in pgtrail.changes; \
             as CSV the next page is a `Link: <...>; rel=\"next\"` header (the same filters, `after` = `next`)",
        ),
    );
    paths.insert(
        "/api/v1/rows/{table}/history".into(),
        operation(
            "One row's changes, oldest first, and the seals that hold them",
            vec![table_param(), key_param(), format_param()],
            "`{\"table\", \"key\", \"changes\": [change], \"seals\": {change_id: {seal_id, sealed_at}}}`",
        ),
    );
    paths.insert(
        "/api/v1/rows/{table}/state".into(),
        operation(
            "One row as it was at a moment (pgtrail.row_as_of)",
            vec![table_param(), key_param(), query("at", time)],
            "`{\"table\", \"key\", \"at\", \"row\": object or null}`",
        ),
    );
    paths.insert(
        "/api/v1/rows/{table}/blame".into(),
        operation(
            "Per column of one row: its value and the change that set it",
            vec![table_param(), key_param(), format_param()],
            "`{\"table\", \"key\", \"columns\": [{column_name, value, changed_at, change_id, txid, actor_id, actor_name, actor_type, reason}]}`",
        ),
    );
    paths.insert(
        "/api/v1/tables/{table}/as-of".into(),
        operation(
            "A table's rows as they were at a moment (pgtrail.table_as_of)",
            vec![
                table_param(),
                query("at", time),
                query("limit", "rows at most, 1 to 10000 (default 1000)"),
            ],
            "`{\"table\", \"at\", \"rows\": [object]}`",
        ),
    );
    paths.insert(
        "/api/v1/transactions/{txid}".into(),
        operation(
            "What one transaction did, in the order it was done, one page at a time (keyset pagination), and the seals that hold it",
            vec![
                path("txid", "the transaction id (txid of pgtrail.changes)"),
                query("after", "the `next` of the previous page"),
                query("limit", "changes per page, 1 to 500 (default 50)"),
                format_param(),
            ],
            "`{\"txid\", \"change_count\": all the transaction's changes, \"changes\": [change] (by id), \"next\": cursor or null, \"seals\": {...}}`; as CSV the next page is a `Link: <...>; rel=\"next\"` header",
        ),
    );
    paths.insert(
        "/api/v1/reports/activity".into(),
        operation(
            "The activity report of `pgtrail report`: by actor, by table and kind, and bursts",
            vec![
                query("since", time),
                query("until", time),
                query(
                    "burst",
                    "a burst is more than this many changes by one actor (default 100)",
                ),
                query("window", "within this many minutes (default 10)"),
            ],
            "`{\"since\", \"until\", \"burst\", \"by_actor\", \"by_table\", \"bursts\"}`",
        ),
    );
    paths.insert(
        "/api/v1/proof".into(),
        operation(
            "What the proofs say: the last seal and the capture gaps touching a window or a table",
            vec![
                query("since", time),
                query("until", time),
                query("table", "an audited table"),
            ],
            "`{\"last_seal\", \"sealed_up_to\", \"capture_gaps\": [...]}`",
        ),
    );
    paths.insert(
        "/api/v1/revert/plan".into(),
        operation(
            "The plan of a revert (nothing is changed); apply it with POST /api/v1/revert and its `plan_id`",
            vec![
                query(
                    "tx",
                    "a transaction to revert; repeatable, or several separated by commas",
                ),
                query("table", "a row's table (with `key`)"),
                query("key", "the row's key"),
                query("to", "the row back to how it was at this moment"),
                query(
                    "after_change",
                    "the row back to how it was right after this change",
                ),
                query("actor", "an actor's changes (with `since`, optional `until`)"),
                query(
                    "context",
                    "the changes whose context has key=value, e.g. request_id=r-42 (with `since`, optional `until`); repeatable",
                ),
                query(
                    "migration",
                    "the changes of this migration: context=migration=NAME (with `since`)",
                ),
                query("since", time),
                query("until", time),
                query(
                    "only",
                    "only changes of this table; repeatable, or several separated by commas",
                ),
                query(
                    "max_rows",
                    "the most row changes the revert may undo (default 1,000,000)",
                ),
                query("conflicts", "refuse (default), skip or cascade"),
            ],
            "`{\"selector\", \"conflicts\", \"rows\", \"plan\": [item], \"plan_id\", \"applied\": false}`",
        ),
    );
    paths.insert(
        "/api/v1/revert".into(),
        json!({"post": {
            "summary": "Apply a revert (operator tokens only): the parameters of its plan, its `plan_id` (refused with 409 when the plan would now differ) and a `reason`; recorded with the token's name as actor",
            "security": [{"bearer": []}],
            "requestBody": {"required": true, "content": {"application/x-www-form-urlencoded": {"schema": {
                "type": "object",
                "required": ["reason", "plan_id"],
                "properties": {
                    "tx": {"type": "string", "description": "as for the plan; so are table, key, to, after_change, actor, context, migration, since, until, only, max_rows, conflicts"},
                    "reason": {"type": "string", "description": "why (kept with the revert's changes)"},
                    "plan_id": {"type": "string", "description": "the plan_id of the plan that was shown"},
                    "csrf": {"type": "string", "description": "with the login cookie instead of a bearer token: the form's CSRF token"}
                }
            }}}},
            "responses": {
                "200": {"description": "`{\"applied\": true, \"txid\", \"rows\", \"plan\": [item], \"actor\"}`"},
                "400": {"$ref": "#/components/responses/Error"},
                "401": {"$ref": "#/components/responses/Error"},
                "403": {"$ref": "#/components/responses/Error"},
                "409": {"$ref": "#/components/responses/Error"}
            }
        }}),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "pgtrail",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Who changed what, when, how and why: the audit trail of a PostgreSQL database, read-only but for reverts applied by operator tokens. \
                            Every endpoint but /healthz needs `Authorization: Bearer TOKEN` unless the server allows anonymous reading."
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Error": {
                    "description": "What was wrong and how to fix it",
                    "content": {"application/json": {"schema": {
                        "type": "object",
                        "properties": {"error": {"type": "object", "properties": {
                            "status": {"type": "integer"},
                            "message": {"type": "string"},
                            "help": {"type": ["string", "null"]}
                        }}}
                    }}}
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_every_path_and_no_other() {
        let document = document();
        let mut listed: Vec<&str> = document["paths"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = API_PATHS.to_vec();
        listed.sort_unstable();
        expected.sort_unstable();
        assert_eq!(listed, expected);
    }
}
