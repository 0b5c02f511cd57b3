//! A trail you can prove (seed 004: "immutable audit records with integrity
//! hashes"; the auditor's "how do you know nobody edited the log?"). Each
//! attack is made as a superuser with the append-only guards switched off
//! (`session_replication_role = replica`), and `verify` must name what it
//! touched; erasure must keep every proof valid.

use std::time::Duration;

use pgtrail::archive::Priority;
use pgtrail::integrity::crypto::{SignerKey, VerifierKey};
use pgtrail::integrity::{self, Problem, VerifyOptions, VerifyReport};
use pgtrail_testkit::TestDb;
use serde_json::json;

use crate::support::{audited_db, count};

const SHOP: &str = "
    CREATE TABLE accounts (id integer PRIMARY KEY, email text, name text, balance numeric(12,2));
";
const CONFIG: &str = "[capture]\ninclude = [\"accounts\"]\n";

/// A shop whose first day of work is sealed; returns the key and the
/// checkpoint note kept outside.
async fn sealed_shop() -> (TestDb, SignerKey, String) {
    let mut db = audited_db(SHOP, CONFIG).await;
    db.client
        .batch_execute(
            "BEGIN; SELECT pgtrail.set_context(actor_id => '7', actor_name => 'alice@example.com', reason => 'signup');
             INSERT INTO accounts VALUES (1, 'ann@example.com', 'Ann', 10.00), (2, 'bob@example.com', 'Bob', 20.00),
                                         (3, 'cy@example.com', 'Cy', 30.00);
             COMMIT;
             BEGIN; SET LOCAL pgtrail.actor_id = '8';
             UPDATE accounts SET balance = balance + 1 WHERE id IN (1, 2);
             COMMIT;
             UPDATE accounts SET email = 'ann@new.example.com' WHERE id = 1;
             DELETE FROM accounts WHERE id = 3;",
        )
        .await
        .expect("a day of work");
    let key = SignerKey::generate("shop.example.com/audit").expect("key");
    let report = integrity::seal(&mut db.client, &key, &mut |_| {})
        .await
        .expect("seal");
    assert_eq!(report.seal_id, Some(1));
    assert_eq!(report.appended, 7);
    (db, key, report.note)
}

async fn verify_with(db: &mut TestDb, key: &VerifierKey, checkpoint: Option<&str>) -> VerifyReport {
    let options = VerifyOptions {
        public_key: Some(key.clone()),
        checkpoint: checkpoint.map(str::to_string),
        ..Default::default()
    };
    integrity::verify(&mut db.client, &options)
        .await
        .expect("verify runs")
}

async fn change_id(db: &TestDb, filter: &str) -> i64 {
    count(
        &db.client,
        &format!("SELECT id FROM pgtrail.changes WHERE {filter} ORDER BY id LIMIT 1"),
    )
    .await
}

#[tokio::test]
async fn a_sealed_trail_verifies_and_later_seals_extend_the_same_log() {
    let (mut db, key, first) = sealed_shop().await;
    let report = verify_with(&mut db, &key.verifier(), Some(&first)).await;
    assert!(report.intact(), "{:?}", report.problems);
    assert_eq!((report.seals, report.tree_size, report.unsealed), (1, 7, 0));

    // Nothing new: nothing sealed.
    let again = integrity::seal(&mut db.client, &key, &mut |_| {})
        .await
        .expect("seal");
    assert_eq!((again.seal_id, again.tree_size), (None, 7));

    db.client
        .batch_execute("UPDATE accounts SET name = 'Bobby' WHERE id = 2; INSERT INTO accounts VALUES (4, 'd@example.com', 'Di', 0)")
        .await
        .unwrap();
    assert_eq!(verify_with(&mut db, &key.verifier(), None).await.unsealed, 2);
    let second = integrity::seal(&mut db.client, &key, &mut |_| {})
        .await
        .expect("seal");
    assert_eq!(
        (second.seal_id, second.appended, second.tree_size),
        (Some(2), 2, 9)
    );

    // The first checkpoint, kept outside, is still a prefix of the log.
    let report = verify_with(&mut db, &key.verifier(), Some(&first)).await;
    assert!(report.intact(), "{:?}", report.problems);
    assert_eq!((report.seals, report.tree_size), (2, 9));
    let checkpoint =
        pgtrail::integrity::crypto::open(&second.note, &key.verifier()).expect("a valid C2SP note");
    assert_eq!(checkpoint.size, 9);
    assert!(checkpoint.origin.starts_with("pgtrail/"));
    assert!(checkpoint.extensions[0].starts_with("time "));
}

/// `maintain --priority low` seals on a lowered thread with paced reading:
/// the log it makes is the same one, verified leaf by leaf, and later seals
/// at either priority extend it.
#[tokio::test]
async fn a_seal_at_low_priority_makes_the_same_log() {
    let (mut db, key, first) = sealed_shop().await;
    db.client
        .batch_execute(
            "INSERT INTO accounts SELECT i, 'p' || i || '@example.com', 'P' || i, i FROM generate_series(10, 1009) i;
             UPDATE accounts SET balance = balance + 1 WHERE id BETWEEN 10 AND 509;",
        )
        .await
        .expect("more work");
    let mut read = 0;
    let low = integrity::seal_at(&mut db.client, &key, &mut |n| read = n, Priority::Low)
        .await
        .expect("seal at low priority");
    assert_eq!((low.seal_id, low.appended, low.tree_size), (Some(2), 1500, 1507));
    assert_eq!(read, 1500, "the last progress is the count read");
    db.client
        .batch_execute("DELETE FROM accounts WHERE id BETWEEN 10 AND 19")
        .await
        .expect("a delete");
    let normal = integrity::seal(&mut db.client, &key, &mut |_| {})
        .await
        .expect("seal");
    assert_eq!((normal.seal_id, normal.tree_size), (Some(3), 1517));
    let nothing = integrity::seal_at(&mut db.client, &key, &mut |_| {}, Priority::Low)
        .await
        .expect("seal at low priority");
    assert_eq!((nothing.seal_id, nothing.tree_size), (None, 1517));

    let report = verify_with(&mut db, &key.verifier(), Some(&first)).await;
    assert!(report.intact(), "{:?}", report.problems);
    assert_eq!((report.seals, report.tree_size, report.unsealed), (3, 1517, 0));
}

/// A seal at low priority reads the transaction records in batches too
/// (paced, hashed on the lowered thread) before the changes: a seal of
/// many transactions, each its own record, is the same log.
#[tokio::test]
async fn a_seal_at_low_priority_of_many_transactions_makes_the_same_log() {
    let (mut db, key, first) = sealed_shop().await;
    db.client
        .batch_execute(
            "INSERT INTO accounts SELECT i, 'p' || i || '@example.com', 'P' || i, i FROM generate_series(10, 709) i",
        )
        .await
        .expect("700 accounts");
    // A statement of its own (not in a multi-statement query's implicit
    // transaction), so that it may commit.
    db.client
        .batch_execute(
            "DO $$
             BEGIN
                 FOR i IN 10..709 LOOP
                     PERFORM pgtrail.set_context(actor_id => 'clerk' || i % 7, reason => 'one by one');
                     UPDATE accounts SET balance = balance + 1 WHERE id = i;
                     COMMIT;
                 END LOOP;
             END $$",
        )
        .await
        .expect("700 transactions");
    let records: i64 = db
        .client
        .query_one("SELECT count(*) FROM pgtrail.transaction", &[])
        .await
        .expect("count the records")
        .get(0);
    assert!(records > 700, "{records} transaction records");
    let low = integrity::seal_at(&mut db.client, &key, &mut |_| {}, Priority::Low)
        .await
        .expect("seal at low priority");
    assert_eq!((low.seal_id, low.appended, low.tree_size), (Some(2), 1400, 1407));
    let report = verify_with(&mut db, &key.verifier(), Some(&first)).await;
    assert!(report.intact(), "{:?}", report.problems);
    assert_eq!((report.seals, report.tree_size, report.unsealed), (2, 1407, 0));
}

#[tokio::test]
async fn an_edited_value_is_named() {
    let (mut db, key, checkpoint) = sealed_shop().await;
    let id = change_id(&db, "op = 'UPDATE' AND new_values ? 'email'").await;
    db.behind_the_triggers(&format!(
        "UPDATE pgtrail.change SET new_values = '{{\"email\": \"mallory@example.com\"}}' WHERE id = {id}"
    ))
    .await;
    let report = verify_with(&mut db, &key.verifier(), Some(&checkpoint)).await;
    assert!(
        report.problems.contains(&Problem::Edited {
            change_id: id,
            seal: 1
        }),
        "{:?}",
        report.problems
    );
    assert!(
        report
            .problems
            .contains(&Problem::Inconsistent { checkpoint_size: 7 })
    );
    assert_eq!(
        report
            .problems
            .iter()
            .filter_map(Problem::change_id)
            .collect::<Vec<_>>(),
        vec![id]
    );
}

#[tokio::test]
async fn an_edited_actor_or_time_is_named() {
    let (mut db, key, _) = sealed_shop().await;
    // The actor of the signup transaction: its three inserts are named.
    db.behind_the_triggers(
        "UPDATE pgtrail.transaction SET actor_name = 'someone@else.example.com' WHERE actor_id = '7'",
    )
    .await;
    let inserts: Vec<i64> = db
        .client
        .query(
            "SELECT id FROM pgtrail.changes WHERE op = 'INSERT' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let report = verify_with(&mut db, &key.verifier(), None).await;
    let named: Vec<i64> = report.problems.iter().filter_map(Problem::change_id).collect();
    assert_eq!(named, inserts, "{:?}", report.problems);

    let (mut db, key, _) = sealed_shop().await;
    let id = change_id(&db, "op = 'DELETE'").await;
    db.behind_the_triggers(&format!(
        "UPDATE pgtrail.change SET changed_at = changed_at - interval '1 day' WHERE id = {id}"
    ))
    .await;
    let report = verify_with(&mut db, &key.verifier(), None).await;
    assert_eq!(
        report.problems,
        vec![Problem::Edited {
            change_id: id,
            seal: 1
        }]
    );
}

#[tokio::test]
async fn a_change_deleted_from_the_middle_is_named() {
    let (mut db, key, checkpoint) = sealed_shop().await;
    let id = change_id(&db, "op = 'UPDATE' AND pk = '{\"id\": 2}'").await;
    db.behind_the_triggers(&format!("DELETE FROM pgtrail.change WHERE id = {id}"))
        .await;
    let report = verify_with(&mut db, &key.verifier(), Some(&checkpoint)).await;
    assert_eq!(
        report.problems,
        vec![Problem::Deleted {
            change_id: id,
            seal: 1
        }]
    );
}

#[tokio::test]
async fn deleting_the_newest_changes_and_their_seal_is_caught_by_the_checkpoint_kept_outside() {
    let (mut db, key, _) = sealed_shop().await;
    db.client
        .batch_execute("UPDATE accounts SET name = 'Bobby' WHERE id = 2")
        .await
        .unwrap();
    let newest = integrity::seal(&mut db.client, &key, &mut |_| {})
        .await
        .expect("seal");
    let id = change_id(&db, "new_values ->> 'name' = 'Bobby'").await;

    // The newest change alone: named.
    db.behind_the_triggers(&format!("DELETE FROM pgtrail.change WHERE id = {id}"))
        .await;
    let report = verify_with(&mut db, &key.verifier(), None).await;
    assert_eq!(
        report.problems,
        vec![Problem::Deleted {
            change_id: id,
            seal: 2
        }]
    );

    // And its seal too: the database alone looks whole again, the
    // checkpoint kept outside does not.
    db.behind_the_triggers(
        "DELETE FROM pgtrail.seal_leaves WHERE seal_id = 2; DELETE FROM pgtrail.seal WHERE id = 2",
    )
    .await;
    assert!(verify_with(&mut db, &key.verifier(), None).await.intact());
    let report = verify_with(&mut db, &key.verifier(), Some(&newest.note)).await;
    assert_eq!(
        report.problems,
        vec![Problem::Truncated {
            checkpoint_size: 8,
            log_size: 7
        }]
    );
}

#[tokio::test]
async fn a_forged_change_is_named() {
    let (mut db, key, _) = sealed_shop().await;
    // A change slipped into a transaction that was sealed, made to look
    // like the others of that transaction.
    db.behind_the_triggers(
        "INSERT INTO pgtrail.change (txid, ctx, table_id, op, changed_at, pk, new_values)
         SELECT txid, ctx, table_id, 'I', changed_at, '{\"id\": 99}', '{\"id\": 99, \"email\": \"ghost@example.com\"}'
         FROM pgtrail.change ORDER BY id LIMIT 1",
    )
    .await;
    let forged = count(&db.client, "SELECT max(id) FROM pgtrail.change").await;
    let report = verify_with(&mut db, &key.verifier(), None).await;
    assert_eq!(
        report.problems,
        vec![Problem::NotSealed {
            change_id: forged,
            seal: 1
        }]
    );
}

#[tokio::test]
async fn reordered_changes_are_named() {
    // Two changes swap their content...
    let (mut db, key, _) = sealed_shop().await;
    let first = change_id(&db, "op = 'INSERT' AND pk = '{\"id\": 1}'").await;
    let second = change_id(&db, "op = 'INSERT' AND pk = '{\"id\": 2}'").await;
    db.behind_the_triggers(&format!(
        "UPDATE pgtrail.change AS c SET pk = o.pk, new_values = o.new_values
             FROM pgtrail.change AS o WHERE (c.id, o.id) IN (({first}, {second}), ({second}, {first}))"
    ))
    .await;
    let report = verify_with(&mut db, &key.verifier(), None).await;
    assert_eq!(
        report.problems,
        vec![
            Problem::Edited {
                change_id: first,
                seal: 1
            },
            Problem::Edited {
                change_id: second,
                seal: 1
            }
        ]
    );

    // ...or the sealed order itself is rewritten.
    let (mut db, key, _) = sealed_shop().await;
    db.behind_the_triggers(
        "UPDATE pgtrail.seal_leaves SET change_ids = ARRAY[change_ids[2], change_ids[1]] || change_ids[3:]",
    )
    .await;
    let report = verify_with(&mut db, &key.verifier(), None).await;
    assert!(
        report.problems.contains(&Problem::OrderRewritten { seal: 1 }),
        "{:?}",
        report.problems
    );
    assert!(!report.intact());
}

#[tokio::test]
async fn a_trail_rehashed_and_resealed_without_the_signing_key_fails() {
    let (mut db, key, checkpoint) = sealed_shop().await;
    // The attacker edits a value, throws the log away and seals again with
    // a key of their own, recording its public key in the database.
    let id = change_id(&db, "op = 'DELETE'").await;
    db.behind_the_triggers(&format!(
        "UPDATE pgtrail.change SET old_values = old_values || '{{\"balance\": 0}}' WHERE id = {id};
             DELETE FROM pgtrail.seal_leaves; DELETE FROM pgtrail.seal"
    ))
    .await;
    let theirs = SignerKey::generate("shop.example.com/audit").expect("key");
    integrity::seal(&mut db.client, &theirs, &mut |_| {})
        .await
        .expect("their seal");

    // Trusting the database's own key, it looks fine: the report says so.
    let options = VerifyOptions::default();
    let naive = integrity::verify(&mut db.client, &options).await.expect("verify");
    assert!(naive.intact() && naive.key_from_database);

    // With the real public key, every checkpoint is refused, and the
    // checkpoint kept outside no longer matches.
    let report = verify_with(&mut db, &key.verifier(), Some(&checkpoint)).await;
    assert!(
        matches!(
            &report.problems[..],
            [
                Problem::BadSignature { seal: 1, .. },
                Problem::Inconsistent { checkpoint_size: 7 }
            ]
        ),
        "{:?}",
        report.problems
    );

    // And sealing on top of a log signed by another key is refused.
    let refused = integrity::seal(&mut db.client, &key, &mut |_| {}).await;
    assert!(refused.unwrap_err().to_string().contains("not by this key"));
}

#[tokio::test]
async fn sealing_never_waits_for_writers_and_covers_only_finished_transactions() {
    let (mut db, key, _) = sealed_shop().await;
    let writer = db.connect().await;
    writer
        .batch_execute("BEGIN; UPDATE accounts SET name = 'Annie' WHERE id = 1")
        .await
        .unwrap();
    let sealed = tokio::time::timeout(
        Duration::from_secs(30),
        integrity::seal(&mut db.client, &key, &mut |_| {}),
    )
    .await
    .expect("seal does not wait for an open transaction")
    .expect("seal");
    assert_eq!(sealed.seal_id, None, "the open transaction is not sealed");
    writer.batch_execute("COMMIT").await.unwrap();
    let sealed = integrity::seal(&mut db.client, &key, &mut |_| {})
        .await
        .expect("seal");
    assert_eq!((sealed.seal_id, sealed.appended), (Some(2), 1));
    assert!(verify_with(&mut db, &key.verifier(), None).await.intact());
}

#[tokio::test]
async fn erasing_a_person_keeps_every_proof_valid() {
    let (mut db, key, checkpoint) = sealed_shop().await;
    // One more change, not sealed yet.
    db.client
        .batch_execute("UPDATE accounts SET name = 'Ann B.' WHERE id = 1")
        .await
        .unwrap();

    let only_email = integrity::erase(
        &mut db.client,
        "public",
        "accounts",
        &json!({"id": 1}),
        Some(&["email".to_string()]),
        "GDPR request #4411",
    )
    .await
    .expect("erase email");
    assert_eq!(
        (only_email.change_ids.len(), only_email.values, only_email.sealed),
        (2, 3, 2)
    );
    let everything = integrity::erase(
        &mut db.client,
        "public",
        "accounts",
        &json!({"id": 1}),
        None,
        "GDPR request #4411",
    )
    .await
    .expect("erase the rest");
    assert_eq!(everything.change_ids.len(), 3);

    let trail_text: String = db
        .client
        .query_one("SELECT string_agg(concat(old_values, new_values), ' ') FROM pgtrail.change WHERE pk = '{\"id\": 1}'", &[])
        .await
        .unwrap()
        .get(0);
    for gone in ["ann@example.com", "ann@new.example.com", "\"Ann\"", "Ann B."] {
        assert!(
            !trail_text.contains(gone),
            "{gone} is still in the trail: {trail_text}"
        );
    }
    assert!(trail_text.contains("pgtrail_erased"));
    let recorded = count(
        &db.client,
        "SELECT count(*) FROM pgtrail.erasure WHERE reason = 'GDPR request #4411' AND db_user = session_user",
    )
    .await;
    assert_eq!(recorded, 2);

    integrity::seal(&mut db.client, &key, &mut |_| {})
        .await
        .expect("seal after erasure");
    let report = verify_with(&mut db, &key.verifier(), Some(&checkpoint)).await;
    assert!(report.intact(), "{:?}", report.problems);
    assert_eq!(report.erasures, 2);

    // An erased change is still protected: editing what is left is caught.
    let id = change_id(&db, "op = 'INSERT' AND pk = '{\"id\": 1}'").await;
    db.behind_the_triggers(&format!(
        "UPDATE pgtrail.change SET pk = '{{\"id\": 100}}' WHERE id = {id}"
    ))
    .await;
    let report = verify_with(&mut db, &key.verifier(), None).await;
    assert_eq!(
        report.problems,
        vec![Problem::Edited {
            change_id: id,
            seal: 1
        }]
    );

    // Key columns identify the row and are not erased; a reason is required.
    let refused = integrity::erase(
        &mut db.client,
        "public",
        "accounts",
        &json!({"id": 2}),
        Some(&["id".to_string()]),
        "x",
    )
    .await;
    assert!(refused.unwrap_err().to_string().contains("key column"));
    let refused = integrity::erase(&mut db.client, "public", "accounts", &json!({"id": 2}), None, " ").await;
    assert!(refused.unwrap_err().to_string().contains("reason"));
}

#[tokio::test]
async fn two_seals_at_once_take_turns_and_the_log_stays_whole() {
    let (mut db, key, _) = sealed_shop().await;
    db.client
        .batch_execute("UPDATE accounts SET name = 'Bobby' WHERE id = 2")
        .await
        .unwrap();
    let mut other = db.connect().await;
    let (mut quiet_a, mut quiet_b) = (|_| {}, |_| {});
    let (a, b) = tokio::join!(
        integrity::seal(&mut db.client, &key, &mut quiet_a),
        integrity::seal(&mut other, &key, &mut quiet_b)
    );
    let (a, b) = (a.expect("first seal"), b.expect("second seal"));
    let mut ids = [a.seal_id, b.seal_id];
    ids.sort();
    assert_eq!(
        ids,
        [None, Some(2)],
        "one appends the change, the other finds nothing new"
    );
    let report = verify_with(&mut db, &key.verifier(), None).await;
    assert!(report.intact(), "{:?}", report.problems);
    assert_eq!((report.seals, report.tree_size), (2, 8));
}
