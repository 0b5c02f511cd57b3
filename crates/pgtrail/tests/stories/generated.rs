//! The capture functions pgtrail generates per audited table are SQL to
//! review like any other: their text for a table with a composite key, an
//! ignored and a redacted column, and for one without a key, is kept as a
//! snapshot (tests/stories/snapshots), so every change to what capture runs
//! shows up in review; so is the kind that diffs whole rows (used without
//! the DDL watch), for the first table with full images.

use crate::support::audited_db;

const SCHEMA: &str = r#"
    CREATE TABLE memberships (org_id integer, user_id bigint, role text NOT NULL, "Weight" numeric(6,2),
                              secret text, tags text[], updated_at timestamptz, PRIMARY KEY (org_id, user_id));
    CREATE TABLE events (at timestamptz, kind text, payload jsonb);
"#;

const CONFIG: &str = r#"
[capture]
ignore_columns = ["updated_at"]
[tables."public.memberships"]
redact_columns = ["secret"]
"#;

async fn function_of(db: &pgtrail_testkit::TestDb, table: &str) -> String {
    db.client
        .query_one(
            "SELECT pg_get_functiondef(format('pgtrail.%I()', '_capture_' || id)::regprocedure)
             FROM pgtrail.audited_table WHERE table_name = $1",
            &[&table],
        )
        .await
        .expect("the generated function")
        .get(0)
}

#[tokio::test]
async fn the_capture_functions_generated_for_two_tables() {
    // (A fresh database: apply attaches in name order, so the ids are fixed.)
    let db = audited_db(SCHEMA, CONFIG).await;
    insta::assert_snapshot!("capture_of_memberships", function_of(&db, "memberships").await);
    insta::assert_snapshot!("capture_of_events", function_of(&db, "events").await);
}

#[tokio::test]
async fn the_capture_function_that_diffs_whole_rows_with_full_images() {
    let config = format!("{CONFIG}images = \"full\"\n");
    let db = audited_db(SCHEMA, &config).await;
    db.client
        .batch_execute(
            "SELECT pgtrail._compile_capture(id, format('%I.%I', table_schema, table_name)::regclass, 'rows')
             FROM pgtrail.audited_table WHERE table_name = 'memberships'",
        )
        .await
        .expect("a capture function of kind 'rows'");
    insta::assert_snapshot!(
        "capture_of_memberships_rows_full",
        function_of(&db, "memberships").await
    );
}
