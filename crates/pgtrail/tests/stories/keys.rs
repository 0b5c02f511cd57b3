//! Row identity for every kind of key: one column of any name and type,
//! composite keys, no key at all, partitioned tables, awkward identifiers,
//! and updates that change the key.

use serde_json::json;

use crate::support::{audited_db, changes};

#[tokio::test]
async fn a_student_keyed_by_std_no_is_recorded_under_that_key() {
    let schema = "CREATE TABLE students (std_no text PRIMARY KEY, name text);";
    let db = audited_db(schema, "").await;
    db.client
        .batch_execute(
            "INSERT INTO students VALUES ('901234', 'Lerato'); UPDATE students SET name = 'Lerato M';",
        )
        .await
        .unwrap();
    let trail = changes(&db.client, "students").await;
    assert!(
        trail.iter().all(|c| c.pk == Some(json!({"std_no": "901234"}))),
        "{trail:#?}"
    );
}

#[tokio::test]
async fn a_configured_key_overrides_the_detected_one() {
    let schema = "CREATE TABLE students (id serial PRIMARY KEY, std_no text UNIQUE NOT NULL, name text);";
    let config = "[tables.\"public.students\"]\nkey = [\"std_no\"]\n";
    let db = audited_db(schema, config).await;
    db.client
        .batch_execute("INSERT INTO students (std_no, name) VALUES ('42', 'A')")
        .await
        .unwrap();
    assert_eq!(
        changes(&db.client, "students").await[0].pk,
        Some(json!({"std_no": "42"}))
    );
    let kind: String = db
        .client
        .query_one(
            "SELECT key_kind FROM pgtrail.audited_table WHERE table_name = 'students'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(kind, "configured");
}

#[tokio::test]
async fn uuid_and_composite_keys_use_the_json_form_of_their_values() {
    let schema = "
        CREATE TABLE docs (id uuid PRIMARY KEY, title text);
        CREATE TABLE process_applications (process_id int, application_id int, note text,
                                           PRIMARY KEY (process_id, application_id));";
    let db = audited_db(schema, "").await;
    db.client
        .batch_execute(
            "INSERT INTO docs VALUES ('6f1c1a52-4bde-4b62-9a38-7b9e1f5a8c11', 'x');
             INSERT INTO process_applications VALUES (1, 7, 'n');",
        )
        .await
        .unwrap();
    assert_eq!(
        changes(&db.client, "docs").await[0].pk,
        Some(json!({"id": "6f1c1a52-4bde-4b62-9a38-7b9e1f5a8c11"}))
    );
    assert_eq!(
        changes(&db.client, "process_applications").await[0].pk,
        Some(json!({"process_id": 1, "application_id": 7}))
    );
}

#[tokio::test]
async fn a_table_without_primary_key_uses_its_replica_identity_index_else_the_whole_row() {
    let schema = "
        CREATE TABLE receipts (request_id int NOT NULL, receipt_id int NOT NULL, amount numeric);
        CREATE UNIQUE INDEX receipts_uq ON receipts (request_id, receipt_id);
        ALTER TABLE receipts REPLICA IDENTITY USING INDEX receipts_uq;
        CREATE TABLE events (kind text, payload text);";
    let db = audited_db(schema, "").await;
    db.client
        .batch_execute(
            "INSERT INTO receipts VALUES (1, 2, 10);
             UPDATE receipts SET amount = 11;
             INSERT INTO events VALUES ('login', 'a'), ('login', 'b');
             UPDATE events SET payload = 'c' WHERE payload = 'a';
             DELETE FROM events WHERE payload = 'b';",
        )
        .await
        .unwrap();
    let receipts = changes(&db.client, "receipts").await;
    assert!(
        receipts
            .iter()
            .all(|c| c.pk == Some(json!({"request_id": 1, "receipt_id": 2})))
    );

    let events = changes(&db.client, "events").await;
    let update = events.iter().find(|c| c.op == "UPDATE").unwrap();
    assert_eq!(update.pk, Some(json!({"kind": "login", "payload": "c"})));
    assert_eq!(update.old, Some(json!({"payload": "a"})));
    let old_pk: serde_json::Value = db
        .client
        .query_one("SELECT old_pk FROM pgtrail.change WHERE id = $1", &[&update.id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(old_pk, json!({"kind": "login", "payload": "a"}));
    let delete = events.iter().find(|c| c.op == "DELETE").unwrap();
    assert_eq!(delete.pk, Some(json!({"kind": "login", "payload": "b"})));
}

#[tokio::test]
async fn an_update_that_changes_the_key_keeps_the_old_and_new_key() {
    let db = audited_db("CREATE TABLE users (id int PRIMARY KEY, email text);", "").await;
    db.client
        .batch_execute("INSERT INTO users VALUES (1, 'a'), (2, 'b'); UPDATE users SET id = id + 100;")
        .await
        .unwrap();
    let rows = db
        .client
        .query(
            "SELECT pk, old_pk, old_values, new_values FROM pgtrail.change WHERE op = 'U' ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let pairs: Vec<(serde_json::Value, serde_json::Value)> =
        rows.iter().map(|r| (r.get(1), r.get(0))).collect();
    assert_eq!(pairs.len(), 2);
    assert!(
        pairs.contains(&(json!({"id": 1}), json!({"id": 101}))),
        "{pairs:?}"
    );
    assert!(pairs.contains(&(json!({"id": 2}), json!({"id": 102}))));
    for row in &rows {
        let old: serde_json::Value = row.get(2);
        let new: serde_json::Value = row.get(3);
        assert_eq!(new["id"].as_i64().unwrap() - old["id"].as_i64().unwrap(), 100);
    }
}

#[tokio::test]
async fn a_partitioned_table_records_each_change_once_under_the_parent() {
    let schema = "
        CREATE TABLE measurements (id int, at date, value int, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
        CREATE TABLE measurements_2025 PARTITION OF measurements FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
        CREATE TABLE measurements_2026 PARTITION OF measurements FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');";
    let db = audited_db(schema, "").await;
    db.client
        .batch_execute(
            "INSERT INTO measurements VALUES (1, '2025-05-01', 10), (2, '2026-05-01', 20);
             UPDATE measurements SET at = '2026-06-01' WHERE id = 1;  -- moves to another partition
             UPDATE measurements_2026 SET value = 21 WHERE id = 2;     -- straight into a partition
             DELETE FROM measurements_2026 WHERE id = 1;
             TRUNCATE measurements;",
        )
        .await
        .unwrap();
    let trail = changes(&db.client, "").await;
    assert!(trail.iter().all(|c| c.table == "measurements"), "{trail:#?}");
    let ops: Vec<&str> = trail.iter().map(|c| c.op.as_str()).collect();
    assert_eq!(
        ops,
        vec!["INSERT", "INSERT", "UPDATE", "UPDATE", "DELETE", "TRUNCATE"]
    );
    assert_eq!(trail[2].pk, Some(json!({"id": 1, "at": "2026-06-01"})));
    assert_eq!(trail[2].old, Some(json!({"at": "2025-05-01"})));
    assert_eq!(trail[3].new, Some(json!({"value": 21})));
}

#[tokio::test]
async fn quoted_mixed_case_unicode_and_reserved_identifiers_work() {
    let schema = r#"
        CREATE SCHEMA "Sales Dept";
        CREATE TABLE "Sales Dept"."Order Items" ("Order Id" int, "select" int, "Qty ""pcs""" int,
                                                  PRIMARY KEY ("Order Id", "select"));
        CREATE TABLE "élèves" ("numéro" text PRIMARY KEY, "nom complet" text);"#;
    let config = "[capture]\nschemas = [\"public\", \"Sales Dept\"]\n";
    let db = audited_db(schema, config).await;
    db.client
        .batch_execute(
            r#"INSERT INTO "Sales Dept"."Order Items" VALUES (1, 2, 3);
               UPDATE "Sales Dept"."Order Items" SET "Qty ""pcs""" = 4;
               INSERT INTO "élèves" VALUES ('É-1', 'Zoë');"#,
        )
        .await
        .unwrap();
    let items = changes(&db.client, "Order Items").await;
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].pk, Some(json!({"Order Id": 1, "select": 2})));
    assert_eq!(items[1].new, Some(json!({"Qty \"pcs\"": 4})));
    let pupils = changes(&db.client, "élèves").await;
    assert_eq!(pupils[0].pk, Some(json!({"numéro": "É-1"})));
}
