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
             SELECT set_config('pgtrail.emitted', txid_current()::text, true);
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
    upgraded_from_0_8_0(&mut client, &[]).await;
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
             SELECT set_config('pgtrail.emitted', txid_current()::text, true);
             INSERT INTO scratch VALUES (2, 'a');
             UPDATE scratch SET v = 'b' WHERE id = 2;
             COMMIT;
             BEGIN;
             SELECT set_config('pgtrail.emitted', txid_current()::text, true);
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

/// The problems `pgtrail check` lists about ignored context messages.
async fn rejected_problems(client: &Client) -> Vec<pgtrail::plan::Problem> {
    let config = Config::parse("[capture]\nmode = \"wal\"\n", "pgtrail.toml").expect("config parses");
    let (_, _, _, problems) = pgtrail::plan::inspect(client, &config).await.expect("inspect");
    problems
        .into_iter()
        .filter(|p| p.kind() == "wal_messages_rejected")
        .collect()
}

/// `app` emits a forged message by hand in a transaction of its own that
/// writes nothing; returns that transaction's id as the trail numbers it.
async fn forge_alone(app: &Client) -> i64 {
    app.batch_execute("BEGIN").await.expect("begins");
    app.execute(
        &format!("SELECT pg_logical_emit_message(true, 'pgtrail', '{FORGED}')"),
        &[],
    )
    .await
    .expect("anyone may emit");
    let txid: i64 = app
        .query_one("SELECT txid_current()", &[])
        .await
        .expect("txid")
        .get(0);
    app.batch_execute("COMMIT").await.expect("commits");
    txid
}

/// Operations (issue 15): what the follower ignored does not stay in its
/// log. Each forged message is counted with the batch that read it, the
/// last one described (its transaction, its position); `pgtrail check`
/// reports them until someone acknowledges them, then only later ones. A
/// batch written again after a crash counts nothing twice. Streaming and
/// over SQL alike.
#[tokio::test]
async fn check_reports_forged_messages_until_they_are_acknowledged() {
    let cluster = logical_cluster();
    let (mut client, app) = database(&cluster, "rejected").await;
    assert!(rejected_problems(&client).await.is_empty(), "nothing ignored yet");

    app.batch_execute(&format!(
        "BEGIN;
         INSERT INTO scratch VALUES (1, 'a');
         SELECT pg_logical_emit_message(true, 'pgtrail', '{FORGED}');
         UPDATE scratch SET v = 'b' WHERE id = 1;
         COMMIT;"
    ))
    .await
    .expect("a forged message among changes");
    let alone = forge_alone(&app).await;
    let report = follow_once(&mut client).await;
    assert_eq!(report.rejected_messages, 2);
    let era: i64 = client
        .query_one("SELECT pgtrail._era_now()::bigint << 48", &[])
        .await
        .expect("era")
        .get(0);
    let problems = rejected_problems(&client).await;
    match problems.as_slice() {
        [
            pgtrail::plan::Problem::WalMessagesRejected {
                count: 2,
                last_txid: Some(txid),
                last_lsn: Some(_),
                last_reason: Some(reason),
            },
        ] => {
            assert_eq!(
                *txid,
                alone + era,
                "the last one: the transaction that wrote nothing"
            );
            assert_eq!(reason, "not signed");
        }
        other => panic!("check reports the two forged messages: {other:?}"),
    }
    let said = problems[0].to_string();
    assert!(
        said.contains("ignored 2 context messages") && said.contains("pgtrail wal acknowledge"),
        "{said}"
    );

    // Drained: a second run counts nothing again; nor does the same batch
    // written again (as after a crash before the slot moved on).
    follow_once(&mut client).await;
    client
        .batch_execute(
            "SELECT pgtrail._follow_rejected(slot, ARRAY[last_txid], ARRAY[last_lsn::text], ARRAY[commit_lsn::text],
                                             ARRAY[last_committed_at], ARRAY[1], ARRAY[last_reason])
             FROM pgtrail.wal_rejected",
        )
        .await
        .expect("the last batch's record written again");
    let counted: i64 = client
        .query_one("SELECT rejected FROM pgtrail.wal_rejected", &[])
        .await
        .expect("reads")
        .get(0);
    assert_eq!(counted, 2, "nothing counted twice");

    let acknowledged = pgtrail::follow::operations::acknowledge_rejected(&client)
        .await
        .expect("acknowledged");
    assert_eq!(acknowledged, 2);
    assert!(
        rejected_problems(&client).await.is_empty(),
        "acknowledged: not reported"
    );
    let config = Config::parse("[capture]\nmode = \"wal\"\n", "pgtrail.toml").expect("config parses");
    let (_, _, installed, _) = pgtrail::plan::inspect(&client, &config).await.expect("inspect");
    let kept = installed.wal.rejected.expect("still recorded");
    assert_eq!((kept.total, kept.unacknowledged), (2, 0));
    assert!(kept.acknowledged_at.is_some());

    // A later one, read over SQL, is reported alone.
    let later = forge_alone(&app).await;
    let report = follow_once_over_sql(&mut client).await;
    assert_eq!(report.rejected_messages, 1);
    match rejected_problems(&client).await.as_slice() {
        [
            pgtrail::plan::Problem::WalMessagesRejected {
                count: 1,
                last_txid: Some(txid),
                ..
            },
        ] => assert_eq!(*txid, later + era),
        other => panic!("check reports the later message only: {other:?}"),
    }
}

/// Signs `json` as `pgtrail._wal_emit` does, with the key in `key_sql`
/// (a query giving k_in and k_out), for the current transaction, and emits
/// it: the SQL of one statement.
fn emit_signed_with(key_sql: &str, json: &str) -> String {
    format!(
        "SELECT pg_logical_emit_message(true, 'pgtrail',
             convert_to(encode(sha256(k.k_out || sha256(k.k_in || convert_to(txid_current()::text || ':', 'UTF8')
                                                        || convert_to('{json}', 'UTF8'))), 'hex'), 'UTF8')
             || convert_to('{json}', 'UTF8'))
         FROM ({key_sql}) AS k"
    )
}

/// Operations (issue 15): `pgtrail wal rotate-key` replaces the signing key
/// while messages signed with the old one are still in the slot. A follower
/// started after the rotation verifies them, and the new key's; a message
/// signed with the retired key after the rotation does not verify. A
/// transaction open at the rotation keeps the old key valid everywhere
/// until it ends (the rotation says so and exits 1).
#[tokio::test]
async fn a_rotated_key_verifies_what_it_signed_before_and_nothing_after() {
    let cluster = logical_cluster();
    let (mut client, _app) = database(&cluster, "rotated").await;
    let old_key: (Vec<u8>, Vec<u8>) = {
        let row = client
            .query_one("SELECT k_in, k_out FROM pgtrail.wal_message_key", &[])
            .await
            .expect("the key");
        (row.get(0), row.get(1))
    };
    client
        .batch_execute(
            "BEGIN;
             SELECT pgtrail.set_context(actor_id => 'old');
             INSERT INTO scratch VALUES (1, 'a');
             COMMIT;",
        )
        .await
        .expect("signed with the old key");

    // A transaction open at the rotation (it may have read the old key):
    // the old key is not retired while it runs.
    let open = connect_to(&cluster.url("rotated")).await;
    open.batch_execute("BEGIN; SELECT 1;")
        .await
        .expect("an open transaction");
    let rotation =
        pgtrail::follow::operations::rotate_key(&mut client, std::time::Duration::from_millis(300))
            .await
            .expect("rotated");
    assert_eq!(
        rotation.retired_at, None,
        "not retired while a transaction open at the rotation runs"
    );
    assert!(rotation.still_open >= 1);
    let retiring: Vec<(String, Option<String>)> = client
        .query(
            "SELECT kind, valid_below::text FROM pgtrail._wal_message_keys() ORDER BY kind",
            &[],
        )
        .await
        .expect("keys")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        retiring,
        vec![("current".to_string(), None), ("retiring".to_string(), None)]
    );
    open.batch_execute("COMMIT").await.expect("ends");
    drop(open);
    // Rotated again: both replaced keys retired at one position.
    let rotation = pgtrail::follow::operations::rotate_key(&mut client, std::time::Duration::from_secs(30))
        .await
        .expect("rotated");
    assert_eq!(rotation.still_open, 0);
    let retired_at = rotation.retired_at.expect("retired");
    let kinds: Vec<(String, Option<String>)> = client
        .query(
            "SELECT kind, valid_below::text FROM pgtrail._wal_message_keys() ORDER BY kind",
            &[],
        )
        .await
        .expect("keys")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("current".to_string(), None),
            ("retired".to_string(), Some(retired_at.clone())),
            ("retired".to_string(), Some(retired_at)),
        ]
    );
    let current: (Vec<u8>, Vec<u8>) = {
        let row = client
            .query_one("SELECT k_in, k_out FROM pgtrail.wal_message_key", &[])
            .await
            .expect("the key");
        (row.get(0), row.get(1))
    };
    assert_ne!(current, old_key, "a new key");

    client
        .batch_execute(
            "BEGIN;
             SELECT pgtrail.set_context(actor_id => 'new');
             INSERT INTO scratch VALUES (2, 'a');
             COMMIT;",
        )
        .await
        .expect("signed with the new key");
    // Someone who kept the old key signs a message after its retirement
    // (with a context number of its own: the changes after it would take it).
    let numbered = FORGED.replace(r#""ctx": 0"#, r#""ctx": 9"#);
    let forged_with_old = format!(
        "BEGIN;
         INSERT INTO scratch VALUES (3, 'a');
         {};
         UPDATE scratch SET v = 'b' WHERE id = 3;
         COMMIT;",
        emit_signed_with(
            "SELECT r.k_in, r.k_out FROM pgtrail.wal_retired_key AS r ORDER BY r.replaced_at LIMIT 1",
            &numbered
        )
    );
    client
        .batch_execute(&forged_with_old)
        .await
        .expect("a message signed with the retired key");
    // The same done with the current key verifies (the signing here is right).
    client
        .batch_execute(&format!(
            "BEGIN;
             INSERT INTO scratch VALUES (4, 'a');
             {};
             UPDATE scratch SET v = 'b' WHERE id = 4;
             COMMIT;",
            emit_signed_with("SELECT k_in, k_out FROM pgtrail.wal_message_key", &numbered)
        ))
        .await
        .expect("a message signed with the current key");

    // The follower starts after the rotation, with all of it in the slot.
    let report = follow_once(&mut client).await;
    assert_eq!(report.rejected_messages, 1, "only the retired key's late message");
    let actors: Vec<(String, Option<String>)> =
        facts(&client).await.into_iter().map(|f| (f.0, f.1)).collect();
    let row = |id: &str, actor: Option<&str>| (id.to_string(), actor.map(str::to_string));
    assert_eq!(
        actors,
        vec![
            row("1", Some("old")),
            row("2", Some("new")),
            row("3", None),
            row("3", None),
            row("4", None),
            row("4", Some("ceo")),
        ]
    );
}

/// signed_from as `pgtrail.wal_message_key` holds it, and as the follower
/// takes it (`pgtrail._wal_message_keys()`).
async fn current_signed_from(client: &Client) -> (String, String) {
    let row = client
        .query_one(
            "SELECT k.signed_from::text, (SELECT signed_from::text FROM pgtrail._wal_message_keys() WHERE kind = 'current')
             FROM pgtrail.wal_message_key AS k",
            &[],
        )
        .await
        .expect("signed_from");
    (row.get(0), row.get(1))
}

/// Operations (issue 15): `signed_from`, the position before which an
/// unsigned message (pgtrail 0.8.0's) is accepted, is a position of the
/// cluster that recorded it. A dump restored on another cluster carries it;
/// there, every message must be signed, even below it.
#[tokio::test]
async fn a_dump_restored_on_another_cluster_accepts_no_unsigned_message() {
    let old_server = logical_cluster();
    let admin = connect_to(&old_server.url("postgres")).await;
    admin
        .batch_execute("CREATE DATABASE moved")
        .await
        .expect("database created");
    let mut old = connect_to(&old_server.url("moved")).await;
    // Far on in the WAL: the new cluster's positions stay below it.
    let config = upgraded_from_0_8_0(
        &mut old,
        &[
            "SELECT pg_switch_wal()",
            "CREATE TABLE burn AS SELECT 1 AS one; SELECT pg_switch_wal()",
            "DROP TABLE burn; SELECT pg_switch_wal()",
        ],
    )
    .await;
    let (recorded, honoured) = current_signed_from(&old).await;
    assert_ne!(recorded, "0/0", "the upgrade left unsigned messages in the slot");
    assert_eq!(honoured, recorded, "honoured on the cluster that recorded it");

    let new_server = logical_cluster();
    if !pg_dump_reads(&old_server, &old).await {
        // The client programs are older than this server (the other majors'
        // server packages carry none, and pg_dump refuses a newer server):
        // the moved database is made as a restore leaves it, the same
        // objects with the key's row as the old cluster had it.
        let signed_on: Option<i64> = old
            .query_one("SELECT signed_on FROM pgtrail.wal_message_key", &[])
            .await
            .expect("signed_on")
            .get(0);
        connect_to(&new_server.url("postgres"))
            .await
            .batch_execute("CREATE DATABASE moved")
            .await
            .expect("database created");
        let mut moved = connect_to(&new_server.url("moved")).await;
        upgraded_from_0_8_0(&mut moved, &[]).await;
        moved
            .execute(
                "UPDATE pgtrail.wal_message_key SET signed_from = $1::text::pg_lsn, signed_on = $2",
                &[&recorded, &signed_on],
            )
            .await
            .expect("the key's row as the dump carries it");
        // A dump carries no slot: `apply` below makes a new one, after
        // the writes made here.
        moved
            .batch_execute("SELECT pg_drop_replication_slot(pgtrail.wal_slot())")
            .await
            .expect("slot dropped");
    } else {
        // The database moved: roles, then the dump, into a new cluster.
        dump_and_restore(&old_server, &new_server, "moved").await;
    }
    drop(old);
    drop(old_server);

    let mut new = connect_to(&new_server.url("moved")).await;
    pgtrail::plan::apply(&mut new, &config)
        .await
        .expect("apply on the new cluster");
    let (carried, honoured) = current_signed_from(&new).await;
    assert_eq!(carried, recorded, "the dump carries signed_from");
    assert_eq!(honoured, "0/0", "not honoured on another cluster");
    let below: bool = new
        .query_one(
            "SELECT pg_current_wal_insert_lsn() < $1::text::pg_lsn",
            &[&recorded],
        )
        .await
        .expect("position")
        .get(0);
    assert!(below, "the new cluster writes below the carried signed_from");

    let app = plain_role(&new_server, &new, "moved").await;
    app.batch_execute(&format!(
        "BEGIN;
         INSERT INTO scratch VALUES (2, 'a');
         SELECT pg_logical_emit_message(true, 'pgtrail', '{FORGED}');
         UPDATE scratch SET v = 'b' WHERE id = 2;
         COMMIT;"
    ))
    .await
    .expect("an unsigned message below the carried signed_from");
    let report = follow_once(&mut new).await;
    assert_eq!(report.rejected_messages, 1, "the unsigned message is ignored");
    let actors: Vec<Option<String>> = facts(&new)
        .await
        .into_iter()
        .filter(|f| f.0 == "2")
        .map(|f| f.1)
        .collect();
    assert_eq!(actors, vec![None, None]);
}

/// A database of pgtrail 0.8.0 with `scratch` attached in WAL mode and its
/// slot; `between` run next (each its own transaction: a slot is not created
/// in one that wrote), one write under actor `before`, then upgraded by
/// `apply`, whose config it returns.
async fn upgraded_from_0_8_0(client: &mut Client, between: &[&str]) -> Config {
    let released = include_str!("../../../capture/sql/released/0.8.0.sql");
    let mut steps = vec![
        format!("CREATE TABLE scratch (id integer PRIMARY KEY, v text); BEGIN; {released} COMMIT;"),
        "SELECT pgtrail.attach('scratch', '{id}', 'primary_key', p_mode => 'wal')".to_string(),
        "SELECT pg_create_logical_replication_slot(pgtrail.wal_slot(), 'pgoutput')".to_string(),
    ];
    steps.extend(between.iter().map(|s| (*s).to_string()));
    steps.push(
        "BEGIN; SELECT pgtrail.set_context(actor_id => 'before'); INSERT INTO scratch VALUES (1, 'a'); COMMIT;"
            .to_string(),
    );
    for step in steps {
        client
            .batch_execute(&step)
            .await
            .unwrap_or_else(|e| panic!("0.8.0 installs, attaches in WAL mode and writes: {e:?}"));
    }
    let config = Config::parse("[capture]\nmode = \"wal\"\n", "pgtrail.toml").expect("config parses");
    pgtrail::plan::apply(client, &config)
        .await
        .expect("apply upgrades");
    config
}

/// Whether the client programs found beside `cluster` can dump it: pg_dump
/// refuses a server of a newer major than its own.
async fn pg_dump_reads(cluster: &Cluster, client: &Client) -> bool {
    let server: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int / 10000", &[])
        .await
        .expect("server version")
        .get(0);
    let Ok(output) = std::process::Command::new(cluster.program("pg_dump"))
        .arg("--version")
        .output()
    else {
        return false;
    };
    // "pg_dump (PostgreSQL) 15.20 (Debian ...)"
    String::from_utf8_lossy(&output.stdout)
        .split("(PostgreSQL) ")
        .nth(1)
        .and_then(|v| v.split(['.', ' ']).next())
        .and_then(|major| major.trim().parse::<i32>().ok())
        .is_some_and(|major| major >= server)
}

/// `database` moved from `from` to `to`: its roles (pg_dumpall), then
/// pg_dump and pg_restore.
async fn dump_and_restore(from: &Cluster, to: &Cluster, database: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let roles = dir.path().join("roles.sql");
    let dump = dir.path().join(format!("{database}.dump"));
    let output = std::process::Command::new(from.program("pg_dumpall"))
        .args(["--roles-only", "-d", &from.url("postgres")])
        .output()
        .expect("pg_dumpall runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::write(&roles, &output.stdout).expect("roles written");
    let output = std::process::Command::new(from.program("pg_dump"))
        .args(["-Fc", "-f", &dump.display().to_string(), &from.url(database)])
        .output()
        .expect("pg_dump runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = std::process::Command::new(to.program("psql"))
        .args([
            "-q",
            "-d",
            &to.url("postgres"),
            "-f",
            &roles.display().to_string(),
        ])
        .output();
    connect_to(&to.url("postgres"))
        .await
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .await
        .expect("database created");
    let output = std::process::Command::new(to.program("pg_restore"))
        .args([
            "--exit-on-error",
            "-d",
            &to.url(database),
            &dump.display().to_string(),
        ])
        .output()
        .expect("pg_restore runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
