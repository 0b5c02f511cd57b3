//! A WAL-mode trail answers every operation a trigger-mode one does (issue
//! 15): a team that switched `mode = "wal"` still reconciles the live rows
//! with the trail, reverts a bad batch script by its transaction, seals,
//! erases a customer's values for a data-protection request and verifies;
//! and when the server crashes and restarts, or is stopped and started in
//! order, under a running follower, the trail still holds each committed
//! change once, in order.

use pgtrail::config::Config;
use pgtrail::follow::FollowOptions;
use pgtrail::integrity::crypto::SignerKey;
use pgtrail::integrity::{self, VerifyOptions, reconcile};
use pgtrail::revert::apply::{ApplyOptions, apply};
use pgtrail::revert::plan::plan;
use pgtrail::revert::{Operation, Request, Selector};
use pgtrail_testkit::{Cluster, ClusterOptions, connect_to};
use serde_json::json;
use tokio_postgres::Client;

use crate::support::tx;
use crate::wal::{follow_once, logical_cluster};

const SHOP: &str = "
    CREATE TABLE customers (id integer PRIMARY KEY, email text NOT NULL, name text, password_hash text);
";

const CONFIG: &str =
    "[capture]\nmode = \"wal\"\n\n[tables.\"public.customers\"]\nredact_columns = [\"password_hash\"]\n";

async fn shop(cluster: &Cluster, name: &str) -> Client {
    let admin = connect_to(&cluster.url("postgres")).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("database created");
    let mut client = connect_to(&cluster.url(name)).await;
    client.batch_execute(SHOP).await.expect("schema");
    let config = Config::parse(CONFIG, "pgtrail.toml").expect("config parses");
    pgtrail::plan::apply(&mut client, &config).await.expect("apply");
    client
}

async fn emails(client: &Client) -> Vec<(i32, String)> {
    client
        .query("SELECT id, email FROM customers ORDER BY id", &[])
        .await
        .expect("customers")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn a_wal_mode_trail_is_reconciled_reverted_sealed_erased_and_verified() {
    let cluster = logical_cluster();
    let mut client = shop(&cluster, "shop_ops").await;
    tx(
        &client,
        "signup",
        "INSERT INTO customers VALUES (1, 'ann@example.com', 'Ann', 'h1'), (2, 'bob@example.com', 'Bob', 'h2'),
                                      (3, 'cy@example.com', 'Cy', 'h3'), (4, 'di@example.com', 'Di', 'h4')",
    )
    .await;
    let before = emails(&client).await;
    let script = tx(
        &client,
        "batch_script@system",
        "UPDATE customers SET email = lower(name) || '@broken.test' WHERE id <= 3",
    )
    .await;
    assert_eq!(follow_once(&mut client).await.changes, 7);

    // Reconcile: the trail and the live rows agree.
    let report = reconcile(&client, None).await.expect("reconcile");
    assert_eq!(report.tables, vec![("public.customers".to_string(), false)]);
    assert!(report.rows.is_empty(), "{:?}", report.rows);

    // A change the trail never got: someone moved the slot past it (the
    // commit flushed first: a slot moves no further than the flushed WAL).
    client
        .batch_execute("SET synchronous_commit = on; UPDATE customers SET name = 'Hidden' WHERE id = 4")
        .await
        .expect("update");
    client
        .execute(
            "SELECT pg_replication_slot_advance(pgtrail.wal_slot(), pg_current_wal_insert_lsn())",
            &[],
        )
        .await
        .expect("slot advanced");
    assert_eq!(follow_once(&mut client).await.changes, 0);
    let report = reconcile(&client, None).await.expect("reconcile");
    let found: Vec<(String, serde_json::Value, String, Option<Vec<String>>)> = report
        .rows
        .iter()
        .map(|r| (r.table.clone(), r.pk.clone(), r.problem.clone(), r.fields.clone()))
        .collect();
    assert_eq!(
        found,
        vec![(
            "public.customers".to_string(),
            json!({"id": 4}),
            "unrecorded update".to_string(),
            Some(vec!["name".to_string()])
        )]
    );

    // Revert the batch script by its transaction, found in the WAL-mode trail.
    let request = Request::new(Selector::Transactions(vec![script]));
    let planned = plan(&client, &request).await.expect("plan");
    let statements: Vec<_> = planned.statements().collect();
    assert_eq!(statements.len(), 1, "{statements:?}");
    assert_eq!(statements[0].operation, Operation::Update);
    assert_eq!(statements[0].rows, Some(3));
    let options = ApplyOptions {
        reason: "undo the broken batch".into(),
        actor: Some("ops@example.com".into()),
        expected: Some(&planned),
    };
    let applied = apply(&mut client, &request, &options).await.expect("revert");
    assert_eq!(emails(&client).await, before, "the emails are back");
    // The revert is captured like any change: through the slot.
    assert_eq!(follow_once(&mut client).await.changes, 3);
    let reverted = client
        .query(
            "SELECT actor_name, reason, count(*) FROM pgtrail.changes WHERE txid = $1 GROUP BY 1, 2",
            &[&applied.txid],
        )
        .await
        .expect("the revert's changes");
    assert_eq!(reverted.len(), 1);
    assert_eq!(
        (
            reverted[0].get::<_, Option<String>>(0),
            reverted[0]
                .get::<_, Option<String>>(1)
                .is_some_and(|r| r.contains("undo the broken batch")),
            reverted[0].get::<_, i64>(2)
        ),
        (Some("ops@example.com".to_string()), true, 3)
    );

    // Seal, erase Ann for a data-protection request, verify.
    let key = SignerKey::generate("shop.example.com/audit").expect("key");
    let sealed = integrity::seal(&mut client, &key, &mut |_| {})
        .await
        .expect("seal");
    assert_eq!(sealed.appended, 10);
    let erased = integrity::erase(
        &mut client,
        "public",
        "customers",
        &json!({"id": 1}),
        None,
        "GDPR request 17",
    )
    .await
    .expect("erase");
    assert_eq!(erased.change_ids.len(), 3, "insert, batch update, revert");
    assert_eq!(erased.sealed, 3);
    let left: i64 = client
        .query_one(
            "SELECT count(*) FROM pgtrail.change
             WHERE concat(old_values, new_values) LIKE '%ann@example.com%' OR concat(old_values, new_values) LIKE '%ann@broken%'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(left, 0, "Ann's values are gone from the trail");
    let report = integrity::verify(
        &mut client,
        &VerifyOptions {
            public_key: Some(key.verifier()),
            checkpoint: Some(sealed.note),
            ..Default::default()
        },
    )
    .await
    .expect("verify");
    assert!(report.intact(), "{:?}", report.problems);
}

/// A new connection, retried until the server takes it (it refuses
/// connections while it recovers from a crash).
async fn connect_retrying(url: &str) -> Client {
    for _ in 0..600 {
        if let Ok((client, connection)) = tokio_postgres::connect(url, tokio_postgres::NoTls).await {
            tokio::spawn(connection);
            if client.simple_query("SELECT 1").await.is_ok() {
                return client;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the server did not come back");
}

#[tokio::test]
async fn the_server_crashing_under_a_running_follower_loses_and_repeats_nothing() {
    // Durable (fsync, synchronous commit): a commit the writer saw survives
    // the crash.
    let cluster = Cluster::start(ClusterOptions {
        fast: false,
        settings: vec![
            ("wal_level".into(), "logical".into()),
            ("max_replication_slots".into(), "10".into()),
        ],
        ..ClusterOptions::default()
    })
    .expect("a throwaway cluster with wal_level = logical starts");
    let admin = connect_to(&cluster.url("postgres")).await;
    admin
        .batch_execute("CREATE DATABASE crashy")
        .await
        .expect("database");
    let url = cluster.url("crashy");
    let mut client = connect_to(&url).await;
    client
        .batch_execute("CREATE TABLE t (id integer PRIMARY KEY, n integer)")
        .await
        .expect("schema");
    let config = Config::parse("[capture]\nmode = \"wal\"\n", "pgtrail.toml").expect("config");
    pgtrail::plan::apply(&mut client, &config).await.expect("apply");
    drop(client);

    const N: i32 = 400;
    let writer = {
        let url = url.clone();
        tokio::spawn(async move {
            let mut client = connect_retrying(&url).await;
            let mut i = 1;
            while i <= N {
                let sql = format!(
                    "BEGIN; SELECT pgtrail.set_context(actor_id => '{i}');
                     INSERT INTO t VALUES ({i}, 0) ON CONFLICT DO NOTHING;
                     UPDATE t SET n = n + 1 WHERE id = {i}; COMMIT;"
                );
                match client.batch_execute(&sql).await {
                    Ok(()) => i += 1,
                    // The crash: whether it committed or not, the retry
                    // leaves one row with n >= 1.
                    Err(_) => client = connect_retrying(&url).await,
                }
            }
        })
    };
    let follower = {
        let url = url.clone();
        tokio::spawn(async move {
            // As systemd runs it: restarted whenever it stops.
            let options = FollowOptions {
                batch_size: 40,
                poll_interval: std::time::Duration::from_millis(20),
                replication: pgtrail::connect::Target::parse(&url, "the test")
                    .expect("the URL")
                    .replication(),
                ..FollowOptions::default()
            };
            assert!(options.replication.is_some(), "the follower streams the slot");
            loop {
                let mut client = connect_retrying(&url).await;
                let _ = pgtrail::follow::run(&mut client, &options, std::future::pending()).await;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        })
    };

    // Crash the server twice while both work: SIGKILL of a backend makes
    // the postmaster end every session and recover from the WAL; the slot
    // comes back where it was last saved, not where the follower left it.
    let mut crashes = 0;
    for _ in 0..2 {
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        let watcher = connect_retrying(&cluster.url("postgres")).await;
        let pid: Option<i32> = watcher
            .query(
                "SELECT pid FROM pg_stat_activity WHERE datname = 'crashy' AND backend_type = 'client backend'
                 ORDER BY backend_start DESC LIMIT 1",
                &[],
            )
            .await
            .expect("sessions")
            .first()
            .map(|r| r.get(0));
        if let Some(pid) = pid {
            let status = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .expect("kill runs");
            assert!(status.success(), "SIGKILL of backend {pid}");
            crashes += 1;
        }
    }
    writer.await.expect("the writer finished");
    follower.abort();
    let _ = follower.await;

    // What is left in the slot, by a follower run as cron runs it.
    let mut client = connect_when_alone(&url).await;
    follow_once(&mut client).await;
    assert_committed_writes_once_in_order(&client, N, "op = 'INSERT'", &format!("after {crashes} crashes"))
        .await;
    assert!(crashes >= 1, "the server crashed at least once");
}

/// The server stopped in order and started again (twice) under a running
/// follower that streams the slot: a fast shutdown ends the follower's
/// sessions (its walsender first waits for it to confirm what it was sent),
/// the follower starts again as systemd would, and the trail holds every
/// committed change once, in commit order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_stopped_and_started_under_a_running_follower_loses_and_repeats_nothing() {
    let mut cluster = logical_cluster();
    let admin = connect_to(&cluster.url("postgres")).await;
    admin
        .batch_execute("CREATE DATABASE restarted")
        .await
        .expect("database");
    drop(admin);
    let url = cluster.url("restarted");
    let mut client = connect_to(&url).await;
    client
        .batch_execute("CREATE TABLE t (id integer PRIMARY KEY, n integer)")
        .await
        .expect("schema");
    let config = Config::parse("[capture]\nmode = \"wal\"\n", "pgtrail.toml").expect("config");
    pgtrail::plan::apply(&mut client, &config).await.expect("apply");
    drop(client);

    const N: i32 = 600;
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicI32::new(0));
    let writer = {
        let url = url.clone();
        let progress = progress.clone();
        tokio::spawn(async move {
            let mut client = connect_retrying(&url).await;
            let mut i = 1;
            while i <= N {
                let sql = format!(
                    "BEGIN; SELECT pgtrail.set_context(actor_id => '{i}');
                     INSERT INTO t VALUES ({i}, 0) ON CONFLICT DO NOTHING;
                     UPDATE t SET n = n + 1 WHERE id = {i}; COMMIT;"
                );
                match client.batch_execute(&sql).await {
                    Ok(()) => {
                        progress.store(i, std::sync::atomic::Ordering::Relaxed);
                        i += 1;
                    }
                    Err(_) => client = connect_retrying(&url).await,
                }
            }
        })
    };
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let follower = {
        let url = url.clone();
        let runs = runs.clone();
        tokio::spawn(async move {
            let options = FollowOptions {
                batch_size: 40,
                replication: pgtrail::connect::Target::parse(&url, "the test")
                    .expect("the URL")
                    .replication(),
                ..FollowOptions::default()
            };
            loop {
                let mut client = connect_retrying(&url).await;
                runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let _ = pgtrail::follow::run(&mut client, &options, std::future::pending()).await;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        })
    };

    // Restarted at a third and at two thirds of the writes, the follower
    // streaming all along.
    for third in 1..=2 {
        while progress.load(std::sync::atomic::Ordering::Relaxed) < N * third / 3 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(
            !writer.is_finished(),
            "the server restarts while the application writes"
        );
        tokio::task::block_in_place(|| cluster.restart()).expect("the server stops and starts again");
    }
    writer.await.expect("the writer finished");
    // The follower's run ends with each restart; it starts again once the
    // server takes connections.
    for _ in 0..200 {
        if runs.load(std::sync::atomic::Ordering::Relaxed) >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    follower.abort();
    let _ = follower.await;
    assert!(
        runs.load(std::sync::atomic::Ordering::Relaxed) >= 3,
        "the follower was started again after each restart"
    );

    let mut client = connect_when_alone(&url).await;
    follow_once(&mut client).await;
    // A commit whose reply the shutdown cut off is retried: t's counts
    // say how many updates committed.
    assert_committed_writes_once_in_order(&client, N, "true", "after the restarts").await;
}

/// A session on `url` once every other session of its database has ended:
/// an aborted follower's sessions (its lock, its walsender) may outlive its
/// task a moment, and `follow --once` would find the follower lock taken.
/// (A session that a crash restart still ends is replaced.)
async fn connect_when_alone(url: &str) -> Client {
    let mut client = connect_retrying(url).await;
    for _ in 0..600 {
        let others = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .await;
        match others {
            Ok(row) if row.get::<_, i64>(0) == 0 => break,
            Ok(_) => {}
            Err(_) => client = connect_retrying(url).await,
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    client
}

/// The trail of the writers above (transaction `i` inserts row `i` and adds
/// one to its `n`, as actor `i`; `N` of them): every insert once, every
/// committed update once (t's sum of `n` says how many committed), each
/// with its actor where `actor_checked` (an SQL condition on the change)
/// holds, and the inserts in commit order.
async fn assert_committed_writes_once_in_order(
    client: &tokio_postgres::Client,
    n: i32,
    actor_checked: &str,
    what: &str,
) {
    let row = client
        .query_one(
            &format!(
                "SELECT count(*) FILTER (WHERE op = 'INSERT'), count(*) FILTER (WHERE op = 'UPDATE'),
                        count(*) - count(DISTINCT (op, pk, txid)),
                        count(*) FILTER (WHERE {actor_checked} AND actor_id IS DISTINCT FROM pk ->> 'id')
                 FROM pgtrail.changes"
            ),
            &[],
        )
        .await
        .expect("the trail reads");
    let live: i64 = client
        .query_one("SELECT sum(n) FROM t", &[])
        .await
        .expect("t")
        .get::<_, Option<i64>>(0)
        .unwrap_or(0);
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2),
            row.get::<_, i64>(3)
        ),
        (i64::from(n), live, 0, 0),
        "every insert once with its actor, every committed update once ({what})"
    );
    // In commit order: the inserts' keys rise with the trail's ids.
    let out_of_order: i64 = client
        .query_one(
            "SELECT count(*) FROM (
                 SELECT (pk ->> 'id')::int AS k, lag((pk ->> 'id')::int) OVER (ORDER BY id) AS before
                 FROM pgtrail.changes WHERE op = 'INSERT') AS s
             WHERE k < before",
            &[],
        )
        .await
        .expect("order")
        .get(0);
    assert_eq!(out_of_order, 0, "in commit order ({what})");
}
