//! Shared test helpers: install pgtrail from a TOML config and read the trail.

use pgtrail::config::Config;
use pgtrail_testkit::TestDb;
use serde_json::Value;
use tokio_postgres::Client;

/// A fresh database with `schema_sql` run and pgtrail applied from `toml`.
pub async fn audited_db(schema_sql: &str, toml: &str) -> TestDb {
    let mut db = TestDb::new().await;
    db.client
        .batch_execute(schema_sql)
        .await
        .expect("schema SQL runs");
    apply(&mut db.client, toml).await;
    db
}

pub async fn apply(client: &mut Client, toml: &str) {
    let config = Config::parse(toml, "pgtrail.toml").expect("test config parses");
    pgtrail::plan::apply(client, &config)
        .await
        .expect("apply succeeds");
}

/// Makes UPDATEs of `rows` rows and more take the two-pass path of the
/// capture functions (kind 'columns'; by default from 5,000 rows, in
/// tables recording more than 40 columns) and generates them again:
/// stories of a few hundred rows cover that path so.
pub async fn two_pass_update_from(client: &Client, rows: i64) {
    large_update_from(client, rows, Some(0)).await;
}

/// Makes UPDATEs of `rows` rows and more large ones (kind 'columns': the
/// changes written in the key index's order; in tables recording more than
/// `two_pass_columns` columns, 40 when None, by the two-pass path) and
/// generates the capture functions again.
pub async fn large_update_from(client: &Client, rows: i64, two_pass_columns: Option<i64>) {
    let settings = [
        ("bulk_update_rows", Some(rows)),
        ("two_pass_columns", two_pass_columns),
    ];
    for (name, value) in settings {
        match value {
            Some(value) => client
                .execute(
                    "INSERT INTO pgtrail.setting (name, value) VALUES ($1, $2)
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    &[&name, &value.to_string()],
                )
                .await
                .expect("the setting is written"),
            None => client
                .execute("DELETE FROM pgtrail.setting WHERE name = $1", &[&name])
                .await
                .expect("the setting is removed"),
        };
    }
    client
        .batch_execute("SELECT pgtrail._compile_all()")
        .await
        .expect("capture functions generated again");
}

/// One row of `pgtrail.changes`, as the tests look at it.
#[derive(Debug, Clone)]
pub struct Change {
    pub id: i64,
    pub txid: i64,
    pub table: String,
    pub op: String,
    pub pk: Option<Value>,
    pub old: Option<Value>,
    pub new: Option<Value>,
    pub fields: Option<Vec<String>>,
    pub actor_id: Option<String>,
    pub actor_name: Option<String>,
    pub actor_type: Option<String>,
    pub reason: Option<String>,
    pub context: Option<Value>,
}

/// Every change of `table` (or of all tables when empty), oldest first.
pub async fn changes(client: &Client, table: &str) -> Vec<Change> {
    let rows = client
        .query(
            "SELECT id, txid, table_name, op, pk, old_values, new_values, changed_fields,
                    actor_id, actor_name, actor_type, reason, context
             FROM pgtrail.changes WHERE $1 = '' OR table_name = $1 ORDER BY id",
            &[&table],
        )
        .await
        .expect("pgtrail.changes is readable");
    rows.iter()
        .map(|r| Change {
            id: r.get(0),
            txid: r.get(1),
            table: r.get(2),
            op: r.get(3),
            pk: r.get(4),
            old: r.get(5),
            new: r.get(6),
            fields: r.get(7),
            actor_id: r.get(8),
            actor_name: r.get(9),
            actor_type: r.get(10),
            reason: r.get(11),
            context: r.get(12),
        })
        .collect()
}

/// The first column of every row `sql` returns.
pub async fn column<T: for<'a> tokio_postgres::types::FromSql<'a>>(client: &Client, sql: &str) -> Vec<T> {
    client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The current moment, as text (passed back as `$n::text::timestamptz`).
pub async fn now(client: &Client) -> String {
    client
        .query_one("SELECT clock_timestamp()::text", &[])
        .await
        .unwrap()
        .get(0)
}

pub async fn count(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.expect("count query runs").get(0)
}

/// Runs `sql` in one transaction as `actor` (reason "work"); returns its
/// txid.
pub async fn tx(client: &Client, actor: &str, sql: &str) -> i64 {
    client
        .batch_execute(&format!(
            "BEGIN; SELECT pgtrail.set_context(actor_name => '{actor}', reason => 'work'); {sql};"
        ))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    let txid: i64 = client
        .query_one("SELECT txid_current()", &[])
        .await
        .expect("txid")
        .get(0);
    client.batch_execute("COMMIT").await.expect("commit");
    txid
}
