//! The `pgtrail` binary as a user runs it: exit codes, messages, and the
//! migration file `pgtrail sql` prints, applied with psql.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use pgtrail_testkit::TestDb;

fn pgtrail(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgtrail"))
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("PGTRAIL_DATABASE_URL")
        .env("NO_COLOR", "1")
        .output()
        .expect("the pgtrail binary runs")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    db.client.query_one(sql, &[]).await.expect("count runs").get(0)
}

const SCHEMA: &str = "CREATE TABLE users (id serial PRIMARY KEY, email text, password_hash text);
                      CREATE TABLE sessions (id text PRIMARY KEY);";

#[tokio::test]
async fn apply_installs_from_the_config_file_and_reports_what_it_did() {
    let db = TestDb::new().await;
    db.client.batch_execute(SCHEMA).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pgtrail.toml"),
        "[capture]\nexclude = [\"sessions\"]\n\n[tables.\"public.users\"]\nredact_columns = [\"password_hash\"]\n",
    )
    .unwrap();

    let output = pgtrail(&["apply", "--database-url", db.url()], dir.path());
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("installed pgtrail"), "{stdout}");
    assert!(
        stdout.contains("attached") && stdout.contains("public.users"),
        "{stdout}"
    );
    assert!(!stdout.contains("sessions"), "{stdout}");

    let again = pgtrail(
        &["apply", "--database-url", db.url(), "--format", "json"],
        dir.path(),
    );
    let (stdout, stderr) = text(&again);
    assert_eq!(again.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("--format json prints JSON");
    assert_eq!(
        report["tables"],
        serde_json::json!([]),
        "nothing to do the second time"
    );
    assert_eq!(report["unchanged"], 1);
    assert_eq!(report["previous_version"], report["version"]);
    assert_eq!(count(&db, "SELECT count(*) FROM pgtrail.audited_table").await, 1);
}

#[tokio::test]
async fn database_url_comes_from_the_environment_when_no_flag_is_given() {
    let db = TestDb::new().await;
    db.client.batch_execute(SCHEMA).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pgtrail.toml"), "").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_pgtrail"))
        .arg("apply")
        .current_dir(dir.path())
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .env("PGTRAIL_DATABASE_URL", db.url())
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(count(&db, "SELECT count(*) FROM pgtrail.audited_table").await, 2);
}

#[tokio::test]
async fn a_broken_config_is_reported_with_file_line_and_suggestion_and_changes_nothing() {
    let db = TestDb::new().await;
    db.client.batch_execute(SCHEMA).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pgtrail.toml"), "[capture]\ninclde = [\"*\"]\n").unwrap();
    let output = pgtrail(&["apply", "--database-url", db.url()], dir.path());
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("pgtrail.toml:2:1"), "{stderr}");
    assert!(stderr.contains("did you mean `include`?"), "{stderr}");

    std::fs::write(
        dir.path().join("pgtrail.toml"),
        "[tables.\"public.user\"]\nredact_columns = [\"password\"]\n",
    )
    .unwrap();
    let output = pgtrail(&["apply", "--database-url", db.url()], dir.path());
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr.contains("pgtrail.toml:1:") && stderr.contains("did you mean `public.users`?"),
        "{stderr}"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgtrail'").await,
        0
    );

    let missing = pgtrail(
        &["apply", "--database-url", db.url(), "--config", "nope.toml"],
        dir.path(),
    );
    let (_, stderr) = text(&missing);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr.contains("nope.toml") && stderr.contains("pgtrail init"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_missing_server_or_database_is_one_clear_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pgtrail.toml"), "").unwrap();
    let output = pgtrail(
        &["apply", "--database-url", "postgres://postgres@127.0.0.1:1/db"],
        dir.path(),
    );
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr.contains("cannot reach PostgreSQL at 127.0.0.1:1/db"),
        "{stderr}"
    );

    let db = TestDb::new().await;
    let url = db.url().replace(db.name(), "no_such_database_here");
    let output = pgtrail(&["apply", "--database-url", &url], dir.path());
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr.contains("database `no_such_database_here` does not exist"),
        "{stderr}"
    );

    let output = pgtrail(
        &["apply", "--database-url", "postgres://x@host:notaport/db"],
        dir.path(),
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output)
            .1
            .contains("invalid connection string from --database-url")
    );
}

#[tokio::test]
async fn the_printed_migration_file_applies_with_psql() {
    let db = TestDb::new().await;
    db.client.batch_execute(SCHEMA).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pgtrail.toml"),
        "[capture]\nexclude = [\"sessions\"]\n",
    )
    .unwrap();
    let output = pgtrail(&["sql", "--database-url", db.url()], dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output).1);
    let file = dir.path().join("0042_pgtrail.sql");
    std::fs::write(&file, &output.stdout).unwrap();

    let psql = pgtrail_testkit::pg_bin_dir()
        .map(|d| d.join("psql"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| "psql".into());
    for _ in 0..2 {
        let applied = Command::new(&psql)
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db.url(), "-f"])
            .arg(&file)
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(
            applied.status.success(),
            "{}",
            String::from_utf8_lossy(&applied.stderr)
        );
    }
    db.client
        .batch_execute("INSERT INTO users (email) VALUES ('a')")
        .await
        .unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM pgtrail.changes").await, 1);
}

#[test]
fn every_command_has_help_with_an_example() {
    let dir = std::env::temp_dir();
    for command in ["init", "apply", "plan", "check", "sql", "uninstall", "demo"] {
        let output = pgtrail(&[command, "--help"], &dir);
        assert_eq!(output.status.code(), Some(0));
        assert!(
            text(&output).0.contains("Example"),
            "{command} --help has no example"
        );
    }
    let usage = pgtrail(&["no-such-command"], &dir);
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn the_demo_runs_on_its_own_throwaway_server_and_shows_who_did_what() {
    let dir = tempfile::tempdir().unwrap();
    let output = pgtrail(&["demo"], dir.path());
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    for expected in [
        "support@acme.test",
        "ticket #4211",
        "0042_rename_acme",
        "ops-script",
        "{\"redacted\":",
        "{\"user_id\": 2, \"organization_id\": 1}",
    ] {
        assert!(stdout.contains(expected), "missing {expected}:\n{stdout}");
    }
    assert!(
        !stdout.contains("x1") && !stdout.contains("\"x3\""),
        "a redacted value leaked:\n{stdout}"
    );
    assert!(stderr.contains("stopped and removed"), "{stderr}");
}

#[tokio::test]
async fn init_writes_the_config_and_keeps_an_existing_file_unless_forced() {
    let db = TestDb::new().await;
    db.client.batch_execute(SCHEMA).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pgtrail.toml");

    let output = pgtrail(&["init", "--database-url", db.url()], dir.path());
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("wrote pgtrail.toml: 2 tables, 1 excluded, 0 without key"),
        "{stdout}"
    );
    let written = std::fs::read_to_string(&file).expect("init wrote pgtrail.toml");
    assert!(
        written.contains("[tables.\"public.users\"]\n# key: id (primary key)\n"),
        "{written}"
    );
    assert!(written.contains("# excluded by \"sessions\""), "{written}");

    std::fs::write(&file, "# mine\n").unwrap();
    let again = pgtrail(&["init", "--database-url", db.url()], dir.path());
    let (_, stderr) = text(&again);
    assert_eq!(again.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("already exists") && stderr.contains("--force") && stderr.contains("--config"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "# mine\n");

    let forced = pgtrail(&["init", "--force", "--database-url", db.url()], dir.path());
    assert_eq!(forced.status.code(), Some(0), "{}", text(&forced).1);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), written);

    // The file it wrote is one apply accepts as is.
    let applied = pgtrail(&["apply", "--database-url", db.url()], dir.path());
    assert_eq!(applied.status.code(), Some(0), "{}", text(&applied).1);
    assert_eq!(count(&db, "SELECT count(*) FROM pgtrail.audited_table").await, 1);

    let unknown = pgtrail(
        &[
            "init",
            "--database-url",
            db.url(),
            "--schema",
            "pubic",
            "--config",
            "other.toml",
        ],
        dir.path(),
    );
    let (_, stderr) = text(&unknown);
    assert_eq!(unknown.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("schema `pubic`") && stderr.contains("did you mean `public`?"),
        "{stderr}"
    );
    assert!(!dir.path().join("other.toml").exists());

    let help = pgtrail(&["init", "--help"], dir.path());
    assert_eq!(help.status.code(), Some(0));
    assert!(text(&help).0.contains("Example"), "init --help has no example");
}

#[tokio::test]
async fn check_is_a_ci_step_and_plan_shows_the_repair() {
    let db = TestDb::new().await;
    db.client.batch_execute(SCHEMA).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pgtrail.toml"),
        "[capture]\nexclude = [\"sessions\"]\n",
    )
    .unwrap();

    let before = pgtrail(&["check", "--database-url", db.url()], dir.path());
    assert_eq!(before.status.code(), Some(1), "not installed yet is a problem");
    assert!(text(&before).0.contains("pgtrail is not installed"));

    assert_eq!(
        pgtrail(&["apply", "--database-url", db.url()], dir.path())
            .status
            .code(),
        Some(0)
    );
    let clean = pgtrail(&["check", "--database-url", db.url()], dir.path());
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean).0);
    let plan = pgtrail(&["plan", "--database-url", db.url()], dir.path());
    assert_eq!(plan.status.code(), Some(0));
    assert_eq!(text(&plan).0, "", "nothing to do prints no SQL");

    db.client
        .batch_execute("ALTER TABLE users DISABLE TRIGGER pgtrail_capture_update; CREATE TABLE invoices (id int PRIMARY KEY);")
        .await
        .unwrap();
    let drift = pgtrail(
        &["check", "--database-url", db.url(), "--format", "json"],
        dir.path(),
    );
    assert_eq!(drift.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&drift.stdout).expect("JSON");
    let kinds: Vec<&str> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"disabled_trigger") && kinds.contains(&"missing_trigger"),
        "{report}"
    );
    assert_eq!(report["ok"], false);

    let plan = pgtrail(&["plan", "--database-url", db.url()], dir.path());
    let (sql, comments) = text(&plan);
    assert!(
        sql.contains("pgtrail.attach('\"public\".\"users\"'") && sql.contains("\"invoices\""),
        "{sql}"
    );
    assert!(
        !sql.contains("CREATE TABLE pgtrail.change"),
        "no reinstall needed: {sql}"
    );
    assert!(
        comments.contains("public.users: capture trigger pgtrail_capture_update is disabled"),
        "{comments}"
    );

    assert_eq!(
        pgtrail(&["apply", "--database-url", db.url()], dir.path())
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        pgtrail(&["check", "--database-url", db.url()], dir.path())
            .status
            .code(),
        Some(0)
    );
    let broken = pgtrail(
        &["check", "--database-url", db.url(), "--config", "missing.toml"],
        dir.path(),
    );
    assert_eq!(broken.status.code(), Some(2));
}

#[tokio::test]
async fn uninstall_keeps_the_trail_unless_told_and_confirmed() {
    let db = TestDb::new().await;
    db.client.batch_execute(SCHEMA).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pgtrail.toml"), "").unwrap();
    assert_eq!(
        pgtrail(&["apply", "--database-url", db.url()], dir.path())
            .status
            .code(),
        Some(0)
    );
    db.client
        .batch_execute("INSERT INTO users (email) VALUES ('kept')")
        .await
        .unwrap();

    let output = pgtrail(&["uninstall", "--database-url", db.url()], dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output).1);
    assert!(
        text(&output).0.contains("the trail (1 changes) stays"),
        "{}",
        text(&output).0
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgtrail\\_capture%'"
        )
        .await,
        0
    );
    db.client
        .batch_execute("INSERT INTO users (email) VALUES ('not captured')")
        .await
        .unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM pgtrail.changes").await, 1);

    // Not on a terminal: dropping the trail needs --yes.
    let refused = pgtrail(
        &["uninstall", "--drop-trail", "--database-url", db.url()],
        dir.path(),
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused).1.contains("--yes"), "{}", text(&refused).1);
    assert_eq!(count(&db, "SELECT count(*) FROM pgtrail.changes").await, 1);

    let dropped = pgtrail(
        &["uninstall", "--drop-trail", "--yes", "--database-url", db.url()],
        dir.path(),
    );
    assert_eq!(dropped.status.code(), Some(0), "{}", text(&dropped).1);
    assert_eq!(
        count(&db, "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgtrail'").await,
        0
    );
}

#[tokio::test]
async fn a_wrong_password_is_one_clear_line_and_exit_2() {
    // A private cluster that asks for passwords over TCP (the shared test
    // cluster trusts everyone).
    let cluster = pgtrail_testkit::Cluster::start(pgtrail_testkit::ClusterOptions {
        fast: true,
        ..Default::default()
    })
    .expect("a throwaway cluster starts");
    let (client, connection) = tokio_postgres::connect(&cluster.url("postgres"), tokio_postgres::NoTls)
        .await
        .expect("trust login before the switch");
    tokio::spawn(connection);
    client
        .batch_execute("SET password_encryption = 'scram-sha-256'; CREATE ROLE alice LOGIN PASSWORD 'right';")
        .await
        .unwrap();
    std::fs::write(
        cluster.data_dir().join("pg_hba.conf"),
        "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\nhost all all ::1/128 scram-sha-256\n",
    )
    .unwrap();
    client.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pgtrail.toml"), "").unwrap();
    let url = format!("postgres://alice:wrong@127.0.0.1:{}/postgres", cluster.port());
    let output = pgtrail(&["check", "--database-url", &url], dir.path());
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let first = stderr.lines().next().unwrap_or("");
    assert!(
        first.contains("refused the login as `alice`") && first.contains("(from --database-url)"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("wrong"),
        "the password is never printed: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 2, "one line and its help: {stderr}");
}
