//! Values: everything `to_jsonb` handles comes back exactly, including large
//! TOASTed values; redacted columns never show their value.

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::support::{audited_db, changes};

#[tokio::test]
async fn every_common_type_is_recorded_in_its_json_form() {
    let schema = "
        CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
        CREATE DOMAIN percent AS numeric(5,2) CHECK (VALUE BETWEEN 0 AND 100);
        CREATE TABLE samples (
            id int PRIMARY KEY,
            tags text[], matrix int[][], feeling mood, share percent,
            doc json, data jsonb, raw bytea, amount numeric(12,4), at timestamptz, day date,
            flag boolean, ratio double precision, span interval,
            total numeric GENERATED ALWAYS AS (amount * 2) STORED);";
    let db = audited_db(schema, "").await;
    db.client
        .batch_execute(
            "SET TIME ZONE 'UTC';
             INSERT INTO samples (id, tags, matrix, feeling, share, doc, data, raw, amount, at, day, flag, ratio, span)
             VALUES (1, ARRAY['a', 'b c'], '{{1,2},{3,4}}', 'happy', 12.5, '{\"k\": [1, 2]}', '{\"n\": {\"m\": null}}',
                     '\\xdeadbeef', 10.5000, '2026-01-02 03:04:05.123456+00', '2026-01-02', true, 0.25, '1 day 2 hours');",
        )
        .await
        .unwrap();
    let row = changes(&db.client, "samples").await[0].new.clone().unwrap();
    assert_eq!(row["tags"], json!(["a", "b c"]));
    assert_eq!(row["matrix"], json!([[1, 2], [3, 4]]));
    assert_eq!(row["feeling"], json!("happy"));
    // numeric keeps its scale, as to_jsonb prints it
    assert_eq!(row["share"].to_string(), "12.50");
    assert_eq!(row["doc"], json!({"k": [1, 2]}));
    assert_eq!(row["data"], json!({"n": {"m": null}}));
    assert_eq!(row["raw"], json!("\\xdeadbeef"));
    assert_eq!(row["at"], json!("2026-01-02T03:04:05.123456+00:00"));
    assert_eq!(row["day"], json!("2026-01-02"));
    assert_eq!(row["flag"], json!(true));
    assert_eq!(row["span"], json!("1 day 02:00:00"));
    assert_eq!(row["total"].to_string(), "21.0000");
    // numeric keeps its scale: compare the text PostgreSQL stored, not a float.
    let amount: String = db
        .client
        .query_one(
            "SELECT new_values->>'amount' FROM pgtrail.change WHERE op = 'I'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(amount, "10.5000");
}

#[tokio::test]
async fn a_change_of_numeric_scale_is_a_change() {
    let db = audited_db("CREATE TABLE prices (id int PRIMARY KEY, amount numeric);", "").await;
    db.client
        .batch_execute("INSERT INTO prices VALUES (1, 1.5); UPDATE prices SET amount = 1.50;")
        .await
        .unwrap();
    let texts: Vec<String> = db
        .client
        .query(
            "SELECT new_values->>'amount' FROM pgtrail.change ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(texts, vec!["1.5", "1.50"]);
}

#[tokio::test]
async fn a_numeric_of_declared_scale_changes_only_when_its_value_does() {
    // numeric(p, s) and a domain over one hold every value at their scale:
    // 1.5 written over 1.50 is no change; 2 over 1.50 is, at that scale.
    let db = audited_db(
        "CREATE DOMAIN share AS numeric(5,1);
         CREATE TABLE prices (id int PRIMARY KEY, amount numeric(12,2), part share);",
        "",
    )
    .await;
    db.client
        .batch_execute(
            "INSERT INTO prices VALUES (1, 1.50, 0.5), (2, 7, 1);
             UPDATE prices SET amount = 1.5, part = 0.50 WHERE id = 1;
             UPDATE prices SET amount = 2 WHERE id = 1;
             UPDATE prices SET part = 0.25 WHERE id = 1;
             UPDATE prices SET amount = amount + 1, part = part;",
        )
        .await
        .unwrap();
    let rows = db
        .client
        .query(
            "SELECT old_values::text, new_values::text FROM pgtrail.change WHERE op = 'U' ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap();
    let pairs: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        pairs,
        vec![
            (r#"{"amount": 1.50}"#.to_owned(), r#"{"amount": 2.00}"#.to_owned()),
            (r#"{"amount": 2.00}"#.to_owned(), r#"{"amount": 3.00}"#.to_owned()),
            (r#"{"amount": 7.00}"#.to_owned(), r#"{"amount": 8.00}"#.to_owned()),
            (r#"{"part": 0.5}"#.to_owned(), r#"{"part": 0.3}"#.to_owned()),
        ]
    );
}

#[tokio::test]
async fn a_toasted_value_of_several_megabytes_is_recorded_whole() {
    let db = audited_db(
        "CREATE TABLE files (id int PRIMARY KEY, body text, note text);",
        "",
    )
    .await;
    db.client
        .batch_execute(
            "INSERT INTO files VALUES (1, repeat(md5('x'), 200000), 'first');  -- 6.4 MB
             UPDATE files SET note = 'second';
             UPDATE files SET body = body || 'tail';",
        )
        .await
        .unwrap();
    let rows = db
        .client
        .query(
            "SELECT length(new_values->>'body'), new_values ? 'body' FROM pgtrail.change ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let lengths: Vec<(Option<i32>, bool)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        lengths,
        vec![(Some(6_400_000), true), (None, false), (Some(6_400_004), true)]
    );
}

#[tokio::test]
async fn redacted_columns_are_recorded_as_changed_but_never_show_their_value() {
    let schema = "CREATE TABLE users (id int PRIMARY KEY, email text, password_hash text);";
    let config = "[tables.\"public.users\"]\nredact_columns = [\"password_hash\"]\n";
    let db = audited_db(schema, config).await;
    db.client
        .batch_execute(
            "INSERT INTO users VALUES (1, 'a@x', 'hunter-one');
             UPDATE users SET password_hash = 'hunter-two';
             DELETE FROM users;",
        )
        .await
        .unwrap();
    let trail = changes(&db.client, "users").await;
    assert_eq!(trail[1].fields, Some(vec!["password_hash".to_string()]));
    let whole: String = db
        .client
        .query_one(
            "SELECT string_agg(concat(old_values, new_values), ' ') FROM pgtrail.change",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        !whole.contains("hunter-one") && !whole.contains("hunter-two"),
        "{whole}"
    );
    let marker = trail[0].new.as_ref().unwrap()["password_hash"].clone();
    assert!(marker["redacted"].is_string(), "{marker}");
    // The same value gives the same marker within a database (a change back is visible) ...
    assert_eq!(
        trail[2].old.as_ref().unwrap()["password_hash"],
        trail[1].new.as_ref().unwrap()["password_hash"]
    );
    assert_ne!(
        trail[1].old.as_ref().unwrap()["password_hash"],
        trail[1].new.as_ref().unwrap()["password_hash"]
    );
    // ... but it is keyed by a per-database secret: no plain hash of the value.
    let plain: String = db
        .client
        .query_one(
            "SELECT left(encode(sha256(convert_to('password_hash=\"hunter-one\"', 'UTF8')), 'hex'), 16)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_ne!(marker["redacted"], json!(plain));
    let other = audited_db(schema, config).await;
    other
        .client
        .batch_execute("INSERT INTO users VALUES (1, 'a@x', 'hunter-one')")
        .await
        .unwrap();
    let other_marker =
        changes(&other.client, "users").await[0].new.as_ref().unwrap()["password_hash"].clone();
    assert_ne!(
        marker, other_marker,
        "two databases must not share redaction markers"
    );
}

/// Issue 11: equal secrets in different rows must not show as equal
/// markers (a reader would learn which users share a password), while one
/// row's history still shows when its value changed and when it came back.
/// Markers of pgtrail 0.3.0 (a kind without the `r:` prefix) stay valid.
#[tokio::test]
async fn equal_secrets_in_different_rows_get_different_markers() {
    let schema = "CREATE TABLE users (id int PRIMARY KEY, password_hash text);";
    let config = "[tables.users]\nredact_columns = [\"password_hash\"]\n";
    let db = audited_db(schema, config).await;
    db.client
        .batch_execute(
            "INSERT INTO users VALUES (1, 'same'), (2, 'same'), (3, 'same'), (4, 'same');
             UPDATE users SET password_hash = 'other' WHERE id = 1;
             UPDATE users SET password_hash = 'same' WHERE id = 1;",
        )
        .await
        .unwrap();
    let inserted: Vec<String> = changes(&db.client, "users").await[..4]
        .iter()
        .map(|c| c.new.as_ref().unwrap()["password_hash"]["redacted"].to_string())
        .collect();
    let distinct: std::collections::BTreeSet<&String> = inserted.iter().collect();
    assert_eq!(distinct.len(), 4, "four rows, four markers: {inserted:?}");
    assert!(inserted.iter().all(|m| m.starts_with("\"r:")), "{inserted:?}");
    let history = history_of(&db.client, 1).await;
    assert_eq!(history.len(), 3);
    assert_ne!(history[1].0, history[1].1, "the change to another value shows");
    assert_eq!(
        history[2].1, history[0].1,
        "the value that came back has its old marker"
    );
}

/// Old and new markers of `password_hash` in each change of user `id`.
async fn history_of(client: &tokio_postgres::Client, id: i32) -> Vec<(Value, Value)> {
    client
        .query(
            "SELECT coalesce(old_values -> 'password_hash', 'null'), coalesce(new_values -> 'password_hash', 'null')
             FROM pgtrail.history('users', jsonb_build_object('id', $1::int))",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Values generated at random come back from the trail exactly as
/// `to_jsonb` renders them in the table itself.
#[test]
fn random_values_round_trip_through_the_trail() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = runtime.block_on(audited_db(
        "CREATE TABLE t (id serial PRIMARY KEY, s text, n numeric, a int[], j jsonb, b bytea, f float8);",
        "",
    ));
    let strategy = (
        "\\PC{0,40}",
        "-?[0-9]{1,12}(\\.[0-9]{0,6})?",
        proptest::collection::vec(any::<i32>(), 0..5),
        "\\PC{0,10}",
        proptest::collection::vec(any::<u8>(), 0..20),
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
    );
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(48));
    runner
        .run(&strategy, |(s, n, a, key, b, f)| {
            runtime.block_on(async {
                let j = json!({ key.clone(): [s.clone(), null, 1.5] });
                let row = db
                    .client
                    .query_one(
                        "INSERT INTO t (s, n, a, j, b, f) VALUES ($1, $2::text::numeric, $3, $4, $5, $6)
                         RETURNING id, to_jsonb(t.*) AS image",
                        &[&s, &n, &a, &j, &b, &f],
                    )
                    .await
                    .unwrap();
                let id: i32 = row.get(0);
                let image: serde_json::Value = row.get(1);
                let recorded: serde_json::Value = db
                    .client
                    .query_one(
                        "SELECT new_values FROM pgtrail.change WHERE pk = jsonb_build_object('id', $1::int)",
                        &[&id],
                    )
                    .await
                    .unwrap()
                    .get(0);
                prop_assert_eq!(recorded, image);
                Ok(())
            })
        })
        .unwrap();
}

#[tokio::test]
async fn a_table_without_key_never_shows_a_redacted_value_in_its_row_identity() {
    let schema = "CREATE TABLE api_tokens (owner text, token text);";
    let config = "[tables.\"public.api_tokens\"]\nredact_columns = [\"token\"]\n";
    let db = audited_db(schema, config).await;
    db.client
        .batch_execute(
            "INSERT INTO api_tokens VALUES ('ann', 'tok-123');
             UPDATE api_tokens SET owner = 'bob';
             UPDATE api_tokens SET token = 'tok-456' || g FROM generate_series(1, 1) g;
             INSERT INTO api_tokens SELECT 'bulk', 'tok-bulk-' || g FROM generate_series(1, 300) g;
             UPDATE api_tokens SET owner = owner || '!';
             DELETE FROM api_tokens;",
        )
        .await
        .unwrap();
    let leaked: i64 = db
        .client
        .query_one(
            "SELECT count(*) FROM pgtrail.change
             WHERE concat(pk, old_pk, old_values, new_values) LIKE '%tok-%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leaked, 0);
    let with_marker: i64 = db
        .client
        .query_one(
            "SELECT count(*) FROM pgtrail.change WHERE pk->'token' ? 'redacted'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(with_marker > 600, "{with_marker}");
}

#[tokio::test]
async fn redacting_a_key_column_is_refused_with_a_way_out() {
    let mut db = pgtrail_testkit::TestDb::new().await;
    db.client
        .batch_execute("CREATE TABLE sessions (session_token text PRIMARY KEY, user_id int)")
        .await
        .unwrap();
    let config = pgtrail::config::Config::parse(
        "[tables.\"public.sessions\"]\nredact_columns = [\"session_token\"]\n",
        "pgtrail.toml",
    )
    .unwrap();
    let error = pgtrail::plan::apply(&mut db.client, &config)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("`session_token`") && error.contains("cannot be redacted"),
        "{error}"
    );
    assert!(error.contains("set another key"), "{error}");
}
