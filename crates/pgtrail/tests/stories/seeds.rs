//! The seeds' own questions, adapted to `pgtrail.changes`: the example
//! queries of seed 001 (users, organizations, memberships, moderations) and
//! seed 002 (the support-ticket investigation), run against a day of work.

use serde_json::json;
use tokio_postgres::Client;

use crate::support::audited_db;

const SCHEMA: &str = "
    CREATE TABLE users (id int PRIMARY KEY, email text, given_name text, updated_at timestamptz);
    CREATE TABLE organizations (id int PRIMARY KEY, siret text, cached_libelle text);
    CREATE TABLE users_organizations (user_id int REFERENCES users, organization_id int REFERENCES organizations,
                                      verification_type text, PRIMARY KEY (user_id, organization_id));
    CREATE TABLE moderations (id serial PRIMARY KEY, user_id int, organization_id int, type text,
                              created_at timestamptz NOT NULL DEFAULT clock_timestamp());";

const CONFIG: &str = r#"
[capture]
exclude = ["moderations"]
images = "full"
ignore_columns = ["updated_at"]

[context]
actor_name = ["app.actor_email", "app.current_user"]
actor_type = ["app.actor_type"]
migration = ["app.current_migration"]
"#;

/// A day of work: sign-up, a moderation, later edits, a migration, a batch job.
async fn a_day_of_work(client: &Client) {
    client
        .batch_execute(
            "BEGIN;
             SET LOCAL app.actor_email = 'user@example.com';
             SET LOCAL app.actor_type = 'user';
             INSERT INTO users VALUES (123, 'first@example.com', 'Jean', now());
             INSERT INTO organizations VALUES (1, '13002526500013', 'Old Name');
             INSERT INTO users_organizations VALUES (123, 1, 'pending');
             COMMIT;
             BEGIN;
             SET LOCAL app.actor_email = 'moderator@example.com';
             SET LOCAL app.actor_type = 'moderator';
             UPDATE users SET email = 'checked@example.com' WHERE id = 123;
             UPDATE users_organizations SET verification_type = 'domain' WHERE user_id = 123;
             COMMIT;
             INSERT INTO moderations (user_id, organization_id, type) VALUES (123, 1, 'organization_join_block');
             BEGIN;
             SET LOCAL app.actor_email = 'user@example.com';
             SET LOCAL app.actor_type = 'user';
             UPDATE users SET email = 'new@example.com', updated_at = now() WHERE id = 123;
             COMMIT;
             BEGIN;
             SET LOCAL app.current_migration = '1768213263725_apply-audit-triggers';
             SET LOCAL app.actor_type = 'migration';
             UPDATE organizations SET cached_libelle = 'New Name' WHERE id = 1;
             COMMIT;
             BEGIN;
             SELECT set_config('app.current_user', 'batch_script@system', true);
             INSERT INTO users SELECT g, 'bulk' || g || '@example.com', 'Bulk' FROM generate_series(200, 211) g;
             COMMIT;",
        )
        .await
        .expect("the day of work runs");
}

async fn texts(
    client: &Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Vec<String> {
    client
        .query(sql, params)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn seed_001_every_example_query_answers_the_day_of_work() {
    let db = audited_db(SCHEMA, CONFIG).await;
    a_day_of_work(&db.client).await;
    let c = &db.client;

    // View all audit logs for a specific user.
    let history = texts(
        c,
        "SELECT op || ' by ' || coalesce(actor_name, '-') FROM pgtrail.changes
         WHERE table_name = 'users' AND pk = jsonb_build_object('id', $1::int) ORDER BY changed_at DESC, id DESC",
        &[&123i32],
    )
    .await;
    assert_eq!(
        history,
        vec![
            "UPDATE by user@example.com",
            "UPDATE by moderator@example.com",
            "INSERT by user@example.com"
        ]
    );

    // View recent changes by actor.
    let by_actor = texts(
        c,
        "SELECT table_name || ':' || op FROM pgtrail.changes WHERE actor_name = $1 ORDER BY changed_at DESC, id DESC LIMIT 100",
        &[&"moderator@example.com"],
    )
    .await;
    assert_eq!(by_actor, vec!["users_organizations:UPDATE", "users:UPDATE"]);

    // View all changes from a specific migration.
    let migration = texts(
        c,
        "SELECT table_name || ':' || array_to_string(changed_fields, ',') FROM pgtrail.changes
         WHERE context->>'migration' = $1 ORDER BY id",
        &[&"1768213263725_apply-audit-triggers"],
    )
    .await;
    assert_eq!(migration, vec!["organizations:cached_libelle"]);

    // Reconstruct user state at a specific timestamp (the moderation's).
    let moderation_time: chrono::DateTime<chrono::Utc> = c
        .query_one("SELECT created_at FROM moderations", &[])
        .await
        .unwrap()
        .get(0);
    let state = c
        .query_one(
            "SELECT CASE WHEN op = 'DELETE' THEN old_values ELSE new_values END FROM pgtrail.changes
             WHERE table_name = 'users' AND pk->>'id' = '123' AND changed_at <= $1
             ORDER BY changed_at DESC, id DESC LIMIT 1",
            &[&moderation_time],
        )
        .await
        .unwrap()
        .get::<_, serde_json::Value>(0);
    assert_eq!(state["email"], json!("checked@example.com"));

    // Full history reconstruction: every state, in order.
    let states = texts(
        c,
        "SELECT (CASE WHEN op = 'DELETE' THEN old_values ELSE new_values END)->>'email' FROM pgtrail.changes
         WHERE table_name = 'users' AND pk->>'id' = '123' ORDER BY changed_at, id",
        &[],
    )
    .await;
    assert_eq!(
        states,
        vec!["first@example.com", "checked@example.com", "new@example.com"]
    );

    // State of the user, the organization and the membership at moderation time (LATERAL joins).
    let row = c
        .query_one(
            "SELECT m.type, u.new_values->>'email', o.new_values->>'cached_libelle', l.new_values->>'verification_type'
             FROM moderations m
             CROSS JOIN LATERAL (SELECT new_values FROM pgtrail.changes
                 WHERE table_name = 'users' AND (pk->>'id')::int = m.user_id AND changed_at <= m.created_at
                 ORDER BY changed_at DESC, id DESC LIMIT 1) u
             CROSS JOIN LATERAL (SELECT new_values FROM pgtrail.changes
                 WHERE table_name = 'organizations' AND (pk->>'id')::int = m.organization_id AND changed_at <= m.created_at
                 ORDER BY changed_at DESC, id DESC LIMIT 1) o
             CROSS JOIN LATERAL (SELECT new_values FROM pgtrail.changes
                 WHERE table_name = 'users_organizations' AND (pk->>'user_id')::int = m.user_id
                   AND (new_values->>'organization_id')::int = m.organization_id AND changed_at <= m.created_at
                 ORDER BY changed_at DESC, id DESC LIMIT 1) l
             WHERE m.id = 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "organization_join_block");
    assert_eq!(row.get::<_, String>(1), "checked@example.com");
    assert_eq!(row.get::<_, String>(2), "Old Name");
    assert_eq!(row.get::<_, String>(3), "domain");

    // Find all changes to a specific field.
    let emails = c
        .query(
            "SELECT old_values->>'email', new_values->>'email', actor_name FROM pgtrail.changes
             WHERE table_name = 'users' AND op = 'UPDATE' AND 'email' = ANY(changed_fields)
             ORDER BY changed_at DESC, id DESC",
            &[],
        )
        .await
        .unwrap();
    let emails: Vec<(String, String, String)> =
        emails.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(
        emails,
        vec![
            (
                "checked@example.com".into(),
                "new@example.com".into(),
                "user@example.com".into()
            ),
            (
                "first@example.com".into(),
                "checked@example.com".into(),
                "moderator@example.com".into()
            ),
        ]
    );

    // Count changes by table and action.
    let counts = texts(
        c,
        "SELECT table_name || ' ' || op || ' ' || count(*) FROM pgtrail.changes GROUP BY table_name, op ORDER BY table_name, op",
        &[],
    )
    .await;
    assert_eq!(
        counts,
        vec![
            "organizations INSERT 1",
            "organizations UPDATE 1",
            "users INSERT 13",
            "users UPDATE 2",
            "users_organizations INSERT 1",
            "users_organizations UPDATE 1",
        ]
    );

    // Find suspicious activity (many changes in a short time).
    let bursts = texts(
        c,
        "SELECT actor_name || ' ' || count(*) FROM pgtrail.changes WHERE changed_at > now() - interval '1 hour'
         GROUP BY actor_name HAVING count(*) > 10 ORDER BY count(*) DESC",
        &[],
    )
    .await;
    assert_eq!(bursts, vec!["batch_script@system 12"]);
}

#[tokio::test]
async fn seed_002_the_support_ticket_who_changed_the_email_and_what_did_the_batch_script_touch() {
    let db = audited_db(SCHEMA, CONFIG).await;
    a_day_of_work(&db.client).await;
    db.client
        .batch_execute(
            "BEGIN; SELECT set_config('app.current_user', 'batch_script@system', true);
             UPDATE users SET email = 'broken@example.com' WHERE id = 123; COMMIT;",
        )
        .await
        .unwrap();
    let c = &db.client;

    // What did user 123 look like before the batch script, and who changed the email?
    let culprit = c
        .query_one(
            "SELECT actor_name, old_values->>'email', new_values->>'email' FROM pgtrail.changes
             WHERE table_name = 'users' AND pk->>'id' = '123' AND 'email' = ANY(changed_fields)
             ORDER BY changed_at DESC, id DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(culprit.get::<_, String>(0), "batch_script@system");
    assert_eq!(culprit.get::<_, String>(1), "new@example.com");
    assert_eq!(culprit.get::<_, String>(2), "broken@example.com");

    // Every change the batch script made in a time window, in order.
    let touched = texts(
        c,
        "SELECT table_name || ' ' || op || ' ' || (pk->>'id') FROM pgtrail.changes
         WHERE actor_name = 'batch_script@system' AND changed_at BETWEEN now() - interval '1 day' AND now() + interval '1 day'
         ORDER BY changed_at, id",
        &[],
    )
    .await;
    assert_eq!(touched.len(), 13);
    assert_eq!(touched.last().map(String::as_str), Some("users UPDATE 123"));

    // The diff view of seed 002: removed and added fields of each change.
    let diff = c
        .query_one(
            "SELECT old_values - ARRAY(SELECT jsonb_object_keys(new_values)) IS NOT NULL,
                    (SELECT array_agg(k ORDER BY k) FROM jsonb_each(new_values) e(k, v) WHERE old_values->k IS DISTINCT FROM v)
             FROM pgtrail.changes WHERE table_name = 'users' AND pk->>'id' = '123' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(diff.get::<_, Vec<String>>(1), vec!["email".to_string()]);
}

/// The SQL statements of README's section "The questions people ask, in
/// SQL", in order, as written there (comment lines left out).
fn readme_statements() -> Vec<String> {
    let readme = include_str!("../../../../README.md");
    let start = readme
        .find("## The questions people ask, in SQL")
        .expect("README has the section of recipes");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut statements = Vec::new();
    for block in section.split("```sql\n").skip(1) {
        let block = block.split("```").next().unwrap_or_default();
        let mut current = String::new();
        for line in block.lines().filter(|l| !l.trim_start().starts_with("--")) {
            current.push_str(line);
            current.push('\n');
            if line.trim_end().ends_with(';') {
                statements.push(current.trim().trim_end_matches(';').to_string());
                current.clear();
            }
        }
    }
    statements
}

/// Every row of a README statement, as JSON objects.
async fn rows_of(
    client: &Client,
    statement: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Vec<serde_json::Value> {
    let sql = format!("SELECT to_jsonb(q) FROM ({statement}) AS q");
    client
        .query(&sql, params)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e:?}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

const SCHEMA_NOW: &str = "
    CREATE TABLE users (id int PRIMARY KEY, email text, given_name text, updated_at timestamptz);
    CREATE TABLE organizations (id int PRIMARY KEY, siret text, cached_libelle text);
    CREATE TABLE users_organizations (user_id int REFERENCES users, organization_id int REFERENCES organizations,
                                      verification_type text, PRIMARY KEY (user_id, organization_id));
    CREATE TABLE moderations (id int PRIMARY KEY, user_id int, organization_id int, type text,
                              created_at timestamptz NOT NULL DEFAULT now());";

#[tokio::test]
async fn seeds_001_and_002_readme_recipes_answer_with_the_moderation_in_the_same_transaction_or_a_later_one()
{
    let db = audited_db(SCHEMA_NOW, &CONFIG.replace("images = \"full\"\n", "")).await;
    let c = &db.client;
    let now = || async {
        c.query_one("SELECT clock_timestamp()", &[])
            .await
            .unwrap()
            .get::<_, chrono::DateTime<chrono::Utc>>(0)
    };
    let start = now().await;
    c.batch_execute(
        "BEGIN;
         SET LOCAL app.actor_email = 'user@example.com';
         SET LOCAL app.actor_type = 'user';
         INSERT INTO users VALUES (123, 'first@example.com', 'Jean', now());
         INSERT INTO organizations VALUES (1, '13002526500013', 'Old Name');
         INSERT INTO users_organizations VALUES (123, 1, 'pending');
         COMMIT;",
    )
    .await
    .unwrap();
    // The moderator's request: the checks, the moderation and one more
    // change after it, in one transaction; and a user created with their
    // own moderation in one request.
    c.batch_execute(
        "BEGIN;
         SET LOCAL app.actor_email = 'moderator@example.com';
         SET LOCAL app.actor_type = 'moderator';
         UPDATE users SET email = 'checked@example.com' WHERE id = 123;
         INSERT INTO moderations (id, user_id, organization_id, type) VALUES (1, 123, 1, 'organization_join_block');
         UPDATE users_organizations SET verification_type = 'domain' WHERE user_id = 123;
         COMMIT;",
    )
    .await
    .unwrap();
    c.batch_execute(
        "BEGIN;
         SET LOCAL app.actor_email = 'moderator@example.com';
         INSERT INTO users VALUES (124, 'new-user@example.com', 'Ana', now());
         INSERT INTO moderations (id, user_id, organization_id, type) VALUES (2, 124, 1, 'signup_review');
         COMMIT;",
    )
    .await
    .unwrap();
    let after_moderation = now().await;
    c.batch_execute(
        "BEGIN;
         SET LOCAL app.actor_email = 'user@example.com';
         UPDATE users SET email = 'new@example.com', updated_at = now() WHERE id = 123;
         COMMIT;
         BEGIN;
         SET LOCAL app.current_migration = '1768213263725_apply-audit-triggers';
         SET LOCAL app.actor_type = 'migration';
         UPDATE organizations SET cached_libelle = 'New Name' WHERE id = 1;
         COMMIT;
         BEGIN;
         SELECT set_config('app.current_user', 'batch_script@system', true);
         INSERT INTO users SELECT g, 'bulk' || g || '@example.com', 'Bulk' FROM generate_series(200, 211) g;
         UPDATE users SET email = 'broken@example.com' WHERE id = 123;
         COMMIT;",
    )
    .await
    .unwrap();
    // A later moderation, in a transaction of its own.
    c.batch_execute(
        "INSERT INTO moderations (id, user_id, organization_id, type) VALUES (3, 123, 1, 'review')",
    )
    .await
    .unwrap();
    let end = now().await;

    let statements = readme_statements();
    assert_eq!(statements.len(), 9, "{statements:#?}");
    let email = |v: &serde_json::Value, k: &str| v[k]["email"].clone();

    // Every change of user 123, newest first.
    let history = rows_of(c, &statements[0], &[]).await;
    let ops: Vec<String> = history
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["op"].as_str().unwrap(),
                r["actor_name"].as_str().unwrap_or("-")
            )
        })
        .collect();
    assert_eq!(
        ops,
        [
            "UPDATE batch_script@system",
            "UPDATE user@example.com",
            "UPDATE moderator@example.com",
            "INSERT user@example.com"
        ]
    );
    // The moderator's changes in a window.
    let by_moderator = rows_of(c, &statements[1], &[&start, &end]).await;
    let touched: Vec<String> = by_moderator
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r["table_name"].as_str().unwrap(),
                r["op"].as_str().unwrap(),
                r["pk"]
            )
        })
        .collect();
    assert_eq!(
        touched,
        [
            r#"users INSERT {"id":124}"#,
            r#"users_organizations UPDATE {"organization_id":1,"user_id":123}"#,
            r#"users UPDATE {"id":123}"#
        ]
    );
    // The migration.
    let migration = rows_of(c, &statements[2], &[]).await;
    assert_eq!(migration.len(), 1);
    assert_eq!(migration[0]["changed_fields"], json!(["cached_libelle"]));
    // User 123 at a moment (after the moderations), and every state (diff images).
    let at = rows_of(c, &statements[3], &[&after_moderation]).await;
    assert_eq!(at[0]["row_as_of"]["email"], json!("checked@example.com"));
    let states: Vec<serde_json::Value> = rows_of(c, &statements[4], &[])
        .await
        .iter()
        .map(|r| r["state"]["email"].clone())
        .collect();
    assert_eq!(
        states,
        [
            json!("first@example.com"),
            json!("checked@example.com"),
            json!("new@example.com"),
            json!("broken@example.com")
        ]
    );
    // Who changed the email (seed 002's ticket): the batch script, last.
    let emails = rows_of(c, &statements[5], &[]).await;
    assert_eq!(emails.len(), 3);
    assert_eq!(emails[0]["actor_name"], json!("batch_script@system"));
    assert_eq!(emails[0]["old_email"], json!("new@example.com"));
    assert_eq!(emails[0]["new_email"], json!("broken@example.com"));
    assert_eq!(emails[0]["user_id"], json!("123"));
    // Counts, and the burst.
    let counts: Vec<String> = rows_of(c, &statements[6], &[])
        .await
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r["table_name"].as_str().unwrap(),
                r["op"].as_str().unwrap(),
                r["count"]
            )
        })
        .collect();
    assert_eq!(
        counts,
        [
            "organizations INSERT 1",
            "organizations UPDATE 1",
            "users INSERT 14",
            "users UPDATE 3",
            "users_organizations INSERT 1",
            "users_organizations UPDATE 1"
        ]
    );
    let bursts = rows_of(c, &statements[7], &[]).await;
    assert_eq!(bursts.len(), 1);
    assert_eq!(bursts[0]["actor"], json!("batch_script@system"));
    assert_eq!(bursts[0]["changes"], json!(13));

    // State at moderation time. Moderation 1, made in the transaction of the
    // changes it judges: all of them, none of the later ones.
    let moderation = &statements[8];
    let first = &rows_of(c, moderation, &[]).await[0];
    assert_eq!(email(first, "user_state"), json!("checked@example.com"));
    assert_eq!(first["organization_state"]["cached_libelle"], json!("Old Name"));
    assert_eq!(first["membership_state"]["verification_type"], json!("domain"));
    // The same on the change clock shows the problem the transaction clock solves.
    let change_clock = moderation.replace(", clock => 'transaction'", "");
    let before = &rows_of(c, &change_clock, &[]).await[0];
    assert_eq!(email(before, "user_state"), json!("first@example.com"));
    assert_eq!(before["membership_state"]["verification_type"], json!("pending"));
    // Moderation 2: the user created in the same request is found.
    let second = &rows_of(c, &moderation.replace("m.id = 1", "m.id = 2"), &[]).await[0];
    assert_eq!(email(second, "user_state"), json!("new-user@example.com"));
    assert_eq!(second["membership_state"], json!(null));
    let not_found = &rows_of(c, &change_clock.replace("m.id = 1", "m.id = 2"), &[]).await[0];
    assert_eq!(not_found["user_state"], json!(null));
    // Moderation 3, in a later transaction: everything committed before it.
    let third = &rows_of(c, &moderation.replace("m.id = 1", "m.id = 3"), &[]).await[0];
    assert_eq!(email(third, "user_state"), json!("broken@example.com"));
    assert_eq!(third["organization_state"]["cached_libelle"], json!("New Name"));
    assert_eq!(third["membership_state"]["verification_type"], json!("domain"));

    // The whole table on the transaction clock, and tx_started_at in the view.
    let created_at: chrono::DateTime<chrono::Utc> = c
        .query_one("SELECT created_at FROM moderations WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    let emails_then: Vec<String> = c
        .query(
            "SELECT s->>'email' FROM pgtrail.table_as_of('users', $1, clock => 'transaction') AS s ORDER BY s->>'id'",
            &[&created_at],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(emails_then, ["checked@example.com"]);
    let started: Vec<bool> = c
        .query(
            "SELECT tx_started_at = $1 FROM pgtrail.changes WHERE table_name = 'users_organizations' AND op = 'UPDATE'",
            &[&created_at],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        started,
        [true],
        "tx_started_at is the now() of the moderation's transaction"
    );
    let unknown = c
        .query_one(
            "SELECT pgtrail.row_as_of('users', '{\"id\": 123}', now(), clock => 'wall')",
            &[],
        )
        .await
        .expect_err("an unknown clock is refused");
    assert!(format!("{unknown:?}").contains("unknown clock"), "{unknown:?}");
}
