//! TRUNCATE and time travel: "the nightly job truncates the staging tables;
//! what did they hold at noon?". A table that was empty when it was audited
//! (or whose rows a baseline recorded) is known from its first row, so a
//! TRUNCATE no longer hides the moments before it. With `truncate =
//! "capture"` a TRUNCATE records every row it removes as a DELETE, before
//! its TRUNCATE change, up to `truncate_row_limit` rows; above that it
//! records the event only and says so. Through partitions, CASCADE, RESTART
//! IDENTITY, savepoints and several TRUNCATEs in one statement, and without
//! ever making a TRUNCATE fail.

use pgtrail::config::Config;
use pgtrail::plan::{ApplyOptions, apply_with_options, inspect};
use pgtrail_testkit::TestDb;
use proptest::prelude::*;
use serde_json::{Value, json};
use tokio_postgres::Client;

use crate::support::{apply, audited_db, changes, column, count, now};

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

/// `pgtrail.table_as_of(table, at)`, sorted like [`snapshot`], or the SQLSTATE of its error.
async fn table_as_of(client: &Client, table: &str, at: &str) -> Result<Value, String> {
    client
        .query_one(
            "SELECT coalesce(jsonb_agg(j ORDER BY j::text), '[]')
             FROM pgtrail.table_as_of($1::text::regclass, $2::text::timestamptz) AS j",
            &[&table, &at],
        )
        .await
        .map(|row| row.get(0))
        .map_err(sqlstate)
}

async fn row_as_of(client: &Client, table: &str, pk: &Value, at: &str) -> Result<Option<Value>, String> {
    client
        .query_one(
            "SELECT pgtrail.row_as_of($1::text::regclass, $2, $3::text::timestamptz)",
            &[&table, pk, &at],
        )
        .await
        .map(|row| row.get(0))
        .map_err(sqlstate)
}

/// `pgtrail.history` of one row: each change's kind and the state after it.
async fn history(client: &Client, table: &str, pk: &Value) -> Vec<(String, Option<Value>)> {
    client
        .query(
            "SELECT op, state FROM pgtrail.history($1::text::regclass, $2)",
            &[&table, pk],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn sqlstate(e: tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| e.to_string())
}

/// The TRUNCATE changes of `table`, oldest first: what each says of its rows.
async fn truncates(client: &Client, table: &str) -> Vec<Option<Value>> {
    changes(client, table)
        .await
        .into_iter()
        .filter(|c| c.op == "TRUNCATE")
        .map(|c| c.new)
        .collect()
}

/// The kinds of the changes of `table`, oldest first.
async fn ops(client: &Client, table: &str) -> Vec<String> {
    changes(client, table).await.into_iter().map(|c| c.op).collect()
}

#[tokio::test]
async fn truncate_of_a_table_empty_when_audited_leaves_every_earlier_moment_answerable() {
    let db = audited_db("CREATE TABLE staging (id int PRIMARY KEY, line text, n int)", "").await;
    let c = &db.client;
    c.batch_execute("INSERT INTO staging VALUES (1, 'a', 1), (2, 'b', 2)")
        .await
        .unwrap();
    let t1 = now(c).await;
    let at_t1 = snapshot(c, "staging").await;
    c.batch_execute("UPDATE staging SET n = 10 WHERE id = 1; DELETE FROM staging WHERE id = 2; INSERT INTO staging VALUES (3, 'c', 3)")
        .await
        .unwrap();
    let t2 = now(c).await;
    let at_t2 = snapshot(c, "staging").await;
    c.batch_execute("TRUNCATE staging").await.unwrap();
    let t3 = now(c).await;
    c.batch_execute("INSERT INTO staging VALUES (1, 'again', 0)")
        .await
        .unwrap();

    // 0.3.0 refused every moment before the first TRUNCATE (PGTR5).
    assert_eq!(table_as_of(c, "staging", &t1).await, Ok(at_t1));
    assert_eq!(table_as_of(c, "staging", &t2).await, Ok(at_t2));
    assert_eq!(table_as_of(c, "staging", &t3).await, Ok(json!([])));
    assert_eq!(
        row_as_of(c, "staging", &json!({"id": 1}), &t2).await,
        Ok(Some(json!({"id": 1, "line": "a", "n": 10})))
    );
    assert_eq!(row_as_of(c, "staging", &json!({"id": 2}), &t2).await, Ok(None));
    assert_eq!(row_as_of(c, "staging", &json!({"id": 7}), &t1).await, Ok(None));
    assert_eq!(
        row_as_of(c, "staging", &json!({"id": 1}), &t3).await,
        Ok(None),
        "the TRUNCATE ended it"
    );
    // The event only (the default): the trail says nothing of the rows.
    assert_eq!(truncates(c, "staging").await, [None]);
    assert_eq!(
        count(
            c,
            "SELECT count(*) FROM pgtrail.audited_table WHERE complete_since_attach"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn truncate_after_a_baseline_leaves_every_earlier_moment_answerable() {
    let mut db = TestDb::new().await;
    db.client
        .batch_execute(
            "CREATE TABLE staging (id int PRIMARY KEY, line text);
             CREATE TABLE bag (x int, y text);
             INSERT INTO staging VALUES (1, 'old'), (2, 'older');
             INSERT INTO bag VALUES (1, 'a'), (1, 'a');",
        )
        .await
        .unwrap();
    let config = Config::parse("", "pgtrail.toml").unwrap();
    apply_with_options(
        &mut db.client,
        &config,
        ApplyOptions { baseline: true },
        &mut |_, _, _| {},
    )
    .await
    .expect("apply --baseline");
    let c = &db.client;
    let t0 = now(c).await;
    c.batch_execute("UPDATE staging SET line = 'new' WHERE id = 1; INSERT INTO bag VALUES (2, 'b')")
        .await
        .unwrap();
    let t1 = now(c).await;
    let (staging, bag) = (snapshot(c, "staging").await, snapshot(c, "bag").await);
    c.batch_execute("TRUNCATE staging, bag").await.unwrap();

    assert_eq!(
        table_as_of(c, "staging", &t0).await,
        Ok(json!([{"id": 1, "line": "old"}, {"id": 2, "line": "older"}]))
    );
    assert_eq!(table_as_of(c, "staging", &t1).await, Ok(staging));
    assert_eq!(
        table_as_of(c, "bag", &t0).await,
        Ok(json!([{"x": 1, "y": "a"}, {"x": 1, "y": "a"}]))
    );
    assert_eq!(table_as_of(c, "bag", &t1).await, Ok(bag));
    assert_eq!(
        row_as_of(c, "bag", &json!({"x": 2, "y": "b"}), &t0).await,
        Ok(None)
    );
}

#[tokio::test]
async fn truncate_of_a_table_that_had_rows_before_the_install_cannot_be_told_without_capture() {
    let db = audited_db(
        "CREATE TABLE logs (id int PRIMARY KEY, line text); INSERT INTO logs VALUES (1, 'old');",
        "",
    )
    .await;
    let t0 = now(&db.client).await;
    db.client.batch_execute("TRUNCATE logs").await.unwrap();
    assert_eq!(
        table_as_of(&db.client, "logs", &t0).await,
        Err("PGTR5".to_string())
    );
    let err = db
        .client
        .query_one(
            "SELECT pgtrail.row_as_of('logs', '{\"id\": 1}', $1::text::timestamptz)",
            &[&t0],
        )
        .await
        .unwrap_err();
    let hint = err
        .as_db_error()
        .and_then(|e| e.hint())
        .unwrap_or_default()
        .to_string();
    assert!(hint.contains("truncate = \"capture\""), "{hint}");
}

const CAPTURE_SCHEMA: &str = "
    CREATE TABLE users (id int PRIMARY KEY, email text, password_hash text, last_seen timestamptz);
    INSERT INTO users VALUES (1, 'a@x', 'h1', now()), (2, 'b@x', 'h2', now()), (3, 'c@x', NULL, NULL);";

const CAPTURE_CONFIG: &str = "
    [tables.users]
    ignore_columns = [\"last_seen\"]
    redact_columns = [\"password_hash\"]
    truncate = \"capture\"";

#[tokio::test]
async fn truncate_capture_records_each_removed_row_as_a_delete_before_the_event() {
    let db = audited_db(CAPTURE_SCHEMA, CAPTURE_CONFIG).await;
    let c = &db.client;
    c.batch_execute("UPDATE users SET email = 'a2@x' WHERE id = 1")
        .await
        .unwrap();
    let t0 = now(c).await;
    let before = table_as_of(c, "users", &t0).await;
    c.batch_execute(
        "BEGIN; SELECT pgtrail.set_context(actor_id => 'ops', reason => 'reset staging');
         TRUNCATE users; COMMIT;",
    )
    .await
    .unwrap();
    let t1 = now(c).await;
    c.batch_execute("INSERT INTO users VALUES (1, 'new@x', 'h9', now())")
        .await
        .unwrap();

    let all = changes(c, "users").await;
    let truncate: Vec<_> = all.iter().filter(|x| x.txid == all[all.len() - 2].txid).collect();
    assert_eq!(
        truncate.iter().map(|x| x.op.as_str()).collect::<Vec<_>>(),
        ["DELETE", "DELETE", "DELETE", "TRUNCATE"],
        "one DELETE per row, then the event, in the TRUNCATE's transaction"
    );
    for change in &truncate {
        assert_eq!(change.actor_id.as_deref(), Some("ops"));
        assert_eq!(change.reason.as_deref(), Some("reset staging"));
    }
    assert_eq!(truncate[3].new, Some(json!({"rows": "recorded", "count": 3})));
    let mut removed: Vec<Value> = truncate[..3].iter().map(|x| x.old.clone().unwrap()).collect();
    removed.sort_by_key(|v| v["id"].as_i64());
    assert_eq!(removed[0]["email"], json!("a2@x"));
    assert_eq!(
        (&removed[2]["id"], &removed[2]["email"]),
        (&json!(3), &json!("c@x"))
    );
    for row in &removed {
        assert!(
            row.get("last_seen").is_none(),
            "ignored columns are never recorded: {row}"
        );
    }
    // Redacted values as markers, as any DELETE records them.
    assert!(
        removed[0]["password_hash"]["redacted"].is_string(),
        "{}",
        removed[0]
    );
    assert!(!removed[0].to_string().contains("h1"));
    assert_eq!(
        truncate[0].pk,
        Some(json!({"id": truncate[0].old.as_ref().unwrap()["id"]}))
    );

    // The row's history ends with its DELETE by the TRUNCATE; a new row
    // with its key begins a life of its own.
    let row2 = history(c, "users", &json!({"id": 2})).await;
    assert_eq!(
        row2.last().map(|(op, state)| (op.as_str(), state.is_none())),
        Some(("DELETE", true))
    );
    // Every moment before the TRUNCATE is known, rows from before the install included.
    assert!(before.is_ok());
    assert_eq!(table_as_of(c, "users", &t0).await, before);
    assert_eq!(before.unwrap().as_array().map(|rows| rows.len()), Some(3));
    assert_eq!(
        row_as_of(c, "users", &json!({"id": 3}), &t0).await,
        Ok(Some(removed[2].clone())),
        "the row as it was, its password hash as a marker"
    );
    assert_eq!(row_as_of(c, "users", &json!({"id": 3}), &t1).await, Ok(None));
    assert_eq!(table_as_of(c, "users", &t1).await, Ok(json!([])));
}

#[tokio::test]
async fn truncate_over_the_row_limit_records_the_event_only_and_says_so() {
    let db = audited_db(
        CAPTURE_SCHEMA,
        &format!("{CAPTURE_CONFIG}\n    truncate_row_limit = 2"),
    )
    .await;
    let c = &db.client;
    let t0 = now(c).await;
    c.batch_execute("TRUNCATE users").await.unwrap();
    assert_eq!(ops(c, "users").await, ["TRUNCATE"], "not one row: all or nothing");
    assert_eq!(
        truncates(c, "users").await,
        [Some(json!({"rows": "not_recorded", "limit": 2}))]
    );
    // Rows older than the install went unrecorded: the trail says it cannot tell.
    assert_eq!(table_as_of(c, "users", &t0).await, Err("PGTR5".to_string()));

    // Within the limit again: recorded, and the moments after the first
    // TRUNCATE are known anyway.
    c.batch_execute("INSERT INTO users VALUES (5, 'e@x', NULL, NULL), (6, 'f@x', NULL, NULL)")
        .await
        .unwrap();
    let t1 = now(c).await;
    c.batch_execute("TRUNCATE users").await.unwrap();
    assert_eq!(
        truncates(c, "users").await.last(),
        Some(&Some(json!({"rows": "recorded", "count": 2})))
    );
    let rows = table_as_of(c, "users", &t1).await.unwrap_or_default();
    let emails: Vec<&Value> = rows
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| &r["email"])
        .collect();
    assert_eq!(emails, [&json!("e@x"), &json!("f@x")]);
}

const PARTITIONED: &str = "
    CREATE TABLE events (id int, at date, kind text, PRIMARY KEY (id, at, kind)) PARTITION BY RANGE (at);
    CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
    CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')
        PARTITION BY LIST (kind);
    CREATE TABLE events_2026_a PARTITION OF events_2026 FOR VALUES IN ('a');
    CREATE TABLE events_2026_b PARTITION OF events_2026 FOR VALUES IN ('b');
    INSERT INTO events VALUES (1, '2025-03-01', 'a'), (2, '2025-04-01', 'b'),
                              (3, '2026-03-01', 'a'), (4, '2026-03-01', 'b'), (5, '2026-04-01', 'b');";

#[tokio::test]
async fn truncate_of_partitions_records_each_row_once_under_the_partitioned_table() {
    let db = audited_db(
        PARTITIONED,
        "[tables.events]\ntruncate = \"capture\"\ntruncate_row_limit = 4",
    )
    .await;
    let c = &db.client;
    let t0 = now(c).await;

    // One partition: its rows only, and one event.
    c.batch_execute("TRUNCATE events_2025").await.unwrap();
    let deleted = |from: i64| {
        format!(
            "SELECT (pk ->> 'id')::int FROM pgtrail.changes WHERE op = 'DELETE' AND id > {from} ORDER BY 1"
        )
    };
    assert_eq!(column::<i32>(c, &deleted(0)).await, [1, 2]);
    assert_eq!(
        truncates(c, "events").await,
        [Some(json!({"rows": "recorded", "count": 2}))]
    );

    // A sub-partitioned partition and a leaf of it named in one statement:
    // each row once, one event.
    let last: i64 = count(c, "SELECT max(id) FROM pgtrail.changes").await;
    c.batch_execute("TRUNCATE events_2026_b, events_2026")
        .await
        .unwrap();
    assert_eq!(column::<i32>(c, &deleted(last)).await, [3, 4, 5]);
    assert_eq!(truncates(c, "events").await.len(), 2);
    assert_eq!(
        truncates(c, "events").await[1],
        Some(json!({"rows": "recorded", "count": 3}))
    );

    // The whole table over the limit (5 rows, limit 4), whatever each
    // partition holds: the event only, not one DELETE.
    c.batch_execute(&PARTITIONED[PARTITIONED.find("INSERT").unwrap()..])
        .await
        .unwrap();
    let last: i64 = count(c, "SELECT max(id) FROM pgtrail.changes").await;
    c.batch_execute("TRUNCATE events").await.unwrap();
    assert_eq!(column::<i32>(c, &deleted(last)).await, Vec::<i32>::new());
    assert_eq!(
        truncates(c, "events").await[2],
        Some(json!({"rows": "not_recorded", "limit": 4}))
    );
    assert_eq!(
        count(
            c,
            "SELECT count(*) FROM pgtrail.changes WHERE table_name <> 'events'"
        )
        .await,
        0,
        "everything under the partitioned table's name"
    );
    // A TRUNCATE over the limit later: rows from before the install went
    // unrecorded, so the trail cannot tell.
    assert_eq!(table_as_of(c, "events", &t0).await, Err("PGTR5".to_string()));
}

#[tokio::test]
async fn truncate_of_partitions_within_the_limit_keeps_every_moment_answerable() {
    let db = audited_db(PARTITIONED, "[tables.events]\ntruncate = \"capture\"").await;
    let c = &db.client;
    let t0 = now(c).await;
    let whole = snapshot(c, "events").await;
    c.batch_execute("TRUNCATE events_2026_a").await.unwrap();
    let t1 = now(c).await;
    let after_one = snapshot(c, "events").await;
    c.batch_execute("UPDATE events SET kind = 'b' WHERE id = 1; TRUNCATE events")
        .await
        .unwrap();
    assert_eq!(table_as_of(c, "events", &t0).await, Ok(whole));
    assert_eq!(table_as_of(c, "events", &t1).await, Ok(after_one));
    assert_eq!(
        history(c, "events", &json!({"id": 3, "at": "2026-03-01", "kind": "a"})).await,
        [("DELETE".to_string(), None)]
    );
    assert_eq!(
        truncates(c, "events").await,
        [
            Some(json!({"rows": "recorded", "count": 1})),
            Some(json!({"rows": "recorded", "count": 4}))
        ]
    );
}

#[tokio::test]
async fn truncate_cascade_and_restart_identity_record_every_audited_table_they_empty() {
    let schema = "
        CREATE TABLE customers (id serial PRIMARY KEY, name text);
        CREATE TABLE orders (id serial PRIMARY KEY, customer_id int REFERENCES customers, total int);
        CREATE TABLE notes (id serial PRIMARY KEY, order_id int REFERENCES orders, body text);
        INSERT INTO customers (name) VALUES ('ann'), ('bob');
        INSERT INTO orders (customer_id, total) VALUES (1, 10), (2, 20);
        INSERT INTO notes (order_id, body) VALUES (1, 'fragile');";
    let config = "[capture]\ntruncate = \"capture\"\n[tables.notes]\ntruncate = \"event\"\n";
    let db = audited_db(schema, config).await;
    let c = &db.client;
    let t0 = now(c).await;
    let (customers, orders) = (snapshot(c, "customers").await, snapshot(c, "orders").await);
    c.batch_execute("TRUNCATE customers RESTART IDENTITY CASCADE")
        .await
        .unwrap();
    c.batch_execute("INSERT INTO customers (name) VALUES ('cy')")
        .await
        .unwrap();

    assert_eq!(
        ops(c, "customers").await,
        ["DELETE", "DELETE", "TRUNCATE", "INSERT"]
    );
    assert_eq!(ops(c, "orders").await, ["DELETE", "DELETE", "TRUNCATE"]);
    assert_eq!(
        ops(c, "notes").await,
        ["TRUNCATE"],
        "notes records the event only"
    );
    assert_eq!(
        count(
            c,
            "SELECT count(DISTINCT txid) FROM pgtrail.changes WHERE op <> 'INSERT'"
        )
        .await,
        1
    );
    assert_eq!(table_as_of(c, "customers", &t0).await, Ok(customers));
    assert_eq!(table_as_of(c, "orders", &t0).await, Ok(orders));
    assert_eq!(table_as_of(c, "notes", &t0).await, Err("PGTR5".to_string()));
    // The identity restarted: id 1 is another customer now, and was ann then.
    assert_eq!(
        row_as_of(c, "customers", &json!({"id": 1}), &t0).await,
        Ok(Some(json!({"id": 1, "name": "ann"})))
    );
    assert_eq!(
        history(c, "customers", &json!({"id": 1})).await,
        [("INSERT".to_string(), Some(json!({"id": 1, "name": "cy"})))]
    );
}

#[tokio::test]
async fn truncate_twice_in_one_statement_or_in_a_savepoint_is_recorded_as_it_happened() {
    let schema = "
        CREATE TABLE t (id int PRIMARY KEY, v text);
        CREATE FUNCTION refill() RETURNS void LANGUAGE sql AS $$
            TRUNCATE t; INSERT INTO t VALUES (1, 'x'), (2, 'y'); TRUNCATE t; INSERT INTO t VALUES (3, 'z');
        $$;
        INSERT INTO t VALUES (0, 'before');";
    let db = audited_db(schema, "[tables.t]\ntruncate = \"capture\"").await;
    let c = &db.client;
    c.batch_execute("SELECT refill()").await.unwrap();
    // 0.3.0 recorded one TRUNCATE of the two (they share the statement's start).
    assert_eq!(
        ops(c, "t").await,
        [
            "DELETE", "TRUNCATE", "INSERT", "INSERT", "DELETE", "DELETE", "TRUNCATE", "INSERT"
        ]
    );
    assert_eq!(
        truncates(c, "t").await,
        [
            Some(json!({"rows": "recorded", "count": 1})),
            Some(json!({"rows": "recorded", "count": 2}))
        ]
    );

    // Rolled back with its savepoint: nothing recorded; the next one is.
    c.batch_execute("BEGIN; SAVEPOINT s; TRUNCATE t; ROLLBACK TO SAVEPOINT s; TRUNCATE t; COMMIT;")
        .await
        .unwrap();
    assert_eq!(
        truncates(c, "t").await[2..],
        [Some(json!({"rows": "recorded", "count": 1}))]
    );
    assert_eq!(
        count(c, "SELECT count(*) FROM pgtrail.changes WHERE op = 'DELETE'").await,
        4
    );
}

#[tokio::test]
async fn truncate_never_fails_because_of_capture() {
    let db = audited_db(CAPTURE_SCHEMA, CAPTURE_CONFIG).await;
    let c = &db.client;

    // A client that sets pgtrail's own setting gains nothing: the rows are recorded.
    c.batch_execute(
        "BEGIN; SET LOCAL pgtrail.truncate_state = '{\"txid\": \"1\", \"phase\": \"B\"}#nonsense'; TRUNCATE users; COMMIT;",
    )
    .await
    .unwrap();
    assert_eq!(
        truncates(c, "users").await,
        [Some(json!({"rows": "recorded", "count": 3}))]
    );

    // Capture cannot read the table: the TRUNCATE goes through, the event says why.
    c.batch_execute("INSERT INTO users VALUES (9, 'z@x', NULL, NULL)")
        .await
        .unwrap();
    let owner: String = c
        .query_one("SELECT pgtrail.role_name('owner')", &[])
        .await
        .unwrap()
        .get(0);
    c.batch_execute(&format!("REVOKE SELECT ON users FROM \"{owner}\""))
        .await
        .unwrap();
    c.batch_execute("TRUNCATE users").await.unwrap();
    let last = truncates(c, "users").await.pop().flatten().unwrap_or_default();
    assert_eq!(last["rows"], json!("not_recorded"), "{last}");
    assert!(
        last["error"]
            .as_str()
            .is_some_and(|e| e.contains("permission denied")),
        "{last}"
    );
    assert_eq!(count(c, "SELECT count(*) FROM users").await, 0);

    // Under session_replication_role = replica capture is off, as for any write.
    let before = changes(c, "users").await.len();
    c.batch_execute("INSERT INTO users VALUES (10, 'y@x', NULL, NULL)")
        .await
        .unwrap();
    db.behind_the_triggers("TRUNCATE users").await;
    assert_eq!(changes(c, "users").await.len(), before + 1);
    assert_eq!(count(c, "SELECT count(*) FROM users").await, 0);
    // reconcile names the row it removed without a trace.
    assert_eq!(
        column::<String>(
            c,
            "SELECT problem || ' ' || pk::text FROM pgtrail.reconcile('users')"
        )
        .await,
        ["unrecorded delete {\"id\": 10}"]
    );
}

#[tokio::test]
async fn truncate_settings_and_triggers_are_checked_like_the_others() {
    let mut db = audited_db(CAPTURE_SCHEMA, "").await;
    let c = &db.client;
    let names: Vec<String> = column(
        c,
        "SELECT tgname::text FROM pg_trigger WHERE tgrelid = 'users'::regclass ORDER BY 1",
    )
    .await;
    assert_eq!(names.len(), pgtrail::capture::TRIGGER_NAMES.len());
    assert!(names.contains(&"pgtrail_capture_before_truncate".to_string()));

    // The config asks for rows: check reports it until apply.
    let config = Config::parse(CAPTURE_CONFIG, "pgtrail.toml").unwrap();
    let problems: Vec<String> = inspect(c, &config)
        .await
        .unwrap()
        .3
        .iter()
        .map(ToString::to_string)
        .filter(|p| p.contains("truncate"))
        .collect();
    assert_eq!(
        problems,
        [
            "public.users: truncate is [event] in the database but [capture] in the config",
            "public.users: truncate_row_limit is (none) in the database but [100000] in the config"
        ]
    );
    apply(&mut db.client, CAPTURE_CONFIG).await;
    let c = &db.client;
    assert!(inspect(c, &config).await.unwrap().3.is_empty());
    assert_eq!(
        column::<String>(
            c,
            "SELECT truncate || '/' || truncate_row_limit FROM pgtrail.audited_table"
        )
        .await,
        ["capture/100000"]
    );

    // A BEFORE TRUNCATE trigger switched off is a capture gap, and check says so.
    c.batch_execute("ALTER TABLE users DISABLE TRIGGER pgtrail_capture_before_truncate")
        .await
        .unwrap();
    assert_eq!(
        count(
            c,
            "SELECT count(*) FROM pgtrail.capture_gaps WHERE off_until IS NULL"
        )
        .await,
        1
    );
    let problems: Vec<String> = inspect(c, &config)
        .await
        .unwrap()
        .3
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        problems,
        ["public.users: capture trigger pgtrail_capture_before_truncate is disabled"]
    );
}

/// A table attached by pgtrail 0.3.0 (four triggers) gets the BEFORE
/// TRUNCATE trigger, on its partitions too, when this version's install
/// script runs, with no capture gap; 0.3.0's call of `pgtrail.attach` with
/// six arguments still works.
#[tokio::test]
async fn truncate_capture_reaches_tables_attached_by_an_older_version() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.batch_execute(&format!(
        "{PARTITIONED}
         BEGIN; {} COMMIT;
         SELECT pgtrail.attach('events', '{{id,at,kind}}', 'primary_key', 'diff', '{{}}', '{{}}');",
        include_str!("../../../capture/sql/released/0.3.0.sql")
    ))
    .await
    .unwrap();
    let before_truncate = "SELECT count(*) FROM pg_trigger WHERE tgname = 'pgtrail_capture_before_truncate'";
    assert_eq!(count(c, before_truncate).await, 0);
    c.batch_execute(&format!("BEGIN; {} COMMIT;", pgtrail::capture::install_script()))
        .await
        .unwrap();
    // The table, its two partitions and the two under one of them.
    assert_eq!(count(c, before_truncate).await, 5);
    assert_eq!(count(c, "SELECT count(*) FROM pgtrail.capture_gaps").await, 0);
    c.batch_execute("TRUNCATE events").await.unwrap();
    assert_eq!(truncates(c, "events").await, [None]);

    c.batch_execute(
        "SELECT pgtrail.attach('events', '{id,at,kind}', 'primary_key', 'diff', '{}', '{}');
         INSERT INTO events VALUES (9, '2025-05-05', 'a');
         SELECT pgtrail.attach('events', '{id,at,kind}', 'primary_key', 'diff', '{}', '{}', 'capture', 10);
         TRUNCATE events;",
    )
    .await
    .unwrap();
    assert_eq!(
        truncates(c, "events").await[1..],
        [Some(json!({"rows": "recorded", "count": 1}))]
    );
    assert_eq!(count(c, "SELECT count(*) FROM pgtrail.capture_gaps").await, 0);
}

/// One random statement on one of the oracle's tables.
#[derive(Debug, Clone)]
enum Op {
    Insert(u8, i8),
    Update(u8, i8),
    Delete(u8, i8),
    Truncate(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (any::<u8>(), any::<i8>()).prop_map(|(t, v)| Op::Insert(t, v)),
        4 => (any::<u8>(), any::<i8>()).prop_map(|(t, v)| Op::Update(t, v)),
        2 => (any::<u8>(), any::<i8>()).prop_map(|(t, v)| Op::Delete(t, v)),
        2 => any::<u8>().prop_map(Op::Truncate),
    ]
}

const TABLES: [&str; 3] = ["fresh", "cap", "bag"];

fn op_sql(op: &Op) -> String {
    let small = |v: i8| i32::from(v).rem_euclid(5);
    match *op {
        Op::Insert(t, v) => match t % 3 {
            0 => format!(
                "INSERT INTO fresh VALUES ({}, 'n{v}') ON CONFLICT DO NOTHING",
                small(v)
            ),
            1 => format!(
                "INSERT INTO cap VALUES ({}, {}, 'n{v}') ON CONFLICT DO NOTHING",
                small(v),
                small(v) % 2
            ),
            _ => format!("INSERT INTO bag VALUES ({}, 'n{}')", small(v) % 3, small(v) % 2),
        },
        Op::Update(t, v) => match t % 3 {
            0 => format!("UPDATE fresh SET name = 'u{v}' WHERE id % 2 = {}", small(v) % 2),
            1 => format!("UPDATE cap SET note = 'u{v}' WHERE a = {}", small(v)),
            _ => format!("UPDATE bag SET y = 'u{v}' WHERE x = {}", small(v) % 3),
        },
        Op::Delete(t, v) => match t % 3 {
            0 => format!("DELETE FROM fresh WHERE id = {}", small(v)),
            1 => format!("DELETE FROM cap WHERE b = {}", small(v) % 2),
            _ => format!(
                "DELETE FROM bag WHERE ctid = (SELECT min(ctid) FROM bag WHERE x = {})",
                small(v) % 3
            ),
        },
        Op::Truncate(t) => format!("TRUNCATE {}", TABLES[usize::from(t % 3)]),
    }
}

/// The oracle: random transactions (some statements rolled back with a
/// savepoint) on a table audited while empty, whose TRUNCATEs record the
/// event only, and on a keyed and a keyless table with rows from before the
/// install whose TRUNCATEs record their rows (the keyed one with a limit of
/// 4 rows, which some exceed). At every moment between transactions
/// `table_as_of` and `row_as_of` give back exactly what the tables held,
/// and the trail says it cannot tell (PGTR5) only where a TRUNCATE over the
/// limit came later and no TRUNCATE before.
#[test]
fn truncate_as_of_reproduces_every_snapshot_of_random_transactions() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let schema = "
        CREATE TABLE fresh (id int PRIMARY KEY, name text);
        CREATE TABLE cap (a int, b int, note text, PRIMARY KEY (a, b));
        CREATE TABLE bag (x int, y text);
        INSERT INTO cap VALUES (0, 0, 'pre'), (1, 1, NULL), (2, 0, 'p');
        INSERT INTO bag VALUES (0, 'n0'), (0, 'n0'), (1, NULL);";
    let config = "[tables.cap]\ntruncate = \"capture\"\ntruncate_row_limit = 4\n\
                  [tables.bag]\ntruncate = \"capture\"\n";
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let tx = proptest::collection::vec((op(), proptest::bool::weighted(0.2)), 1..5);
    runner
        .run(&proptest::collection::vec(tx, 1..8), |txs| {
            runtime.block_on(async {
                let db = audited_db(schema, config).await;
                let client = &db.client;
                let mut moments = Vec::new();
                moments.push(moment(client).await);
                for steps in &txs {
                    client.batch_execute("BEGIN").await.unwrap();
                    for (index, (op, rolled_back)) in steps.iter().enumerate() {
                        if *rolled_back {
                            client
                                .batch_execute(&format!("SAVEPOINT s{index}"))
                                .await
                                .unwrap();
                            client.batch_execute(&op_sql(op)).await.unwrap();
                            client
                                .batch_execute(&format!("ROLLBACK TO SAVEPOINT s{index}"))
                                .await
                                .unwrap();
                        } else {
                            client.batch_execute(&op_sql(op)).await.unwrap();
                        }
                    }
                    client.batch_execute("COMMIT").await.unwrap();
                    moments.push(moment(client).await);
                }
                for (at, tables) in &moments {
                    for (table, expected) in tables {
                        let got = table_as_of(client, table, at).await;
                        if got == Err("PGTR5".to_string()) {
                            // Only the keyed table with rows from before the
                            // install and a limit, with a TRUNCATE over it later
                            // and none before.
                            let unknown = count(
                                client,
                                &format!(
                                    "SELECT count(*) FROM pgtrail.changes
                                     WHERE table_name = 'cap' AND op = 'TRUNCATE' AND changed_at > '{at}'
                                       AND new_values ->> 'rows' = 'not_recorded'"
                                ),
                            )
                            .await;
                            let before = count(
                                client,
                                &format!(
                                    "SELECT count(*) FROM pgtrail.changes
                                     WHERE table_name = 'cap' AND op = 'TRUNCATE' AND changed_at <= '{at}'"
                                ),
                            )
                            .await;
                            prop_assert!(
                                *table == "cap" && unknown > 0 && before == 0,
                                "{} at {} after {:#?}",
                                table,
                                at,
                                txs
                            );
                            continue;
                        }
                        prop_assert_eq!(got.as_ref(), Ok(expected), "{} at {} after {:#?}", table, at, txs);
                        for row in expected.as_array().unwrap() {
                            let pk = match *table {
                                "fresh" => json!({"id": row["id"]}),
                                "cap" => json!({"a": row["a"], "b": row["b"]}),
                                _ => row.clone(),
                            };
                            let got = row_as_of(client, table, &pk, at).await;
                            prop_assert_eq!(got, Ok(Some(row.clone())), "{} {} at {}", table, pk, at);
                        }
                    }
                }
                Ok(())
            })
        })
        .unwrap();
}

/// The moment and every table of the oracle test.
async fn moment(client: &Client) -> (String, Vec<(&'static str, Value)>) {
    let at = now(client).await;
    let mut tables = Vec::new();
    for table in TABLES {
        tables.push((table, snapshot(client, table).await));
    }
    (at, tables)
}
