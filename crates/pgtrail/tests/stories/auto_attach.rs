//! Tables created after the install: with `auto_attach = true` a new table the
//! include rules select is audited from its first row and its creation is
//! recorded; a new partition of an audited table is captured too. The rules
//! run inside the database as regular expressions that must match exactly
//! what the config's glob patterns match.

use pgtrail::config::{Config, Pattern};
use pgtrail::plan::inspect;
use proptest::prelude::*;

use crate::support::{audited_db, changes, count};

const CONFIG: &str = r#"
[capture]
include = ["*"]
exclude = ["tmp_*"]
ignore_columns = ["updated_at"]
redact_columns = ["password_hash"]
auto_attach = true
"#;

#[tokio::test]
async fn a_table_created_later_is_audited_from_its_first_row_and_its_creation_recorded() {
    let db = audited_db("CREATE TABLE users (id int PRIMARY KEY);", CONFIG).await;
    db.client
        .batch_execute(
            "CREATE TABLE invoices (id int PRIMARY KEY, total numeric, password_hash text, updated_at timestamptz);
             INSERT INTO invoices VALUES (1, 9.90, 'pw', now());
             UPDATE invoices SET updated_at = now() + interval '1 hour';
             CREATE TABLE tmp_import (id int);
             INSERT INTO tmp_import VALUES (1);
             CREATE TABLE archive AS SELECT g AS id, 'row ' || g AS note FROM generate_series(1, 3) g;",
        )
        .await
        .unwrap();
    let invoices = changes(&db.client, "invoices").await;
    assert_eq!(
        invoices.len(),
        1,
        "the insert, not the updated_at-only update: {invoices:#?}"
    );
    let row = invoices[0].new.clone().unwrap();
    assert!(
        row["password_hash"]["redacted"].is_string() && row.get("updated_at").is_none(),
        "{row}"
    );
    assert!(changes(&db.client, "tmp_import").await.is_empty());
    let archive = changes(&db.client, "archive").await;
    assert_eq!(
        archive.len(),
        3,
        "CREATE TABLE AS: its first rows are recorded as inserts"
    );
    assert_eq!(archive[0].pk, Some(serde_json::json!({"id": 1, "note": "row 1"})));

    let events: Vec<String> = db
        .client
        .query(
            "SELECT object_identity || ' ' || action FROM pgtrail.ddl_event WHERE action <> 'ddl' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        events,
        vec!["public.invoices auto_attached", "public.archive auto_attached"]
    );
    let config = Config::parse(CONFIG, "pgtrail.toml").unwrap();
    assert_eq!(
        inspect(&db.client, &config).await.unwrap().3,
        vec![],
        "check is clean"
    );
}

#[tokio::test]
async fn a_new_partition_of_an_audited_table_gets_capture() {
    let schema = "
        CREATE TABLE events (id int, at date, kind text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
        CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');";
    let db = audited_db(schema, CONFIG).await;
    db.client
        .batch_execute(
            "CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
             INSERT INTO events_2026 VALUES (1, '2026-03-01', 'direct');
             INSERT INTO events VALUES (2, '2026-04-01', 'through the parent');",
        )
        .await
        .unwrap();
    let trail = changes(&db.client, "events").await;
    assert_eq!(trail.len(), 2, "{trail:#?}");
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'events_2026'::regclass AND tgname LIKE 'pgtrail%'").await,
        pgtrail::capture::TRIGGER_NAMES.len() as i64
    );
}

#[tokio::test]
async fn auto_attach_off_removes_the_event_trigger_and_check_notices_the_difference() {
    let mut db = audited_db("CREATE TABLE users (id int PRIMARY KEY);", CONFIG).await;
    let off = CONFIG.replace("auto_attach = true", "auto_attach = false");
    let config = Config::parse(&off, "pgtrail.toml").unwrap();
    let problems = inspect(&db.client, &config).await.unwrap().3;
    assert_eq!(problems.len(), 1);
    assert_eq!(
        problems[0].to_string(),
        "auto_attach is installed but off in the config"
    );
    crate::support::apply(&mut db.client, &off).await;
    assert_eq!(
        count(
            &db.client,
            "SELECT count(*) FROM pg_event_trigger WHERE evtname = 'pgtrail_auto_attach'"
        )
        .await,
        0
    );
}

/// Names built from a small alphabet, so that patterns often match.
fn name() -> impl Strategy<Value = String> {
    "[ab._*?\\[\\]!\\\\x-]{1,6}"
}

fn pattern() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ab*?x-]{1,5}",
        "[ab*?]{1,3}\\.[ab*?]{1,3}",
        "\\[!?[abx-]{1,3}\\][ab*]{0,2}",
        Just("*".to_string())
    ]
}

#[test]
fn the_databases_rule_matching_agrees_with_the_config() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = runtime.block_on(audited_db("", ""));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(300));
    runner
        .run(&(pattern(), name(), name()), |(source, schema, table)| {
            let Ok(pattern) = Pattern::new(&source) else {
                return Ok(());
            };
            let (schema_regex, table_regex) = pattern.to_pg_regex();
            let rules = serde_json::json!([{ "schema": schema_regex, "table": table_regex }]);
            let in_database: bool = runtime.block_on(async {
                db.client
                    .query_one(
                        "SELECT pgtrail._rules_match($1, $2, $3)",
                        &[&rules, &schema, &table],
                    )
                    .await
                    .unwrap()
                    .get(0)
            });
            prop_assert_eq!(
                in_database,
                pattern.matches_table(&schema, &table),
                "{} on {}.{}",
                source,
                schema,
                table
            );
            Ok(())
        })
        .unwrap();
}
