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
