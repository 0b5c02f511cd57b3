//! Seed 003: the 87-table rollout. 87 audited tables (one keyed by `std_no`),
//! 28 excluded with reasons (ephemeral auth data, legacy audit tables,
//! anonymous answers, composite-key and keyless link tables); the seed's six
//! validation criteria; then every kind of drift `check` knows, repaired by
//! `apply`.

use pgtrail::config::Config;
use pgtrail::plan::{Problem, inspect};
use pgtrail_testkit::TestDb;

use crate::support::{apply, count};

const AUDITED: [&str; 87] = [
    "assessments",
    "assessment_marks",
    "lms_assessments",
    "assigned_modules",
    "attendance",
    "feedback_categories",
    "feedback_cycle_schools",
    "feedback_cycles",
    "feedback_questions",
    "modules",
    "programs",
    "schools",
    "module_prerequisites",
    "semester_modules",
    "structure_semesters",
    "structures",
    "fortinet_registrations",
    "notifications",
    "tasks",
    "task_assignees",
    "task_students",
    "academic_records",
    "subject_grades",
    "applicants",
    "applicant_locations",
    "applicant_phones",
    "guardians",
    "guardian_phones",
    "applications",
    "application_notes",
    "certificate_types",
    "applicant_documents",
    "entry_requirements",
    "intake_periods",
    "intake_period_programs",
    "admission_receipts",
    "bank_deposits",
    "mobile_deposits",
    "recognized_schools",
    "subjects",
    "subject_aliases",
    "users",
    "user_schools",
    "payment_receipts",
    "sponsors",
    "sponsored_students",
    "sponsored_terms",
    "authors",
    "book_copies",
    "books",
    "book_authors",
    "book_categories",
    "categories",
    "external_libraries",
    "fines",
    "loans",
    "publications",
    "publication_authors",
    "question_papers",
    "library_settings",
    "students",
    "student_programs",
    "student_semesters",
    "student_modules",
    "student_education",
    "next_of_kins",
    "blocked_students",
    "certificate_reprints",
    "clearance",
    "registration_clearance",
    "documents",
    "student_documents",
    "graduation_clearance",
    "graduation_dates",
    "graduation_requests",
    "auto_approvals",
    "registration_requests",
    "requested_modules",
    "terms",
    "term_settings",
    "term_registrations",
    "term_registration_programs",
    "publication_attachments",
    "timetable_slots",
    "timetable_allocations",
    "venues",
    "venue_types",
];

/// Excluded tables that have an `id` like the audited ones.
const EXCLUDED_WITH_ID: [&str; 22] = [
    "sessions",
    "verification_tokens",
    "accounts",
    "authenticators",
    "audit_logs",
    "student_audit_logs",
    "student_program_audit_logs",
    "student_semester_audit_logs",
    "student_module_audit_logs",
    "assessments_audit",
    "assessment_marks_audit",
    "clearance_audit",
    "application_status_history",
    "notification_dismissals",
    "notification_recipients",
    "feedback_passphrases",
    "feedback_responses",
    "loan_renewals",
    "grade_mappings",
    "statement_of_results_prints",
    "student_card_prints",
    "transcript_prints",
];

/// Composite primary keys `(a, b)`.
const EXCLUDED_COMPOSITE: [(&str, &str, &str); 4] = [
    ("venue_schools", "venue_id", "school_id"),
    ("timetable_slot_allocations", "slot_id", "timetable_allocation_id"),
    (
        "timetable_allocation_allowed_venues",
        "timetable_allocation_id",
        "venue_id",
    ),
    (
        "timetable_allocation_venue_types",
        "timetable_allocation_id",
        "venue_type_id",
    ),
];

/// No primary key, a unique constraint only.
const EXCLUDED_KEYLESS: [(&str, &str, &str); 2] = [
    (
        "registration_request_receipts",
        "registration_request_id",
        "receipt_id",
    ),
    (
        "graduation_request_receipts",
        "graduation_request_id",
        "receipt_id",
    ),
];

fn schema_sql() -> String {
    let mut sql = String::new();
    for (index, table) in AUDITED.iter().enumerate() {
        if *table == "students" {
            sql.push_str(
                "CREATE TABLE students (std_no text PRIMARY KEY, name text, updated_at timestamptz);\n",
            );
        } else if index % 2 == 0 {
            sql.push_str(&format!(
                "CREATE TABLE {table} (id serial PRIMARY KEY, name text, updated_at timestamptz);\n"
            ));
        } else {
            // text nanoid keys, as the seed's Drizzle schema uses for some tables
            sql.push_str(&format!(
                "CREATE TABLE {table} (id text PRIMARY KEY DEFAULT md5(random()::text), name text, updated_at timestamptz);\n"
            ));
        }
    }
    for table in EXCLUDED_WITH_ID {
        sql.push_str(&format!(
            "CREATE TABLE {table} (id serial PRIMARY KEY, name text);\n"
        ));
    }
    for (table, a, b) in EXCLUDED_COMPOSITE {
        sql.push_str(&format!(
            "CREATE TABLE {table} ({a} int, {b} int, PRIMARY KEY ({a}, {b}));\n"
        ));
    }
    for (table, a, b) in EXCLUDED_KEYLESS {
        sql.push_str(&format!(
            "CREATE TABLE {table} ({a} int NOT NULL, {b} int NOT NULL, UNIQUE ({a}, {b}));\n"
        ));
    }
    sql
}

fn config_toml() -> String {
    let excluded: Vec<String> = EXCLUDED_WITH_ID
        .iter()
        .copied()
        .chain(EXCLUDED_COMPOSITE.iter().map(|(t, _, _)| *t))
        .chain(EXCLUDED_KEYLESS.iter().map(|(t, _, _)| *t))
        .map(|t| format!("  \"{t}\","))
        .collect();
    format!(
        "[capture]\nschemas = [\"public\"]\ninclude = [\"*\"]\nexclude = [\n{}\n]\nignore_columns = [\"updated_at\"]\n\n\
         [tables.\"public.students\"]\nkey = [\"std_no\"]\n",
        excluded.join("\n")
    )
}

const CAPTURED_TABLES: &str = "
    SELECT count(DISTINCT tgrelid) FROM pg_trigger WHERE tgname LIKE 'pgtrail\\_capture\\_%' AND NOT tgisinternal";

async fn check(db: &TestDb, config: &Config) -> Vec<Problem> {
    inspect(&db.client, config).await.expect("inspect runs").3
}

#[tokio::test]
async fn the_87_table_rollout_meets_the_six_validation_criteria() {
    let mut db = TestDb::new().await;
    db.client.batch_execute(&schema_sql()).await.unwrap();
    assert_eq!(
        count(
            &db.client,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        )
        .await,
        115
    );

    // 1. The migration runs.
    apply(&mut db.client, &config_toml()).await;
    // 2. All 87 tables have their triggers, each of them.
    assert_eq!(count(&db.client, CAPTURED_TABLES).await, 87);
    assert_eq!(
        count(
            &db.client,
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgtrail\\_capture\\_%'"
        )
        .await,
        87 * pgtrail::capture::TRIGGER_NAMES.len() as i64
    );
    // 3-5. Insert, update and delete in every audited table are recorded.
    for table in AUDITED {
        let key = if table == "students" { "std_no" } else { "id" };
        let insert = if table == "students" {
            "INSERT INTO students (std_no, name) VALUES ('901234', 'first')".to_string()
        } else {
            format!("INSERT INTO {table} (name) VALUES ('first')")
        };
        db.client
            .batch_execute(&format!(
                "{insert}; UPDATE {table} SET name = 'second', updated_at = now(); DELETE FROM {table};"
            ))
            .await
            .unwrap_or_else(|e| panic!("{table}: {e}"));
        let rows = db
            .client
            .query(
                "SELECT op, pk ? $2, old_values, new_values FROM pgtrail.changes WHERE table_name = $1 ORDER BY id",
                &[&table, &key],
            )
            .await
            .unwrap();
        let ops: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(ops, ["INSERT", "UPDATE", "DELETE"], "{table}");
        assert!(
            rows.iter().all(|r| r.get::<_, bool>(1)),
            "{table}: key {key} recorded"
        );
        let update_old: serde_json::Value = rows[1].get(2);
        let update_new: serde_json::Value = rows[1].get(3);
        assert_eq!(update_old, serde_json::json!({"name": "first"}), "{table}");
        assert_eq!(update_new, serde_json::json!({"name": "second"}), "{table}");
        let deleted: serde_json::Value = rows[2].get(2);
        assert_eq!(deleted["name"], "second", "{table}");
    }
    // 6. No trigger on an excluded table.
    let on_excluded = count(
        &db.client,
        "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
         WHERE t.tgname LIKE 'pgtrail\\_%' AND (c.relname LIKE '%audit%' OR c.relname IN
           ('sessions', 'verification_tokens', 'venue_schools', 'registration_request_receipts'))",
    )
    .await;
    assert_eq!(on_excluded, 0);
    let config = Config::parse(&config_toml(), "pgtrail.toml").unwrap();
    assert_eq!(check(&db, &config).await, vec![]);
}

#[tokio::test]
async fn every_drift_is_reported_by_check_and_repaired_by_apply() {
    let mut db = TestDb::new().await;
    db.client.batch_execute(&schema_sql()).await.unwrap();
    apply(&mut db.client, &config_toml()).await;
    let config = Config::parse(&config_toml(), "pgtrail.toml").unwrap();
    db.client
        .batch_execute("INSERT INTO books (name) VALUES ('kept in the trail')")
        .await
        .unwrap();

    db.client
        .batch_execute(
            "DROP TRIGGER pgtrail_capture_update ON loans;
             ALTER TABLE fines DISABLE TRIGGER pgtrail_capture_delete;
             ALTER TABLE books ENABLE REPLICA TRIGGER pgtrail_capture_insert;
             SELECT pgtrail.attach('sessions', '{id}', 'primary_key');
             CREATE TABLE new_feature (id serial PRIMARY KEY, name text);
             INSERT INTO authors (name) VALUES ('before the rename');
             ALTER TABLE authors RENAME TO writers;
             UPDATE pgtrail.audited_table SET ignore_columns = '{}' WHERE table_name = 'terms';
             SELECT pgtrail.configure_context('{\"actor_id\": [\"app.user_id\"]}', true);
             CREATE OR REPLACE FUNCTION pgtrail.build() RETURNS text LANGUAGE sql AS $$ SELECT 'older' $$;",
        )
        .await
        .unwrap();

    let problems = check(&db, &config).await;
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let kinds: Vec<&str> = problems.iter().map(Problem::kind).collect();
    for expected in [
        "public.loans: capture trigger pgtrail_capture_update is missing",
        "public.fines: capture trigger pgtrail_capture_delete is disabled",
        "public.books: capture trigger pgtrail_capture_insert is enabled only for replication sessions",
        "public.sessions: has capture triggers but the config excludes it (\"sessions\")",
        "public.new_feature: capture trigger pgtrail_capture_insert is missing",
        "public.terms: ignore_columns is (none) in the database but [updated_at] in the config",
    ] {
        assert!(
            lines.iter().any(|l| l == expected),
            "missing {expected:?} in\n{}",
            lines.join("\n")
        );
    }
    // The DDL watch followed the rename (without it, check reports it as
    // "renamed" and apply follows it).
    assert!(!kinds.contains(&"renamed"), "{lines:#?}");
    assert!(kinds.contains(&"stale_install"), "{lines:#?}");
    assert!(kinds.contains(&"context_differs"), "{lines:#?}");

    apply(&mut db.client, &config_toml()).await;
    assert_eq!(check(&db, &config).await, vec![], "apply repaired everything");
    let renamed: Vec<String> = db
        .client
        .query(
            "SELECT table_name FROM pgtrail.changes WHERE new_values->>'name' = 'before the rename'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        renamed,
        vec!["writers"],
        "the history follows the table to its new name"
    );
    assert_eq!(count(&db.client, CAPTURED_TABLES).await, 88, "87 + the new table");
    assert_eq!(
        count(
            &db.client,
            "SELECT count(*) FROM pgtrail.changes WHERE new_values->>'name' = 'kept in the trail'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_table_created_later_outside_every_rule_is_reported_as_not_covered() {
    let mut db = TestDb::new().await;
    db.client
        .batch_execute("CREATE TABLE orders (id int PRIMARY KEY); CREATE TABLE tmp_import (id int);")
        .await
        .unwrap();
    let toml = "[capture]\ninclude = [\"orders\"]\nexclude = [\"tmp_*\"]\n";
    apply(&mut db.client, toml).await;
    let config = Config::parse(toml, "pgtrail.toml").unwrap();
    assert_eq!(check(&db, &config).await, vec![]);
    db.client
        .batch_execute("CREATE TABLE invoices (id int PRIMARY KEY)")
        .await
        .unwrap();
    let problems = check(&db, &config).await;
    assert_eq!(problems.len(), 1);
    assert_eq!(
        problems[0].to_string(),
        "public.invoices: not covered by any include or exclude rule"
    );
}
