//! History survives schema changes (column lineage). A table goes through
//! every kind of schema change a team ships — RENAME, ADD and DROP COLUMN,
//! ALTER TYPE with and without USING, a volatile default, RENAME TABLE and
//! SET SCHEMA — with changes in between; after each step the table is
//! snapshotted, and `table_as_of` and `row_as_of` must give every snapshot
//! back, named as the table was named then. `history`, `blame` and
//! `reconcile` follow the columns across it all.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tokio_postgres::Client;

use crate::support::audited_db;

/// One change of `pgtrail.history`: op, old values, new values, actor id.
type HistoryStep = (String, Option<Value>, Option<Value>, Option<String>);

/// The table's rows, by id, as JSON (a snapshot), and the moment right after.
async fn snapshot(client: &Client, table: &str) -> (BTreeMap<String, Value>, String) {
    let rows = client
        .query(&format!("SELECT id::text, to_jsonb(t) FROM {table} AS t"), &[])
        .await
        .unwrap_or_else(|e| panic!("{table}: {e:?}"));
    let at: String = client
        .query_one("SELECT clock_timestamp()::text", &[])
        .await
        .unwrap()
        .get(0);
    (rows.iter().map(|r| (r.get(0), r.get(1))).collect(), at)
}

/// `table_as_of(table, at)` by id.
async fn table_as_of(client: &Client, table: &str, at: &str) -> BTreeMap<String, Value> {
    client
        .query(
            "SELECT r ->> 'id', r FROM pgtrail.table_as_of($1::text::regclass, $2::text::timestamptz) AS r",
            &[&table, &at],
        )
        .await
        .unwrap_or_else(|e| panic!("table_as_of({table}, {at}): {e:?}"))
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn row_as_of(client: &Client, table: &str, id: &str, at: &str) -> Option<Value> {
    client
        .query_one(
            "SELECT pgtrail.row_as_of($1::text::regclass, jsonb_build_object('id', $2::text::int), $3::text::timestamptz)",
            &[&table, &id, &at],
        )
        .await
        .unwrap_or_else(|e| panic!("row_as_of({table}, {id}, {at}): {e:?}"))
        .get(0)
}

#[tokio::test]
async fn every_moment_of_a_table_is_answered_across_its_schema_changes() {
    let db = audited_db(
        "CREATE TABLE accounts (id integer PRIMARY KEY, email text, balance numeric(10,2), note text);",
        "[capture]\ninclude = [\"accounts\"]\n",
    )
    .await;
    let c = &db.client;
    let steps: &[(&str, &str)] = &[
        (
            "accounts",
            "INSERT INTO accounts VALUES (1, 'a@example.com', 10.50, 'first'), (2, 'b@example.com', 20, 'second'),
                                        (3, 'c@example.com', 30.25, NULL)",
        ),
        ("accounts", "UPDATE accounts SET email = 'a2@example.com' WHERE id = 1"),
        ("accounts", "ALTER TABLE accounts RENAME COLUMN email TO contact"),
        ("accounts", "UPDATE accounts SET contact = 'b2@example.com', note = 'moved' WHERE id = 2"),
        ("accounts", "ALTER TABLE accounts ADD COLUMN tier text NOT NULL DEFAULT 'basic'"),
        ("accounts", "UPDATE accounts SET tier = 'gold' WHERE id = 3"),
        ("accounts", "INSERT INTO accounts (id, contact, balance) VALUES (4, 'd@example.com', 1)"),
        ("accounts", "ALTER TABLE accounts DROP COLUMN note"),
        ("accounts", "ALTER TABLE accounts ALTER COLUMN balance TYPE numeric(12,3)"),
        (
            "accounts",
            "BEGIN; SELECT pgtrail.set_context(actor_id => 'dba', reason => 'cents');
             ALTER TABLE accounts ALTER COLUMN balance TYPE bigint USING (balance * 100)::bigint; COMMIT",
        ),
        ("accounts", "ALTER TABLE accounts ADD COLUMN serial integer GENERATED ALWAYS AS IDENTITY"),
        ("accounts", "UPDATE accounts SET balance = balance + 1 WHERE id = 1"),
        ("customers", "ALTER TABLE accounts RENAME TO customers"),
        (
            "crm.customers",
            // (The trail's owner reads the table in its new schema: what
            // `pgtrail apply` grants when the config names it there.)
            "CREATE SCHEMA crm; ALTER TABLE customers SET SCHEMA crm; SELECT pgtrail._let_owner_read('crm.customers')",
        ),
        (
            "crm.customers",
            "UPDATE crm.customers SET contact = 'a3@example.com' WHERE id = 1;
             DELETE FROM crm.customers WHERE id = 2;
             INSERT INTO crm.customers (id, contact, balance, tier) VALUES (5, 'e@example.com', 7, 'silver')",
        ),
    ];
    let mut snapshots = Vec::new();
    for (table, sql) in steps {
        c.batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        snapshots.push((sql, snapshot(c, table).await));
    }

    for (sql, (rows, at)) in &snapshots {
        assert_eq!(
            &table_as_of(c, "crm.customers", at).await,
            rows,
            "table_as_of right after: {sql}"
        );
        for (id, row) in rows {
            assert_eq!(
                row_as_of(c, "crm.customers", id, at).await.as_ref(),
                Some(row),
                "row_as_of {id} right after: {sql}"
            );
        }
    }

    // Nothing changed outside the trail's view: reconcile finds nothing.
    let problems: Vec<String> = c
        .query(
            "SELECT problem || ' ' || pk::text FROM pgtrail.reconcile('crm.customers')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(problems, Vec::<String>::new());

    // The rewrite by ALTER TYPE ... USING is in the row's history, by its author.
    let history: Vec<HistoryStep> = c
        .query(
            "SELECT op, old_values, new_values, actor_id FROM pgtrail.history('crm.customers', '{\"id\": 3}')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert!(
        history.contains(&(
            "UPDATE".to_string(),
            // (30.250: the scale numeric(12,3) gave it, kept as PostgreSQL prints it.)
            Some(serde_json::from_str(r#"{"balance": 30.250}"#).unwrap()),
            Some(json!({"balance": 3025})),
            Some("dba".to_string())
        )),
        "{history:#?}"
    );

    // Blame names today's columns only; a renamed column keeps its history.
    let blame: Vec<(String, Option<String>)> = c
        .query(
            // (In blame's order: a join's output order is the plan's.)
            "SELECT b.column_name, x.op FROM pgtrail.blame('crm.customers', '{\"id\": 2}') WITH ORDINALITY AS b
             LEFT JOIN pgtrail.changes AS x ON x.id = b.change_id ORDER BY b.ordinality",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let columns: Vec<&str> = blame.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(
        columns,
        ["id", "contact", "balance", "tier", "serial"],
        "{blame:?}"
    );
    assert_eq!(
        blame[1].1.as_deref(),
        Some("UPDATE"),
        "contact was last set when it was `email`'s successor"
    );
}

#[tokio::test]
async fn a_renamed_secret_stays_redacted() {
    let db = audited_db(
        "CREATE TABLE users (id integer PRIMARY KEY, password_hash text);",
        "[capture]\ninclude = [\"users\"]\n[tables.users]\nredact_columns = [\"password_hash\"]\n",
    )
    .await;
    db.client
        .batch_execute(
            "INSERT INTO users VALUES (1, 'hash-one');
             ALTER TABLE users RENAME COLUMN password_hash TO pw;
             INSERT INTO users VALUES (2, 'hash-two');
             UPDATE users SET pw = 'hash-three' WHERE id = 1;",
        )
        .await
        .unwrap();
    let recorded: Vec<String> = db
        .client
        .query(
            "SELECT coalesce(old_values::text, '') || coalesce(new_values::text, '') FROM pgtrail.change ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(recorded.len(), 3);
    assert!(
        recorded.iter().all(|r| !r.contains("hash-")),
        "a renamed secret is recorded as a marker, never in clear: {recorded:#?}"
    );
}
