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

/// A fresh database with [`SCHEMA`] and a project directory holding `pgtrail.toml`.
async fn project(toml: &str) -> (TestDb, tempfile::TempDir) {
    let db = TestDb::new().await;
    db.client
        .batch_execute(SCHEMA)
        .await
        .expect("the test schema is created");
    let dir = tempfile::tempdir().expect("a temporary project directory");
    std::fs::write(dir.path().join("pgtrail.toml"), toml).expect("pgtrail.toml is written");
    (db, dir)
}

#[tokio::test]
async fn apply_installs_from_the_config_file_and_reports_what_it_did() {
    let (db, dir) = project("[capture]\nexclude = [\"sessions\"]\n\n[tables.\"public.users\"]\nredact_columns = [\"password_hash\"]\n").await;

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
    let (db, dir) = project("").await;
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

    // DATABASE_URL alone.
    let output = Command::new(env!("CARGO_BIN_EXE_pgtrail"))
        .arg("check")
        .current_dir(dir.path())
        .env("DATABASE_URL", db.url())
        .env_remove("PGTRAIL_DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn a_broken_config_is_reported_with_file_line_and_suggestion_and_changes_nothing() {
    let (db, dir) = project("[capture]\ninclde = [\"*\"]\n").await;
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
    // A key column the table does not have, nothing like one it has: its
    // columns are listed.
    std::fs::write(
        dir.path().join("pgtrail.toml"),
        "[tables.\"public.users\"]\nkey = [\"uuid\"]\n",
    )
    .unwrap();
    let output = pgtrail(&["apply", "--database-url", db.url()], dir.path());
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr.contains("pgtrail.toml:2:")
            && stderr.contains("key names column `uuid`, which `public.users` does not have")
            && stderr.contains("help: its columns are `id`, `email`, `password_hash`"),
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

/// "The same table in two sections under two spellings was silently
/// merged": now every command that reads the config stops at the second
/// section, names both (file, line and section of each), says how to fix
/// it, exits 2 and changes nothing.
#[tokio::test]
async fn a_table_named_twice_in_the_config_is_an_error_naming_both_sections_and_nothing_is_applied() {
    let (db, dir) =
        project("[tables.\"public.users\"]\nkey = [\"id\"]\n\n[tables.users]\nimages = \"full\"\n").await;
    for command in ["apply", "plan", "check", "sql"] {
        let output = pgtrail(&[command, "--database-url", db.url()], dir.path());
        let (_, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(2), "{command}: {stderr}");
        assert!(
            stderr.contains(
                "pgtrail.toml:4:9: table `public.users` is configured twice: \
                 by [tables.users] here and by [tables.\"public.users\"] at 1:9"
            ),
            "{command}: {stderr}"
        );
        assert!(stderr.contains("keep one section"), "{command}: {stderr}");
    }
    assert_eq!(
        count(&db, "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgtrail'").await,
        0
    );

    // Names keep their case, as PostgreSQL stores them: `Users` is another
    // table than `users` (both may exist). When it does not, the error says
    // which table was meant and which section configures it already.
    std::fs::write(
        dir.path().join("pgtrail.toml"),
        "[tables.users]\nimages = \"full\"\n\n[tables.Users]\nredact_columns = [\"password_hash\"]\n",
    )
    .unwrap();
    let output = pgtrail(&["apply", "--database-url", db.url()], dir.path());
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("pgtrail.toml:4:9: table `Users` does not exist in schema public"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "the table is `public.users`, which [tables.\"users\"] at 1:9 configures already; \
             move this section's settings there and remove this one"
        ),
        "{stderr}"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgtrail'").await,
        0
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
        stderr.contains(
            "cannot reach PostgreSQL at host 127.0.0.1 (from --database-url), port 1 (from --database-url), \
             database db (from --database-url)"
        ),
        "{stderr}"
    );

    // Without a URL: libpq's variables and defaults, each named.
    let output = Command::new(env!("CARGO_BIN_EXE_pgtrail"))
        .args(["check"])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("PGTRAIL_DATABASE_URL")
        .env_remove("PGDATABASE")
        .env_remove("PGUSER")
        .env_remove("PGSERVICE")
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", "1")
        .output()
        .expect("the pgtrail binary runs");
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("host 127.0.0.1 (from PGHOST), port 1 (from PGPORT), database ")
            && stderr.contains("(default: the user name)"),
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
            .contains("port `notaport` (from --database-url) is not valid: expected a port number")
    );
}

/// Runs psql on a file with `extra` options; (success, stderr).
fn psql_file(db: &TestDb, extra: &[&str], file: &Path) -> (bool, String) {
    let applied = Command::new(pgtrail_testkit::program("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db.url()])
        .args(extra)
        .arg("-f")
        .arg(file)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    (
        applied.status.success(),
        String::from_utf8_lossy(&applied.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_printed_migration_file_applies_with_psql_all_or_nothing() {
    let (db, dir) = project("[capture]\nexclude = [\"sessions\"]\n").await;
    let output = pgtrail(&["sql", "--database-url", db.url()], dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output).1);
    let (sql, _) = text(&output);
    assert!(
        !sql.lines().any(|line| line == "BEGIN;" || line == "COMMIT;"),
        "no transaction control of its own by default: {sql}"
    );
    let file = dir.path().join("0042_pgtrail.sql");
    std::fs::write(&file, &output.stdout).unwrap();

    // Statement by statement (autocommit), the file stops before changing anything.
    let (ok, stderr) = psql_file(&db, &[], &file);
    assert!(!ok, "autocommit must be refused");
    assert!(
        stderr.contains("this migration must run in one transaction")
            && stderr.contains("--single-transaction"),
        "{stderr}"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgtrail'").await,
        0,
        "nothing half-applied"
    );

    for _ in 0..2 {
        let (ok, stderr) = psql_file(&db, &["--single-transaction"], &file);
        assert!(ok, "{stderr}");
    }
    db.client
        .batch_execute("INSERT INTO users (email) VALUES ('a')")
        .await
        .unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM pgtrail.changes").await, 1);
}

#[tokio::test]
async fn with_transaction_the_file_has_its_own_begin_and_commit_for_plain_psql() {
    let (db, dir) = project("[capture]\nexclude = [\"sessions\"]\n").await;
    let output = pgtrail(&["sql", "--transaction", "--database-url", db.url()], dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output).1);
    let (sql, _) = text(&output);
    assert!(
        sql.contains("\nBEGIN;\n") && sql.ends_with("\nCOMMIT;\n"),
        "{sql}"
    );
    let file = dir.path().join("0042_pgtrail.sql");
    std::fs::write(&file, &output.stdout).unwrap();
    let (ok, stderr) = psql_file(&db, &[], &file);
    assert!(ok, "{stderr}");
    db.client
        .batch_execute("INSERT INTO users (email) VALUES ('a')")
        .await
        .unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM pgtrail.changes").await, 1);
}

#[tokio::test]
async fn tables_added_later_ship_as_the_file_plan_prints() {
    let (db, dir) = project("[capture]\nexclude = [\"sessions\"]\n").await;
    let first = pgtrail(&["sql", "--database-url", db.url()], dir.path());
    let file = dir.path().join("0042_pgtrail.sql");
    std::fs::write(&file, &first.stdout).unwrap();
    let (ok, stderr) = psql_file(&db, &["--single-transaction"], &file);
    assert!(ok, "{stderr}");

    // A later migration adds a table; the next migration file is what plan prints.
    db.client
        .batch_execute("CREATE TABLE invoices (id int PRIMARY KEY, total int)")
        .await
        .unwrap();
    let next = pgtrail(&["plan", "--database-url", db.url()], dir.path());
    let (sql, stderr) = text(&next);
    assert_eq!(next.status.code(), Some(0), "{stderr}");
    assert!(
        sql.contains("\"invoices\"") && !sql.contains("\"users\""),
        "{sql}"
    );
    assert!(
        !sql.lines().any(|line| line == "BEGIN;" || line == "COMMIT;"),
        "{sql}"
    );
    let file = dir.path().join("0043_pgtrail_invoices.sql");
    std::fs::write(&file, &next.stdout).unwrap();
    let (ok, stderr) = psql_file(&db, &["--single-transaction"], &file);
    assert!(ok, "{stderr}");

    db.client
        .batch_execute("INSERT INTO invoices VALUES (1, 10)")
        .await
        .unwrap();
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM pgtrail.changes WHERE table_name = 'invoices'"
        )
        .await,
        1
    );
    let after = pgtrail(&["plan", "--database-url", db.url()], dir.path());
    assert_eq!(text(&after).0, "", "nothing left to ship");
    let check = pgtrail(&["check", "--database-url", db.url()], dir.path());
    assert_eq!(check.status.code(), Some(0), "{}", text(&check).0);
}

#[test]
fn every_command_has_help_with_an_example() {
    let dir = std::env::temp_dir();
    for command in [
        "init",
        "apply",
        "plan",
        "check",
        "sql",
        "follow",
        "uninstall",
        "demo",
        "archive",
        "maintain",
        "hold",
    ] {
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
        "memberships user_id=2,organization_id=1",
        "verify: intact (0 problems)",
        "was edited after it was sealed (seal 1)",
        "The careless script, undone:",
        "reverted: 7 row(s)",
        "the close-orders script had no WHERE clause",
    ] {
        assert!(stdout.contains(expected), "missing {expected}:\n{stdout}");
    }
    assert!(
        !stdout.contains("x1") && !stdout.contains("\"x3\""),
        "a redacted value leaked:\n{stdout}"
    );
    assert!(stderr.contains("stopped and removed"), "{stderr}");
    // Change ids, the date and the zone, in 80 columns (not a terminal).
    let heading = stdout
        .lines()
        .find(|l| l.starts_with("Everything that happened on "))
        .unwrap_or_else(|| panic!("no heading with the date:\n{stdout}"));
    let day = heading.trim_start_matches("Everything that happened on ");
    assert!(
        day.as_bytes().get(4) == Some(&b'-')
            && day.as_bytes().get(7) == Some(&b'-')
            && heading.contains("(times in UTC)"),
        "{heading}"
    );
    assert!(stdout.contains("  id  time      op"), "{stdout}");
    let timed = stdout
        .lines()
        .filter(|l| {
            let b = l.as_bytes();
            l.len() > 16 && b[8] == b':' && b[11] == b':' && b[2].is_ascii_digit()
        })
        .count();
    assert!(timed >= 20, "every change has its id and time:\n{stdout}");
    for line in stdout.lines() {
        assert!(line.chars().count() <= 80, "wider than 80 columns: {line}");
    }
    let help = pgtrail(&["demo", "--help"], dir.path());
    let (help, _) = text(&help);
    assert!(help.contains("--keep"), "{help}");
    for unused in ["--database-url", "--config", "--format"] {
        assert!(!help.contains(unused), "demo --help lists {unused}:\n{help}");
    }
    let refused = pgtrail(&["demo", "--database-url", "postgres://x/y"], dir.path());
    let (_, stderr) = text(&refused);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("unexpected argument '--database-url'"),
        "{stderr}"
    );
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

    // On the install, after review (a redaction, a context mapping): init
    // writes what is live, and plan right after it prints nothing.
    std::fs::write(
        &file,
        "[context]\nactor_name = [\"app.actor_email\"]\n[tables.users]\nredact_columns = [\"password_hash\"]\n[capture]\nexclude = [\"sessions\"]\n",
    )
    .unwrap();
    let applied = pgtrail(&["apply", "--database-url", db.url()], dir.path());
    assert_eq!(applied.status.code(), Some(0), "{}", text(&applied).1);
    let live = pgtrail(&["init", "--force", "--database-url", db.url()], dir.path());
    let (stdout, stderr) = text(&live);
    assert_eq!(live.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("written from the live install"), "{stdout}");
    let written_live = std::fs::read_to_string(&file).unwrap();
    assert!(
        written_live.contains("redact_columns = [\"password_hash\"]"),
        "{written_live}"
    );
    assert!(
        written_live.contains("actor_name = [\"app.actor_email\"]"),
        "{written_live}"
    );
    let plan = pgtrail(&["plan", "--database-url", db.url()], dir.path());
    let (stdout, stderr) = text(&plan);
    assert_eq!(plan.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stdout.trim(),
        "",
        "plan after init on an install: {stdout}{stderr}"
    );

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

/// A database in `SQL_ASCII` stores text that is not UTF-8; capture
/// records it, pgtrail reads its trail as UTF-8: `check` warns before such
/// a value is written, and a command that meets one says what to do.
#[tokio::test]
async fn an_sql_ascii_database_is_warned_about_and_text_that_is_not_utf8_explained() {
    let db = TestDb::created_with("ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'").await;
    db.client
        .batch_execute(SCHEMA)
        .await
        .expect("the test schema is created");
    let dir = tempfile::tempdir().expect("a temporary project directory");
    std::fs::write(
        dir.path().join("pgtrail.toml"),
        "[capture]\nexclude = [\"sessions\"]\n",
    )
    .expect("pgtrail.toml is written");
    let apply = pgtrail(&["apply", "--database-url", db.url()], dir.path());
    assert_eq!(apply.status.code(), Some(0), "{:?}", text(&apply));

    let check = pgtrail(&["check", "--database-url", db.url()], dir.path());
    let (stdout, _) = text(&check);
    assert_eq!(
        check.status.code(),
        Some(0),
        "a warning is not a problem: {stdout}"
    );
    assert!(
        stdout.contains("warning: the database's encoding is SQL_ASCII"),
        "{stdout}"
    );
    let json = pgtrail(
        &["check", "--database-url", db.url(), "--format", "json"],
        dir.path(),
    );
    let report: serde_json::Value = serde_json::from_str(&text(&json).0).expect("--format json prints JSON");
    assert_eq!(report["server_encoding"], "SQL_ASCII");
    assert!(report["encoding_warning"].is_string(), "{report}");

    // "café" in Latin-1: the byte 0xE9 alone is not UTF-8.
    db.client
        .batch_execute("INSERT INTO users (email) VALUES (E'caf\\xe9@example.com')")
        .await
        .expect("SQL_ASCII takes any bytes, and capture records them");
    let history = pgtrail(&["history", "--database-url", db.url(), "users", "1"], dir.path());
    let (_, stderr) = text(&history);
    assert_eq!(history.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("SQLSTATE 22021"), "{stderr}");
    assert!(
        stderr.contains("help: the database holds text that is not UTF-8")
            && stderr.contains("createdb -E UTF8"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("caused by: db error"),
        "no cause repeated: {stderr}"
    );
}

#[tokio::test]
async fn check_is_a_ci_step_and_plan_shows_the_repair() {
    let (db, dir) = project("[capture]\nexclude = [\"sessions\"]\n").await;

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
    let (db, dir) = project("").await;
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

/// A command that ends in an error still says goodbye to the server before
/// the program exits: over TLS (as most servers are reached), the server's
/// log does not report the connection cut off under it ("could not receive
/// data from client: Connection reset by peer"), as it did for every
/// command that ended in an error.
#[test]
fn a_command_that_fails_closes_its_connection_before_it_exits() {
    use pgtrail_testkit::tls::{TestCa, tls_cluster};
    let cluster = tls_cluster(
        &TestCa::new("pgtrail test CA"),
        &["hostnossl all all 127.0.0.1/32 reject"],
    );
    let dir = tempfile::tempdir().unwrap();
    let url = cluster.url("postgres");
    for args in [
        ["revert", "--tx", "1", "--reason", "r"].as_slice(),
        ["log"].as_slice(),
        ["check"].as_slice(),
    ] {
        let mut all = args.to_vec();
        all.extend(["--database-url", &url]);
        let output = pgtrail(&all, dir.path());
        assert_eq!(output.status.code(), Some(2), "{args:?}: {:?}", text(&output));
    }
    // (The server writes its log as the connections end.)
    std::thread::sleep(std::time::Duration::from_millis(300));
    let log = std::fs::read_to_string(cluster.log_file()).expect("the server's log");
    assert!(!log.contains("Connection reset by peer"), "{log}");
    assert!(!log.contains("unexpected EOF"), "{log}");
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

#[tokio::test]
async fn tls_is_checked_as_asked_and_failures_are_one_clear_error_and_exit_2() {
    use pgtrail_testkit::tls::{TestCa, tls_cluster};
    let ca = TestCa::new("pgtrail test CA");
    let cluster = tls_cluster(&ca, &["hostnossl all all 127.0.0.1/32 reject"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pgtrail.toml"), "").unwrap();
    let ca_file = ca.write(dir.path(), "ca.pem");
    let other_ca = TestCa::new("another CA").write(dir.path(), "other.pem");
    let port = cluster.port();
    let url = |host: &str, root: &Path| {
        format!(
            "postgres://postgres@{host}:{port}/postgres?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={}",
            root.display()
        )
    };
    // The right CA and host name: apply and check work over TLS.
    let output = pgtrail(
        &["apply", "--database-url", &url("localhost", &ca_file)],
        dir.path(),
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output).1);
    let output = pgtrail(
        &["check", "--database-url", &url("localhost", &ca_file)],
        dir.path(),
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output).1);

    let output = pgtrail(
        &["check", "--database-url", &url("localhost", &other_ca)],
        dir.path(),
    );
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("TLS connection to host localhost (from --database-url), port")
            && stderr.contains("not signed by a trusted root"),
        "{stderr}"
    );
    let output = pgtrail(
        &["check", "--database-url", &url("127.0.0.1", &ca_file)],
        dir.path(),
    );
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("not valid for the host name `127.0.0.1`"),
        "{stderr}"
    );

    // require against a server without TLS (the shared test server).
    let db = TestDb::new().await;
    let output = Command::new(env!("CARGO_BIN_EXE_pgtrail"))
        .args(["check", "--database-url", db.url()])
        .current_dir(dir.path())
        .env("PGSSLMODE", "require")
        .output()
        .expect("the pgtrail binary runs");
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("does not accept TLS connections, and sslmode=require (from PGSSLMODE) demands them"),
        "{stderr}"
    );
}

// ---- asking the trail: log, history, at, blame, tx, report ----

/// Runs a query command against `db` and returns (exit code, stdout, stderr).
fn ask(db: &TestDb, dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--database-url", db.url()]);
    let output = pgtrail(&all, dir);
    let (stdout, stderr) = text(&output);
    (output.status.code(), stdout, stderr)
}

fn ask_json(db: &TestDb, dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--format", "json"]);
    let (code, stdout, stderr) = ask(db, dir, &all);
    assert_eq!(code, Some(0), "{args:?}: {stdout}{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?} prints JSON ({e}): {stdout}"))
}

/// A key of type char(n), which PostgreSQL keeps padded to its width:
/// found by its value as a person types it, in either form, and reverted.
#[tokio::test]
async fn a_char_n_key_is_found_by_its_value_as_typed() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    db.client
        .batch_execute("CREATE TABLE rooms (code char(4), floor int, label text, PRIMARY KEY (code, floor))")
        .await
        .unwrap();
    std::fs::write(dir.join("pgtrail.toml"), "[capture]\n").unwrap();
    let (code, _, stderr) = ask(&db, dir, &["apply"]);
    assert_eq!(code, Some(0), "{stderr}");
    db.client
        .batch_execute(
            "INSERT INTO rooms VALUES ('b1', 2, 'small');
             UPDATE rooms SET label = 'large'",
        )
        .await
        .unwrap();
    for key in ["code=b1,floor=2", r#"{"code": "b1", "floor": 2}"#] {
        let history = ask_json(&db, dir, &["history", "rooms", key]);
        assert_eq!(history.as_array().map(Vec::len), Some(2), "{key}: {history}");
        assert_eq!(history[1]["state"]["label"], "large", "{history}");
    }
    let (code, stdout, stderr) = ask(
        &db,
        dir,
        &[
            "revert",
            "--row",
            "rooms",
            "code=b1,floor=2",
            "--reason",
            "undo",
            "--yes",
        ],
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let label: String = db
        .client
        .query_one("SELECT label FROM rooms", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(label, "small");
}

/// Two actors, a key change, a delete by a migration, a burst by a script.
/// Returns (txid of the moderator's transaction, a moment between the
/// signup and the moderation).
async fn a_day_of_work(db: &TestDb, dir: &Path) -> (i64, String) {
    db.client
        .batch_execute(
            "CREATE TABLE users (id int PRIMARY KEY, email text, name text, password_hash text);
             CREATE TABLE enrollments (process_id int, application_id int, status text,
                                       PRIMARY KEY (process_id, application_id));",
        )
        .await
        .unwrap();
    std::fs::write(
        dir.join("pgtrail.toml"),
        "[tables.\"public.users\"]\nredact_columns = [\"password_hash\"]\n",
    )
    .unwrap();
    let applied = pgtrail(&["apply", "--database-url", db.url()], dir);
    assert_eq!(applied.status.code(), Some(0), "{}", text(&applied).1);

    db.client
        .batch_execute(
            "BEGIN;
             SELECT pgtrail.set_context('7', 'ann@example.test', 'user', 'signup');
             INSERT INTO users VALUES (1, 'ann@old.test', 'Ann', 'h1');
             INSERT INTO enrollments VALUES (1, 7, 'new');
             COMMIT;
             SELECT pg_sleep(0.05);",
        )
        .await
        .unwrap();
    let between: String = db
        .client
        .query_one("SELECT clock_timestamp()::text", &[])
        .await
        .unwrap()
        .get(0);
    db.client
        .batch_execute(
            "SELECT pg_sleep(0.05);
             BEGIN;
             SELECT pgtrail.set_context('9', 'mod@example.test', 'moderator', 'ticket #4211',
                                        '{\"request_id\": \"r-1\"}');",
        )
        .await
        .unwrap();
    let txid: i64 = db
        .client
        .query_one("SELECT txid_current()", &[])
        .await
        .unwrap()
        .get(0);
    db.client
        .batch_execute(
            "UPDATE users SET email = 'ann@new.test', password_hash = 'h2' WHERE id = 1;
             UPDATE enrollments SET status = 'accepted' WHERE process_id = 1 AND application_id = 7;
             COMMIT;
             BEGIN;
             SELECT pgtrail.set_context('9', 'mod@example.test', 'moderator', 'renumber');
             UPDATE users SET id = 100 WHERE id = 1;
             COMMIT;
             BEGIN;
             SELECT pgtrail.set_context('ops-script', NULL, 'system', NULL,
                                        '{\"migration\": \"0042_cleanup\"}');
             DELETE FROM enrollments WHERE process_id = 1;
             INSERT INTO users SELECT g, 'bulk' || g || '@example.test', 'Bulk', 'x' FROM generate_series(2, 6) AS g;
             COMMIT;",
        )
        .await
        .unwrap();
    (txid, between)
}

#[tokio::test]
async fn log_filters_changes_by_actor_kind_field_time_transaction_and_context() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (txid, _) = a_day_of_work(&db, dir).await;

    let all = ask_json(&db, dir, &["log", "--since", "1h ago"]);
    assert_eq!(all.as_array().unwrap().len(), 11, "{all}");
    let ids: Vec<i64> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");

    let by_mod = ask_json(&db, dir, &["log", "--actor", "mod@example.test"]);
    assert_eq!(by_mod.as_array().unwrap().len(), 3, "{by_mod}");
    assert!(by_mod.as_array().unwrap().iter().all(|c| c["actor_id"] == "9"));
    assert_eq!(
        ask_json(&db, dir, &["log", "--actor", "7"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        ask_json(&db, dir, &["log", "--actor-type", "system"])
            .as_array()
            .unwrap()
            .len(),
        6
    );

    let deletes = ask_json(&db, dir, &["log", "--op", "delete"]);
    assert_eq!(deletes.as_array().unwrap().len(), 1, "{deletes}");
    assert_eq!(deletes[0]["table_name"], "enrollments");
    assert_eq!(
        deletes[0]["pk"],
        serde_json::json!({"process_id": 1, "application_id": 7})
    );

    let email = ask_json(&db, dir, &["log", "users", "--field", "email"]);
    assert_eq!(email.as_array().unwrap().len(), 1, "{email}");
    assert_eq!(email[0]["new_values"]["email"], "ann@new.test");

    let tx = ask_json(&db, dir, &["log", "--tx", &txid.to_string()]);
    assert_eq!(tx.as_array().unwrap().len(), 2, "{tx}");
    let request = ask_json(&db, dir, &["log", "--context", "request_id=r-1"]);
    assert_eq!(request.as_array().unwrap().len(), 2, "{request}");
    let migration = ask_json(&db, dir, &["log", "--migration", "0042_cleanup", "--limit", "3"]);
    assert_eq!(migration.as_array().unwrap().len(), 3, "{migration}");
    let row = ask_json(&db, dir, &["log", "enrollments", "process_id=1,application_id=7"]);
    assert_eq!(row.as_array().unwrap().len(), 3, "{row}");
    assert_eq!(
        ask_json(&db, dir, &["log", "--until", "2000-01-01"])
            .as_array()
            .unwrap()
            .len(),
        0
    );

    let (code, stdout, stderr) = ask(&db, dir, &["log", "public.users", "--actor", "ann@example.test"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("ID") && stdout.contains("ACTOR"), "{stdout}");
    assert!(
        stdout.contains("ann@example.test (user)") && stdout.contains("signup") && stdout.contains("INSERT"),
        "{stdout}"
    );
    assert!(!stdout.contains("h1"), "a redacted value leaked: {stdout}");

    let (code, stdout, stderr) = ask(&db, dir, &["log", "--format", "csv"]);
    assert_eq!(code, Some(0), "{stderr}");
    let mut reader = csv::Reader::from_reader(stdout.as_bytes());
    let header = reader.headers().unwrap().clone();
    assert_eq!(&header[0], "id");
    assert!(header.iter().any(|h| h == "actor_name"));
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 11);
    assert!(records.iter().any(|r| r.iter().any(|c| c == "ticket #4211")));
}

#[tokio::test]
async fn log_by_actor_works_on_an_older_install_and_after_its_upgrade() {
    // A database still on the frozen 0.2.0 install has no actor_changes:
    // `log --actor` reads the view instead, then the function once applied.
    let (db, dir) = project("[capture]\ninclude = [\"users\"]\n").await;
    let released = include_str!("../../capture/sql/released/0.2.0.sql");
    db.client
        .batch_execute(&format!("BEGIN; {released} COMMIT;"))
        .await
        .expect("0.2.0 installs");
    db.client
        .batch_execute(
            "SELECT pgtrail.attach('users', '{id}', 'primary_key', 'diff', '{}', '{}');
             BEGIN;
             SELECT pgtrail.set_context('7', 'ann@example.test', 'user', 'ticket 1');
             INSERT INTO users (email) VALUES ('a@x');
             COMMIT;",
        )
        .await
        .unwrap();
    let ids = |json: serde_json::Value| -> Vec<i64> {
        json.as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_i64().unwrap())
            .collect()
    };
    let before = ids(ask_json(
        &db,
        dir.path(),
        &["log", "--actor", "ann@example.test", "--since", "1h ago"],
    ));
    assert_eq!(before.len(), 1);
    let (code, _, stderr) = ask(&db, dir.path(), &["apply"]);
    assert_eq!(code, Some(0), "{stderr}");
    let after = ids(ask_json(
        &db,
        dir.path(),
        &["log", "--actor", "ann@example.test", "--since", "1h ago"],
    ));
    assert_eq!(after, before);
    assert_eq!(ids(ask_json(&db, dir.path(), &["log", "--actor", "7"])), before);
}

#[tokio::test]
async fn history_at_blame_and_tx_tell_one_rows_story() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (txid, between) = a_day_of_work(&db, dir).await;

    let (code, stdout, stderr) = ask(&db, dir, &["history", "users", "100"]);
    assert_eq!(code, Some(0), "{stderr}");
    for expected in [
        "email: ann@old.test → ann@new.test",
        "password_hash: [redacted] → [redacted]",
        "id: 1 → 100",
        "mod@example.test (moderator)",
        "ticket #4211",
    ] {
        assert!(stdout.contains(expected), "missing {expected}:\n{stdout}");
    }
    assert!(!stdout.contains("h2"), "a redacted value leaked: {stdout}");
    let history = ask_json(&db, dir, &["history", "users", "id=100"]);
    let changes = history.as_array().unwrap();
    assert_eq!(
        changes.last().unwrap()["state"]["email"],
        "ann@new.test",
        "{history}"
    );
    assert_eq!(changes.last().unwrap()["state"]["id"], 100, "{history}");

    let gone = ask_json(
        &db,
        dir,
        &["history", "enrollments", "process_id=1,application_id=7"],
    );
    let gone = gone.as_array().unwrap();
    assert_eq!(gone.len(), 3, "{gone:?}");
    assert_eq!(gone[2]["op"], "DELETE");
    assert!(gone[2]["state"].is_null());

    let then = ask_json(&db, dir, &["at", "users", "1", "--time", &between]);
    assert_eq!(then["email"], "ann@old.test", "{then}");
    let (code, stdout, stderr) = ask(
        &db,
        dir,
        &[
            "at",
            "enrollments",
            "process_id=1,application_id=7",
            "--time",
            &between,
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("status:") && stdout.contains("new"), "{stdout}");
    let (code, stdout, stderr) = ask(&db, dir, &["at", "users", "--time", &between, "--format", "csv"]);
    assert_eq!(code, Some(0), "{stderr}");
    let mut reader = csv::Reader::from_reader(stdout.as_bytes());
    let header = reader.headers().unwrap().clone();
    assert!(header.iter().any(|h| h == "email"), "{stdout}");
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 1, "{stdout}");
    let (code, stdout, _) = ask(&db, dir, &["at", "users", "--time", "now"]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("6 row(s)") && stdout.contains("bulk6@example.test"),
        "{stdout}"
    );

    let blame = ask_json(&db, dir, &["blame", "users", "100"]);
    let email = blame
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["column_name"] == "email")
        .unwrap_or_else(|| panic!("{blame}"));
    assert_eq!(email["actor_name"], "mod@example.test");
    assert_eq!(email["value"], "ann@new.test");
    let (code, stdout, stderr) = ask(&db, dir, &["blame", "users", "100"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("COLUMN") && stdout.contains("ann@example.test (user)"),
        "{stdout}"
    );
    let (code, stdout, _) = ask(&db, dir, &["blame", "users", "100", "--format", "csv"]);
    assert_eq!(code, Some(0));
    assert!(stdout.starts_with("column_name,value,changed_at"), "{stdout}");

    let (code, stdout, stderr) = ask(&db, dir, &["tx", &txid.to_string()]);
    assert_eq!(code, Some(0), "{stderr}");
    let header = format!("transaction {txid}: 2 change(s)");
    for expected in [
        header.as_str(),
        "by mod@example.test (moderator), reason: ticket #4211, request_id=r-1",
        "public.users id=1",
        "email: ann@old.test → ann@new.test",
        "status: new → accepted",
    ] {
        assert!(stdout.contains(expected), "missing {expected}:\n{stdout}");
    }
    let tx = ask_json(&db, dir, &["tx", &txid.to_string()]);
    assert_eq!(tx["txid"], txid);
    assert_eq!(tx["change_count"], 2);
    assert_eq!(tx["changes"].as_array().unwrap().len(), 2);
    assert_eq!(tx["next"], serde_json::Value::Null);
}

#[tokio::test]
async fn a_large_transaction_is_read_a_page_at_a_time_with_the_next_page_named() {
    let (db, dir) = project("").await;
    let dir = dir.path();
    let applied = pgtrail(&["apply", "--database-url", db.url()], dir);
    assert_eq!(applied.status.code(), Some(0), "{:?}", text(&applied));
    // A batch of 250 changes; another transaction writes in between.
    let other = db.connect().await;
    db.client
        .batch_execute(
            "BEGIN;
             SELECT pgtrail.set_context(actor_id => 'import', actor_type => 'system', reason => 'nightly import');
             INSERT INTO users (email) SELECT 'u' || g || '@example.test' FROM generate_series(1, 150) g;",
        )
        .await
        .unwrap();
    other
        .batch_execute("INSERT INTO users (email) VALUES ('between@example.test')")
        .await
        .unwrap();
    db.client
        .batch_execute("UPDATE users SET email = upper(email) WHERE id <= 100; COMMIT;")
        .await
        .unwrap();
    let txid: i64 = db
        .client
        .query_one(
            "SELECT txid FROM pgtrail.changes WHERE reason = 'nightly import' LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let expected: Vec<i64> = db
        .client
        .query(
            "SELECT id FROM pgtrail.changes WHERE txid = $1 ORDER BY id",
            &[&txid],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(expected.len(), 250);
    let tx = txid.to_string();

    // In a terminal: the first 100 changes, and the command for the rest.
    let (code, stdout, stderr) = ask(&db, dir, &["tx", &tx]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains(&format!("transaction {txid}: 250 change(s), shown 1-100 from")),
        "{stdout}"
    );
    assert_eq!(stdout.matches("public.users id=").count(), 100, "{stdout}");
    let hint = format!(
        "150 more change(s): pgtrail tx {txid} --after {} (all 250 at once: pgtrail tx {txid} --limit 250)",
        expected[99]
    );
    assert!(stdout.trim_end().ends_with(&hint), "{stdout}");
    let (code, stdout, _) = ask(&db, dir, &["tx", &tx, "--after", &expected[99].to_string()]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("shown 101-200"), "{stdout}");
    let (code, stdout, _) = ask(&db, dir, &["tx", &tx, "--after", &expected[199].to_string()]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("shown 201-250"), "{stdout}");
    assert!(!stdout.contains("more change(s)"), "{stdout}");
    let (code, stdout, _) = ask(&db, dir, &["tx", &tx, "--limit", "250"]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains(&format!("transaction {txid}: 250 change(s) from")),
        "{stdout}"
    );
    assert_eq!(stdout.matches("public.users id=").count(), 250);

    // For a script: JSON pages, following `next`, give each change once, in order.
    let mut seen: Vec<i64> = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut args = vec!["tx", tx.as_str(), "--limit", "40"];
        if let Some(after) = &after {
            args.extend(["--after", after.as_str()]);
        }
        let page = ask_json(&db, dir, &args);
        assert_eq!(page["change_count"], 250);
        let changes = page["changes"].as_array().unwrap();
        assert!(changes.len() <= 40);
        assert!(changes.iter().all(|c| c["txid"] == txid));
        seen.extend(changes.iter().map(|c| c["id"].as_i64().unwrap()));
        pages += 1;
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, expected);
    assert_eq!(pages, 7);

    // Past the end, and a page size that means nothing.
    let (code, stdout, _) = ask(&db, dir, &["tx", &tx, "--after", &expected[249].to_string()]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains(&format!(
            "no changes after change {} in transaction {txid} (250 change(s) in all)",
            expected[249]
        )),
        "{stdout}"
    );
    let (code, _, stderr) = ask(&db, dir, &["tx", &tx, "--limit", "0"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--limit"), "{stderr}");
}

#[tokio::test]
async fn report_counts_activity_and_finds_bursts() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    a_day_of_work(&db, dir).await;

    let report = ask_json(
        &db,
        dir,
        &["report", "--since", "1 day ago", "--burst", "3", "--window", "10"],
    );
    let bursts = report["bursts"].as_array().unwrap();
    assert_eq!(bursts.len(), 1, "{report}");
    assert_eq!(bursts[0]["actor_id"], "ops-script");
    assert_eq!(bursts[0]["changes"], 6);
    let by_actor = report["by_actor"].as_array().unwrap();
    assert_eq!(by_actor[0]["actor_id"], "ops-script", "{report}");
    assert_eq!(by_actor.len(), 3);
    let users_inserts = report["by_table"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table_name"] == "users" && t["op"] == "INSERT")
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(users_inserts["changes"], 6);

    let (code, stdout, stderr) = ask(&db, dir, &["report", "--burst", "3", "--window", "10"]);
    assert_eq!(code, Some(0), "{stderr}");
    for expected in [
        "Activity by actor",
        "Changes by table and kind",
        "public.enrollments",
        "Bursts: more than 3",
    ] {
        assert!(stdout.contains(expected), "missing {expected}:\n{stdout}");
    }
    let quiet = ask_json(&db, dir, &["report"]);
    assert_eq!(
        quiet["bursts"],
        serde_json::json!([]),
        "default: more than 10 in an hour"
    );

    let (code, _, stderr) = ask(&db, dir, &["report", "--format", "csv"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("prints no CSV") && stderr.contains("--format json"),
        "{stderr}"
    );
}

#[tokio::test]
async fn bad_keys_times_and_tables_are_one_helpful_error_and_exit_2() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (code, _, stderr) = ask(&db, dir, &["log"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("pgtrail is not installed") && stderr.contains("pgtrail apply"),
        "{stderr}"
    );

    a_day_of_work(&db, dir).await;
    let cases: [(&[&str], &[&str]); 8] = [
        (
            &["history", "users", "abc"],
            &["`id` is integer but `abc` is not a number", "help:"],
        ),
        (
            &["history", "enrollments", "5"],
            &["this table's key is (process_id, application_id): write process_id=1,application_id=7"],
        ),
        (
            &["blame", "enrollments", "proces_id=1,application_id=7"],
            &["did you mean `process_id`?"],
        ),
        (
            &["history", "userz", "1"],
            &[
                "table `userz` is not audited",
                "did you mean `users`?",
                "public.users",
            ],
        ),
        (
            &["log", "--since", "yesterday"],
            &["invalid time `yesterday`", "2h ago"],
        ),
        (&["at", "users", "1", "--time", "2026-02-30"], &["has no day 30"]),
        (
            &["at", "users", "1", "--time", "1990-01-01"],
            &["audited since", "help:"],
        ),
        (
            &["log", "--op", "upsert"],
            &["INSERT, UPDATE, DELETE and TRUNCATE"],
        ),
    ];
    for (args, expected) in cases {
        let (code, stdout, stderr) = ask(&db, dir, args);
        assert_eq!(code, Some(2), "{args:?}: {stdout}{stderr}");
        for part in expected {
            assert!(stderr.contains(part), "{args:?}: missing {part} in {stderr}");
        }
    }
    let (code, _, stderr) = ask(&db, dir, &["apply", "--format", "csv"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("invalid value 'csv' for '--format")
            && stderr.contains("possible values: table, json"),
        "{stderr}"
    );
}

/// Each command's `--help` lists the options it uses and no other:
/// (command, connects to a database, reads --config, --format values).
#[test]
fn every_command_lists_only_the_options_it_uses() {
    const NONE: &[&str] = &[];
    const TJ: &[&str] = &["table, json"];
    const TJC: &[&str] = &["table, json, csv"];
    // `hold` has no options of its own: its actions have them.
    let commands: [(&str, bool, bool, &[&str]); 31] = [
        ("init", true, true, TJ),
        ("apply", true, true, TJ),
        ("plan", true, true, NONE),
        ("check", true, true, TJ),
        ("sql", true, true, NONE),
        ("uninstall", true, false, TJ),
        ("demo", false, false, NONE),
        ("log", true, false, TJC),
        ("history", true, false, TJ),
        ("at", true, false, TJC),
        ("blame", true, false, TJC),
        ("tx", true, false, TJ),
        ("report", true, true, TJC),
        ("verify-bundle", false, false, TJ),
        ("keygen", false, false, TJ),
        ("seal", true, false, TJ),
        ("verify", true, false, TJ),
        ("reconcile", true, false, TJ),
        ("erase", true, false, TJ),
        ("revert", true, false, TJ),
        ("follow", true, false, TJ),
        ("serve", true, true, NONE),
        ("archive", true, true, TJ),
        ("maintain", true, true, TJ),
        ("hold", false, false, NONE),
        ("hold add", true, false, TJ),
        ("hold list", true, false, TJ),
        ("hold release", true, false, TJ),
        ("wal", false, false, NONE),
        ("wal rotate-key", true, false, TJ),
        ("wal acknowledge", true, false, TJ),
    ];
    let dir = std::env::temp_dir();
    let top = pgtrail(&["--help"], &dir);
    let (top, _) = text(&top);
    let listed = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .count();
    assert_eq!(
        listed,
        commands.iter().filter(|c| !c.0.contains(' ')).count(),
        "a command is missing from this test:\n{top}"
    );
    let options = top.split("Examples:").next().unwrap_or_default();
    assert!(
        !options.contains("--database-url") && !options.contains("--format"),
        "{top}"
    );
    for (command, connects, config, formats) in commands {
        let mut args: Vec<&str> = command.split(' ').collect();
        args.push("--help");
        let output = pgtrail(&args, &dir);
        let (help, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(0), "{command}: {stderr}");
        let options: String = help.split("Example").next().unwrap_or_default().to_string();
        assert_eq!(
            options.contains("--database-url"),
            connects,
            "{command} --help:\n{help}"
        );
        assert_eq!(options.contains("--config"), config, "{command} --help:\n{help}");
        assert_eq!(
            options.contains("--format"),
            !formats.is_empty(),
            "{command} --help:\n{help}"
        );
        for values in formats {
            assert!(
                options.contains(&format!("[possible values: {values}]")),
                "{command} --format takes {values}:\n{help}"
            );
        }
    }
    // Refused, not ignored, by the commands that do not use them.
    for args in [
        &["keygen", "--key", "k", "--database-url", "postgres://x/y"][..],
        &[
            "verify-bundle",
            "d",
            "--public-key",
            "k.pub",
            "--database-url",
            "postgres://x/y",
        ],
        &["demo", "--format", "json"],
        &["sql", "--format", "json"],
        &["tx", "1", "--format", "csv"],
    ] {
        let output = pgtrail(args, &dir);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {:?}", text(&output));
    }
}

#[test]
fn every_query_command_has_help_with_an_example() {
    let dir = std::env::temp_dir();
    for command in ["log", "history", "at", "blame", "tx", "report"] {
        let output = pgtrail(&[command, "--help"], &dir);
        assert_eq!(output.status.code(), Some(0));
        assert!(
            text(&output).0.contains("Example"),
            "{command} --help has no example"
        );
    }
}

// ---- a trail you can prove: keygen, seal, verify, erase ----

/// A project auditing `accounts`, with a day of work in the trail: 7 changes
/// (3 inserts, 3 updates, 1 delete), nothing sealed yet.
async fn shop() -> (TestDb, tempfile::TempDir) {
    let (db, dir) = project("[capture]\ninclude = [\"accounts\"]\n").await;
    db.client
        .batch_execute(
            "CREATE TABLE accounts (id integer PRIMARY KEY, email text, name text, balance numeric(12,2))",
        )
        .await
        .expect("the shop's table is created");
    let applied = pgtrail(&["apply", "--database-url", db.url()], dir.path());
    assert_eq!(applied.status.code(), Some(0), "{}", text(&applied).1);
    db.client
        .batch_execute(
            "BEGIN; SELECT pgtrail.set_context(actor_id => '7', actor_name => 'alice@example.com', reason => 'signup');
             INSERT INTO accounts VALUES (1, 'ann@example.com', 'Ann', 10.00), (2, 'bob@example.com', 'Bob', 20.00),
                                         (3, 'cy@example.com', 'Cy', 30.00);
             COMMIT;
             UPDATE accounts SET balance = balance + 1 WHERE id IN (1, 2);
             UPDATE accounts SET email = 'ann@new.example.com' WHERE id = 1;
             DELETE FROM accounts WHERE id = 3;",
        )
        .await
        .expect("a day of work");
    (db, dir)
}

/// Runs `pgtrail keygen --key FILE --name NAME` in `dir`, which must succeed.
fn keygen(dir: &Path, file: &str, name: &str) {
    let output = pgtrail(&["keygen", "--key", file, "--name", name], dir);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
}

/// Runs a command that exits 1 or 2 with `--format json` and returns its exit
/// code and the JSON it printed.
fn ask_json_code(db: &TestDb, dir: &Path, args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--format", "json"]);
    let (code, stdout, stderr) = ask(db, dir, &all);
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{args:?} prints JSON ({e}): {stdout}{stderr}"));
    (code, json)
}

/// The (kind, change_id) of each problem in the JSON of `pgtrail verify`.
fn problems(report: &serde_json::Value) -> Vec<(String, Option<i64>)> {
    report["problems"]
        .as_array()
        .unwrap_or_else(|| panic!("no problems list: {report}"))
        .iter()
        .map(|p| {
            (
                p["kind"].as_str().unwrap_or_default().to_string(),
                p["change_id"].as_i64(),
            )
        })
        .collect()
}

/// Whether `text` is standard, padded base64 of `len` bytes.
fn is_base64(text: &str, len: usize) -> bool {
    let body = text.trim_end_matches('=');
    text.len() == len.div_ceil(3) * 4
        && text.len() - body.len() == (3 - len % 3) % 3
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// Checks that `note` is a C2SP signed note holding a tlog checkpoint of a
/// log of `size` changes, signed by the key named `key_name`.
fn assert_checkpoint_note(note: &str, size: u64, key_name: &str) {
    assert!(note.ends_with('\n'), "a note ends with a newline: {note:?}");
    let lines: Vec<&str> = note.lines().collect();
    let [origin, tree_size, root, time, blank, signature] = lines.as_slice() else {
        panic!("origin, size, root, one extension, a blank line, one signature:\n{note}");
    };
    assert!(
        origin.starts_with("pgtrail/") && origin.len() > "pgtrail/".len(),
        "{note}"
    );
    assert_eq!(*tree_size, size.to_string(), "{note}");
    assert!(is_base64(root, 32), "the root is base64 of 32 bytes: {note}");
    let time = time
        .strip_prefix("time ")
        .unwrap_or_else(|| panic!("a time extension: {note}"));
    assert!(
        time.len() > 20 && time.as_bytes()[4] == b'-' && time.ends_with('Z'),
        "an RFC 3339 time: {note}"
    );
    assert_eq!(*blank, "", "{note}");
    let signature = signature
        .strip_prefix("\u{2014} ")
        .unwrap_or_else(|| panic!("a signature line starts with an em dash: {note}"));
    let (name, signature) = signature.split_once(' ').unwrap_or_else(|| panic!("{note}"));
    assert_eq!(name, key_name, "{note}");
    assert!(
        is_base64(signature, 4 + 64),
        "key id and Ed25519 signature: {note}"
    );
}

#[test]
fn keygen_writes_a_key_pair_and_never_overwrites_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let output = pgtrail(
        &["keygen", "--key", "seal.key", "--name", "shop.example.com/audit"],
        dir,
    );
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("wrote seal.key") && stdout.contains("wrote seal.key.pub"),
        "{stdout}"
    );
    let private = std::fs::read_to_string(dir.join("seal.key")).expect("keygen wrote FILE");
    let public = std::fs::read_to_string(dir.join("seal.key.pub")).expect("keygen wrote FILE.pub");
    assert!(
        private.starts_with("PRIVATE+KEY+shop.example.com/audit+") && private.lines().count() == 1,
        "{private}"
    );
    let verifier = public.trim_end();
    assert_eq!(public, format!("{verifier}\n"));
    let key_id = |key: &str| key.split('+').nth(1).map(str::to_string);
    assert_eq!(
        key_id(verifier),
        private.strip_prefix("PRIVATE+KEY+").and_then(key_id),
        "one key pair"
    );
    assert!(
        verifier.starts_with("shop.example.com/audit+") && key_id(verifier).is_some_and(|id| id.len() == 8),
        "{verifier}"
    );
    assert!(stdout.contains(verifier), "prints the verifier key: {stdout}");
    assert!(
        !stdout.contains(private.trim_end()) && !stderr.contains(private.trim_end()),
        "the private key is never printed"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |name: &str| std::fs::metadata(dir.join(name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("seal.key"), 0o600, "readable by its owner only");
        assert_eq!(mode("seal.key.pub") & 0o022, 0, "writable by its owner only");
    }

    let again = pgtrail(&["keygen", "--key", "seal.key"], dir);
    let (_, stderr) = text(&again);
    assert_eq!(again.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("seal.key already exists") && stderr.contains("refusing to overwrite"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(dir.join("seal.key")).unwrap(), private);
    assert_eq!(std::fs::read_to_string(dir.join("seal.key.pub")).unwrap(), public);

    // An existing FILE.pub is not overwritten either, and no FILE is left.
    std::fs::write(dir.join("other.key.pub"), "mine\n").unwrap();
    let clash = pgtrail(&["keygen", "--key", "other.key"], dir);
    assert_eq!(clash.status.code(), Some(2));
    assert!(
        text(&clash).1.contains("other.key.pub already exists"),
        "{}",
        text(&clash).1
    );
    assert!(!dir.join("other.key").exists());
    assert_eq!(
        std::fs::read_to_string(dir.join("other.key.pub")).unwrap(),
        "mine\n"
    );

    let bad_name = pgtrail(&["keygen", "--key", "bad.key", "--name", "a b"], dir);
    assert_eq!(bad_name.status.code(), Some(2));
    assert!(
        text(&bad_name).1.contains("invalid key name"),
        "{}",
        text(&bad_name).1
    );
    assert!(!dir.join("bad.key").exists());

    let json = pgtrail(&["keygen", "--key", "json.key", "--format", "json"], dir);
    assert_eq!(json.status.code(), Some(0), "{}", text(&json).1);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("--format json prints JSON");
    assert_eq!(
        json["verifier_key"].as_str().map(|k| format!("{k}\n")),
        Some(std::fs::read_to_string(dir.join("json.key.pub")).unwrap()),
        "{json}"
    );
    assert_eq!(json["public_key"], "json.key.pub");
}

#[tokio::test]
async fn the_auditor_keeps_signed_checkpoints_outside_and_verify_proves_the_log_only_grew() {
    let (db, dir) = shop().await;
    let dir = dir.path();
    keygen(dir, "seal.key", "shop.example.com/audit");

    let (code, stdout, stderr) = ask(
        &db,
        dir,
        &["seal", "--key", "seal.key", "--export", "checkpoints"],
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("seal 1: 7 changes appended; the log holds 7"),
        "{stdout}"
    );
    assert!(
        stdout.contains("wrote checkpoints/checkpoint") && stdout.contains("wrote checkpoints/checkpoint.7"),
        "{stdout}"
    );
    let first = std::fs::read_to_string(dir.join("checkpoints/checkpoint.7")).expect("checkpoint.7 exported");
    assert_eq!(
        std::fs::read_to_string(dir.join("checkpoints/checkpoint")).expect("checkpoint exported"),
        first
    );
    assert_checkpoint_note(&first, 7, "shop.example.com/audit");

    // Nothing new: nothing sealed.
    let (code, stdout, _) = ask(&db, dir, &["seal", "--key", "seal.key"]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("nothing new to seal; the log holds 7 changes"),
        "{stdout}"
    );

    db.client
        .batch_execute(
            "UPDATE accounts SET name = 'Bobby' WHERE id = 2; INSERT INTO accounts VALUES (4, 'di@example.com', 'Di', 0)",
        )
        .await
        .unwrap();
    let second = ask_json(
        &db,
        dir,
        &["seal", "--key", "seal.key", "--export", "checkpoints"],
    );
    assert_eq!(
        (&second["seal"], &second["appended"], &second["tree_size"]),
        (&2.into(), &2.into(), &9.into()),
        "{second}"
    );
    assert_eq!(second["exported"].as_array().map(Vec::len), Some(2), "{second}");
    let latest = std::fs::read_to_string(dir.join("checkpoints/checkpoint")).unwrap();
    assert_eq!(Some(latest.as_str()), second["checkpoint"].as_str());
    assert_eq!(
        std::fs::read_to_string(dir.join("checkpoints/checkpoint.9")).unwrap(),
        latest
    );
    assert_checkpoint_note(&latest, 9, "shop.example.com/audit");
    assert_eq!(latest.lines().next(), first.lines().next(), "one log, one origin");
    assert_eq!(
        std::fs::read_to_string(dir.join("checkpoints/checkpoint.7")).unwrap(),
        first,
        "older checkpoints are kept"
    );

    // The first checkpoint, kept outside, is still a prefix of the log.
    let verify = [
        "verify",
        "--public-key",
        "seal.key.pub",
        "--checkpoint",
        "checkpoints/checkpoint.7",
    ];
    let (code, stdout, stderr) = ask(&db, dir, &verify);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("intact: the trail matches all 2 checkpoints")
            && stdout.contains("the checkpoint you kept is a prefix of the log"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("recorded in the database"),
        "checked with the auditor's own key: {stdout}"
    );
    let report = ask_json(&db, dir, &verify);
    assert_eq!(report["intact"], true, "{report}");
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    assert_eq!(report["tree_size"], 9, "{report}");
    assert_eq!(report["seals"], 2, "{report}");
    assert_eq!(report["unsealed"], 0, "{report}");
    assert_eq!(report["key_from_database"], false, "{report}");
    assert_eq!(
        report["root"], second["root"],
        "verify recomputes the root the last seal signed"
    );
}

#[tokio::test]
async fn a_superusers_edit_of_a_sealed_change_is_named_and_verify_exits_1() {
    let (db, dir) = shop().await;
    let dir = dir.path();
    keygen(dir, "seal.key", "pgtrail");
    let (code, _, stderr) = ask(
        &db,
        dir,
        &["seal", "--key", "seal.key", "--export", "checkpoints"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let (code, _, stderr) = ask(&db, dir, &["verify", "--public-key", "seal.key.pub"]);
    assert_eq!(code, Some(0), "intact before the edit: {stderr}");

    let id = count(
        &db,
        "SELECT id FROM pgtrail.changes WHERE op = 'UPDATE' AND new_values ? 'email' ORDER BY id LIMIT 1",
    )
    .await;
    db.behind_the_triggers(&format!(
        "UPDATE pgtrail.change SET new_values = '{{\"email\": \"mallory@example.com\"}}' WHERE id = {id}"
    ))
    .await;

    let (code, stdout, stderr) = ask(&db, dir, &["verify", "--public-key", "seal.key.pub"]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("TAMPERED: 1 problem(s)"), "{stdout}");
    let named = format!("change {id} ");
    assert!(
        stdout
            .lines()
            .any(|line| line.trim_start().starts_with(&named)
                && line.contains("was edited after it was sealed")),
        "names change {id}:\n{stdout}"
    );

    let (code, report) = ask_json_code(&db, dir, &["verify", "--public-key", "seal.key.pub"]);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["intact"], false, "{report}");
    assert_eq!(
        problems(&report),
        vec![("edited".to_string(), Some(id))],
        "{report}"
    );

    // The checkpoint kept outside no longer matches either.
    let (code, report) = ask_json_code(
        &db,
        dir,
        &[
            "verify",
            "--public-key",
            "seal.key.pub",
            "--checkpoint",
            "checkpoints/checkpoint",
        ],
    );
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(
        problems(&report),
        vec![
            ("edited".to_string(), Some(id)),
            ("inconsistent".to_string(), None)
        ],
        "{report}"
    );
}

#[tokio::test]
async fn verify_and_seal_refuse_the_wrong_key_with_a_clear_message() {
    let (db, dir) = shop().await;
    let dir = dir.path();
    keygen(dir, "seal.key", "pgtrail");
    keygen(dir, "other.key", "pgtrail");
    let (code, _, stderr) = ask(&db, dir, &["seal", "--key", "seal.key"]);
    assert_eq!(code, Some(0), "{stderr}");

    // Another key's public half: every checkpoint is refused.
    let (code, stdout, stderr) = ask(&db, dir, &["verify", "--public-key", "other.key.pub"]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("TAMPERED") && stdout.contains("the checkpoint of seal 1 is not validly signed"),
        "{stdout}"
    );
    let (code, report) = ask_json_code(&db, dir, &["verify", "--public-key", "other.key.pub"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        problems(&report),
        vec![("bad_signature".to_string(), None)],
        "{report}"
    );

    let (code, stdout, stderr) = ask(&db, dir, &["verify", "--public-key", "missing.pub"]);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(stderr.starts_with("error: cannot read missing.pub"), "{stderr}");
    assert_eq!(stdout, "", "no report when the key cannot be read");

    // The private key where the public one is wanted, and the other way round.
    let (code, _, stderr) = ask(&db, dir, &["verify", "--public-key", "seal.key"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("seal.key holds a private signer key")
            && stderr.contains("give seal.key.pub instead"),
        "{stderr}"
    );
    db.client
        .batch_execute("UPDATE accounts SET name = 'Bobby' WHERE id = 2")
        .await
        .unwrap();
    let (code, stdout, stderr) = ask(&db, dir, &["seal", "--key", "seal.key.pub"]);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("seal.key.pub holds a public verifier key, but a private signer key is needed")
            && stderr.contains("give seal.key instead"),
        "{stderr}"
    );

    // Another private key cannot continue the log.
    let (code, _, stderr) = ask(&db, dir, &["seal", "--key", "other.key"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("not by this key"), "{stderr}");
    assert_eq!(count(&db, "SELECT count(*) FROM pgtrail.seal").await, 1);
}

#[tokio::test]
async fn erase_removes_a_persons_values_from_the_trail_and_verify_still_passes() {
    let (db, dir) = shop().await;
    let dir = dir.path();
    keygen(dir, "seal.key", "pgtrail");
    let (code, _, stderr) = ask(&db, dir, &["seal", "--key", "seal.key"]);
    assert_eq!(code, Some(0), "{stderr}");
    let before = ask(&db, dir, &["history", "accounts", "1", "--format", "json"]).1;
    assert!(
        before.contains("ann@example.com") && before.contains("ann@new.example.com"),
        "{before}"
    );

    let (code, stdout, stderr) = ask(
        &db,
        dir,
        &[
            "erase",
            "accounts",
            "1",
            "--columns",
            "email",
            "--reason",
            "GDPR request",
        ],
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    // The insert's email, and the update's old and new email.
    assert!(
        stdout.contains("erasure 1: 3 value(s) erased from 2 change(s) of public.accounts")
            && stdout.contains("(2 of them sealed"),
        "{stdout}"
    );

    let (code, after, stderr) = ask(&db, dir, &["history", "accounts", "1", "--format", "json"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        !after.contains("ann@example.com") && !after.contains("ann@new.example.com"),
        "the email is still in the trail:\n{after}"
    );
    assert!(
        after.contains("pgtrail_erased") && after.contains("\"Ann\""),
        "only the email is erased:\n{after}"
    );
    let (_, log, _) = ask(&db, dir, &["log", "--format", "csv"]);
    assert!(!log.contains("ann@"), "the email is still in the log:\n{log}");

    let (code, stdout, stderr) = ask(&db, dir, &["verify", "--public-key", "seal.key.pub"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let report = ask_json(&db, dir, &["verify", "--public-key", "seal.key.pub"]);
    assert_eq!(report["intact"], true, "{report}");
    assert_eq!(report["erasures"], 1, "{report}");

    // A reason is required (clap says so), and key columns are never erased.
    let (code, _, stderr) = ask(&db, dir, &["erase", "accounts", "2", "--columns", "email"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("required arguments were not provided") && stderr.contains("--reason <REASON>"),
        "{stderr}"
    );
    let (code, _, stderr) = ask(
        &db,
        dir,
        &["erase", "accounts", "2", "--columns", "id", "--reason", "x"],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("`id` is a key column of `public.accounts`") && stderr.contains("help:"),
        "{stderr}"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM pgtrail.erasure").await, 1);
    assert!(
        ask(&db, dir, &["history", "accounts", "2", "--format", "json"])
            .1
            .contains("bob@example.com"),
        "a refused erasure erases nothing"
    );
}

#[tokio::test]
async fn verify_before_the_first_seal_says_nothing_is_sealed_yet() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = ask(&db, dir.path(), &["verify"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("pgtrail is not installed") && stderr.contains("pgtrail apply"),
        "{stderr}"
    );
    drop(db);

    let (db, dir) = shop().await;
    let dir = dir.path();
    keygen(dir, "seal.key", "pgtrail");
    for args in [&["verify"][..], &["verify", "--public-key", "seal.key.pub"]] {
        let (code, stdout, stderr) = ask(&db, dir, args);
        assert_eq!(code, Some(0), "{args:?}: {stdout}{stderr}");
        assert!(
            stdout.contains("nothing is sealed yet") && stdout.contains("7 change(s) not sealed"),
            "{args:?}: {stdout}"
        );
        assert!(stdout.contains("pgtrail seal --key"), "{args:?}: {stdout}");
        assert!(
            !stdout.contains("intact"),
            "{args:?}: nothing was checked, so nothing is called intact: {stdout}"
        );
        let report = ask_json(&db, dir, args);
        assert_eq!(report["intact"], true, "{report}");
        assert_eq!(report["seals"], 0, "{report}");
        assert_eq!(report["unsealed"], 7, "{report}");
    }
}

#[test]
fn every_integrity_command_has_help_with_an_example() {
    let dir = std::env::temp_dir();
    for command in ["keygen", "seal", "verify", "erase", "revert"] {
        let output = pgtrail(&[command, "--help"], &dir);
        assert_eq!(output.status.code(), Some(0));
        assert!(
            text(&output).0.contains("Example"),
            "{command} --help has no example"
        );
    }
}

// ---- rows changed without a trace: apply --baseline, reconcile, capture gaps ----

/// A project auditing `accounts` (its `password_hash` redacted), whose three
/// rows exist before pgtrail is installed; `users` (two rows) is not audited
/// yet. Nothing is applied.
async fn accounts_before_install() -> (TestDb, tempfile::TempDir) {
    let (db, dir) = project(ACCOUNTS_ONLY).await;
    db.client
        .batch_execute(
            "CREATE TABLE accounts (id integer PRIMARY KEY, email text, name text, password_hash text,
                                    balance numeric(12,2));
             INSERT INTO accounts VALUES (1, 'ann@example.com', 'Ann', 'h-ann', 10.00),
                                         (2, 'bob@example.com', 'Bob', 'h-bob', 20.00),
                                         (3, 'cy@example.com', 'Cy', 'h-cy', 30.00);
             INSERT INTO users (email) VALUES ('ann@example.com'), ('bob@example.com');",
        )
        .await
        .expect("the rows that predate the install");
    (db, dir)
}

const ACCOUNTS_ONLY: &str = "[capture]\ninclude = [\"accounts\"]\nexclude = [\"users\", \"sessions\"]\n\n\
                             [tables.\"public.accounts\"]\nredact_columns = [\"password_hash\"]\n";
/// [`ACCOUNTS_ONLY`] with `users` audited too.
const ACCOUNTS_AND_USERS: &str = "[capture]\ninclude = [\"accounts\", \"users\"]\nexclude = [\"sessions\"]\n\n\
                                  [tables.\"public.accounts\"]\nredact_columns = [\"password_hash\"]\n";

/// The line of `stdout` that names the row `key` (`id=2`).
fn line_of<'a>(stdout: &'a str, key: &str) -> &'a str {
    let words = |line: &&str| line.split_whitespace().any(|word| word == key);
    stdout
        .lines()
        .find(words)
        .unwrap_or_else(|| panic!("no line names {key}:\n{stdout}"))
}

/// (pk, problem) of each row in the JSON of `pgtrail reconcile`.
fn unrecorded(report: &serde_json::Value) -> Vec<(serde_json::Value, String)> {
    report["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("no rows list: {report}"))
        .iter()
        .map(|r| {
            (
                r["pk"].clone(),
                r["problem"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_dba_baselines_existing_rows_and_reconcile_names_every_change_made_behind_the_trails_back() {
    let (db, dir) = accounts_before_install().await;
    let dir = dir.path();

    let (code, stdout, stderr) = ask(&db, dir, &["apply", "--baseline"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("baseline: recorded the 3 existing rows of public.accounts"),
        "{stdout}"
    );
    // The baseline is in the trail: one INSERT per row, by pgtrail itself.
    let log = ask_json(&db, dir, &["log", "accounts"]);
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(
        log.iter()
            .all(|c| c["op"] == "INSERT" && c["reason"] == "baseline"),
        "{log:?}"
    );

    // A table added later gets its baseline when it is attached, once.
    std::fs::write(dir.join("pgtrail.toml"), ACCOUNTS_AND_USERS).unwrap();
    let added = ask_json(&db, dir, &["apply", "--baseline"]);
    assert_eq!(
        added["baselined"],
        serde_json::json!([{"schema": "public", "table": "users", "rows": 2}]),
        "{added}"
    );
    assert_eq!(added["unchanged"], 1, "{added}");
    let again = ask_json(&db, dir, &["apply", "--baseline"]);
    assert_eq!(again["baselined"], serde_json::json!([]), "{again}");

    // A recorded change, then three that no trigger sees.
    db.client
        .batch_execute("UPDATE accounts SET name = 'Cyrus' WHERE id = 3")
        .await
        .unwrap();
    db.behind_the_triggers(
        "UPDATE accounts SET email = 'ann@evil.example.com', password_hash = 'h-evil' WHERE id = 1;
         DELETE FROM accounts WHERE id = 2;
         INSERT INTO accounts VALUES (4, 'ghost@example.com', 'Ghost', 'h-ghost', 0)",
    )
    .await;

    let (code, stdout, stderr) = ask(&db, dir, &["reconcile"]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("TABLE") && stdout.contains("WHAT"), "{stdout}");
    let update = line_of(&stdout, "id=1");
    assert!(
        update.contains("public.accounts")
            && update.contains("unrecorded update")
            && update.contains("email: ann@example.com → ann@evil.example.com")
            && update.contains("password_hash: [redacted] → [redacted]"),
        "{stdout}"
    );
    assert!(line_of(&stdout, "id=2").contains("unrecorded delete"), "{stdout}");
    assert!(line_of(&stdout, "id=4").contains("unrecorded insert"), "{stdout}");
    assert!(
        !stdout.contains("id=3") && !stdout.contains("users"),
        "recorded changes and untouched tables are not listed:\n{stdout}"
    );
    assert!(stdout.contains("3 row(s) changed without a trace"), "{stdout}");
    assert!(
        !stdout.contains("h-evil") && !stdout.contains("h-ann"),
        "a redacted value leaked:\n{stdout}"
    );
    assert!(
        !stdout.contains("note:"),
        "both tables have a baseline:\n{stdout}"
    );

    let (code, report) = ask_json_code(&db, dir, &["reconcile", "accounts"]);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(
        report["tables"],
        serde_json::json!([["public.accounts", true]]),
        "{report}"
    );
    assert_eq!(
        unrecorded(&report),
        [
            (serde_json::json!({"id": 2}), "unrecorded delete".to_string()),
            (serde_json::json!({"id": 4}), "unrecorded insert".to_string()),
            (serde_json::json!({"id": 1}), "unrecorded update".to_string()),
        ],
        "{report}"
    );
    let [deleted, inserted, updated] = report["rows"].as_array().unwrap().as_slice() else {
        unreachable!()
    };
    assert_eq!(
        updated["fields"],
        serde_json::json!(["email", "password_hash"]),
        "{report}"
    );
    assert_eq!(updated["recorded"]["email"], "ann@example.com", "{report}");
    assert_eq!(updated["live"]["email"], "ann@evil.example.com", "{report}");
    assert_eq!(deleted["recorded"]["email"], "bob@example.com", "{report}");
    assert_eq!(inserted["live"]["email"], "ghost@example.com", "{report}");
    assert!(
        !report.to_string().contains("h-evil"),
        "a redacted value leaked: {report}"
    );

    // Repaired by hand: the rows are as the trail says again.
    db.behind_the_triggers(
        "UPDATE accounts SET email = 'ann@example.com', password_hash = 'h-ann' WHERE id = 1;
         INSERT INTO accounts VALUES (2, 'bob@example.com', 'Bob', 'h-bob', 20.00);
         DELETE FROM accounts WHERE id = 4",
    )
    .await;
    let (code, stdout, stderr) = ask(&db, dir, &["reconcile"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("ok: every live row of 2 table(s) matches the trail"),
        "{stdout}"
    );
    assert!(!stdout.contains("note:"), "{stdout}");
    let report = ask_json(&db, dir, &["reconcile"]);
    assert_eq!(report["rows"], serde_json::json!([]), "{report}");
}

#[tokio::test]
async fn without_a_baseline_reconcile_says_which_rows_it_cannot_judge() {
    let (db, dir) = accounts_before_install().await;
    let dir = dir.path();
    let (code, stdout, stderr) = ask(&db, dir, &["apply"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(!stdout.contains("baseline"), "{stdout}");

    // Rows the trail never saw: they look like rows older than the install.
    db.behind_the_triggers(
        "UPDATE accounts SET email = 'ann@evil.example.com' WHERE id = 1;
         DELETE FROM accounts WHERE id = 2;
         INSERT INTO accounts VALUES (4, 'ghost@example.com', 'Ghost', 'h-ghost', 0)",
    )
    .await;
    let (code, stdout, stderr) = ask(&db, dir, &["reconcile"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("ok: no row the trail has seen changed without a trace in 1 table(s)")
            && !stdout.contains("every live row"),
        "the ghost row does not match the trail; ok says only what was judged:\n{stdout}"
    );
    assert!(
        stdout
            .contains("note: without a baseline, rows the trail never saw are not judged in public.accounts"),
        "{stdout}"
    );
    let report = ask_json(&db, dir, &["reconcile"]);
    assert_eq!(
        report["tables"],
        serde_json::json!([["public.accounts", false]]),
        "{report}"
    );
    assert_eq!(report["rows"], serde_json::json!([]), "{report}");

    // A row the trail has seen is judged all the same.
    db.client
        .batch_execute("INSERT INTO accounts VALUES (5, 'di@example.com', 'Di', 'h-di', 5)")
        .await
        .unwrap();
    db.behind_the_triggers("DELETE FROM accounts WHERE id = 5").await;
    let (code, stdout, stderr) = ask(&db, dir, &["reconcile"]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(line_of(&stdout, "id=5").contains("unrecorded delete"), "{stdout}");
    assert!(stdout.contains("note:"), "{stdout}");
}

#[tokio::test]
async fn a_disabled_capture_trigger_is_a_gap_that_check_warns_of_and_verify_and_reconcile_report() {
    let (db, dir) = accounts_before_install().await;
    let dir = dir.path();
    let (code, stdout, stderr) = ask(&db, dir, &["apply", "--baseline"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let report = ask_json(&db, dir, &["check"]);
    assert_eq!(report["capture_gaps"], serde_json::json!([]), "{report}");
    assert_eq!(report["ddl_watch"], true, "{report}");

    // One statement at a time: the gap names the command that opened it.
    for sql in [
        "ALTER TABLE accounts DISABLE TRIGGER pgtrail_capture_update",
        "UPDATE accounts SET email = 'quiet@example.com' WHERE id = 3",
        "ALTER TABLE accounts ENABLE TRIGGER pgtrail_capture_update",
    ] {
        db.client.batch_execute(sql).await.unwrap();
    }

    // Nothing is drifted now, so check passes, but it says what happened.
    let (code, stdout, stderr) = ask(&db, dir, &["check"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let gap = stdout
        .lines()
        .find(|line| line.starts_with("warning: capture was off for public.accounts"))
        .unwrap_or_else(|| panic!("no warning of the gap:\n{stdout}"));
    assert!(
        gap.contains("until") && gap.contains("ALTER TABLE accounts DISABLE TRIGGER pgtrail_capture_update"),
        "{gap}"
    );
    assert!(stdout.contains("ok: pgtrail"), "{stdout}");
    assert!(!stdout.contains("capture-gap detection is off"), "{stdout}");
    let report = ask_json(&db, dir, &["check"]);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    assert_eq!(report["ddl_watch"], true, "{report}");
    let gaps = report["capture_gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 1, "{report}");
    assert!(
        gaps[0]
            .as_str()
            .is_some_and(|g| g.contains("public.accounts") && g.contains("DISABLE TRIGGER")),
        "{report}"
    );

    let (code, stdout, stderr) = ask(&db, dir, &["verify"]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("capture was off for public.accounts"), "{stdout}");
    let (code, report) = ask_json_code(&db, dir, &["verify"]);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(problems(&report), [("capture_gap".to_string(), None)], "{report}");
    let problem = &report["problems"][0];
    assert_eq!(problem["table"], "public.accounts", "{report}");
    assert!(problem["until"].is_string(), "the gap is closed: {report}");
    assert!(
        problem["command"]
            .as_str()
            .is_some_and(|c| c.contains("DISABLE TRIGGER pgtrail_capture_update")),
        "{report}"
    );

    // The update made in the gap, found.
    let (code, stdout, stderr) = ask(&db, dir, &["reconcile"]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    let update = line_of(&stdout, "id=3");
    assert!(
        update.contains("unrecorded update") && update.contains("email: cy@example.com → quiet@example.com"),
        "{stdout}"
    );
    assert!(stdout.contains("1 row(s) changed without a trace"), "{stdout}");

    // Without the event triggers, check says gaps can no longer be seen: a
    // problem (exit 1).
    db.client
        .batch_execute("DROP EVENT TRIGGER pgtrail_ddl_watch")
        .await
        .unwrap();
    let (code, stdout, stderr) = ask(&db, dir, &["check"]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("capture-gap detection is off") && stdout.contains("pgtrail_ddl_watch"),
        "{stdout}{stderr}"
    );
    let (_, report) = ask_json_code(&db, dir, &["check"]);
    assert_eq!(report["ddl_watch"], false, "{report}");
    assert!(
        problems(&report).contains(&("no_ddl_watch".to_string(), None)),
        "{report}"
    );
}

#[tokio::test]
async fn reconcile_of_a_table_that_is_not_audited_is_one_helpful_error_and_exit_2() {
    let (db, dir) = accounts_before_install().await;
    let dir = dir.path();
    let (code, _, stderr) = ask(&db, dir, &["reconcile"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("pgtrail is not installed") && stderr.contains("pgtrail apply"),
        "{stderr}"
    );

    let (code, stdout, stderr) = ask(&db, dir, &["apply"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let (code, stdout, stderr) = ask(&db, dir, &["reconcile", "nosuchtable"]);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("table `nosuchtable` is not audited")
            && stderr.contains("help: the audited tables are public.accounts"),
        "{stderr}"
    );
    assert_eq!(stdout, "", "no report for a table that is not audited");
    let (code, _, stderr) = ask(&db, dir, &["reconcile", "acounts"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("did you mean `accounts`?"), "{stderr}");

    // A table the trail knows but no longer audits: an error, not "ok".
    std::fs::write(dir.join("pgtrail.toml"), ACCOUNTS_AND_USERS).unwrap();
    let (code, _, stderr) = ask(&db, dir, &["apply"]);
    assert_eq!(code, Some(0), "{stderr}");
    std::fs::write(dir.join("pgtrail.toml"), ACCOUNTS_ONLY).unwrap();
    let (code, stdout, stderr) = ask(&db, dir, &["apply"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("detached  public.users"), "{stdout}");
    for args in [
        &["reconcile", "users"][..],
        &["reconcile", "users", "--format", "json"],
    ] {
        let (code, stdout, stderr) = ask(&db, dir, args);
        assert_eq!(code, Some(2), "{args:?}: {stdout}{stderr}");
        assert!(
            stderr.contains("`public.users` is not audited now")
                && stderr.contains("pgtrail log public.users"),
            "{args:?}: {stderr}"
        );
        assert_eq!(stdout, "", "{args:?}");
    }
    let (code, stdout, stderr) = ask(&db, dir, &["reconcile"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("in 1 table(s)"), "{stdout}");

    let (code, _, stderr) = ask(&db, dir, &["reconcile", "--format", "csv"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("invalid value 'csv' for '--format"), "{stderr}");

    let help = pgtrail(&["reconcile", "--help"], dir);
    assert_eq!(help.status.code(), Some(0));
    assert!(
        text(&help).0.contains("Example"),
        "reconcile --help has no example"
    );
}

// ---- installs by roles that are not superusers; one database's roles ----

/// A login role that owns `db`, its schema public and [`SCHEMA`]'s tables,
/// with `attributes` (e.g. `CREATEROLE`), and the URL that logs in as it.
async fn installer(db: &TestDb, prefix: &str, attributes: &str) -> (String, String) {
    let role = format!("{prefix}_{}", db.name().trim_start_matches("pgtrail_test_"));
    db.client
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN {attributes};
             ALTER DATABASE {db} OWNER TO {role}; ALTER SCHEMA public OWNER TO {role};
             ALTER TABLE users OWNER TO {role}; ALTER TABLE sessions OWNER TO {role};",
            db = db.name()
        ))
        .await
        .expect("the installing role is created");
    let url = db.url().replacen("postgres@", &format!("{role}@"), 1);
    (role, url)
}

#[tokio::test]
async fn a_plain_table_owner_installs_and_every_command_says_what_that_lacks() {
    let (db, dir) = project("").await;
    let (role, url) = installer(&db, "migrator", "").await;

    // Before the install: plan and sql say what an install by this role would lack.
    for command in ["plan", "sql"] {
        let output = pgtrail(&[command, "--database-url", &url], dir.path());
        let (stdout, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(0), "{command}: {stderr}");
        assert!(
            stdout.contains("CREATE SCHEMA IF NOT EXISTS pgtrail"),
            "{command}: {stdout}"
        );
        assert!(
            stderr.contains(&format!(
                "warning: installed by {role}, the trail belongs to {role}"
            )) && stderr.contains("capture-gap detection is off")
                && stderr.contains(&format!("pgtrail_{}_reader\" does not exist", db.name())),
            "{command}: {stderr}"
        );
    }

    let output = pgtrail(&["apply", "--database-url", &url], dir.path());
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let owner_role = format!("pgtrail_{}_owner", db.name());
    assert!(
        stderr.contains(&format!(
            "warning: the trail belongs to {role}, not to the role \"{owner_role}\""
        )) && stderr.contains("what it means:")
            && stderr.contains(&format!("CREATE ROLE \"{owner_role}\" NOLOGIN;"))
            && stderr.contains(&format!("GRANT \"{owner_role}\" TO \"{role}\";"))
            && stderr.contains("rds_superuser")
            && stderr.contains("accept_installer_can_edit_trail = true"),
        "{stderr}"
    );

    // check: two problems, exit 1, one line each, and in JSON.
    let output = pgtrail(&["check", "--database-url", &url], dir.path());
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("the trail belongs to {role}")))
            && lines
                .iter()
                .any(|l| l.starts_with("capture-gap detection is off")),
        "{stdout}"
    );
    let output = pgtrail(&["check", "--database-url", &url, "--format", "json"], dir.path());
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let kinds: Vec<&str> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["installer_owns_trail", "no_ddl_watch"], "{report}");

    // Accepted in the config: check passes and says what was accepted.
    std::fs::write(
        dir.path().join("pgtrail.toml"),
        "[install]\naccept_installer_can_edit_trail = true\naccept_unseen_capture_gaps = true\n",
    )
    .unwrap();
    let output = pgtrail(&["check", "--database-url", &url], dir.path());
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("note: accepted in pgtrail.toml ([install] accept_unseen_capture_gaps = true)"),
        "{stdout}"
    );

    // An administrator creates the owner role; apply gives the trail to it.
    std::fs::write(dir.path().join("pgtrail.toml"), "").unwrap();
    db.client
        .batch_execute(&format!(
            "CREATE ROLE \"{owner_role}\" NOLOGIN; GRANT \"{owner_role}\" TO {role};"
        ))
        .await
        .unwrap();
    let output = pgtrail(&["apply", "--database-url", &url], dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output).1);
    let owner: String = db
        .client
        .query_one(
            "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'pgtrail'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, owner_role);
    let output = pgtrail(&["check", "--database-url", &url, "--format", "json"], dir.path());
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(report["problems"].as_array().map(Vec::len), Some(1), "{report}");
    assert_eq!(report["problems"][0]["kind"], "no_ddl_watch");
}

#[tokio::test]
async fn a_role_with_createrole_installs_with_roles_of_the_database_and_only_the_ddl_watch_missing() {
    // The shape of a managed service's admin user: CREATEROLE, no superuser.
    let (db, dir) = project("").await;
    let (role, url) = installer(&db, "admin", "CREATEROLE").await;
    let output = pgtrail(&["apply", "--database-url", &url], dir.path());
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: capture-gap detection is off"),
        "{stderr}"
    );
    assert!(!stderr.contains("the trail belongs to"), "{stderr}");
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
    let output = pgtrail(&["check", "--database-url", &url], dir.path());
    let (stdout, _) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("capture-gap detection is off"), "{stdout}");
    assert!(
        stdout.contains("accept it with [install] accept_unseen_capture_gaps = true"),
        "{stdout}"
    );
    let _ = role;
}

#[tokio::test]
async fn each_database_has_its_own_owner_and_reader_roles() {
    let (shop, shop_dir) = project("").await;
    let (billing, billing_dir) = project("").await;
    let (shop_admin, shop_url) = installer(&shop, "admin", "CREATEROLE").await;
    let (billing_admin, billing_url) = installer(&billing, "admin", "CREATEROLE").await;
    for (url, dir) in [(&shop_url, &shop_dir), (&billing_url, &billing_dir)] {
        let output = pgtrail(&["apply", "--database-url", url], dir.path());
        assert_eq!(output.status.code(), Some(0), "{}", text(&output).1);
    }
    let row = shop
        .client
        .query_one(
            "SELECT pg_has_role($1, $3, 'MEMBER'), pg_has_role($1, $4, 'MEMBER'),
                    pg_has_role($2, $3, 'MEMBER'), pg_has_role($2, $4, 'MEMBER')",
            &[
                &shop_admin,
                &billing_admin,
                &format!("pgtrail_{}_owner", shop.name()),
                &format!("pgtrail_{}_owner", billing.name()),
            ],
        )
        .await
        .unwrap();
    let memberships: Vec<bool> = (0..4).map(|i| row.get(i)).collect();
    assert_eq!(
        memberships,
        [true, false, false, true],
        "each installer owns its own trail only"
    );
    // Billing's installer, connected to shop, cannot read shop's trail.
    let (client, connection) = tokio_postgres::connect(
        &shop.url().replacen("postgres@", &format!("{billing_admin}@"), 1),
        tokio_postgres::NoTls,
    )
    .await
    .expect("billing's admin connects to shop");
    tokio::spawn(connection);
    let error = client
        .query("SELECT * FROM pgtrail.change", &[])
        .await
        .expect_err("no right on another database's trail");
    assert_eq!(error.code().map(|c| c.code()), Some("42501"), "{error}");
}

/// An applied project with two sign-ups and a script's mistake (every
/// email set to 'oops', actor `script`): the database, the project
/// directory and the mistake's transaction id.
async fn a_mistake_to_revert() -> (TestDb, tempfile::TempDir, String) {
    let (db, dir) = project("[capture]\nexclude = [\"sessions\"]\n").await;
    assert_eq!(
        pgtrail(&["apply", "--database-url", db.url()], dir.path())
            .status
            .code(),
        Some(0)
    );
    db.client
        .batch_execute("INSERT INTO users (email) VALUES ('ann@example.com'), ('bob@example.com')")
        .await
        .expect("sign-ups");
    db.client
        .batch_execute(
            "BEGIN; SELECT pgtrail.set_context(actor_name => 'script'); UPDATE users SET email = 'oops'; COMMIT;",
        )
        .await
        .expect("a mistake");
    let txid = count(&db, "SELECT max(txid) FROM pgtrail.changes")
        .await
        .to_string();
    (db, dir, txid)
}

#[tokio::test]
async fn revert_shows_the_plan_applies_only_with_yes_and_refuses_conflicts_with_exit_1() {
    let (db, dir, txid) = a_mistake_to_revert().await;
    let url = db.url();

    // The plan, and nothing changed.
    let (code, stdout, stderr) = ask(&db, dir.path(), &["revert", "--tx", &txid, "--reason", "undo"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("UPDATE") && stdout.contains("public.users"),
        "{stdout}"
    );
    assert!(stdout.contains("nothing was changed"), "{stdout}");
    assert_eq!(
        count(&db, "SELECT count(*) FROM users WHERE email = 'oops'").await,
        2
    );

    // Bad input: exit 2, with how to fix it.
    let both = pgtrail(
        &[
            "revert",
            "--tx",
            &txid,
            "--actor",
            "x",
            "--since",
            "1h ago",
            "--reason",
            "r",
            "--database-url",
            url,
        ],
        dir.path(),
    );
    assert_eq!(both.status.code(), Some(2), "{:?}", text(&both));
    let none = pgtrail(
        &[
            "revert",
            "--tx",
            "999999999",
            "--reason",
            "r",
            "--database-url",
            url,
        ],
        dir.path(),
    );
    assert_eq!(none.status.code(), Some(2));
    assert!(
        text(&none).1.contains("no recorded change matches"),
        "{:?}",
        text(&none)
    );

    // A later change of the same column: refused, exit 1, the change named.
    db.client
        .batch_execute("BEGIN; SELECT pgtrail.set_context(actor_name => 'support'); UPDATE users SET email = 'fixed' WHERE id = 1; COMMIT;")
        .await
        .expect("a later change");
    let (code, stdout, _) = ask(
        &db,
        dir.path(),
        &["revert", "--tx", &txid, "--reason", "undo", "--yes"],
    );
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("Conflicts (1)") && stdout.contains("support"),
        "{stdout}"
    );

    // skip: the other row is put back, under the actor given.
    let json = ask_json(
        &db,
        dir.path(),
        &[
            "revert",
            "--tx",
            &txid,
            "--reason",
            "undo",
            "--on-conflict",
            "skip",
            "--as",
            "ops",
            "--yes",
        ],
    );
    assert_eq!(json["applied"], serde_json::json!(true), "{json}");
    assert_eq!(
        count(&db, "SELECT count(*) FROM users WHERE email = 'bob@example.com'").await,
        1
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM users WHERE email = 'fixed'").await,
        1
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM pgtrail.changes WHERE actor_name = 'ops' AND reason = 'undo'"
        )
        .await,
        1
    );
}

/// `--yes` plans once: `pgtrail.revert` makes the plan in its own
/// transaction and the CLI prints what it ran, without asking
/// `pgtrail.revert_plan` for the same plan first.
#[tokio::test]
async fn revert_with_yes_plans_once_and_prints_the_statements_it_ran() {
    let (db, dir, txid) = a_mistake_to_revert().await;
    // (For the connections made after this one: the CLI's.)
    db.client
        .batch_execute(
            "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET track_functions = ''pl''', current_database()); END $$",
        )
        .await
        .expect("functions' calls counted");

    let (code, stdout, stderr) = ask(
        &db,
        dir.path(),
        &["revert", "--tx", &txid, "--reason", "undo", "--yes"],
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("Statements run") && stdout.contains("UPDATE public.users"),
        "{stdout}"
    );
    assert!(
        stdout.contains("reverted: 2 row(s) in 1 statement(s)"),
        "{stdout}"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM users WHERE email LIKE '%@example.com'").await,
        2
    );

    // The CLI's backend counted its calls as it ended: the plan made once,
    // inside pgtrail.revert.
    let calls = "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_user_functions
                 WHERE schemaname = 'pgtrail' AND funcname = 'revert_plan'";
    let mut plans = 0;
    for _ in 0..100 {
        db.client
            .batch_execute("SELECT pg_stat_clear_snapshot()")
            .await
            .expect("a fresh look at the statistics");
        plans = count(&db, calls).await;
        if plans > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(plans, 1, "pgtrail.revert_plan ran {plans} time(s)");
}

/// A WAL-mode project for the follower's stories: a throwaway cluster with
/// `wal_level = logical`, a table `t` applied in WAL mode, and an
/// application writing `n` transactions (an INSERT and an UPDATE of the
/// previous row, actor `i`) in the background. With `pause_halfway` the
/// application stops after `n / 2` until `halfway` is notified, so a story
/// can be sure that something happens while it is still writing, however
/// fast the machine.
struct FollowedWrites {
    cluster: pgtrail_testkit::Cluster,
    url: String,
    client: tokio_postgres::Client,
    dir: tempfile::TempDir,
    writer: tokio::task::JoinHandle<()>,
    halfway: std::sync::Arc<tokio::sync::Notify>,
}

impl FollowedWrites {
    async fn start(n: i32, pause_halfway: bool) -> FollowedWrites {
        use pgtrail_testkit::{Cluster, ClusterOptions, connect_to};

        let cluster = Cluster::start(ClusterOptions {
            fast: true,
            settings: vec![("wal_level".into(), "logical".into())],
            ..ClusterOptions::default()
        })
        .expect("a throwaway cluster with wal_level = logical starts");
        let url = cluster.url("postgres");
        let client = connect_to(&url).await;
        client
            .batch_execute("CREATE TABLE t (id integer PRIMARY KEY, n integer)")
            .await
            .expect("schema");
        let dir = tempfile::tempdir().expect("a project directory");
        std::fs::write(dir.path().join("pgtrail.toml"), "[capture]\nmode = \"wal\"\n").expect("config");
        let output = pgtrail(&["apply", "--database-url", &url], dir.path());
        assert_eq!(output.status.code(), Some(0), "{:?}", text(&output));

        let writer_url = url.clone();
        let halfway = std::sync::Arc::new(tokio::sync::Notify::new());
        let resume = halfway.clone();
        let writer = tokio::spawn(async move {
            let client = connect_to(&writer_url).await;
            for i in 1..=n {
                if pause_halfway && i == n / 2 + 1 {
                    resume.notified().await;
                }
                client
                    .batch_execute(&format!(
                        "BEGIN; SELECT pgtrail.set_context(actor_id => '{i}');
                         INSERT INTO t VALUES ({i}, 0); UPDATE t SET n = n + 1 WHERE id = {i} - 1; COMMIT;"
                    ))
                    .await
                    .expect("a write");
            }
        });
        FollowedWrites {
            cluster,
            url,
            client,
            dir,
            writer,
            halfway,
        }
    }
}

/// The trail of [`FollowedWrites`] holds each of its `n` transactions'
/// changes once, in commit order.
async fn assert_each_write_once_in_order(client: &tokio_postgres::Client, n: i32, what: &str) {
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE op = 'INSERT'), count(*) FILTER (WHERE op = 'UPDATE'),
                    count(*) - count(DISTINCT (op, pk)),
                    count(*) FILTER (WHERE NOT ordered)
             FROM (SELECT op, pk, coalesce(actor_id::int <= lead(actor_id::int) OVER (ORDER BY id), true) AS ordered
                   FROM pgtrail.changes) AS c",
            &[],
        )
        .await
        .expect("the trail reads");
    let (inserts, updates, repeated, disordered): (i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!((inserts, updates), (i64::from(n), i64::from(n) - 1), "{what}");
    assert_eq!(repeated, 0, "no change written twice ({what})");
    assert_eq!(disordered, 0, "changes in commit order ({what})");
}

/// WAL mode's follower as cron and systemd run it (issue 15): killed with
/// SIGKILL at random points while the application writes, started twice
/// at once, stopped with SIGTERM: every change reaches the trail once, in
/// commit order.
#[tokio::test]
async fn a_follower_killed_at_random_points_loses_and_repeats_nothing() {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    let FollowedWrites {
        cluster: _cluster,
        url,
        client,
        dir,
        writer,
        ..
    } = FollowedWrites::start(1000, false).await;

    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7)
        | 1;
    eprintln!("kill seed {seed}");
    let mut random = move |below: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % below
    };
    let spawn = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_pgtrail"))
            .args(args)
            .args(["--database-url", &url])
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pgtrail follow starts")
    };
    let mut kills = 0;
    while !writer.is_finished() || kills < 5 {
        let mut follower = spawn(&["follow", "--batch-size", "7"]);
        // Now and then a second follower at the same time: it waits for the
        // first one's lock, and writes nothing twice.
        let mut second = (random(3) == 0).then(|| spawn(&["follow", "--batch-size", "5"]));
        tokio::time::sleep(Duration::from_millis(50 + random(400))).await;
        follower.kill().expect("SIGKILL");
        follower.wait().expect("reaped");
        if let Some(second) = second.as_mut() {
            tokio::time::sleep(Duration::from_millis(random(300))).await;
            second.kill().expect("SIGKILL");
            second.wait().expect("reaped");
        }
        kills += 1;
    }
    writer.await.expect("the writer finished");

    // A follower stopped by SIGTERM finishes its batch and exits cleanly.
    let follower = spawn(&["follow"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(follower.id() as libc::pid_t, libc::SIGTERM);
    }
    let status = follower.wait_with_output().expect("exits").status;
    assert_eq!(status.code(), Some(0), "SIGTERM ends the follower cleanly");
    let output = pgtrail(&["follow", "--once", "--database-url", &url], dir.path());
    assert_eq!(output.status.code(), Some(0), "{:?}", text(&output));

    assert_each_write_once_in_order(&client, 1000, &format!("after {kills} kills")).await;
    let output = pgtrail(&["check", "--database-url", &url], dir.path());
    assert_eq!(output.status.code(), Some(0), "{:?}", text(&output));
}

/// WAL mode's follower stopped with SIGTERM mid-stream, again and again,
/// while the application writes (issue 15): each stop writes what it has
/// read, acknowledges it and exits 0; the next follower starts where the
/// trail ends. Every change reaches the trail once, in commit order, and
/// the slot is left free and caught up.
#[tokio::test]
async fn a_follower_stopped_with_sigterm_mid_stream_loses_and_repeats_nothing() {
    use std::time::Duration;

    let FollowedWrites {
        cluster: _cluster,
        url,
        client,
        dir,
        writer,
        halfway,
    } = FollowedWrites::start(1500, true).await;
    let mut stops = 0;
    let mut wrote_while_writing = 0;
    let mut last_walsender: Option<i32> = None;
    while !writer.is_finished() || stops < 3 {
        let follower = Command::new(env!("CARGO_BIN_EXE_pgtrail"))
            .args(["follow", "--format", "json", "--database-url", &url])
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("pgtrail follow starts");
        // Stopped once it streams (a new walsender holds the slot): a
        // SIGTERM before the process has even reached its handlers would
        // end it by the default action, which says nothing of the follower.
        for _ in 0..600 {
            let walsender: Option<i32> = client
                .query_one(
                    "SELECT active_pid FROM pg_replication_slots WHERE slot_name = pgtrail.wal_slot()",
                    &[],
                )
                .await
                .expect("the slot reads")
                .get(0);
            if walsender.is_some() && walsender != last_walsender {
                last_walsender = walsender;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(300 + 150 * (stops % 4))).await;
        if stops == 0 {
            // The first stop comes while the application, paused halfway,
            // has not finished, and once the follower has written something.
            for _ in 0..600 {
                let written: i64 = client
                    .query_one("SELECT count(*) FROM pgtrail.change", &[])
                    .await
                    .expect("the trail reads")
                    .get(0);
                if written > 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(follower.id() as libc::pid_t, libc::SIGTERM);
        }
        let output = follower.wait_with_output().expect("exits");
        assert_eq!(
            output.status.code(),
            Some(0),
            "SIGTERM ends the follower cleanly: {:?}",
            text(&output)
        );
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
        if !writer.is_finished() {
            wrote_while_writing += report["changes"].as_u64().unwrap_or(0);
        }
        if stops == 0 {
            halfway.notify_one();
        }
        stops += 1;
    }
    writer.await.expect("the writer finished");
    assert!(
        wrote_while_writing > 0,
        "followers wrote while the application wrote"
    );
    let output = pgtrail(&["follow", "--once", "--database-url", &url], dir.path());
    assert_eq!(output.status.code(), Some(0), "{:?}", text(&output));

    assert_each_write_once_in_order(&client, 1500, &format!("after {stops} stops")).await;
    let slot = client
        .query_one(
            "SELECT active, pg_wal_lsn_diff(pg_current_wal_insert_lsn(), confirmed_flush_lsn)::int8
             FROM pg_replication_slots WHERE slot_name = pgtrail.wal_slot()",
            &[],
        )
        .await
        .expect("the slot");
    assert!(
        !slot.get::<_, bool>(0),
        "the slot is free once the follower exits"
    );
    assert!(
        slot.get::<_, i64>(1) < 100_000,
        "the slot caught up: {} bytes behind",
        slot.get::<_, i64>(1)
    );
    let output = pgtrail(&["check", "--database-url", &url], dir.path());
    assert_eq!(output.status.code(), Some(0), "{:?}", text(&output));
}

#[tokio::test]
async fn at_on_the_transaction_clock_includes_what_the_moment_s_own_transaction_did() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    db.client
        .batch_execute("CREATE TABLE users (id int PRIMARY KEY, email text)")
        .await
        .unwrap();
    std::fs::write(dir.path().join("pgtrail.toml"), "").unwrap();
    let applied = pgtrail(&["apply", "--database-url", db.url()], dir.path());
    assert_eq!(applied.status.code(), Some(0), "{}", text(&applied).1);
    // A user created in a request whose now() is what a created_at column holds.
    let started: String = db
        .client
        .query_one(
            "WITH u AS (INSERT INTO users VALUES (1, 'new@example.test') RETURNING 1)
             SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM u",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let on_transaction = ask_json(
        &db,
        dir.path(),
        &["at", "users", "1", "--time", &started, "--clock", "transaction"],
    );
    assert_eq!(on_transaction["email"], "new@example.test");
    let on_change = ask_json(&db, dir.path(), &["at", "users", "1", "--time", &started]);
    assert_eq!(
        on_change,
        serde_json::Value::Null,
        "on the change clock it did not exist yet"
    );
    let table = ask_json(
        &db,
        dir.path(),
        &["at", "users", "--time", &started, "--clock", "transaction"],
    );
    assert_eq!(table.as_array().map(Vec::len), Some(1));
    let (code, _, stderr) = ask(
        &db,
        dir.path(),
        &["at", "users", "1", "--time", &started, "--clock", "wall"],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("transaction"), "{stderr}");
}

#[tokio::test]
async fn log_and_report_name_migrations_show_context_keys_and_refuse_what_cannot_match() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    a_day_of_work(&db, dir.path()).await;
    db.client
        .batch_execute("BEGIN; SET LOCAL pgtrail.migration = '0043_backfill'; UPDATE users SET name = 'X' WHERE id = 2; COMMIT;")
        .await
        .unwrap();

    // The migration's name where there is no actor, and a context key as a column.
    let (code, stdout, stderr) = ask(&db, dir.path(), &["log", "--show", "request_id"]);
    assert_eq!(code, Some(0), "{stderr}");
    let header = stdout.lines().next().unwrap_or_default();
    assert!(header.contains("REQUEST_ID"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("mod@example.test") && l.trim_end().ends_with("r-1")),
        "{stdout}"
    );
    assert!(stdout.contains("0043_backfill"), "{stdout}");
    assert!(
        !stdout.contains("- (migration)") && !stdout.contains("  -  "),
        "{stdout}"
    );
    let (code, stdout, stderr) = ask(&db, dir.path(), &["report", "--show", "request_id"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("REQUEST_ID") && stdout.contains("r-1"),
        "{stdout}"
    );
    assert!(stdout.contains("0043_backfill"), "{stdout}");

    // Keys of the wrong type: explained, or read as the column's type.
    let (code, _, stderr) = ask(&db, dir.path(), &["history", "users", "1.5"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("`id` is integer but `1.5` is not a whole number"),
        "{stderr}"
    );
    assert!(!stderr.contains("invalid input syntax"), "{stderr}");
    let by_json = ask_json(&db, dir.path(), &["history", "users", r#"{"id": "100"}"#]);
    let by_number = ask_json(&db, dir.path(), &["history", "users", "100"]);
    assert_eq!(by_json, by_number);
    assert!(by_json.as_array().is_some_and(|a| !a.is_empty()), "{by_json}");
    let (code, _, stderr) = ask(&db, dir.path(), &["history", "users", r#"{"uid": 1}"#]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("`uid` is not a key column"), "{stderr}");

    // A field no table has, and a window that ends before it starts.
    let (code, _, stderr) = ask(&db, dir.path(), &["log", "--field", "nosuch"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("no audited table has a column `nosuch`"),
        "{stderr}"
    );
    let (code, _, stderr) = ask(&db, dir.path(), &["log", "users", "--field", "emial"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("did you mean `email`?"), "{stderr}");
    let (code, stdout, _) = ask(&db, dir.path(), &["log", "users", "--field", "email"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("email"), "{stdout}");
    for command in ["log", "report"] {
        let (code, _, stderr) = ask(
            &db,
            dir.path(),
            &[command, "--since", "1h ago", "--until", "2h ago"],
        );
        assert_eq!(code, Some(2), "{command}: {stderr}");
        assert!(
            stderr.contains("--since") && stderr.contains("is after --until"),
            "{stderr}"
        );
    }

    let (code, _, stderr) = ask(
        &db,
        dir.path(),
        &[
            "report",
            "--kind",
            "population",
            "--since",
            "1h ago",
            "--until",
            "2h ago",
        ],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("is after --until"), "{stderr}");
    let (code, _, stderr) = ask(
        &db,
        dir.path(),
        &["report", "--kind", "schema", "--show", "request_id"],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--show is for the activity report"), "{stderr}");

    // Query commands read no config file, so they take no --config.
    for args in [
        &["log"][..],
        &["history", "users", "100"],
        &["blame", "users", "100"],
    ] {
        let mut all = args.to_vec();
        all.extend(["--config", "other.toml"]);
        let (code, _, stderr) = ask(&db, dir.path(), &all);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("--config"), "{stderr}");
    }
}

// ---- compliance reports and evidence bundles ----

/// An auditor's request from the command line: each report kind as a table,
/// JSON and CSV; a bundle written with the seal key and checked offline
/// with the public key (exit 0), then caught once a row is removed (exit
/// 1); bad input is exit 2 and writes nothing.
#[tokio::test]
async fn compliance_reports_and_a_bundle_an_auditor_verifies_offline() {
    let (db, dir) = project(
        "[capture]\nexclude = [\"sessions\"]\n\n[report]\napplication_roles = [\"nobody_app\"]\nsubject_columns = [\"email\"]\n",
    )
    .await;
    let url = db.url().to_string();
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--database-url", url.as_str()]);
        pgtrail(&all, dir.path())
    };
    assert_eq!(run(&["apply"]).status.code(), Some(0));
    db.client
        .batch_execute(
            "BEGIN; SELECT pgtrail.set_context(actor_id => '7', actor_type => 'user');
             INSERT INTO users (email) VALUES ('ann@example.com'); COMMIT;
             UPDATE users SET email = 'ann@example.org' WHERE id = 1;",
        )
        .await
        .expect("changes");

    let population = run(&["report", "--kind", "population"]);
    let (stdout, stderr) = text(&population);
    assert_eq!(population.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("Completeness") && stdout.contains("not sealed yet"),
        "{stdout}"
    );
    let privileged = run(&["report", "--kind", "privileged", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&privileged.stdout).expect("JSON");
    let ops: Vec<&str> = json["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| c["op"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        ops,
        ["INSERT", "UPDATE"],
        "the test's superuser is no application role"
    );
    let subject = run(&[
        "report",
        "--kind",
        "subject",
        "--subject",
        "ann@example.com",
        "--format",
        "csv",
    ]);
    let (stdout, _) = text(&subject);
    assert_eq!(
        stdout.lines().count(),
        3,
        "header and both changes of the row: {stdout}"
    );

    // No bundle of unsealed changes, and nothing printed.
    keygen(dir.path(), "seal.key", "shop.example.com/audit");
    let unsealed = run(&[
        "report",
        "--kind",
        "population",
        "--bundle",
        "evidence",
        "--key",
        "seal.key",
    ]);
    let (stdout, stderr) = text(&unsealed);
    assert_eq!(unsealed.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("`pgtrail seal --key FILE`"), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(run(&["seal", "--key", "seal.key"]).status.code(), Some(0));
    let bundle = run(&[
        "report",
        "--kind",
        "population",
        "--bundle",
        "evidence",
        "--key",
        "seal.key",
    ]);
    assert_eq!(bundle.status.code(), Some(0), "{}", text(&bundle).1);
    let verified = pgtrail(
        &["verify-bundle", "evidence", "--public-key", "seal.key.pub"],
        dir.path(),
    );
    let (stdout, stderr) = text(&verified);
    assert_eq!(verified.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("intact"), "{stdout}");

    let report = dir.path().join("evidence/report.json");
    let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    json["changes"].as_array_mut().unwrap().remove(1);
    std::fs::write(&report, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    let tampered = pgtrail(
        &[
            "verify-bundle",
            "evidence",
            "--public-key",
            "seal.key.pub",
            "--format",
            "json",
        ],
        dir.path(),
    );
    assert_eq!(tampered.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&tampered.stdout).expect("JSON");
    assert_eq!(json["intact"], false);
    assert!(
        json["problems"].to_string().contains("missing from report.json"),
        "{json}"
    );

    // Bad input: exit 2, with what to do.
    let full = run(&[
        "report", "--kind", "schema", "--bundle", "evidence", "--key", "seal.key",
    ]);
    assert_eq!(full.status.code(), Some(2));
    assert!(text(&full).1.contains("not empty"));
    let no_subject = run(&["report", "--kind", "subject"]);
    assert_eq!(no_subject.status.code(), Some(2));
    assert!(
        text(&no_subject)
            .1
            .contains("help: `pgtrail report --kind subject users 42`")
    );
    let activity_csv = run(&["report", "--format", "csv"]);
    assert_eq!(activity_csv.status.code(), Some(2));
}

/// Retention from the command line: legal holds with their mistakes
/// refused (exit 2, nothing recorded), maintain and archive dry runs, and
/// check naming a change outside every partition. (Archives of months-old
/// partitions are the library's retention stories, on a server under
/// faketime.)
#[tokio::test]
async fn retention_commands_hold_plan_and_check() {
    let (db, dir) = project(
        "[capture]\ninclude = [\"users\"]\nexclude = [\"sessions\"]\n\n[retention]\npartition = \"week\"\npremake = 2\nkeep = \"400 days\"\narchive_dir = \"archive\"\n",
    )
    .await;
    assert_eq!(ask(&db, dir.path(), &["apply"]).0, Some(0));
    let (code, stdout, stderr) = ask(&db, dir.path(), &["check"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        count(
            &db,
            "SELECT count(*) FROM pgtrail.partitions() WHERE name LIKE 'change_p%'"
        )
        .await
            >= 2
    );

    for (args, message) in [
        (
            vec!["hold", "add", "--table", "users", "--key", "1", "--reason", " "],
            "needs a reason",
        ),
        (
            vec!["hold", "add", "--key", "1", "--reason", "x"],
            "--key needs --table",
        ),
        (
            vec![
                "hold",
                "add",
                "--table",
                "users",
                "--from",
                "2026-02-01",
                "--until",
                "2026-01-01",
                "--reason",
                "x",
            ],
            "must be before",
        ),
        (vec!["hold", "add", "--table", "nope", "--reason", "x"], "nope"),
    ] {
        let (code, stdout, stderr) = ask(&db, dir.path(), &args);
        assert_eq!(code, Some(2), "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    assert_eq!(count(&db, "SELECT count(*) FROM pgtrail.hold").await, 0);

    let added = ask_json(
        &db,
        dir.path(),
        &[
            "hold", "add", "--table", "users", "--key", "1", "--reason", "case 9",
        ],
    );
    let id = added["hold"].as_i64().expect("hold id").to_string();
    let holds = ask_json(&db, dir.path(), &["hold", "list"]);
    assert_eq!(holds[0]["table"], "public.users", "{holds}");
    assert_eq!(holds[0]["pk"], serde_json::json!({"id": 1}), "{holds}");
    assert_eq!(
        ask(&db, dir.path(), &["hold", "release", &id, "--reason", "closed"]).0,
        Some(0)
    );
    let (code, _, stderr) = ask(&db, dir.path(), &["hold", "release", &id, "--reason", "closed"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("no active hold"), "{stderr}");
    assert_eq!(
        ask_json(&db, dir.path(), &["hold", "list"]),
        serde_json::json!([])
    );

    let (code, stdout, stderr) = ask(&db, dir.path(), &["maintain", "--dry-run"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("nothing to archive"), "{stdout}");
    let plan = ask_json(&db, dir.path(), &["archive", "--dry-run"]);
    assert_eq!(plan["partitions"], serde_json::json!([]), "{plan}");
    assert!(!dir.path().join("archive").exists());

    // A change far in the future lands in the default partition: check says so.
    db.client
        .batch_execute(
            "INSERT INTO pgtrail.change (txid, ctx, table_id, op, changed_at, pk, new_values)
             SELECT 1, 1, id, 'I', '2100-01-01', '{\"id\": 9}', '{\"id\": 9}' FROM pgtrail.audited_table LIMIT 1",
        )
        .await
        .expect("a stray change");
    let (code, stdout, _) = ask(&db, dir.path(), &["check"]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("pgtrail.change_default"), "{stdout}");
}

/// `pgtrail maintain` killed at every step (a failpoint makes the process
/// exit on the spot, as `kill -9` would: no rollback sent, no cleanup), one
/// run after another on a server whose clock is five months back under
/// faketime: after each death nothing is lost (every change is in the
/// database or in exactly one recorded archive) and the next run finishes
/// the work; at the end verify passes with the archive and no change is
/// archived twice.
#[tokio::test]
async fn maintain_killed_at_each_step_loses_nothing_and_the_next_run_finishes() {
    use pgtrail_testkit::{Cluster, ClusterOptions, connect_to};

    const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
    assert!(
        Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} is missing: install Debian's faketime (apt-get install faketime)"
    );
    let clock_dir = tempfile::Builder::new()
        .prefix("pgtrail-clock-")
        .tempdir_in("/tmp")
        .expect("clock dir");
    std::fs::set_permissions(
        clock_dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let clock = clock_dir.path().join("faketime.rc");
    let set_clock = |offset: &str| {
        std::fs::write(&clock, format!("{offset}\n")).expect("the clock file is written");
        std::fs::set_permissions(&clock, std::os::unix::fs::PermissionsExt::from_mode(0o644)).expect("chmod");
    };
    set_clock("-150d");
    let cluster = Cluster::start(ClusterOptions {
        fast: true,
        env: vec![
            ("LD_PRELOAD".into(), LIBFAKETIME.into()),
            ("FAKETIME_TIMESTAMP_FILE".into(), clock.display().to_string()),
            ("FAKETIME_NO_CACHE".into(), "1".into()),
        ],
        ..ClusterOptions::default()
    })
    .expect("a cluster under faketime starts");
    connect_to(&cluster.url("postgres"))
        .await
        .batch_execute("CREATE DATABASE shop")
        .await
        .expect("create shop");
    let url = cluster.url("shop");
    let client = connect_to(&url).await;
    client
        .batch_execute("CREATE TABLE orders (id integer PRIMARY KEY, status text, total numeric(10,2))")
        .await
        .expect("schema");
    let dir = tempfile::tempdir().expect("a project directory");
    let dir = dir.path();
    std::fs::write(
        dir.join("pgtrail.toml"),
        "[capture]\ninclude = [\"orders\"]\n\n[retention]\npartition = \"month\"\npremake = 1\nkeep = \"60 days\"\narchive_dir = \"archive\"\n",
    )
    .expect("pgtrail.toml");
    let run_split = |args: &[&str], failpoint: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pgtrail"));
        command.args(args);
        if args[0] != "keygen" {
            command.args(["--database-url", url.as_str()]);
        }
        command.current_dir(dir).env("NO_COLOR", "1");
        if let Some(step) = failpoint {
            command.env(pgtrail::archive::FAILPOINT_VAR, step);
        }
        let output = command.output().expect("the pgtrail binary runs");
        let (stdout, stderr) = text(&output);
        (output.status.code(), stdout, stderr)
    };
    let run = |args: &[&str], failpoint: Option<&str>| {
        let (code, stdout, stderr) = run_split(args, failpoint);
        (code, format!("{stdout}{stderr}"))
    };
    assert_eq!(run(&["apply"], None).0, Some(0));
    assert_eq!(run(&["keygen", "--key", "seal.key"], None).0, Some(0));

    // Five months of orders, maintain from cron keeping partitions ahead.
    for (month, offset) in ["-150d", "-120d", "-90d", "-60d", "-30d", "+0d"]
        .iter()
        .enumerate()
    {
        set_clock(offset);
        let (code, out) = run(&["maintain"], None);
        assert_eq!(code, Some(0), "{out}");
        client
            .batch_execute(&format!(
                "BEGIN; SELECT pgtrail.set_context(actor_id => 'clerk{month}', reason => 'month {month}');
                 INSERT INTO orders SELECT {month} * 100 + g, 'new', g FROM generate_series(1, 20) AS g;
                 UPDATE orders SET status = 'paid' WHERE id % 3 = 0 AND id > {month} * 100;
                 DELETE FROM orders WHERE id = {month} * 100 + 20;
                 COMMIT;"
            ))
            .await
            .expect("a month of orders");
    }
    let all: Vec<i64> = client
        .query("SELECT id FROM pgtrail.change ORDER BY id", &[])
        .await
        .expect("the trail")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let due = client
        .query_one(
            "SELECT count(*) FROM pgtrail.partitions() WHERE NOT is_default AND until_at <= now() - interval '60 days'",
            &[],
        )
        .await
        .map(|r| r.get::<_, i64>(0))
        .unwrap_or(0);
    assert!(due >= 2, "at least two partitions are past retention");

    // Every change is in the database or in exactly one recorded archive
    // file, and the archive's files are complete.
    let archive = dir.join("archive");
    let nothing_lost = |step: &str, live: Vec<i64>, records: Vec<(String, i64)>| {
        let mut seen: Vec<i64> = live;
        for (file, rows) in &records {
            let read = pgtrail::archive::parquet_file::read_rows(&archive.join(file))
                .unwrap_or_else(|e| panic!("after {step}: recorded archive {file} reads ({e})"));
            assert_eq!(read.len() as i64, *rows, "after {step}: {file}");
            seen.extend(read.iter().map(|c| c.id));
        }
        seen.sort_unstable();
        assert_eq!(
            seen, all,
            "after {step}: every change once, in the database or an archive"
        );
    };
    let state = || async {
        let live: Vec<i64> = client
            .query("SELECT id FROM pgtrail.change", &[])
            .await
            .expect("the trail")
            .iter()
            .map(|r| r.get(0))
            .collect();
        let records: Vec<(String, i64)> = client
            .query("SELECT file, row_count FROM pgtrail.archive ORDER BY id", &[])
            .await
            .expect("the archives")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        (live, records)
    };

    for step in [
        "maintain:premade",
        "maintain:sealed",
        "archive:parquet-partial",
        "archive:parquet-written",
        "archive:read-back",
        "archive:manifest-written",
        "archive:detached",
        "archive:recorded",
        "archive:dropped",
        "archive:committed",
        "archive:parquet-partial",
        "archive:dropped",
    ] {
        let (code, out) = run(&["maintain", "--key", "seal.key"], Some(step));
        assert_eq!(
            code,
            Some(pgtrail::archive::FAILPOINT_EXIT),
            "maintain stops at {step}: {out}"
        );
        assert!(out.contains(&format!("stopped at {step}")), "{out}");
        // The server notices the dead connection and rolls its work back.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let (live, records) = state().await;
        nothing_lost(step, live, records);
    }
    // A partition was archived by the run killed after its commit.
    let (_, records) = state().await;
    assert_eq!(records.len(), 1, "{records:?}");

    let (code, out) = run(&["maintain", "--key", "seal.key"], None);
    assert_eq!(code, Some(0), "{out}");
    let (live, records) = state().await;
    assert_eq!(
        records.len() as i64,
        due,
        "every due partition archived once: {records:?}"
    );
    nothing_lost("the last run", live, records);
    let leftovers: Vec<String> = std::fs::read_dir(&archive)
        .expect("the archive directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".partial"))
        .collect();
    assert_eq!(leftovers, Vec::<String>::new(), "no half-written file is left");
    let (code, out) = run(
        &["verify", "--public-key", "seal.key.pub", "--archive", "archive"],
        None,
    );
    assert_eq!(code, Some(0), "verify passes with the archive: {out}");
    let (code, out) = run(&["maintain", "--key", "seal.key"], None);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("nothing to archive"),
        "a last run has nothing to do: {out}"
    );

    // A customer's erasure after their order's month was archived: refused
    // without the archive (it would leave the values in the files); killed
    // right after its commit, before the old file is removed; the next
    // maintain finishes it, and verify still passes from the files.
    let (code, out) = run(
        &["erase", "orders", "102", "--reason", "GDPR request #4411"],
        None,
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("--archive"), "{out}");
    let step = "erase:committed";
    let (code, out) = run(
        &[
            "erase",
            "orders",
            "102",
            "--reason",
            "GDPR request #4411",
            "--archive",
            "archive",
        ],
        Some(step),
    );
    assert_eq!(
        code,
        Some(pgtrail::archive::FAILPOINT_EXIT),
        "erase stops at {step}: {out}"
    );
    let parquet_files = || {
        let mut names: Vec<String> = std::fs::read_dir(&archive)
            .expect("the archive directory")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".parquet"))
            .collect();
        names.sort();
        names
    };
    let (live, records) = state().await;
    assert_eq!(
        parquet_files().len(),
        records.len() + 1,
        "the old file is still there"
    );
    nothing_lost(step, live, records);
    let (code, out) = run(&["maintain", "--key", "seal.key"], None);
    assert_eq!(code, Some(0), "{out}");
    let (_, records) = state().await;
    let mut recorded: Vec<String> = records.iter().map(|(file, _)| file.clone()).collect();
    recorded.sort();
    assert_eq!(parquet_files(), recorded, "only the recorded files are left");
    let erased: Vec<pgtrail::archive::ArchivedChange> = records
        .iter()
        .flat_map(|(file, _)| pgtrail::archive::parquet_file::read_rows(&archive.join(file)).expect("reads"))
        .filter(|c| c.pk.as_deref() == Some(r#"{"id": 102}"#))
        .collect();
    assert_eq!(erased.len(), 2, "order 102's insert and update are archived");
    for change in &erased {
        for values in [&change.old_values, &change.new_values].into_iter().flatten() {
            assert!(
                values.contains("pgtrail_erased") && !values.contains("new") && !values.contains("paid"),
                "{values}"
            );
        }
    }
    let (code, out) = run(
        &["verify", "--public-key", "seal.key.pub", "--archive", "archive"],
        None,
    );
    assert_eq!(code, Some(0), "verify passes after the erasure: {out}");
}

#[tokio::test]
async fn serve_takes_its_certificate_from_flags_over_the_config() {
    // The config names files that are not there; the flags name good ones.
    let token_hash = "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881";
    let (db, dir) = project(&format!(
        "[serve]\ntls_cert = \"gone-cert.pem\"\ntls_key = \"gone-key.pem\"\n\n[serve.tokens.support]\nrole = \"reader\"\nsha256 = \"{token_hash}\"\n"
    ))
    .await;
    let applied = pgtrail(&["apply", "--database-url", db.url()], dir.path());
    assert_eq!(applied.status.code(), Some(0), "{:?}", text(&applied));
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    std::fs::write(path("cert.pem"), certified.cert.pem()).unwrap();
    std::fs::write(path("key.pem"), certified.signing_key.serialize_pem()).unwrap();
    std::fs::write(path("other-key.pem"), other.signing_key.serialize_pem()).unwrap();
    let serve = |tls: &[&str]| {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--database-url", db.url()];
        args.extend_from_slice(tls);
        pgtrail(&args, dir.path())
    };

    // Without flags, the config's missing certificate stops the start: exit 2.
    let output = serve(&[]);
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the certificate file gone-cert.pem: not found"),
        "{stderr}"
    );

    // One flag without the other: a usage error, exit 2.
    let output = serve(&["--tls-cert", &path("cert.pem")]);
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--tls-key"), "{stderr}");

    // A missing, an unreadable (a directory) and a mismatched key: exit 2,
    // the file and what is wrong with it named.
    let directory = dir.path().to_string_lossy().into_owned();
    for (cert, key, expected) in [
        (path("cert.pem"), path("nope.pem"), "the key file"),
        (path("cert.pem"), directory.clone(), "is a directory"),
        (directory, path("key.pem"), "the certificate file"),
        (
            path("cert.pem"),
            path("other-key.pem"),
            "the key is not the certificate's",
        ),
    ] {
        let output = serve(&["--tls-cert", &cert, "--tls-key", &key]);
        let (stdout, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(2), "{expected}: {stdout}{stderr}");
        assert!(stderr.contains(expected), "{expected}: {stderr}");
        assert!(stderr.contains("help: --tls-cert and --tls-key"), "{stderr}");
        assert!(!stdout.contains("pgtrail serve: http"), "{stdout}");
    }

    // Good files in the flags override the config's: it serves HTTPS.
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgtrail"))
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url", db.url()])
        .args(["--tls-cert", &path("cert.pem"), "--tls-key", &path("key.pem")])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("pgtrail serve starts");
    let stdout = child.stdout.take().expect("its stdout");
    let first = std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
        line
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !first.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let finished = first.is_finished();
    child.kill().expect("stop pgtrail serve");
    child.wait().expect("reaped");
    assert!(finished, "pgtrail serve printed nothing in 60 s");
    let line = first.join().expect("the reader thread");
    assert!(line.starts_with("pgtrail serve: https://127.0.0.1:"), "{line}");
}

/// A WAL-mode transaction whose changes came without a signed context
/// message (the writer set the context trigger's mark itself, so the
/// trigger never emitted): `pgtrail follow --format json` counts it and
/// `pgtrail check` warns about it, in words and in its JSON, without
/// failing (like a closed capture gap: history for a reviewer).
#[tokio::test]
async fn follow_counts_and_check_shows_a_transaction_that_kept_the_context_trigger_quiet() {
    let FollowedWrites {
        cluster: _cluster,
        url,
        client,
        dir,
        writer,
        halfway: _,
    } = FollowedWrites::start(2, false).await;
    writer.await.expect("the application wrote");
    client
        .batch_execute(
            "BEGIN;
             SELECT set_config('pgtrail.emitted', txid_current()::text, true);
             INSERT INTO t VALUES (100, 0);
             COMMIT;",
        )
        .await
        .expect("a quiet write");

    let output = pgtrail(
        &["follow", "--once", "--format", "json", "--database-url", &url],
        dir.path(),
    );
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(report["changes"], 4, "{stdout}");
    assert_eq!(report["unsigned_transactions"], 1, "{stdout}");

    let output = pgtrail(&["check", "--database-url", &url], dir.path());
    let (stdout, stderr) = text(&output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "a warning, not a problem: {stdout}{stderr}"
    );
    assert!(
        stdout.contains("warning: 1 WAL-mode transaction (1 change) came without a signed context message"),
        "{stdout}"
    );
    let output = pgtrail(&["check", "--format", "json", "--database-url", &url], dir.path());
    let (stdout, stderr) = text(&output);
    let check: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(check["wal_unsigned"]["transactions"], 1, "{stdout}{stderr}");
    assert_eq!(check["wal_unsigned"]["changes"], 1, "{stdout}");
    assert!(check["wal_unsigned"]["latest_txid"].is_i64(), "{stdout}");
}

/// WAL mode's operations (issue 15): a forged context message makes
/// `pgtrail check` exit 1 and say so (aligned text and JSON) until
/// `pgtrail wal acknowledge`; `pgtrail wal rotate-key` replaces the key
/// and retires the old one.
#[tokio::test]
async fn check_reports_forged_context_messages_until_acknowledged() {
    use pgtrail_testkit::{Cluster, ClusterOptions, connect_to};

    let cluster = Cluster::start(ClusterOptions {
        fast: true,
        settings: vec![("wal_level".into(), "logical".into())],
        ..ClusterOptions::default()
    })
    .expect("a throwaway cluster with wal_level = logical starts");
    let url = cluster.url("postgres");
    let client = connect_to(&url).await;
    client
        .batch_execute("CREATE TABLE t (id integer PRIMARY KEY, n integer)")
        .await
        .expect("schema");
    let dir = tempfile::tempdir().expect("a project directory");
    std::fs::write(dir.path().join("pgtrail.toml"), "[capture]\nmode = \"wal\"\n").expect("config");
    let output = pgtrail(&["apply", "--database-url", &url], dir.path());
    assert_eq!(output.status.code(), Some(0), "{:?}", text(&output));
    client
        .batch_execute(
            r#"BEGIN;
               INSERT INTO t VALUES (1, 0);
               SELECT pg_logical_emit_message(true, 'pgtrail', '{"ctx": 0, "actor_id": "ceo"}');
               UPDATE t SET n = 1 WHERE id = 1;
               COMMIT;"#,
        )
        .await
        .expect("a forged message");
    let output = pgtrail(&["follow", "--once", "--database-url", &url], dir.path());
    assert_eq!(output.status.code(), Some(0), "{:?}", text(&output));

    let check = pgtrail(&["check", "--database-url", &url], dir.path());
    let (stdout, stderr) = text(&check);
    assert_eq!(check.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("pgtrail follow ignored 1 context message not signed")
            && stdout.contains("then run pgtrail wal acknowledge"),
        "{stdout}"
    );
    let json = pgtrail(&["check", "--database-url", &url, "--format", "json"], dir.path());
    assert_eq!(json.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(report["ok"], false);
    assert_eq!(report["wal_rejected_messages"]["unacknowledged"], 1);
    assert_eq!(report["wal_rejected_messages"]["last_reason"], "not signed");
    assert!(
        report["problems"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["kind"] == "wal_messages_rejected")),
        "{report}"
    );

    let ack = pgtrail(&["wal", "acknowledge", "--database-url", &url], dir.path());
    let (stdout, _) = text(&ack);
    assert_eq!(ack.status.code(), Some(0), "{:?}", text(&ack));
    assert!(
        stdout.contains("ok: 1 ignored context message(s) acknowledged"),
        "{stdout}"
    );
    let check = pgtrail(&["check", "--database-url", &url], dir.path());
    let (stdout, stderr) = text(&check);
    assert_eq!(check.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("note: pgtrail follow has ignored 1 context message(s) not signed for their transaction, all acknowledged"),
        "{stdout}"
    );

    let rotate = pgtrail(
        &["wal", "rotate-key", "--database-url", &url, "--format", "json"],
        dir.path(),
    );
    assert_eq!(rotate.status.code(), Some(0), "{:?}", text(&rotate));
    let rotated: serde_json::Value = serde_json::from_slice(&rotate.stdout).expect("JSON");
    assert!(rotated["retired_at"].is_string(), "{rotated}");
    let retired: i64 = client
        .query_one(
            "SELECT count(*) FROM pgtrail.wal_retired_key WHERE retired_at IS NOT NULL",
            &[],
        )
        .await
        .expect("retired keys")
        .get(0);
    assert_eq!(retired, 1);
}
