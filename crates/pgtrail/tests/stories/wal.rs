//! WAL capture mode (issue 15): a team that outgrew capture in the writing
//! transaction switches `mode = "wal"` and runs `pgtrail follow`. The trail
//! must be the one trigger mode writes: one random workload of several
//! clients runs against a trigger-mode database and a WAL-mode database,
//! and the two trails are compared change by change (ids, transaction
//! numbers and times aside). Queries, seal and verify work on it; a
//! follower killed at any point loses and repeats nothing. The follower
//! streams the slot (a replication connection), except where a story says
//! it reads it over SQL.

use std::collections::BTreeMap;

use pgtrail::config::Config;
use pgtrail::follow::FollowOptions;
use pgtrail::integrity::crypto::SignerKey;
use pgtrail::integrity::{self, VerifyOptions};
use pgtrail_testkit::{Cluster, ClusterOptions, connect_to};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tokio_postgres::Client;

const SCHEMA: &str = "
    CREATE TABLE accounts (id integer PRIMARY KEY, owner text, secret text, balance numeric(12,2),
                           updated_at timestamptz, doc text, tags text[], seen date);
    CREATE TABLE pairs (a integer, b integer, note text, PRIMARY KEY (a, b));
    CREATE TABLE notes (body text, n integer);
    CREATE TABLE events (id integer, k integer, v text, PRIMARY KEY (id, k)) PARTITION BY RANGE (id);
    CREATE TABLE events_low PARTITION OF events FOR VALUES FROM (0) TO (5000);
    CREATE TABLE events_high PARTITION OF events FOR VALUES FROM (5000) TO (100000);
    CREATE TABLE scratch (id integer PRIMARY KEY, v text);
";

fn config(mode: &str) -> String {
    format!(
        "[capture]\nmode = \"{mode}\"\nignore_columns = [\"updated_at\"]\nredact_columns = [\"secret\"]\n\n\
         [context]\nactor_id = [\"app.user_id\"]\n"
    )
}

/// A throwaway cluster that decodes logically (the suite's shared one may not).
pub(crate) fn logical_cluster() -> Cluster {
    Cluster::start(ClusterOptions {
        fast: true,
        settings: vec![
            ("wal_level".into(), "logical".into()),
            ("max_replication_slots".into(), "10".into()),
            ("timezone".into(), "UTC".into()),
        ],
        ..ClusterOptions::default()
    })
    .expect("a throwaway cluster with wal_level = logical starts")
}

async fn database(cluster: &Cluster, name: &str, mode: &str) -> Client {
    let admin = connect_to(&cluster.url("postgres")).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("database created");
    let mut client = connect_to(&cluster.url(name)).await;
    client.batch_execute(SCHEMA).await.expect("schema");
    let config = Config::parse(&config(mode), "pgtrail.toml").expect("config parses");
    pgtrail::plan::apply(&mut client, &config).await.expect("apply");
    client
}

/// `pgtrail follow --once`, streaming the slot on a replication connection.
pub(crate) async fn follow_once(client: &mut Client) -> pgtrail::follow::FollowReport {
    let replication = replication_of(client).await;
    follow_once_by(client, Some(replication)).await
}

/// `pgtrail follow --once`, reading the slot over SQL (peek, then advance).
pub(crate) async fn follow_once_over_sql(client: &mut Client) -> pgtrail::follow::FollowReport {
    follow_once_by(client, None).await
}

/// The actor of each recorded change of table `scratch`, in order.
async fn scratch_actors(client: &Client) -> Vec<Option<String>> {
    client
        .query(
            "SELECT actor_id FROM pgtrail.changes WHERE table_name = 'scratch' ORDER BY id",
            &[],
        )
        .await
        .expect("the trail reads")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn follow_once_by(
    client: &mut Client,
    replication: Option<pgtrail::follow::Replication>,
) -> pgtrail::follow::FollowReport {
    follow_once_with(client, replication, 50, true).await
}

/// `pgtrail follow --once` with `batch_size`; streaming, with `pipeline`
/// batches are written by the trail writer's connection while the next is
/// built, without it in turn on the follower's own.
async fn follow_once_with(
    client: &mut Client,
    replication: Option<pgtrail::follow::Replication>,
    batch_size: i32,
    pipeline: bool,
) -> pgtrail::follow::FollowReport {
    let options = FollowOptions {
        once: true,
        batch_size,
        replication,
        pipeline,
        ..FollowOptions::default()
    };
    pgtrail::follow::run(client, &options, std::future::pending())
        .await
        .expect("follow --once")
}

/// Where `client` is connected (TCP, trust), for a replication connection.
pub(crate) async fn replication_of(client: &Client) -> pgtrail::follow::Replication {
    let row = client
        .query_one(
            "SELECT host(inet_server_addr()), inet_server_port(), session_user::text, current_database()::text",
            &[],
        )
        .await
        .expect("the session's server");
    pgtrail::follow::Replication {
        host: row.get(0),
        port: u16::try_from(row.get::<_, i32>(1)).expect("a port"),
        user: row.get(2),
        password: None,
        database: row.get(3),
    }
}

/// The statements of one client's transaction `t`, drawn from `rng`. Each
/// client works on rows of its own, so that both databases end the same
/// whatever the interleaving.
fn transaction(rng: &mut StdRng, client: i32, t: i32) -> Vec<String> {
    let base = client * 1000;
    let request = format!("c{client}-t{t}");
    let mut out = vec!["BEGIN".to_string()];
    if rng.random_bool(0.7) {
        out.push(format!(
            "SELECT pgtrail.set_context(actor_id => '{client}', actor_name => 'user{client}@example.com', \
             actor_type => 'user', reason => 'story', extra => '{{\"request_id\": \"{request}\"}}')"
        ));
    } else {
        out.push(format!("SET LOCAL app.user_id = '{client}'"));
        out.push(format!("SET LOCAL pgtrail.request_id = '{request}'"));
    }
    let id = base + rng.random_range(0..12);
    let other = base + rng.random_range(0..12);
    for s in 0..rng.random_range(1..6) {
        if s == 2 && rng.random_bool(0.3) {
            out.push(format!(
                "SELECT pgtrail.set_context(actor_id => '{client}', reason => 'second', \
                 extra => '{{\"request_id\": \"{request}-2\"}}')"
            ));
        }
        let savepoint = rng.random_bool(0.2);
        if savepoint {
            out.push("SAVEPOINT s".into());
        }
        let statement = match rng.random_range(0..16) {
            0 | 1 => format!(
                "INSERT INTO accounts VALUES ({id}, 'o{t}', 'pw{t}', {}.{:02}, now(), 'short', ARRAY['a', 'b{t}'], \
                 DATE '2024-01-0{}') ON CONFLICT (id) DO NOTHING",
                rng.random_range(0..100),
                rng.random_range(0..100),
                rng.random_range(1..9)
            ),
            2 => format!("UPDATE accounts SET owner = 'o{t}-{s}', updated_at = now() WHERE id = {id}"),
            3 => format!("UPDATE accounts SET updated_at = now() WHERE id = {id}"),
            4 => format!(
                "UPDATE accounts SET balance = balance + 1.50 WHERE id BETWEEN {base} AND {}",
                base + 5
            ),
            // A TOASTed value (incompressible, over 2 kB), then another column updated.
            5 => format!(
                "UPDATE accounts SET doc = (SELECT string_agg(md5(i::text || '{t}'), '') FROM generate_series(1, 200) AS i) \
                 WHERE id = {id}"
            ),
            6 => format!("UPDATE accounts SET secret = 'pw{t}-{s}', seen = NULL WHERE id = {id}"),
            7 => format!(
                "UPDATE accounts SET id = {other} WHERE id = {id} AND NOT EXISTS (SELECT FROM accounts WHERE id = {other})"
            ),
            8 => format!("DELETE FROM accounts WHERE id = {id}"),
            9 => format!(
                "INSERT INTO pairs VALUES ({base}, {}, 'n{t}') ON CONFLICT DO NOTHING",
                rng.random_range(0..4)
            ),
            10 => {
                let b = rng.random_range(0..4);
                format!(
                    "UPDATE pairs SET b = b + 10 WHERE a = {base} AND b = {b} \
                     AND NOT EXISTS (SELECT FROM pairs WHERE a = {base} AND b = {b} + 10)"
                )
            }
            11 => format!("UPDATE pairs SET note = 'm{t}-{s}' WHERE a = {base}"),
            12 => format!(
                "INSERT INTO notes VALUES ('note {t}', {})",
                base + rng.random_range(0..3)
            ),
            13 => format!(
                "UPDATE notes SET body = body || '!' WHERE n = {}",
                base + rng.random_range(0..3)
            ),
            14 => format!(
                "INSERT INTO events VALUES ({}, {t}, 'e{s}') ON CONFLICT DO NOTHING",
                base * 5 + rng.random_range(0..3)
            ),
            _ => format!(
                "UPDATE events SET v = v || '+' WHERE id = {}",
                base * 5 + rng.random_range(0..3)
            ),
        };
        out.push(statement);
        if client == 0 && s == 0 && t % 7 == 3 {
            out.push(format!(
                "INSERT INTO scratch VALUES ({t}, 'x') ON CONFLICT DO NOTHING"
            ));
            out.push("TRUNCATE scratch".into());
        }
        if savepoint {
            out.push(if rng.random_bool(0.5) {
                "ROLLBACK TO SAVEPOINT s".into()
            } else {
                "RELEASE SAVEPOINT s".into()
            });
        }
    }
    out.push(if rng.random_bool(0.15) {
        "ROLLBACK".into()
    } else {
        "COMMIT".into()
    });
    out
}

/// One change as compared: everything but ids, transaction numbers and times.
type Compared = (
    String,
    String,
    String,
    Option<Value>,
    Option<Value>,
    Option<Value>,
    Option<Value>,
    Option<Vec<String>>,
    Vec<Option<String>>,
    Option<Value>,
);

async fn trail(client: &Client) -> BTreeMap<String, Vec<Compared>> {
    let rows = client
        .query(
            "SELECT coalesce(c.context ->> 'request_id', '?'), c.table_name, c.op, c.pk, o.old_pk, c.old_values,
                    c.new_values, c.changed_fields,
                    ARRAY[c.actor_id, c.actor_name, c.actor_type, c.reason, c.db_user, c.application_name,
                          host(c.client_addr)],
                    c.context
             FROM pgtrail.changes AS c JOIN pgtrail.change AS o ON o.id = c.id
             ORDER BY c.id",
            &[],
        )
        .await
        .expect("the trail reads");
    let mut out: BTreeMap<String, Vec<Compared>> = BTreeMap::new();
    for r in rows {
        let request: String = r.get(0);
        out.entry(request.clone()).or_default().push((
            request,
            r.get(1),
            r.get(2),
            r.get(3),
            r.get(4),
            r.get(5),
            r.get(6),
            r.get(7),
            r.get(8),
            r.get(9),
        ));
    }
    out
}

#[tokio::test]
async fn one_workload_writes_the_same_trail_in_trigger_and_wal_mode() {
    let cluster = logical_cluster();
    let trig = database(&cluster, "shop_trigger", "trigger").await;
    let mut wal = database(&cluster, "shop_wal", "wal").await;
    // Redaction markers are keyed by each trail's own secret: one secret for
    // both, so that equal values give equal markers.
    let secret: Vec<u8> = trig
        .query_one("SELECT value FROM pgtrail.secret WHERE name = 'redaction'", &[])
        .await
        .expect("secret")
        .get(0);
    wal.execute(
        "UPDATE pgtrail.secret SET value = $1 WHERE name = 'redaction'",
        &[&secret],
    )
    .await
    .expect("same secret");
    drop(trig);

    // A fixed workload by default (one that holds every kind of change the
    // comparison must cover); PGTRAIL_WAL_SEED=<n> runs another, "random" a
    // new one.
    let seed: u64 = match std::env::var("PGTRAIL_WAL_SEED").ok().as_deref() {
        None => 20261205,
        Some("random") => rand::rng().random(),
        Some(n) => n.parse().expect("PGTRAIL_WAL_SEED: a number or \"random\""),
    };
    eprintln!("workload seed {seed}");
    let mut clients = Vec::new();
    for c in 0..3 {
        let (url_t, url_w) = (cluster.url("shop_trigger"), cluster.url("shop_wal"));
        clients.push(tokio::spawn(async move {
            let (a, b) = (connect_to(&url_t).await, connect_to(&url_w).await);
            let mut rng = StdRng::seed_from_u64(seed.wrapping_add(c as u64));
            for t in 0..30 {
                for statement in transaction(&mut rng, c, t) {
                    a.batch_execute(&statement)
                        .await
                        .unwrap_or_else(|e| panic!("{statement}: {e:?}"));
                    b.batch_execute(&statement)
                        .await
                        .unwrap_or_else(|e| panic!("{statement}: {e:?}"));
                }
            }
        }));
    }
    // The follower runs while they work, and drains at the end; one of
    // its runs reads the slot over SQL (the two ways take turns without
    // losing or repeating anything).
    let mut written = 0;
    for round in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        written += if round == 1 {
            follow_once_over_sql(&mut wal).await.changes
        } else {
            follow_once(&mut wal).await.changes
        };
    }
    for client in clients {
        client.await.expect("client finished");
    }
    written += follow_once(&mut wal).await.changes;

    let trig = connect_to(&cluster.url("shop_trigger")).await;
    let expected = trail(&trig).await;
    let got = trail(&wal).await;
    let total: usize = expected.values().map(Vec::len).sum();
    assert!(total > 100, "the workload recorded {total} changes");
    assert_eq!(written as usize, total, "the follower reports what it wrote");
    // Every transaction's first change followed its signed context message
    // (savepoints rolled back, several contexts, keyless tables alike).
    let unsigned: i64 = wal
        .query_one("SELECT count(*) FROM pgtrail.wal_unsigned", &[])
        .await
        .expect("pgtrail.wal_unsigned reads")
        .get(0);
    assert_eq!(
        unsigned, 0,
        "no transaction of the workload is flagged as unsigned"
    );
    for (request, changes) in &expected {
        assert_eq!(
            got.get(request),
            Some(changes),
            "transaction {request} (seed {seed})"
        );
    }
    assert_eq!(got.len(), expected.len(), "seed {seed}");
    // Every kind of change is in the comparison.
    let ops: std::collections::BTreeSet<(String, String)> = expected
        .values()
        .flatten()
        .map(|c| (c.1.clone(), c.2.clone()))
        .collect();
    for needed in [
        ("accounts", "UPDATE"),
        ("accounts", "DELETE"),
        ("notes", "UPDATE"),
        ("pairs", "UPDATE"),
        ("events", "INSERT"),
        ("scratch", "TRUNCATE"),
    ] {
        assert!(
            ops.contains(&(needed.0.to_string(), needed.1.to_string())),
            "{needed:?} in {ops:?}"
        );
    }
    assert!(
        expected.values().flatten().any(|c| c.4.is_some()),
        "a key change was recorded"
    );

    // The queries answer the same on both trails.
    for client in [&trig, &wal] {
        let mismatched: i64 = client
            .query_one(
                "SELECT count(*) FROM accounts AS a
                 WHERE pgtrail.row_as_of('accounts', jsonb_build_object('id', a.id), now())
                       IS DISTINCT FROM (to_jsonb(a) - 'updated_at'
                           || jsonb_build_object('secret', pgtrail.row_as_of('accounts', jsonb_build_object('id', a.id), now()) -> 'secret'))",
                &[],
            )
            .await
            .expect("row_as_of")
            .get(0);
        assert_eq!(mismatched, 0, "row_as_of gives every live row");
    }
    let histories =
        "SELECT a.id, (SELECT count(*) FROM pgtrail.history('accounts', jsonb_build_object('id', a.id)))
                     FROM accounts AS a ORDER BY a.id";
    let of = |rows: Vec<tokio_postgres::Row>| {
        rows.iter()
            .map(|r| (r.get::<_, i32>(0), r.get::<_, i64>(1)))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        of(wal.query(histories, &[]).await.expect("history")),
        of(trig.query(histories, &[]).await.expect("history"))
    );

    // Seal and verify a WAL-mode trail.
    let key = SignerKey::generate("wal.example.com/audit").expect("key");
    let sealed = integrity::seal(&mut wal, &key, &mut |_| {}).await.expect("seal");
    assert_eq!(sealed.appended as usize, total);
    let report = integrity::verify(
        &mut wal,
        &VerifyOptions {
            public_key: Some(key.verifier()),
            checkpoint: Some(sealed.note),
            ..Default::default()
        },
    )
    .await
    .expect("verify");
    assert!(report.intact(), "{:?}", report.problems);

    // check: clean, and the slot drained.
    let config = Config::parse(&config("wal"), "pgtrail.toml").expect("config");
    let (_, _, installed, problems) = pgtrail::plan::inspect(&wal, &config).await.expect("inspect");
    assert!(problems.is_empty(), "{problems:?}");
    assert!(installed.wal.slot.is_some());
}

#[tokio::test]
async fn switching_a_table_between_modes_under_load_loses_and_repeats_nothing() {
    let cluster = logical_cluster();
    let admin = connect_to(&cluster.url("postgres")).await;
    admin
        .batch_execute("CREATE DATABASE switching")
        .await
        .expect("database");
    let mut client = connect_to(&cluster.url("switching")).await;
    client
        .batch_execute("CREATE TABLE t (id integer PRIMARY KEY, n integer)")
        .await
        .expect("schema");
    let mode =
        |m: &str| Config::parse(&format!("[capture]\nmode = \"{m}\"\n"), "pgtrail.toml").expect("config");
    pgtrail::plan::apply(&mut client, &mode("trigger"))
        .await
        .expect("apply");

    const N: i32 = 600;
    let url = cluster.url("switching");
    let writer = tokio::spawn(async move {
        let client = connect_to(&url).await;
        for i in 1..=N {
            client
                .batch_execute(&format!(
                    "BEGIN; SELECT pgtrail.set_context(actor_id => '{i}');
                     INSERT INTO t VALUES ({i}, 0); UPDATE t SET n = n + 1 WHERE id = {i} - 1; COMMIT;"
                ))
                .await
                .expect("a write");
        }
    });
    let mut switches = 0;
    while !writer.is_finished() || switches < 4 {
        let next = if switches % 2 == 0 { "wal" } else { "trigger" };
        pgtrail::plan::apply(&mut client, &mode(next))
            .await
            .expect("switch");
        follow_once(&mut client).await;
        switches += 1;
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    writer.await.expect("the writer finished");
    follow_once(&mut client).await;

    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE op = 'INSERT'), count(*) FILTER (WHERE op = 'UPDATE'),
                    count(*) - count(DISTINCT (op, pk)), count(*) FILTER (WHERE actor_id IS NULL)
             FROM pgtrail.changes",
            &[],
        )
        .await
        .expect("the trail reads");
    let counts: (i64, i64, i64, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(
        counts,
        (i64::from(N), i64::from(N) - 1, 0, 0),
        "after {switches} switches"
    );
}

#[tokio::test]
async fn apply_says_what_to_do_when_the_server_does_not_decode_logically() {
    let mut db = pgtrail_testkit::TestDb::new().await;
    let level: String = db
        .client
        .query_one("SHOW wal_level", &[])
        .await
        .expect("wal_level")
        .get(0);
    if level == "logical" {
        eprintln!("skipped: the shared test server already runs with wal_level = logical");
        return;
    }
    db.client
        .batch_execute("CREATE TABLE t (id integer PRIMARY KEY)")
        .await
        .expect("schema");
    let config = Config::parse("[capture]\nmode = \"wal\"\n", "pgtrail.toml").expect("config");
    let error = pgtrail::plan::apply(&mut db.client, &config)
        .await
        .expect_err("WAL mode needs wal_level = logical");
    let message = error.to_string();
    assert!(
        message.contains("wal_level = logical") && message.contains("ALTER SYSTEM"),
        "{message}"
    );
    let installed: bool = db
        .client
        .query_one("SELECT to_regclass('pgtrail.change') IS NOT NULL", &[])
        .await
        .expect("look")
        .get(0);
    assert!(!installed, "nothing was installed");
}

#[tokio::test]
async fn check_reports_a_follower_that_falls_behind_and_a_missing_slot() {
    let cluster = logical_cluster();
    let mut client = connect_to(&cluster.url("postgres")).await;
    client
        .batch_execute("CREATE TABLE t (id integer PRIMARY KEY, v text)")
        .await
        .expect("schema");
    let config = Config::parse(
        "[capture]\nmode = \"wal\"\nwal_max_lag_bytes = 200000\n",
        "pgtrail.toml",
    )
    .expect("config");
    pgtrail::plan::apply(&mut client, &config).await.expect("apply");
    follow_once(&mut client).await;
    let kinds = |problems: &[pgtrail::plan::Problem]| problems.iter().map(|p| p.kind()).collect::<Vec<_>>();
    let (_, _, _, problems) = pgtrail::plan::inspect(&client, &config).await.expect("inspect");
    assert_eq!(kinds(&problems), Vec::<&str>::new());

    client
        .batch_execute("INSERT INTO t SELECT i, repeat('x', 100) FROM generate_series(1, 5000) AS i")
        .await
        .expect("writes");
    let (_, _, installed, problems) = pgtrail::plan::inspect(&client, &config).await.expect("inspect");
    assert_eq!(kinds(&problems), vec!["wal_slot_behind"], "{problems:?}");
    let slot = installed.wal.slot.expect("the slot");
    assert!(
        !slot.active && slot.lag_bytes > 200000 && slot.retained_bytes >= slot.lag_bytes,
        "{slot:?}"
    );
    assert!(
        problems[0].to_string().contains("start pgtrail follow"),
        "{}",
        problems[0]
    );

    assert_eq!(follow_once(&mut client).await.changes, 5000);
    let (_, _, _, problems) = pgtrail::plan::inspect(&client, &config).await.expect("inspect");
    assert_eq!(kinds(&problems), Vec::<&str>::new());

    let slot_name = installed.wal.slot_name;
    client
        .execute("SELECT pg_drop_replication_slot($1)", &[&slot_name])
        .await
        .expect("slot dropped");
    let (_, _, _, problems) = pgtrail::plan::inspect(&client, &config).await.expect("inspect");
    assert_eq!(kinds(&problems), vec!["wal_slot_missing"]);
    // apply creates it again.
    pgtrail::plan::apply(&mut client, &config).await.expect("apply");
    let (_, _, _, problems) = pgtrail::plan::inspect(&client, &config).await.expect("inspect");
    assert_eq!(kinds(&problems), Vec::<&str>::new());
}

/// The follower computes keys, diffs and redaction markers itself: values
/// whose JSON text is easy to get wrong (escapes, control characters,
/// non-ASCII, numbers whose scale changes, nested JSON, arrays), a table
/// without a key whose markers are scoped by its other columns, and a table
/// recording whole rows give the same trail in both modes. So do the types
/// the follower turns into JSON itself (`char(n)`, `uuid`, `numeric`,
/// `jsonb`, dates and timestamps), and those same types holding values it
/// leaves to the server (infinities, years BC or past 9999).
#[tokio::test]
async fn values_that_are_hard_to_write_as_json_give_the_same_trail_in_both_modes() {
    const ODD: &str = r#"
        CREATE TABLE docs (id integer PRIMARY KEY, title text, body jsonb, amount numeric, tags text[],
                           secret text, at timestamptz, flag boolean, raw bytea, f double precision);
        CREATE TABLE loose (label text, secret text, n numeric);
        CREATE TABLE whole (k1 text, k2 integer, v text, w numeric, PRIMARY KEY (k1, k2));
        CREATE TABLE kinds (id integer PRIMARY KEY, c char(5), u uuid, d date, ts timestamp(3),
                            tz timestamptz, n numeric, j jsonb);
        CREATE TABLE far (id integer PRIMARY KEY, c char(2), d date, ts timestamp, tz timestamptz,
                          n numeric, j jsonb);
    "#;
    let config = |mode: &str| {
        format!(
            "[capture]\nmode = \"{mode}\"\nredact_columns = [\"secret\"]\n\n[tables.\"public.whole\"]\nimages = \"full\"\n"
        )
    };
    let statements = [
        r#"INSERT INTO docs VALUES (1, E'quote " backslash \\ tab \t newline \n bell \x07', '{"b": [1.50, {"é": null}], "a": "ü"}',
                                  1.50, ARRAY['x,y', 'z"w', NULL], E'sé\ncret', '2026-12-06 01:02:03.456789+00', true, '\x00ff', 1.5e300)"#,
        r#"UPDATE docs SET amount = 1.500 WHERE id = 1"#,
        r#"UPDATE docs SET body = '{"a": "ü", "b": [1.5, {"é": null}]}' WHERE id = 1"#,
        r#"UPDATE docs SET body = '{"a": "ü", "b": [1.6, {"é": null}]}', secret = 'other 😀' WHERE id = 1"#,
        r#"UPDATE docs SET id = 2, title = E'\u00e9\u4e2d' WHERE id = 1"#,
        r#"INSERT INTO loose VALUES (E'a"b\\c', 's1', 10), ('line' || chr(10) || 'two', NULL, -0.0), ('same', 's2', 1)"#,
        r#"UPDATE loose SET n = n + 1, secret = 'changed' WHERE label = 'same'"#,
        r#"UPDATE loose SET secret = 's3' WHERE n = 10"#,
        r#"DELETE FROM loose WHERE n = 0"#,
        r#"INSERT INTO whole VALUES ('a', 1, 'x', 2.0), ('b', 2, E'\\', 3)"#,
        r#"UPDATE whole SET w = 2.00 WHERE k1 = 'a'"#,
        r#"UPDATE whole SET k2 = 3, v = 'y' WHERE k1 = 'b'"#,
        r#"DELETE FROM whole WHERE k1 = 'a'"#,
        r#"INSERT INTO kinds VALUES (1, 'ab', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '2026-12-06',
                                   '2026-12-06 01:02:03.4567', '2026-12-06 01:02:03+05:30', 'NaN', '{"a": 1.50, "b": "\u00e9"}'),
                                  (2, NULL, NULL, '0001-01-01', '9999-12-31 23:59:59', '1850-01-01 00:00:00+00:19:32',
                                   '-12345678901234567890.000', '[1e2, -0, "x"]')"#,
        r#"UPDATE kinds SET c = 'ab ', n = 2.50 WHERE id = 1"#,
        r#"UPDATE kinds SET ts = '2026-12-07', tz = tz + interval '1 microsecond', j = '{"a": 1.5, "b": "é"}' WHERE id = 1"#,
        r#"INSERT INTO far VALUES (1, 'a', 'infinity', '0044-03-15 12:00:00 BC', '-infinity', 'Infinity', '{"deep": [[[[1]]]]}'),
                                (2, 'bb', '10000-01-01', '2026-12-06 01:02:03', '2026-12-06 01:02:03+00', '-0.5', 'null')"#,
        r#"UPDATE far SET d = '2026-12-06', n = 'NaN' WHERE id = 1"#,
    ];
    let cluster = logical_cluster();
    let admin = connect_to(&cluster.url("postgres")).await;
    let mut trails = Vec::new();
    let mut secret: Option<Vec<u8>> = None;
    for mode in ["trigger", "wal"] {
        let name = format!("odd_{mode}");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("database created");
        let mut client = connect_to(&cluster.url(&name)).await;
        client.batch_execute(ODD).await.expect("schema");
        let parsed = Config::parse(&config(mode), "pgtrail.toml").expect("config parses");
        pgtrail::plan::apply(&mut client, &parsed).await.expect("apply");
        match &secret {
            None => {
                secret = Some(
                    client
                        .query_one("SELECT value FROM pgtrail.secret WHERE name = 'redaction'", &[])
                        .await
                        .expect("secret")
                        .get(0),
                )
            }
            Some(value) => {
                client
                    .execute(
                        "UPDATE pgtrail.secret SET value = $1 WHERE name = 'redaction'",
                        &[value],
                    )
                    .await
                    .expect("same secret");
            }
        }
        for statement in statements {
            client
                .batch_execute(statement)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e:?}"));
        }
        if mode == "wal" {
            follow_once(&mut client).await;
        }
        let rows = client
            .query(
                "SELECT c.table_name, c.op, c.pk::text, o.old_pk::text, c.old_values::text, c.new_values::text,
                        c.changed_fields
                 FROM pgtrail.changes AS c JOIN pgtrail.change AS o ON o.id = c.id ORDER BY c.id",
                &[],
            )
            .await
            .expect("the trail reads");
        let trail: Vec<Vec<Option<String>>> = rows
            .iter()
            .map(|r| {
                let mut row: Vec<Option<String>> = (0..6).map(|i| r.get(i)).collect();
                row.push(r.get::<_, Option<Vec<String>>>(6).map(|f| f.join("|")));
                row
            })
            .collect();
        trails.push(trail);
    }
    assert_eq!(trails[0].len(), 23, "{:#?}", trails[0]);
    for (i, (trigger, wal)) in trails[0].iter().zip(&trails[1]).enumerate() {
        assert_eq!(wal, trigger, "change {i}");
    }
    assert_eq!(trails[1].len(), trails[0].len());
}

/// Floats, `bytea`, `json`, arrays, intervals and times (which the
/// follower turns into JSON itself) give the same trail in both modes,
/// edge values included: NaN, the infinities, -0, shortest and longest
/// float digits, `json` with duplicate keys, white space and escapes,
/// arrays with NULLs, several dimensions and lower bounds other than 1,
/// arrays holding a value the server converts (an infinite date), and
/// names, network and MAC addresses and bit strings (strings in both).
#[tokio::test]
async fn floats_bytea_json_arrays_and_times_give_the_same_trail_in_both_modes() {
    const TYPES: &str = r#"
        CREATE TABLE typed (id integer PRIMARY KEY, f8 double precision, f4 real, b bytea, j json,
                            ia integer[], ta text[], fa float8[], ja json[], da date[], na numeric[],
                            iv interval, tm time(3), tz timetz, nm name, ip inet, mac macaddr, vb varbit,
                            ipa inet[]);
    "#;
    let statements = [
        r#"INSERT INTO typed VALUES
             (1, 0.1, 1.1, '\x00ff', '{"b": 1, "a": [1e2, -0.0, "\u00e9"], "b": {"z": null}}',
              '{1,NULL,3}', ARRAY['x,y', 'z"w', NULL, 'NULL', ''], '{NaN,-0,1e300,5e-324}',
              ARRAY['{"k": 1, "k": 2}'::json, NULL, ' [ ] '], '{2026-12-06,NULL}', '{1.50,NaN,-0}',
              '1 year 2 mons -3 days 04:05:06.789', '13:21:27.1234', '13:21:27+05:30'),
             (2, 'NaN', 'Infinity', '', 'null', '[0:1]={7,8}', '{{a,b},{c,NULL}}', '{}', '{}', '{infinity}',
              '[-1:-1]={Infinity}', '-178000000 years', '24:00', '00:00-15:59'),
             (3, '-Infinity', '-0', NULL, '"\ud83e\udd80 \\ \/ \n"', NULL, NULL, NULL, NULL, NULL, NULL,
              NULL, NULL, NULL)"#,
        r#"UPDATE typed SET f8 = 1.7976931348623157e308, f4 = 3.4028235e38, b = '\x', iv = iv + interval '1 microsecond' WHERE id = 1"#,
        r#"UPDATE typed SET j = '{"b": 1, "a": [100, 0, "é"], "b": {"z": null}}' WHERE id = 1"#,
        r#"UPDATE typed SET j = '[1.0, 1e-3, {"": ""}]', ia = '[2:3]={7,8}', da = '{-infinity,2026-12-07}' WHERE id = 2"#,
        r#"UPDATE typed SET id = 4, f8 = 123456789012345680000, tz = '12:00:00.5-03:30' WHERE id = 3"#,
        r#"UPDATE typed SET nm = 'Order "Items"', ip = '10.1.2.3/24', mac = '08:00:2b:01:02:03', vb = '1011',
                            ipa = '{::1,NULL,192.168.0.0/16}' WHERE id IN (1, 2)"#,
        r#"DELETE FROM typed WHERE id = 1"#,
    ];
    let cluster = logical_cluster();
    let admin = connect_to(&cluster.url("postgres")).await;
    let mut trails = Vec::new();
    for mode in ["trigger", "wal"] {
        let name = format!("typed_{mode}");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("database created");
        let mut client = connect_to(&cluster.url(&name)).await;
        client.batch_execute(TYPES).await.expect("schema");
        let parsed =
            Config::parse(&format!("[capture]\nmode = \"{mode}\"\n"), "pgtrail.toml").expect("config parses");
        pgtrail::plan::apply(&mut client, &parsed).await.expect("apply");
        for statement in statements {
            client
                .batch_execute(statement)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e:?}"));
        }
        if mode == "wal" {
            follow_once(&mut client).await;
        }
        let rows = client
            .query(
                "SELECT c.op, c.pk::text, o.old_pk::text, c.old_values::text, c.new_values::text
                 FROM pgtrail.changes AS c JOIN pgtrail.change AS o ON o.id = c.id ORDER BY c.id",
                &[],
            )
            .await
            .expect("the trail reads");
        let trail: Vec<Vec<Option<String>>> =
            rows.iter().map(|r| (0..5).map(|i| r.get(i)).collect()).collect();
        trails.push(trail);
    }
    assert_eq!(trails[0].len(), 10, "{:#?}", trails[0]);
    for (i, (trigger, wal)) in trails[0].iter().zip(&trails[1]).enumerate() {
        assert_eq!(wal, trigger, "change {i}");
    }
    assert_eq!(trails[1].len(), trails[0].len());
}

/// A WAL-mode table's context message is emitted once per transaction and
/// context: later statements find it emitted without calling the function
/// that builds it, a new `set_context` emits again, a savepoint rolled back
/// takes its message back, and the next transaction on the same connection
/// starts with none.
#[tokio::test]
async fn the_context_message_is_built_once_per_transaction_and_context() {
    let cluster = logical_cluster();
    let mut client = database(&cluster, "context_once", "wal").await;
    client
        .batch_execute("SET track_functions = 'pl'")
        .await
        .expect("function calls counted");
    let count = "SELECT coalesce((SELECT calls FROM pg_stat_xact_user_functions
                                  WHERE schemaname = 'pgtrail' AND funcname = '_wal_emit'), 0)";
    let mut seen = Vec::new();
    for step in [
        "BEGIN",
        "INSERT INTO scratch VALUES (1, 'a')",
        "INSERT INTO scratch VALUES (2, 'a')",
        "SELECT pgtrail.set_context(actor_id => 'alice')",
        "UPDATE scratch SET v = 'b' WHERE id = 1",
        "UPDATE scratch SET v = 'b' WHERE id = 2",
        "SAVEPOINT s",
        "SELECT pgtrail.set_context(actor_id => 'mallory')",
        "UPDATE scratch SET v = 'x' WHERE id = 1",
        "ROLLBACK TO SAVEPOINT s",
        "UPDATE scratch SET v = 'c' WHERE id = 2",
    ] {
        client
            .batch_execute(step)
            .await
            .unwrap_or_else(|e| panic!("{step}: {e:?}"));
        if step.starts_with("INSERT") || step.starts_with("UPDATE") {
            seen.push(
                client
                    .query_one(count, &[])
                    .await
                    .expect("calls")
                    .get::<_, i64>(0),
            );
        }
    }
    client.batch_execute("COMMIT").await.expect("commit");
    client
        .batch_execute("INSERT INTO scratch VALUES (3, 'd')")
        .await
        .expect("a transaction of its own");
    // Messages built after each write: the first, then alice's, then mallory's.
    assert_eq!(seen, vec![1, 1, 2, 2, 3, 3]);
    follow_once(&mut client).await;
    let rows = client
        .query(
            "SELECT pk ->> 'id', op, actor_id FROM pgtrail.changes WHERE table_name = 'scratch' ORDER BY id",
            &[],
        )
        .await
        .expect("the trail reads");
    let trail: Vec<(Option<String>, String, Option<String>)> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    let change = |id: &str, op: &str, actor: Option<&str>| {
        (Some(id.to_string()), op.to_string(), actor.map(str::to_string))
    };
    assert_eq!(
        trail,
        vec![
            change("1", "INSERT", None),
            change("2", "INSERT", None),
            change("1", "UPDATE", Some("alice")),
            change("2", "UPDATE", Some("alice")),
            change("2", "UPDATE", Some("alice")),
            change("3", "INSERT", None),
        ]
    );
}

/// A WAL-mode table attached by 0.6.0 keeps its context trigger; applying
/// this pgtrail replaces the function it calls, and the trail keeps its
/// context, built once per transaction.
#[tokio::test]
async fn a_context_trigger_made_by_0_6_0_emits_once_after_the_upgrade() {
    let cluster = logical_cluster();
    let admin = connect_to(&cluster.url("postgres")).await;
    admin
        .batch_execute("CREATE DATABASE context_upgrade")
        .await
        .expect("database created");
    let mut client = connect_to(&cluster.url("context_upgrade")).await;
    let released = include_str!("../../../capture/sql/released/0.6.0.sql");
    client
        .batch_execute(&format!(
            "CREATE TABLE scratch (id integer PRIMARY KEY, v text);
             BEGIN; {released} COMMIT;
             SELECT pgtrail.attach('scratch', '{{id}}', 'primary_key', p_mode => 'wal');"
        ))
        .await
        .expect("0.6.0 installs and attaches in WAL mode");
    let config = Config::parse("[capture]\nmode = \"wal\"\n", "pgtrail.toml").expect("config parses");
    pgtrail::plan::apply(&mut client, &config).await.expect("apply");
    client
        .batch_execute(
            "SET track_functions = 'pl';
             BEGIN;
             SELECT pgtrail.set_context(actor_id => 'ann');
             INSERT INTO scratch VALUES (1, 'a');
             INSERT INTO scratch VALUES (2, 'b');",
        )
        .await
        .expect("writes");
    let built: i64 = client
        .query_one(
            "SELECT coalesce((SELECT calls FROM pg_stat_xact_user_functions
                              WHERE schemaname = 'pgtrail' AND funcname = '_wal_emit'), 0)",
            &[],
        )
        .await
        .expect("calls")
        .get(0);
    assert_eq!(built, 1, "one message for the two statements");
    client.batch_execute("COMMIT").await.expect("commit");
    let gaps: i64 = client
        .query_one("SELECT count(*) FROM pgtrail.capture_gaps", &[])
        .await
        .expect("gaps")
        .get(0);
    assert_eq!(gaps, 0);
    follow_once(&mut client).await;
    let actors = scratch_actors(&client).await;
    assert_eq!(actors, vec![Some("ann".to_string()), Some("ann".to_string())]);
}

/// Any role may set any `pgtrail.*` setting. The marks capture leaves for
/// "this transaction's context is recorded" (`pgtrail.recorded` in trigger
/// mode, `pgtrail.emitted` in WAL mode) name the transaction, so a mark set
/// for the whole session (by `SET`, a role's or a connection string's
/// settings) matches none of the transactions that follow: each still has its
/// session facts (database user, backend) in the trail. And a mark lost or
/// changed within a transaction (`RESET ALL`, a `SET`) never makes a write
/// fail: each context is recorded once, as it was first.
#[tokio::test]
async fn a_session_wide_mark_cannot_keep_the_session_facts_out_of_the_trail() {
    let cluster = logical_cluster();
    for mode in ["trigger", "wal"] {
        let mut client = database(&cluster, &format!("forged_mark_{mode}"), mode).await;
        // What the marks were before they named the transaction, and what
        // they would be in a transaction without an id; each statement its
        // own transaction (one message of several would be one transaction).
        for statement in [
            "SET pgtrail.recorded = '0'",
            "SET pgtrail.emitted = 'c'",
            "INSERT INTO scratch VALUES (1, 'a')",
            "UPDATE scratch SET v = 'b' WHERE id = 1",
            "SET pgtrail.recorded = '0:0'",
            "SET pgtrail.emitted = 'c:'",
            "UPDATE scratch SET v = 'c' WHERE id = 1",
            "RESET pgtrail.recorded",
            "RESET pgtrail.emitted",
        ] {
            client
                .batch_execute(statement)
                .await
                .unwrap_or_else(|e| panic!("{mode}: {statement}: {e:?}"));
        }
        client
            .batch_execute(
                "BEGIN;
                 SELECT pgtrail.set_context(actor_id => 'ann');
                 UPDATE scratch SET v = 'd' WHERE id = 1;
                 RESET ALL;
                 UPDATE scratch SET v = 'e' WHERE id = 1;
                 SET LOCAL pgtrail.recorded = 'x';
                 SET LOCAL pgtrail.emitted = 'x';
                 UPDATE scratch SET v = 'f' WHERE id = 1;
                 COMMIT;",
            )
            .await
            .unwrap_or_else(|e| panic!("{mode}: a lost mark never fails a write: {e:?}"));
        if mode == "wal" {
            follow_once(&mut client).await;
        }
        let actors = scratch_actors(&client).await;
        // (RESET ALL resets set_context's settings too: no actor after it.)
        assert_eq!(
            actors,
            vec![None, None, None, Some("ann".to_string()), None, None],
            "{mode} mode: each context as it was first recorded"
        );
        let rows = client
            .query(
                "SELECT v.op, v.db_user, x.backend_pid = pg_backend_pid()
                 FROM pgtrail.changes AS v JOIN pgtrail.change AS c ON c.id = v.id
                 LEFT JOIN pgtrail.transaction AS x ON x.txid = c.txid AND x.ctx = c.ctx
                 WHERE v.table_name = 'scratch' ORDER BY v.id",
                &[],
            )
            .await
            .expect("the trail reads");
        let trail: Vec<(String, Option<String>, Option<bool>)> =
            rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
        let user: String = client
            .query_one("SELECT session_user::text", &[])
            .await
            .expect("session user")
            .get(0);
        let facts = |op: &str| (op.to_string(), Some(user.clone()), Some(true));
        assert_eq!(
            trail,
            vec![
                facts("INSERT"),
                facts("UPDATE"),
                facts("UPDATE"),
                facts("UPDATE"),
                facts("UPDATE"),
                facts("UPDATE")
            ],
            "{mode} mode: every transaction's session facts are recorded"
        );
    }
}

/// A function that sets the context and writes a WAL-mode table in one
/// autocommit statement used its context: the commit check of
/// `set_context` lets it commit, even with `outside_transaction =
/// "refuse"` (it used to look only for trigger mode's mark, which WAL mode
/// never sets, and refused the write); `set_context` alone is still refused.
#[tokio::test]
async fn a_context_set_and_used_in_one_autocommit_statement_is_not_refused_in_wal_mode() {
    let cluster = logical_cluster();
    let admin = connect_to(&cluster.url("postgres")).await;
    admin
        .batch_execute("CREATE DATABASE context_used")
        .await
        .expect("database created");
    let mut client = connect_to(&cluster.url("context_used")).await;
    client.batch_execute(SCHEMA).await.expect("schema");
    let toml = format!("{}outside_transaction = \"refuse\"\n", config("wal"));
    let config = Config::parse(&toml, "pgtrail.toml").expect("config parses");
    pgtrail::plan::apply(&mut client, &config).await.expect("apply");
    client
        .batch_execute(
            "CREATE FUNCTION signup(p_id integer) RETURNS void LANGUAGE plpgsql AS $$
             BEGIN PERFORM pgtrail.set_context(actor_id => 'ann'); INSERT INTO scratch VALUES (p_id, 'new'); END $$;",
        )
        .await
        .expect("function created");
    client
        .execute("SELECT signup($1)", &[&1i32])
        .await
        .expect("the context was used in its own statement: not refused");
    let refused = client
        .execute("SELECT pgtrail.set_context(actor_id => $1)", &[&"bob"])
        .await
        .expect_err("a context set for nothing is refused");
    assert_eq!(
        refused.as_db_error().map(|e| e.code().code()),
        Some("25P01"),
        "{refused:?}"
    );
    follow_once(&mut client).await;
    let actors = scratch_actors(&client).await;
    assert_eq!(actors, vec![Some("ann".to_string())]);
}

/// The streaming follower hands each batch to its trail writer (a second
/// connection) and builds the next meanwhile: with batches of one
/// transaction, many are in flight at once. The trail must be the one a
/// follower writing each batch in turn writes, change by change, and the
/// writer's connection gone when the follower ends.
#[tokio::test]
async fn a_follower_writing_batches_while_it_builds_the_next_writes_the_same_trail() {
    let cluster = logical_cluster();
    let mut piped = database(&cluster, "piped_wal", "wal").await;
    let mut serial = database(&cluster, "serial_wal", "wal").await;
    let secret: Vec<u8> = piped
        .query_one("SELECT value FROM pgtrail.secret WHERE name = 'redaction'", &[])
        .await
        .expect("secret")
        .get(0);
    serial
        .execute(
            "UPDATE pgtrail.secret SET value = $1 WHERE name = 'redaction'",
            &[&secret],
        )
        .await
        .expect("same secret");
    let mut clients = Vec::new();
    for c in 0..3 {
        let (url_p, url_s) = (cluster.url("piped_wal"), cluster.url("serial_wal"));
        clients.push(tokio::spawn(async move {
            let (a, b) = (connect_to(&url_p).await, connect_to(&url_s).await);
            let mut rng = StdRng::seed_from_u64(20261206_u64.wrapping_add(c as u64));
            for t in 0..30 {
                for statement in transaction(&mut rng, c, t) {
                    a.batch_execute(&statement)
                        .await
                        .unwrap_or_else(|e| panic!("{statement}: {e:?}"));
                    b.batch_execute(&statement)
                        .await
                        .unwrap_or_else(|e| panic!("{statement}: {e:?}"));
                }
            }
        }));
    }
    // The pipelined follower runs while they work, and drains at the end.
    let mut written = 0;
    for _ in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let replication = replication_of(&piped).await;
        written += follow_once_with(&mut piped, Some(replication), 1, true)
            .await
            .changes;
    }
    for client in clients {
        client.await.expect("client finished");
    }
    let replication = replication_of(&piped).await;
    written += follow_once_with(&mut piped, Some(replication), 1, true)
        .await
        .changes;
    let replication = replication_of(&serial).await;
    let in_turn = follow_once_with(&mut serial, Some(replication), 50, false).await;

    let expected = trail(&serial).await;
    let got = trail(&piped).await;
    let total: usize = expected.values().map(Vec::len).sum();
    assert!(total > 100, "the workload recorded {total} changes");
    assert_eq!(in_turn.changes as usize, total);
    assert_eq!(
        written as usize, total,
        "the pipelined follower reports what it wrote"
    );
    assert_eq!(got, expected);

    // Every transaction once, in commit order, and the stored position is
    // where the slot stands.
    let (transactions, ordered): (i64, bool) = {
        let row = piped
            .query_one(
                "SELECT count(*), coalesce(bool_and(g.at >= g.before), true) FROM (
                     SELECT min(c.changed_at) AS at,
                            lag(min(c.changed_at)) OVER (ORDER BY min(c.id)) AS before
                     FROM pgtrail.change AS c GROUP BY c.txid) AS g",
                &[],
            )
            .await
            .expect("transactions");
        (row.get(0), row.get(1))
    };
    assert!(transactions > 30, "{transactions} transactions");
    assert!(
        ordered,
        "each transaction's rows come after those of the transactions committed before it"
    );
    let (stored, confirmed): (String, String) = {
        let row = piped
            .query_one(
                "SELECT f.lsn::text, s.confirmed_flush_lsn::text
                 FROM pgtrail.follow_position AS f JOIN pg_replication_slots AS s ON s.slot_name = f.slot",
                &[],
            )
            .await
            .expect("positions");
        (row.get(0), row.get(1))
    };
    let behind: bool = piped
        .query_one(
            "SELECT $1::text::pg_lsn <= $2::text::pg_lsn",
            &[&stored, &confirmed],
        )
        .await
        .expect("compared")
        .get(0);
    assert!(
        behind,
        "the slot stands at or past the stored position ({stored}, {confirmed})"
    );
    let writers: i64 = piped
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&pgtrail::follow::writer::WRITER_NAME],
        )
        .await
        .expect("activity")
        .get(0);
    assert_eq!(writers, 0, "the trail writer's connection ends with the follower");
}

/// One transaction writes a trigger-mode table and a WAL-mode table (the
/// mode set per table) under one context: the capture trigger records the
/// context row when it writes, the follower then finds that row there.
/// Both changes reach the trail under the one context; the follower
/// neither fails on the row it finds nor writes it twice.
#[tokio::test]
async fn a_transaction_writing_a_trigger_mode_and_a_wal_mode_table_has_one_context() {
    let cluster = logical_cluster();
    let admin = connect_to(&cluster.url("postgres")).await;
    admin
        .batch_execute("CREATE DATABASE mixed")
        .await
        .expect("database");
    let mut client = connect_to(&cluster.url("mixed")).await;
    client
        .batch_execute(
            "CREATE TABLE by_trigger (id integer PRIMARY KEY, v text);
             CREATE TABLE by_wal (id integer PRIMARY KEY, v text);",
        )
        .await
        .expect("schema");
    let config = Config::parse(
        "[capture]\nmode = \"trigger\"\n\n[tables.\"public.by_wal\"]\nmode = \"wal\"\n",
        "pgtrail.toml",
    )
    .expect("config parses");
    pgtrail::plan::apply(&mut client, &config).await.expect("apply");

    for order in ["trigger first", "wal first"] {
        let (first, second) = if order == "trigger first" {
            ("by_trigger", "by_wal")
        } else {
            ("by_wal", "by_trigger")
        };
        let id = if order == "trigger first" { 1 } else { 2 };
        client
            .batch_execute(&format!(
                "BEGIN; SELECT pgtrail.set_context(actor_id => 'u{id}', reason => '{order}');
                 INSERT INTO {first} VALUES ({id}, 'a'); INSERT INTO {second} VALUES ({id}, 'b'); COMMIT;"
            ))
            .await
            .expect("the transaction commits");
    }
    follow_once(&mut client).await;
    follow_once(&mut client).await;

    let rows = client
        .query(
            "SELECT table_name, actor_id, reason FROM pgtrail.changes ORDER BY pk::text, table_name",
            &[],
        )
        .await
        .expect("the trail reads");
    let seen: Vec<(String, Option<String>, Option<String>)> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    let expected =
        |t: &str, id: i32, order: &str| (t.to_string(), Some(format!("u{id}")), Some(order.to_string()));
    assert_eq!(
        seen,
        vec![
            expected("by_trigger", 1, "trigger first"),
            expected("by_wal", 1, "trigger first"),
            expected("by_trigger", 2, "wal first"),
            expected("by_wal", 2, "wal first"),
        ]
    );
    let contexts: i64 = client
        .query_one(
            "SELECT count(*) FROM pgtrail.transaction WHERE actor_id IN ('u1', 'u2')",
            &[],
        )
        .await
        .expect("contexts read")
        .get(0);
    assert_eq!(contexts, 2, "one context row per transaction");
}
