//! WAL mode beyond one database (issue 15): `pgtrail follow --sink nats://…`
//! publishes every change to NATS JetStream as one JSON message. A real
//! `nats-server -js` is started for each story and the stream is read back
//! with a NATS client: each change arrives once, in order, with the fields
//! the trail holds; a follower killed at random points repeats and loses
//! nothing; a NATS server that is down stops the follower with a clear
//! message, and neither the trail nor the slot moves.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pgtrail_testkit::nats::Nats;
use pgtrail_testkit::{Cluster, ClusterOptions, connect_to};
use serde_json::Value;
use tokio_postgres::Client;

fn pgtrail(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgtrail"))
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env("NO_COLOR", "1")
        .output()
        .expect("the pgtrail binary runs")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A cluster that decodes logically, with table `t` in WAL mode.
async fn wal_project() -> (Cluster, String, Client, tempfile::TempDir) {
    let cluster = Cluster::start(ClusterOptions {
        fast: true,
        settings: vec![("wal_level".into(), "logical".into())],
        ..ClusterOptions::default()
    })
    .expect("a throwaway cluster with wal_level = logical starts");
    let url = cluster.url("postgres");
    let client = connect_to(&url).await;
    client
        .batch_execute("CREATE TABLE t (id integer PRIMARY KEY, n integer, note text)")
        .await
        .expect("schema");
    let dir = tempfile::tempdir().expect("a project directory");
    std::fs::write(dir.path().join("pgtrail.toml"), "[capture]\nmode = \"wal\"\n").expect("config");
    let output = pgtrail(&["apply", "--database-url", &url], dir.path());
    assert_eq!(output.status.code(), Some(0), "{:?}", text(&output));
    (cluster, url, client, dir)
}

/// Every message of the stream, in stream order: (subject, headers' position, payload).
async fn read_stream(nats: &Nats, stream: &str) -> Vec<(String, String, Value)> {
    let client = async_nats::connect(nats.url())
        .await
        .expect("a NATS client connects");
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream(stream).await.expect("the stream exists");
    let info = stream.info().await.expect("stream info");
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let mut out = Vec::new();
    if info.state.messages == 0 {
        return out;
    }
    for seq in first..=last {
        let message = stream.get_raw_message(seq).await.expect("a stored message");
        let position = message
            .headers
            .get("Pgtrail-Position")
            .map(|v| v.as_str().to_string())
            .unwrap_or_default();
        let payload: Value = serde_json::from_slice(&message.payload).expect("a JSON payload");
        out.push((message.subject.to_string(), position, payload));
    }
    out
}

async fn slot_position(client: &Client) -> String {
    client
        .query_one(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = pgtrail.wal_slot()",
            &[],
        )
        .await
        .expect("the slot reads")
        .get(0)
}

async fn trail_count(client: &Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM pgtrail.changes", &[])
        .await
        .expect("the trail reads")
        .get(0)
}

/// A follower with a NATS sink, killed with SIGKILL at random points while
/// the application writes (now and then a second one at once), then
/// drained: the stream holds each change once, in commit order and in
/// order in each transaction, with the trail's fields and the context.
#[tokio::test]
async fn a_follower_publishing_to_nats_killed_at_random_points_publishes_each_change_once() {
    let nats = Nats::start().expect("nats-server -js starts");
    let (_cluster, url, client, dir) = wal_project().await;
    let sink = nats.url();

    const N: i32 = 400;
    let writer_url = url.clone();
    let writer = tokio::spawn(async move {
        let client = connect_to(&writer_url).await;
        for i in 1..=N {
            client
                .batch_execute(&format!(
                    "BEGIN; SELECT pgtrail.set_context(actor_id => '{i}', reason => 'story');
                     INSERT INTO t VALUES ({i}, 0); UPDATE t SET n = n + 1 WHERE id = {i} - 1; COMMIT;"
                ))
                .await
                .expect("a write");
        }
    });

    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7)
        | 1;
    eprintln!("kill seed {seed}");
    let mut random = move |below: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % below
    };
    let spawn = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_pgtrail"))
            .args(args)
            .args(["--database-url", &url, "--sink", &sink])
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pgtrail follow starts")
    };
    let mut kills = 0;
    while !writer.is_finished() || kills < 5 {
        let mut follower = spawn(&["follow", "--batch-size", "7"]);
        let mut second = (random(3) == 0).then(|| spawn(&["follow", "--batch-size", "5"]));
        tokio::time::sleep(Duration::from_millis(100 + random(500))).await;
        follower.kill().expect("SIGKILL");
        follower.wait().expect("reaped");
        if let Some(second) = second.as_mut() {
            tokio::time::sleep(Duration::from_millis(random(300))).await;
            second.kill().expect("SIGKILL");
            second.wait().expect("reaped");
        }
        kills += 1;
    }
    writer.await.expect("the writer finished");
    // As cron runs it: a killed follower's session may hold the lock a
    // moment longer (exit 1), the next run drains.
    let mut output = pgtrail(
        &[
            "follow",
            "--once",
            "--database-url",
            &url,
            "--sink",
            &sink,
            "--format",
            "json",
        ],
        dir.path(),
    );
    for _ in 0..20 {
        if output.status.code() != Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        output = pgtrail(
            &[
                "follow",
                "--once",
                "--database-url",
                &url,
                "--sink",
                &sink,
                "--format",
                "json",
            ],
            dir.path(),
        );
    }
    assert_eq!(output.status.code(), Some(0), "{:?}", text(&output));

    let messages = read_stream(&nats, "PGTRAIL").await;
    let trail = client
        .query(
            "SELECT to_jsonb(c) - 'id' FROM pgtrail.changes AS c ORDER BY c.id",
            &[],
        )
        .await
        .expect("the trail reads");
    let trail: Vec<Value> = trail.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        trail.len(),
        (2 * N - 1) as usize,
        "the trail is whole (after {kills} kills)"
    );
    assert_eq!(
        messages.len(),
        trail.len(),
        "one message per change, none twice, none lost (after {kills} kills)"
    );
    let mut previous: Option<(String, u64)> = None;
    for ((subject, position, payload), row) in messages.iter().zip(&trail) {
        assert_eq!(subject, "pgtrail.postgres.public.t");
        assert_eq!(payload["position"].as_str(), Some(position.as_str()));
        assert_eq!(payload["database"], "postgres");
        // The message carries the trail's fields, the same values.
        for (field, value) in row.as_object().expect("a row") {
            assert_eq!(&payload[field], value, "field {field} of {position}");
        }
        // Positions increase: LSN order, then order in the transaction.
        let (lsn, seq) = position.rsplit_once(':').expect("LSN:SEQ");
        let seq: u64 = seq.parse().expect("a sequence number");
        if let Some((previous_lsn, previous_seq)) = &previous {
            if previous_lsn == lsn {
                assert_eq!(seq, previous_seq + 1, "in order in its transaction");
            } else {
                assert_eq!(seq, 1, "a transaction's first change");
            }
        }
        previous = Some((lsn.to_string(), seq));
    }
    let actors: Vec<i64> = messages
        .iter()
        .map(|(_, _, p)| p["actor_id"].as_str().and_then(|a| a.parse().ok()).unwrap_or(-1))
        .collect();
    assert!(
        actors.windows(2).all(|w| w[0] <= w[1]),
        "commit order, with each transaction's context"
    );
    assert_eq!(messages[0].2["reason"], "story");
}

/// NATS down: the follower says so and stops; nothing is written and the
/// slot keeps its changes. With NATS back, `--no-trail` publishes them
/// without keeping a trail in the database, and moves the slot on.
#[tokio::test]
async fn nats_down_stops_the_follower_and_the_slot_keeps_the_changes() {
    let (_cluster, url, client, dir) = wal_project().await;
    client
        .batch_execute(
            "INSERT INTO t SELECT i, i FROM generate_series(1, 50) AS i; UPDATE t SET n = 0 WHERE id <= 10",
        )
        .await
        .expect("writes");
    let before = slot_position(&client).await;

    // Nothing listens on that port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let down = format!("nats://127.0.0.1:{port}");
    let output = pgtrail(
        &["follow", "--once", "--database-url", &url, "--sink", &down],
        dir.path(),
    );
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot connect to NATS at 127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(stderr.contains("nats-server -js"), "says what to do: {stderr}");
    assert_eq!(slot_position(&client).await, before, "the slot did not move");
    assert_eq!(trail_count(&client).await, 0, "nothing written to the trail");

    // A URL that is not one: exit 2 before anything is read.
    let output = pgtrail(
        &[
            "follow",
            "--once",
            "--database-url",
            &url,
            "--sink",
            "http://127.0.0.1:4222",
        ],
        dir.path(),
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output).1.contains("is not a NATS URL"),
        "{:?}",
        text(&output)
    );
    // --no-trail without a sink is refused by the command line.
    let output = pgtrail(
        &["follow", "--once", "--no-trail", "--database-url", &url],
        dir.path(),
    );
    assert_eq!(output.status.code(), Some(2));

    // NATS up: --no-trail publishes every change and keeps no trail here.
    let nats = Nats::start().expect("nats-server -js starts");
    let output = pgtrail(
        &[
            "follow",
            "--once",
            "--no-trail",
            "--database-url",
            &url,
            "--sink",
            &format!("{}/audit.eu", nats.url()),
            "--stream",
            "AUDIT",
            "--format",
            "json",
        ],
        dir.path(),
    );
    assert_eq!(output.status.code(), Some(0), "{:?}", text(&output));
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    assert_eq!(report["published"], 60);
    assert_eq!(trail_count(&client).await, 0, "--no-trail keeps no trail");
    assert_ne!(
        slot_position(&client).await,
        before,
        "the slot moved on after the acknowledgements"
    );
    let messages = read_stream(&nats, "AUDIT").await;
    assert_eq!(messages.len(), 60);
    assert!(messages.iter().all(|(s, _, _)| s == "audit.eu.postgres.public.t"));
    let ops: Vec<&str> = messages
        .iter()
        .map(|(_, _, p)| p["op"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(ops.iter().filter(|o| **o == "INSERT").count(), 50);
    assert_eq!(ops.iter().filter(|o| **o == "UPDATE").count(), 10);
    assert_eq!(messages[50].2["old_values"], serde_json::json!({"n": 1}));
    assert_eq!(messages[50].2["pk"], serde_json::json!({"id": 1}));
    // Drained: running again publishes nothing.
    let output = pgtrail(
        &[
            "follow",
            "--once",
            "--no-trail",
            "--database-url",
            &url,
            "--sink",
            &format!("{}/audit.eu", nats.url()),
            "--stream",
            "AUDIT",
            "--format",
            "json",
        ],
        dir.path(),
    );
    assert_eq!(output.status.code(), Some(0), "{:?}", text(&output));
    assert_eq!(read_stream(&nats, "AUDIT").await.len(), 60);
}
