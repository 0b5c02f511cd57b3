//! A Rust service says who is acting: a tokio-postgres transaction begun
//! with an AuditContext, and a tower layer that builds the context from
//! each HTTP request for the handler, against a real server with pgtrail.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use pgtrail_context::{AuditContext, AuditContextLayer};
use pgtrail_testkit::TestDb;
use tokio::sync::Mutex;
use tower::{Layer, ServiceExt, service_fn};

const SCHEMA: &str =
    "CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL, status text NOT NULL DEFAULT 'active');
                      INSERT INTO users (email) VALUES ('alice@example.com'), ('bob@example.com');";

/// A database with [`SCHEMA`], pgtrail applied, `app.actor_email` mapped to actor_name.
async fn audited() -> TestDb {
    let mut db = TestDb::new().await;
    db.client.batch_execute(SCHEMA).await.unwrap();
    let config =
        pgtrail_config::Config::parse("[context]\nactor_name = [\"app.actor_email\"]\n", "pgtrail.toml")
            .unwrap();
    pgtrail_plan::apply(&mut db.client, &config).await.unwrap();
    db
}

/// (actor_id, actor_name, actor_type, reason, context, status after) of every UPDATE of users.
async fn updates(
    db: &TestDb,
) -> Vec<(
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    serde_json::Value,
    String,
)> {
    db.client
        .query(
            "SELECT actor_id, actor_name, actor_type, reason, coalesce(context, '{}'), new_values->>'status'
             FROM pgtrail.changes WHERE table_name = 'users' AND op = 'UPDATE' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| {
            (
                row.get(0),
                row.get(1),
                row.get(2),
                row.get(3),
                row.get(4),
                row.get(5),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_transaction_begun_with_a_context_records_it_and_a_rollback_records_nothing() {
    let mut db = audited().await;
    let context = AuditContext::new()
        .actor_id(uuid_like())
        .actor_name("moderator@example.com")
        .actor_type("moderator")
        .reason("spam")
        .extra("request_id", "req-1")
        .extra("business_process", "moderation");
    let tx = context.begin(&mut db.client).await.unwrap();
    tx.execute("UPDATE users SET status = 'suspended' WHERE id = 1", &[])
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let tx = AuditContext::new()
        .actor_id(7)
        .begin(&mut db.client)
        .await
        .unwrap();
    tx.execute("UPDATE users SET status = 'gone' WHERE id = 2", &[])
        .await
        .unwrap();
    drop(tx); // no commit: rolled back

    let tx = AuditContext::new()
        .actor_id(i64::MAX)
        .setting("app.actor_email", "mapped@example.com")
        .begin(&mut db.client)
        .await
        .unwrap();
    let leaked: Option<String> = tx
        .query_one("SELECT nullif(current_setting('pgtrail.reason', true), '')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(leaked, None, "the previous transaction's reason must not leak");
    tx.execute("UPDATE users SET status = 'checked' WHERE id = 2", &[])
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let rows = updates(&db).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (
            rows[0].0.as_deref(),
            rows[0].1.as_deref(),
            rows[0].2.as_deref(),
            rows[0].3.as_deref(),
            rows[0].5.as_str()
        ),
        (
            Some(uuid_like().as_str()),
            Some("moderator@example.com"),
            Some("moderator"),
            Some("spam"),
            "suspended"
        )
    );
    assert_eq!(rows[0].4["request_id"], "req-1");
    assert_eq!(rows[0].4["business_process"], "moderation");
    assert_eq!(
        (rows[1].0.as_deref(), rows[1].1.as_deref(), rows[1].5.as_str()),
        (
            Some(i64::MAX.to_string().as_str()),
            Some("mapped@example.com"),
            "checked"
        )
    );

    let Err(error) = AuditContext::new()
        .setting("nodot", 1)
        .begin(&mut db.client)
        .await
    else {
        panic!("a setting name without a dot must be refused");
    };
    assert!(error.to_string().contains("not a custom setting name"), "{error}");
}

fn uuid_like() -> String {
    "5f0c6a1e-8d3b-4c2a-9e7f-1b2c3d4e5f60".to_string()
}

#[tokio::test]
async fn the_tower_layer_gives_each_request_its_context_and_the_handler_records_it() {
    let db = audited().await;
    let client = Arc::new(Mutex::new(db.connect().await));

    // The handler: suspends the user named in the path, in a transaction with the request's context.
    let handler = service_fn(move |request: Request<String>| {
        let client = client.clone();
        async move {
            let Some(context) = request.extensions().get::<AuditContext>().cloned() else {
                return Ok::<_, Infallible>(
                    Response::builder()
                        .status(StatusCode::UNAUTHORIZED)
                        .body(String::new())
                        .unwrap(),
                );
            };
            let id: i32 = request
                .uri()
                .path()
                .trim_start_matches("/users/")
                .parse()
                .unwrap();
            let mut client = client.lock().await;
            let tx = context
                .reason(request.body().clone())
                .begin(&mut client)
                .await
                .unwrap();
            tx.execute("UPDATE users SET status = 'suspended' WHERE id = $1", &[&id])
                .await
                .unwrap();
            tx.commit().await.unwrap();
            Ok(Response::new(String::new()))
        }
    });
    // The actor comes from the request's head (here a header an auth proxy sets).
    let layer = AuditContextLayer::new(|parts: &http::request::Parts| {
        let user = parts.headers.get("x-user-id")?.to_str().ok()?;
        let mut context = AuditContext::new().actor_id(user).actor_type("user");
        if let Some(request_id) = parts.headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
            context = context.extra("request_id", request_id);
        }
        Some(context)
    });
    let service = layer.layer(handler);

    let request = Request::post("/users/2")
        .header("x-user-id", "17")
        .header("x-request-id", "req-9")
        .body("abuse report".to_string())
        .unwrap();
    let response = service.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let anonymous = Request::post("/users/1").body(String::new()).unwrap();
    let response = service.oneshot(anonymous).await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "no actor: the layer adds no context"
    );

    let rows = updates(&db).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (actor_id, _, actor_type, reason, context, status) = &rows[0];
    assert_eq!(
        (
            actor_id.as_deref(),
            actor_type.as_deref(),
            reason.as_deref(),
            status.as_str()
        ),
        (Some("17"), Some("user"), Some("abuse report"), "suspended")
    );
    assert_eq!(context["request_id"], "req-9");
}

#[tokio::test]
async fn concurrent_requests_on_a_few_connections_each_record_their_own_actor() {
    let db = audited().await;
    db.client
        .batch_execute(
            "CREATE TABLE items (id int PRIMARY KEY, n int);
             INSERT INTO items SELECT g, -1 FROM generate_series(0, 199) AS g;",
        )
        .await
        .unwrap();
    let config = pgtrail_config::Config::parse("", "pgtrail.toml").unwrap();
    let mut admin = db.connect().await;
    pgtrail_plan::apply(&mut admin, &config).await.unwrap();

    let mut connections = Vec::new();
    for _ in 0..5 {
        connections.push(Arc::new(Mutex::new(db.connect().await)));
    }
    let rolled_back = |n: i32| n % 4 == 1;
    let mut tasks = Vec::new();
    for n in 0..200i32 {
        let connection = connections[n as usize % connections.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut client = connection.lock().await;
            let context = AuditContext::new()
                .actor_id(n)
                .extra("request_id", format!("req-{n}"));
            let tx = context.begin(&mut client).await.unwrap();
            tx.execute("UPDATE items SET n = $1 WHERE id = $1", &[&n])
                .await
                .unwrap();
            if !rolled_back(n) {
                tx.commit().await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }

    let rows = db
        .client
        .query(
            "SELECT (pk->>'id')::int, actor_id, context->>'request_id', (new_values->>'n')::int
             FROM pgtrail.changes WHERE table_name = 'items' ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let committed: Vec<i32> = (0..200).filter(|n| !rolled_back(*n)).collect();
    assert_eq!(rows.len(), committed.len());
    let mut seen = Vec::new();
    for row in &rows {
        let (id, actor, request, value): (i32, Option<String>, Option<String>, i32) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        assert!(
            !rolled_back(id),
            "a rolled-back change of request {id} was recorded"
        );
        assert_eq!(actor, Some(id.to_string()), "change of item {id}");
        assert_eq!(request, Some(format!("req-{id}")));
        assert_eq!(value, id);
        seen.push(id);
    }
    seen.sort_unstable();
    assert_eq!(seen, committed);
}
