//! Reconciliation and baselines: "rows changed without a trace" — under
//! `session_replication_role = replica`, which no trigger sees — are found
//! by comparing the live rows with what the trail says; a baseline makes the
//! rows a table had before the install part of the trail.

use pgtrail::config::Config;
use pgtrail::integrity::reconcile;
use pgtrail::plan::{ApplyOptions, apply_with_options};
use pgtrail_testkit::TestDb;
use serde_json::json;

const SHOP: &str = "
    CREATE TABLE accounts (id integer PRIMARY KEY, email text, balance numeric(12,2));
    INSERT INTO accounts SELECT g, 'user' || g || '@example.com', g FROM generate_series(1, 6) AS g;
    CREATE TABLE tags (name text, color text);  -- no key
    INSERT INTO tags VALUES ('red', '#f00'), ('red', '#f00'), ('blue', '#00f');
";
const CONFIG: &str = "[capture]\ninclude = [\"accounts\", \"tags\"]\n";

async fn shop(baseline: bool) -> TestDb {
    let mut db = TestDb::new().await;
    db.client.batch_execute(SHOP).await.unwrap();
    let config = Config::parse(CONFIG, "pgtrail.toml").unwrap();
    let report = apply_with_options(
        &mut db.client,
        &config,
        ApplyOptions { baseline },
        &mut |_, _, _| {},
    )
    .await
    .expect("apply");
    if baseline {
        let mut rows: Vec<(String, i64)> = report.baselined.iter().map(|(_, n, r)| (n.clone(), *r)).collect();
        rows.sort();
        assert_eq!(rows, [("accounts".to_string(), 6), ("tags".to_string(), 3)]);
    }
    db.client
        .batch_execute(
            "UPDATE accounts SET balance = 100 WHERE id = 1;
             UPDATE accounts SET id = 60 WHERE id = 6;          -- a key change, recorded
             DELETE FROM accounts WHERE id = 2;
             BEGIN; SET LOCAL session_replication_role = replica;
             UPDATE accounts SET email = 'hidden@example.com' WHERE id = 3;
             DELETE FROM accounts WHERE id = 4;
             INSERT INTO accounts VALUES (7, 'ghost@example.com', 0);
             INSERT INTO tags VALUES ('blue', '#00f');
             COMMIT;",
        )
        .await
        .unwrap();
    db
}

fn found(report: &pgtrail::integrity::ReconcileReport) -> Vec<(String, serde_json::Value, String)> {
    report
        .rows
        .iter()
        .map(|r| (r.table.clone(), r.pk.clone(), r.problem.clone()))
        .collect()
}

#[tokio::test]
async fn rows_changed_under_replica_mode_are_found_by_reconcile() {
    let db = shop(true).await;
    let report = reconcile(&db.client, None).await.expect("reconcile");
    assert_eq!(
        found(&report),
        [
            (
                "public.accounts".to_string(),
                json!({"id": 4}),
                "unrecorded delete".to_string()
            ),
            (
                "public.accounts".to_string(),
                json!({"id": 7}),
                "unrecorded insert".to_string()
            ),
            (
                "public.accounts".to_string(),
                json!({"id": 3}),
                "unrecorded update".to_string()
            ),
            (
                "public.tags".to_string(),
                json!({"name": "blue", "color": "#00f"}),
                "unrecorded insert".to_string()
            ),
        ]
    );
    let update = &report.rows[2];
    assert_eq!(update.fields.as_deref(), Some(&["email".to_string()][..]));
    assert_eq!(update.recorded, Some(json!({"email": "user3@example.com"})));
    assert_eq!(update.live, Some(json!({"email": "hidden@example.com"})));

    // One table only.
    let one = reconcile(&db.client, Some(("public", "tags"))).await.unwrap();
    assert_eq!(one.rows.len(), 1);
    assert_eq!(one.tables, [("public.tags".to_string(), true)]);
}

#[tokio::test]
async fn without_a_baseline_rows_older_than_the_install_are_not_judged() {
    let db = shop(false).await;
    let report = reconcile(&db.client, None).await.expect("reconcile");
    // The ghost insert looks like a row older than the install; the hidden
    // update of a row never recorded cannot be seen either. The delete of a
    // row the trail knows still can't be told (the trail never saw row 4).
    assert_eq!(found(&report), []);
    assert!(report.tables.iter().all(|(_, baseline)| !baseline));
}

#[tokio::test]
async fn a_baseline_is_the_rows_first_state_in_the_trail() {
    let mut db = shop(true).await;
    let state: serde_json::Value = db
        .client
        .query_one("SELECT pgtrail.row_as_of('accounts', '{\"id\": 5}', now())", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        state,
        serde_json::from_str::<serde_json::Value>(
            r#"{"id": 5, "email": "user5@example.com", "balance": 5.00}"#
        )
        .unwrap()
    );
    let context = db
        .client
        .query_one(
            "SELECT actor_type, reason, context ->> 'migration' FROM pgtrail.changes ORDER BY id LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(context.get::<_, Option<String>>(0).as_deref(), Some("system"));
    assert_eq!(context.get::<_, Option<String>>(1).as_deref(), Some("baseline"));
    assert_eq!(
        context.get::<_, Option<String>>(2).as_deref(),
        Some("pgtrail baseline")
    );

    // Once only.
    let again = db
        .client
        .query_one("SELECT pgtrail.baseline('accounts')", &[])
        .await;
    let error = again.unwrap_err();
    let message = error
        .as_db_error()
        .map(|e| e.message().to_string())
        .unwrap_or_default();
    assert!(message.contains("already has a baseline"), "{message}");
    let config = Config::parse(CONFIG, "pgtrail.toml").unwrap();
    let report = apply_with_options(
        &mut db.client,
        &config,
        ApplyOptions { baseline: true },
        &mut |_, _, _| {},
    )
    .await
    .unwrap();
    assert!(
        report.baselined.is_empty(),
        "only tables without history get a baseline"
    );

    // A table detached and attached again keeps its history: no baseline, no error.
    let without = Config::parse("[capture]\ninclude = [\"tags\"]\n", "pgtrail.toml").unwrap();
    apply_with_options(
        &mut db.client,
        &without,
        ApplyOptions { baseline: true },
        &mut |_, _, _| {},
    )
    .await
    .unwrap();
    let report = apply_with_options(
        &mut db.client,
        &config,
        ApplyOptions { baseline: true },
        &mut |_, _, _| {},
    )
    .await
    .expect("re-attaching with --baseline works");
    assert!(report.baselined.is_empty());
}

#[tokio::test]
async fn an_erased_value_is_not_reported_as_changed_without_a_trace() {
    let mut db = shop(true).await;
    let pks = |report: &pgtrail::integrity::ReconcileReport| -> Vec<String> {
        let mut pks: Vec<String> = report
            .rows
            .iter()
            .map(|r| format!("{} {}", r.pk, r.problem))
            .collect();
        pks.sort();
        pks
    };
    let before = reconcile(&db.client, Some(("public", "accounts"))).await.unwrap();
    assert!(
        !before.rows.is_empty(),
        "the shop has rows changed without a trace"
    );
    pgtrail::integrity::erase(
        &mut db.client,
        "public",
        "accounts",
        &json!({"id": 5}),
        Some(&["email".to_string()]),
        "GDPR request",
    )
    .await
    .expect("erase");
    let after = reconcile(&db.client, Some(("public", "accounts"))).await.unwrap();
    assert_eq!(pks(&after), pks(&before), "erasing a value reports nothing new");
}

/// A table that was empty when it was audited needs no baseline: every row
/// it has must come from a recorded INSERT, so one slipped in unseen is
/// found.
#[tokio::test]
async fn a_table_empty_when_audited_judges_every_row() {
    let mut db = TestDb::new().await;
    db.client
        .batch_execute("CREATE TABLE notes (id integer PRIMARY KEY, body text);")
        .await
        .unwrap();
    let config = Config::parse("[capture]\ninclude = [\"notes\"]\n", "pgtrail.toml").unwrap();
    apply_with_options(
        &mut db.client,
        &config,
        ApplyOptions { baseline: false },
        &mut |_, _, _| {},
    )
    .await
    .expect("apply");
    db.client
        .batch_execute(
            "INSERT INTO notes VALUES (1, 'seen');
             BEGIN; SET LOCAL session_replication_role = replica;
             INSERT INTO notes VALUES (2, 'unseen');
             COMMIT;",
        )
        .await
        .unwrap();
    let report = reconcile(&db.client, None).await.expect("reconcile");
    assert_eq!(
        found(&report),
        [(
            "public.notes".to_string(),
            json!({"id": 2}),
            "unrecorded insert".to_string()
        )]
    );
}

/// A table without a key whose rows are updated in place, copies and all:
/// each UPDATE moves its row from one whole-row key to another, and
/// reconcile counts it so (it used to report every updated row as an
/// unrecorded insert); a copy added behind the trail's back is still found.
#[tokio::test]
async fn a_table_without_a_key_updated_in_place_reconciles_clean() {
    let mut db = TestDb::new().await;
    db.client
        .batch_execute("CREATE TABLE tags (name text, uses int);")
        .await
        .unwrap();
    let config = Config::parse("[capture]\ninclude = [\"tags\"]\n", "pgtrail.toml").unwrap();
    apply_with_options(
        &mut db.client,
        &config,
        ApplyOptions { baseline: false },
        &mut |_, _, _| {},
    )
    .await
    .expect("apply");
    db.client
        .batch_execute(
            "INSERT INTO tags VALUES ('red', 0), ('red', 0), ('blue', 0);
             UPDATE tags SET uses = uses + 1;
             UPDATE tags SET uses = 5 WHERE name = 'blue';
             DELETE FROM tags WHERE name = 'blue';
             INSERT INTO tags VALUES ('blue', 1);",
        )
        .await
        .unwrap();
    let report = reconcile(&db.client, None).await.expect("reconcile");
    assert!(found(&report).is_empty(), "{:?}", found(&report));
    db.behind_the_triggers("INSERT INTO tags VALUES ('red', 1)").await;
    let report = reconcile(&db.client, None).await.expect("reconcile");
    assert_eq!(
        found(&report),
        [(
            "public.tags".to_string(),
            json!({"name": "red", "uses": 1}),
            "unrecorded insert".to_string()
        )]
    );
}
