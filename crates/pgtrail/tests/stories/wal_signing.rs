//! WAL mode's context messages are signed (issue 15): any role may call
//! `pg_logical_emit_message`, so a role that may only write an audited table
//! could emit a `pgtrail` message of its own claiming another actor,
//! database user or client, or copy a genuine one from another transaction.
//! The follower takes neither: the change is recorded with the facts the
//! database knows, or with no context, never the forged ones. Trigger mode
//! reads those facts from the session and cannot be fooled; WAL mode must
//! be as trustworthy.

use std::str::FromStr;

use pgtrail::config::Config;
use pgtrail::follow::FollowReport;
use pgtrail_testkit::{Cluster, connect_to};
use tokio_postgres::{Client, NoTls};

use crate::wal::{follow_once, follow_once_over_sql, logical_cluster};

/// What a forger claims.
const FORGED: &str = r#"{"ctx": 0, "actor_id": "ceo", "actor_name": "ceo@example.com", "reason": "approved",
    "db_user": "postgres", "client_addr": "10.9.9.9", "client_port": 5432, "backend_pid": 1}"#;

/// A database with `scratch` in WAL mode, and a login role that may write
/// `scratch` and nothing of pgtrail's.
async fn database(cluster: &Cluster, name: &str) -> (Client, Client) {
    let admin = connect_to(&cluster.url("postgres")).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("database created");
    let mut client = connect_to(&cluster.url(name)).await;
    client
        .batch_execute("CREATE TABLE scratch (id integer PRIMARY KEY, v text)")
        .await
        .expect("schema");
    let config = Config::parse("[capture]\nmode = \"wal\"\n", "pgtrail.toml").expect("config parses");
    pgtrail::plan::apply(&mut client, &config).await.expect("apply");
    let role = plain_role(cluster, &client, name).await;
    (client, role)
}

/// Role `<database>_app`: LOGIN, SELECT, INSERT and UPDATE on `scratch`.
async fn plain_role(cluster: &Cluster, client: &Client, database: &str) -> Client {
    let role = format!("{database}_app");
    client
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN;
             GRANT SELECT, INSERT, UPDATE ON scratch TO {role};"
        ))
        .await
        .expect("role created");
    let mut config = tokio_postgres::Config::from_str(&cluster.url(database)).expect("url parses");
    config.user(&role);
    let (app, connection) = config.connect(NoTls).await.expect("the role connects");
    tokio::spawn(connection);
    app
}

/// Per change of `scratch`, in order: its key, actor, database user and
/// client address as the trail has them.
async fn facts(client: &Client) -> Vec<(String, Option<String>, Option<String>, Option<String>)> {
    client
        .query(
            "SELECT pk ->> 'id', actor_id, db_user, host(client_addr)
             FROM pgtrail.changes WHERE table_name = 'scratch' ORDER BY id",
            &[],
        )
        .await
        .expect("the trail reads")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

/// A plain role emits forged `pgtrail` messages in its own transactions:
/// after the context trigger's (so that it would be the last before the
/// next change), with a number of its own, with a made-up signature, and
/// alone (a transaction-local mark keeps the trigger from emitting). The
/// trail has the role's true facts, or no context, and the follower counts
/// each forged message; streaming the slot and reading it over SQL alike.
#[tokio::test]
async fn a_plain_role_cannot_forge_the_context_of_its_changes() {
    let cluster = logical_cluster();
    for over_sql in [false, true] {
        let name = if over_sql { "forged_sql" } else { "forged_stream" };
        let (mut client, app) = database(&cluster, name).await;
        let numbered = FORGED.replace(r#""ctx": 0"#, r#""ctx": 7"#);
        let made_up = format!("{}{FORGED}", "ab".repeat(32));
        app.batch_execute(&format!(
            "BEGIN;
             INSERT INTO scratch VALUES (1, 'a');
             SELECT pg_logical_emit_message(true, 'pgtrail', '{FORGED}');
             UPDATE scratch SET v = 'b' WHERE id = 1;
             COMMIT;
             BEGIN;
             INSERT INTO scratch VALUES (2, 'a');
             SELECT pg_logical_emit_message(true, 'pgtrail', '{numbered}');
             UPDATE scratch SET v = 'b' WHERE id = 2;
             SELECT pg_logical_emit_message(true, 'pgtrail', '{made_up}');
             UPDATE scratch SET v = 'c' WHERE id = 2;
             COMMIT;
             BEGIN;
             SELECT set_config('pgtrail.emitted', 'c:' || txid_current(), true);
             SELECT pg_logical_emit_message(true, 'pgtrail', '{FORGED}');
             INSERT INTO scratch VALUES (3, 'a');
             COMMIT;"
        ))
        .await
        .expect("the role writes scratch and emits messages (anyone may)");
        let report: FollowReport = if over_sql {
            follow_once_over_sql(&mut client).await
        } else {
            follow_once(&mut client).await
        };
        assert_eq!(report.changes, 6, "{name}: every change is recorded");
        assert_eq!(
            report.rejected_messages, 4,
            "{name}: each forged message is counted"
        );
        let role = Some(format!("{name}_app"));
        let true_facts = |id: &str| (id.to_string(), None, role.clone(), Some("127.0.0.1".to_string()));
        assert_eq!(
            facts(&client).await,
            vec![
                true_facts("1"),
                true_facts("1"),
                true_facts("2"),
                true_facts("2"),
                true_facts("2"),
                // The only message was forged: no context at all.
                ("3".to_string(), None, Some("(unknown)".to_string()), None),
            ],
            "{name}: the trail has the role's own facts, never the forged ones"
        );
        let forged: i64 = client
            .query_one(
                "SELECT count(*) FROM pgtrail.transaction
                 WHERE actor_id IS NOT NULL OR db_user = 'postgres' OR reason IS NOT NULL",
                &[],
            )
            .await
            .expect("contexts read")
            .get(0);
        assert_eq!(forged, 0, "{name}: no forged context is recorded");
    }
}

/// A genuine, signed context message (here: the one of a transaction that
/// set actor "ceo", read from the slot) copied into another transaction
/// does not verify there: the signature names the transaction it was made
/// for. The original transaction keeps its context.
#[tokio::test]
async fn a_signed_message_copied_into_another_transaction_is_ignored() {
    let cluster = logical_cluster();
    let (mut client, app) = database(&cluster, "replayed").await;
    client
        .batch_execute(
            "BEGIN;
             SET LOCAL synchronous_commit = on; -- in the slot once committed
             SELECT pgtrail.set_context(actor_id => 'ceo', reason => 'approved');
             INSERT INTO scratch VALUES (1, 'a');
             COMMIT;",
        )
        .await
        .expect("a transaction with a context");
    // Its message as the slot holds it (pgoutput 'M': kind, flags, LSN,
    // the prefix 'pgtrail' and its NUL, length, then the content).
    let messages: Vec<Vec<u8>> = client
        .query(
            "SELECT data FROM pg_logical_slot_peek_binary_changes(pgtrail.wal_slot(), NULL, NULL,
                 'proto_version', '1', 'publication_names', 'pgtrail', 'messages', 'true')",
            &[],
        )
        .await
        .expect("the slot reads")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let kinds: Vec<char> = messages.iter().map(|m| char::from(m[0])).collect();
    let copied: Vec<u8> = match messages.iter().find(|m| m[0] == b'M') {
        Some(m) => m[22..].to_vec(),
        None => panic!("a context message in the slot: {kinds:?}"),
    };
    let text = String::from_utf8(copied.clone()).expect("UTF-8");
    assert!(
        text.len() > 64 && text[..64].bytes().all(|b| b.is_ascii_hexdigit()) && text[64..].starts_with('{'),
        "64 hex digits, then the JSON: {text}"
    );
    app.execute(
        "SELECT pg_logical_emit_message(true, 'pgtrail', $1::bytea)",
        &[&copied],
    )
    .await
    .expect("an autocommit message: a transaction of its own, without changes");
    app.batch_execute("BEGIN; INSERT INTO scratch VALUES (2, 'a');")
        .await
        .expect("writes");
    app.execute(
        "SELECT pg_logical_emit_message(true, 'pgtrail', $1::bytea)",
        &[&copied],
    )
    .await
    .expect("the copy emitted after the trigger's message");
    app.batch_execute("UPDATE scratch SET v = 'b' WHERE id = 2; COMMIT;")
        .await
        .expect("writes");
    let report = follow_once(&mut client).await;
    assert_eq!(report.rejected_messages, 2, "both copies");
    let role = Some("replayed_app".to_string());
    let local = Some("127.0.0.1".to_string());
    assert_eq!(
        facts(&client).await,
        vec![
            (
                "1".to_string(),
                Some("ceo".to_string()),
                Some("postgres".to_string()),
                local.clone()
            ),
            ("2".to_string(), None, role.clone(), local.clone()),
            ("2".to_string(), None, role, local),
        ]
    );
}

/// An installation upgraded from 0.8.0 may hold unsigned messages in its
/// slot, written before the upgrade: they keep their context. The upgrade
/// records the WAL position from which every message is signed; an unsigned
/// message after it is ignored.
#[tokio::test]
async fn unsigned_messages_from_before_the_upgrade_keep_their_context() {
    let cluster = logical_cluster();
    let admin = connect_to(&cluster.url("postgres")).await;
    admin
        .batch_execute("CREATE DATABASE signing_upgrade")
        .await
        .expect("database created");
    let mut client = connect_to(&cluster.url("signing_upgrade")).await;
    let released = include_str!("../../../capture/sql/released/0.8.0.sql");
    // (Each its own transaction: a slot is not created in one that wrote.)
    for step in [
        format!("CREATE TABLE scratch (id integer PRIMARY KEY, v text); BEGIN; {released} COMMIT;"),
        "SELECT pgtrail.attach('scratch', '{id}', 'primary_key', p_mode => 'wal')".to_string(),
        "SELECT pg_create_logical_replication_slot(pgtrail.wal_slot(), 'pgoutput')".to_string(),
        "BEGIN;
         SELECT pgtrail.set_context(actor_id => 'before');
         INSERT INTO scratch VALUES (1, 'a');
         COMMIT;"
            .to_string(),
    ] {
        client
            .batch_execute(&step)
            .await
            .unwrap_or_else(|e| panic!("0.8.0 installs, attaches in WAL mode and writes: {e:?}"));
    }
    let config = Config::parse("[capture]\nmode = \"wal\"\n", "pgtrail.toml").expect("config parses");
    pgtrail::plan::apply(&mut client, &config)
        .await
        .expect("apply upgrades");
    let app = plain_role(&cluster, &client, "signing_upgrade").await;
    client
        .batch_execute(
            "BEGIN;
             SELECT pgtrail.set_context(actor_id => 'after');
             INSERT INTO scratch VALUES (2, 'a');
             COMMIT;",
        )
        .await
        .expect("writes after the upgrade");
    app.batch_execute(&format!(
        "BEGIN;
         INSERT INTO scratch VALUES (3, 'a');
         SELECT pg_logical_emit_message(true, 'pgtrail', '{FORGED}');
         UPDATE scratch SET v = 'b' WHERE id = 3;
         COMMIT;"
    ))
    .await
    .expect("an unsigned message after the upgrade");
    let report = follow_once(&mut client).await;
    assert_eq!(report.rejected_messages, 1);
    let actors: Vec<Option<String>> = facts(&client).await.into_iter().map(|f| f.1).collect();
    assert_eq!(
        actors,
        vec![Some("before".to_string()), Some("after".to_string()), None, None]
    );
}

/// A role that sets the context trigger's mark itself before its first
/// write (any role may set a setting) keeps the trigger from emitting: its
/// changes reach the trail with no context at all, which trigger mode never
/// allows. Plain SQL cannot stop the setting, so the follower notices: the
/// transaction's changes came before any message that verifies in it. It
/// is counted (once, whatever the follower's restarts), recorded in
/// `pgtrail.wal_unsigned`, and `pgtrail check` shows it; a transaction
/// whose trigger emitted, or that set its context properly, is not.
#[tokio::test]
async fn a_transaction_that_keeps_the_context_trigger_quiet_is_flagged() {
    let cluster = logical_cluster();
    for over_sql in [false, true] {
        let name = if over_sql { "quiet_sql" } else { "quiet_stream" };
        let (mut client, app) = database(&cluster, name).await;
        app.batch_execute(
            "BEGIN;
             INSERT INTO scratch VALUES (1, 'a');
             COMMIT;
             BEGIN;
             SELECT pgtrail.set_context(actor_id => 'alice');
             UPDATE scratch SET v = 'b' WHERE id = 1;
             COMMIT;
             BEGIN;
             SELECT set_config('pgtrail.emitted', 'c:' || txid_current(), true);
             INSERT INTO scratch VALUES (2, 'a');
             UPDATE scratch SET v = 'b' WHERE id = 2;
             COMMIT;
             BEGIN;
             SELECT set_config('pgtrail.emitted', 'c:' || txid_current(), true);
             INSERT INTO scratch VALUES (3, 'a');
             -- A context set after the first write is emitted: the change
             -- before it stays unsigned.
             SELECT pgtrail.set_context(actor_id => 'bob');
             UPDATE scratch SET v = 'b' WHERE id = 3;
             COMMIT;",
        )
        .await
        .expect("the role writes scratch, keeping the trigger quiet twice");
        let report: FollowReport = if over_sql {
            follow_once_over_sql(&mut client).await
        } else {
            follow_once(&mut client).await
        };
        assert_eq!(report.changes, 6, "{name}: every change is recorded");
        assert_eq!(report.rejected_messages, 0, "{name}: nothing forged was emitted");
        assert_eq!(
            report.unsigned_transactions, 2,
            "{name}: the two quiet transactions are counted"
        );
        let recorded: Vec<(i32, Vec<String>)> = client
            .query(
                "SELECT u.changes, array_agg(c.pk ->> 'id' ORDER BY c.id)
                 FROM pgtrail.wal_unsigned AS u JOIN pgtrail.changes AS c USING (txid)
                 GROUP BY u.txid, u.changes ORDER BY u.txid",
                &[],
            )
            .await
            .expect("pgtrail.wal_unsigned reads")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(
            recorded,
            vec![
                (2, vec!["2".to_string(), "2".to_string()]),
                (1, vec!["3".to_string(), "3".to_string()]),
            ],
            "{name}: each quiet transaction, with how many changes came before any signed message"
        );
        assert_eq!(
            facts(&client).await.last().map(|f| f.1.clone()),
            Some(Some("bob".to_string())),
            "{name}: the context set after the first write is recorded"
        );
        let summary = pgtrail::follow::unsigned::summary(&client)
            .await
            .expect("the summary reads")
            .expect("an installation with pgtrail.wal_unsigned");
        assert_eq!((summary.transactions, summary.changes), (2, 3), "{name}");

        // Followed again: nothing new, nothing counted twice.
        app.batch_execute("INSERT INTO scratch VALUES (4, 'a')")
            .await
            .expect("a write with its context");
        let again = follow_once(&mut client).await;
        assert_eq!((again.changes, again.unsigned_transactions), (1, 0), "{name}");
        let rows: i64 = client
            .query_one("SELECT count(*) FROM pgtrail.wal_unsigned", &[])
            .await
            .expect("counted")
            .get(0);
        assert_eq!(rows, 2, "{name}");
    }
}
