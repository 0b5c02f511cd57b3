//! Installing: `apply` is all or nothing, safe to run twice and from two
//! places at once, and a config that does not fit the database changes nothing.

use std::str::FromStr;

use pgtrail::config::Config;
use pgtrail::plan::{PlanError, TableAction};
use pgtrail_testkit::TestDb;

use crate::support::{audited_db, changes, count};

const SCHEMA: &str = "
    CREATE TABLE users (id serial PRIMARY KEY, email text, updated_at timestamptz);
    CREATE TABLE sessions (id text PRIMARY KEY, user_id int);
    CREATE TABLE assessments_audit (id serial PRIMARY KEY, note text);";

const TRIGGERS: &str = "
    SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgtrail\\_capture\\_%' AND NOT tgisinternal";

#[tokio::test]
async fn apply_twice_changes_nothing_and_keeps_the_trail() {
    let config = "[capture]\nexclude = [\"sessions\", \"*_audit\"]\n";
    let mut db = audited_db(SCHEMA, config).await;
    db.client
        .batch_execute("INSERT INTO users (email) VALUES ('a')")
        .await
        .unwrap();
    let ids_before: Vec<i32> = ids(&db).await;

    let parsed = Config::parse(config, "pgtrail.toml").unwrap();
    let report = pgtrail::plan::apply(&mut db.client, &parsed).await.unwrap();
    assert_eq!(
        report.previous_version.as_deref(),
        Some(pgtrail::capture::VERSION)
    );
    assert!(!report.installed, "nothing to reinstall");
    assert!(report.tables.is_empty(), "nothing to attach: {:?}", report.tables);
    assert_eq!(report.unchanged, 1);
    assert_eq!(ids(&db).await, ids_before, "table ids are stable across applies");
    assert_eq!(
        count(&db.client, TRIGGERS).await,
        pgtrail::capture::TRIGGER_NAMES.len() as i64
    );
    db.client
        .batch_execute("UPDATE users SET email = 'b'")
        .await
        .unwrap();
    assert_eq!(changes(&db.client, "users").await.len(), 2);
}

async fn ids(db: &TestDb) -> Vec<i32> {
    db.client
        .query("SELECT id FROM pgtrail.audited_table ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn excluding_a_table_later_detaches_it_and_keeps_its_trail() {
    let mut db = audited_db(SCHEMA, "").await;
    db.client
        .batch_execute("INSERT INTO sessions VALUES ('s1', 1)")
        .await
        .unwrap();
    let config = Config::parse("[capture]\nexclude = [\"sessions\"]\n", "pgtrail.toml").unwrap();
    let report = pgtrail::plan::apply(&mut db.client, &config).await.unwrap();
    assert!(
        report
            .tables
            .contains(&("public".into(), "sessions".into(), TableAction::Detached))
    );
    db.client
        .batch_execute("INSERT INTO sessions VALUES ('s2', 1)")
        .await
        .unwrap();
    let trail = changes(&db.client, "sessions").await;
    assert_eq!(
        trail.len(),
        1,
        "the old trail stays, the new change is not captured"
    );
    assert_eq!(
        count(
            &db.client,
            &format!("{TRIGGERS} AND tgrelid = 'sessions'::regclass")
        )
        .await,
        0
    );
}

#[tokio::test]
async fn two_applies_at_once_both_succeed_and_install_once() {
    let db = TestDb::new().await;
    db.client.batch_execute(SCHEMA).await.unwrap();
    let mut first = db.connect().await;
    let mut second = db.connect().await;
    let config = Config::parse("", "pgtrail.toml").unwrap();
    let (a, b) = tokio::join!(
        pgtrail::plan::apply(&mut first, &config),
        pgtrail::plan::apply(&mut second, &config)
    );
    a.expect("first apply");
    b.expect("second apply");
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM pgtrail.migration").await,
        pgtrail::capture::MIGRATIONS.len() as i64
    );
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM pgtrail.audited_table").await,
        3
    );
    assert_eq!(
        count(&db.client, TRIGGERS).await,
        3 * pgtrail::capture::TRIGGER_NAMES.len() as i64
    );
}

#[tokio::test]
async fn a_config_naming_a_missing_table_or_column_is_refused_and_nothing_changes() {
    let mut db = TestDb::new().await;
    db.client.batch_execute(SCHEMA).await.unwrap();
    let config = r#"
[capture]
include = ["*"]

[tables."public.userz"]
key = ["id"]

[tables."public.users"]
key = ["emial"]
redact_columns = ["password_hash"]
"#;
    let parsed = Config::parse(config, "pgtrail.toml").unwrap();
    let error = pgtrail::plan::apply(&mut db.client, &parsed).await.unwrap_err();
    let PlanError::Config(problems) = &error else {
        panic!("expected config problems, got {error}")
    };
    let text = error.to_string();
    assert_eq!(problems.len(), 3, "{text}");
    assert!(
        text.contains("pgtrail.toml:5:")
            && text.contains("userz")
            && text.contains("did you mean `public.users`?"),
        "{text}"
    );
    assert!(
        text.contains("emial") && text.contains("did you mean `email`?"),
        "{text}"
    );
    assert!(text.contains("password_hash"), "{text}");
    let installed = count(
        &db.client,
        "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgtrail'",
    )
    .await;
    assert_eq!(installed, 0, "nothing may be half-applied");
    assert_eq!(count(&db.client, TRIGGERS).await, 0);
}

#[tokio::test]
async fn an_include_or_exclude_entry_naming_no_table_is_refused_unless_tables_attach_later() {
    let mut db = TestDb::new().await;
    db.client.batch_execute(SCHEMA).await.unwrap();
    // A typo in exclude would capture the very table meant to stay out.
    let config = "[capture]\ninclude = [\"users\", \"sesions_*\"]\nexclude = [\"public.sesions\"]\n";
    let parsed = Config::parse(config, "pgtrail.toml").unwrap();
    let error = pgtrail::plan::apply(&mut db.client, &parsed).await.unwrap_err();
    let PlanError::Config(problems) = &error else {
        panic!("expected config problems, got {error}")
    };
    let text = error.to_string();
    assert_eq!(problems.len(), 1, "a glob may match nothing: {text}");
    assert!(
        text.contains("capture.exclude names `public.sesions`")
            && text.contains("did you mean `public.sessions`?"),
        "{text}"
    );
    assert_eq!(
        count(
            &db.client,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgtrail'"
        )
        .await,
        0
    );
    // With auto_attach the name may be a table a later migration creates.
    let later = "[capture]\ninclude = [\"users\", \"invoices\"]\nauto_attach = true\n";
    pgtrail::plan::apply(&mut db.client, &Config::parse(later, "pgtrail.toml").unwrap())
        .await
        .expect("accepted with auto_attach");
}

#[tokio::test]
async fn a_failure_halfway_leaves_nothing_behind() {
    let mut db = TestDb::new().await;
    db.client.batch_execute(SCHEMA).await.unwrap();
    // The last table's trigger cannot be created: by then the schema is
    // installed and the other tables are attached, and all of it must go.
    db.client
        .batch_execute(
            "CREATE TABLE zzz_last (id int PRIMARY KEY);
             CREATE FUNCTION refuse_zzz() RETURNS event_trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF EXISTS (SELECT FROM pg_event_trigger_ddl_commands() WHERE object_identity LIKE '%zzz_last%') THEN
                     RAISE EXCEPTION 'no triggers on zzz_last today';
                 END IF;
             END $$;
             CREATE EVENT TRIGGER refuse_zzz ON ddl_command_end WHEN TAG IN ('CREATE TRIGGER')
                 EXECUTE FUNCTION refuse_zzz();",
        )
        .await
        .unwrap();
    let config = Config::parse("", "pgtrail.toml").unwrap();
    let error = pgtrail::plan::apply(&mut db.client, &config).await.unwrap_err();
    assert!(
        format!("{error:?}").contains("no triggers on zzz_last today"),
        "{error:?}"
    );
    let installed = count(
        &db.client,
        "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgtrail'",
    )
    .await;
    assert_eq!(installed, 0, "the install must be all or nothing");
    assert_eq!(count(&db.client, TRIGGERS).await, 0);
}

#[tokio::test]
async fn ignoring_a_key_column_is_refused() {
    let mut db = TestDb::new().await;
    db.client.batch_execute(SCHEMA).await.unwrap();
    let bad = Config::parse("[capture]\nignore_columns = [\"id\"]\n", "pgtrail.toml").unwrap();
    let error = pgtrail::plan::apply(&mut db.client, &bad).await.unwrap_err();
    assert!(error.to_string().contains("part of the row key"), "{error}");
}

#[tokio::test]
async fn the_migration_file_applies_with_psql_and_matches_apply() {
    let db = TestDb::new().await;
    db.client.batch_execute(SCHEMA).await.unwrap();
    let config = Config::parse(
        "[capture]\nexclude = [\"sessions\"]\nignore_columns = [\"updated_at\"]\n",
        "x",
    )
    .unwrap();
    let catalog = pgtrail::catalog::Catalog::load(&db.client, &config.capture.schemas)
        .await
        .unwrap();
    let desired = pgtrail::plan::resolve(&config, &catalog).unwrap();
    let script = pgtrail::plan::render(&pgtrail::plan::steps(&desired));

    let psql = pgtrail_testkit::program("psql");
    let mut child = std::process::Command::new(psql)
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "--single-transaction",
            "-d",
            db.url(),
            "-f",
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("psql runs");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    assert_eq!(
        count(&db.client, TRIGGERS).await,
        2 * pgtrail::capture::TRIGGER_NAMES.len() as i64
    );
    db.client
        .batch_execute("INSERT INTO users (email) VALUES ('x'); UPDATE users SET updated_at = now();")
        .await
        .unwrap();
    assert_eq!(changes(&db.client, "users").await.len(), 1);
}

#[tokio::test]
async fn a_database_owner_without_superuser_rights_installs_and_captures() {
    // As on managed services: the role that owns the database and its tables
    // installs pgtrail; only auto_attach (an event trigger) needs more.
    let db = TestDb::new().await;
    let role = format!("owner_{}", db.name().trim_start_matches("pgtrail_test_"));
    db.client
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN; ALTER DATABASE {} OWNER TO {role}; ALTER SCHEMA public OWNER TO {role};",
            db.name()
        ))
        .await
        .unwrap();
    let mut config = tokio_postgres::Config::from_str(db.url()).unwrap();
    config.user(&role);
    let (mut owner, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    owner.batch_execute(SCHEMA).await.unwrap();
    let parsed = Config::parse("", "pgtrail.toml").unwrap();
    pgtrail::plan::apply(&mut owner, &parsed)
        .await
        .expect("a database owner can install");
    owner
        .batch_execute("INSERT INTO users (email) VALUES ('a')")
        .await
        .unwrap();
    assert_eq!(changes(&owner, "users").await.len(), 1);

    let with_auto_attach = Config::parse("[capture]\nauto_attach = true\n", "pgtrail.toml").unwrap();
    let error = pgtrail::plan::apply(&mut owner, &with_auto_attach)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("auto_attach needs an event trigger") && error.contains("superuser"),
        "{error}"
    );
    drop(owner);
    let _ = db
        .client
        .batch_execute(&format!(
            "REASSIGN OWNED BY {role} TO postgres; DROP OWNED BY {role}; DROP ROLE {role};"
        ))
        .await;
}

/// The trail's time indexes (BRIN) summarize a block range once it is
/// full, not while capture fills it: a summary of the range being filled
/// would be widened by every captured statement, since the trail's times
/// only grow. `brin_summarize_range` says how many ranges it had to
/// summarize: 1 for each range capture is filling, on a fresh install and
/// on the partitions `apply` makes ahead, by default and for retention.
#[tokio::test]
async fn capture_fills_the_trails_time_indexes_without_summarizing_as_it_goes() {
    for config in ["", "[retention]\npartition = \"day\"\npremake = 1\n"] {
        let db = audited_db("CREATE TABLE users (id serial PRIMARY KEY, email text);", config).await;
        db.client
            .batch_execute("INSERT INTO users (email) VALUES ('a'); UPDATE users SET email = 'b';")
            .await
            .unwrap();
        // The partitions made ahead are still empty: a change written into
        // the last one and rolled back gives it its first block.
        db.client
            .batch_execute(
                "BEGIN;
                 INSERT INTO pgtrail.change (txid, ctx, table_id, op, changed_at, pk)
                 SELECT 1, 0, 1, 'I', max(p.from_at), '{}' FROM pgtrail.partitions() AS p;
                 ROLLBACK;",
            )
            .await
            .unwrap();
        let rows = db
            .client
            .query(
                "SELECT t.relname::text, pg_catalog.brin_summarize_range(i.indexrelid::regclass, 0)
                 FROM pg_index AS i
                 JOIN pg_class AS c ON c.oid = i.indexrelid
                 JOIN pg_am AS a ON a.oid = c.relam AND a.amname = 'brin'
                 JOIN pg_class AS t ON t.oid = i.indrelid
                 WHERE t.relnamespace = 'pgtrail'::regnamespace AND t.relkind = 'r'
                   AND pg_catalog.pg_relation_size(t.oid) > 0
                 ORDER BY 1",
                &[],
            )
            .await
            .unwrap();
        let summarized: Vec<(String, i32)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        // The BRIN of the partition today's changes go to, of the last
        // partition made ahead, and of the transactions.
        assert_eq!(summarized.len(), 3, "config {config:?}: {summarized:?}");
        assert!(
            summarized.iter().all(|(_, n)| *n == 1),
            "config {config:?}: a range capture is filling was kept summarized: {summarized:?}"
        );
    }
}
