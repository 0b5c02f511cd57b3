//! Capture gaps: "a DISABLE TRIGGER silently opens a hole". Every DDL that
//! touches an audited table or its capture triggers is recorded with who,
//! when and the command, and the periods in which capture was off are
//! reported by `pgtrail.capture_gaps` and `verify`.

use pgtrail::integrity::{self, Problem, VerifyOptions};

use crate::support::{apply, audited_db, count};

const SHOP: &str = "CREATE TABLE accounts (id integer PRIMARY KEY, email text, note text);
                    CREATE TABLE sessions (id integer PRIMARY KEY);";
const CONFIG: &str = "[capture]\ninclude = [\"accounts\", \"sessions\"]\n";

async fn events(db: &pgtrail_testkit::TestDb) -> Vec<(String, String, String)> {
    db.client
        .query(
            "SELECT command_tag, detail ->> 'capture', detail ->> 'command' FROM pgtrail.ddl_event
             WHERE action IN ('ddl', 'table_dropped') ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test]
async fn a_disabled_capture_trigger_is_recorded_and_reported_as_a_gap() {
    let mut db = audited_db(SHOP, CONFIG).await;
    let installed = events(&db).await.len();
    db.client
        .batch_execute(
            "ALTER TABLE accounts DISABLE TRIGGER pgtrail_capture_insert;
             INSERT INTO accounts VALUES (1, 'unseen@example.com');
             ALTER TABLE accounts ENABLE TRIGGER pgtrail_capture_insert;
             INSERT INTO accounts VALUES (2, 'seen@example.com');",
        )
        .await
        .unwrap();
    let recorded: Vec<(String, String, bool)> = events(&db).await[installed..]
        .iter()
        .map(|(tag, capture, command)| {
            (
                tag.clone(),
                capture.clone(),
                command.contains("DISABLE TRIGGER pgtrail_capture_insert"),
            )
        })
        .collect();
    assert_eq!(
        recorded,
        [
            ("ALTER TABLE".to_string(), "off".to_string(), true),
            ("ALTER TABLE".to_string(), "on".to_string(), true),
        ],
        "each with the command that ran (the whole query string, as the client sent it)"
    );
    let gap = db
        .client
        .query_one(
            "SELECT table_name, off_until IS NOT NULL, turned_off_by = session_user, turned_off_with
             FROM pgtrail.capture_gaps",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(gap.get::<_, String>(0), "accounts");
    assert!(gap.get::<_, bool>(1) && gap.get::<_, bool>(2));
    assert!(gap.get::<_, String>(3).contains("DISABLE TRIGGER"));

    let report = integrity::verify(&mut db.client, &VerifyOptions::default())
        .await
        .unwrap();
    assert!(
        matches!(&report.problems[..], [Problem::CaptureGap { table, until: Some(_), .. }] if table == "public.accounts"),
        "{:?}",
        report.problems
    );
}

#[tokio::test]
async fn taking_pgtrails_install_lock_does_not_excuse_a_gap() {
    // The advisory lock number is public (any role may take it); only
    // pgtrail's own functions can say that a trigger change is theirs.
    let db = audited_db(SHOP, CONFIG).await;
    db.client
        .batch_execute(&format!(
            "BEGIN;
             SELECT pg_advisory_xact_lock({});
             ALTER TABLE accounts DISABLE TRIGGER pgtrail_capture_update;
             UPDATE accounts SET email = 'unseen@example.com';
             ALTER TABLE accounts ENABLE TRIGGER pgtrail_capture_update;
             COMMIT;",
            pgtrail::plan::ADVISORY_LOCK
        ))
        .await
        .unwrap();
    assert_eq!(
        count(
            &db.client,
            "SELECT count(*) FROM pgtrail.capture_gaps WHERE table_name = 'accounts'"
        )
        .await,
        1
    );
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM pgtrail.managing").await,
        0
    );
}

#[tokio::test]
async fn a_partition_losing_its_capture_triggers_is_a_gap_too() {
    let db = audited_db(
        "CREATE TABLE events (id integer, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
         CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
         CREATE TABLE events_2027 PARTITION OF events FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');",
        "[capture]\ninclude = [\"events\"]\n",
    )
    .await;
    db.client
        .batch_execute(
            "ALTER TABLE events_2026 DISABLE TRIGGER pgtrail_capture_insert;
             INSERT INTO events VALUES (1, '2026-05-01');
             ALTER TABLE events_2026 ENABLE TRIGGER pgtrail_capture_insert;
             DROP TRIGGER pgtrail_capture_delete ON events_2027;",
        )
        .await
        .unwrap();
    let gaps: Vec<(String, bool)> = db
        .client
        .query(
            "SELECT table_name, off_until IS NULL FROM pgtrail.capture_gaps ORDER BY off_from",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        gaps,
        [("events".to_string(), false), ("events".to_string(), true)],
        "one closed gap (2026's insert trigger), one still open (2027's delete trigger dropped)"
    );
}

#[tokio::test]
async fn dropping_triggers_columns_or_the_table_is_recorded() {
    let db = audited_db(SHOP, CONFIG).await;
    let installed = events(&db).await.len();
    db.client
        .batch_execute(
            "DROP TRIGGER pgtrail_capture_delete ON accounts;
             ALTER TABLE accounts DROP COLUMN note;
             ALTER TABLE accounts RENAME COLUMN email TO mail;
             DROP TABLE sessions;",
        )
        .await
        .unwrap();
    let recorded: Vec<(String, String)> = events(&db).await[installed..]
        .iter()
        .map(|(tag, capture, _)| (tag.clone(), capture.clone()))
        .collect();
    // DROP COLUMN is seen twice: as a dropped object and as an ALTER TABLE.
    let expected: Vec<(String, String)> = [
        ("DROP TRIGGER", "off"),
        ("ALTER TABLE", "off"),
        ("ALTER TABLE", "off"),
        ("ALTER TABLE", "off"),
        ("DROP TABLE", "dropped"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(recorded, expected);
    let open: Vec<String> = db
        .client
        .query(
            "SELECT table_name FROM pgtrail.capture_gaps WHERE off_until IS NULL ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // A dropped table can lose no more changes: no gap, and it is detached.
    assert_eq!(open, ["accounts"]);
    assert_eq!(
        count(
            &db.client,
            "SELECT count(*) FROM pgtrail.audited_table WHERE table_name = 'sessions' AND detached_at IS NOT NULL"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn apply_and_detach_open_no_gap() {
    let mut db = audited_db(SHOP, CONFIG).await;
    // A repair by apply (drop and re-create in one transaction), then a
    // table leaving the config: capture stops on purpose.
    db.client
        .batch_execute("DROP TRIGGER pgtrail_capture_truncate ON accounts")
        .await
        .unwrap();
    apply(&mut db.client, CONFIG).await;
    apply(&mut db.client, "[capture]\ninclude = [\"accounts\"]\n").await;
    let gaps: Vec<(String, bool)> = db
        .client
        .query(
            "SELECT table_name, off_until IS NULL FROM pgtrail.capture_gaps",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // Only the hand-made drop, closed by the repair.
    assert_eq!(gaps, [("accounts".to_string(), false)]);
    assert_eq!(
        count(
            &db.client,
            "SELECT count(*) FROM pgtrail.ddl_event WHERE action = 'detached'"
        )
        .await,
        1
    );
}

/// The issue-11 evasion: capture switched off under another name (or in
/// another schema, or on a renamed partition) and the name put back, all in
/// one transaction. The DDL watch follows the table, not its name: the gap
/// is reported, and `verify` fails on it.
#[tokio::test]
async fn switching_capture_off_under_another_name_is_still_a_gap() {
    let scenarios: &[(&str, &str, &str)] = &[
        (
            "renamed",
            "CREATE TABLE accounts (id integer PRIMARY KEY, email text);",
            "BEGIN;
             ALTER TABLE accounts RENAME TO accounts_tmp;
             ALTER TABLE accounts_tmp DISABLE TRIGGER ALL;
             INSERT INTO accounts_tmp VALUES (1, 'unseen@example.com');
             UPDATE accounts_tmp SET email = 'still-unseen@example.com';
             ALTER TABLE accounts_tmp RENAME COLUMN email TO mail;
             ALTER TABLE accounts_tmp RENAME COLUMN mail TO email;
             ALTER TABLE accounts_tmp ENABLE TRIGGER ALL;
             ALTER TABLE accounts_tmp RENAME TO accounts;
             COMMIT;",
        ),
        (
            "moved to another schema",
            "CREATE TABLE accounts (id integer PRIMARY KEY, email text); CREATE SCHEMA hide;",
            "BEGIN;
             ALTER TABLE accounts SET SCHEMA hide;
             ALTER TABLE hide.accounts DISABLE TRIGGER ALL;
             INSERT INTO hide.accounts VALUES (1, 'unseen@example.com');
             ALTER TABLE hide.accounts ENABLE TRIGGER ALL;
             ALTER TABLE hide.accounts SET SCHEMA public;
             COMMIT;",
        ),
        (
            "a renamed partition of a renamed table",
            "CREATE TABLE accounts (id integer, email text, PRIMARY KEY (id)) PARTITION BY RANGE (id);
             CREATE TABLE accounts_low PARTITION OF accounts FOR VALUES FROM (0) TO (100);",
            "BEGIN;
             ALTER TABLE accounts RENAME TO accounts_tmp;
             ALTER TABLE accounts_low RENAME TO low_tmp;
             ALTER TABLE low_tmp DISABLE TRIGGER ALL;
             INSERT INTO low_tmp VALUES (1, 'unseen@example.com');
             ALTER TABLE low_tmp ENABLE TRIGGER ALL;
             ALTER TABLE low_tmp RENAME TO accounts_low;
             ALTER TABLE accounts_tmp RENAME TO accounts;
             COMMIT;",
        ),
    ];
    for (what, schema, evasion) in scenarios {
        let mut db = audited_db(schema, "[capture]\ninclude = [\"accounts\"]\n").await;
        db.client
            .batch_execute(evasion)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e:?}"));
        let gaps: Vec<(String, bool)> = db
            .client
            .query(
                "SELECT table_schema || '.' || table_name, off_until IS NOT NULL FROM pgtrail.capture_gaps",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(gaps, [("public.accounts".to_string(), true)], "{what}");
        let report = integrity::verify(&mut db.client, &VerifyOptions::default())
            .await
            .unwrap();
        assert!(
            matches!(&report.problems[..], [Problem::CaptureGap { table, .. }] if table == "public.accounts"),
            "{what}: {:?}",
            report.problems
        );
        assert_eq!(
            count(&db.client, "SELECT count(*) FROM pgtrail.change").await,
            0,
            "{what}: nothing was captured meanwhile"
        );
        // The column renames under the other name were recorded too.
        if *what == "renamed" {
            assert_eq!(
                count(
                    &db.client,
                    "SELECT count(*) FROM pgtrail.schema_change WHERE kind = 'rename'"
                )
                .await,
                2
            );
        }
    }
}
