//! The trail moved to another server (issue 11): `pg_dump` into a new
//! cluster, whose own transaction numbers start over below the trail's. New
//! changes must carry their own context, the log must go on and verify, and
//! no answer may mix an old transaction with a new one.

use std::path::Path;
use std::process::Command;

use pgtrail::integrity::crypto::SignerKey;
use pgtrail::integrity::{self, VerifyOptions};
use pgtrail_testkit::{Cluster, ClusterOptions, connect_to};
use tokio_postgres::Client;

use crate::support::{apply, column, count};

const SHOP: &str = "CREATE TABLE accounts (id integer PRIMARY KEY, owner text, balance numeric(12,2));";
const CONFIG: &str = "[capture]\ninclude = [\"accounts\"]\n";

fn fast_cluster() -> Cluster {
    Cluster::start(ClusterOptions {
        fast: true,
        ..ClusterOptions::default()
    })
    .expect("a throwaway cluster starts")
}

/// Runs a client program, panicking with its output when it fails.
fn run(program: &Path, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    assert!(
        output.status.success(),
        "{} {args:?} failed: {}",
        program.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The major version of a client program (`pg_dump (PostgreSQL) 15.12`).
fn program_major(program: &Path) -> i32 {
    let version = run(program, &["--version"]);
    version
        .split_whitespace()
        .find_map(|word| word.split('.').next()?.parse().ok())
        .unwrap_or(0)
}

/// Moves the transaction counter on by `n` transactions.
async fn burn_transactions(client: &Client, n: i64) {
    client
        .batch_execute(&format!(
            "DO $$ BEGIN FOR i IN 1..{n} LOOP PERFORM txid_current(); COMMIT; END LOOP; END $$"
        ))
        .await
        .expect("transactions burnt");
}

/// The number the next transaction will get (without taking one).
async fn next_txid(client: &Client) -> i64 {
    client
        .query_one(
            "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint",
            &[],
        )
        .await
        .expect("the next transaction number")
        .get(0)
}

/// One transaction by `actor`, returning PostgreSQL's own number for it.
async fn change_as(client: &Client, actor: &str, sql: &str) -> i64 {
    client
        .batch_execute(&format!(
            "BEGIN; SELECT pgtrail.set_context(actor_id => '{actor}', actor_name => '{actor}@example.com'); {sql}; \
             CREATE TEMP TABLE IF NOT EXISTS last_txid (txid bigint); DELETE FROM last_txid; \
             INSERT INTO last_txid SELECT txid_current(); COMMIT;"
        ))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    client
        .query_one("SELECT txid FROM last_txid", &[])
        .await
        .expect("the transaction's number")
        .get(0)
}

#[tokio::test]
async fn a_trail_restored_into_a_new_cluster_keeps_old_and_new_transactions_apart() {
    let old_server = fast_cluster();
    let pg_dump = old_server.program("pg_dump");
    let admin = connect_to(&old_server.url("postgres")).await;
    let server_major: i32 = admin
        .query_one("SELECT current_setting('server_version_num')::int / 10000", &[])
        .await
        .expect("server version")
        .get(0);
    if program_major(&pg_dump) < server_major {
        eprintln!(
            "skipped: {} cannot dump PostgreSQL {server_major}",
            pg_dump.display()
        );
        return;
    }
    admin
        .batch_execute("CREATE DATABASE shop")
        .await
        .expect("database");
    let mut old = connect_to(&old_server.url("shop")).await;
    // The old server has worked for a while: its numbers are well above a
    // new cluster's.
    burn_transactions(&old, 3000).await;
    old.batch_execute(SHOP).await.expect("schema");
    apply(&mut old, CONFIG).await;

    let mut old_txids = Vec::new();
    for (id, actor) in [(1, "alice"), (2, "alice"), (3, "carol")] {
        old_txids.push(
            change_as(
                &old,
                actor,
                &format!("INSERT INTO accounts VALUES ({id}, '{actor}', 10)"),
            )
            .await,
        );
    }
    let key = SignerKey::generate("shop.example.com/audit").expect("key");
    let first = integrity::seal(&mut old, &key, &mut |_| {}).await.expect("seal");
    assert_eq!((first.seal_id, first.appended), (Some(1), 3));
    // A change after the last seal travels unsealed.
    old_txids.push(change_as(&old, "dave", "UPDATE accounts SET balance = 11 WHERE id = 3").await);

    // Move the database: roles first, then the dump.
    let new_server = fast_cluster();
    let dir = tempfile::tempdir().expect("temp dir");
    let roles = dir.path().join("roles.sql");
    let dump = dir.path().join("shop.dump");
    let old_admin_url = old_server.url("postgres");
    std::fs::write(
        &roles,
        run(
            &old_server.program("pg_dumpall"),
            &["--roles-only", "-d", &old_admin_url],
        ),
    )
    .expect("roles written");
    run(
        &pg_dump,
        &["-Fc", "-f", &dump.display().to_string(), &old_server.url("shop")],
    );
    let new_admin_url = new_server.url("postgres");
    // (The role the new cluster already has fails to be created again: fine.)
    let _ = Command::new(new_server.program("psql"))
        .args(["-q", "-d", &new_admin_url, "-f", &roles.display().to_string()])
        .output();
    let new_admin = connect_to(&new_admin_url).await;
    new_admin
        .batch_execute("CREATE DATABASE shop")
        .await
        .expect("database");
    run(
        &new_server.program("pg_restore"),
        &[
            "--exit-on-error",
            "-d",
            &new_server.url("shop"),
            &dump.display().to_string(),
        ],
    );
    drop(old);
    drop(old_server);

    let mut new = connect_to(&new_server.url("shop")).await;
    let trail_max: i64 = column(&new, "SELECT max(txid) FROM pgtrail.change").await[0];
    assert!(
        next_txid(&new).await < trail_max,
        "the new cluster's transaction numbers start below the trail's"
    );
    // Before anything is written here, the moved trail verifies, and knows
    // one change is not sealed yet.
    let options = VerifyOptions {
        public_key: Some(key.verifier()),
        checkpoint: None,
        ..Default::default()
    };
    let report = integrity::verify(&mut new, &options).await.expect("verify");
    assert!(report.intact(), "{:?}", report.problems);
    assert_eq!(report.unsealed, 1);

    // New transactions whose own numbers are exactly those of the old ones.
    for (i, old_txid) in old_txids.iter().take(3).enumerate() {
        while next_txid(&new).await < *old_txid {
            burn_transactions(&new, (old_txid - next_txid(&new).await).max(1)).await;
        }
        let id = 10 + i;
        let txid = change_as(
            &new,
            "bob",
            &format!("INSERT INTO accounts VALUES ({id}, 'bob', 5)"),
        )
        .await;
        assert_eq!(txid, *old_txid, "the new cluster reuses the old cluster's number");
    }
    change_as(&new, "bob", "UPDATE accounts SET balance = 12 WHERE id = 1").await;

    // Every new change carries bob's context, under a number no old
    // transaction has; every old one keeps its own.
    let actors: Vec<(i64, String, String)> = new
        .query(
            "SELECT txid, actor_id, coalesce(new_values->>'owner', '') FROM pgtrail.changes ORDER BY id",
            &[],
        )
        .await
        .expect("changes")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(actors.len(), 8, "{actors:?}");
    let old_changes = &actors[..4];
    let new_changes = &actors[4..];
    for ((txid, actor, _), old_txid) in old_changes.iter().zip(&old_txids) {
        assert_eq!(txid, old_txid);
        assert_ne!(actor, "bob");
    }
    for (txid, actor, _) in new_changes {
        assert_eq!(actor, "bob", "{actors:?}");
        assert!(
            !old_txids.contains(txid),
            "new change numbered like an old one: {actors:?}"
        );
    }
    // One transaction's changes (`pgtrail tx`) are that transaction's only.
    for (txid, _, _) in old_changes.iter().chain(new_changes) {
        let actors: Vec<String> = column(
            &new,
            &format!("SELECT DISTINCT actor_id FROM pgtrail.changes WHERE txid = {txid}"),
        )
        .await;
        assert_eq!(actors.len(), 1, "transaction {txid} mixes {actors:?}");
    }
    assert_eq!(count(&new, "SELECT count(*) FROM pgtrail.era").await, 2);
    // The row's history reads in order, each change with its own actor.
    let history: Vec<String> = column(
        &new,
        "SELECT actor_id FROM pgtrail.history('accounts', '{\"id\": 1}') ORDER BY changed_at",
    )
    .await;
    assert_eq!(history, ["alice", "bob"]);

    // The log goes on from where the old server left it.
    let second = integrity::seal(&mut new, &key, &mut |_| {}).await.expect("seal");
    assert_eq!((second.seal_id, second.appended), (Some(2), 5));
    let report = integrity::verify(&mut new, &options).await.expect("verify");
    assert!(report.intact(), "{:?}", report.problems);
    assert_eq!((report.tree_size, report.unsealed), (8, 0));
}
