//! Stories of an auditor's evidence requests (seed 004: "automated
//! compliance reporting from audit logs"), on one scripted quarter of a
//! shop: onboarding by the application, a privilege grant, a migration, a
//! hotfix DDL without a migration, a superuser's direct edit and an erasure
//! request. Each report lists exactly the expected items; the bundle
//! verifies offline, and a changed or removed row is caught. The HTML of
//! each report is opened in a real headless Chromium.

use std::path::Path;

use pgtrail::config::Config;
use pgtrail::evidence::report::Change;
use pgtrail::evidence::{Kind, Period, Report, Roles, Subject};
use pgtrail::integrity::crypto::SignerKey;
use pgtrail_testkit::TestDb;
use serde_json::{Value, json};

/// The shop after its quarter, the roles' names, and the period.
struct Quarter {
    db: TestDb,
    app: String,
    migrator: String,
    key: SignerKey,
    period: Period,
    roles: Roles,
}

fn config(app: &str, migrator: &str) -> String {
    format!(
        "[capture]\ninclude = [\"users\", \"accounts\"]\n\n[report]\napplication_roles = [\"{app}\"]\n\
         migration_roles = [\"{migrator}\"]\nsubject_columns = [\"email\", \"user_id\"]\n"
    )
}

/// Runs `sql` in one transaction as `role` (its session user, as a
/// connection of that role would be).
async fn as_role(db: &TestDb, role: &str, sql: &str) {
    db.client
        .batch_execute(&format!(
            "SET SESSION AUTHORIZATION \"{role}\"; BEGIN; {sql}; COMMIT; RESET SESSION AUTHORIZATION;"
        ))
        .await
        .unwrap_or_else(|e| panic!("as {role}: {sql}: {e:?}"));
}

async fn quarter() -> Quarter {
    let mut db = TestDb::new().await;
    let suffix = db.name().trim_start_matches("pgtrail_test_").to_string();
    let app = format!("shop_app_{suffix}");
    let migrator = format!("shop_migrator_{suffix}");
    db.client
        .batch_execute(&format!(
            "CREATE ROLE \"{app}\" NOLOGIN; CREATE ROLE \"{migrator}\" NOLOGIN;
             CREATE TABLE users (id integer PRIMARY KEY, email text NOT NULL, name text);
             CREATE TABLE accounts (id integer PRIMARY KEY, user_id integer NOT NULL, balance numeric(12,2));
             ALTER TABLE users OWNER TO \"{migrator}\"; ALTER TABLE accounts OWNER TO \"{migrator}\";
             GRANT SELECT, INSERT, UPDATE ON users, accounts TO \"{app}\";"
        ))
        .await
        .expect("the shop's schema");
    let config = Config::parse(&config(&app, &migrator), "pgtrail.toml").expect("config parses");
    pgtrail::plan::apply(&mut db.client, &config)
        .await
        .expect("apply");
    let since: String = db
        .client
        .query_one("SELECT to_jsonb(clock_timestamp())#>>'{}'", &[])
        .await
        .expect("now")
        .get(0);

    // Onboarding, by the application for its user.
    as_role(
        &db,
        &app,
        "SELECT pgtrail.set_context(actor_id => '7', actor_name => 'alice@example.com', actor_type => 'user', reason => 'signup');
         INSERT INTO users VALUES (1, 'ann@example.com', 'Ann');
         INSERT INTO accounts VALUES (10, 1, 100.00)",
    )
    .await;
    // An unrelated customer.
    as_role(
        &db,
        &app,
        "SELECT pgtrail.set_context(actor_id => '8', actor_name => 'bob@example.com', actor_type => 'user');
         INSERT INTO users VALUES (2, 'bob@example.com', 'Bob')",
    )
    .await;
    // A privilege grant, by a superuser.
    db.client
        .batch_execute(&format!("GRANT DELETE ON accounts TO \"{app}\""))
        .await
        .expect("grant");
    // A migration, through the migration tool's role.
    as_role(
        &db,
        &migrator,
        "SET LOCAL pgtrail.migration = '0042_add_phone'; ALTER TABLE users ADD COLUMN phone text",
    )
    .await;
    // The application uses the new column.
    as_role(
        &db,
        &app,
        "SELECT pgtrail.set_context(actor_id => '7', actor_name => 'alice@example.com', actor_type => 'user');
         UPDATE users SET phone = '555-0100' WHERE id = 1",
    )
    .await;
    // A hotfix straight on production, without a migration.
    db.client
        .batch_execute("ALTER TABLE accounts ADD COLUMN frozen boolean")
        .await
        .expect("hotfix");
    // A superuser's direct edit, with no actor.
    db.client
        .batch_execute("UPDATE accounts SET balance = 1000000.00 WHERE id = 10")
        .await
        .expect("direct edit");

    let key = SignerKey::generate("shop.example.com/audit").expect("key");
    pgtrail::integrity::seal(&mut db.client, &key, &mut |_| {})
        .await
        .expect("seal");
    // Ann's erasure request: her name and phone go, her email stays (it
    // is needed for the invoices the law says to keep).
    pgtrail::integrity::erase(
        &mut db.client,
        "public",
        "users",
        &json!({"id": 1}),
        Some(&["name".to_string(), "phone".to_string()]),
        "GDPR request #4411",
    )
    .await
    .expect("erase");
    Quarter {
        db,
        app: app.clone(),
        migrator: migrator.clone(),
        key,
        period: Period {
            since: Some(since),
            until: None,
        },
        roles: Roles {
            application_roles: vec![app],
            migration_roles: vec![migrator],
        },
    }
}

impl Quarter {
    async fn report(&self, kind: Kind, subject: Option<&Subject>) -> Report {
        pgtrail::evidence::build(&self.db.client, kind, &self.period, &self.roles, subject)
            .await
            .unwrap_or_else(|e| panic!("{kind:?} report: {e}"))
    }
}

/// `table OP key` of each listed change.
fn listed(changes: &[Change]) -> Vec<String> {
    changes
        .iter()
        .map(|c| {
            format!(
                "{} {} {}",
                c.table,
                c.op,
                c.pk.as_ref().map_or(String::new(), Value::to_string)
            )
        })
        .collect()
}

#[tokio::test]
async fn the_population_is_every_change_with_its_completeness() {
    let q = quarter().await;
    let report = q.report(Kind::Population, None).await;
    assert_eq!(
        listed(&report.changes),
        [
            "public.users INSERT {\"id\":1}",
            "public.accounts INSERT {\"id\":10}",
            "public.users INSERT {\"id\":2}",
            "public.users UPDATE {\"id\":1}",
            "public.accounts UPDATE {\"id\":10}",
        ]
    );
    let by_table: Vec<(String, i64)> = report
        .by_table
        .iter()
        .map(|c| (c.key.clone(), c.changes))
        .collect();
    assert_eq!(
        by_table,
        [
            ("public.users".to_string(), 3),
            ("public.accounts".to_string(), 2)
        ]
    );
    let by_actor_type: Vec<(String, i64)> = report
        .by_actor_type
        .iter()
        .map(|c| (c.key.clone(), c.changes))
        .collect();
    assert_eq!(
        by_actor_type,
        [("user".to_string(), 4), ("(none)".to_string(), 1)]
    );
    let completeness = report.completeness.expect("a completeness block");
    assert_eq!(completeness.unsealed, 0);
    assert_eq!(completeness.seals.len(), 1);
    assert_eq!(completeness.seals[0].changes, 5);
    let latest = completeness.latest_seal.expect("a checkpoint");
    assert_eq!(latest.tree_size, 5);
    assert_eq!(latest.root.len(), 64);
    assert!(completeness.gaps.is_empty(), "{:?}", completeness.gaps);
    assert_eq!(completeness.reconciled_tables, 2);
    assert!(
        completeness.unrecorded.is_empty(),
        "{:?}",
        completeness.unrecorded
    );
    assert!(completeness.trail_starts_at.is_some());
}

#[tokio::test]
async fn privileged_lists_the_superusers_edit_and_hotfix_not_the_application_or_the_migration() {
    let q = quarter().await;
    let report = q.report(Kind::Privileged, None).await;
    assert_eq!(listed(&report.changes), ["public.accounts UPDATE {\"id\":10}"]);
    let findings = &report.changes[0].findings;
    assert!(
        findings
            .iter()
            .any(|f| f.contains("not an application or migration role")),
        "{findings:?}"
    );
    assert!(findings.iter().any(|f| f == "no actor"), "{findings:?}");
    let ddl: Vec<(&str, Option<&str>)> = report
        .ddl
        .iter()
        .map(|d| (d.command_tag.as_str(), d.table.as_deref()))
        .collect();
    assert_eq!(
        ddl,
        [("ALTER TABLE", Some("public.accounts"))],
        "{:#?}",
        report.ddl
    );
    assert!(
        report.ddl[0]
            .command
            .as_deref()
            .is_some_and(|c| c.contains("frozen"))
    );
    assert!(
        !report
            .ddl
            .iter()
            .any(|d| d.db_user == q.migrator || d.db_user == q.app)
    );
}

#[tokio::test]
async fn schema_changes_are_matched_to_their_migration_or_listed_unmatched() {
    let q = quarter().await;
    let report = q.report(Kind::Schema, None).await;
    let ddl: Vec<(Option<&str>, Option<&str>, &str)> = report
        .ddl
        .iter()
        .map(|d| (d.table.as_deref(), d.migration.as_deref(), d.db_user.as_str()))
        .collect();
    assert_eq!(
        ddl,
        [
            (Some("public.users"), Some("0042_add_phone"), q.migrator.as_str()),
            (Some("public.accounts"), None, "postgres"),
        ],
        "{:#?}",
        report.ddl
    );
    assert!(report.ddl[1].findings[0].starts_with("unmatched"));
    let text = pgtrail::evidence::render::text(&report);
    assert!(text.contains("UNMATCHED"), "{text}");
    assert!(text.contains("0042_add_phone"), "{text}");
}

#[tokio::test]
async fn a_subject_is_found_by_key_or_by_value_with_erased_values_shown_erased() {
    let q = quarter().await;
    let by_key = Subject::Row {
        schema: "public".into(),
        table: "users".into(),
        pk: json!({"id": 1}),
    };
    let by_value = Subject::Value {
        columns: vec!["email".into(), "user_id".into()],
        value: "ann@example.com".into(),
    };
    for subject in [&by_key, &by_value] {
        let report = q.report(Kind::Subject, Some(subject)).await;
        assert_eq!(
            listed(&report.changes),
            ["public.users INSERT {\"id\":1}", "public.users UPDATE {\"id\":1}"],
            "{subject:?}"
        );
        let insert = report.changes[0].new_values.as_ref().expect("values");
        assert_eq!(insert["email"], json!("ann@example.com"));
        assert!(pgtrail::evidence::report::erased_marker(&insert["name"]).is_some());
        assert_eq!(report.erasures.len(), 1);
        assert_eq!(report.erasures[0].reason, "GDPR request #4411");
        let text = pgtrail::evidence::render::text(&report);
        assert!(text.contains("name: ‹erased #"), "{text}");
        assert!(!text.contains("Ann"), "{text}");
    }
    // Her account, by the subject column user_id.
    let accounts = Subject::Value {
        columns: vec!["user_id".into()],
        value: "1".into(),
    };
    let report = q.report(Kind::Subject, Some(&accounts)).await;
    assert_eq!(
        listed(&report.changes),
        [
            "public.accounts INSERT {\"id\":10}",
            "public.accounts UPDATE {\"id\":10}"
        ]
    );
}

/// Writes the bundle of `kind` into a new directory under `root`.
async fn bundle(q: &Quarter, kind: Kind, root: &Path) -> std::path::PathBuf {
    let report = q.report(kind, None).await;
    let dir = root.join(kind.name());
    pgtrail::evidence::write_bundle(&q.db.client, &report, &dir, &q.key)
        .await
        .expect("bundle written");
    dir
}

fn problems(dir: &Path, q: &Quarter) -> Vec<String> {
    pgtrail::evidence::verify_bundle(dir, &q.key.verifier())
        .expect("verify-bundle runs")
        .problems
}

/// Re-signs the manifest after `file` was edited, as someone holding the
/// key could: the proofs must still catch what the edit changed.
fn resign(dir: &Path, q: &Quarter) {
    let manifest = std::fs::read_to_string(dir.join("manifest")).unwrap();
    let note = pgtrail::integrity::crypto::SignedNote::parse(&manifest).unwrap();
    let mut text = String::new();
    for line in note.text().lines() {
        match line.split_once("  ") {
            Some((_, name)) => {
                let bytes = std::fs::read(dir.join(name)).unwrap();
                text.push_str(&format!(
                    "{}  {name}\n",
                    pgtrail::evidence::bundle::sha256_hex(&bytes)
                ));
            }
            None => text.push_str(&format!("{line}\n")),
        }
    }
    let signed = pgtrail::integrity::crypto::SignedNote::sign(text, &q.key).unwrap();
    std::fs::write(dir.join("manifest"), signed.to_string()).unwrap();
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut value: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(path, serde_json::to_string_pretty(&value).unwrap()).unwrap();
}

#[tokio::test]
async fn a_bundle_verifies_offline_and_a_changed_or_removed_row_is_caught() {
    let q = quarter().await;
    let root = tempfile::tempdir().unwrap();
    for kind in [Kind::Population, Kind::Privileged, Kind::Schema] {
        let dir = bundle(&q, kind, root.path()).await;
        assert_eq!(problems(&dir, &q), Vec::<String>::new(), "{kind:?}");
    }
    let dir = root.path().join("population");
    let check = pgtrail::evidence::verify_bundle(&dir, &q.key.verifier()).unwrap();
    assert_eq!((check.changes_listed, check.changes_proved), (5, 5));
    // Erased values are proved by their commitments: the subject's bundle verifies too.
    let subject = Subject::Row {
        schema: "public".into(),
        table: "users".into(),
        pk: json!({"id": 1}),
    };
    let report = q.report(Kind::Subject, Some(&subject)).await;
    let subject_dir = root.path().join("subject");
    pgtrail::evidence::write_bundle(&q.db.client, &report, &subject_dir, &q.key)
        .await
        .expect("subject bundle");
    assert_eq!(problems(&subject_dir, &q), Vec::<String>::new());
    // Another key does not vouch for it.
    let other = SignerKey::generate("someone.else").unwrap();
    let with_other = pgtrail::evidence::verify_bundle(&dir, &other.verifier()).unwrap();
    assert!(
        with_other
            .problems
            .iter()
            .any(|p| p.contains("manifest is not signed"))
    );

    // The superuser's edit, made smaller in the report.
    let changed = root.path().join("changed");
    copy_dir(&dir, &changed);
    edit_json(&changed.join("report.json"), |r| {
        r["changes"][4]["new_values"]["balance"] = json!(100.00);
    });
    let found = problems(&changed, &q);
    assert!(
        found.iter().any(|p| p.contains("report.json was changed")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|p| p.contains("new.balance") && p.contains("not the sealed value")),
        "{found:?}"
    );

    // The same in the evidence too, with the manifest signed again: the
    // leaf no longer matches the signed log.
    let both = root.path().join("both");
    copy_dir(&changed, &both);
    edit_json(&both.join("proofs.json"), |p| {
        for field in p["leaves"][4]["fields"].as_array_mut().unwrap() {
            if field["name"] == "new.balance" {
                field["value"] = json!("100.00");
            }
        }
    });
    resign(&both, &q);
    let found = problems(&both, &q);
    assert!(!found.iter().any(|p| p.contains("SHA-256")), "{found:?}");
    assert!(
        found.iter().any(|p| p.contains("is not in the signed log")),
        "{found:?}"
    );

    // A row removed from the report (manifest signed again).
    let removed = root.path().join("removed");
    copy_dir(&dir, &removed);
    edit_json(&removed.join("report.json"), |r| {
        r["changes"].as_array_mut().unwrap().remove(4);
    });
    resign(&removed, &q);
    let found = problems(&removed, &q);
    assert!(
        found.iter().any(|p| p.contains("missing from report.json")),
        "{found:?}"
    );

    // A row removed from the report and its proof, manifest untouched.
    let dropped = root.path().join("dropped");
    copy_dir(&dir, &dropped);
    edit_json(&dropped.join("report.json"), |r| {
        r["changes"].as_array_mut().unwrap().remove(4);
    });
    edit_json(&dropped.join("proofs.json"), |p| {
        p["leaves"].as_array_mut().unwrap().remove(4);
    });
    let found = problems(&dropped, &q);
    assert!(
        found.iter().any(|p| p.contains("report.json was changed")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|p| p.contains("proofs.json was changed")),
        "{found:?}"
    );
}

#[tokio::test]
async fn a_bundle_needs_every_listed_change_sealed() {
    let mut q = quarter().await;
    q.db.client
        .batch_execute("UPDATE accounts SET balance = 5 WHERE id = 10")
        .await
        .unwrap();
    let report = q.report(Kind::Population, None).await;
    let root = tempfile::tempdir().unwrap();
    let error = pgtrail::evidence::write_bundle(&q.db.client, &report, &root.path().join("b"), &q.key)
        .await
        .expect_err("an unsealed change cannot be proved");
    assert!(error.to_string().contains("not sealed yet"), "{error}");
    pgtrail::integrity::seal(&mut q.db.client, &q.key, &mut |_| {})
        .await
        .unwrap();
    pgtrail::evidence::write_bundle(&q.db.client, &report, &root.path().join("c"), &q.key)
        .await
        .expect("sealed now");
    assert_eq!(problems(&root.path().join("c"), &q), Vec::<String>::new());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// The DOM of `html` as a headless Chromium builds it.
fn chromium_dom(html: &Path) -> String {
    let program = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|p| {
            std::process::Command::new(p)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("Chromium is needed for this test: install Debian's `chromium` package (.ci/run does)");
    let profile = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(program)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.path().display()),
            "--dump-dom",
        ])
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("chromium runs");
    assert!(
        output.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("the DOM is UTF-8")
}

#[tokio::test]
async fn each_reports_html_shows_its_rows_in_a_real_browser() {
    let q = quarter().await;
    let dir = tempfile::tempdir().unwrap();
    let subject = Subject::Row {
        schema: "public".into(),
        table: "users".into(),
        pk: json!({"id": 1}),
    };
    for (kind, subject) in [
        (Kind::Population, None),
        (Kind::Privileged, None),
        (Kind::Schema, None),
        (Kind::Subject, Some(&subject)),
        (Kind::Access, None),
    ] {
        let report = q.report(kind, subject).await;
        let path = dir.path().join(format!("{}.html", kind.name()));
        std::fs::write(&path, pgtrail::evidence::html::render(&report)).unwrap();
        let dom = chromium_dom(&path);
        assert!(
            dom.contains(&format!("<h1>{}</h1>", kind.title())),
            "{kind:?}: {dom}"
        );
        for change in &report.changes {
            assert!(
                dom.contains(&format!("data-id=\"{}\"", change.id)),
                "{kind:?}: change {} in {dom}",
                change.id
            );
        }
        for ddl in &report.ddl {
            assert!(
                dom.contains(&format!("data-id=\"{}\"", ddl.id)),
                "{kind:?}: DDL {} in {dom}",
                ddl.id
            );
        }
        match kind {
            Kind::Schema => {
                assert!(dom.contains("<td>UNMATCHED</td>") && dom.contains("<td>0042_add_phone</td>"))
            }
            Kind::Subject => assert!(dom.contains("‹erased #") && dom.contains("GDPR request #4411")),
            Kind::Privileged => assert!(dom.contains("no actor")),
            Kind::Population => assert!(dom.contains("Completeness")),
            Kind::Access => assert!(dom.contains("GRANT DELETE ON accounts")),
        }
    }
}

#[tokio::test]
async fn access_lists_grants_and_what_changed_in_roles_since_the_last_report() {
    let q = quarter().await;
    let suffix = q.db.name().trim_start_matches("pgtrail_test_").to_string();
    let first = q.report(Kind::Access, None).await;
    let grants: Vec<(&str, &str)> = first
        .ddl
        .iter()
        .map(|d| (d.command_tag.as_str(), d.db_user.as_str()))
        .collect();
    assert_eq!(
        grants,
        [("GRANT", "postgres")],
        "the quarter's grant, not the install's"
    );
    assert!(
        first.ddl[0]
            .command
            .as_deref()
            .is_some_and(|c| c.contains("GRANT DELETE ON accounts"))
    );
    let access = first.access.expect("an access block");
    assert_eq!(
        access.since_snapshot, None,
        "the first report only takes a snapshot"
    );

    let auditor = format!("shop_auditor_{suffix}");
    q.db.client
        .batch_execute(&format!(
            "CREATE ROLE \"{auditor}\" NOLOGIN; GRANT \"{app}\" TO \"{auditor}\";
             GRANT SELECT ON users TO \"{auditor}\"; ALTER ROLE \"{migrator}\" CREATEDB;
             REVOKE DELETE ON accounts FROM \"{app}\"",
            app = q.app,
            migrator = q.migrator
        ))
        .await
        .expect("access changes");
    let second = q.report(Kind::Access, None).await;
    let commands: Vec<&str> = second.ddl.iter().map(|d| d.command_tag.as_str()).collect();
    assert_eq!(commands, ["GRANT", "GRANT", "REVOKE"]);
    let text = pgtrail::evidence::render::text(&second);
    assert!(
        text.contains("Roles, memberships and grants changed since"),
        "{text}"
    );
    let access = second.access.expect("an access block");
    assert!(access.since_snapshot.is_some());
    // (Roles belong to the whole server: other tests' roles come and go.)
    let ours: Vec<(String, String)> = access
        .changes
        .into_iter()
        .filter(|c| c.detail.contains(&suffix))
        .map(|c| (c.change, c.detail))
        .collect();
    assert_eq!(
        ours,
        [
            ("role added".to_string(), format!("{auditor}: (no attributes)")),
            (
                "role changed".to_string(),
                format!("{}: (no attributes) → createdb", q.migrator)
            ),
            (
                "membership added".to_string(),
                format!("{auditor} is a member of {}", q.app)
            ),
            (
                "grant added".to_string(),
                format!("SELECT on public.users to {auditor}")
            ),
            (
                "grant removed".to_string(),
                format!("DELETE on public.accounts to {}", q.app)
            ),
        ]
    );
    q.db.client
        .batch_execute(&format!(
            "REVOKE \"{app}\" FROM \"{auditor}\"; REVOKE ALL ON users FROM \"{auditor}\"; DROP ROLE \"{auditor}\"",
            app = q.app
        ))
        .await
        .expect("the auditor role is dropped");
}
