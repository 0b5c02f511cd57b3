//! What gets recorded: every INSERT, UPDATE, DELETE and TRUNCATE, in order,
//! and nothing for work that was undone or changed nothing.

use serde_json::json;

use crate::support::{audited_db, changes, count};

const USERS: &str = "
CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL, name text,
                    updated_at timestamptz DEFAULT now(), last_login_at timestamptz);";

#[tokio::test]
async fn an_insert_update_and_delete_are_recorded_with_old_and_new_values() {
    let db = audited_db(USERS, "").await;
    db.client
        .batch_execute(
            "INSERT INTO users (email, name) VALUES ('ann@example.com', 'Ann');
             UPDATE users SET email = 'ann@new.example.com' WHERE id = 1;
             DELETE FROM users WHERE id = 1;",
        )
        .await
        .unwrap();
    let trail = changes(&db.client, "users").await;
    assert_eq!(trail.len(), 3, "{trail:#?}");

    assert_eq!(trail[0].op, "INSERT");
    assert_eq!(trail[0].pk, Some(json!({"id": 1})));
    assert_eq!(trail[0].old, None);
    let inserted = trail[0].new.clone().unwrap();
    assert_eq!(inserted["email"], json!("ann@example.com"));
    assert_eq!(inserted["name"], json!("Ann"));

    assert_eq!(trail[1].op, "UPDATE");
    assert_eq!(trail[1].old, Some(json!({"email": "ann@example.com"})));
    assert_eq!(trail[1].new, Some(json!({"email": "ann@new.example.com"})));
    assert_eq!(trail[1].fields, Some(vec!["email".to_string()]));

    assert_eq!(trail[2].op, "DELETE");
    assert_eq!(trail[2].new, None);
    assert_eq!(
        trail[2].old.as_ref().unwrap()["email"],
        json!("ann@new.example.com")
    );
}

#[tokio::test]
async fn full_images_keep_the_whole_row_on_update() {
    let db = audited_db(
        USERS,
        "[capture]\nimages = \"full\"\nignore_columns = [\"updated_at\"]",
    )
    .await;
    db.client
        .batch_execute(
            "INSERT INTO users (email, name) VALUES ('a@x', 'A');
             UPDATE users SET name = 'B';",
        )
        .await
        .unwrap();
    let trail = changes(&db.client, "users").await;
    assert_eq!(
        trail[1].old,
        Some(json!({"id": 1, "email": "a@x", "name": "A", "last_login_at": null}))
    );
    assert_eq!(
        trail[1].new,
        Some(json!({"id": 1, "email": "a@x", "name": "B", "last_login_at": null}))
    );
    assert_eq!(trail[1].fields, Some(vec!["name".to_string()]));
}

#[tokio::test]
async fn several_updates_of_one_row_in_one_transaction_are_each_recorded_in_order() {
    let db = audited_db(USERS, "").await;
    db.client
        .batch_execute("INSERT INTO users (email) VALUES ('v0')")
        .await
        .unwrap();
    db.client
        .batch_execute(
            "BEGIN;
             UPDATE users SET email = 'v1';
             UPDATE users SET email = 'v2';
             UPDATE users SET email = 'v3';
             COMMIT;",
        )
        .await
        .unwrap();
    let trail = changes(&db.client, "users").await;
    let values: Vec<_> = trail[1..]
        .iter()
        .map(|c| c.new.clone().unwrap()["email"].clone())
        .collect();
    assert_eq!(values, vec![json!("v1"), json!("v2"), json!("v3")]);
    assert!(trail[1..].iter().all(|c| c.txid == trail[1].txid));
    assert!(trail[1].txid != trail[0].txid);
}

#[tokio::test]
async fn work_undone_by_a_savepoint_or_a_rollback_leaves_nothing() {
    let db = audited_db(USERS, "").await;
    db.client
        .batch_execute(
            "BEGIN;
             INSERT INTO users (email) VALUES ('kept');
             SAVEPOINT s;
             INSERT INTO users (email) VALUES ('undone');
             UPDATE users SET name = 'undone too';
             ROLLBACK TO SAVEPOINT s;
             COMMIT;
             BEGIN;
             DELETE FROM users;
             ROLLBACK;",
        )
        .await
        .unwrap();
    let trail = changes(&db.client, "users").await;
    assert_eq!(trail.len(), 1, "{trail:#?}");
    assert_eq!(trail[0].new.as_ref().unwrap()["email"], json!("kept"));
}

#[tokio::test]
async fn an_update_that_changes_nothing_or_only_ignored_columns_records_nothing() {
    let config = "[capture]\nignore_columns = [\"updated_at\"]\n\n[tables.\"public.users\"]\nignore_columns = [\"last_login_at\"]\n";
    let db = audited_db(USERS, config).await;
    // One statement per transaction (a multi-statement batch would share one).
    for statement in [
        "INSERT INTO users (email) VALUES ('a@x')",
        "UPDATE users SET email = email",
        "UPDATE users SET updated_at = now() + interval '1 day'",
        "UPDATE users SET last_login_at = now()",
        "UPDATE users SET updated_at = now(), email = 'b@x'",
    ] {
        db.client.batch_execute(statement).await.unwrap();
    }
    let trail = changes(&db.client, "users").await;
    assert_eq!(trail.len(), 2, "{trail:#?}");
    let inserted = trail[0].new.as_ref().unwrap().as_object().unwrap();
    assert!(!inserted.contains_key("updated_at") && !inserted.contains_key("last_login_at"));
    assert_eq!(trail[1].new, Some(json!({"email": "b@x"})));
    assert_eq!(trail[1].fields, Some(vec!["email".to_string()]));
    // Not even the transaction of a no-op update is recorded.
    assert_eq!(
        count(&db.client, "SELECT count(DISTINCT txid) FROM pgtrail.change").await,
        2
    );
}

#[tokio::test]
async fn truncate_is_one_event_per_table() {
    let schema = "
        CREATE TABLE parents (id int PRIMARY KEY);
        CREATE TABLE children (id int PRIMARY KEY, parent_id int REFERENCES parents);
        INSERT INTO parents SELECT generate_series(1, 5);
        INSERT INTO children SELECT g, g FROM generate_series(1, 5) g;";
    let db = audited_db(schema, "").await;
    db.client.batch_execute("TRUNCATE parents CASCADE").await.unwrap();
    let trail = changes(&db.client, "").await;
    let truncates: Vec<_> = trail.iter().filter(|c| c.op == "TRUNCATE").collect();
    assert_eq!(truncates.len(), 2, "{truncates:#?}");
    assert!(
        truncates
            .iter()
            .all(|c| c.pk.is_none() && c.old.is_none() && c.new.is_none())
    );
    let mut tables: Vec<_> = truncates.iter().map(|c| c.table.as_str()).collect();
    tables.sort();
    assert_eq!(tables, vec!["children", "parents"]);
}

#[tokio::test]
async fn changes_made_by_other_triggers_and_by_on_delete_cascade_are_captured() {
    let schema = "
        CREATE TABLE orgs (id int PRIMARY KEY, name text);
        CREATE TABLE members (id int PRIMARY KEY, org_id int REFERENCES orgs ON DELETE CASCADE);
        CREATE TABLE org_log (id serial PRIMARY KEY, note text);
        CREATE FUNCTION log_org() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO org_log (note) VALUES ('renamed ' || NEW.name); RETURN NEW; END $$;
        CREATE TRIGGER org_renamed AFTER UPDATE ON orgs FOR EACH ROW EXECUTE FUNCTION log_org();
        INSERT INTO orgs VALUES (1, 'Acme');
        INSERT INTO members VALUES (10, 1), (11, 1);";
    let db = audited_db(schema, "").await;
    db.client
        .batch_execute("UPDATE orgs SET name = 'Acme Inc'; DELETE FROM orgs WHERE id = 1;")
        .await
        .unwrap();
    let trail = changes(&db.client, "").await;
    let log: Vec<_> = trail.iter().filter(|c| c.table == "org_log").collect();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].new.as_ref().unwrap()["note"], json!("renamed Acme Inc"));
    let cascaded: Vec<_> = trail
        .iter()
        .filter(|c| c.table == "members" && c.op == "DELETE")
        .collect();
    assert_eq!(cascaded.len(), 2, "{trail:#?}");
    let deleted_org = trail
        .iter()
        .find(|c| c.table == "orgs" && c.op == "DELETE")
        .unwrap();
    assert_eq!(cascaded[0].txid, deleted_org.txid);
}

#[tokio::test]
async fn insert_on_conflict_is_recorded_as_what_it_did() {
    let db = audited_db("CREATE TABLE stock (sku text PRIMARY KEY, qty int);", "").await;
    db.client
        .batch_execute(
            "INSERT INTO stock VALUES ('a', 1);
             INSERT INTO stock VALUES ('a', 5), ('b', 2) ON CONFLICT (sku) DO UPDATE SET qty = excluded.qty;",
        )
        .await
        .unwrap();
    let summary: Vec<(String, serde_json::Value)> = changes(&db.client, "stock")
        .await
        .iter()
        .map(|c| (c.op.clone(), c.pk.clone().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            ("INSERT".into(), json!({"sku": "a"})),
            ("UPDATE".into(), json!({"sku": "a"})),
            ("INSERT".into(), json!({"sku": "b"})),
        ]
    );
}

#[tokio::test]
async fn merge_is_recorded_as_what_it_did() {
    let db = audited_db("CREATE TABLE stock (sku text PRIMARY KEY, qty int);", "").await;
    if !db.supports(150000, "MERGE").await {
        return;
    }
    db.client
        .batch_execute(
            "INSERT INTO stock VALUES ('a', 1), ('b', 2);
             MERGE INTO stock s USING (VALUES ('a', 5), ('b', 0), ('c', 3)) v(sku, qty) ON s.sku = v.sku
             WHEN MATCHED AND v.qty = 0 THEN DELETE
             WHEN MATCHED THEN UPDATE SET qty = v.qty
             WHEN NOT MATCHED THEN INSERT VALUES (v.sku, v.qty);",
        )
        .await
        .unwrap();
    let trail = changes(&db.client, "stock").await;
    let summary: Vec<(String, serde_json::Value)> = trail
        .iter()
        .map(|c| (c.op.clone(), c.pk.clone().unwrap()))
        .collect();
    assert!(
        summary.contains(&("UPDATE".into(), json!({"sku": "a"}))),
        "{summary:?}"
    );
    assert!(
        summary.contains(&("DELETE".into(), json!({"sku": "b"}))),
        "{summary:?}"
    );
    assert!(
        summary.contains(&("INSERT".into(), json!({"sku": "c"}))),
        "{summary:?}"
    );
    assert_eq!(trail.len(), 5, "{summary:?}");
}
