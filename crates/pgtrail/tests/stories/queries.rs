//! Asking the trail: a row's history with diffs and full states, a row or a
//! whole table as it was at a moment, and who last set each field (blame),
//! also for rows that predate the install and for tables with diff images.

use proptest::prelude::*;
use serde_json::{Value, json};
use tokio_postgres::Client;

use crate::support::{audited_db, now};

/// Every row of `table` now, as a JSON array sorted by the rows' text.
async fn snapshot(client: &Client, table: &str) -> Value {
    client
        .query_one(
            &format!(
                "SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY to_jsonb(t)::text), '[]') FROM {table} AS t"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// `pgtrail.table_as_of(table, at)`, sorted like [`snapshot`].
async fn table_as_of(client: &Client, table: &str, at: &str) -> Value {
    client
        .query_one(
            "SELECT coalesce(jsonb_agg(j ORDER BY j::text), '[]')
             FROM pgtrail.table_as_of($1::text::regclass, $2::text::timestamptz) AS j",
            &[&table, &at],
        )
        .await
        .unwrap()
        .get(0)
}

async fn row_as_of(client: &Client, table: &str, pk: &Value, at: &str) -> Option<Value> {
    client
        .query_one(
            "SELECT pgtrail.row_as_of($1::text::regclass, $2, $3::text::timestamptz)",
            &[&table, pk, &at],
        )
        .await
        .unwrap()
        .get(0)
}

/// One step of `pgtrail.history`: op, pk, changed fields, old, new, state, actor.
#[derive(Debug, PartialEq)]
struct Step {
    op: String,
    pk: Option<Value>,
    fields: Option<Vec<String>>,
    old: Option<Value>,
    new: Option<Value>,
    state: Option<Value>,
    actor_id: Option<String>,
}

async fn history(client: &Client, table: &str, pk: &Value) -> Vec<Step> {
    client
        .query(
            "SELECT op, pk, changed_fields, old_values, new_values, state, actor_id
             FROM pgtrail.history($1::text::regclass, $2)",
            &[&table, pk],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| Step {
            op: r.get(0),
            pk: r.get(1),
            fields: r.get(2),
            old: r.get(3),
            new: r.get(4),
            state: r.get(5),
            actor_id: r.get(6),
        })
        .collect()
}

fn sqlstate<T>(result: Result<T, tokio_postgres::Error>) -> String {
    match result {
        Ok(_) => "ok".to_string(),
        Err(e) => e
            .code()
            .map(|c| c.code().to_string())
            .unwrap_or_else(|| e.to_string()),
    }
}

#[tokio::test]
async fn queries_history_shows_each_update_with_its_diff_and_the_state_after_it() {
    let db = audited_db(
        "CREATE TABLE users (id int PRIMARY KEY, name text, email text, plan text);",
        "",
    )
    .await;
    db.client
        .batch_execute(
            "BEGIN; SELECT pgtrail.set_context(actor_id => 'signup');
             INSERT INTO users VALUES (1, 'Ann', 'ann@x', 'free'); COMMIT;
             BEGIN; SELECT pgtrail.set_context(actor_id => 'ann');
             UPDATE users SET email = 'ann@y' WHERE id = 1; COMMIT;
             BEGIN; SELECT pgtrail.set_context(actor_id => 'billing');
             UPDATE users SET plan = 'pro', name = 'Ann B' WHERE id = 1; COMMIT;
             INSERT INTO users VALUES (2, 'Bob', 'bob@x', 'free');",
        )
        .await
        .unwrap();
    let steps = history(&db.client, "users", &json!({"id": 1})).await;
    let full = |name: &str, email: &str, plan: &str| {
        Some(json!({"id": 1, "name": name, "email": email, "plan": plan}))
    };
    assert_eq!(
        steps,
        vec![
            Step {
                op: "INSERT".into(),
                pk: Some(json!({"id": 1})),
                fields: None,
                old: None,
                new: full("Ann", "ann@x", "free"),
                state: full("Ann", "ann@x", "free"),
                actor_id: Some("signup".into()),
            },
            Step {
                op: "UPDATE".into(),
                pk: Some(json!({"id": 1})),
                fields: Some(vec!["email".into()]),
                old: Some(json!({"email": "ann@x"})),
                new: Some(json!({"email": "ann@y"})),
                state: full("Ann", "ann@y", "free"),
                actor_id: Some("ann".into()),
            },
            Step {
                op: "UPDATE".into(),
                pk: Some(json!({"id": 1})),
                fields: Some(vec!["name".into(), "plan".into()]),
                old: Some(json!({"name": "Ann", "plan": "free"})),
                new: Some(json!({"name": "Ann B", "plan": "pro"})),
                state: full("Ann B", "ann@y", "pro"),
                actor_id: Some("billing".into()),
            },
        ]
    );
}

#[tokio::test]
async fn queries_history_follows_a_key_change_asked_by_the_old_or_the_new_key() {
    let db = audited_db("CREATE TABLE students (std_no text PRIMARY KEY, name text);", "").await;
    db.client
        .batch_execute(
            "INSERT INTO students VALUES ('100', 'Lerato');
             UPDATE students SET name = 'Lerato M' WHERE std_no = '100';
             UPDATE students SET std_no = '200' WHERE std_no = '100';
             UPDATE students SET name = 'Lerato Mokoena' WHERE std_no = '200';
             INSERT INTO students VALUES ('100', 'Someone else');",
        )
        .await
        .unwrap();
    let by_new = history(&db.client, "students", &json!({"std_no": "200"})).await;
    assert_eq!(
        by_new.iter().map(|s| s.op.as_str()).collect::<Vec<_>>(),
        ["INSERT", "UPDATE", "UPDATE", "UPDATE"]
    );
    assert_eq!(
        by_new
            .iter()
            .map(|s| s.state.clone().unwrap())
            .collect::<Vec<_>>(),
        [
            json!({"std_no": "100", "name": "Lerato"}),
            json!({"std_no": "100", "name": "Lerato M"}),
            json!({"std_no": "200", "name": "Lerato M"}),
            json!({"std_no": "200", "name": "Lerato Mokoena"}),
        ]
    );
    // The key 100 now belongs to another row: its history is that row's.
    let by_old_now = history(&db.client, "students", &json!({"std_no": "100"})).await;
    assert_eq!(by_old_now.len(), 1);
    assert_eq!(
        by_old_now[0].state,
        Some(json!({"std_no": "100", "name": "Someone else"}))
    );

    // Before the new row took the key, the old key gives the same whole history.
    let db = audited_db("CREATE TABLE students (std_no text PRIMARY KEY, name text);", "").await;
    db.client
        .batch_execute(
            "INSERT INTO students VALUES ('100', 'Lerato');
             UPDATE students SET std_no = '200' WHERE std_no = '100';
             UPDATE students SET name = 'Lerato M' WHERE std_no = '200';",
        )
        .await
        .unwrap();
    let by_old = history(&db.client, "students", &json!({"std_no": "100"})).await;
    let by_new = history(&db.client, "students", &json!({"std_no": "200"})).await;
    assert_eq!(by_old.len(), 3);
    assert_eq!(by_old, by_new);
}

#[tokio::test]
async fn queries_a_deleted_row_keeps_its_history_and_is_there_only_before_the_delete() {
    let db = audited_db(
        "CREATE TABLE posts (id int PRIMARY KEY, title text, body text);",
        "",
    )
    .await;
    db.client
        .batch_execute(
            "INSERT INTO posts VALUES (7, 'Hello', 'first');
             UPDATE posts SET body = 'edited' WHERE id = 7;",
        )
        .await
        .unwrap();
    let before = now(&db.client).await;
    db.client
        .batch_execute(
            "BEGIN; SELECT pgtrail.set_context(actor_id => 'mod-1', actor_type => 'moderator');
             DELETE FROM posts WHERE id = 7; COMMIT;",
        )
        .await
        .unwrap();
    let after = now(&db.client).await;
    let steps = history(&db.client, "posts", &json!({"id": 7})).await;
    assert_eq!(
        steps.iter().map(|s| s.op.as_str()).collect::<Vec<_>>(),
        ["INSERT", "UPDATE", "DELETE"]
    );
    assert_eq!(steps[2].state, None);
    assert_eq!(steps[2].actor_id.as_deref(), Some("mod-1"));
    assert_eq!(
        row_as_of(&db.client, "posts", &json!({"id": 7}), &before).await,
        Some(json!({"id": 7, "title": "Hello", "body": "edited"}))
    );
    assert_eq!(
        row_as_of(&db.client, "posts", &json!({"id": 7}), &after).await,
        None
    );
    // A moment in the future is answered as of now.
    assert_eq!(
        row_as_of(&db.client, "posts", &json!({"id": 7}), "2999-01-01 00:00:00+00").await,
        None
    );
}

#[tokio::test]
async fn queries_rows_inserted_before_the_install_are_known_at_any_moment_after_it() {
    let schema = "
        CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance numeric, status text);
        INSERT INTO accounts VALUES (1, 'ann', 100, 'open'), (2, 'bob', 50, 'open'), (3, 'cy', 0, 'open');";
    let db = audited_db(schema, "").await;
    let installed = now(&db.client).await;
    let before_update = snapshot(&db.client, "accounts").await;
    db.client
        .batch_execute(
            "UPDATE accounts SET balance = 120 WHERE id = 1;
             UPDATE accounts SET status = 'closed', id = 30 WHERE id = 3;
             DELETE FROM accounts WHERE id = 2;",
        )
        .await
        .unwrap();
    let later = now(&db.client).await;
    assert_eq!(
        row_as_of(&db.client, "accounts", &json!({"id": 1}), &installed).await,
        Some(json!({"id": 1, "owner": "ann", "balance": 100, "status": "open"}))
    );
    assert_eq!(
        row_as_of(&db.client, "accounts", &json!({"id": 3}), &installed).await,
        Some(json!({"id": 3, "owner": "cy", "balance": 0, "status": "open"}))
    );
    assert_eq!(
        row_as_of(&db.client, "accounts", &json!({"id": 30}), &installed).await,
        None
    );
    assert_eq!(
        table_as_of(&db.client, "accounts", &installed).await,
        before_update
    );
    assert_eq!(
        table_as_of(&db.client, "accounts", &later).await,
        snapshot(&db.client, "accounts").await
    );
    // The history of a row that predates the install starts with its first
    // recorded change, whose state is whole all the same.
    let steps = history(&db.client, "accounts", &json!({"id": 3})).await;
    assert_eq!(steps.len(), 1);
    assert_eq!(
        steps[0].state,
        Some(json!({"id": 30, "owner": "cy", "balance": 0, "status": "closed"}))
    );
}

#[tokio::test]
async fn queries_table_as_of_matches_snapshots_taken_at_those_moments() {
    let schema = "CREATE TABLE items (id int PRIMARY KEY, name text, qty int, note text);";
    let db = audited_db(schema, "").await;
    let steps = [
        "INSERT INTO items VALUES (1, 'a', 1, NULL), (2, 'b', 2, 'x'), (3, 'c', 3, NULL)",
        "UPDATE items SET qty = qty + 10 WHERE id <= 2",
        "BEGIN; UPDATE items SET id = 4 WHERE id = 3; DELETE FROM items WHERE id = 1; COMMIT",
        "BEGIN; INSERT INTO items VALUES (1, 'a again', 0, 'n'); UPDATE items SET note = NULL; COMMIT",
        "UPDATE items SET id = id + 1 WHERE id IN (2, 4)",
    ];
    let mut moments = vec![(now(&db.client).await, snapshot(&db.client, "items").await)];
    for step in steps {
        db.client.batch_execute(step).await.unwrap();
        moments.push((now(&db.client).await, snapshot(&db.client, "items").await));
    }
    for (at, expected) in &moments {
        assert_eq!(&table_as_of(&db.client, "items", at).await, expected, "at {at}");
    }
}

#[tokio::test]
async fn queries_blame_names_who_last_set_each_column() {
    let schema = "
        CREATE TABLE profiles (id int PRIMARY KEY, name text, bio text, avatar text);
        INSERT INTO profiles VALUES (2, 'Old', 'old bio', NULL);";
    let db = audited_db(schema, "").await;
    db.client
        .batch_execute(
            "BEGIN; SELECT pgtrail.set_context(actor_id => '1', actor_name => 'ann@x', reason => 'signup');
             INSERT INTO profiles VALUES (1, 'Ann', 'hi', NULL); COMMIT;
             BEGIN; SELECT pgtrail.set_context(actor_id => '9', actor_name => 'mod@x', actor_type => 'moderator',
                                               reason => 'offensive bio');
             UPDATE profiles SET bio = '[removed]' WHERE id = 1; COMMIT;
             BEGIN; SELECT pgtrail.set_context(actor_id => '1', actor_name => 'ann@x');
             UPDATE profiles SET avatar = 'cat.png' WHERE id = 1;
             UPDATE profiles SET name = 'New' WHERE id = 2; COMMIT;",
        )
        .await
        .unwrap();
    let blame = |pk: Value| {
        let client = &db.client;
        async move {
            client
                .query(
                    "SELECT column_name, value, actor_id, actor_type, reason, change_id IS NOT NULL
                     FROM pgtrail.blame('profiles', $1)",
                    &[&pk],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| {
                    let column: String = r.get(0);
                    let value: Value = r.get(1);
                    let actor: Option<String> = r.get(2);
                    let kind: Option<String> = r.get(3);
                    let reason: Option<String> = r.get(4);
                    let has_change: bool = r.get(5);
                    (column, value, actor, kind, reason, has_change)
                })
                .collect::<Vec<_>>()
        }
    };
    let some = |s: &str| Some(s.to_string());
    assert_eq!(
        blame(json!({"id": 1})).await,
        vec![
            ("id".into(), json!(1), some("1"), None, some("signup"), true),
            ("name".into(), json!("Ann"), some("1"), None, some("signup"), true),
            (
                "bio".into(),
                json!("[removed]"),
                some("9"),
                some("moderator"),
                some("offensive bio"),
                true
            ),
            ("avatar".into(), json!("cat.png"), some("1"), None, None, true),
        ]
    );
    // A row older than the install: unchanged columns have no change to name.
    assert_eq!(
        blame(json!({"id": 2})).await,
        vec![
            ("id".into(), json!(2), None, None, None, false),
            ("name".into(), json!("New"), some("1"), None, None, true),
            ("bio".into(), json!("old bio"), None, None, None, false),
            ("avatar".into(), Value::Null, None, None, None, false),
        ]
    );
}

#[tokio::test]
async fn queries_composite_keys_and_keyless_tables_are_rebuilt_too() {
    let schema = "
        CREATE TABLE memberships (org_id int, user_id int, role text, PRIMARY KEY (org_id, user_id));
        CREATE TABLE events (kind text, payload text);
        INSERT INTO memberships VALUES (1, 1, 'owner'), (1, 2, 'member');
        INSERT INTO events VALUES ('login', 'a'), ('login', 'a'), ('logout', 'b');";
    let db = audited_db(schema, "").await;
    let mut moments = vec![(
        now(&db.client).await,
        snapshot(&db.client, "memberships").await,
        snapshot(&db.client, "events").await,
    )];
    for step in [
        "UPDATE memberships SET role = 'admin' WHERE user_id = 2; UPDATE events SET payload = 'c' WHERE kind = 'logout'",
        "UPDATE memberships SET org_id = 2 WHERE user_id = 1; DELETE FROM events WHERE ctid = (SELECT min(ctid) FROM events WHERE payload = 'a')",
        "INSERT INTO memberships VALUES (1, 1, 'guest'); INSERT INTO events VALUES ('login', 'a'), ('login', 'a')",
        "DELETE FROM memberships WHERE org_id = 1; UPDATE events SET kind = 'in' WHERE payload = 'a'",
    ] {
        db.client.batch_execute(step).await.unwrap();
        moments.push((
            now(&db.client).await,
            snapshot(&db.client, "memberships").await,
            snapshot(&db.client, "events").await,
        ));
    }
    for (at, memberships, events) in &moments {
        assert_eq!(&table_as_of(&db.client, "memberships", at).await, memberships);
        assert_eq!(&table_as_of(&db.client, "events", at).await, events);
    }
    assert_eq!(
        row_as_of(
            &db.client,
            "memberships",
            &json!({"org_id": 1, "user_id": 1}),
            &moments[0].0
        )
        .await,
        Some(json!({"org_id": 1, "user_id": 1, "role": "owner"}))
    );
    let logout = json!({"kind": "logout", "payload": "b"});
    assert_eq!(
        row_as_of(&db.client, "events", &logout, &moments[0].0).await,
        Some(logout.clone())
    );
    assert_eq!(
        row_as_of(&db.client, "events", &logout, &moments[1].0).await,
        None
    );
    let moved = history(&db.client, "memberships", &json!({"org_id": 2, "user_id": 1})).await;
    assert_eq!(moved.len(), 1);
    assert_eq!(
        moved[0].state,
        Some(json!({"org_id": 2, "user_id": 1, "role": "owner"}))
    );
}

#[tokio::test]
async fn queries_full_image_tables_ignored_and_redacted_columns() {
    let schema = "
        CREATE TABLE users (id int PRIMARY KEY, email text, password_hash text, last_login_at timestamptz);
        CREATE TABLE orders (id int PRIMARY KEY, status text, total numeric);
        INSERT INTO orders VALUES (1, 'new', 10);";
    let config = "[tables.\"public.orders\"]\nimages = \"full\"\n\
                  [tables.\"public.users\"]\nignore_columns = [\"last_login_at\"]\nredact_columns = [\"password_hash\"]\n";
    let db = audited_db(schema, config).await;
    let t0 = now(&db.client).await;
    db.client
        .batch_execute(
            "INSERT INTO orders VALUES (2, 'new', 20);
             UPDATE orders SET status = 'paid';
             INSERT INTO users VALUES (1, 'a@x', 'h1', now());
             UPDATE users SET last_login_at = now() + interval '1 day';",
        )
        .await
        .unwrap();
    let t1 = now(&db.client).await;
    db.client
        .batch_execute(
            "UPDATE orders SET total = 25 WHERE id = 2; UPDATE users SET password_hash = 'h2', email = 'b@x'",
        )
        .await
        .unwrap();
    assert_eq!(
        table_as_of(&db.client, "orders", &t0).await,
        json!([{"id": 1, "status": "new", "total": 10}])
    );
    assert_eq!(
        table_as_of(&db.client, "orders", &t1).await,
        json!([{"id": 1, "status": "paid", "total": 10}, {"id": 2, "status": "paid", "total": 20}])
    );
    // The first marker is the one capture recorded at the INSERT.
    let marker: Value = db
        .client
        .query_one(
            "SELECT new_values -> 'password_hash' FROM pgtrail.changes WHERE table_name = 'users' AND op = 'INSERT'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let user = row_as_of(&db.client, "users", &json!({"id": 1}), &t1)
        .await
        .unwrap();
    assert_eq!(user, json!({"id": 1, "email": "a@x", "password_hash": marker}));
    let steps = history(&db.client, "users", &json!({"id": 1})).await;
    assert_eq!(steps.len(), 2, "the ignored column's update is not recorded");
    let last = steps[1].state.clone().unwrap();
    assert_eq!(last["email"], json!("b@x"));
    assert!(last["password_hash"]["redacted"].is_string());
    assert_ne!(last["password_hash"], marker);
    assert!(last.get("last_login_at").is_none());
    let orders = history(&db.client, "orders", &json!({"id": 1})).await;
    assert_eq!(orders[0].fields, Some(vec!["status".to_string()]));
    assert_eq!(
        orders[0].state,
        Some(json!({"id": 1, "status": "paid", "total": 10}))
    );
}

#[tokio::test]
async fn queries_a_truncate_ends_every_row_and_hides_what_was_never_recorded() {
    let schema = "
        CREATE TABLE logs (id int PRIMARY KEY, line text);
        INSERT INTO logs VALUES (1, 'old');";
    let db = audited_db(schema, "").await;
    let t0 = now(&db.client).await;
    db.client
        .batch_execute("INSERT INTO logs VALUES (2, 'new')")
        .await
        .unwrap();
    db.client.batch_execute("TRUNCATE logs").await.unwrap();
    let t1 = now(&db.client).await;
    db.client
        .batch_execute("INSERT INTO logs VALUES (3, 'after')")
        .await
        .unwrap();
    let t2 = now(&db.client).await;
    let steps = history(&db.client, "logs", &json!({"id": 2})).await;
    assert_eq!(
        steps
            .iter()
            .map(|s| (s.op.as_str(), s.state.is_some()))
            .collect::<Vec<_>>(),
        [("INSERT", true), ("TRUNCATE", false)]
    );
    assert_eq!(table_as_of(&db.client, "logs", &t1).await, json!([]));
    assert_eq!(
        table_as_of(&db.client, "logs", &t2).await,
        json!([{"id": 3, "line": "after"}])
    );
    assert_eq!(row_as_of(&db.client, "logs", &json!({"id": 2}), &t1).await, None);
    // Row 1 predates the install and was never changed before the TRUNCATE:
    // the trail cannot tell, and says so instead of guessing.
    let err = db
        .client
        .query_one(
            "SELECT count(*) FROM pgtrail.table_as_of('logs', $1::text::timestamptz)",
            &[&t0],
        )
        .await;
    assert_eq!(sqlstate(err), "PGTR5");
}

#[tokio::test]
async fn queries_a_moment_before_the_install_is_refused_with_pgtr3() {
    let db = audited_db(
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);",
        "",
    )
    .await;
    let err = db
        .client
        .query_one(
            "SELECT pgtrail.row_as_of('t', '{\"id\": 1}', now() - interval '1 hour')",
            &[],
        )
        .await;
    let e = err.as_ref().unwrap_err();
    let db_error = e.as_db_error().unwrap();
    assert!(db_error.message().contains("public.t"), "{db_error:?}");
    assert!(db_error.message().contains("audited since"), "{db_error:?}");
    assert!(db_error.hint().is_some());
    assert_eq!(sqlstate(err), "PGTR3");
    let err = db
        .client
        .query(
            "SELECT * FROM pgtrail.table_as_of('t', now() - interval '1 hour')",
            &[],
        )
        .await;
    assert_eq!(sqlstate(err), "PGTR3");
}

#[tokio::test]
async fn queries_a_table_that_is_not_audited_is_refused_with_pgtr4() {
    let schema = "CREATE TABLE sessions (id int PRIMARY KEY); CREATE TABLE users (id int PRIMARY KEY);";
    let db = audited_db(schema, "[capture]\nexclude = [\"sessions\"]\n").await;
    for sql in [
        "SELECT pgtrail.row_as_of('sessions', '{\"id\": 1}', now())",
        "SELECT count(*) FROM pgtrail.table_as_of('sessions', now())",
        "SELECT count(*) FROM pgtrail.history('sessions', '{\"id\": 1}')",
        "SELECT count(*) FROM pgtrail.blame('sessions', '{\"id\": 1}')",
    ] {
        let err = db.client.query_one(sql, &[]).await;
        let message = err
            .as_ref()
            .err()
            .and_then(|e| e.as_db_error())
            .map(|e| format!("{} {}", e.message(), e.hint().unwrap_or_default()));
        assert!(
            message
                .as_deref()
                .is_some_and(|m| m.contains("sessions") && m.contains("pgtrail apply")),
            "{message:?}"
        );
        assert_eq!(sqlstate(err), "PGTR4", "{sql}");
    }
}

/// A partition's name (issue 11): history, row_as_of and blame answer for
/// the rows of the partition (as rows of its partitioned table, which a
/// row may move across); table_as_of names the table to ask instead.
#[tokio::test]
async fn queries_a_partition_is_answered_as_its_partitioned_table() {
    let schema = "CREATE TABLE events (id int, kind text, PRIMARY KEY (id)) PARTITION BY RANGE (id);
                  CREATE TABLE events_low PARTITION OF events FOR VALUES FROM (0) TO (100);
                  CREATE TABLE events_high PARTITION OF events FOR VALUES FROM (100) TO (1000);";
    let db = audited_db(schema, "[capture]\ninclude = [\"events\"]\n").await;
    db.client
        .batch_execute(
            "INSERT INTO events VALUES (1, 'signup'), (150, 'order');
             UPDATE events SET kind = 'login' WHERE id = 1;
             UPDATE events_low SET id = 2 WHERE id = 1;",
        )
        .await
        .unwrap();
    let at = now(&db.client).await;
    let pk = json!({"id": 2});
    assert_eq!(
        history(&db.client, "events_low", &pk).await,
        history(&db.client, "events", &pk).await
    );
    assert_eq!(history(&db.client, "events_low", &pk).await.len(), 3);
    assert_eq!(
        row_as_of(&db.client, "events_low", &pk, &at).await,
        Some(json!({"id": 2, "kind": "login"}))
    );
    let blame: i64 = db
        .client
        .query_one(
            "SELECT count(*) FROM pgtrail.blame('events_high', '{\"id\": 150}')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(blame, 2);
    let error = db
        .client
        .query("SELECT * FROM pgtrail.table_as_of('events_low', now())", &[])
        .await
        .expect_err("a partition's table is asked for instead");
    let db_error = error.as_db_error().expect("a database error");
    assert_eq!(db_error.code().code(), "PGTR4");
    assert!(
        db_error
            .message()
            .contains("partition of the audited table public.events")
            && db_error
                .hint()
                .is_some_and(|h| h.contains("table_as_of('public.events'")),
        "{db_error:?}"
    );
}

/// One random statement on one of the three tables.
#[derive(Debug, Clone)]
enum Op {
    Insert(u8, i8),
    Update(u8, bool, i8),
    ChangeKey(u8, i8),
    Delete(u8),
    Truncate(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<u8>(), any::<i8>()).prop_map(|(t, v)| Op::Insert(t, v)),
        4 => (any::<u8>(), any::<bool>(), any::<i8>()).prop_map(|(t, c, v)| Op::Update(t, c, v)),
        3 => (any::<u8>(), any::<i8>()).prop_map(|(t, v)| Op::ChangeKey(t, v)),
        2 => any::<u8>().prop_map(Op::Delete),
        1 => any::<u8>().prop_map(Op::Truncate),
    ]
}

/// SQL for one step; values are small so that keys collide and rows repeat.
fn op_sql(op: &Op) -> String {
    let small = |v: i8| i32::from(v).rem_euclid(4);
    match *op {
        Op::Insert(t, v) => match t % 3 {
            0 => format!(
                "INSERT INTO one VALUES ({}, 'n{v}', {}) ON CONFLICT DO NOTHING",
                small(v) + i32::from(t % 3),
                v
            ),
            1 => format!(
                "INSERT INTO two VALUES ({}, {}, 'n{v}') ON CONFLICT DO NOTHING",
                small(v),
                i32::from(t % 2)
            ),
            _ => format!("INSERT INTO bag VALUES ({}, 'n{}')", small(v), small(v)),
        },
        Op::Update(t, which, v) => match (t % 3, which) {
            (0, true) => format!("UPDATE one SET name = 'u{v}' WHERE id = {}", small(v)),
            (0, false) => format!(
                "UPDATE one SET qty = {v}, name = NULL WHERE id % 2 = {}",
                small(v) % 2
            ),
            (1, true) => format!("UPDATE two SET note = 'u{v}' WHERE a = {}", small(v)),
            (1, false) => format!("UPDATE two SET note = NULL WHERE b = {}", small(v) % 2),
            (_, true) => format!(
                "UPDATE bag SET x = {} WHERE x = {}",
                small(v),
                small(v.wrapping_add(1))
            ),
            (_, false) => format!("UPDATE bag SET y = 'u{v}' WHERE ctid = (SELECT min(ctid) FROM bag)"),
        },
        Op::ChangeKey(t, v) => match t % 3 {
            0 => format!(
                "UPDATE one SET id = id + 10 WHERE id = {} AND NOT EXISTS (SELECT FROM one WHERE id = {} + 10)",
                small(v),
                small(v)
            ),
            1 => format!(
                "UPDATE two SET a = a + 4 WHERE a = {} AND NOT EXISTS (SELECT FROM two t2 WHERE t2.a = {} + 4)",
                small(v),
                small(v)
            ),
            _ => format!("UPDATE bag SET x = x + 1 WHERE x = {}", small(v)),
        },
        Op::Delete(t) => match t % 3 {
            0 => format!("DELETE FROM one WHERE id % 3 = {}", t % 3),
            1 => format!("DELETE FROM two WHERE a = {}", t % 5),
            _ => "DELETE FROM bag WHERE ctid = (SELECT max(ctid) FROM bag)".to_string(),
        },
        Op::Truncate(t) => format!("TRUNCATE {}", TABLES[usize::from(t % 3)]),
    }
}

/// A transaction: some steps, some of them inside a savepoint rolled back.
#[derive(Debug, Clone)]
struct Tx {
    steps: Vec<(Op, bool)>,
}

fn tx() -> impl Strategy<Value = Tx> {
    proptest::collection::vec((op(), proptest::bool::weighted(0.2)), 1..5).prop_map(|steps| Tx { steps })
}

/// The statements of a transaction, each sent on its own as applications
/// do (a TRUNCATE is recorded at its statement's start, which in a message of
/// several statements is the message's start).
fn tx_statements(tx: &Tx) -> Vec<String> {
    let mut statements = vec!["BEGIN".to_string()];
    for (index, (op, rolled_back)) in tx.steps.iter().enumerate() {
        if *rolled_back {
            statements.push(format!("SAVEPOINT s{index}"));
            statements.push(op_sql(op));
            statements.push(format!("ROLLBACK TO SAVEPOINT s{index}"));
        } else {
            statements.push(op_sql(op));
        }
    }
    statements.push("COMMIT".to_string());
    statements
}

/// The tables a transaction truncates for good (not in a rolled-back savepoint).
fn truncated(tx: &Tx) -> Vec<&'static str> {
    tx.steps
        .iter()
        .filter_map(|(op, rolled_back)| match op {
            Op::Truncate(t) if !rolled_back => Some(TABLES[usize::from(t % 3)]),
            _ => None,
        })
        .collect()
}

const TABLES: [&str; 3] = ["one", "two", "bag"];

/// The moment and every table of the oracle test.
async fn take_moment(client: &Client) -> (String, Vec<(&'static str, Value)>) {
    let at = now(client).await;
    let mut tables = Vec::new();
    for table in TABLES {
        tables.push((table, snapshot(client, table).await));
    }
    (at, tables)
}

/// The oracle: after random transactions on a table with a one-column key,
/// one with a composite key and full images, and one without a key (three
/// rows predate the install in each), `table_as_of` and `row_as_of` at every moment between
/// transactions give back exactly what the tables held then.
#[test]
fn queries_as_of_reproduces_every_snapshot_of_random_transactions() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let schema = "
        CREATE TABLE one (id int PRIMARY KEY, name text, qty int);
        CREATE TABLE two (a int, b int, note text, PRIMARY KEY (a, b));
        CREATE TABLE bag (x int, y text);";
    let config = "[tables.\"public.two\"]\nimages = \"full\"\n";
    let seed = "
        INSERT INTO one VALUES (0, 'pre', 1), (1, NULL, 2), (2, 'pre2', 3);
        INSERT INTO two VALUES (0, 0, 'pre'), (0, 1, NULL), (1, 0, 'p');
        INSERT INTO bag VALUES (0, 'n0'), (0, 'n0'), (1, NULL);";
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 30,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&proptest::collection::vec(tx(), 1..8), |txs| {
            runtime.block_on(async {
                let db = audited_db(&format!("{schema}{seed}"), config).await;
                let client = &db.client;
                let mut moments = Vec::new();
                moments.push(take_moment(client).await);
                for tx in &txs {
                    for statement in tx_statements(tx) {
                        client.batch_execute(&statement).await.unwrap();
                    }
                    moments.push(take_moment(client).await);
                }
                for (index, (at, tables)) in moments.iter().enumerate() {
                    for (table, expected) in tables {
                        // Rows from before the install that a later TRUNCATE
                        // removed were never recorded: until the first
                        // TRUNCATE, the trail must say it cannot tell.
                        let cut_later = txs[index..].iter().any(|tx| truncated(tx).contains(table));
                        let cut_before = txs[..index].iter().any(|tx| truncated(tx).contains(table));
                        if cut_later && !cut_before {
                            let err = client
                                .query(
                                    "SELECT * FROM pgtrail.table_as_of($1::text::regclass, $2::text::timestamptz)",
                                    &[table, at],
                                )
                                .await;
                            prop_assert_eq!(sqlstate(err), "PGTR5");
                            continue;
                        }
                        let got = table_as_of(client, table, at).await;
                        prop_assert_eq!(&got, expected, "{} at {} after {:#?}", table, at, txs);
                        for row in expected.as_array().unwrap() {
                            let pk = match *table {
                                "one" => json!({"id": row["id"]}),
                                "two" => json!({"a": row["a"], "b": row["b"]}),
                                _ => row.clone(),
                            };
                            let got = row_as_of(client, table, &pk, at).await;
                            prop_assert_eq!(got.as_ref(), Some(row), "{} {} at {}", table, pk, at);
                        }
                    }
                }
                Ok(())
            })
        })
        .unwrap();
}
