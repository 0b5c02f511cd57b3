//! Large UPDATE statements take a bulk path (JSON built only for the columns
//! that changed). It must record exactly what the row-by-row static path
//! records: the same rows, keys, old and new values and changed fields.

use serde_json::Value;
use tokio_postgres::Client;

use crate::support::audited_db;

/// Every column type here compares natively, so large statements take the bulk path.
const TABLE: &str = "(id int PRIMARY KEY DEFERRABLE INITIALLY DEFERRED, email text, name text, amount numeric(12,2), score numeric,
                      tags text[], doc jsonb, data jsonb, at timestamptz, secret text, updated_at timestamptz)";
/// `json` has no equality operator: large statements fall back to the static path.
const TABLE_WITH_JSON: &str = "(id int PRIMARY KEY DEFERRABLE INITIALLY DEFERRED, email text, name text, amount numeric(12,2), score numeric,
                      tags text[], doc json, data jsonb, at timestamptz, secret text, updated_at timestamptz)";

const CONFIG: &str = r#"
[capture]
ignore_columns = ["updated_at"]
redact_columns = ["secret"]
"#;

/// The same UPDATE, as one statement on `bulk_t` and in slices of 50 rows on `static_t`.
const UPDATES: [&str; 6] = [
    // some rows really change, some keep their value, some change one column only
    "UPDATE {t} SET email = CASE WHEN id % 3 = 0 THEN email ELSE email || '.x' END,
                    name = CASE WHEN id % 5 = 0 THEN 'five' ELSE name END, updated_at = now() WHERE {slice}",
    // numeric scale, NULLs, arrays, json (no equality operator) and jsonb
    "UPDATE {t} SET amount = amount * 1, score = CASE WHEN id % 2 = 0 THEN NULL ELSE score::numeric(20,4) END,
                    tags = tags || ARRAY['n'], doc = json_build_object('v', id), data = data || '{\"k\": 1}' WHERE {slice}",
    // a redacted column
    "UPDATE {t} SET secret = CASE WHEN id % 4 = 0 THEN 'pw-' || id ELSE secret END WHERE {slice}",
    // the key itself
    "UPDATE {t} SET id = id + 10000 WHERE {slice}",
    // keys swapped between rows: every new key is an old key, yet no row kept its key
    "UPDATE {t} SET id = CASE WHEN id % 2 = 0 THEN id - 1 ELSE id + 1 END WHERE {slice}",
    // nothing changes at all
    "UPDATE {t} SET email = email WHERE {slice}",
];

async fn trail_of(client: &Client, table: &str) -> Vec<(Value, Option<Value>, Value, Value, Vec<String>)> {
    client
        .query(
            "SELECT c.pk, c.old_pk, c.old_values, c.new_values, v.changed_fields
             FROM pgtrail.change c JOIN pgtrail.changes v USING (id)
             JOIN pgtrail.audited_table t ON t.id = c.table_id
             WHERE t.table_name = $1 AND c.op = 'U' ORDER BY c.pk->>'id', c.id",
            &[&table],
        )
        .await
        .expect("trail readable")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

#[tokio::test]
async fn the_bulk_path_records_exactly_what_the_row_by_row_path_records() {
    let bulk_calls = compare_paths(TABLE).await;
    assert!(
        bulk_calls >= UPDATES.len() as i64 - 1,
        "the bulk path was taken: {bulk_calls} calls"
    );
}

#[tokio::test]
async fn a_table_with_a_json_column_falls_back_to_the_static_path_and_records_the_same() {
    assert_eq!(compare_paths(TABLE_WITH_JSON).await, 0);
}

/// Runs UPDATES both ways, checks the trails are identical, and returns how
/// many times the bulk path built its INSERT.
async fn compare_paths(columns: &str) -> i64 {
    let schema = format!(
        "CREATE TABLE bulk_t {columns}; CREATE TABLE static_t {columns};
         INSERT INTO bulk_t SELECT g, 'u' || g || '@x', 'n' || g, g / 7.0, g * 1.5, ARRAY['a', g::text],
                                   json_build_object('g', g), jsonb_build_object('g', g),
                                   '2026-01-01'::timestamptz + g * interval '1 minute', 'pw', now()
                            FROM generate_series(1, 1000) g;
         INSERT INTO static_t SELECT * FROM bulk_t;"
    );
    let db = audited_db(&schema, CONFIG).await;
    let mut bulk_calls = 0;
    for update in UPDATES {
        let bulk = update.replace("{t}", "bulk_t").replace("{slice}", "true");
        let calls = db
            .client
            .simple_query(&format!(
                "BEGIN; SET LOCAL track_functions = 'all'; {bulk};
                 SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions WHERE funcname = '_bulk_insert_sql';
                 COMMIT;"
            ))
            .await
            .unwrap_or_else(|e| panic!("{bulk}: {e}"));
        for message in calls {
            if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
                bulk_calls += row.get(0).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
            }
        }
        for low in (0..1000).step_by(50) {
            let range = format!("(id % 10000) BETWEEN {} AND {}", low + 1, low + 50);
            let small = update.replace("{t}", "static_t").replace("{slice}", &range);
            db.client
                .batch_execute(&small)
                .await
                .unwrap_or_else(|e| panic!("{small}: {e}"));
        }
    }
    let bulk = trail_of(&db.client, "bulk_t").await;
    let stat = trail_of(&db.client, "static_t").await;
    assert!(bulk.len() > 2000, "the updates changed rows: {}", bulk.len());
    assert_eq!(bulk.len(), stat.len());
    for (b, s) in bulk.iter().zip(&stat) {
        assert_eq!(b, s);
    }
    bulk_calls
}
