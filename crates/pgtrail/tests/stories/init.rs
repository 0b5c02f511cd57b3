//! `pgtrail init` on a schema in the spirit of seed 003 (a university app on
//! Drizzle): every table listed with its detected key, partitions folded, the
//! ephemeral and audit tables excluded, and the file, applied as written,
//! puts capture triggers on exactly the tables it does not exclude.

use std::collections::BTreeSet;

use pgtrail::catalog::Catalog;
use pgtrail::config::{Config, Selection};
use pgtrail::init::{Summary, render_config, summarize};
use pgtrail_testkit::TestDb;

use crate::support::{changes, count};

const SCHEMA: &str = r#"
    CREATE TABLE students (std_no text PRIMARY KEY, name text NOT NULL, updated_at timestamptz);
    CREATE TABLE modules (id serial PRIMARY KEY, code text NOT NULL, updated_at timestamptz);
    CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL, password_hash text,
                        last_login_at timestamptz, updated_at timestamptz);
    CREATE TABLE student_modules (id serial PRIMARY KEY, std_no text REFERENCES students,
                                  module_id int REFERENCES modules);
    CREATE TABLE venue_schools (venue_id int, school_id int, PRIMARY KEY (venue_id, school_id));
    CREATE TABLE registration_request_receipts (registration_request_id int NOT NULL,
                                                receipt_id text NOT NULL, note text);
    CREATE UNIQUE INDEX registration_request_receipts_key
        ON registration_request_receipts (registration_request_id, receipt_id);
    ALTER TABLE registration_request_receipts
        REPLICA IDENTITY USING INDEX registration_request_receipts_key;
    CREATE TABLE loan_notes (loan text, note text);
    CREATE TABLE "Order Items" ("Order Id" int PRIMARY KEY, qty int);
    CREATE TABLE measurements (id bigint, at date, value numeric, PRIMARY KEY (id, at))
        PARTITION BY RANGE (at);
    CREATE TABLE measurements_2025 PARTITION OF measurements
        FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
    CREATE TABLE measurements_2026 PARTITION OF measurements
        FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
    CREATE TABLE sessions (session_token text PRIMARY KEY, user_id int, expires timestamptz);
    CREATE TABLE verification_tokens (identifier text NOT NULL, token text NOT NULL,
                                      expires timestamptz, PRIMARY KEY (identifier, token));
    CREATE TABLE assessments_audit (id serial PRIMARY KEY, assessment_id int, action text);
    CREATE TABLE __drizzle_migrations (id serial PRIMARY KEY, hash text NOT NULL, created_at bigint);
"#;

const CAPTURED: [&str; 9] = [
    "Order Items",
    "loan_notes",
    "measurements",
    "modules",
    "registration_request_receipts",
    "student_modules",
    "students",
    "users",
    "venue_schools",
];

const EXCLUDED: [(&str, &str); 4] = [
    ("__drizzle_migrations", "__drizzle_migrations"),
    ("assessments_audit", "*_audit"),
    ("sessions", "sessions"),
    ("verification_tokens", "verification_tokens"),
];

/// The text between a section header and the next section.
fn section<'t>(text: &'t str, header: &str) -> &'t str {
    let start = text
        .find(&format!("\n{header}\n"))
        .unwrap_or_else(|| panic!("no section {header} in:\n{text}"));
    let rest = &text[start + header.len() + 2..];
    &rest[..rest.find("\n\n").map_or(rest.len(), |i| i + 1)]
}

async fn generated(db: &TestDb) -> (Catalog, String) {
    let schemas = vec!["public".to_string()];
    let catalog = Catalog::load(&db.client, &schemas)
        .await
        .expect("the catalog loads");
    let text = render_config(&catalog, &schemas);
    (catalog, text)
}

#[tokio::test]
async fn init_lists_every_table_with_its_key_and_excludes_the_ephemeral_ones() {
    let db = TestDb::new().await;
    db.client.batch_execute(SCHEMA).await.expect("schema SQL runs");
    let (catalog, text) = generated(&db).await;

    for (header, body) in [
        ("[tables.\"public.students\"]", "# key: std_no (primary key)\n"),
        ("[tables.\"public.modules\"]", "# key: id (primary key)\n"),
        (
            "[tables.\"public.venue_schools\"]",
            "# key: venue_id, school_id (composite primary key)\n",
        ),
        (
            "[tables.\"public.registration_request_receipts\"]",
            "# key: registration_request_id, receipt_id (replica identity index)\n",
        ),
        (
            "[tables.\"public.loan_notes\"]",
            "# no key: the whole row identifies a row (consider adding a primary key)\n",
        ),
        (
            "[tables.\"public.Order Items\"]",
            "# key: Order Id (primary key)\n",
        ),
        (
            "[tables.\"public.measurements\"]",
            "# key: id, at (composite primary key)\n\
             # partitioned: 2 partitions (measurements_2025, measurements_2026)\n",
        ),
        (
            "[tables.\"public.users\"]",
            "# key: id (primary key)\n\
             # redact_columns = [\"password_hash\"]   # looks like a secret\n\
             # ignore_columns = [\"last_login_at\"]   # changes on every write or visit\n",
        ),
        (
            "[tables.\"public.assessments_audit\"]",
            "# key: id (primary key)\n# excluded by \"*_audit\"\n",
        ),
    ] {
        assert_eq!(section(&text, header), body, "{header} in:\n{text}");
    }
    assert!(
        !text.contains("[tables.\"public.measurements_2025\"]"),
        "a partition has no section of its own:\n{text}"
    );
    assert!(
        section(&text, "[tables.\"public.sessions\"]").contains("# excluded by \"sessions\"\n"),
        "{text}"
    );
    assert!(text.contains("\nexclude = [\n    \"sessions\","), "{text}");
    assert!(
        text.contains("\nignore_columns = [\n    \"updated_at\",  # in 3 tables\n]\n"),
        "{text}"
    );
    assert!(text.contains("\n# actor_id = [\"app.user_id\"]\n"), "{text}");
    assert!(text.contains("\nrequire_actor = false"), "{text}");
    assert_eq!(
        summarize(&catalog, &["public".to_string()]),
        Summary {
            tables: 13,
            excluded: 4,
            without_key: 1
        }
    );

    let config = Config::parse(&text, "pgtrail.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
    for table in CAPTURED {
        assert_eq!(config.selects("public", table), Selection::Included, "{table}");
    }
    for (table, pattern) in EXCLUDED {
        assert_eq!(
            config.selects("public", table),
            Selection::Excluded {
                pattern: pattern.to_string()
            },
            "{table}"
        );
    }
}

#[tokio::test]
async fn the_generated_file_applies_as_written_and_triggers_only_the_captured_tables() {
    let mut db = TestDb::new().await;
    db.client.batch_execute(SCHEMA).await.expect("schema SQL runs");
    let (_, text) = generated(&db).await;
    let config = Config::parse(&text, "pgtrail.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
    pgtrail::plan::apply(&mut db.client, &config)
        .await
        .expect("apply succeeds with the generated file");

    let rows = db
        .client
        .query(
            "SELECT DISTINCT c.relname::text FROM pg_trigger t
             JOIN pg_class c ON c.oid = t.tgrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND t.tgname LIKE 'pgtrail\\_capture\\_%'",
            &[],
        )
        .await
        .expect("pg_trigger is readable");
    let triggered: BTreeSet<String> = rows.iter().map(|r| r.get(0)).collect();
    let mut expected: BTreeSet<String> = CAPTURED.iter().map(|t| t.to_string()).collect();
    expected.extend(["measurements_2025".to_string(), "measurements_2026".to_string()]);
    assert_eq!(triggered, expected);
    for (table, _) in EXCLUDED {
        assert!(!triggered.contains(table), "{table} has capture triggers");
    }

    let kinds = db
        .client
        .query(
            "SELECT table_name::text, key_kind::text FROM pgtrail.audited_table ORDER BY 1",
            &[],
        )
        .await
        .expect("pgtrail.audited_table is readable");
    let kinds: Vec<(String, String)> = kinds.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(kinds.len(), CAPTURED.len(), "{kinds:?}");
    for (table, kind) in [
        ("students", "primary_key"),
        ("registration_request_receipts", "replica_identity"),
        ("loan_notes", "full_row"),
    ] {
        assert!(
            kinds.contains(&(table.to_string(), kind.to_string())),
            "{table} {kind} in {kinds:?}"
        );
    }

    // The generated ignore_columns take effect: touching only updated_at
    // records nothing; excluded tables record nothing.
    db.client
        .batch_execute(
            "INSERT INTO users (email, password_hash) VALUES ('a@x.test', 'h1');
             UPDATE users SET updated_at = now();
             INSERT INTO sessions VALUES ('s1', 1, now());",
        )
        .await
        .expect("writes run");
    let trail = changes(&db.client, "users").await;
    assert_eq!(trail.len(), 1, "{trail:#?}");
    assert_eq!(trail[0].op, "INSERT");
    assert_eq!(
        count(
            &db.client,
            "SELECT count(*) FROM pgtrail.changes WHERE table_name = 'sessions'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn init_on_an_install_writes_its_live_settings_so_plan_has_nothing_to_do() {
    let mut db = TestDb::new().await;
    db.client
        .batch_execute(
            "CREATE TABLE users (id serial PRIMARY KEY, email text, password_hash text, last_login_at timestamptz,
                                 updated_at timestamptz);
             CREATE TABLE students (std_no text NOT NULL, name text, row_id serial PRIMARY KEY);
             CREATE TABLE staging_orders (id int PRIMARY KEY, total numeric);
             CREATE TABLE sessions (token text PRIMARY KEY);
             CREATE TABLE \"odd*name\" (id int PRIMARY KEY);
             CREATE SCHEMA billing;
             CREATE TABLE billing.invoices (id int PRIMARY KEY, amount numeric, secret text);",
        )
        .await
        .unwrap();
    let toml = r#"
[capture]
schemas = ["public", "billing"]
exclude = ["sessions", "odd*"]
ignore_columns = ["updated_at"]
images = "diff"

[context]
actor_id = ["app.user_id"]
actor_name = ["app.actor_email", "app.current_user"]
migration = ["app.current_migration"]
require_actor = true
outside_transaction = "refuse"

[context.extra]
tenant = ["app.tenant"]

[tables."public.users"]
ignore_columns = ["last_login_at"]
redact_columns = ["password_hash"]

[tables."public.students"]
key = ["std_no"]
images = "full"

[tables."public.staging_orders"]
truncate = "capture"
truncate_row_limit = 500

[tables."billing.invoices"]
redact_columns = ["secret"]
"#;
    crate::support::apply(&mut db.client, toml).await;

    let installed = pgtrail::plan::Installed::load(&db.client).await.unwrap();
    let schemas = pgtrail::init::live::live_schemas(&["public".to_string()], &installed);
    assert_eq!(
        schemas,
        ["public", "billing"],
        "the schemas of audited tables are kept"
    );
    let catalog = Catalog::load(&db.client, &schemas).await.unwrap();
    let text = pgtrail::init::live::render_live_config(&catalog, &schemas, &installed);
    let config = Config::parse(&text, "pgtrail.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));

    // Every setting the file can say, as the install has it.
    assert!(text.contains("actor_id = [\"app.user_id\"]"), "{text}");
    assert!(
        text.contains("actor_name = [\"app.actor_email\", \"app.current_user\"]"),
        "{text}"
    );
    assert!(
        text.contains("require_actor = true\noutside_transaction = \"refuse\""),
        "{text}"
    );
    assert!(text.contains("\"tenant\" = [\"app.tenant\"]"), "{text}");
    assert!(
        text.contains("[tables.\"public.users\"]\nignore_columns = [\"last_login_at\", \"updated_at\"]\nredact_columns = [\"password_hash\"]"),
        "{text}"
    );
    assert!(
        text.contains("[tables.\"public.students\"]\nkey = [\"std_no\"]\nimages = \"full\""),
        "{text}"
    );
    assert!(
        text.contains("truncate = \"capture\"\ntruncate_row_limit = 500"),
        "{text}"
    );
    assert!(
        text.contains("[tables.\"billing.invoices\"]\nredact_columns = [\"secret\"]"),
        "{text}"
    );
    assert_eq!(
        config.selects("public", "sessions"),
        Selection::Excluded {
            pattern: "public.sessions".into()
        }
    );
    assert!(matches!(
        config.selects("public", "odd*name"),
        Selection::Excluded { .. }
    ));

    // plan right after it: nothing.
    let desired = pgtrail::plan::resolve(&config, &catalog).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    let problems = pgtrail::plan::problems(&desired, &catalog, &installed);
    assert!(problems.is_empty(), "{problems:?}\n{text}");
    assert!(pgtrail::plan::repair_steps(&desired, &problems).is_empty());

    // And a fresh database still gets the suggestions of a first file.
    let fresh = TestDb::new().await;
    fresh
        .client
        .batch_execute("CREATE TABLE users (id int PRIMARY KEY)")
        .await
        .unwrap();
    let installed = pgtrail::plan::Installed::load(&fresh.client).await.unwrap();
    assert!(installed.version.is_none());
}
