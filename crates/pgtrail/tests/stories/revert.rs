//! Undo a mistake from the trail (issue "Undo a mistake", seed 002's batch
//! script that rewrote thousands of emails): revert a transaction, a row,
//! an actor's or a request's changes; plan first; conflicts refused,
//! skipped or cascaded; the revert itself recorded, provable and
//! revertible. The regressions other tools have are named tests here.

use pgtrail::integrity::{self, VerifyOptions, crypto::SignerKey};
use pgtrail::revert::apply::{ApplyOptions, apply};
use pgtrail::revert::plan::{PlanItem, plan};
use pgtrail::revert::{Operation, Plan, Policy, Request, RevertError, RowTarget, Selector};
use serde_json::{Value, json};
use tokio_postgres::Client;

use crate::support::{audited_db, changes, column, count, tx};

const SHOP: &str = "
CREATE TABLE customers (id int PRIMARY KEY, email text NOT NULL, name text, tier text DEFAULT 'basic',
                        password_hash text, updated_at timestamptz DEFAULT now());
CREATE TABLE orders (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                     customer_id int NOT NULL REFERENCES customers ON DELETE CASCADE,
                     total numeric(10,2) NOT NULL, status text NOT NULL DEFAULT 'open',
                     total_cents bigint GENERATED ALWAYS AS ((total * 100)::bigint) STORED);
CREATE TABLE employees (id int PRIMARY KEY, name text, manager_id int REFERENCES employees);
CREATE TABLE enrollments (process_id int, application_id int, state text, PRIMARY KEY (process_id, application_id));
CREATE TABLE page_views (customer_id int, path text);
";

const CONFIG: &str = r#"
[capture]
ignore_columns = ["updated_at"]
[tables."public.customers"]
redact_columns = ["password_hash"]
"#;

fn txids(list: &[i64]) -> Request {
    Request::new(Selector::Transactions(list.to_vec()))
}

async fn revert(client: &mut Client, request: &Request, reason: &str) -> Result<i64, RevertError> {
    let options = ApplyOptions {
        reason: reason.into(),
        actor: Some("ops@example.com".into()),
        expected: None,
    };
    apply(client, request, &options).await.map(|a| a.txid)
}

/// Every row of `table` as JSON, sorted, for comparisons (the ignored
/// column left out, and the redacted one, which a revert cannot restore).
async fn rows(client: &Client, table: &str) -> Vec<Value> {
    column(
        client,
        &format!(
            "SELECT to_jsonb(t) - 'updated_at' - 'password_hash' FROM {table} AS t ORDER BY to_jsonb(t)::text"
        ),
    )
    .await
}

async fn shop() -> pgtrail_testkit::TestDb {
    let db = audited_db(SHOP, CONFIG).await;
    tx(
        &db.client,
        "signup",
        "INSERT INTO customers (id, email, name, password_hash) VALUES
             (1, 'ann@example.com', 'Ann', 'h1'), (2, 'bob@example.com', 'Bob', 'h2'), (3, 'cy@example.com', 'Cy', 'h3');
         INSERT INTO orders (customer_id, total) VALUES (1, 10), (1, 20), (2, 30);
         INSERT INTO employees VALUES (1, 'Boss', NULL), (2, 'Mid', 1), (3, 'Low', 2);
         INSERT INTO enrollments VALUES (1, 7, 'new'), (1, 8, 'new');
         INSERT INTO page_views VALUES (1, '/a'), (1, '/a'), (2, '/b')",
    )
    .await;
    db
}

#[tokio::test]
async fn the_batch_script_that_rewrote_thousands_of_emails_is_undone_by_its_transaction() {
    let mut db = audited_db(SHOP, CONFIG).await;
    db.client
        .batch_execute(
            "INSERT INTO customers (id, email, name) SELECT g, 'user' || g || '@example.com', 'User ' || g
             FROM generate_series(1, 4000) AS g",
        )
        .await
        .unwrap();
    let before = rows(&db.client, "customers").await;
    let script = tx(
        &db.client,
        "batch_script@system",
        "UPDATE customers SET email = lower(name) || '@broken.test'",
    )
    .await;

    // Who did it: the trail says, then the plan says what undoing it does.
    let request = txids(&[script]);
    let planned = plan(&db.client, &request).await.unwrap();
    let statements: Vec<_> = planned.statements().collect();
    assert_eq!(statements.len(), 1, "one set-based statement: {:?}", statements);
    assert_eq!(statements[0].operation, Operation::Update);
    assert_eq!(statements[0].rows, Some(4000));
    assert_eq!(statements[0].columns, vec!["email".to_string()]);
    assert_eq!(planned.change_ids().len(), 4000);
    // Planning changed nothing.
    assert_ne!(rows(&db.client, "customers").await, before);

    let revert_txid = revert(&mut db.client, &request, "ticket #4211: undo the batch script")
        .await
        .unwrap();
    assert_eq!(rows(&db.client, "customers").await, before);

    // The revert is recorded like any change, with who, why and what it reverts.
    let history: Vec<Value> = column(
        &db.client,
        "SELECT to_jsonb(h) FROM pgtrail.history('customers', '{\"id\": 42}') AS h ORDER BY h.id",
    )
    .await;
    let last = history.last().unwrap();
    assert_eq!(last["txid"], json!(revert_txid));
    assert_eq!(last["actor_name"], json!("ops@example.com"));
    assert_eq!(last["reason"], json!("ticket #4211: undo the batch script"));
    assert_eq!(last["context"]["revert"]["selector"], json!({"txids": [script]}));
    assert_eq!(last["context"]["revert"]["transactions"], json!([script]));
    assert_eq!(last["state"]["email"], json!("user42@example.com"));
}

#[tokio::test]
async fn several_updates_of_one_row_in_one_transaction_collapse_to_one_statement() {
    let mut db = shop().await;
    let before = rows(&db.client, "customers").await;
    let t = tx(
        &db.client,
        "support",
        "UPDATE customers SET email = 'x1@example.com' WHERE id = 1;
         UPDATE customers SET email = 'x2@example.com', tier = 'gold' WHERE id = 1;
         UPDATE customers SET name = 'Annie' WHERE id = 1;
         UPDATE customers SET email = 'x3@example.com' WHERE id = 1",
    )
    .await;
    let planned = plan(&db.client, &txids(&[t])).await.unwrap();
    let statements: Vec<_> = planned.statements().collect();
    assert_eq!(statements.len(), 1);
    assert_eq!(statements[0].rows, Some(1));
    assert_eq!(statements[0].change_ids.len(), 4);
    assert_eq!(statements[0].columns, vec!["email", "name", "tier"]);
    let data = statements[0].data.clone().unwrap();
    assert_eq!(
        data[0],
        json!({"id": 1, "email": "ann@example.com", "name": "Ann", "tier": "basic",
               "pgtrail_expect": {"email": "x3@example.com", "name": "Annie", "tier": "gold"}})
    );
    revert(&mut db.client, &txids(&[t]), "undo").await.unwrap();
    assert_eq!(rows(&db.client, "customers").await, before);
}

#[tokio::test]
async fn a_parent_deleted_before_its_child_is_restored_before_it() {
    let mut db = shop().await;
    let before = (
        rows(&db.client, "customers").await,
        rows(&db.client, "orders").await,
    );
    // The cascade deletes the orders first, as part of the statement.
    let t = tx(&db.client, "cleanup", "DELETE FROM customers WHERE id = 1").await;
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM orders WHERE customer_id = 1").await,
        0
    );
    let planned = plan(&db.client, &txids(&[t])).await.unwrap();
    let order: Vec<(String, Operation)> = planned
        .statements()
        .map(|s| (s.table.clone().unwrap(), s.operation))
        .collect();
    assert_eq!(
        order,
        vec![
            ("public.customers".into(), Operation::Insert),
            ("public.orders".into(), Operation::Insert)
        ]
    );
    // Identity values come back as they were, generated columns are computed.
    assert!(
        planned
            .statements()
            .nth(1)
            .unwrap()
            .sql
            .as_ref()
            .unwrap()
            .contains("OVERRIDING SYSTEM VALUE")
    );
    assert!(
        !planned
            .statements()
            .nth(1)
            .unwrap()
            .columns
            .contains(&"total_cents".to_string())
    );
    revert(&mut db.client, &txids(&[t]), "restore Ann").await.unwrap();
    assert_eq!(
        (
            rows(&db.client, "customers").await,
            rows(&db.client, "orders").await
        ),
        before
    );
    // The redacted password hash could not come back: the plan said so.
    let lost: Vec<_> = planned.of(Operation::Lost).collect();
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].key, Some(json!({"id": 1})));
    assert_eq!(lost[0].columns, vec!["password_hash".to_string()]);
    assert_eq!(
        count(
            &db.client,
            "SELECT count(*) FROM customers WHERE id = 1 AND password_hash IS NULL"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn children_are_deleted_before_their_parents_and_a_self_reference_holds() {
    let mut db = shop().await;
    let before = rows(&db.client, "employees").await;
    let t = tx(
        &db.client,
        "hr",
        "INSERT INTO employees VALUES (10, 'New boss', NULL), (11, 'New mid', 10), (12, 'New low', 11);
         UPDATE employees SET manager_id = 11 WHERE id = 3;
         INSERT INTO customers (id, email) VALUES (9, 'z@example.com');
         INSERT INTO orders (customer_id, total) VALUES (9, 5)",
    )
    .await;
    revert(&mut db.client, &txids(&[t]), "undo the reorganisation")
        .await
        .unwrap();
    assert_eq!(rows(&db.client, "employees").await, before);
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM customers WHERE id = 9").await,
        0
    );
}

#[tokio::test]
async fn reverting_the_first_change_of_a_row_conflicts_with_what_came_after() {
    let mut db = shop().await;
    let created = tx(
        &db.client,
        "signup",
        "INSERT INTO customers (id, email, name) VALUES (20, 'dee@example.com', 'Dee')",
    )
    .await;
    let later = tx(
        &db.client,
        "support",
        "UPDATE customers SET tier = 'gold' WHERE id = 20",
    )
    .await;

    // refuse: nothing changes, the later change is named with its time and actor.
    let planned = plan(&db.client, &txids(&[created])).await.unwrap();
    let conflicts: Vec<_> = planned.conflicts().collect();
    assert_eq!(conflicts.len(), 1);
    let conflict = conflicts[0].conflict.clone().unwrap();
    assert_eq!(conflict["txid"], json!(later));
    assert_eq!(conflict["actor"], json!("support"));
    assert_eq!(conflict["op"], json!("UPDATE"));
    assert!(conflict["changed_at"].is_string());
    let refused = revert(&mut db.client, &txids(&[created]), "undo").await;
    assert!(
        matches!(refused, Err(RevertError::Conflicts { .. })),
        "{refused:?}"
    );
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM customers WHERE id = 20").await,
        1
    );

    // skip: the row stays as it is, and the plan says why.
    let mut skip = txids(&[created]);
    skip.policy = Policy::Skip;
    let planned = plan(&db.client, &skip).await.unwrap();
    assert_eq!(planned.of(Operation::Skip).count(), 1);
    assert_eq!(planned.statements().count(), 0);

    // cascade: the later transaction goes too.
    let mut cascade = txids(&[created]);
    cascade.policy = Policy::Cascade;
    let planned = plan(&db.client, &cascade).await.unwrap();
    assert_eq!(planned.of(Operation::Cascade).count(), 1);
    revert(&mut db.client, &cascade, "undo the sign-up and what followed")
        .await
        .unwrap();
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM customers WHERE id = 20").await,
        0
    );
}

#[tokio::test]
async fn a_later_change_of_other_columns_is_not_a_conflict() {
    let mut db = shop().await;
    let bad = tx(
        &db.client,
        "script",
        "UPDATE customers SET email = 'bad@example.com' WHERE id = 2",
    )
    .await;
    tx(
        &db.client,
        "support",
        "UPDATE customers SET tier = 'gold' WHERE id = 2",
    )
    .await;
    revert(&mut db.client, &txids(&[bad]), "undo").await.unwrap();
    let row: Value =
        column::<Value>(&db.client, "SELECT to_jsonb(c) FROM customers AS c WHERE id = 2").await[0].clone();
    assert_eq!(row["email"], json!("bob@example.com"));
    assert_eq!(row["tier"], json!("gold"));
}

#[tokio::test]
async fn a_row_changed_without_capture_is_a_conflict() {
    let mut db = shop().await;
    let bad = tx(
        &db.client,
        "script",
        "UPDATE customers SET email = 'bad@example.com' WHERE id = 2",
    )
    .await;
    db.behind_the_triggers("UPDATE customers SET email = 'fixed-by-hand@example.com' WHERE id = 2")
        .await;
    let planned = plan(&db.client, &txids(&[bad])).await.unwrap();
    let conflicts: Vec<_> = planned.conflicts().collect();
    assert_eq!(conflicts.len(), 1, "{:?}", planned.items);
    assert_eq!(
        conflicts[0].conflict.as_ref().unwrap()["kind"],
        json!("outside_capture")
    );
    assert_eq!(conflicts[0].columns, vec!["email".to_string()]);
    assert!(revert(&mut db.client, &txids(&[bad]), "undo").await.is_err());
}

#[tokio::test]
async fn a_revert_can_be_reverted() {
    let mut db = shop().await;
    let bad = tx(
        &db.client,
        "script",
        "UPDATE orders SET status = 'closed'; DELETE FROM enrollments WHERE application_id = 8",
    )
    .await;
    let after_script = (
        rows(&db.client, "orders").await,
        rows(&db.client, "enrollments").await,
    );
    let undo = revert(&mut db.client, &txids(&[bad]), "undo the script")
        .await
        .unwrap();
    assert_ne!(
        (
            rows(&db.client, "orders").await,
            rows(&db.client, "enrollments").await
        ),
        after_script
    );
    revert(&mut db.client, &txids(&[undo]), "the script was right after all")
        .await
        .unwrap();
    assert_eq!(
        (
            rows(&db.client, "orders").await,
            rows(&db.client, "enrollments").await
        ),
        after_script
    );
}

#[tokio::test]
async fn a_key_change_is_moved_back_and_the_row_keeps_what_it_has() {
    let mut db = shop().await;
    let before = rows(&db.client, "enrollments").await;
    let t = tx(
        &db.client,
        "registrar",
        "UPDATE enrollments SET application_id = 70, state = 'moved' WHERE application_id = 7",
    )
    .await;
    let planned = plan(&db.client, &txids(&[t])).await.unwrap();
    assert_eq!(planned.statements().next().unwrap().operation, Operation::Move);
    revert(&mut db.client, &txids(&[t]), "wrong application")
        .await
        .unwrap();
    assert_eq!(rows(&db.client, "enrollments").await, before);
}

/// Keys swapped within one transaction (through a third, free key, as
/// the application had to): a unique index that is not deferrable is
/// checked row by row, so the revert cannot move either row back first.
/// One of them goes through a temporary key, and the trail follows both
/// rows through it: reverting the revert swaps them again.
#[tokio::test]
async fn keys_swapped_in_one_transaction_are_swapped_back() {
    let mut db = shop().await;
    let before = rows(&db.client, "enrollments").await;
    let swap = tx(
        &db.client,
        "registrar",
        "UPDATE enrollments SET application_id = 9 WHERE application_id = 7;
         UPDATE enrollments SET application_id = 7, state = 'swapped' WHERE application_id = 8;
         UPDATE enrollments SET application_id = 8 WHERE application_id = 9",
    )
    .await;
    let swapped = rows(&db.client, "enrollments").await;
    let planned = plan(&db.client, &txids(&[swap])).await.unwrap();
    assert_eq!(planned.conflicts().count(), 0, "{planned:?}");
    assert!(
        planned.statements().all(|s| s.operation == Operation::Move),
        "{planned:?}"
    );
    let undo = revert(&mut db.client, &txids(&[swap]), "undo the swap")
        .await
        .unwrap();
    assert_eq!(rows(&db.client, "enrollments").await, before);
    revert(&mut db.client, &txids(&[undo]), "the swap was right")
        .await
        .unwrap();
    assert_eq!(rows(&db.client, "enrollments").await, swapped);
}

/// The cascade that failed: T rotated three keys and moved a row away from
/// its key, and a later transaction moved another row into the key T
/// freed. Reverting T conflicts with it; cascade reverts both, moving the
/// later row out of the key before T's row takes it back, and the
/// rotation back through a temporary key.
#[tokio::test]
async fn a_key_freed_and_taken_by_a_later_change_is_freed_again_before_cascade_moves_back() {
    let mut db = shop().await;
    tx(
        &db.client,
        "registrar",
        "INSERT INTO enrollments VALUES (1, 9, 'new'), (2, 1, 'new'), (2, 2, 'new')",
    )
    .await;
    let before = rows(&db.client, "enrollments").await;
    let t = tx(
        &db.client,
        "registrar",
        "UPDATE enrollments SET application_id = 10 WHERE process_id = 1 AND application_id = 7;
         UPDATE enrollments SET application_id = 7 WHERE process_id = 1 AND application_id = 9;
         UPDATE enrollments SET application_id = 9 WHERE process_id = 1 AND application_id = 8;
         UPDATE enrollments SET application_id = 8 WHERE process_id = 1 AND application_id = 10;
         UPDATE enrollments SET application_id = 3 WHERE process_id = 2 AND application_id = 1",
    )
    .await;
    let later = tx(
        &db.client,
        "clerk",
        "UPDATE enrollments SET application_id = 1, state = 'taken' WHERE process_id = 2 AND application_id = 2",
    )
    .await;

    let refused = plan(&db.client, &txids(&[t])).await.unwrap();
    let conflicts: Vec<i64> = refused
        .conflicts()
        .filter_map(|c| c.conflict.as_ref().and_then(|j| j["txid"].as_i64()))
        .collect();
    assert!(
        !conflicts.is_empty() && conflicts.iter().all(|x| *x == later),
        "{refused:?}"
    );

    let mut cascade = txids(&[t]);
    cascade.policy = Policy::Cascade;
    let planned = plan(&db.client, &cascade).await.unwrap();
    assert_eq!(planned.conflicts().count(), 0, "{planned:?}");
    assert_eq!(planned.of(Operation::Cascade).count(), 1);
    revert(&mut db.client, &cascade, "undo the renumbering")
        .await
        .unwrap();
    assert_eq!(rows(&db.client, "enrollments").await, before);
}

/// A long chain (every row moved into the key the next one left, as a
/// renumbering does) goes back in a bounded number of statements: the
/// first rows step by step, the rest through temporary keys.
#[tokio::test]
async fn a_renumbering_goes_back_in_a_few_statements() {
    let mut db = shop().await;
    tx(
        &db.client,
        "registrar",
        "INSERT INTO enrollments SELECT 4, g, 'new' FROM generate_series(1, 30) AS g",
    )
    .await;
    let before = rows(&db.client, "enrollments").await;
    let shift = (1..=30)
        .rev()
        .map(|i| {
            format!(
                "UPDATE enrollments SET application_id = {} WHERE process_id = 4 AND application_id = {i}",
                i + 1
            )
        })
        .collect::<Vec<_>>()
        .join(";\n");
    let renumbering = tx(&db.client, "registrar", &shift).await;
    let shifted = rows(&db.client, "enrollments").await;
    let planned = plan(&db.client, &txids(&[renumbering])).await.unwrap();
    let statements: Vec<_> = planned.statements().collect();
    assert!(
        statements.len() <= 10 && statements.iter().all(|s| s.operation == Operation::Move),
        "{statements:?}"
    );
    let undo = revert(&mut db.client, &txids(&[renumbering]), "undo the renumbering")
        .await
        .unwrap();
    assert_eq!(rows(&db.client, "enrollments").await, before);
    revert(&mut db.client, &txids(&[undo]), "the renumbering was right")
        .await
        .unwrap();
    assert_eq!(rows(&db.client, "enrollments").await, shifted);
}

/// Skip with a swap: a later change of one of the swapped rows leaves it
/// as it is, and so the other row, whose key it still has.
#[tokio::test]
async fn skip_leaves_both_rows_of_a_swap_when_one_changed_later() {
    let mut db = shop().await;
    tx(
        &db.client,
        "registrar",
        "UPDATE enrollments SET application_id = 9 WHERE application_id = 7;
         UPDATE enrollments SET application_id = 7 WHERE application_id = 8;
         UPDATE enrollments SET application_id = 8 WHERE application_id = 9;
         INSERT INTO enrollments VALUES (3, 1, 'new'), (3, 2, 'new')",
    )
    .await;
    let swap = tx(
        &db.client,
        "registrar",
        "UPDATE enrollments SET application_id = 9 WHERE application_id = 7;
         UPDATE enrollments SET application_id = 7 WHERE application_id = 8;
         UPDATE enrollments SET application_id = 8 WHERE application_id = 9;
         UPDATE enrollments SET application_id = 3 WHERE process_id = 3 AND application_id = 1;
         UPDATE enrollments SET application_id = 1 WHERE process_id = 3 AND application_id = 2;
         UPDATE enrollments SET application_id = 2 WHERE process_id = 3 AND application_id = 3",
    )
    .await;
    tx(
        &db.client,
        "clerk",
        "UPDATE enrollments SET state = 'seen' WHERE process_id = 1 AND application_id = 7",
    )
    .await;
    let after = rows(&db.client, "enrollments").await;
    let mut skip = txids(&[swap]);
    skip.policy = Policy::Skip;
    let planned = plan(&db.client, &skip).await.unwrap();
    assert_eq!(planned.of(Operation::Skip).count(), 2, "{planned:?}");
    revert(&mut db.client, &skip, "undo the swap where it is safe")
        .await
        .unwrap();
    // Process 1 as it is; process 3 swapped back.
    let mut expected = after.clone();
    for row in expected.iter_mut() {
        if row["process_id"] == json!(3) {
            let id = row["application_id"].as_i64().unwrap();
            row["application_id"] = json!(3 - id);
        }
    }
    expected.sort_by_key(|r| r.to_string());
    let mut actual = rows(&db.client, "enrollments").await;
    actual.sort_by_key(|r| r.to_string());
    assert_eq!(actual, expected);
}

/// Keys of other types go round too: a text key and a uuid key go through
/// a temporary value made from the row's key; a key type that cannot hold
/// one (a date) makes the cycle a conflict, refused with the reason.
#[tokio::test]
async fn text_and_uuid_keys_rotate_back_and_a_date_key_cycle_is_refused() {
    let mut db = audited_db(
        "CREATE TABLE codes (code text PRIMARY KEY, label text);
         CREATE TABLE tokens (id uuid PRIMARY KEY, label text);
         CREATE TABLE days (day date PRIMARY KEY, label text);
         INSERT INTO codes VALUES ('a', 'A'), ('b', 'B'), ('c', 'C');
         INSERT INTO tokens VALUES ('00000000-0000-0000-0000-000000000001', 'one'),
                                   ('00000000-0000-0000-0000-000000000002', 'two');
         INSERT INTO days VALUES ('2026-01-01', 'new year'), ('2026-12-25', 'christmas');",
        "",
    )
    .await;
    let before = (rows(&db.client, "codes").await, rows(&db.client, "tokens").await);
    let rotate = tx(
        &db.client,
        "renamer",
        "UPDATE codes SET code = 'x' WHERE code = 'a';
         UPDATE codes SET code = 'a' WHERE code = 'c';
         UPDATE codes SET code = 'c' WHERE code = 'b';
         UPDATE codes SET code = 'b' WHERE code = 'x';
         UPDATE tokens SET id = '00000000-0000-0000-0000-000000000009' WHERE label = 'one';
         UPDATE tokens SET id = '00000000-0000-0000-0000-000000000001' WHERE label = 'two';
         UPDATE tokens SET id = '00000000-0000-0000-0000-000000000002' WHERE label = 'one'",
    )
    .await;
    revert(&mut db.client, &txids(&[rotate]), "undo the rotation")
        .await
        .unwrap();
    assert_eq!(
        (rows(&db.client, "codes").await, rows(&db.client, "tokens").await),
        before
    );

    let days = tx(
        &db.client,
        "calendar",
        "UPDATE days SET day = '2026-06-01' WHERE label = 'new year';
         UPDATE days SET day = '2026-01-01' WHERE label = 'christmas';
         UPDATE days SET day = '2026-12-25' WHERE label = 'new year'",
    )
    .await;
    let swapped = rows(&db.client, "days").await;
    let planned = plan(&db.client, &txids(&[days])).await.unwrap();
    let kinds: Vec<Value> = planned
        .conflicts()
        .map(|c| c.conflict.as_ref().unwrap()["kind"].clone())
        .collect();
    assert_eq!(kinds, vec![json!("key_cycle"), json!("key_cycle")], "{planned:?}");
    assert_eq!(planned.statements().count(), 0);
    let refused = revert(&mut db.client, &txids(&[days]), "undo the dates").await;
    assert!(
        matches!(refused, Err(RevertError::Conflicts { .. })),
        "{refused:?}"
    );
    assert_eq!(rows(&db.client, "days").await, swapped);
}

#[tokio::test]
async fn a_table_without_key_counts_copies_of_identical_rows() {
    let mut db = shop().await;
    let t = tx(
        &db.client,
        "cleanup",
        "DELETE FROM page_views WHERE path = '/a'; INSERT INTO page_views VALUES (2, '/b'), (3, '/c')",
    )
    .await;
    revert(&mut db.client, &txids(&[t]), "undo").await.unwrap();
    let views: Vec<String> = column(
        &db.client,
        "SELECT customer_id || path FROM page_views ORDER BY 1",
    )
    .await;
    assert_eq!(views, vec!["1/a", "1/a", "2/b"]);
}

#[tokio::test]
async fn one_row_goes_back_to_a_moment_or_undoes_its_last_change() {
    let mut db = shop().await;
    tx(
        &db.client,
        "a",
        "UPDATE customers SET name = 'Ann 2' WHERE id = 1",
    )
    .await;
    let moment: String = column::<String>(&db.client, "SELECT clock_timestamp()::text").await[0].clone();
    tx(
        &db.client,
        "b",
        "UPDATE customers SET name = 'Ann 3' WHERE id = 1",
    )
    .await;
    tx(&db.client, "c", "UPDATE customers SET tier = 'gold' WHERE id = 1").await;
    let last = Request::new(Selector::Row {
        table: "public.customers".into(),
        key: json!({"id": 1}),
        to: RowTarget::LastChange,
    });
    revert(&mut db.client, &last, "undo the last change")
        .await
        .unwrap();
    let row: Value =
        column::<Value>(&db.client, "SELECT to_jsonb(c) FROM customers AS c WHERE id = 1").await[0].clone();
    assert_eq!(
        (row["name"].clone(), row["tier"].clone()),
        (json!("Ann 3"), json!("basic"))
    );
    let back = Request::new(Selector::Row {
        table: "customers".into(),
        key: json!({"id": 1}),
        to: RowTarget::Time(moment),
    });
    revert(&mut db.client, &back, "back to how it was").await.unwrap();
    let row: Value =
        column::<Value>(&db.client, "SELECT to_jsonb(c) FROM customers AS c WHERE id = 1").await[0].clone();
    assert_eq!(
        (row["name"].clone(), row["tier"].clone()),
        (json!("Ann 2"), json!("basic"))
    );
}

#[tokio::test]
async fn an_actors_window_and_a_request_are_selected_and_restricted_to_tables() {
    let mut db = shop().await;
    let since: String = column::<String>(&db.client, "SELECT clock_timestamp()::text").await[0].clone();
    db.client
        .batch_execute(
            "BEGIN; SELECT pgtrail.set_context(actor_name => 'mallory', extra => '{\"request_id\": \"r-9\"}');
             UPDATE customers SET tier = 'platinum'; UPDATE orders SET status = 'void'; COMMIT;
             BEGIN; SELECT pgtrail.set_context(actor_name => 'ann'); UPDATE employees SET name = 'B' WHERE id = 1; COMMIT;",
        )
        .await
        .unwrap();
    let mut by_actor = Request::new(Selector::Actor {
        actor: "mallory".into(),
        since: since.clone(),
        until: None,
    });
    by_actor.tables = vec!["orders".into()];
    let planned = plan(&db.client, &by_actor).await.unwrap();
    assert_eq!(
        planned.per_table().keys().cloned().collect::<Vec<_>>(),
        vec!["public.orders".to_string()]
    );
    revert(&mut db.client, &by_actor, "void by mistake")
        .await
        .unwrap();
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM orders WHERE status = 'void'").await,
        0
    );
    assert_eq!(
        count(
            &db.client,
            "SELECT count(*) FROM customers WHERE tier = 'platinum'"
        )
        .await,
        3
    );

    let mut context = serde_json::Map::new();
    context.insert("request_id".into(), json!("r-9"));
    let mut by_request = Request::new(Selector::Context {
        context,
        since,
        until: None,
    });
    // Its orders were reverted above: reverting them again conflicts with that.
    let refused = revert(&mut db.client, &by_request, "the whole request").await;
    assert!(
        matches!(refused, Err(RevertError::Conflicts { .. })),
        "{refused:?}"
    );
    by_request.tables = vec!["public.customers".into()];
    revert(&mut db.client, &by_request, "the rest of the request")
        .await
        .unwrap();
    assert_eq!(
        count(
            &db.client,
            "SELECT count(*) FROM customers WHERE tier = 'platinum'"
        )
        .await,
        0
    );
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM employees WHERE name = 'B'").await,
        1
    );
}

#[tokio::test]
async fn a_truncate_is_reverted_only_when_its_rows_were_recorded() {
    let mut db = shop().await;
    let t = tx(&db.client, "dba", "TRUNCATE page_views").await;
    let planned = plan(&db.client, &txids(&[t])).await.unwrap();
    let conflict = planned.conflicts().next().unwrap().conflict.clone().unwrap();
    assert_eq!(conflict["kind"], json!("truncate_not_captured"));
    assert!(conflict["message"].as_str().unwrap().contains("never recorded"));

    // After a TRUNCATE, the trail holds every row: the next one can be reverted.
    tx(
        &db.client,
        "app",
        "INSERT INTO page_views VALUES (5, '/x'), (5, '/x'), (6, '/y')",
    )
    .await;
    let second = tx(&db.client, "dba", "TRUNCATE page_views").await;
    revert(&mut db.client, &txids(&[second]), "truncated the wrong table")
        .await
        .unwrap();
    assert_eq!(count(&db.client, "SELECT count(*) FROM page_views").await, 3);
}

#[tokio::test]
async fn ignored_columns_are_left_as_they_are() {
    let mut db = shop().await;
    db.client
        .batch_execute("UPDATE customers SET updated_at = '2001-01-01' WHERE id = 3")
        .await
        .unwrap();
    let bad = tx(
        &db.client,
        "script",
        "UPDATE customers SET name = 'X' WHERE id = 3",
    )
    .await;
    db.client
        .batch_execute("UPDATE customers SET updated_at = '2002-02-02' WHERE id = 3")
        .await
        .unwrap();
    revert(&mut db.client, &txids(&[bad]), "undo").await.unwrap();
    let row: Value =
        column::<Value>(&db.client, "SELECT to_jsonb(c) FROM customers AS c WHERE id = 3").await[0].clone();
    assert_eq!(row["name"], json!("Cy"));
    assert!(row["updated_at"].as_str().unwrap().starts_with("2002-02-02"));
}

#[tokio::test]
async fn the_plan_changes_nothing_and_bad_selectors_say_how_to_fix_them() {
    let db = shop().await;
    let trail_before = changes(&db.client, "").await.len();
    let bad = |selector: Value| {
        let client = &db.client;
        async move {
            let error = client
                .query("SELECT * FROM pgtrail.revert_plan($1)", &[&selector])
                .await
                .unwrap_err();
            let db_error = error.as_db_error().unwrap().clone();
            (db_error.code().code().to_string(), db_error.message().to_string())
        }
    };
    assert_eq!(bad(json!({"txid": [1]})).await.0, "22023");
    assert_eq!(bad(json!({})).await.0, "22023");
    assert_eq!(bad(json!({"txids": [999999999]})).await.0, "22023");
    assert_eq!(bad(json!({"actor": "x"})).await.0, "22023");
    assert!(
        bad(json!({"table": "nope", "pk": {"id": 1}}))
            .await
            .1
            .contains("nope")
    );
    let all: i64 = count(&db.client, "SELECT max(txid) FROM pgtrail.changes").await;
    let capped = bad(json!({"txids": [all], "max_rows": 2})).await;
    assert_eq!(capped.0, "54000", "{capped:?}");
    assert_eq!(changes(&db.client, "").await.len(), trail_before);
}

#[tokio::test]
async fn seal_and_verify_cover_a_revert_like_any_change() {
    let mut db = shop().await;
    let bad = tx(&db.client, "script", "UPDATE orders SET total = 0").await;
    revert(&mut db.client, &txids(&[bad]), "undo").await.unwrap();
    let key = SignerKey::generate("shop").unwrap();
    let sealed = integrity::seal(&mut db.client, &key, &mut |_| {}).await.unwrap();
    let report = integrity::verify(
        &mut db.client,
        &VerifyOptions {
            public_key: Some(key.verifier()),
            checkpoint: Some(sealed.note),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems.len());
    let reverted: i64 = count(
        &db.client,
        "SELECT count(*) FROM pgtrail.changes WHERE context ? 'revert' AND table_name = 'orders'",
    )
    .await;
    assert_eq!(reverted, 3);
}

/// The plan shown must be the plan applied.
#[tokio::test]
async fn a_revert_whose_plan_changed_since_it_was_shown_changes_nothing() {
    let mut db = shop().await;
    let bad = tx(&db.client, "script", "UPDATE customers SET tier = 'x'").await;
    let shown: Plan = plan(&db.client, &txids(&[bad])).await.unwrap();
    tx(
        &db.client,
        "support",
        "UPDATE customers SET tier = 'gold' WHERE id = 1",
    )
    .await;
    let mut skip = txids(&[bad]);
    skip.policy = Policy::Skip;
    let options = ApplyOptions {
        reason: "undo".into(),
        actor: None,
        expected: Some(&shown),
    };
    let result = apply(&mut db.client, &skip, &options).await;
    assert!(matches!(result, Err(RevertError::Changed(_))), "{result:?}");
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM customers WHERE tier = 'x'").await,
        2
    );
}

#[tokio::test]
async fn a_delete_that_would_cascade_to_rows_outside_the_revert_is_a_conflict() {
    let mut db = shop().await;
    let signup = tx(
        &db.client,
        "signup",
        "INSERT INTO customers (id, email) VALUES (9, 'eve@example.com')",
    )
    .await;
    let order = tx(
        &db.client,
        "shop",
        "INSERT INTO orders (customer_id, total) VALUES (9, 99)",
    )
    .await;
    // Deleting customer 9 would delete its order (ON DELETE CASCADE), which
    // the revert does not select: refused, and the order's insert named.
    let planned = plan(&db.client, &txids(&[signup])).await.unwrap();
    let conflict = planned
        .conflicts()
        .next()
        .expect("a conflict")
        .conflict
        .clone()
        .unwrap();
    assert_eq!(conflict["kind"], json!("referenced"));
    assert_eq!(conflict["txid"], json!(order));
    assert!(
        conflict["message"].as_str().unwrap().contains("public.orders"),
        "{conflict}"
    );
    assert!(revert(&mut db.client, &txids(&[signup]), "undo").await.is_err());
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM orders WHERE customer_id = 9").await,
        1
    );
    // cascade: the order goes first, then the customer.
    let mut cascade = txids(&[signup]);
    cascade.policy = Policy::Cascade;
    revert(&mut db.client, &cascade, "undo the sign-up and its order")
        .await
        .unwrap();
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM customers WHERE id = 9").await,
        0
    );
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM orders WHERE customer_id = 9").await,
        0
    );
}

#[tokio::test]
async fn erased_values_cannot_be_restored_and_the_plan_says_which() {
    let mut db = shop().await;
    let gone = tx(&db.client, "cleanup", "DELETE FROM customers WHERE id = 2").await;
    integrity::erase(
        &mut db.client,
        "public",
        "customers",
        &json!({"id": 2}),
        Some(&["email".to_string()]),
        "GDPR request #4411",
    )
    .await
    .unwrap();
    let planned = plan(&db.client, &txids(&[gone])).await.unwrap();
    let lost: Vec<_> = planned.of(Operation::Lost).collect();
    assert_eq!(lost.len(), 1, "{:?}", planned.items);
    assert_eq!(
        lost[0].columns,
        vec!["email".to_string(), "password_hash".to_string()]
    );
    assert!(
        lost[0].note.as_ref().unwrap().contains("erased"),
        "{:?}",
        lost[0].note
    );
    // email is NOT NULL without a default: the insert cannot happen, and
    // nothing is changed.
    assert!(
        revert(&mut db.client, &txids(&[gone]), "restore Bob")
            .await
            .is_err()
    );
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM customers WHERE id = 2").await,
        0
    );
}

#[tokio::test]
async fn a_revert_waits_a_bounded_time_for_row_locks_and_changes_nothing_when_they_stay_taken() {
    let mut db = shop().await;
    let bad = tx(&db.client, "script", "UPDATE customers SET tier = 'x'").await;
    let other = db.connect().await;
    other
        .batch_execute("BEGIN; SELECT * FROM customers WHERE id = 2 FOR UPDATE")
        .await
        .unwrap();
    let mut request = txids(&[bad]);
    request.lock_timeout = Some("100ms".into());
    let started = std::time::Instant::now();
    let error = revert(&mut db.client, &request, "undo").await.unwrap_err();
    assert!(error.to_string().contains("row locks"), "{error}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    other.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM customers WHERE tier = 'x'").await,
        3
    );
    // Once the lock is gone, the same revert goes through.
    revert(&mut db.client, &request, "undo").await.unwrap();
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM customers WHERE tier = 'x'").await,
        0
    );
}

#[tokio::test]
async fn a_row_that_a_later_row_still_refers_to_without_cascade_is_a_conflict_in_the_plan() {
    let mut db = shop().await;
    let hire = tx(
        &db.client,
        "hr",
        "INSERT INTO employees VALUES (20, 'Temp boss', 1), (22, 'Temp clerk', 1)",
    )
    .await;
    let report = tx(
        &db.client,
        "hr2",
        "INSERT INTO employees VALUES (21, 'Report', 20)",
    )
    .await;
    // Deleting employee 20 would leave 21 pointing nowhere (NO ACTION): the
    // plan says so, with the referencing row, the constraint and its change.
    let planned = plan(&db.client, &txids(&[hire])).await.unwrap();
    let conflicts: Vec<_> = planned.conflicts().collect();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].key, Some(json!({"id": 20})));
    let conflict = conflicts[0].conflict.clone().unwrap();
    assert_eq!(conflict["kind"], json!("referenced"));
    assert_eq!(conflict["txid"], json!(report));
    let message = conflict["message"].as_str().unwrap();
    assert!(message.contains(r#"{"id": 21}"#), "{message}");
    assert!(message.contains("employees_manager_id_fkey"), "{message}");
    assert!(message.contains("NO ACTION"), "{message}");
    // refuse: a conflict, not PostgreSQL's foreign key error; nothing changed.
    let refused = revert(&mut db.client, &txids(&[hire]), "undo the hires").await;
    assert!(refused.as_ref().is_err_and(|e| e.is_conflict()), "{refused:?}");
    assert_eq!(
        count(
            &db.client,
            "SELECT count(*) FROM employees WHERE id IN (20, 21, 22)"
        )
        .await,
        3
    );
    // skip: employee 20 stays, the other hire is undone.
    let mut skip = txids(&[hire]);
    skip.policy = Policy::Skip;
    let planned = plan(&db.client, &skip).await.unwrap();
    let skipped: Vec<_> = planned.of(Operation::Skip).collect();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].key, Some(json!({"id": 20})));
    revert(&mut db.client, &skip, "undo the clerk's hire")
        .await
        .unwrap();
    assert_eq!(
        column::<Value>(
            &db.client,
            "SELECT to_jsonb(id) FROM employees WHERE id >= 20 ORDER BY id"
        )
        .await,
        vec![json!(20), json!(21)]
    );
    // cascade: the report's hire is reverted first, then the boss's.
    let rest = tx(
        &db.client,
        "hr",
        "INSERT INTO employees VALUES (30, 'Another boss', 1)",
    )
    .await;
    tx(
        &db.client,
        "hr2",
        "UPDATE employees SET manager_id = 30 WHERE id = 21",
    )
    .await;
    let mut cascade = txids(&[rest]);
    cascade.policy = Policy::Cascade;
    let planned = plan(&db.client, &cascade).await.unwrap();
    assert_eq!(planned.of(Operation::Cascade).count(), 1);
    revert(
        &mut db.client,
        &cascade,
        "undo the other boss and the move to him",
    )
    .await
    .unwrap();
    assert_eq!(
        column::<Value>(
            &db.client,
            "SELECT to_jsonb(manager_id) FROM employees WHERE id = 21"
        )
        .await,
        vec![json!(20)]
    );
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM employees WHERE id = 30").await,
        0
    );
}

#[tokio::test]
async fn a_child_restored_whose_parent_a_later_change_deleted_is_a_conflict_in_the_plan() {
    let mut db = shop().await;
    let before = rows(&db.client, "employees").await;
    let cleanup = tx(
        &db.client,
        "hr",
        "DELETE FROM employees WHERE id = 3; UPDATE employees SET name = 'Big boss' WHERE id = 1",
    )
    .await;
    let later = tx(&db.client, "hr2", "DELETE FROM employees WHERE id = 2").await;
    // Employee 3 cannot come back: its manager 2 is gone since.
    let planned = plan(&db.client, &txids(&[cleanup])).await.unwrap();
    let conflicts: Vec<_> = planned.conflicts().collect();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].key, Some(json!({"id": 3})));
    let conflict = conflicts[0].conflict.clone().unwrap();
    assert_eq!(conflict["kind"], json!("parent_gone"));
    assert_eq!(conflict["txid"], json!(later));
    assert_eq!(conflict["op"], json!("DELETE"));
    let message = conflict["message"].as_str().unwrap();
    assert!(message.contains("employees_manager_id_fkey"), "{message}");
    assert!(message.contains(r#"{"id": 2}"#), "{message}");
    let refused = revert(&mut db.client, &txids(&[cleanup]), "undo the cleanup").await;
    assert!(refused.as_ref().is_err_and(|e| e.is_conflict()), "{refused:?}");
    // skip: the rename is undone, employee 3 stays gone.
    let mut skip = txids(&[cleanup]);
    skip.policy = Policy::Skip;
    let planned = plan(&db.client, &skip).await.unwrap();
    assert_eq!(planned.of(Operation::Skip).count(), 1);
    let mut db2 = shop().await;
    let cleanup2 = tx(
        &db2.client,
        "hr",
        "DELETE FROM employees WHERE id = 3; UPDATE employees SET name = 'Big boss' WHERE id = 1",
    )
    .await;
    tx(&db2.client, "hr2", "DELETE FROM employees WHERE id = 2").await;
    let mut skip2 = txids(&[cleanup2]);
    skip2.policy = Policy::Skip;
    revert(&mut db2.client, &skip2, "undo the rename").await.unwrap();
    assert_eq!(
        column::<Value>(&db2.client, "SELECT to_jsonb(name) FROM employees ORDER BY id").await,
        vec![json!("Boss")]
    );
    // cascade: the later delete of the manager is reverted too, first.
    let mut cascade = txids(&[cleanup]);
    cascade.policy = Policy::Cascade;
    revert(&mut db.client, &cascade, "undo the cleanup and what followed")
        .await
        .unwrap();
    assert_eq!(rows(&db.client, "employees").await, before);
}

#[tokio::test]
async fn a_column_named_n_is_reverted_like_any_other() {
    // A table without key counts copies of a row as "n" in the statement's
    // data; a keyed table's own column of that name is only a value.
    let mut db = audited_db(
        "CREATE TABLE stock (id int PRIMARY KEY, n int NOT NULL, label text);
         CREATE TABLE tallies (n int, label text);",
        "",
    )
    .await;
    tx(
        &db.client,
        "setup",
        "INSERT INTO stock VALUES (1, 5, 'a'), (2, 7, 'b');
         INSERT INTO tallies VALUES (3, 'x'), (3, 'x')",
    )
    .await;
    let before_stock = rows(&db.client, "stock").await;
    let before_tallies = rows(&db.client, "tallies").await;
    let bad = tx(
        &db.client,
        "script",
        "UPDATE stock SET n = n * 100, label = label || '!';
         DELETE FROM stock WHERE id = 2;
         DELETE FROM tallies",
    )
    .await;
    revert(&mut db.client, &txids(&[bad]), "undo").await.unwrap();
    assert_eq!(rows(&db.client, "stock").await, before_stock);
    assert_eq!(rows(&db.client, "tallies").await, before_tallies);
}

/// What `pgtrail.revert` returns for `request` under `policy` (its columns
/// `columns` of its statements' lines, in the order `order`), in a
/// transaction rolled back: nothing is changed.
async fn revert_rolled_back(
    client: &mut Client,
    request: &Request,
    policy: &str,
    columns: &str,
    order: &str,
) -> Vec<tokio_postgres::Row> {
    let transaction = client.transaction().await.unwrap();
    let rows = transaction
        .query(
            &format!(
                "SELECT {columns} FROM pgtrail.revert($1::jsonb, $2, 'look') WHERE step IS NOT NULL {order}"
            ),
            &[&request.to_json(), &policy],
        )
        .await
        .unwrap();
    transaction.rollback().await.unwrap();
    rows
}

/// How many rows of the last plan in a transaction the fast path made (its
/// working table of rows lives until the transaction ends).
async fn fast_path_rows(client: &mut Client, request: &Request) -> i64 {
    let transaction = client.transaction().await.unwrap();
    transaction
        .query(
            "SELECT count(*) FROM pgtrail.revert_plan($1::jsonb, $2::text)",
            &[&request.to_json(), &request.policy.as_str()],
        )
        .await
        .unwrap();
    let row = transaction
        .query_one(
            "SELECT count(*) FROM pg_temp.pgtrail_revert_chain WHERE at IS NOT NULL",
            &[],
        )
        .await
        .unwrap();
    transaction.rollback().await.unwrap();
    row.get(0)
}

/// A plan's lines of every table but `table`, without their steps (which
/// other tables' statements shift), in a stable order.
fn lines_without(planned: &Plan, table: &str) -> Vec<PlanItem> {
    let mut lines: Vec<PlanItem> = planned
        .items
        .iter()
        .filter(|i| i.table.as_deref() != Some(table))
        .map(|i| PlanItem {
            step: None,
            ..i.clone()
        })
        .collect();
    lines.sort_by_key(|i| serde_json::to_string(i).unwrap());
    lines
}

/// Rows a selection changed once each (no key change, no TRUNCATE, keyed
/// tables) take the fast path; with a row changed twice beside them the
/// general path plans them. Both plan them alike: the same statements,
/// data, change ids, conflicts and rows skipped.
#[tokio::test]
async fn rows_changed_once_are_planned_by_the_fast_path_as_by_the_general_one() {
    let mut db = shop().await;
    let once = tx(
        &db.client,
        "batch",
        "UPDATE customers SET email = 'c2@example.com' WHERE id = 2;
         UPDATE orders SET status = 'shipped' WHERE id = 1;
         UPDATE orders SET total = 99 WHERE id = 2;
         DELETE FROM orders WHERE id = 3;
         INSERT INTO orders (customer_id, total) VALUES (3, 5);
         UPDATE enrollments SET state = 'done' WHERE process_id = 1 AND application_id = 7;
         DELETE FROM enrollments WHERE process_id = 1 AND application_id = 8",
    )
    .await;
    let twice = tx(
        &db.client,
        "hr",
        "UPDATE employees SET name = 'L1' WHERE id = 3; UPDATE employees SET name = 'L2' WHERE id = 3",
    )
    .await;
    let alone = txids(&[once]);
    let beside = txids(&[once, twice]);
    assert_eq!(fast_path_rows(&mut db.client, &alone).await, 7);
    assert_eq!(fast_path_rows(&mut db.client, &beside).await, 0);
    let fast = plan(&db.client, &alone).await.unwrap();
    assert_eq!(fast.statements().count(), 7, "{fast:#?}");
    assert_eq!(
        lines_without(&fast, "public.employees"),
        lines_without(&plan(&db.client, &beside).await.unwrap(), "public.employees")
    );

    // A later change of a cell the selection changed: the same conflict,
    // and the same row left out.
    tx(
        &db.client,
        "support",
        "UPDATE enrollments SET state = 'later' WHERE process_id = 1 AND application_id = 7",
    )
    .await;
    let fast = plan(&db.client, &alone).await.unwrap();
    assert_eq!(fast.conflicts().count(), 1);
    assert_eq!(
        lines_without(&fast, "public.employees"),
        lines_without(&plan(&db.client, &beside).await.unwrap(), "public.employees")
    );
    let (mut alone, mut beside) = (alone, beside);
    alone.policy = Policy::Skip;
    beside.policy = Policy::Skip;
    let fast = plan(&db.client, &alone).await.unwrap();
    assert_eq!(fast.of(Operation::Skip).count(), 1);
    assert_eq!(
        lines_without(&fast, "public.employees"),
        lines_without(&plan(&db.client, &beside).await.unwrap(), "public.employees")
    );
    revert(&mut db.client, &alone, "undo the batch but the row changed since")
        .await
        .unwrap();
    assert_eq!(
        count(
            &db.client,
            "SELECT count(*) FROM orders WHERE id = 3 AND total = 30"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_transaction_named_twice_is_reverted_once_and_the_revert_names_only_what_it_undid() {
    let mut db = shop().await;
    let first = tx(
        &db.client,
        "script",
        "UPDATE customers SET email = 'one@broken.test' WHERE id = 1",
    )
    .await;
    let second = tx(
        &db.client,
        "script",
        "UPDATE customers SET email = 'two@broken.test' WHERE id = 2",
    )
    .await;
    tx(
        &db.client,
        "support",
        "UPDATE customers SET email = 'bob@new.example' WHERE id = 2",
    )
    .await;

    // A script passing the same transaction twice gets each change once;
    // the row changed since is left as it is.
    let mut request = txids(&[first, second, first]);
    request.policy = Policy::Skip;
    let planned = plan(&db.client, &request).await.unwrap();
    assert_eq!(planned.of(Operation::Skip).count(), 1);
    assert_eq!(planned.change_ids().len(), 1, "{:?}", planned.change_ids());
    revert(
        &mut db.client,
        &request,
        "undo the script where nobody fixed it since",
    )
    .await
    .unwrap();
    assert_eq!(
        column::<Value>(
            &db.client,
            "SELECT to_jsonb(email) FROM customers WHERE id IN (1, 2) ORDER BY id"
        )
        .await,
        vec![json!("ann@example.com"), json!("bob@new.example")]
    );

    // The revert's context names the one change and the one transaction it undid.
    let history: Vec<Value> = column(
        &db.client,
        "SELECT to_jsonb(h) FROM pgtrail.history('customers', '{\"id\": 1}') AS h ORDER BY h.id",
    )
    .await;
    let last = history.last().unwrap();
    assert_eq!(last["context"]["revert"]["changes"], json!(1));
    assert_eq!(last["context"]["revert"]["transactions"], json!([first]));
}

/// Applying, the rows a selection changed once (the fast path) of a table
/// whose values cannot hold a redaction or erasure marker are written
/// straight from the plan's working table, batch by batch, one statement
/// per set of columns as in the plan shown; `pgtrail.revert` returns those
/// statements without their rows, and `apply` gives them the rows of the
/// plan shown. The checks are the same: a row changed without capture is a
/// conflict (refused, or left as it is with skip), and a selection with a
/// row changed twice beside them is planned and written as before.
#[tokio::test]
async fn rows_changed_once_are_written_straight_from_the_plan_in_batches_and_keep_every_check() {
    let mut db = audited_db(
        "CREATE TABLE stock (sku int PRIMARY KEY, qty int NOT NULL, place text, note text)",
        "[capture]\n",
    )
    .await;
    db.client
        .batch_execute("INSERT INTO stock SELECT g, g, 'shelf ' || g, NULL FROM generate_series(1, 500) AS g")
        .await
        .unwrap();
    let before = rows(&db.client, "stock").await;
    let script = tx(
        &db.client,
        "script",
        "UPDATE stock SET qty = 0 WHERE sku <= 300;
         UPDATE stock SET place = 'lost' WHERE sku BETWEEN 301 AND 350;
         UPDATE stock SET qty = -1, note = 'x' WHERE sku BETWEEN 351 AND 360",
    )
    .await;
    db.behind_the_triggers("UPDATE stock SET qty = 5 WHERE sku = 7")
        .await;
    let mut request = txids(&[script]);
    request.batch_rows = Some(70);

    // A conflict found on the fast path: refused, nothing changed.
    let shown = plan(&db.client, &request).await.unwrap();
    let conflicts: Vec<_> = shown.conflicts().collect();
    assert_eq!(conflicts.len(), 1, "{:?}", shown.items);
    assert_eq!(conflicts[0].key, Some(json!({"sku": 7})));
    // (Applying under refuse, the fast path's rows are compared with the
    // live rows by each batch's guard: the statement of "place" is written
    // first, then the batch of "qty" holding sku 7 finds a row fewer, its
    // writes and those before are undone, and the plan made again with the
    // live rows compared names the conflict as the plan shown did.)
    let refused = revert(&mut db.client, &request, "undo the script").await;
    assert!(matches!(&refused, Err(e) if e.is_conflict()), "{refused:?}");
    let message = refused.unwrap_err().to_string();
    assert!(message.contains("{\"sku\": 7}"), "{message}");
    assert!(
        message.contains("the row differs from what the trail says: qty"),
        "{message}"
    );
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM stock WHERE qty = 0").await,
        299
    );
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM stock WHERE place = 'lost'").await,
        50
    );
    assert_eq!(
        count(
            &db.client,
            "SELECT count(*) FROM pgtrail.changes WHERE reason = 'undo the script'"
        )
        .await,
        0
    );

    // Skip: the plan's three statements, written from the working table
    // (no rows returned with them) in batches of 70.
    request.policy = Policy::Skip;
    let shown = plan(&db.client, &request).await.unwrap();
    let statements: Vec<_> = shown.statements().collect();
    assert_eq!(
        statements
            .iter()
            .map(|s| (s.columns.clone(), s.rows))
            .collect::<Vec<_>>(),
        vec![
            (vec!["place".to_string()], Some(50)),
            (vec!["qty".to_string()], Some(299)),
            (vec!["note".to_string(), "qty".to_string()], Some(10)),
        ]
    );
    assert!(statements.iter().all(|s| s.data.is_some() && s.key.is_some()));
    let returned = revert_rolled_back(
        &mut db.client,
        &request,
        "skip",
        "data IS NULL AND key IS NULL, rows",
        "ORDER BY step",
    )
    .await;
    assert_eq!(
        returned
            .iter()
            .map(|r| (r.get::<_, bool>(0), r.get::<_, i64>(1)))
            .collect::<Vec<_>>(),
        vec![(true, 50), (true, 299), (true, 10)]
    );
    let options = ApplyOptions {
        reason: "undo the script where it can be".into(),
        actor: None,
        expected: Some(&shown),
    };
    let applied = apply(&mut db.client, &request, &options).await.unwrap();
    assert_eq!(
        applied
            .plan
            .statements()
            .map(|s| s.data.clone())
            .collect::<Vec<_>>(),
        shown.statements().map(|s| s.data.clone()).collect::<Vec<_>>()
    );
    let mut expected = before.clone();
    expected.sort_by_key(|r| r["sku"].as_i64());
    expected[6]["qty"] = json!(5);
    let mut now = rows(&db.client, "stock").await;
    now.sort_by_key(|r| r["sku"].as_i64());
    assert_eq!(now, expected);

    // Rows changed once beside a row changed twice: the general path, its
    // statements with their rows, as before.
    let mixed = tx(
        &db.client,
        "script",
        "UPDATE stock SET note = 'n' WHERE sku BETWEEN 100 AND 199;
         UPDATE stock SET note = 'm', place = 'p' WHERE sku = 150",
    )
    .await;
    let mixed = txids(&[mixed]);
    let returned = revert_rolled_back(&mut db.client, &mixed, "refuse", "data IS NOT NULL", "").await;
    assert_eq!(
        returned.iter().map(|r| r.get::<_, bool>(0)).collect::<Vec<_>>(),
        vec![true, true]
    );
    revert(&mut db.client, &mixed, "undo the notes").await.unwrap();
    let mut now = rows(&db.client, "stock").await;
    now.sort_by_key(|r| r["sku"].as_i64());
    assert_eq!(now, expected);
}

#[tokio::test]
async fn later_changes_are_found_when_the_trail_is_read_by_time_as_for_a_large_selection() {
    let mut db = audited_db(
        "CREATE TABLE stock (sku int PRIMARY KEY, qty int NOT NULL, place text);
         CREATE TABLE shelf (id int PRIMARY KEY, label text)",
        "[capture]\n",
    )
    .await;
    db.client
        .batch_execute(
            "INSERT INTO stock SELECT g, g, 'shelf ' || g FROM generate_series(1, 50) AS g;
             INSERT INTO shelf SELECT g, 'label ' || g FROM generate_series(1, 5) AS g;
             -- (Every selection counts as large: the trail is read by time.)
             SET pgtrail.revert_key_lookup_rows = 0",
        )
        .await
        .unwrap();
    let script = tx(&db.client, "script", "UPDATE stock SET qty = 0 WHERE sku <= 20").await;

    // Nothing recorded since but the selection: no later change.
    let shown = plan(&db.client, &txids(&[script])).await.unwrap();
    assert_eq!(shown.conflicts().count(), 0, "{:?}", shown.items);

    // Changes since, of another table and of other rows: still none.
    tx(&db.client, "other", "UPDATE shelf SET label = 'x' WHERE id = 1").await;
    tx(&db.client, "other", "UPDATE stock SET qty = 7 WHERE sku = 40").await;
    let shown = plan(&db.client, &txids(&[script])).await.unwrap();
    assert_eq!(shown.conflicts().count(), 0, "{:?}", shown.items);

    // A later change of a row of the selection: its conflict, as always.
    let later = tx(&db.client, "support", "UPDATE stock SET qty = 3 WHERE sku = 5").await;
    let shown = plan(&db.client, &txids(&[script])).await.unwrap();
    let conflicts: Vec<_> = shown.conflicts().collect();
    assert_eq!(conflicts.len(), 1, "{:?}", shown.items);
    assert_eq!(conflicts[0].key, Some(json!({"sku": 5})));
    let conflict = conflicts[0].conflict.clone().unwrap();
    assert_eq!(conflict["kind"], json!("later_change"));
    assert_eq!(conflict["txid"], json!(later));
    assert!(matches!(
        revert(&mut db.client, &txids(&[script]), "undo").await,
        Err(RevertError::Conflicts { .. })
    ));

    // Skip leaves that row; the others go back.
    let mut skip = txids(&[script]);
    skip.policy = Policy::Skip;
    revert(&mut db.client, &skip, "undo the rest").await.unwrap();
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM stock WHERE qty = sku").await,
        48
    );
    assert_eq!(
        count(&db.client, "SELECT qty::bigint FROM stock WHERE sku = 5").await,
        3
    );
}

/// Rows written straight from the plan read their values back from the
/// trail's JSON by their text (`->>` and a cast to the column's type):
/// every value of every scalar type comes back as it was (a char(n) key
/// with its padding, NaN and infinities, text with quotes, backslashes,
/// new lines and accents, NULLs). A table with other types (a domain, an
/// array, json, jsonb, a composite, a range) goes the way with its rows.
#[tokio::test]
async fn values_of_every_type_come_back_exactly_when_written_straight_from_the_plan() {
    let mut db = audited_db(
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
         CREATE TYPE pair AS (a int, b text);
         CREATE DOMAIN short_text AS varchar(8) CHECK (VALUE <> 'bad');
         CREATE TABLE scalars (code char(4), n int, txt text, v varchar(10), c char(5), num numeric(12,2),
                               f float8, big bigint, b bool, d date, ts timestamp, tz timestamptz,
                               iv interval, u uuid, ip inet, by bytea, m mood, tm time,
                               PRIMARY KEY (code, n));
         CREATE TABLE others (id int PRIMARY KEY, dom short_text, arr int[], js json, jb jsonb, p pair, tags text[],
                              r int4range);",
        "[capture]\n",
    )
    .await;
    tx(
        &db.client,
        "setup",
        r#"INSERT INTO scalars
           SELECT 'k' || (g % 3), g, E'quote '' back\\slash\nnew line é ' || g, 'v' || g, 'c' || (g % 10),
                  g * 1.25, CASE g % 4 WHEN 0 THEN 'NaN'::float8 WHEN 1 THEN '-Infinity'::float8 ELSE g / 3.0 END,
                  g * 10000000000, g % 2 = 0, date '2026-01-01' + g, timestamp '2026-01-01 10:00:00.123456' + g * interval '1 hour',
                  timestamptz '2026-03-29 00:30:00+00' + g * interval '17 minutes', g * interval '1 day 3 hours',
                  md5(g::text)::uuid, ('10.0.' || g % 250 || '.1/24')::inet, decode(md5(g::text), 'hex'),
                  (ARRAY['sad', 'ok', 'happy'])[g % 3 + 1]::mood, time '23:59:59.5'
           FROM generate_series(1, 120) AS g;
           UPDATE scalars SET txt = NULL, num = NULL WHERE n % 7 = 0;
           INSERT INTO others
           SELECT g, 'd' || g, ARRAY[g, g + 1], ('{"a": ' || g || ', "s": "x\"y"}')::json,
                  ('{"k": [' || g || ', null, "z"]}')::jsonb, ROW(g, 'p' || g)::pair, ARRAY['a b', NULL, 'c"d'],
                  int4range(g, g + 10, '[)')
           FROM generate_series(1, 120) AS g"#,
    )
    .await;
    let scalars = rows(&db.client, "scalars").await;
    let others = rows(&db.client, "others").await;
    let scalars_text = rows_text(&db.client, "scalars").await;
    let others_text = rows_text(&db.client, "others").await;
    let bad = tx(
        &db.client,
        "script",
        "UPDATE scalars SET txt = 'x', v = 'y', c = 'z', num = 0, f = 0, big = 0, b = NULL, d = NULL, ts = NULL,
                           tz = NULL, iv = NULL, u = NULL, ip = NULL, by = NULL, m = 'ok', tm = NULL;
         UPDATE others SET dom = 'other', arr = '{}', js = '[]', jb = '{}', p = NULL, tags = NULL, r = 'empty'",
    )
    .await;
    let request = txids(&[bad]);
    assert_eq!(fast_path_rows(&mut db.client, &request).await, 240);
    // (scalars: its two sets of columns, m unchanged where it was 'ok',
    // written straight from the plan, no rows returned with them; others,
    // whose values are not all JSON scalars: with their rows.)
    let returned = revert_rolled_back(
        &mut db.client,
        &request,
        "refuse",
        "table_name, data IS NULL",
        "ORDER BY 1, 2",
    )
    .await;
    assert_eq!(
        returned
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, bool>(1)))
            .collect::<Vec<_>>(),
        vec![
            ("public.others".to_string(), false),
            ("public.scalars".to_string(), true),
            ("public.scalars".to_string(), true)
        ]
    );
    revert(&mut db.client, &request, "undo the script").await.unwrap();
    assert_eq!(rows(&db.client, "scalars").await, scalars);
    assert_eq!(rows(&db.client, "others").await, others);
    // (Compared as text too: JSON does not show a char(n)'s padding.)
    assert_eq!(rows_text(&db.client, "scalars").await, scalars_text);
    assert_eq!(rows_text(&db.client, "others").await, others_text);
}

/// Rows a transaction created are deleted straight from the plan's working
/// table too (their keys and what they must hold read from it, not made
/// into JSON rows and sliced into batches): found by keys of any scalar
/// type (a char(n) with its padding, a timestamptz, a numeric), batch by
/// batch, before the same table's rows the transaction deleted go back.
/// `pgtrail.revert` returns that statement without its rows. A created row
/// changed without capture is still a conflict.
#[tokio::test]
async fn created_rows_are_deleted_straight_from_the_plan_by_keys_of_any_scalar_type() {
    let mut db = audited_db(
        "CREATE TABLE bookings (code char(4), at timestamptz, amount numeric(12,2), note text,
                                PRIMARY KEY (code, at, amount))",
        "[capture]\n",
    )
    .await;
    tx(
        &db.client,
        "setup",
        "INSERT INTO bookings
         SELECT 'b' || (g % 7), timestamptz '2026-03-29 00:30:00+00' + g * interval '17 minutes', g * 1.25, 'kept ' || g
         FROM generate_series(1, 40) AS g",
    )
    .await;
    let before = rows(&db.client, "bookings").await;
    let before_text = rows_text(&db.client, "bookings").await;
    let script = tx(
        &db.client,
        "script",
        "INSERT INTO bookings
         SELECT 'n' || (g % 3), timestamptz '2026-10-25 00:30:00+00' + g * interval '7 minutes', g * 0.5, E'new \\' ' || g
         FROM generate_series(1, 90) AS g;
         DELETE FROM bookings WHERE note LIKE 'kept %' AND amount < 10",
    )
    .await;
    let mut request = txids(&[script]);
    request.batch_rows = Some(25);
    let returned = revert_rolled_back(
        &mut db.client,
        &request,
        "refuse",
        "operation, rows, data IS NULL, key IS NULL",
        "ORDER BY step",
    )
    .await;
    assert_eq!(
        returned
            .iter()
            .map(|r| (
                r.get::<_, String>(0),
                r.get::<_, i64>(1),
                r.get::<_, bool>(2),
                r.get::<_, bool>(3)
            ))
            .collect::<Vec<_>>(),
        vec![
            ("DELETE".to_string(), 90, true, true),
            ("INSERT".to_string(), 7, false, false)
        ]
    );
    // (The plan shown has the rows.)
    let shown = plan(&db.client, &request).await.unwrap();
    let delete = shown
        .statements()
        .find(|s| s.operation == Operation::Delete)
        .expect("a DELETE");
    assert_eq!(
        delete.data.as_ref().and_then(Value::as_array).map(Vec::len),
        Some(90)
    );

    revert(&mut db.client, &request, "undo the script").await.unwrap();
    assert_eq!(rows(&db.client, "bookings").await, before);
    assert_eq!(rows_text(&db.client, "bookings").await, before_text);

    // A created row changed by hand: refused, nothing changed.
    let again = tx(
        &db.client,
        "script again",
        "INSERT INTO bookings SELECT 'm' || g, timestamptz '2026-11-01 00:00:00+00', g, 'again' FROM generate_series(1, 30) AS g",
    )
    .await;
    db.behind_the_triggers("UPDATE bookings SET note = 'by hand' WHERE code = 'm7'")
        .await;
    let after_hand = rows(&db.client, "bookings").await;
    let refused = revert(&mut db.client, &txids(&[again]), "undo it").await;
    assert!(matches!(&refused, Err(e) if e.is_conflict()), "{refused:?}");
    assert!(refused.unwrap_err().to_string().contains("m7"));
    assert_eq!(rows(&db.client, "bookings").await, after_hand);
}

/// Every row of `table` in its text form, sorted.
async fn rows_text(client: &Client, table: &str) -> String {
    client
        .query_one(
            &format!("SELECT string_agg(t::text, '|' ORDER BY t::text) FROM {table} AS t"),
            &[],
        )
        .await
        .unwrap()
        .get(0)
}
