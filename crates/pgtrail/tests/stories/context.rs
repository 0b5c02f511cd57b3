//! Who and why: `pgtrail.set_context`, `SET LOCAL pgtrail.*`, settings the
//! app already uses, `require_actor`, and what the database itself knows.

use serde_json::json;

use crate::support::{audited_db, changes, column, count};

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

/// A uuid bound as PostgreSQL's binary uuid, as typed drivers send one.
#[derive(Debug)]
struct Uuid([u8; 16]);

impl tokio_postgres::types::ToSql for Uuid {
    fn to_sql(
        &self,
        _: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&self.0);
        Ok(tokio_postgres::types::IsNull::No)
    }
    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        *ty == tokio_postgres::types::Type::UUID
    }
    tokio_postgres::types::to_sql_checked!();
}

#[tokio::test]
async fn set_context_takes_ids_of_any_type_bound_by_typed_drivers() {
    use tokio_postgres::types::{ToSql, Type};
    let mut db = audited_db(USERS, "").await;
    let uuid = Uuid([
        0x6f, 0x1e, 0x2b, 0x3c, 0x4d, 0x5e, 0x4f, 0x60, 0x81, 0x92, 0xa3, 0xb4, 0xc5, 0xd6, 0xe7, 0xf8,
    ]);
    // As psycopg sends a Python int (smallint, integer or bigint by size), a
    // uuid.UUID, a str, and a dict wrapped as JSON: the parameter's type is
    // given, and PostgreSQL must find the function without a cast.
    let cases: Vec<(Type, Box<dyn ToSql + Sync>, &str)> = vec![
        (Type::INT2, Box::new(7i16), "7"),
        (Type::INT4, Box::new(70_000i32), "70000"),
        (Type::INT8, Box::new(9_000_000_000i64), "9000000000"),
        (Type::UUID, Box::new(uuid), "6f1e2b3c-4d5e-4f60-8192-a3b4c5d6e7f8"),
        (Type::TEXT, Box::new("u-42".to_string()), "u-42"),
    ];
    for (i, (ty, id, expected)) in cases.iter().enumerate() {
        // jsonb with any arguments left out; json or text with all five.
        for (extra_type, sql) in [
            (
                Type::JSONB,
                "SELECT pgtrail.set_context(actor_id => $1, actor_name => $2, extra => $3)",
            ),
            (
                Type::JSON,
                "SELECT pgtrail.set_context(actor_id => $1, actor_name => $2, actor_type => NULL, reason => NULL, extra => $3)",
            ),
            (Type::TEXT, "SELECT pgtrail.set_context($1, $2, NULL, NULL, $3)"),
        ] {
            let tx = db.client.transaction().await.unwrap();
            let statement = tx
                .prepare_typed(sql, &[ty.clone(), Type::TEXT, extra_type.clone()])
                .await
                .unwrap_or_else(|e| panic!("set_context with a {ty} id and a {extra_type} extra: {e:?}"));
            let extra = json!({"request_id": format!("req-{i}-{extra_type}")});
            let extra_text = extra.to_string();
            let extra_arg: &(dyn ToSql + Sync) = if extra_type == Type::TEXT {
                &extra_text
            } else {
                &extra
            };
            tx.execute(&statement, &[id.as_ref(), &"alice", extra_arg])
                .await
                .unwrap();
            tx.execute(
                "INSERT INTO users (email) VALUES ($1)",
                &[&format!("{i}-{extra_type}")],
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
            let last = changes(&db.client, "users").await.pop().unwrap();
            assert_eq!(last.actor_id.as_deref(), Some(*expected), "{ty} id");
            assert_eq!(last.actor_name.as_deref(), Some("alice"));
            assert_eq!(last.context, Some(extra), "{extra_type} extra");
        }
    }
    // Positional calls and unknown-typed literals keep their one meaning.
    db.client
        .batch_execute(
            "BEGIN; SELECT pgtrail.set_context('9', 'bob', 'user', 'why', '{\"ip\": \"10.0.0.1\"}');
             INSERT INTO users (email) VALUES ('positional'); COMMIT;
             BEGIN; SELECT pgtrail.set_context(actor_id => 12, extra => '{\"ip\": \"10.0.0.2\"}');
             INSERT INTO users (email) VALUES ('integer literal'); COMMIT;
             BEGIN; SELECT pgtrail.set_context(actor_name => 'carol');
             INSERT INTO users (email) VALUES ('no id'); COMMIT;",
        )
        .await
        .unwrap();
    let trail = changes(&db.client, "users").await;
    let last3 = &trail[trail.len() - 3..];
    assert_eq!(last3[0].actor_id.as_deref(), Some("9"));
    assert_eq!(last3[0].reason.as_deref(), Some("why"));
    assert_eq!(last3[0].context, Some(json!({"ip": "10.0.0.1"})));
    assert_eq!(last3[1].actor_id.as_deref(), Some("12"));
    assert_eq!(last3[2].actor_id, None);
    assert_eq!(last3[2].actor_name.as_deref(), Some("carol"));
}

/// A connection whose notices (warnings) are kept.
async fn connect_keeping_notices(
    url: &str,
) -> (
    tokio_postgres::Client,
    std::sync::Arc<std::sync::Mutex<Vec<tokio_postgres::error::DbError>>>,
) {
    use futures_util::StreamExt;
    let (client, mut connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    let notices = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = notices.clone();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notice(notice) = message {
                kept.lock().unwrap().push(notice);
            }
        }
    });
    (client, notices)
}

#[tokio::test]
async fn set_context_outside_a_transaction_block_warns_and_inside_one_does_not() {
    let db = audited_db(USERS, "").await;
    let (mut client, notices) = connect_keeping_notices(db.url()).await;
    let taken = || std::mem::take(&mut *notices.lock().unwrap());

    // Autocommit, with a bound parameter (the extended protocol) and without.
    client
        .execute("SELECT pgtrail.set_context(actor_id => $1)", &[&"42"])
        .await
        .unwrap();
    client
        .execute("INSERT INTO users (email) VALUES ('lost')", &[])
        .await
        .unwrap();
    client
        .simple_query("SELECT pgtrail.set_context(actor_id => '43')")
        .await
        .unwrap();
    let warnings = taken();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    for warning in &warnings {
        assert_eq!(warning.severity(), "WARNING");
        assert!(
            warning.message().contains("outside a transaction block"),
            "{}",
            warning.message()
        );
        assert!(warning.hint().unwrap_or("").contains("BEGIN"), "{warning:?}");
    }
    assert_eq!(
        changes(&db.client, "users").await[0].actor_id,
        None,
        "the context was lost"
    );

    // In a transaction block, over either protocol; in one message of
    // several statements (an implicit transaction) that writes; inside a
    // function that writes in the same statement: no warning.
    let tx = client.transaction().await.unwrap();
    tx.execute("SELECT pgtrail.set_context(actor_id => $1)", &[&"44"])
        .await
        .unwrap();
    tx.execute("INSERT INTO users (email) VALUES ('kept')", &[])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    client
        .batch_execute(
            "BEGIN; SELECT pgtrail.set_context(actor_id => '45'); COMMIT;
             SELECT pgtrail.set_context(actor_id => '46'); INSERT INTO users (email) VALUES ('one message');",
        )
        .await
        .unwrap();
    client
        .batch_execute(
            "CREATE FUNCTION signup(p_email text) RETURNS void LANGUAGE plpgsql AS $$
             BEGIN PERFORM pgtrail.set_context(actor_id => '47'); INSERT INTO users (email) VALUES (p_email); END $$;",
        )
        .await
        .unwrap();
    client
        .execute("SELECT signup($1)", &[&"in a function"])
        .await
        .unwrap();
    assert_eq!(taken(), Vec::new());
    let actors: Vec<Option<String>> = changes(&db.client, "users")
        .await
        .into_iter()
        .map(|c| c.actor_id)
        .collect();
    assert_eq!(
        actors,
        [None, Some("44".into()), Some("46".into()), Some("47".into())]
    );
}

#[tokio::test]
async fn outside_transaction_refuse_fails_the_call_and_ignore_says_nothing() {
    let mut db = audited_db(USERS, "[context]\noutside_transaction = \"refuse\"\n").await;
    let error = db
        .client
        .execute("SELECT pgtrail.set_context(actor_id => $1)", &[&"42"])
        .await
        .expect_err("refused outside a transaction block");
    let db_error = error.as_db_error().expect("a database error");
    assert_eq!(db_error.code().code(), "25P01");
    assert!(db_error.message().contains("outside a transaction block"));
    assert!(db_error.hint().unwrap_or("").contains("BEGIN"));
    db.client
        .batch_execute(
            "BEGIN; SELECT pgtrail.set_context(actor_id => '1'); INSERT INTO users (email) VALUES ('fine'); COMMIT;",
        )
        .await
        .expect("inside a transaction block it is fine");

    crate::support::apply(&mut db.client, "[context]\noutside_transaction = \"ignore\"\n").await;
    let (client, notices) = connect_keeping_notices(db.url()).await;
    client
        .execute("SELECT pgtrail.set_context(actor_id => $1)", &[&"42"])
        .await
        .unwrap();
    assert!(notices.lock().unwrap().is_empty());
    // The check keeps one row per backend that was checked; "ignore" checks
    // nothing, so this backend has none.
    let pid = column::<i32>(&client, "SELECT pg_backend_pid()").await;
    let rows = column::<i64>(
        &db.client,
        &format!(
            "SELECT count(*) FROM pgtrail.context_check WHERE backend_pid = {}",
            pid[0]
        ),
    )
    .await;
    assert_eq!(rows, [0], "nothing is written");
}

/// The transaction's first statement that changes something writes its
/// changes and its context row in one statement (one-row UPDATE, INSERT,
/// DELETE); the paths around it still record the context exactly once per
/// transaction and context, and only with changes.
#[tokio::test]
async fn the_context_is_recorded_once_with_the_first_change_whatever_came_before_it() {
    let db = audited_db(USERS, "").await;
    for batch in [
        "INSERT INTO users (email) VALUES ('a'), ('b'), ('c'), ('d')",
        // A one-row UPDATE that changes nothing, then a statement of several rows.
        "BEGIN; UPDATE users SET email = email WHERE id = 1;
         UPDATE users SET email = email || '!' WHERE id IN (1, 2); COMMIT;",
        // An UPDATE and an INSERT of no rows, then a DELETE.
        "BEGIN; UPDATE users SET email = 'never' WHERE false; INSERT INTO users (email) SELECT 'never' WHERE false;
         DELETE FROM users WHERE id = 4; COMMIT;",
        // The mark lost after the context was recorded: the next change is still
        // recorded, the context row kept as it was.
        "BEGIN; SELECT pgtrail.set_context(actor_id => '5'); UPDATE users SET email = 'y' WHERE id = 1;
         SET LOCAL pgtrail.recorded = ''; UPDATE users SET email = 'z' WHERE id = 1;
         INSERT INTO users (email) VALUES ('e'); SET LOCAL pgtrail.recorded = ''; DELETE FROM users WHERE id = 3; COMMIT;",
        // A statement of several rows first, then one row.
        "BEGIN; UPDATE users SET email = email || '?' WHERE id IN (1, 2); UPDATE users SET email = 'w' WHERE id = 1; COMMIT;",
        // A TRUNCATE first (the event only), then one row.
        "BEGIN; CREATE TEMP TABLE keep AS SELECT * FROM users; TRUNCATE users;
         INSERT INTO users SELECT * FROM keep; COMMIT;",
    ] {
        db.client.batch_execute(batch).await.unwrap();
    }
    let trail = changes(&db.client, "users").await;
    let ops: Vec<&str> = trail.iter().map(|c| c.op.as_str()).collect();
    assert_eq!(
        ops,
        [
            "INSERT", "INSERT", "INSERT", "INSERT", "UPDATE", "UPDATE", "DELETE", "UPDATE", "UPDATE",
            "INSERT", "DELETE", "UPDATE", "UPDATE", "UPDATE", "TRUNCATE", "INSERT", "INSERT", "INSERT"
        ]
    );
    assert_eq!(trail[7].actor_id.as_deref(), Some("5"));
    assert_eq!(trail[10].actor_id.as_deref(), Some("5"), "{trail:?}");
    // Every change has its context row, every context row has changes, and
    // each transaction has one (no set_context after the first, so one context).
    assert_eq!(
        count(
            &db.client,
            "SELECT count(*) FROM pgtrail.change AS c
             WHERE NOT EXISTS (SELECT FROM pgtrail.transaction AS x WHERE x.txid = c.txid AND x.ctx = c.ctx)"
        )
        .await,
        0
    );
    assert_eq!(
        column::<i64>(
            &db.client,
            "SELECT count(*) FROM pgtrail.transaction AS x
             WHERE EXISTS (SELECT FROM pgtrail.change AS c WHERE c.txid = x.txid AND c.ctx = x.ctx)
             UNION ALL SELECT count(*) FROM pgtrail.transaction
             UNION ALL SELECT count(DISTINCT txid) FROM pgtrail.change"
        )
        .await,
        [6, 6, 6]
    );
}

/// With `require_actor`, the one-row, INSERT and DELETE paths (which record
/// the context in the change's own statement) refuse a change without an
/// actor and write nothing; a statement that changes nothing is not refused.
#[tokio::test]
async fn require_actor_refuses_each_single_row_path_and_not_a_statement_that_changes_nothing() {
    let db = audited_db(USERS, "[context]\nrequire_actor = true\n").await;
    db.client
        .batch_execute(
            "BEGIN; SET LOCAL pgtrail.actor_id = '1'; INSERT INTO users (email) VALUES ('a'), ('b'); COMMIT;",
        )
        .await
        .unwrap();
    for refused in [
        "UPDATE users SET email = 'x' WHERE id = 1",
        "INSERT INTO users (email) VALUES ('c')",
        "DELETE FROM users WHERE id = 2",
        "UPDATE users SET email = email || 'x'",
    ] {
        let error = db.client.batch_execute(refused).await.expect_err(refused);
        assert_eq!(
            error.as_db_error().map(|e| e.code().code()),
            Some("PGTR1"),
            "{refused}"
        );
    }
    db.client
        .batch_execute("UPDATE users SET email = email WHERE id = 1; DELETE FROM users WHERE false")
        .await
        .expect("a statement that changes nothing needs no actor");
    assert_eq!(changes(&db.client, "users").await.len(), 2);
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM pgtrail.transaction").await,
        1
    );
    assert_eq!(
        column::<String>(&db.client, "SELECT email FROM users ORDER BY id").await,
        ["a", "b"]
    );
}
