//! Who and why: `pgtrail.set_context`, `SET LOCAL pgtrail.*`, settings the
//! app already uses, `require_actor`, and what the database itself knows.

use serde_json::json;

use crate::support::{audited_db, changes};

const USERS: &str = "CREATE TABLE users (id serial PRIMARY KEY, email text);";

// Note: `SET app.current_user = ...` is a syntax error in PostgreSQL
// (current_user is a reserved word); apps set such names with set_config().

#[tokio::test]
async fn set_context_records_actor_reason_and_business_context() {
    let db = audited_db(USERS, "").await;
    db.client
        .batch_execute(
            r#"BEGIN;
               SELECT pgtrail.set_context(actor_id => '42', actor_name => 'alice@example.com',
                   actor_type => 'moderator', reason => 'ticket #7',
                   extra => '{"request_id": "req-1", "business_process": "account_recovery", "ip": "10.0.0.7"}');
               INSERT INTO users (email) VALUES ('a@x');
               COMMIT;"#,
        )
        .await
        .unwrap();
    let change = &changes(&db.client, "users").await[0];
    assert_eq!(change.actor_id.as_deref(), Some("42"));
    assert_eq!(change.actor_name.as_deref(), Some("alice@example.com"));
    assert_eq!(change.actor_type.as_deref(), Some("moderator"));
    assert_eq!(change.reason.as_deref(), Some("ticket #7"));
    assert_eq!(
        change.context,
        Some(json!({"request_id": "req-1", "business_process": "account_recovery", "ip": "10.0.0.7"}))
    );
}

#[tokio::test]
async fn plain_set_local_works_and_never_leaks_into_the_next_transaction() {
    let db = audited_db(USERS, "").await;
    // Separate calls: statements of one batch would share an implicit transaction.
    for batch in [
        "BEGIN;
         SET LOCAL pgtrail.actor_id = '7';
         SET LOCAL pgtrail.migration = '0042_backfill';
         INSERT INTO users (email) VALUES ('first');
         COMMIT;",
        "INSERT INTO users (email) VALUES ('second')",
        "BEGIN; SELECT pgtrail.set_context(actor_id => '8'); ROLLBACK;",
        "INSERT INTO users (email) VALUES ('third')",
    ] {
        db.client.batch_execute(batch).await.unwrap();
    }
    let trail = changes(&db.client, "users").await;
    assert_eq!(trail[0].actor_id.as_deref(), Some("7"));
    assert_eq!(trail[0].context, Some(json!({"migration": "0042_backfill"})));
    assert_eq!(
        trail[1].actor_id, None,
        "context leaked into the next transaction"
    );
    assert_eq!(trail[1].context, None);
    assert_eq!(
        trail[2].actor_id, None,
        "context of a rolled-back transaction leaked"
    );
}

#[tokio::test]
async fn settings_the_app_already_uses_are_mapped_onto_pgtrail_fields() {
    let config = r#"
[context]
actor_id = ["app.user_id"]
actor_name = ["app.actor_email", "app.current_user"]
actor_type = ["app.actor_type"]
migration = ["app.current_migration"]
"#;
    let db = audited_db(USERS, config).await;
    db.client
        .batch_execute(
            "BEGIN;
             SET LOCAL app.actor_email = 'user@example.com';
             SET LOCAL app.actor_type = 'user';
             INSERT INTO users (email) VALUES ('a');
             COMMIT;
             BEGIN;
             SELECT set_config('app.current_user', 'batch_script@system', true);
             SET LOCAL app.user_id = '99';
             INSERT INTO users (email) VALUES ('b');
             COMMIT;
             BEGIN;
             SET LOCAL app.current_migration = '1768213263725_apply-audit-triggers';
             UPDATE users SET email = upper(email);
             COMMIT;",
        )
        .await
        .unwrap();
    let trail = changes(&db.client, "users").await;
    assert_eq!(trail[0].actor_name.as_deref(), Some("user@example.com"));
    assert_eq!(trail[0].actor_type.as_deref(), Some("user"));
    assert_eq!(trail[1].actor_name.as_deref(), Some("batch_script@system"));
    assert_eq!(trail[1].actor_id.as_deref(), Some("99"));
    assert_eq!(
        trail[2].context,
        Some(json!({"migration": "1768213263725_apply-audit-triggers"}))
    );
}

#[tokio::test]
async fn set_context_again_inside_a_transaction_attributes_later_changes_to_the_new_actor() {
    let db = audited_db(USERS, "").await;
    db.client
        .batch_execute(
            "BEGIN;
             SELECT pgtrail.set_context(actor_id => 'job', actor_type => 'system');
             INSERT INTO users (email) VALUES ('for ann');
             SELECT pgtrail.set_context(actor_id => 'ann', actor_type => 'user', reason => 'on behalf');
             INSERT INTO users (email) VALUES ('by ann');
             COMMIT;",
        )
        .await
        .unwrap();
    let trail = changes(&db.client, "users").await;
    assert_eq!(trail[0].actor_id.as_deref(), Some("job"));
    assert_eq!(trail[1].actor_id.as_deref(), Some("ann"));
    assert_eq!(trail[1].reason.as_deref(), Some("on behalf"));
    assert_eq!(trail[0].txid, trail[1].txid);
}

#[tokio::test]
async fn require_actor_refuses_a_change_without_actor_with_its_own_sqlstate() {
    let db = audited_db(USERS, "[context]\nrequire_actor = true\n").await;
    let error = db
        .client
        .batch_execute("INSERT INTO users (email) VALUES ('nobody')")
        .await
        .expect_err("a change without actor must be refused");
    let db_error = error.as_db_error().expect("a database error");
    assert_eq!(db_error.code().code(), "PGTR1");
    assert!(
        db_error.message().contains("public.users"),
        "{}",
        db_error.message()
    );
    assert!(db_error.hint().unwrap_or("").contains("pgtrail.set_context"));
    assert_eq!(
        crate::support::count(&db.client, "SELECT count(*) FROM users").await,
        0
    );

    db.client
        .batch_execute(
            "BEGIN; SET LOCAL pgtrail.actor_id = '1'; INSERT INTO users (email) VALUES ('someone'); COMMIT;
             BEGIN; SELECT pgtrail.set_context(actor_type => 'migration', extra => '{\"migration\": \"0001\"}');
             UPDATE users SET email = 'migrated'; COMMIT;
             BEGIN; SET LOCAL pgtrail.migration = '0002'; UPDATE users SET email = 'again'; COMMIT;",
        )
        .await
        .expect("changes with an actor, or marked as a migration, pass");
    assert_eq!(changes(&db.client, "users").await.len(), 3);
}

#[tokio::test]
async fn the_database_side_facts_are_recorded_per_transaction() {
    let db = audited_db(USERS, "").await;
    db.client
        .batch_execute("SET application_name = 'billing-worker'; INSERT INTO users (email) VALUES ('a');")
        .await
        .unwrap();
    let row = db
        .client
        .query_one(
            "SELECT x.db_user, x.application_name, x.backend_pid = pg_backend_pid(), x.client_addr IS NOT NULL,
                    x.started_at <= c.changed_at, c.txid > 0
             FROM pgtrail.change c JOIN pgtrail.transaction x USING (txid, ctx)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "postgres");
    assert_eq!(row.get::<_, String>(1), "billing-worker");
    assert!(row.get::<_, bool>(2), "backend pid");
    assert!(row.get::<_, bool>(3), "client address over TCP");
    assert!(row.get::<_, bool>(4), "transaction start before change time");
    assert!(row.get::<_, bool>(5));
    let view = db
        .client
        .query_one("SELECT db_user, application_name FROM pgtrail.changes", &[])
        .await
        .unwrap();
    assert_eq!(view.get::<_, String>(1), "billing-worker");
}
