//! Upgrades: a database installed with an earlier released pgtrail keeps its
//! whole trail, with its context, when a newer pgtrail is applied.
//!
//! `crates/capture/sql/released/<version>.sql` holds the install script of
//! every released version, frozen when it was released (regenerate nothing:
//! add a new file at each release). Each is installed, used, and upgraded.

use pgtrail::config::Config;
use pgtrail::plan::{Problem, inspect};
use pgtrail_testkit::TestDb;

use crate::support::{apply, changes, column, count};

const RELEASED: &[(&str, &str)] = &[
    ("0.1.0", include_str!("../../../capture/sql/released/0.1.0.sql")),
    ("0.2.0", include_str!("../../../capture/sql/released/0.2.0.sql")),
    ("0.3.0", include_str!("../../../capture/sql/released/0.3.0.sql")),
    ("0.4.0", include_str!("../../../capture/sql/released/0.4.0.sql")),
    ("0.5.0", include_str!("../../../capture/sql/released/0.5.0.sql")),
    ("0.6.0", include_str!("../../../capture/sql/released/0.6.0.sql")),
    ("0.7.0", include_str!("../../../capture/sql/released/0.7.0.sql")),
    ("0.8.0", include_str!("../../../capture/sql/released/0.8.0.sql")),
    ("0.9.0", include_str!("../../../capture/sql/released/0.9.0.sql")),
    ("0.10.0", include_str!("../../../capture/sql/released/0.10.0.sql")),
    ("0.11.0", include_str!("../../../capture/sql/released/0.11.0.sql")),
    ("0.12.0", include_str!("../../../capture/sql/released/0.12.0.sql")),
    ("0.13.0", include_str!("../../../capture/sql/released/0.13.0.sql")),
    ("0.14.0", include_str!("../../../capture/sql/released/0.14.0.sql")),
    ("0.15.0", include_str!("../../../capture/sql/released/0.15.0.sql")),
    ("0.16.0", include_str!("../../../capture/sql/released/0.16.0.sql")),
    ("0.17.0", include_str!("../../../capture/sql/released/0.17.0.sql")),
];

#[tokio::test]
async fn every_released_install_upgrades_to_this_one_and_keeps_the_trail() {
    for (version, script) in RELEASED {
        let mut db = TestDb::new().await;
        db.client
            .batch_execute("CREATE TABLE users (id serial PRIMARY KEY, email text, password_hash text)")
            .await
            .unwrap();
        // Install the released version the way `pgtrail sql` users do, then use it.
        db.client
            .batch_execute(&format!("BEGIN; {script} COMMIT;"))
            .await
            .unwrap_or_else(|e| panic!("released {version} installs: {e:?}"));
        db.client
            .batch_execute(
                "SELECT pgtrail.attach('users', '{id}', 'primary_key', 'diff', '{}', '{password_hash}');
                 BEGIN;
                 SELECT pgtrail.set_context(actor_id => '1', actor_name => 'ann', reason => 'before the upgrade');
                 INSERT INTO users (email, password_hash) VALUES ('a@x', 'secret');
                 UPDATE users SET email = 'b@x';
                 COMMIT;",
            )
            .await
            .unwrap();
        let before = changes(&db.client, "users").await;
        assert_eq!(before.len(), 2);
        // 0.3.0's roles were the server's: someone reads this trail through pgtrail_reader.
        let auditor = format!("auditor_{}", db.name().trim_start_matches("pgtrail_test_"));
        if *version == "0.3.0" {
            db.client
                .batch_execute(&format!("CREATE ROLE {auditor} LOGIN IN ROLE pgtrail_reader"))
                .await
                .unwrap();
        }

        let toml = "[tables.\"public.users\"]\nredact_columns = [\"password_hash\"]\n";
        apply(&mut db.client, toml).await;
        let config = Config::parse(toml, "pgtrail.toml").unwrap();
        let problems = inspect(&db.client, &config).await.unwrap().3;
        assert!(
            !problems
                .iter()
                .any(|p| matches!(p, Problem::StaleInstall { .. } | Problem::NotInstalled)),
            "{version}: {problems:?}"
        );

        if *version == "0.3.0" {
            moved_to_database_roles(&db, &auditor).await;
        }

        let after = changes(&db.client, "users").await;
        assert_eq!(after.len(), 2, "{version}: the trail survived the upgrade");
        for (old, new) in before.iter().zip(&after) {
            assert_eq!(
                (old.id, &old.op, &old.pk, &old.new),
                (new.id, &new.op, &new.pk, &new.new)
            );
            assert_eq!(new.actor_name.as_deref(), Some("ann"));
            assert_eq!(new.reason.as_deref(), Some("before the upgrade"));
        }
        db.client
            .batch_execute("UPDATE users SET email = 'c@x'")
            .await
            .unwrap();
        assert_eq!(
            changes(&db.client, "users").await.len(),
            3,
            "{version}: capture goes on"
        );
        assert_eq!(
            count(&db.client, "SELECT count(*) FROM pgtrail.migration").await,
            pgtrail::capture::MIGRATIONS.len() as i64,
            "{version}: every migration ran once"
        );
        // What the old version recorded is found by actor, like the new.
        let by_actor: Vec<i64> = column(
            &db.client,
            "SELECT id FROM pgtrail.actor_changes('ann', '-infinity', 'infinity') ORDER BY id",
        )
        .await;
        let first_two: Vec<i64> = before.iter().map(|c| c.id).collect();
        assert_eq!(by_actor, first_two, "{version}: ann's changes, by actor");
        // The upgraded trail can be sealed and verified.
        let key = pgtrail::integrity::crypto::SignerKey::generate("upgrade").unwrap();
        let sealed = pgtrail::integrity::seal(&mut db.client, &key, &mut |_| {})
            .await
            .unwrap();
        assert_eq!(sealed.tree_size, 3, "{version}: the old changes are sealed too");
        let options = pgtrail::integrity::VerifyOptions {
            public_key: Some(key.verifier()),
            checkpoint: None,
            ..Default::default()
        };
        let report = pgtrail::integrity::verify(&mut db.client, &options)
            .await
            .unwrap();
        assert!(report.intact(), "{version}: {:?}", report.problems);
    }
}

/// After the upgrade from 0.3.0 the trail is this database's: its owner role
/// owns it, the auditor who read it through pgtrail_reader reads it through
/// the database's reader role, and the server-wide roles have nothing here.
async fn moved_to_database_roles(db: &TestDb, auditor: &str) {
    let owner: String = db
        .client
        .query_one(
            "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'pgtrail'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, format!("pgtrail_{}_owner", db.name()));
    let row = db
        .client
        .query_one(
            "SELECT has_table_privilege('pgtrail_reader', 'pgtrail.change', 'SELECT'),
                    has_table_privilege('pgtrail_owner', 'pgtrail.change', 'SELECT'),
                    has_table_privilege('pgtrail_owner', 'public.users', 'SELECT'),
                    has_table_privilege($1, 'pgtrail.change', 'SELECT'),
                    pg_has_role($1, pgtrail.role_name('reader'), 'MEMBER')",
            &[&auditor],
        )
        .await
        .unwrap();
    let rights: Vec<bool> = (0..5).map(|i| row.get(i)).collect();
    assert_eq!(
        rights,
        [false, false, false, true, true],
        "reader, owner, owner on users, auditor, auditor's role"
    );
    let _ = db
        .client
        .batch_execute(&format!("DROP OWNED BY {auditor}; DROP ROLE {auditor}"))
        .await;
}

/// A trail of more than 100,000 changes upgraded from 0.3.0 the way `pgtrail
/// sql` users do (no `apply` to build its new indexes concurrently): its old
/// indexes, which held whole keys and actors, are gone at once, so a row of
/// kilobytes in a table without a key and an actor of kilobytes are recorded
/// before the new indexes exist; `apply` builds them later, and the change is
/// found by key and by actor.
#[tokio::test]
async fn a_large_trail_upgraded_without_apply_takes_any_write_before_its_new_indexes() {
    let (_, script) = RELEASED.iter().find(|(v, _)| *v == "0.3.0").unwrap();
    let mut db = TestDb::new().await;
    db.client
        .batch_execute(&format!(
            "CREATE TABLE notes (body text);
             BEGIN; {script} COMMIT;
             SELECT pgtrail.attach('notes', '{{}}', 'full_row', 'diff', '{{}}', '{{}}');"
        ))
        .await
        .unwrap();
    db.behind_the_triggers(
        "INSERT INTO pgtrail.change (txid, ctx, table_id, op, changed_at, pk)
         SELECT 1, 0, 1, 'I', now(), jsonb_build_object('body', g::text) FROM generate_series(1, 100001) AS g",
    )
    .await;
    db.client
        .batch_execute(&format!("BEGIN; {} COMMIT;", pgtrail::capture::install_script()))
        .await
        .unwrap();
    let pending: Vec<String> = column(&db.client, "SELECT name FROM pgtrail.index_build ORDER BY name").await;
    assert_eq!(pending.len(), 4, "the new indexes wait for apply: {pending:?}");

    let actor = "ann ".repeat(2_000);
    db.client
        .batch_execute(&format!(
            "BEGIN;
             SELECT pgtrail.set_context(actor_name => '{actor}');
             INSERT INTO notes SELECT string_agg(md5(i::text), '') FROM generate_series(1, 150) AS i;
             COMMIT;"
        ))
        .await
        .expect("an incompressible 4.8 kB row without a key and an 8 kB actor are recorded");
    let key: serde_json::Value = db
        .client
        .query_one("SELECT to_jsonb(n) FROM notes AS n", &[])
        .await
        .unwrap()
        .get(0);

    apply(&mut db.client, "[tables.\"public.notes\"]\n").await;
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM pgtrail.index_build").await,
        0
    );
    let history: i64 = db
        .client
        .query_one("SELECT count(*) FROM pgtrail.history('notes', $1)", &[&key])
        .await
        .unwrap()
        .get(0);
    assert_eq!(history, 1, "found by its key");
    let by_actor: i64 = db
        .client
        .query_one(
            "SELECT count(*) FROM pgtrail.actor_changes($1, '-infinity', 'infinity')",
            &[&actor],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(by_actor, 1, "found by its actor");
}
