//! Append-only and unforgeable: an application role that writes the audited
//! tables can neither edit nor delete the trail, nor write it directly, nor
//! forge what the database records; even a superuser's plain UPDATE, DELETE
//! or TRUNCATE of the trail is refused.

use std::str::FromStr;

use pgtrail_testkit::TestDb;
use tokio_postgres::{Client, NoTls};

use crate::support::{audited_db, changes};

/// A login role with the usual application privileges on `accounts`.
struct AppRole {
    name: String,
    client: Client,
}

impl AppRole {
    async fn create(db: &TestDb) -> AppRole {
        let name = format!("app_{}", db.name().trim_start_matches("pgtrail_test_"));
        db.client
            .batch_execute(&format!(
                "CREATE ROLE {name} LOGIN;
                 GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON accounts TO {name};
                 GRANT USAGE ON SEQUENCE accounts_id_seq TO {name};
                 CREATE SCHEMA evil AUTHORIZATION {name};"
            ))
            .await
            .expect("app role created");
        let mut config = tokio_postgres::Config::from_str(db.url()).expect("test url parses");
        config.user(&name);
        let (client, connection) = config.connect(NoTls).await.expect("app role connects");
        tokio::spawn(connection);
        AppRole { name, client }
    }

    async fn drop_role(self, db: &TestDb) {
        drop(self.client);
        let _ = db
            .client
            .batch_execute(&format!("DROP OWNED BY {0} CASCADE; DROP ROLE {0};", self.name))
            .await;
    }
}

/// The name of this database's owner or reader role.
pub async fn role(db: &TestDb, kind: &str) -> String {
    db.client
        .query_one("SELECT pgtrail.role_name($1)::text", &[&kind])
        .await
        .expect("pgtrail.role_name")
        .get(0)
}

fn sqlstate(result: Result<(), tokio_postgres::Error>) -> String {
    match result {
        Ok(()) => "ok".to_string(),
        Err(error) => error
            .code()
            .map(|c| c.code().to_string())
            .unwrap_or_else(|| error.to_string()),
    }
}

#[tokio::test]
async fn an_application_role_cannot_touch_or_forge_the_trail() {
    let db = audited_db(
        "CREATE TABLE accounts (id serial PRIMARY KEY, owner text, balance numeric);",
        "",
    )
    .await;
    let app = AppRole::create(&db).await;

    app.client
        .batch_execute(
            "INSERT INTO accounts (owner, balance) VALUES ('ann', 10);
             UPDATE accounts SET balance = 20;",
        )
        .await
        .expect("the app writes its tables and capture follows");
    assert_eq!(changes(&db.client, "accounts").await.len(), 2);

    let attempts = [
        "UPDATE pgtrail.change SET new_values = '{}'",
        "DELETE FROM pgtrail.change",
        "TRUNCATE pgtrail.change",
        "UPDATE pgtrail.transaction SET actor_id = 'someone else'",
        "DELETE FROM pgtrail.transaction",
        "INSERT INTO pgtrail.change (txid, ctx, table_id, op, changed_at) VALUES (1, 0, 1, 'I', now())",
        "INSERT INTO pgtrail.transaction (txid, ctx, started_at, recorded_at, db_user, backend_pid)
         VALUES (txid_current(), 0, now(), now(), 'postgres', 1)",
        "SELECT pgtrail.attach('accounts', '{}', 'full_row')",
        "SELECT pgtrail.detach('accounts')",
        "UPDATE pgtrail.audited_table SET ignore_columns = '{balance}'",
        "SELECT * FROM pgtrail.secret",
        "CREATE TABLE evil.fake (id int);
         CREATE TRIGGER forge AFTER INSERT ON evil.fake REFERENCING NEW TABLE AS pgtrail_new
         FOR EACH STATEMENT EXECUTE FUNCTION pgtrail._capture_1('1')",
    ];
    for attempt in attempts {
        let code = sqlstate(app.client.batch_execute(attempt).await);
        assert_eq!(code, "42501", "expected permission denied for: {attempt}");
    }

    // Trying to steer capture through settings changes nothing it records about the database.
    app.client
        .batch_execute(
            "BEGIN;
             SET LOCAL pgtrail.context_seq = '9';
             SET LOCAL pgtrail.context = 'not json';
             UPDATE accounts SET balance = 30;
             COMMIT;",
        )
        .await
        .expect("odd settings never break the app's writes");
    let row = db
        .client
        .query_one(
            "SELECT x.db_user, x.context FROM pgtrail.change c JOIN pgtrail.transaction x USING (txid, ctx)
             ORDER BY c.id DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), app.name);
    assert_eq!(
        row.get::<_, serde_json::Value>(1),
        serde_json::json!({"unparsed_context": "not json"})
    );
    // set_context's extra is cast without checks only while pgtrail.context is
    // still the text set_context wrote: a SET LOCAL after it is checked again.
    let last_context = async || {
        db.client
            .query_one(
                "SELECT x.context FROM pgtrail.change c JOIN pgtrail.transaction x USING (txid, ctx)
                 ORDER BY c.id DESC LIMIT 1",
                &[],
            )
            .await
            .unwrap()
            .get::<_, serde_json::Value>(0)
    };
    app.client
        .batch_execute(
            "BEGIN;
             SELECT pgtrail.set_context(actor_id => '7', extra => '{\"request_id\": \"r-9\"}');
             UPDATE accounts SET balance = 31;
             COMMIT;",
        )
        .await
        .expect("set_context's extra is recorded");
    assert_eq!(last_context().await, serde_json::json!({"request_id": "r-9"}));
    app.client
        .batch_execute(
            "BEGIN;
             SELECT pgtrail.set_context(actor_id => '7', extra => '{\"request_id\": \"r-10\"}');
             SET LOCAL pgtrail.context = 'still not json';
             UPDATE accounts SET balance = 32;
             COMMIT;",
        )
        .await
        .expect("a SET LOCAL over set_context's extra never breaks the write");
    assert_eq!(
        last_context().await,
        serde_json::json!({"unparsed_context": "still not json"})
    );
    app.drop_role(&db).await;
}

#[tokio::test]
async fn a_search_path_of_the_callers_choosing_cannot_hijack_capture() {
    let db = audited_db(
        "CREATE TABLE accounts (id serial PRIMARY KEY, owner text, balance numeric);",
        "",
    )
    .await;
    let app = AppRole::create(&db).await;
    app.client
        .batch_execute(
            r#"CREATE FUNCTION evil.to_jsonb(anyelement) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{"forged": true}'::jsonb $$;
               CREATE FUNCTION evil.txid_current() RETURNS bigint LANGUAGE sql AS $$ SELECT 1::bigint $$;
               CREATE FUNCTION evil.clock_timestamp() RETURNS timestamptz LANGUAGE sql AS $$ SELECT 'epoch'::timestamptz $$;
               SET search_path = evil, public;
               INSERT INTO accounts (owner, balance) VALUES ('mallory', 1);"#,
        )
        .await
        .unwrap();
    let change = &changes(&db.client, "accounts").await[0];
    assert_eq!(
        change.new.as_ref().unwrap()["owner"],
        serde_json::json!("mallory")
    );
    assert!(change.txid > 1);

    // Every function pins its search_path, except thirteen small helpers that
    // run inside the capture and query functions on every change or row, or
    // in set_context: eleven written to be inlined (a SET clause prevents
    // inlining; _outside_transaction is a constant), and _diff
    // (a SET clause costs a settings save and restore per call); and
    // _revert_lost, inlined into the revert's statements per value. They run
    // under their callers' pinned search_path, as the owner, and nobody but
    // the owner may call them. And _wal_context, WAL mode's statement
    // trigger, run on every statement: one comparison of two settings with
    // every name in it qualified, then a call of the pinned _wal_emit.
    // And set_context: its versions are SQL functions inlined into the
    // caller's statement (no SECURITY DEFINER: they set only the caller's
    // own settings, every name qualified); the first call of a transaction
    // calls _context_check_arm (SECURITY DEFINER, every name qualified, to
    // write the commit check's row), whose trigger _context_check_trigger
    // runs as the committing role (it reads that role's settings only).
    // Since set_context runs as its caller, its caller may call
    // _outside_transaction (the [context] outside_transaction word, which
    // the inlined set_context and the commit check read).
    let unpinned: Vec<String> = db
        .client
        .query_one(
            "SELECT coalesce(array_agg(p.proname::text ORDER BY p.proname), '{}')
             FROM pg_proc p WHERE p.pronamespace = 'pgtrail'::regnamespace AND p.prokind = 'f'
               AND NOT coalesce(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        unpinned,
        vec![
            "_as_recorded",
            "_context_check_arm",
            "_context_check_trigger",
            "_context_seq",
            "_context_span",
            "_diff",
            "_h",
            "_key",
            "_marker",
            "_marker_scope",
            "_outside_context_span",
            "_outside_transaction",
            "_redact_part",
            "_redact_row",
            "_revert_lost",
            "_wal_context",
            "set_context",
            "set_context",
            "set_context",
            "set_context",
            "set_context",
            "set_context",
            "set_context",
            "set_context",
            "set_context"
        ]
    );
    let public_can_call: bool = db
        .client
        .query_one(
            "SELECT bool_or(p.proacl IS NULL OR EXISTS (SELECT FROM aclexplode(p.proacl) a WHERE a.grantee = 0))
             FROM pg_proc p WHERE p.pronamespace = 'pgtrail'::regnamespace AND p.proname IN ('_as_recorded', '_context_seq', '_context_span', '_diff', '_h', '_key', '_marker',
                               '_marker_scope', '_outside_context_span', '_redact_part', '_redact_row')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!public_can_call);
    let definer_capture: i64 = db
        .client
        .query_one(
            "SELECT count(*) FROM pg_proc WHERE pronamespace = 'pgtrail'::regnamespace
               AND proname LIKE '\\_capture\\_%' AND prosecdef",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(definer_capture, 1, "the capture function generated for accounts");
    app.drop_role(&db).await;
}

#[tokio::test]
async fn even_a_superuser_cannot_update_delete_or_truncate_the_trail() {
    let db = audited_db("CREATE TABLE t (id int PRIMARY KEY);", "").await;
    db.client.batch_execute("INSERT INTO t VALUES (1)").await.unwrap();
    for attempt in [
        "UPDATE pgtrail.change SET pk = '{\"id\": 2}'",
        "DELETE FROM pgtrail.change",
        "TRUNCATE pgtrail.change",
        "UPDATE pgtrail.transaction SET actor_id = 'x'",
        "DELETE FROM pgtrail.transaction",
        "TRUNCATE pgtrail.transaction CASCADE",
    ] {
        assert_eq!(
            sqlstate(db.client.batch_execute(attempt).await),
            "PGTR2",
            "{attempt}"
        );
    }
    assert_eq!(changes(&db.client, "t").await.len(), 1);
}

#[tokio::test]
async fn a_reader_reads_the_trail_and_its_answers_but_nothing_else() {
    let db = audited_db(
        "CREATE TABLE users (id integer PRIMARY KEY, email text, password_hash text);",
        "[tables.\"public.users\"]\nredact_columns = [\"password_hash\"]\n",
    )
    .await;
    db.client
        .batch_execute(
            "INSERT INTO users VALUES (1, 'ann@example.com', 'secret-1');
             UPDATE users SET email = 'ann@new.example.com', password_hash = 'secret-2' WHERE id = 1;",
        )
        .await
        .unwrap();
    let name = format!("auditor_{}", db.name().trim_start_matches("pgtrail_test_"));
    let reader = role(&db, "reader").await;
    db.client
        .batch_execute(&format!("CREATE ROLE {name} LOGIN IN ROLE \"{reader}\""))
        .await
        .expect("the reader role exists after apply");
    let mut config = tokio_postgres::Config::from_str(db.url()).expect("test url parses");
    config.user(&name);
    let (reader, connection) = config.connect(NoTls).await.expect("the reader connects");
    tokio::spawn(connection);

    // The trail and the answers, redacted values marked, never shown.
    let seen: i64 = reader
        .query_one("SELECT count(*) FROM pgtrail.changes", &[])
        .await
        .expect("reads pgtrail.changes")
        .get(0);
    assert_eq!(seen, 2);
    for query in [
        "SELECT count(*) FROM pgtrail.history('users', '{\"id\": 1}')",
        "SELECT count(*) FROM pgtrail.blame('users', '{\"id\": 1}')",
        "SELECT count(*) FROM pgtrail.actor_changes('ann', '-infinity', 'infinity')",
        "SELECT count(*) FROM pgtrail.table_as_of('users', now())",
        "SELECT count(*) FROM (SELECT pgtrail.row_as_of('users', '{\"id\": 1}', now())) AS r",
        "SELECT count(*) FROM pgtrail.capture_gaps",
        // What `pgtrail check` reads about WAL mode's context messages.
        "SELECT count(*) FROM pgtrail.wal_rejected",
        "SELECT count(*) FROM pgtrail.wal_unsigned",
    ] {
        reader
            .query_one(query, &[])
            .await
            .unwrap_or_else(|e| panic!("{query}: {e:?}"));
    }
    let state: serde_json::Value = reader
        .query_one("SELECT pgtrail.row_as_of('users', '{\"id\": 1}', now())", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(state["email"], "ann@new.example.com");
    assert!(state["password_hash"].get("redacted").is_some(), "{state}");
    assert!(!state.to_string().contains("secret-2"));

    // Nothing else.
    for statement in [
        "SELECT * FROM pgtrail.secret",
        "SELECT * FROM users",
        "INSERT INTO pgtrail.change (txid, ctx, table_id, op, changed_at) VALUES (1, 0, 1, 'T', now())",
        "UPDATE pgtrail.change SET new_values = NULL",
        "DELETE FROM pgtrail.transaction",
        "SELECT pgtrail.attach('users', '{id}', 'primary_key')",
        "SELECT pgtrail.configure_context('{}', false)",
    ] {
        assert_eq!(
            sqlstate(reader.batch_execute(statement).await),
            "42501",
            "{statement}"
        );
    }
    drop(reader);
    let _ = db
        .client
        .batch_execute(&format!("DROP OWNED BY {name} CASCADE; DROP ROLE {name};"))
        .await;
}

#[tokio::test]
async fn the_trail_belongs_to_an_owner_role_that_can_do_nothing_else() {
    let db = audited_db("CREATE TABLE accounts (id integer PRIMARY KEY, owner text);", "").await;
    let owners: Vec<String> = db
        .client
        .query(
            "SELECT DISTINCT relowner::regrole::text FROM pg_class WHERE relnamespace = 'pgtrail'::regnamespace
             UNION SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'pgtrail'
             UNION SELECT DISTINCT proowner::regrole::text FROM pg_proc
                   WHERE pronamespace = 'pgtrail'::regnamespace AND proname <> '_on_create_table'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let owner = role(&db, "owner").await;
    assert_eq!(owners, [format!("pgtrail_{}_owner", db.name())]);
    assert_eq!(owners, std::slice::from_ref(&owner));
    let attributes = db
        .client
        .query_one(
            "SELECT rolsuper, rolcanlogin, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles WHERE rolname = $1",
            &[&owner],
        )
        .await
        .unwrap();
    for column in 0..5 {
        assert!(
            !attributes.get::<_, bool>(column),
            "{owner} has no special power (column {column})"
        );
    }
    // Capture runs as that owner, which may read the audited table (for the
    // query functions) and nothing more of it.
    db.client
        .batch_execute("INSERT INTO accounts VALUES (1, 'ann')")
        .await
        .unwrap();
    let rights: (bool, bool, bool) = {
        let row = db
            .client
            .query_one(
                "SELECT has_table_privilege($1, 'accounts', 'SELECT'),
                        has_table_privilege($1, 'accounts', 'UPDATE'),
                        has_table_privilege($1, 'accounts', 'DELETE')",
                &[&owner],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    assert_eq!(rights, (true, false, false));
    assert_eq!(changes(&db.client, "accounts").await.len(), 1);
}

#[tokio::test]
async fn a_table_the_owner_role_cannot_read_is_an_error_that_says_which_grant() {
    let db = audited_db(
        "CREATE TABLE users (id integer PRIMARY KEY, email text);",
        "[capture]\ninclude = [\"users\"]\n",
    )
    .await;
    let owner = role(&db, "owner").await;
    db.client
        .batch_execute(&format!(
            "INSERT INTO users VALUES (1, 'a@x');
             REVOKE SELECT ON users FROM \"{owner}\";"
        ))
        .await
        .unwrap();
    let error = db
        .client
        .query("SELECT * FROM pgtrail.history('users', '{\"id\": 1}')", &[])
        .await
        .expect_err("the owner cannot read the live row");
    let db_error = error.as_db_error().expect("a server error");
    assert_eq!(db_error.code().code(), "42501");
    assert!(
        db_error
            .message()
            .contains(&format!("{owner} cannot read public.users")),
        "{}",
        db_error.message()
    );
    assert!(
        db_error
            .hint()
            .is_some_and(|h| h.contains(&format!("GRANT SELECT ON public.users TO {owner}"))),
        "{:?}",
        db_error.hint()
    );
}

#[tokio::test]
async fn role_names_follow_the_database_even_a_long_or_odd_one() {
    let db = TestDb::new().await;
    // 63 bytes, with capitals, a space and a multi-byte letter.
    let name = format!("Shop Ü {}", db.name())
        .chars()
        .chain(std::iter::repeat('x'))
        .take(60)
        .collect::<String>();
    db.client
        .batch_execute(&format!("CREATE DATABASE \"{name}\" TEMPLATE template0"))
        .await
        .expect("create the oddly named database");
    let mut config = tokio_postgres::Config::from_str(db.url()).expect("test url parses");
    config.dbname(&name);
    let (mut client, connection) = config.connect(NoTls).await.expect("connect to it");
    let task = tokio::spawn(connection);
    let parsed = pgtrail::config::Config::parse("", "pgtrail.toml").expect("empty config");
    pgtrail::plan::apply(&mut client, &parsed).await.expect("apply");
    let row = client
        .query_one(
            "SELECT pgtrail.role_name('owner')::text, pgtrail.role_name('reader')::text, left(md5(current_database()), 8),
                    (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'pgtrail')",
            &[],
        )
        .await
        .expect("role names");
    let (owner, reader, hash, schema_owner): (String, String, String, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert!(
        owner.len() <= 63 && owner.ends_with(&format!("_{hash}_owner")),
        "{owner}"
    );
    assert_eq!(owner, pgtrail::plan::role_name(&name, &hash, "owner"));
    assert_eq!(reader, pgtrail::plan::role_name(&name, &hash, "reader"));
    assert_eq!(schema_owner, pgtrail_capture_quote(&owner));
    drop(client);
    let _ = task.await;
    db.client
        .batch_execute(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .await
        .expect("drop it");
}

/// How `regrole` prints a name that needs quotes.
fn pgtrail_capture_quote(name: &str) -> String {
    pgtrail::capture::quote::ident(name)
}
