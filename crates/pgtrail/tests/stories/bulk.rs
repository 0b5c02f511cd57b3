//! An UPDATE of many rows pairs old and new rows by their position in the
//! statement; an UPDATE of one row needs no pairing. Both must record
//! exactly the same: the same rows, keys, old and new values and changed
//! fields, whatever the statement does to the keys (changed, swapped), with
//! either kind of generated capture function ('columns', which compares
//! columns, and 'rows', which diffs whole rows), with changed values only or
//! full images.

use serde_json::Value;
use tokio_postgres::Client;

use crate::support::{audited_db, large_update_from, two_pass_update_from};

const TABLE: &str = "(id int PRIMARY KEY DEFERRABLE INITIALLY DEFERRED, seq int NOT NULL, email text, name text, amount numeric(12,2), score numeric,
                      tags text[], doc json, data jsonb, at timestamptz, secret text, updated_at timestamptz)";

const CONFIG: &str = r#"
[capture]
ignore_columns = ["updated_at"]
redact_columns = ["secret"]
"#;

/// The same with full images: both whole rows and the changed fields.
const CONFIG_FULL: &str = r#"
[capture]
images = "full"
ignore_columns = ["updated_at"]
redact_columns = ["secret"]
"#;

/// The same UPDATE, as one statement on `many_t` and row by row on `one_t`.
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

/// The changes recorded for `table`. Redaction markers are scoped by table
/// (equal values in two tables get different markers), so they are shown
/// as the positions of their first use in this table: the trails of the two
/// tables then compare equal exactly when the same values changed.
async fn trail_of(client: &Client, table: &str) -> Vec<(Value, Option<Value>, Value, Value, Vec<String>)> {
    let rows = client
        .query(
            "SELECT c.pk, c.old_pk, c.old_values, c.new_values, v.changed_fields
             FROM pgtrail.change c JOIN pgtrail.changes v USING (id)
             JOIN pgtrail.audited_table t ON t.id = c.table_id
             WHERE t.table_name = $1 AND c.op = 'U' ORDER BY c.pk->>'id', c.id",
            &[&table],
        )
        .await
        .expect("trail readable");
    let mut markers: Vec<String> = Vec::new();
    let mut mask = |values: Value| -> Value {
        let Value::Object(mut map) = values else {
            return values;
        };
        for value in map.values_mut() {
            if let Some(marker) = value.get("redacted").and_then(Value::as_str) {
                let n = markers.iter().position(|m| m == marker).unwrap_or_else(|| {
                    markers.push(marker.to_string());
                    markers.len() - 1
                });
                *value = serde_json::json!({"redacted": n});
            }
        }
        Value::Object(map)
    };
    rows.iter()
        .map(|r| {
            let old = mask(r.get(2));
            let new = mask(r.get(3));
            (r.get(0), r.get(1), old, new, r.get(4))
        })
        .collect()
}

#[tokio::test]
async fn a_statement_of_many_rows_records_what_one_row_at_a_time_records() {
    compare(None, CONFIG).await;
}

#[tokio::test]
async fn below_the_two_pass_threshold_a_statement_of_many_rows_records_the_same() {
    compare_with(None, CONFIG, Path::Small).await;
}

#[tokio::test]
async fn a_large_statement_on_a_narrow_table_records_the_same_in_one_pass() {
    compare_with(None, CONFIG, Path::Sorted).await;
}

#[tokio::test]
async fn with_full_images_a_large_statement_on_a_narrow_table_records_the_same_in_one_pass() {
    compare_with(None, CONFIG_FULL, Path::Sorted).await;
}

#[tokio::test]
async fn the_kind_that_diffs_whole_rows_records_the_same() {
    compare(Some("rows"), CONFIG).await;
}

#[tokio::test]
async fn with_full_images_a_statement_of_many_rows_records_what_one_row_at_a_time_records() {
    compare(None, CONFIG_FULL).await;
}

#[tokio::test]
async fn with_full_images_the_kind_that_diffs_whole_rows_records_the_same() {
    compare(Some("rows"), CONFIG_FULL).await;
}

#[tokio::test]
async fn the_two_kinds_record_the_same() {
    compare_kinds(CONFIG).await;
}

#[tokio::test]
async fn with_full_images_the_two_kinds_record_the_same() {
    compare_kinds(CONFIG_FULL).await;
}

/// Runs UPDATES on a table whose capture function is of kind 'columns' and
/// on one of kind 'rows', the first half of the rows as one statement, the
/// rest row by row, and checks the trails are identical (`compare` holds
/// each kind's two paths to each other; this holds the kinds to each other).
async fn compare_kinds(config: &str) {
    let schema = format!(
        "CREATE TABLE cols_t {TABLE}; CREATE TABLE rows_t {TABLE};
         INSERT INTO cols_t SELECT g, g, 'u' || g || '@x', 'n' || g, g / 7.0, g * 1.5, ARRAY['a', g::text],
                                   json_build_object('g', g), jsonb_build_object('g', g),
                                   '2026-01-01'::timestamptz + g * interval '1 minute', 'pw', now()
                            FROM generate_series(1, 300) g;
         INSERT INTO rows_t SELECT * FROM cols_t;"
    );
    let db = audited_db(&schema, config).await;
    db.client
        .batch_execute(
            "SELECT pgtrail._compile_capture(id, format('%I.%I', table_schema, table_name)::regclass, 'rows')
             FROM pgtrail.audited_table WHERE table_name = 'rows_t'",
        )
        .await
        .expect("a capture function of kind 'rows'");
    let kinds: Vec<(String, String)> = db
        .client
        .query(
            "SELECT t.table_name::text, substring(p.prosrc FROM 'kind ''([a-z]+)''')
             FROM pgtrail.audited_table t JOIN pg_proc p ON p.proname = '_capture_' || t.id ORDER BY 1",
            &[],
        )
        .await
        .expect("capture functions")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("cols_t".into(), "columns".into()),
            ("rows_t".into(), "rows".into())
        ]
    );
    for update in UPDATES {
        for table in ["cols_t", "rows_t"] {
            let mut script = update.replace("{t}", table).replace("{slice}", "seq <= 150");
            script.push_str(";\nBEGIN;\n");
            for seq in 151..=300 {
                script.push_str(
                    &update
                        .replace("{t}", table)
                        .replace("{slice}", &format!("seq = {seq}")),
                );
                script.push_str(";\n");
            }
            script.push_str("COMMIT;");
            db.client
                .batch_execute(&script)
                .await
                .unwrap_or_else(|e| panic!("{update} on {table}: {e}"));
        }
    }
    let cols = trail_of(&db.client, "cols_t").await;
    let rows = trail_of(&db.client, "rows_t").await;
    assert!(cols.len() > 600, "the updates changed rows: {}", cols.len());
    assert_eq!(cols.len(), rows.len());
    for (c, r) in cols.iter().zip(&rows) {
        assert_eq!(c, r);
    }
}

/// Runs UPDATES both ways, with capture functions of `kind` (or the kind
/// they get by default) and the capture settings of `config`, and checks
/// the trails are identical.
async fn compare(kind: Option<&str>, config: &str) {
    compare_with(kind, config, Path::TwoPass).await;
}

/// Which path of a capture function of kind 'columns' the statements of
/// 300 rows take.
#[derive(Clone, Copy)]
enum Path {
    /// The one-pass statement in the statement's order (the default below
    /// 5,000 rows).
    Small,
    /// A large statement on a table recording up to 40 columns: one pass,
    /// in the key index's order.
    Sorted,
    /// A large statement on a wider table: the changed columns first, then
    /// a statement generated for them.
    TwoPass,
}

/// The same, the statements of 300 rows taking `path`.
async fn compare_with(kind: Option<&str>, config: &str, path: Path) {
    let schema = format!(
        "CREATE TABLE many_t {TABLE}; CREATE TABLE one_t {TABLE};
         INSERT INTO many_t SELECT g, g, 'u' || g || '@x', 'n' || g, g / 7.0, g * 1.5, ARRAY['a', g::text],
                                   json_build_object('g', g), jsonb_build_object('g', g),
                                   '2026-01-01'::timestamptz + g * interval '1 minute', 'pw', now()
                            FROM generate_series(1, 300) g;
         INSERT INTO one_t SELECT * FROM many_t;"
    );
    let db = audited_db(&schema, config).await;
    match path {
        Path::Small => {}
        Path::Sorted => large_update_from(&db.client, 200, None).await,
        Path::TwoPass => two_pass_update_from(&db.client, 200).await,
    }
    if let Some(kind) = kind {
        db.client
            .batch_execute(&format!(
                "SELECT pgtrail._compile_capture(id, format('%I.%I', table_schema, table_name)::regclass, '{kind}')
                 FROM pgtrail.audited_table"
            ))
            .await
            .expect("capture functions of the kind asked for");
    }
    let kinds: Vec<String> = db
        .client
        .query(
            "SELECT substring(prosrc FROM 'kind ''([a-z]+)''') FROM pg_proc WHERE proname ~ '^_capture_[0-9]+$'",
            &[],
        )
        .await
        .expect("capture functions")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(kinds, vec![kind.unwrap_or("columns"); 2]);
    for update in UPDATES {
        let many = update.replace("{t}", "many_t").replace("{slice}", "true");
        db.client
            .batch_execute(&many)
            .await
            .unwrap_or_else(|e| panic!("{many}: {e}"));
        // Row by row (by seq, which no update touches), in one transaction:
        // the key updates pass through duplicate keys, which the deferred
        // primary key allows until the end, as within the one statement.
        let mut script = String::from("BEGIN;\n");
        for seq in 1..=300 {
            script.push_str(
                &update
                    .replace("{t}", "one_t")
                    .replace("{slice}", &format!("seq = {seq}")),
            );
            script.push_str(";\n");
        }
        script.push_str("COMMIT;");
        db.client
            .batch_execute(&script)
            .await
            .unwrap_or_else(|e| panic!("{update} row by row: {e}"));
    }
    let many = trail_of(&db.client, "many_t").await;
    let one = trail_of(&db.client, "one_t").await;
    assert!(many.len() > 600, "the updates changed rows: {}", many.len());
    assert_eq!(many.len(), one.len());
    for (m, o) in many.iter().zip(&one) {
        assert_eq!(m, o);
    }
}

/// A large UPDATE writes its trail rows in the order of the key index (the
/// key's `jsonb_hash_extended`, the rows of one key in the statement's
/// order), so that index's entries go in leaf by leaf; rows whose key it
/// changes come first, in the statement's own order. Either way every row
/// reads back the same (the comparisons above). The two-pass path (a table
/// recording more than 40 columns):
#[tokio::test]
async fn a_large_update_writes_its_rows_in_key_index_order_unless_keys_change() {
    key_index_order(Path::TwoPass).await;
}

/// The same in one pass (a table recording up to 40 columns).
#[tokio::test]
async fn a_large_update_in_one_pass_writes_its_rows_in_key_index_order_unless_keys_change() {
    key_index_order(Path::Sorted).await;
}

async fn key_index_order(path: Path) {
    let schema = format!(
        "CREATE TABLE big_t {TABLE};
         INSERT INTO big_t SELECT g, g, 'u' || g || '@x', 'n' || g, g / 7.0, g * 1.5, ARRAY['a', g::text],
                                  json_build_object('g', g), jsonb_build_object('g', g),
                                  '2026-01-01'::timestamptz + g * interval '1 minute', 'pw', now()
                           FROM generate_series(1, 1000) g;"
    );
    let db = audited_db(&schema, CONFIG).await;
    match path {
        Path::TwoPass => two_pass_update_from(&db.client, 200).await,
        _ => large_update_from(&db.client, 200, None).await,
    }
    db.client
        .batch_execute("UPDATE big_t SET email = email || '.x', name = 'n' WHERE seq <= 900")
        .await
        .expect("a large UPDATE");
    let rows = last_statement_changes(&db.client).await;
    assert_eq!(rows.len(), 900);
    let hashes: Vec<i64> = rows.iter().map(|r| r.1).collect();
    let mut sorted = hashes.clone();
    sorted.sort_unstable();
    assert_eq!(hashes, sorted, "the trail rows follow the key index");

    // The keys change: rows in the order the statement updated them.
    let before = scan_order(&db.client).await;
    db.client
        .batch_execute("UPDATE big_t SET id = id + 10000, name = 'm' WHERE seq <= 900")
        .await
        .expect("a large UPDATE of keys");
    let rows = last_statement_changes(&db.client).await;
    assert_eq!(rows.len(), 900);
    let old_keys: Vec<i64> = rows.iter().map(|r| r.2.expect("an old key")).collect();
    let in_scan_order: Vec<i64> = before.iter().map(|r| r.0).collect();
    assert_eq!(old_keys, in_scan_order, "the statement's own order");

    // Some rows' keys change (even seq), the others' do not.
    let before = scan_order(&db.client).await;
    db.client
        .batch_execute(
            "UPDATE big_t SET id = CASE WHEN seq % 2 = 0 THEN id + 10000 ELSE id END, name = 'k'
             WHERE seq <= 900",
        )
        .await
        .expect("a large UPDATE of some keys");
    let rows = last_statement_changes(&db.client).await;
    assert_eq!(rows.len(), 900);
    // The moved rows first, in the statement's order; then the others in
    // the key index's.
    let moved: Vec<i64> = before.iter().filter(|r| r.1 % 2 == 0).map(|r| r.0).collect();
    let (first, rest) = rows.split_at(moved.len());
    let old_keys: Vec<i64> = first.iter().map(|r| r.2.expect("an old key")).collect();
    assert_eq!(old_keys, moved, "rows whose key changed: the statement's order");
    assert!(
        rest.iter().all(|r| r.2.is_none()),
        "then the rows that kept their key"
    );
    let hashes: Vec<i64> = rest.iter().map(|r| r.1).collect();
    let mut sorted = hashes.clone();
    sorted.sort_unstable();
    assert_eq!(hashes, sorted, "those in the key index's order");
}

/// (id, seq) of the rows of `big_t` with seq up to 900, in the order a
/// statement updates them (a sequential scan: their physical order).
async fn scan_order(client: &Client) -> Vec<(i64, i32)> {
    client
        .query(
            "SELECT id::bigint, seq FROM big_t WHERE seq <= 900 ORDER BY ctid",
            &[],
        )
        .await
        .expect("rows readable")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// (id, hash of the key, old key, key) of the UPDATEs recorded by the last
/// statement that changed rows, in id order.
async fn last_statement_changes(client: &Client) -> Vec<(i64, i64, Option<i64>, i64)> {
    client
        .query(
            "SELECT c.id, jsonb_hash_extended(c.pk, 0), (c.old_pk ->> 'id')::bigint, (c.pk ->> 'id')::bigint
             FROM pgtrail.change c
             WHERE c.op = 'U' AND c.changed_at = (SELECT max(changed_at) FROM pgtrail.change)
             ORDER BY c.id",
            &[],
        )
        .await
        .expect("trail readable")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}
