//! README's shell examples, run as written: each `pgtrail ...` line of the
//! sections below, in order, with `DATABASE_URL` naming a throwaway database
//! prepared as the section implies, must exit 0. Lines that cannot run in a
//! test are listed in [`SKIPPED`]; README's placeholders (a transaction id,
//! a moment) are replaced by the prepared database's own, listed per section.

use std::path::Path;
use std::process::Command;

use pgtrail_testkit::TestDb;

const README: &str = include_str!("../../../README.md");

/// The lines of those sections that are not run, by how they start.
const SKIPPED: &[&str] = &[
    "cargo install",            // the binary under test is already built
    "export DATABASE_URL=",     // the test sets DATABASE_URL itself
    "$EDITOR",                  // a person reviews the file
    "psql ",                    // applying the printed file: tested in cli.rs
    "pgtrail follow  ",         // runs until stopped: tested in cli.rs (`follow --once` is run)
    "pgtrail serve --listen",   // runs until stopped: tested in crates/serve
    "pgtrail serve --tls-cert", // the same (and in cli.rs)
    "pgtrail demo --serve",     // the same
    "pgtrail sql --transaction > 0042_pgtrail.sql && psql", // the same, with psql
];

/// The `sh` blocks of the section headed `## {title}`, one line per command
/// (comments kept: the shell ignores them).
fn shell_lines(title: &str) -> Vec<String> {
    let heading = format!("## {title}\n");
    let start = README
        .find(&heading)
        .unwrap_or_else(|| panic!("README has no section `{title}`"));
    let body = &README[start + heading.len()..];
    let body = &body[..body.find("\n## ").unwrap_or(body.len())];
    let mut lines = Vec::new();
    let mut in_block = false;
    for line in body.lines() {
        if line.starts_with("```") {
            in_block = !in_block && line == "```sh";
            continue;
        }
        if in_block && !line.trim().is_empty() && !line.trim_start().starts_with('#') {
            lines.push(line.to_string());
        }
    }
    assert!(!lines.is_empty(), "section `{title}` has no shell example");
    lines
}

/// The sections whose shell examples the tests below run.
const RUN: &[&str] = &[
    "Quick start",
    "Migration tools",
    "Undo a mistake",
    "A trail you can prove",
    "Compliance evidence",
    "Retention: partitions, Parquet archives, legal holds",
    "WAL mode",
    "The web UI and HTTP API",
];

/// A section added with `pgtrail ...` examples gets run too: every `##`
/// section whose `sh` blocks have a `pgtrail` line is one of [`RUN`].
#[test]
fn every_section_with_pgtrail_examples_is_run() {
    for section in README.split("\n## ").skip(1) {
        let title = section.lines().next().unwrap_or_default();
        let examples = section
            .split("```sh\n")
            .skip(1)
            .filter_map(|block| block.split("```").next())
            .any(|block| block.lines().any(|l| l.starts_with("pgtrail ")));
        assert_eq!(
            examples,
            RUN.contains(&title),
            "README section `{title}`: its pgtrail examples must be run by this file (or it has none)"
        );
    }
}

/// Runs README's `lines` of section `title` in `dir`; `replace` maps README's
/// placeholders to this database's values. Returns (line, standard output).
fn run_lines(
    title: &str,
    lines: &[String],
    url: &str,
    dir: &Path,
    replace: &[(&str, String)],
) -> Vec<(String, String)> {
    let bin = Path::new(env!("CARGO_BIN_EXE_pgtrail"))
        .parent()
        .expect("the binary has a directory")
        .to_path_buf();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![bin];
    paths.extend(std::env::split_paths(&path));
    let path = std::env::join_paths(paths).expect("PATH joins");
    let mut outputs = Vec::new();
    for line in lines.iter().cloned() {
        if !line.starts_with("pgtrail ") {
            assert!(
                SKIPPED.iter().any(|s| line.starts_with(s)),
                "README's `{title}` has a line this test neither runs nor lists in SKIPPED: {line}"
            );
            continue;
        }
        if SKIPPED.iter().any(|s| line.starts_with(s)) {
            continue;
        }
        let mut command = line.clone();
        for (from, to) in replace {
            command = command.replace(from, to);
        }
        // The directories a redirection writes into.
        if let Some((_, target)) = command.split_once(" > ") {
            let file = target.split_whitespace().next().unwrap_or_default();
            if let Some(parent) = Path::new(file).parent() {
                std::fs::create_dir_all(dir.join(parent)).expect("the output's directory is created");
            }
        }
        let output = Command::new("sh")
            .args(["-c", &command])
            .current_dir(dir)
            .env("PATH", &path)
            .env("DATABASE_URL", url)
            .env_remove("PGTRAIL_DATABASE_URL")
            .env("NO_COLOR", "1")
            .output()
            .expect("sh runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(
            output.status.code(),
            Some(0),
            "README `{title}`: {line}\n(run as: {command})\n{stdout}{stderr}"
        );
        outputs.push((line, stdout));
    }
    outputs
}

/// The app the README's examples talk about.
const SCHEMA: &str = "CREATE TABLE users (id int PRIMARY KEY, email text, name text, password_hash text);
                      CREATE TABLE orders (id int PRIMARY KEY, user_id int, total numeric);
                      CREATE TABLE sessions (id text PRIMARY KEY);";

async fn database() -> (TestDb, tempfile::TempDir) {
    let db = TestDb::new().await;
    db.client
        .batch_execute(SCHEMA)
        .await
        .expect("the app's schema is created");
    (db, tempfile::tempdir().expect("a project directory"))
}

/// Runs the whole section.
fn run_section(title: &str, db: &TestDb, dir: &Path, replace: &[(&str, String)]) -> Vec<(String, String)> {
    run_lines(title, &shell_lines(title), db.url(), dir, replace)
}

fn pgtrail(dir: &Path, db: &TestDb, args: &[&str]) {
    let output = Command::new(env!("CARGO_BIN_EXE_pgtrail"))
        .args(args)
        .args(["--database-url", db.url()])
        .current_dir(dir)
        .output()
        .expect("pgtrail runs");
    assert_eq!(output.status.code(), Some(0), "{args:?}: {output:?}");
}

/// The config of the sections after the quick start.
const CONFIG: &str = "[capture]\nexclude = [\"sessions\"]\n\n[tables.\"public.users\"]\nredact_columns = [\"password_hash\"]\n\n\
                      [report]\napplication_roles = [\"shop_app\"]\nsubject_columns = [\"email\"]\n";

/// A day of work on an installed trail: sign-ups, an edit in a request,
/// mallory, and a careless batch script (an UPDATE of orders without WHERE). Returns (the batch's transaction
/// id, a moment after the sign-ups, as `YYYY-MM-DD HH:MM:SS`).
async fn a_day_of_work(db: &TestDb) -> (i64, String) {
    db.client
        .batch_execute(
            "BEGIN;
             SELECT pgtrail.set_context(actor_id => '7', actor_name => 'ann@example.com', actor_type => 'user');
             INSERT INTO users VALUES (1, 'ann@example.com', 'Ann', 'h1'), (42, 'bo@example.com', 'Bo', 'h2'),
                                      (123, 'cy@example.com', 'Cy', 'h3');
             INSERT INTO orders VALUES (1, 42, 10), (2, 123, 20);
             COMMIT;",
        )
        .await
        .expect("the sign-ups");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let moment: String = db
        .client
        .query_one("SELECT to_char(clock_timestamp(), 'YYYY-MM-DD HH24:MI:SS')", &[])
        .await
        .expect("the time")
        .get(0);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    db.client
        .batch_execute(
            "BEGIN;
             SELECT pgtrail.set_context(actor_id => '42', actor_name => 'alice@example.com', actor_type => 'user',
                                        reason => 'ticket #7', extra => '{\"request_id\": \"req-81f2\"}');
             UPDATE users SET name = 'Robert' WHERE id = 42;
             COMMIT;
             BEGIN;
             SELECT pgtrail.set_context(actor_id => 'mallory', actor_type => 'user');
             UPDATE orders SET total = 0 WHERE id = 2;
             COMMIT;
             BEGIN;
             SELECT pgtrail.set_context(actor_id => 'batch_script@system', actor_type => 'system');
             UPDATE orders SET total = 0;",
        )
        .await
        .expect("the day's edits");
    let batch: i64 = db
        .client
        .query_one("SELECT txid_current()", &[])
        .await
        .expect("the batch's transaction")
        .get(0);
    db.client
        .batch_execute("COMMIT")
        .await
        .expect("the batch commits");
    (batch, moment)
}

/// Quick start on a new database: init, plan, apply, check, the migration
/// file; then, after a day of work, every question of "Then ask".
#[tokio::test]
async fn quick_start_as_written() {
    let (db, dir) = database().await;
    let dir = dir.path();
    let lines = shell_lines("Quick start");
    let ask = lines
        .iter()
        .position(|l| l.starts_with("pgtrail history"))
        .expect("Quick start asks for a history");
    run_lines("Quick start", &lines[..ask], db.url(), dir, &[]);
    let config = std::fs::read_to_string(dir.join("pgtrail.toml")).expect("init wrote pgtrail.toml");
    assert!(
        config.contains("password_hash"),
        "init suggests redacting it:\n{config}"
    );
    let file = std::fs::read_to_string(dir.join("migrations/0042_pgtrail.sql")).expect("sql wrote the file");
    assert!(file.contains("CREATE"), "{file}");

    let (tx, moment) = a_day_of_work(&db).await;
    // "In the application, say who is acting": README's own transaction.
    let app = README
        .split("```sql\nBEGIN;\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("Quick start shows the application's transaction");
    db.client
        .batch_execute(&format!("BEGIN;\n{app}"))
        .await
        .expect("README's application transaction runs");
    let outputs = run_lines(
        "Quick start",
        &lines[ask..],
        db.url(),
        dir,
        &[("48211", tx.to_string()), ("2026-06-01 14:00", moment)],
    );
    let answer = |prefix: &str| -> &str {
        &outputs
            .iter()
            .find(|(line, _)| line.starts_with(prefix))
            .unwrap_or_else(|| panic!("README runs `{prefix}`"))
            .1
    };
    let history = answer("pgtrail history users 123");
    assert!(
        history.contains("new@example.com") && history.contains("ticket #7"),
        "{history}"
    );
    assert!(answer("pgtrail at users 123").contains("cy@example.com"));
    assert!(answer("pgtrail blame users 123").contains("alice@example.com"));
    assert!(answer("pgtrail log --actor batch_script@system").contains("batch_script@system"));
    assert!(answer("pgtrail log --since '1h ago' --show request_id").contains("req-81f2"));
    assert!(answer("pgtrail tx 48211").contains("orders"));
}

/// Undo a mistake: find the batch script's transaction, plan and apply its
/// revert, then plan the other kinds.
#[tokio::test]
async fn undo_a_mistake_as_written() {
    let (db, dir) = database().await;
    let dir = dir.path();
    std::fs::write(dir.join("pgtrail.toml"), CONFIG).expect("pgtrail.toml is written");
    pgtrail(dir, &db, &["apply"]);
    let (tx, moment) = a_day_of_work(&db).await;
    run_section(
        "Undo a mistake",
        &db,
        dir,
        &[("48211", tx.to_string()), ("2026-06-01 14:00", moment)],
    );
    let totals: Vec<String> = db
        .client
        .query("SELECT total::text FROM orders ORDER BY id", &[])
        .await
        .expect("totals")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        totals,
        ["10", "0"],
        "the batch script's change is undone, mallory's not yet"
    );
}

/// A trail you can prove: keygen, seal with an export, verify against it.
#[tokio::test]
async fn a_trail_you_can_prove_as_written() {
    let (db, dir) = database().await;
    let dir = dir.path();
    std::fs::write(dir.join("pgtrail.toml"), CONFIG).expect("pgtrail.toml is written");
    pgtrail(dir, &db, &["apply"]);
    a_day_of_work(&db).await;
    let outputs = run_section(
        "A trail you can prove",
        &db,
        dir,
        &[("/secure/", String::new()), ("/mnt/worm/", "worm/".to_string())],
    );
    assert!(dir.join("worm/checkpoints/checkpoint").exists());
    let verify = &outputs.last().expect("README verifies").1;
    assert!(verify.contains("intact"), "{verify}");
}

/// Compliance evidence: every report kind, then a sealed bundle checked
/// offline.
#[tokio::test]
async fn compliance_evidence_as_written() {
    let (db, dir) = database().await;
    let dir = dir.path();
    std::fs::write(dir.join("pgtrail.toml"), CONFIG).expect("pgtrail.toml is written");
    pgtrail(dir, &db, &["apply"]);
    a_day_of_work(&db).await;
    let keygen = Command::new(env!("CARGO_BIN_EXE_pgtrail"))
        .args(["keygen", "--key", "seal.key"])
        .current_dir(dir)
        .output()
        .expect("keygen runs");
    assert_eq!(keygen.status.code(), Some(0), "{keygen:?}");
    let year = db
        .client
        .query_one("SELECT extract(year FROM now())::int", &[])
        .await
        .expect("the year")
        .get::<_, i32>(0);
    db.client
        .batch_execute(
            "BEGIN;
             SELECT pgtrail.set_context(actor_type => 'migration', extra => '{\"migration\": \"0042_add_phone\"}');
             ALTER TABLE users ADD COLUMN phone text;
             COMMIT;",
        )
        .await
        .expect("a migration adds a column");
    // README's quarter is 2026's first: the trail's is this year's whole.
    let outputs = run_section(
        "Compliance evidence",
        &db,
        dir,
        &[(
            "--since 2026-01-01 --until 2026-04-01",
            format!("--since {year}-01-01 --until {}-01-01", year + 1),
        )],
    );
    let schema = outputs
        .iter()
        .find(|(line, _)| line.starts_with("pgtrail report --kind schema"))
        .expect("README runs the schema report");
    // The shape README shows: the section, its header row, the migration matched.
    let header = |text: &str| -> Vec<String> {
        text.lines()
            .find(|l| l.trim_start().starts_with("EVENT "))
            .unwrap_or_else(|| panic!("no header row in {text}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert!(schema.1.contains("\nSchema changes\n"), "{}", schema.1);
    assert_eq!(header(&schema.1), header(README), "{}", schema.1);
    assert!(
        schema
            .1
            .lines()
            .any(|l| l.contains("0042_add_phone") && l.contains("matched")),
        "{}",
        schema.1
    );
    let bundle = &outputs.last().expect("README verifies the bundle").1;
    let shown = README
        .split("\n  report          population\n")
        .nth(1)
        .expect("README shows verify-bundle's output");
    for row in std::iter::once("  report          population")
        .chain(shown.lines().take_while(|l| l.starts_with("  ")))
    {
        let label = row.trim_start().split("  ").next().unwrap_or_default();
        assert!(
            bundle.lines().any(|l| l.trim_start().starts_with(label)),
            "verify-bundle prints no `{label}` row:\n{bundle}"
        );
    }
    assert!(bundle.contains("changes proved"), "{bundle}");
}

/// Migration tools: the first install's file, then `plan`'s for a table
/// added later.
#[tokio::test]
async fn migration_tools_as_written() {
    let (db, dir) = database().await;
    let dir = dir.path();
    std::fs::write(dir.join("pgtrail.toml"), CONFIG).expect("pgtrail.toml is written");
    pgtrail(dir, &db, &["apply"]);
    db.client
        .batch_execute("CREATE TABLE invoices (id int PRIMARY KEY)")
        .await
        .expect("a table added later");
    run_section("Migration tools", &db, dir, &[]);
    let first = std::fs::read_to_string(dir.join("migrations/0042_pgtrail.sql")).expect("sql wrote the file");
    assert!(!first.contains("COMMIT;"), "no transaction control of its own");
    let next = std::fs::read_to_string(dir.join("migrations/0057_pgtrail_new_tables.sql"))
        .expect("plan wrote the file");
    assert!(next.contains("invoices"), "{next}");
}

/// Retention: maintain, archive, legal holds, verify with the archive.
#[tokio::test]
async fn retention_as_written() {
    let (db, dir) = database().await;
    let dir = dir.path();
    std::fs::write(
        dir.join("pgtrail.toml"),
        format!("{CONFIG}\n[retention]\npartition = \"month\"\npremake = 3\nkeep = \"400 days\"\narchive_dir = \"archive\"\n"),
    )
    .expect("pgtrail.toml is written");
    std::fs::create_dir(dir.join("archive")).expect("the archive directory");
    pgtrail(dir, &db, &["apply"]);
    a_day_of_work(&db).await;
    let keygen = Command::new(env!("CARGO_BIN_EXE_pgtrail"))
        .args(["keygen", "--key", "seal.key"])
        .current_dir(dir)
        .output()
        .expect("keygen runs");
    assert_eq!(keygen.status.code(), Some(0), "{keygen:?}");
    // The first hold README adds is the one it releases.
    let outputs = run_section(
        "Retention: partitions, Parquet archives, legal holds",
        &db,
        dir,
        &[
            ("/secure/", String::new()),
            ("/var/lib/pgtrail/archive", "archive".to_string()),
            ("hold release 3", "hold release 1".to_string()),
        ],
    );
    let holds = &outputs
        .iter()
        .find(|(line, _)| line.starts_with("pgtrail hold list"))
        .expect("README lists the holds")
        .1;
    assert!(holds.contains("case 2025-17"), "{holds}");
}

/// WAL mode, on a cluster of its own (a replication slot per cluster).
#[tokio::test]
async fn wal_mode_as_written() {
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
        .batch_execute(SCHEMA)
        .await
        .expect("the app's schema is created");
    let dir = tempfile::tempdir().expect("a project directory");
    let dir = dir.path();
    std::fs::write(dir.join("pgtrail.toml"), "[capture]\nmode = \"wal\"\n").expect("pgtrail.toml is written");
    // A write between `apply` and `follow --once`: it reaches the trail.
    let lines = shell_lines("WAL mode");
    let follow = lines
        .iter()
        .position(|l| l.starts_with("pgtrail follow"))
        .expect("README follows");
    run_lines("WAL mode", &lines[..follow], &url, dir, &[]);
    client
        .batch_execute("INSERT INTO users VALUES (1, 'ann@example.com', 'Ann', 'h1')")
        .await
        .expect("a write");
    // The NATS example publishes to a server of its own.
    let nats = pgtrail_testkit::nats::Nats::start().expect("nats-server -js starts");
    run_lines(
        "WAL mode",
        &lines[follow..],
        &url,
        dir,
        &[("nats://localhost:4222", nats.url())],
    );
    let changes: i64 = client
        .query_one(
            "SELECT count(*) FROM pgtrail.changes WHERE table_name = 'users'",
            &[],
        )
        .await
        .expect("the trail")
        .get(0);
    assert_eq!(changes, 1, "follow --once wrote the change");
}

#[tokio::test]
async fn the_web_ui_section_as_written() {
    let (db, dir) = database().await;
    let outputs = run_section("The web UI and HTTP API", &db, dir.path(), &[]);
    let (_, printed) = &outputs[0];
    assert!(printed.contains("[serve.tokens.support]"), "{printed}");
    // What it prints is a configuration pgtrail reads.
    let toml = &printed[printed.find("[serve.tokens.support]").expect("the section")..];
    let config =
        pgtrail::config::Config::parse(&format!("[serve]\n{toml}"), "pgtrail.toml").expect("it parses");
    assert_eq!(config.serve.tokens.len(), 1);
}
