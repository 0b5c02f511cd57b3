//! Reverting key changes whose keys go round: cycles that no temporary key
//! can break are conflicts like any other (refused, or skipped with the
//! rest reverted); temporary keys the table's constraints would refuse
//! (a CHECK, a short varchar, a foreign key on the key) are not used, and
//! the revert either finds another way or refuses up front; a row that
//! goes through a temporary key is counted once in the plan.

use pgtrail::revert::apply::{ApplyOptions, apply};
use pgtrail::revert::plan::plan;
use pgtrail::revert::{Operation, Plan, Policy, Request, RevertError, Selector, StatementKind};
use serde_json::{Value, json};
use tokio_postgres::Client;

use pgtrail_testkit::TestDb;

use crate::support::{apply as apply_config, audited_db, column, tx};

fn txids(list: &[i64]) -> Request {
    Request::new(Selector::Transactions(list.to_vec()))
}

async fn revert(client: &mut Client, request: &Request) -> Result<i64, RevertError> {
    let options = ApplyOptions {
        reason: "undo the key changes".into(),
        actor: Some("ops@example.com".into()),
        expected: None,
    };
    apply(client, request, &options).await.map(|a| a.txid)
}

async fn rows(client: &Client, table: &str) -> Vec<Value> {
    column(
        client,
        &format!("SELECT to_jsonb(t) FROM {table} AS t ORDER BY to_jsonb(t)::text"),
    )
    .await
}

fn conflict_kinds(planned: &Plan) -> Vec<String> {
    let mut kinds: Vec<String> = planned
        .conflicts()
        .map(|c| c.conflict.as_ref().unwrap()["kind"].as_str().unwrap().to_string())
        .collect();
    kinds.sort();
    kinds
}

/// Two dates swapped (a date cannot hold a temporary key) and a label
/// changed, in one transaction. Refuse lists the cycle with the other
/// conflicts; skip leaves the swapped rows as they are, says why, and
/// reverts the rest, where it used to refuse the whole revert.
#[tokio::test]
async fn skip_leaves_a_key_cycle_no_temporary_key_breaks_and_reverts_the_rest() {
    let mut db = audited_db(
        "CREATE TABLE days (day date PRIMARY KEY, label text);
         INSERT INTO days VALUES ('2026-01-01', 'new year'), ('2026-12-25', 'christmas'), ('2026-05-01', 'may day');",
        "",
    )
    .await;
    let t = tx(
        &db.client,
        "calendar",
        "UPDATE days SET day = '2026-06-01' WHERE label = 'new year';
         UPDATE days SET day = '2026-01-01' WHERE label = 'christmas';
         UPDATE days SET day = '2026-12-25' WHERE label = 'new year';
         UPDATE days SET label = 'labour day' WHERE day = '2026-05-01'",
    )
    .await;
    tx(
        &db.client,
        "clerk",
        "UPDATE days SET label = 'labour day!' WHERE day = '2026-05-01'",
    )
    .await;

    // Refuse: the later change and the cycle, all listed.
    let refused = plan(&db.client, &txids(&[t])).await.unwrap();
    assert_eq!(
        conflict_kinds(&refused),
        vec!["key_cycle", "key_cycle", "later_change"],
        "{refused:?}"
    );
    let message = refused
        .conflicts()
        .find_map(|c| {
            let c = c.conflict.as_ref()?;
            (c["kind"] == json!("key_cycle")).then(|| c["message"].as_str().unwrap().to_string())
        })
        .unwrap();
    assert!(message.contains("cannot hold a temporary key"), "{message}");

    // Skip: everything is skipped here (the cycle, and the later change).
    db.client
        .batch_execute(
            "UPDATE days SET label = 'labour day' WHERE day = '2026-05-01';
             INSERT INTO days VALUES ('2026-10-31', 'halloween')",
        )
        .await
        .unwrap();
    let u = tx(
        &db.client,
        "calendar",
        "UPDATE days SET day = '2026-06-01' WHERE label = 'new year';
         UPDATE days SET day = '2026-12-25' WHERE label = 'christmas';
         UPDATE days SET day = '2026-01-01' WHERE label = 'new year';
         UPDATE days SET label = 'spooky' WHERE day = '2026-10-31'",
    )
    .await;
    let after = rows(&db.client, "days").await;
    let mut skip = txids(&[u]);
    skip.policy = Policy::Skip;
    let planned = plan(&db.client, &skip).await.unwrap();
    assert_eq!(planned.conflicts().count(), 0, "{planned:?}");
    let skipped: Vec<&Value> = planned
        .of(Operation::Skip)
        .filter_map(|s| s.key.as_ref())
        .collect();
    assert_eq!(skipped.len(), 2, "{planned:?}");
    assert!(
        planned
            .of(Operation::Skip)
            .all(|s| s.note.as_deref().unwrap_or("").contains("each other's keys")),
        "{planned:?}"
    );
    assert_eq!(planned.rows(), 1, "{planned:?}");
    revert(&mut db.client, &skip).await.unwrap();
    let mut expected: Vec<Value> = after
        .into_iter()
        .map(|mut r| {
            if r["label"] == json!("spooky") {
                r["label"] = json!("halloween");
            }
            r
        })
        .collect();
    expected.sort_by_key(|r| r.to_string());
    let mut actual = rows(&db.client, "days").await;
    actual.sort_by_key(|r| r.to_string());
    assert_eq!(actual, expected);
}

/// A CHECK on the first key column refuses the temporary value above the
/// largest: the other key column holds the temporary key. A CHECK on the
/// only key column: refused up front in the plan, naming the constraint,
/// instead of failing half-way.
#[tokio::test]
async fn a_temporary_key_a_check_constraint_refuses_is_not_used() {
    let mut db = audited_db(
        "CREATE TABLE seats (row_no int CHECK (row_no BETWEEN 1 AND 3), seat text, holder text,
                             PRIMARY KEY (row_no, seat));
         CREATE TABLE slots (n int PRIMARY KEY CHECK (n BETWEEN 1 AND 5), label text);
         INSERT INTO seats VALUES (1, 'a', 'ann'), (1, 'b', 'bob'), (3, 'a', 'cy');
         INSERT INTO slots VALUES (1, 'one'), (2, 'two'), (5, 'five');",
        "",
    )
    .await;
    let before = rows(&db.client, "seats").await;
    let swap = tx(
        &db.client,
        "usher",
        "UPDATE seats SET seat = 'x' WHERE holder = 'ann';
         UPDATE seats SET seat = 'a' WHERE holder = 'bob';
         UPDATE seats SET seat = 'b' WHERE holder = 'ann'",
    )
    .await;
    let planned = plan(&db.client, &txids(&[swap])).await.unwrap();
    assert_eq!(planned.conflicts().count(), 0, "{planned:?}");
    revert(&mut db.client, &txids(&[swap])).await.unwrap();
    assert_eq!(rows(&db.client, "seats").await, before);

    let swap = tx(
        &db.client,
        "scheduler",
        "UPDATE slots SET n = 3 WHERE label = 'one';
         UPDATE slots SET n = 1 WHERE label = 'two';
         UPDATE slots SET n = 2 WHERE label = 'one'",
    )
    .await;
    let swapped = rows(&db.client, "slots").await;
    let planned = plan(&db.client, &txids(&[swap])).await.unwrap();
    assert_eq!(
        conflict_kinds(&planned),
        vec!["key_cycle", "key_cycle"],
        "{planned:?}"
    );
    let message = planned.conflicts().next().unwrap().conflict.as_ref().unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("slots_n_check"), "{message}");
    let refused = revert(&mut db.client, &txids(&[swap])).await;
    assert!(
        matches!(refused, Err(RevertError::Conflicts { .. })),
        "{refused:?}"
    );
    assert_eq!(rows(&db.client, "slots").await, swapped);
}

/// A varchar(8) key: the temporary value is made as long as the column
/// takes (it was 47 characters, refused by the type at apply time).
#[tokio::test]
async fn a_short_varchar_key_rotates_back_through_a_temporary_key_that_fits() {
    let mut db = audited_db(
        "CREATE TABLE codes (code varchar(8) PRIMARY KEY, label text);
         INSERT INTO codes VALUES ('a', 'A'), ('b', 'B'), ('c', 'C');",
        "",
    )
    .await;
    let before = rows(&db.client, "codes").await;
    let rotate = tx(
        &db.client,
        "renamer",
        "UPDATE codes SET code = 'x' WHERE code = 'a';
         UPDATE codes SET code = 'a' WHERE code = 'c';
         UPDATE codes SET code = 'c' WHERE code = 'b';
         UPDATE codes SET code = 'b' WHERE code = 'x'",
    )
    .await;
    let planned = plan(&db.client, &txids(&[rotate])).await.unwrap();
    assert_eq!(planned.conflicts().count(), 0, "{planned:?}");
    revert(&mut db.client, &txids(&[rotate])).await.unwrap();
    assert_eq!(rows(&db.client, "codes").await, before);
}

/// Every key column a foreign key that is not deferrable: a temporary key
/// (11 and 12 here) would point at no parent (users go up to 11). A long chain (a renumbering) goes back a step
/// per row instead; a swap is refused up front, naming the foreign key.
/// With a deferrable foreign key (deferred while the revert runs) the swap
/// goes through a temporary key.
#[tokio::test]
async fn a_key_that_is_all_foreign_key_goes_back_in_steps_or_is_refused_up_front() {
    let mut db = audited_db(
        "CREATE TABLE users (id int PRIMARY KEY);
         CREATE TABLE profiles (user_id int PRIMARY KEY REFERENCES users, bio text);
         CREATE TABLE cards (user_id int PRIMARY KEY REFERENCES users DEFERRABLE, bio text);
         INSERT INTO users SELECT g FROM generate_series(1, 11) AS g;
         INSERT INTO profiles SELECT g, 'bio ' || g FROM generate_series(1, 10) AS g;
         INSERT INTO cards VALUES (1, 'one'), (2, 'two');",
        "",
    )
    .await;
    let before = rows(&db.client, "profiles").await;
    let shift = (1..=10)
        .rev()
        .map(|i| format!("UPDATE profiles SET user_id = {} WHERE user_id = {i}", i + 1))
        .collect::<Vec<_>>()
        .join(";\n");
    let renumbering = tx(&db.client, "admin", &shift).await;
    let planned = plan(&db.client, &txids(&[renumbering])).await.unwrap();
    assert_eq!(planned.conflicts().count(), 0, "{planned:?}");
    assert!(
        planned.statements().all(|s| s.kind == Some(StatementKind::Move)),
        "{planned:?}"
    );
    assert_eq!(planned.rows(), 10);
    revert(&mut db.client, &txids(&[renumbering])).await.unwrap();
    assert_eq!(rows(&db.client, "profiles").await, before);

    let swap = tx(
        &db.client,
        "admin",
        "UPDATE profiles SET user_id = 11 WHERE user_id = 1;
         UPDATE profiles SET user_id = 1 WHERE user_id = 2;
         UPDATE profiles SET user_id = 2 WHERE user_id = 11;
         UPDATE cards SET user_id = 11 WHERE user_id = 1;
         UPDATE cards SET user_id = 1 WHERE user_id = 2;
         UPDATE cards SET user_id = 2 WHERE user_id = 11",
    )
    .await;
    let swapped = rows(&db.client, "profiles").await;
    let planned = plan(&db.client, &txids(&[swap])).await.unwrap();
    assert_eq!(
        conflict_kinds(&planned),
        vec!["key_cycle", "key_cycle"],
        "{planned:?}"
    );
    assert!(
        planned
            .conflicts()
            .all(|c| c.table.as_deref() == Some("public.profiles")
                && c.conflict.as_ref().unwrap()["message"]
                    .as_str()
                    .unwrap()
                    .contains("profiles_user_id_fkey")),
        "{planned:?}"
    );
    let refused = revert(&mut db.client, &txids(&[swap])).await;
    assert!(
        matches!(refused, Err(RevertError::Conflicts { .. })),
        "{refused:?}"
    );
    assert_eq!(rows(&db.client, "profiles").await, swapped);

    let cards_before = json!([{"user_id": 1, "bio": "one"}, {"user_id": 2, "bio": "two"}]);
    let mut skip = txids(&[swap]);
    skip.policy = Policy::Skip;
    revert(&mut db.client, &skip).await.unwrap();
    assert_eq!(json!(rows(&db.client, "cards").await), cards_before);
    assert_eq!(rows(&db.client, "profiles").await, swapped);
}

/// A swap goes through a temporary key: both rows are parked, then moved
/// back, two statements of the same two rows. The plan counts them once,
/// in total and per table, and says which statement is which.
#[tokio::test]
async fn a_row_parked_on_a_temporary_key_is_counted_once() {
    let db = audited_db(
        "CREATE TABLE slots (n int PRIMARY KEY, label text);
         INSERT INTO slots VALUES (1, 'one'), (2, 'two'), (3, 'three');",
        "",
    )
    .await;
    let t = tx(
        &db.client,
        "scheduler",
        "UPDATE slots SET n = 9 WHERE label = 'one';
         UPDATE slots SET n = 1 WHERE label = 'two';
         UPDATE slots SET n = 2 WHERE label = 'one';
         UPDATE slots SET label = 'THREE' WHERE n = 3",
    )
    .await;
    let planned = plan(&db.client, &txids(&[t])).await.unwrap();
    let kinds: Vec<(Option<StatementKind>, Option<i64>)> =
        planned.statements().map(|s| (s.kind, s.rows)).collect();
    assert_eq!(
        kinds,
        vec![
            (Some(StatementKind::Park), Some(2)),
            (Some(StatementKind::Unpark), Some(2)),
            (Some(StatementKind::Restore), Some(1)),
        ],
        "{planned:?}"
    );
    assert_eq!(planned.rows(), 3);
    assert_eq!(planned.per_table()["public.slots"][&Operation::Move], 2);
    assert_eq!(planned.rows_per_table()["public.slots"], 3);
}

/// A swap of two keys while a row of another table was pointed at one of
/// them, in the same transaction, through a foreign key that is neither
/// deferrable nor ON UPDATE CASCADE. Parking the swapped rows on temporary
/// keys would leave that row pointing at no key (the foreign key is checked
/// at the end of each statement), so the plan refuses the cycle up front,
/// naming the foreign key, where the revert used to fail while writing.
/// The same with ON UPDATE CASCADE: the temporary key carries the row
/// pointing at it there and back, so it is used.
#[tokio::test]
async fn a_temporary_key_a_referencing_row_would_lose_is_not_used() {
    let mut db = audited_db(
        "CREATE TABLE slots (n int PRIMARY KEY, label text);
         CREATE TABLE bookings (id int PRIMARY KEY, slot int REFERENCES slots);
         INSERT INTO slots VALUES (1, 'one'), (2, 'two'), (3, 'three');
         INSERT INTO bookings VALUES (10, 3);",
        "",
    )
    .await;
    let t = tx(
        &db.client,
        "scheduler",
        "UPDATE slots SET n = 9 WHERE label = 'one';
         UPDATE slots SET n = 1 WHERE label = 'two';
         UPDATE slots SET n = 2 WHERE label = 'one';
         UPDATE bookings SET slot = 1 WHERE id = 10",
    )
    .await;
    let slots = rows(&db.client, "slots").await;
    let bookings = rows(&db.client, "bookings").await;
    let planned = plan(&db.client, &txids(&[t])).await.unwrap();
    assert_eq!(
        conflict_kinds(&planned),
        vec!["key_cycle", "key_cycle"],
        "{planned:?}"
    );
    assert!(
        planned.conflicts().all(|c| {
            let message = c.conflict.as_ref().unwrap()["message"].as_str().unwrap();
            c.table.as_deref() == Some("public.slots")
                && message.contains("bookings_slot_fkey")
                && message.contains("public.bookings")
        }),
        "{planned:?}"
    );
    let refused = revert(&mut db.client, &txids(&[t])).await;
    assert!(
        matches!(refused, Err(RevertError::Conflicts { .. })),
        "{refused:?}"
    );
    assert_eq!(rows(&db.client, "slots").await, slots);
    assert_eq!(rows(&db.client, "bookings").await, bookings);

    // ON UPDATE CASCADE would carry the booking to the temporary key and
    // back, behind the revert's back: refused too.
    db.client
        .batch_execute(
            "ALTER TABLE bookings DROP CONSTRAINT bookings_slot_fkey;
             ALTER TABLE bookings ADD CONSTRAINT bookings_slot_fkey
                 FOREIGN KEY (slot) REFERENCES slots ON UPDATE CASCADE;",
        )
        .await
        .unwrap();
    let planned = plan(&db.client, &txids(&[t])).await.unwrap();
    assert_eq!(
        conflict_kinds(&planned),
        vec!["key_cycle", "key_cycle"],
        "{planned:?}"
    );
    assert!(
        planned
            .conflicts()
            .all(|c| c.conflict.as_ref().unwrap()["message"]
                .as_str()
                .unwrap()
                .contains("ON UPDATE CASCADE")),
        "{planned:?}"
    );

    // Deferrable (deferred while the revert runs): the booking goes back
    // to its slot, the swapped rows through temporary keys.
    db.client
        .batch_execute(
            "ALTER TABLE bookings DROP CONSTRAINT bookings_slot_fkey;
             ALTER TABLE bookings ADD CONSTRAINT bookings_slot_fkey
                 FOREIGN KEY (slot) REFERENCES slots DEFERRABLE;",
        )
        .await
        .unwrap();
    revert(&mut db.client, &txids(&[t])).await.unwrap();
    assert_eq!(
        json!(rows(&db.client, "slots").await),
        json!([
            {"label": "one", "n": 1},
            {"label": "two", "n": 2},
            {"label": "three", "n": 3}
        ])
    );
    assert_eq!(
        json!(rows(&db.client, "bookings").await),
        json!([{"id": 10, "slot": 3}])
    );
}

/// A numeric key with a negative scale (PostgreSQL 15 and later rounds its
/// values to tens, hundreds...) has room for temporary keys: they step by
/// what the scale keeps, so that none is rounded onto another.
#[tokio::test]
async fn a_numeric_key_with_a_negative_scale_takes_temporary_keys() {
    let mut db = TestDb::new().await;
    let major: i32 = db
        .client
        .query_one("SELECT current_setting('server_version_num')::int / 10000", &[])
        .await
        .unwrap()
        .get(0);
    if major < 15 {
        return;
    }
    db.client
        .batch_execute(
            "CREATE TABLE lots (n numeric(4, -2) PRIMARY KEY, label text);
             INSERT INTO lots VALUES (100, 'one'), (200, 'two'), (9900, 'three');",
        )
        .await
        .unwrap();
    apply_config(&mut db.client, "").await;
    let before = rows(&db.client, "lots").await;
    let t = tx(
        &db.client,
        "scheduler",
        "UPDATE lots SET n = 900 WHERE label = 'one';
         UPDATE lots SET n = 100 WHERE label = 'two';
         UPDATE lots SET n = 200 WHERE label = 'one'",
    )
    .await;
    let planned = plan(&db.client, &txids(&[t])).await.unwrap();
    assert_eq!(planned.conflicts().count(), 0, "{planned:?}");
    let kinds: Vec<Option<StatementKind>> = planned.statements().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        vec![Some(StatementKind::Park), Some(StatementKind::Unpark)],
        "{planned:?}"
    );
    revert(&mut db.client, &txids(&[t])).await.unwrap();
    assert_eq!(rows(&db.client, "lots").await, before);
}

/// A parent's key moved, and its rows in a table that refers to it ON
/// UPDATE CASCADE carried along (the trail has their UPDATEs too), one of
/// them also changed in another column, in one transaction. Moving the
/// parent's key back carries the children's references back before their
/// own statement runs: that statement expects the references the parent's
/// move leaves, where it used to find none of its rows as planned and fail
/// while writing (SQLSTATE 40001). ON UPDATE SET NULL and SET DEFAULT: the
/// children's references are put back after the parent's key.
#[tokio::test]
async fn children_a_parents_key_move_carried_along_go_back_with_it() {
    let mut db = audited_db(
        "CREATE TABLE owners (id int PRIMARY KEY, name text);
         CREATE TABLE pets (id int PRIMARY KEY, owner int REFERENCES owners ON UPDATE CASCADE, name text);
         CREATE TABLE cars (id int PRIMARY KEY, owner int REFERENCES owners ON UPDATE SET NULL, name text);
         CREATE TABLE bikes (id int PRIMARY KEY, owner int DEFAULT 2 REFERENCES owners ON UPDATE SET DEFAULT, name text);
         INSERT INTO owners VALUES (1, 'ann'), (2, 'bob'), (3, 'cy');
         INSERT INTO pets VALUES (10, 1, 'rex'), (11, 1, 'tom'), (12, 3, 'kit');
         INSERT INTO cars VALUES (20, 1, 'van'), (21, 3, 'mini');
         INSERT INTO bikes VALUES (30, 1, 'bmx'), (31, 3, 'road');",
        "",
    )
    .await;
    let tables = ["owners", "pets", "cars", "bikes"];
    let mut before = Vec::new();
    for table in tables {
        before.push(rows(&db.client, table).await);
    }
    let t = tx(
        &db.client,
        "clerk",
        "UPDATE owners SET id = 7 WHERE id = 1;
         UPDATE owners SET id = 8, name = 'cyd' WHERE id = 3;
         UPDATE pets SET name = 'rexy' WHERE id = 10",
    )
    .await;
    // The trail has the children's changes the foreign keys made.
    let carried: i64 = db
        .client
        .query_one(
            "SELECT count(*) FROM pgtrail.change WHERE txid = $1 AND op = 'U'",
            &[&t],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(carried, 2 + 4 + 2 + 2, "the cascaded UPDATEs are in the trail");
    let planned = plan(&db.client, &txids(&[t])).await.unwrap();
    assert_eq!(planned.conflicts().count(), 0, "{planned:?}");
    revert(&mut db.client, &txids(&[t])).await.unwrap();
    for (table, before) in tables.iter().zip(&before) {
        assert_eq!(&rows(&db.client, table).await, before, "{table}");
    }

    // A change outside the set is still a conflict: a pet whose owner the
    // cascade set, renamed since.
    let t = tx(&db.client, "clerk", "UPDATE owners SET id = 7 WHERE id = 1").await;
    tx(&db.client, "vet", "UPDATE pets SET owner = 2 WHERE id = 11").await;
    let planned = plan(&db.client, &txids(&[t])).await.unwrap();
    assert_eq!(conflict_kinds(&planned), vec!["later_change"], "{planned:?}");
}

/// The same through a self-reference: a row's key moved, the rows that
/// refer to it carried along ON UPDATE CASCADE, all back with it.
#[tokio::test]
async fn rows_a_self_referencing_key_move_carried_along_go_back_with_it() {
    let mut db = audited_db(
        "CREATE TABLE staff (id int PRIMARY KEY, boss int REFERENCES staff ON UPDATE CASCADE, name text);
         INSERT INTO staff VALUES (1, NULL, 'ann'), (2, 1, 'bob'), (3, 1, 'cy'), (4, 3, 'di');",
        "",
    )
    .await;
    let before = rows(&db.client, "staff").await;
    let t = tx(
        &db.client,
        "hr",
        "UPDATE staff SET id = 9 WHERE id = 1;
         UPDATE staff SET name = 'bobby' WHERE id = 2",
    )
    .await;
    let planned = plan(&db.client, &txids(&[t])).await.unwrap();
    assert_eq!(planned.conflicts().count(), 0, "{planned:?}");
    revert(&mut db.client, &txids(&[t])).await.unwrap();
    assert_eq!(rows(&db.client, "staff").await, before);
}

/// A composite foreign key ON UPDATE CASCADE whose parent key changed in
/// one of its two columns.
#[tokio::test]
async fn a_composite_reference_carried_along_goes_back_with_its_parent() {
    let mut db = audited_db(
        "CREATE TABLE rooms (building text, n int, PRIMARY KEY (building, n));
         CREATE TABLE desks (id int PRIMARY KEY, building text, n int,
                             FOREIGN KEY (building, n) REFERENCES rooms ON UPDATE CASCADE);
         INSERT INTO rooms VALUES ('a', 1), ('a', 2);
         INSERT INTO desks VALUES (10, 'a', 1), (11, 'a', 1), (12, 'a', 2);",
        "",
    )
    .await;
    let before = (rows(&db.client, "rooms").await, rows(&db.client, "desks").await);
    let t = tx(&db.client, "facilities", "UPDATE rooms SET n = 5 WHERE n = 1").await;
    let planned = plan(&db.client, &txids(&[t])).await.unwrap();
    assert_eq!(planned.conflicts().count(), 0, "{planned:?}");
    revert(&mut db.client, &txids(&[t])).await.unwrap();
    assert_eq!(
        (rows(&db.client, "rooms").await, rows(&db.client, "desks").await),
        before
    );
}

/// A row whose key the selection moved away and back again, nothing else
/// changed: no statement is needed, and the plan still names both changes
/// (as NOTHING, with the reason), so a reviewer sees every selected change
/// accounted for. Reverting it writes no row and leaves the table as it is.
#[tokio::test]
async fn a_key_moved_away_and_back_is_listed_as_nothing_to_undo() {
    let mut db = audited_db(
        "CREATE TABLE pair (a int, b int, v text, PRIMARY KEY (a, b));
         INSERT INTO pair VALUES (2, 2, 'c'), (7, 7, 'x');",
        "",
    )
    .await;
    let there = tx(&db.client, "batch", "UPDATE pair SET b = 1 WHERE a = 2 AND b = 2").await;
    let back = tx(
        &db.client,
        "batch",
        "UPDATE pair SET b = 2 WHERE a = 2 AND b = 1; UPDATE pair SET v = 'y' WHERE a = 7",
    )
    .await;
    let before = rows(&db.client, "pair").await;

    let planned = plan(&db.client, &txids(&[there, back])).await.unwrap();
    assert_eq!(planned.conflicts().count(), 0, "{planned:?}");
    let nothing: Vec<_> = planned.of(Operation::Nothing).collect();
    assert_eq!(nothing.len(), 1, "{planned:?}");
    assert_eq!(nothing[0].key, Some(json!({"a": 2, "b": 2})));
    assert_eq!(nothing[0].change_ids.len(), 2, "{planned:?}");
    assert!(
        nothing[0].note.as_deref().unwrap_or("").contains("key and back"),
        "{planned:?}"
    );
    let changes: Vec<i64> = column(
        &db.client,
        &format!("SELECT id FROM pgtrail.changes WHERE txid IN ({there}, {back}) ORDER BY id"),
    )
    .await;
    assert_eq!(
        planned.change_ids(),
        changes,
        "every selected change is accounted for"
    );
    assert_eq!(
        planned.rows(),
        1,
        "only the other row's label is written back: {planned:?}"
    );

    revert(&mut db.client, &txids(&[there, back])).await.unwrap();
    let mut expected = before;
    for r in &mut expected {
        if r["a"] == json!(7) {
            r["v"] = json!("x");
        }
    }
    assert_eq!(rows(&db.client, "pair").await, expected);
}
