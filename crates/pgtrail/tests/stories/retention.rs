//! Retention that keeps its proofs (seed 002: "partition by month and drop
//! old partitions"; seed 004: retention that meets regulatory
//! requirements). A shop's trail grows over five months on a server whose
//! clock is moved with Debian's `faketime` (LD_PRELOAD libfaketime, its
//! offset read from a file the test rewrites); old partitions are sealed,
//! archived to Parquet, read back by DuckDB and pyarrow, dropped, and still
//! verified, and every kind of tampering with the archive is named.

use std::path::{Path, PathBuf};
use std::process::Command;

use pgtrail::archive::parquet_file::{ParquetWriter, read_rows};
use pgtrail::archive::{ArchiveOptions, Outcome, Priority, Sealer};
use pgtrail::config::Config;
use pgtrail::integrity::crypto::SignerKey;
use pgtrail::integrity::{self, Problem, VerifyOptions, VerifyReport};
use pgtrail_testkit::{Cluster, ClusterOptions, connect_to};
use tokio_postgres::Client;

use crate::support::{apply, count};

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

const SHOP: &str = "CREATE TABLE orders (id integer PRIMARY KEY, status text, total numeric(10,2));";
const CONFIG: &str = "[capture]\ninclude = [\"orders\"]\n\n[retention]\npartition = \"month\"\npremake = 1\nkeep = \"60 days\"\n";

/// The server's clock: an offset from real time in a file libfaketime reads
/// on every call.
struct Clock {
    _dir: tempfile::TempDir,
    file: PathBuf,
}

impl Clock {
    fn set(&self, offset: &str) {
        std::fs::write(&self.file, format!("{offset}\n")).expect("write the faketime file");
    }
}

/// A throwaway cluster whose clock starts `offset` from now.
fn cluster_at(offset: &str) -> (Cluster, Clock) {
    assert!(
        Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} is missing: install Debian's faketime (apt-get install faketime) to run the retention stories"
    );
    let dir = tempfile::Builder::new()
        .prefix("pgtrail-clock-")
        .tempdir_in("/tmp")
        .expect("clock dir");
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let clock = Clock {
        file: dir.path().join("faketime.rc"),
        _dir: dir,
    };
    clock.set(offset);
    std::fs::set_permissions(&clock.file, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    let cluster = Cluster::start(ClusterOptions {
        fast: true,
        env: vec![
            ("LD_PRELOAD".into(), LIBFAKETIME.into()),
            ("FAKETIME_TIMESTAMP_FILE".into(), clock.file.display().to_string()),
            ("FAKETIME_NO_CACHE".into(), "1".into()),
        ],
        ..ClusterOptions::default()
    })
    .expect("start a cluster under faketime");
    (cluster, clock)
}

struct KeySealer(SignerKey);

impl Sealer for KeySealer {
    fn seal<'a>(
        &'a self,
        client: &'a mut Client,
        priority: Priority,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + 'a>> {
        Box::pin(async move {
            integrity::seal_at(client, &self.0, &mut |_| {}, priority)
                .await
                .map(|r| format!("{} appended", r.appended))
                .map_err(|e| e.to_string())
        })
    }
}

/// An archive directory with its own signing key: each run seals what is
/// not sealed yet and archives what is due under `config`'s retention.
struct SignedArchive {
    dir: tempfile::TempDir,
    key: SignerKey,
    options: ArchiveOptions,
}

impl SignedArchive {
    fn new(config: &Config) -> SignedArchive {
        let dir = tempfile::tempdir().expect("archive dir");
        let options = ArchiveOptions {
            dir: dir.path().to_path_buf(),
            keep: config.retention.keep,
            tables: config.retention.tables.clone(),
            dry_run: false,
            priority: Priority::Normal,
        };
        let key = SignerKey::generate("shop.example.com/audit").expect("key");
        SignedArchive { dir, key, options }
    }

    /// Erases order `pk` of public.orders, reaching into this archive.
    async fn erase_order(
        &self,
        client: &mut Client,
        pk: &serde_json::Value,
        reason: &str,
    ) -> Result<integrity::EraseReport, integrity::IntegrityError> {
        let options = integrity::EraseOptions {
            archive_dir: Some(self.dir.path().to_path_buf()),
        };
        integrity::erase_with(client, "public", "orders", pk, None, reason, &options).await
    }

    async fn run(&self, client: &mut Client) -> Vec<Outcome> {
        let sealer = KeySealer(self.key.clone());
        pgtrail::archive::archive(client, &self.options, Some(&sealer), &mut |_| {})
            .await
            .expect("archive")
    }
}

/// The shop's tables in the cluster's database `shop` (made by the
/// caller), audited by CONFIG, its trail's partitions made for now.
async fn audited_shop(cluster: &Cluster) -> (Client, Config) {
    let mut client = connect_to(&cluster.url("shop")).await;
    client.batch_execute(SHOP).await.expect("schema");
    apply(&mut client, CONFIG).await;
    let config = Config::parse(CONFIG, "pgtrail.toml").expect("config");
    pgtrail::archive::partitions::premake(&client, &config.retention)
        .await
        .expect("premake");
    (client, config)
}

/// Five months of orders, a month apart, made as a cron'd maintain would
/// keep partitions ahead; returns the shop's connection, its clock and config.
async fn five_months_of_orders() -> (Cluster, Clock, Client, Config) {
    let (cluster, clock) = cluster_at("-150d");
    let admin = connect_to(&cluster.url("postgres")).await;
    admin
        .batch_execute("CREATE DATABASE shop")
        .await
        .expect("create shop");
    let (client, config) = audited_shop(&cluster).await;
    for (month, offset) in ["-150d", "-120d", "-90d", "-60d", "-30d", "+0d"]
        .iter()
        .enumerate()
    {
        clock.set(offset);
        pgtrail::archive::partitions::premake(&client, &config.retention)
            .await
            .expect("premake");
        let month = month as i32;
        client
            .batch_execute(&format!(
                "BEGIN; SELECT pgtrail.set_context(actor_id => 'clerk{month}', reason => 'month {month}', extra => '{{\"request_id\": \"r{month}\"}}');
                 INSERT INTO orders SELECT {month} * 100 + g, 'new', g FROM generate_series(1, 20) AS g;
                 UPDATE orders SET status = 'paid', total = total + 1 WHERE id % 3 = 0 AND id > {month} * 100;
                 DELETE FROM orders WHERE id = {month} * 100 + 20;
                 COMMIT;"
            ))
            .await
            .expect("a month of orders");
    }
    (cluster, clock, client, config)
}

async fn verify(client: &mut Client, key: &SignerKey, dir: Option<&Path>) -> VerifyReport {
    integrity::verify(
        client,
        &VerifyOptions {
            public_key: Some(key.verifier()),
            archive_dir: dir.map(Path::to_path_buf),
            ..Default::default()
        },
    )
    .await
    .expect("verify runs")
}

/// The columns both readers are compared on, as the database shows them.
async fn database_rows(client: &Client) -> Vec<serde_json::Value> {
    client
        .query(
            "SELECT json_build_array(id, (extract(epoch FROM changed_at) * 1000000)::bigint, table_name, op,
                                     pk::text, new_values::text, changed_fields, actor_id, context::text)
             FROM pgtrail.changes ORDER BY id",
            &[],
        )
        .await
        .expect("read the changes")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The archive's rows as DuckDB and pyarrow read them.
fn python_rows(dir: &Path) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let script = r#"
import glob, json, sys
try:
    import duckdb, pyarrow, pyarrow.parquet as pq
except ImportError as e:
    sys.exit(f"python packages duckdb and pyarrow are needed (pip install duckdb pyarrow): {e}")
files = sorted(glob.glob(sys.argv[1] + "/*.parquet"))
cols = "id, epoch_us(changed_at), table_name, op, pk, new_values, changed_fields, actor_id, context"
con = duckdb.connect()
duck = [list(r) for r in con.execute(f"SELECT {cols} FROM read_parquet({files!r}) ORDER BY id").fetchall()]
table = pyarrow.concat_tables([pq.read_table(f) for f in files]).sort_by("id")
us = table.column("changed_at").cast(pyarrow.int64()).to_pylist()
names = ["id", None, "table_name", "op", "pk", "new_values", "changed_fields", "actor_id", "context"]
arrow = [[table.column(n)[i].as_py() if n else us[i] for n in names] for i in range(table.num_rows)]
# The README's example: one order's archived history.
readme = con.execute(
    "SELECT id, changed_at, op, new_values, actor_id FROM read_parquet(?) "
    "WHERE table_name = 'orders' AND json_extract_string(pk, '$.id') = '102' ORDER BY id",
    [files]).fetchall()
print(json.dumps({"duckdb": duck, "pyarrow": arrow, "readme": len(readme)}))
"#;
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(dir)
        .output()
        .expect("python3 is needed to read the archive with DuckDB and pyarrow");
    assert!(
        output.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("python printed JSON");
    let list = |k: &str| json[k].as_array().cloned().expect("a list of rows");
    assert!(
        json["readme"].as_i64().is_some_and(|n| n >= 2),
        "the README's DuckDB query: {json}"
    );
    (list("duckdb"), list("pyarrow"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

/// Rewrites an archive file through `edit` (as someone with the file would).
fn rewrite(file: &Path, edit: impl FnOnce(&mut Vec<pgtrail::archive::ArchivedChange>)) {
    let mut rows = read_rows(file).expect("read the file");
    edit(&mut rows);
    let mut writer = ParquetWriter::create(file).expect("rewrite");
    for row in rows {
        writer.push(row).expect("row");
    }
    writer.finish().expect("finish");
}

fn archived(outcomes: &[Outcome]) -> Vec<String> {
    outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Archived { partition, .. } => Some(partition.clone()),
            _ => None,
        })
        .collect()
}

/// The README's DuckDB queries (history, at, blame, actor) of the retention
/// section, as written but for the directory, the moment and the actor.
fn readme_queries(dir: &Path, moment: &str, actor: &str) -> serde_json::Value {
    const README: &str = include_str!("../../../../README.md");
    let heading = "## Retention: partitions, Parquet archives, legal holds\n";
    let start = README.find(heading).expect("README's retention section");
    let body = &README[start + heading.len()..];
    let body = &body[..body.find("\n## ").unwrap_or(body.len())];
    let mut queries = serde_json::Map::new();
    for block in body.split("```sql\n").skip(1) {
        let sql = &block[..block.find("```").expect("the block ends")];
        let name = sql
            .strip_prefix("-- ")
            .and_then(|s| s.split(':').next())
            .expect("each query starts with `-- NAME:`");
        let sql = sql
            .replace("/var/lib/pgtrail/archive", &dir.display().to_string())
            .replace("2025-03-01 00:00:00+00", moment)
            .replace("alice@example.com", actor);
        queries.insert(name.to_string(), serde_json::Value::String(sql));
    }
    let script = r#"
import json, sys
import duckdb
queries = json.loads(sys.argv[1])
con = duckdb.connect()
history = [[r[0], r[2]] for r in con.execute(queries["history"]).fetchall()]
at = con.execute(queries["at"]).fetchall()
blame = [[r[0], r[2]] for r in con.execute(queries["blame"]).fetchall()]
actor = [r[0] for r in con.execute(queries["actor"]).fetchall()]
print(json.dumps({"history": history, "at": [json.loads(r[0]) for r in at], "blame": blame, "actor": actor}))
"#;
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(serde_json::Value::Object(queries).to_string())
        .output()
        .expect("python3 is needed to run the README's DuckDB queries");
    assert!(
        output.status.success(),
        "the README's DuckDB queries failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("python printed JSON")
}

/// The same questions asked of the database (before anything is archived):
/// order 102's changes, a moment after its last one and the row then,
/// clerk1's changes, and per column of order 102 the change that last set
/// it.
async fn database_answers(
    client: &Client,
) -> (
    serde_json::Value,
    String,
    serde_json::Value,
    serde_json::Value,
    serde_json::Value,
) {
    let row = client
        .query_one(
            "SELECT (SELECT json_agg(json_build_array(id, op) ORDER BY id) FROM pgtrail.changes
                     WHERE table_name = 'orders' AND pk->>'id' = '102'),
                    (SELECT to_char(max(changed_at) AT TIME ZONE 'UTC' + interval '1 second', 'YYYY-MM-DD HH24:MI:SS') || '+00'
                     FROM pgtrail.changes WHERE table_name = 'orders' AND pk->>'id' = '102'),
                    (SELECT to_json(o) FROM orders AS o WHERE id = 102),
                    (SELECT json_agg(id ORDER BY id) FROM pgtrail.changes WHERE actor_id = 'clerk1'),
                    (SELECT json_agg(json_build_array(column_name, change_id) ORDER BY column_name COLLATE \"C\")
                     FROM pgtrail.blame('orders', '{\"id\": 102}'))",
            &[],
        )
        .await
        .expect("the database's answers");
    (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4))
}

/// Rows compared as JSON, numbers by value (DuckDB prints 2.5 for 2.50).
fn same_row(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    match (a, b) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| same_row(v, w)))
        }
        (serde_json::Value::Number(a), serde_json::Value::Number(b)) => a.as_f64() == b.as_f64(),
        (serde_json::Value::String(a), serde_json::Value::Number(b))
        | (serde_json::Value::Number(b), serde_json::Value::String(a)) => a.parse::<f64>().ok() == b.as_f64(),
        _ => a == b,
    }
}

/// The operator's story: months of history, a legal hold on one order,
/// archive, then verify from the files; the auditor's: the files read by
/// DuckDB and pyarrow are the rows the database had.
#[tokio::test]
async fn old_months_are_archived_read_by_others_dropped_and_still_proved() {
    let (_cluster, _clock, mut client, config) = five_months_of_orders().await;
    let partitions = pgtrail::archive::partitions::list(&client)
        .await
        .expect("partitions");
    assert!(partitions.len() >= 6, "{partitions:?}");
    assert_eq!(
        pgtrail::archive::partitions::default_rows(&client)
            .await
            .expect("default"),
        0
    );
    let before = database_rows(&client).await;
    let total = before.len() as i64;
    let (history, moment, row_then, clerk1, blame) = database_answers(&client).await;

    let dir = tempfile::tempdir().expect("archive dir");
    let options = ArchiveOptions {
        dir: dir.path().to_path_buf(),
        keep: config.retention.keep,
        tables: config.retention.tables.clone(),
        dry_run: false,
        // The archive's work on threads of its own at nice 19.
        priority: Priority::Low,
    };
    // Not sealed and no key: nothing is archived, each partition says why.
    let outcomes = pgtrail::archive::archive(&mut client, &options, None, &mut |_| {})
        .await
        .expect("archive");
    assert!(!outcomes.is_empty());
    assert!(archived(&outcomes).is_empty(), "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Outcome::Skipped { reason, .. }
            if reason.contains("not sealed") || reason.contains("never been sealed"))),
        "{outcomes:?}"
    );

    // A legal hold on order 102 (month 1) keeps its partition.
    let hold = pgtrail::archive::holds::add(
        &client,
        &pgtrail::archive::holds::NewHold {
            table: Some(("public".into(), "orders".into())),
            pk: Some(serde_json::json!({"id": 102})),
            reason: "case 17".into(),
            ..Default::default()
        },
    )
    .await
    .expect("hold");
    let key = SignerKey::generate("shop.example.com/audit").expect("key");
    let sealer = KeySealer(key.clone());
    let outcomes = pgtrail::archive::archive(&mut client, &options, Some(&sealer), &mut |_| {})
        .await
        .expect("archive");
    let first = archived(&outcomes);
    assert!(first.len() >= 2, "{outcomes:?}");
    let held: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Skipped { reason, .. } if reason.contains("case 17")))
        .collect();
    assert_eq!(held.len(), 1, "{outcomes:?}");
    for outcome in &outcomes {
        if let Outcome::Archived { lock_ms, .. } = outcome {
            assert!(*lock_ms < 1000.0, "the drop held its lock {lock_ms} ms");
        }
    }

    // Released, the held partition goes too; a rerun has nothing left to do.
    pgtrail::archive::holds::release(&client, hold, "case closed")
        .await
        .expect("release");
    let outcomes = pgtrail::archive::archive(&mut client, &options, Some(&sealer), &mut |_| {})
        .await
        .expect("archive again");
    assert_eq!(archived(&outcomes).len(), 1, "{outcomes:?}");
    let again = pgtrail::archive::archive(&mut client, &options, Some(&sealer), &mut |_| {})
        .await
        .expect("archive a third time");
    assert!(again.is_empty(), "{again:?}");

    let records = count(&client, "SELECT count(*) FROM pgtrail.archive").await;
    assert_eq!(records as usize, first.len() + 1);
    let live = count(&client, "SELECT count(*) FROM pgtrail.change").await;
    let archived_rows = count(&client, "SELECT sum(row_count)::bigint FROM pgtrail.archive").await;
    assert!(archived_rows > 0 && live > 0);
    assert_eq!(live + archived_rows, total);
    for record in &first {
        assert!(dir.path().join(format!("{record}.parquet")).is_file());
        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join(format!("{record}.json"))).expect("manifest"),
        )
        .expect("manifest JSON");
        assert_eq!(manifest["format"], "pgtrail-archive v1");
        assert!(manifest["seal"]["id"].as_i64().is_some());
        // The manifest's hashes are the file's: its bytes, and its rows
        // recomputed from the file (archive itself compares columns).
        let file = dir.path().join(format!("{record}.parquet"));
        let file_sha256 = pgtrail::archive::archive::file_sha256(&file).expect("file hash");
        assert_eq!(manifest["sha256"], file_sha256.as_str());
        let rows_sha256 = pgtrail::archive::archive::file_rows_sha256(&file).expect("rows hash");
        assert_eq!(manifest["rows_sha256"], rows_sha256.as_str());
    }

    // Others read the archive: the rows are the ones the database had.
    let (duck, arrow) = python_rows(dir.path());
    let expected: Vec<serde_json::Value> = before[..archived_rows as usize].to_vec();
    assert_eq!(duck, expected);
    assert_eq!(arrow, expected);

    // The README's DuckDB queries answer from the archive what the database
    // answered before: order 102's history, the row at a moment, clerk1's
    // changes, who set each of order 102's columns last.
    let answers = readme_queries(dir.path(), &moment, "clerk1");
    assert_eq!(answers["history"], history, "{answers}");
    assert_eq!(answers["blame"], blame, "{answers}");
    assert_eq!(answers["actor"], clerk1, "{answers}");
    let at = answers["at"].as_array().expect("rows");
    assert!(
        at.len() == 1 && same_row(&at[0], &row_then),
        "{at:?} vs {row_then}"
    );

    // The proofs: intact from the files; without them, counted as unchecked.
    let report = verify(&mut client, &key, Some(dir.path())).await;
    assert!(report.intact(), "{:?}", report.problems);
    assert_eq!(report.archived_checked as i64, archived_rows);
    let report = verify(&mut client, &key, None).await;
    assert!(report.intact(), "{:?}", report.problems);
    assert_eq!(report.archived_unchecked as i64, archived_rows);

    // Tampering with the archive is named, each kind.
    let file = format!("{}.parquet", first[0]);
    let tampered = |name: &str| {
        let to = dir.path().parent().expect("parent").join(format!(
            "{}-{name}",
            dir.path().file_name().and_then(|n| n.to_str()).unwrap_or("a")
        ));
        copy_dir(dir.path(), &to);
        to
    };
    let edited = tampered("edited");
    rewrite(&edited.join(&file), |rows| {
        rows[1].new_values = Some(r#"{"total": 0}"#.into())
    });
    let problems = verify(&mut client, &key, Some(&edited)).await.problems;
    assert!(
        problems
            .iter()
            .any(|p| matches!(p, Problem::ArchivedEdited { .. })),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| matches!(p, Problem::ArchiveFile { problem, .. } if problem.contains("changed"))),
        "{problems:?}"
    );

    let reordered = tampered("reordered");
    rewrite(&reordered.join(&file), |rows| rows.swap(0, 1));
    let problems = verify(&mut client, &key, Some(&reordered)).await.problems;
    assert!(
        problems
            .iter()
            .any(|p| matches!(p, Problem::ArchiveFile { problem, .. } if problem.contains("out of order"))),
        "{problems:?}"
    );

    let row_gone = tampered("row-deleted");
    let mut gone_id = 0;
    rewrite(&row_gone.join(&file), |rows| gone_id = rows.remove(2).id);
    let problems = verify(&mut client, &key, Some(&row_gone)).await.problems;
    assert!(
        problems.contains(&Problem::ArchivedMissing {
            change_id: gone_id,
            seal: problems
                .iter()
                .find_map(|p| match p {
                    Problem::ArchivedMissing { seal, .. } => Some(*seal),
                    _ => None,
                })
                .unwrap_or(0),
            file: file.clone()
        }),
        "{problems:?}"
    );

    let file_gone = tampered("file-deleted");
    std::fs::remove_file(file_gone.join(&file)).expect("delete the file");
    let problems = verify(&mut client, &key, Some(&file_gone)).await.problems;
    assert!(
        problems
            .iter()
            .any(|p| matches!(p, Problem::ArchiveFile { problem, .. } if problem.contains("missing"))),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| matches!(p, Problem::ArchivedMissing { .. })),
        "{problems:?}"
    );

    // A partition dropped without an archive: its sealed changes are deleted.
    let victim: String = client
        .query_one(
            "SELECT p.name FROM pgtrail.partitions() AS p
             WHERE NOT p.is_default AND EXISTS (SELECT FROM pgtrail.change AS c WHERE c.tableoid = format('pgtrail.%I', p.name)::regclass)
             ORDER BY p.from_at NULLS FIRST LIMIT 1",
            &[],
        )
        .await
        .expect("a live partition")
        .get(0);
    client
        .batch_execute(&format!(
            "ALTER TABLE pgtrail.change DETACH PARTITION pgtrail.{victim}; DROP TABLE pgtrail.{victim}"
        ))
        .await
        .expect("drop a partition behind pgtrail's back");
    let problems = verify(&mut client, &key, Some(dir.path())).await.problems;
    assert!(
        problems.iter().any(|p| matches!(p, Problem::Deleted { .. })),
        "{problems:?}"
    );
}

/// The scheduler's story: maintain makes partitions ahead, does nothing in
/// a dry run, and a second maintain at the same time does nothing.
#[tokio::test]
async fn maintain_is_safe_to_run_from_cron_twice() {
    let (_cluster, _clock, mut client, config) = five_months_of_orders().await;
    let dir = tempfile::tempdir().expect("archive dir");
    let key = SignerKey::generate("shop.example.com/audit").expect("key");
    let sealer = KeySealer(key.clone());
    let partitions = count(&client, "SELECT count(*) FROM pgtrail.partitions()").await;

    let dry = pgtrail::archive::maintain(
        &mut client,
        &config.retention,
        Some(dir.path()),
        Some(&sealer),
        true,
        Priority::Low,
        &mut |_| {},
    )
    .await
    .expect("dry run");
    assert!(dry.dry_run && !dry.archives.is_empty());
    assert!(
        dry.archives
            .iter()
            .all(|o| matches!(o, Outcome::WouldArchive { .. })),
        "{:?}",
        dry.archives
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM pgtrail.partitions()").await,
        partitions
    );
    assert_eq!(count(&client, "SELECT count(*) FROM pgtrail.seal").await, 0);

    // Another maintain holds the lock: this one does nothing.
    let other = connect_to(&_cluster.url("shop")).await;
    other
        .batch_execute("SELECT pg_advisory_lock(8099570489659320686)")
        .await
        .expect("lock");
    let busy = pgtrail::archive::maintain(
        &mut client,
        &config.retention,
        Some(dir.path()),
        Some(&sealer),
        false,
        Priority::Low,
        &mut |_| {},
    )
    .await
    .expect("busy run");
    assert!(busy.busy);
    assert_eq!(count(&client, "SELECT count(*) FROM pgtrail.seal").await, 0);
    drop(other);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    // A maintain that died after writing files and before dropping (a
    // half-written file, a file without its record): the next run redoes it.
    let first_due = pgtrail::archive::due(&client, &config.retention.keep, &config.retention.tables)
        .await
        .expect("due")
        .into_iter()
        .next()
        .expect("a partition past retention");
    std::fs::write(
        dir.path().join(format!("{}.parquet.partial", first_due.name)),
        b"half",
    )
    .expect("junk");
    std::fs::write(
        dir.path().join(format!("{}.parquet", first_due.name)),
        b"not parquet",
    )
    .expect("junk");

    let done = pgtrail::archive::maintain(
        &mut client,
        &config.retention,
        Some(dir.path()),
        Some(&sealer),
        false,
        Priority::Low,
        &mut |_| {},
    )
    .await
    .expect("maintain");
    assert!(!done.busy && done.sealed.is_some());
    assert!(
        archived(&done.archives).contains(&first_due.name),
        "{:?}",
        done.archives
    );
    let report = verify(&mut client, &key, Some(dir.path())).await;
    assert!(report.intact(), "{:?}", report.problems);
    let again = pgtrail::archive::maintain(
        &mut client,
        &config.retention,
        Some(dir.path()),
        Some(&sealer),
        false,
        Priority::Low,
        &mut |_| {},
    )
    .await
    .expect("maintain again");
    assert!(
        again.archives.is_empty() && again.partitions_made.is_empty(),
        "{again:?}"
    );
}

/// Order 102's changes as DuckDB and pyarrow read them from every Parquet
/// file of `dir`: (old_values, new_values) each, and the rows of all files.
fn python_subject(dir: &Path) -> serde_json::Value {
    let script = r#"
import glob, json, sys
import duckdb, pyarrow, pyarrow.parquet as pq
files = sorted(glob.glob(sys.argv[1] + "/*.parquet"))
con = duckdb.connect()
where = "table_name = 'orders' AND json_extract_string(pk, '$.id') = '102'"
duck = con.execute(f"SELECT old_values, new_values FROM read_parquet(?) WHERE {where} ORDER BY id", [files]).fetchall()
total = con.execute("SELECT count(*) FROM read_parquet(?)", [files]).fetchone()[0]
table = pyarrow.concat_tables([pq.read_table(f) for f in files]).sort_by("id").to_pylist()
arrow = [[r["old_values"], r["new_values"]] for r in table
         if r["table_name"] == "orders" and json.loads(r["pk"])["id"] == 102]
print(json.dumps({"duckdb": [list(r) for r in duck], "pyarrow": arrow, "total": total, "files": len(files)}))
"#;
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(dir)
        .output()
        .expect("python3 is needed to read the archive with DuckDB and pyarrow");
    assert!(
        output.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("python printed JSON")
}

/// Every value of `changes` ([old, new] JSON texts) but the key is the
/// marker of erasure `id`; returns how many values were checked.
fn all_erased(changes: &serde_json::Value, id: i64) -> usize {
    let mut values = 0;
    for pair in changes.as_array().expect("a list of changes") {
        for side in pair.as_array().expect("old and new") {
            let Some(text) = side.as_str() else { continue };
            let object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(text).expect("a JSON object");
            for (column, value) in object {
                if column != "id" {
                    assert_eq!(
                        value,
                        serde_json::json!({ "pgtrail_erased": id }),
                        "{column} in {text}"
                    );
                    values += 1;
                }
            }
        }
    }
    values
}

/// The data-protection officer's story: a customer asks for order 102 to be
/// forgotten after its month was archived. The erasure reaches the archive:
/// the file is written again without the values (DuckDB and pyarrow read
/// none of them), the old file is gone, and verify still passes from the
/// files. An erasure that stopped after its commit is finished by the next
/// archive run.
#[tokio::test]
async fn erasure_reaches_archived_changes_and_proofs_still_verify() {
    let (_cluster, _clock, mut client, config) = five_months_of_orders().await;
    client
        .batch_execute("UPDATE orders SET status = 'refunded' WHERE id = 102")
        .await
        .expect("a live change of order 102");
    let signed = SignedArchive::new(&config);
    let (dir, key) = (&signed.dir, &signed.key);
    let outcomes = signed.run(&mut client).await;
    assert!(!archived(&outcomes).is_empty(), "{outcomes:?}");
    let archived_rows = count(&client, "SELECT sum(row_count)::bigint FROM pgtrail.archive").await;
    let before = python_subject(dir.path());
    assert_eq!(before["duckdb"].as_array().map(Vec::len), Some(2), "{before}");
    assert!(
        before["duckdb"].to_string().contains(r#"\"status\": \"new\""#),
        "{before}"
    );
    let backup = tempfile::tempdir().expect("backup dir");
    copy_dir(dir.path(), backup.path());

    // Without the archive directory the erasure is refused: it would leave
    // the archived values behind.
    let pk = serde_json::json!({"id": 102});
    let refused = integrity::erase(&mut client, "public", "orders", &pk, None, "GDPR request #4411").await;
    assert!(
        matches!(&refused, Err(integrity::IntegrityError::Refused(m)) if m.contains("--archive")),
        "{refused:?}"
    );
    assert_eq!(count(&client, "SELECT count(*) FROM pgtrail.erasure").await, 0);

    let report = signed
        .erase_order(&mut client, &pk, "GDPR request #4411")
        .await
        .expect("erase");
    assert_eq!(report.archived, 2, "{report:?}");
    assert_eq!(report.change_ids.len(), 3, "{report:?}");
    // Archiving sealed the whole trail, the live change too.
    assert_eq!(report.sealed, 3, "{report:?}");
    // Order 102's month is one file, written again as <partition>.e<id>.parquet.
    assert_eq!(report.files.len(), 1, "{report:?}");
    let new_file = report.files[0].clone();
    let partition = new_file
        .strip_suffix(&format!(".e{}.parquet", report.erasure_id))
        .expect("the new file's name")
        .to_string();
    let old_file = format!("{partition}.parquet");
    assert!(backup.path().join(&old_file).is_file(), "{old_file} was archived");
    assert!(!dir.path().join(&old_file).exists(), "the old file is removed");
    let (file, sha256): (String, String) = {
        let row = client
            .query_one(
                "SELECT file, sha256 FROM pgtrail.archive WHERE partition = $1",
                &[&partition],
            )
            .await
            .expect("the record");
        (row.get(0), row.get(1))
    };
    assert_eq!(file, new_file);
    assert_eq!(
        pgtrail::archive::archive::file_sha256(&dir.path().join(&file)).expect("hash"),
        sha256
    );
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join(format!("{partition}.json"))).expect("manifest"),
    )
    .expect("manifest JSON");
    assert_eq!(manifest["file"], new_file.as_str());
    assert_eq!(manifest["sha256"], sha256.as_str());
    assert_eq!(manifest["erasures"], serde_json::json!([report.erasure_id]));

    // Others read the archive: order 102's values are gone, every other row
    // is still there, once.
    let after = python_subject(dir.path());
    assert_eq!(after["total"].as_i64(), Some(archived_rows), "{after}");
    assert_eq!(after["duckdb"], after["pyarrow"]);
    assert!(all_erased(&after["duckdb"], report.erasure_id) >= 3, "{after}");
    let live: String = client
        .query_one(
            "SELECT new_values::text FROM pgtrail.change WHERE table_id = (SELECT id FROM pgtrail.audited_table WHERE table_name = 'orders') AND pk = '{\"id\": 102}' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .expect("the live change")
        .get(0);
    assert!(!live.contains("refunded"), "{live}");

    // The proofs: intact from the files, and without them.
    let report_verify = verify(&mut client, key, Some(dir.path())).await;
    assert!(report_verify.intact(), "{:?}", report_verify.problems);
    assert_eq!(report_verify.archived_checked as i64, archived_rows);
    let report_verify = verify(&mut client, key, None).await;
    assert!(report_verify.intact(), "{:?}", report_verify.problems);

    // Nothing is left to erase; asked again, the erasure says so.
    let again = signed.erase_order(&mut client, &pk, "again").await;
    assert!(
        matches!(&again, Err(integrity::IntegrityError::Refused(m)) if m.contains("nothing to erase")),
        "{again:?}"
    );

    // An erasure that stopped after its commit (the old file and manifest
    // still there): the next archive run removes the old file and brings the
    // manifest up to date, and verify passes.
    std::fs::copy(backup.path().join(&old_file), dir.path().join(&old_file)).expect("old file back");
    let manifest_name = format!("{partition}.json");
    std::fs::copy(
        backup.path().join(&manifest_name),
        dir.path().join(&manifest_name),
    )
    .expect("old manifest back");
    signed.run(&mut client).await;
    assert!(!dir.path().join(&old_file).exists(), "the old file is removed");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(&manifest_name)).expect("manifest"))
            .expect("JSON");
    assert_eq!(manifest["file"], new_file.as_str());
    let after = python_subject(dir.path());
    assert!(all_erased(&after["duckdb"], report.erasure_id) >= 3, "{after}");
    let report_verify = verify(&mut client, key, Some(dir.path())).await;
    assert!(report_verify.intact(), "{:?}", report_verify.problems);

    // The file of an erasure that did not commit (a later number than the
    // recorded one): archive leaves it (an erasure may be writing it now);
    // the next erasure, under the seal lock, removes it.
    let orphan = dir
        .path()
        .join(format!("{partition}.e{}.parquet", report.erasure_id + 100));
    std::fs::copy(dir.path().join(&new_file), &orphan).expect("an orphan");
    signed.run(&mut client).await;
    assert!(orphan.exists(), "archive leaves a file an erasure may be writing");
    let again = signed.erase_order(&mut client, &pk, "again").await;
    assert!(again.is_err(), "nothing left to erase: {again:?}");
    assert!(!orphan.exists(), "the next erasure removes it");
    assert!(dir.path().join(&new_file).exists());
}

/// An erasure reads the archive files before it takes the seal lock: while
/// it is held up reading (here: by a session holding `pgtrail.archive`, as
/// a slow disk or a large archive would hold it up), a seal of the changes
/// written meanwhile goes through, and the erasure then finishes with
/// nothing lost: every change sealed, the values gone from the file, verify
/// intact from the files.
#[tokio::test]
async fn a_seal_is_not_held_up_while_an_erasure_reads_the_archive() {
    let (cluster, _clock, mut client, config) = five_months_of_orders().await;
    let signed = SignedArchive::new(&config);
    assert!(!archived(&signed.run(&mut client).await).is_empty());
    let archived_rows = count(&client, "SELECT sum(row_count)::bigint FROM pgtrail.archive").await;
    client
        .batch_execute("UPDATE orders SET status = 'refunded' WHERE id = 102; UPDATE orders SET status = 'late' WHERE id = 501")
        .await
        .expect("live changes, not sealed");

    let mut blocker = connect_to(&cluster.url("shop")).await;
    let hold = blocker.transaction().await.expect("begin");
    hold.batch_execute("LOCK TABLE pgtrail.archive IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("hold the archive records");
    let mut eraser = connect_to(&cluster.url("shop")).await;
    let eraser_pid: i32 = eraser
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    let options = integrity::EraseOptions {
        archive_dir: Some(signed.dir.path().to_path_buf()),
    };
    let erasure = tokio::spawn(async move {
        let pk = serde_json::json!({"id": 102});
        integrity::erase_with(
            &mut eraser,
            "public",
            "orders",
            &pk,
            None,
            "GDPR request #4412",
            &options,
        )
        .await
    });
    // The erasure is reading: waiting for the archive records.
    let mut waiting = false;
    for _ in 0..200 {
        waiting = client
            .query_one(
                "SELECT count(*) > 0 FROM pg_locks WHERE pid = $1 AND NOT granted AND relation = 'pgtrail.archive'::regclass",
                &[&eraser_pid],
            )
            .await
            .expect("pg_locks")
            .get(0);
        if waiting {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(waiting, "the erasure never reached the archive records");

    let sealed = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        integrity::seal(&mut client, &signed.key, &mut |_| {}),
    )
    .await
    .expect("the seal waited for the erasure's read")
    .expect("seal");
    assert_eq!(sealed.appended, 2, "{sealed:?}");
    assert!(!erasure.is_finished(), "the erasure still waits to read");

    hold.commit().await.expect("release the archive records");
    let report = erasure.await.expect("the erasure's task").expect("erase");
    assert_eq!(report.archived, 2, "{report:?}");
    // Order 102's two archived changes and its live one, all sealed.
    assert_eq!(report.change_ids.len(), 3, "{report:?}");
    assert_eq!(report.sealed, 3, "{report:?}");
    assert_eq!(report.files.len(), 1, "{report:?}");
    let after = python_subject(signed.dir.path());
    assert_eq!(after["total"].as_i64(), Some(archived_rows), "{after}");
    assert!(all_erased(&after["duckdb"], report.erasure_id) >= 3, "{after}");
    let report_verify = verify(&mut client, &signed.key, Some(signed.dir.path())).await;
    assert!(report_verify.intact(), "{:?}", report_verify.problems);
    assert_eq!(report_verify.archived_checked as i64, archived_rows);
}

/// The finance team's story: invoices must stay in the database 120 days,
/// orders 60. Partitions hold every table's changes, so a partition is
/// archived once every table in it is past its keep: the month with only
/// orders goes at 60 days, the months with invoices wait for theirs (their
/// orders with them), and archive and check say so; two months later the
/// invoices' month goes too, and verify passes from the files.
#[tokio::test]
async fn a_table_kept_longer_keeps_its_partitions() {
    const KEEPS: &str = "[capture]\ninclude = [\"orders\", \"invoices\"]\n\n[retention]\npartition = \"month\"\npremake = 1\nkeep = \"60 days\"\n\
                         [retention.tables.\"public.invoices\"]\nkeep = \"120 days\"\n";
    let (cluster, clock) = cluster_at("-200d");
    connect_to(&cluster.url("postgres"))
        .await
        .batch_execute("CREATE DATABASE shop")
        .await
        .expect("create shop");
    let mut client = connect_to(&cluster.url("shop")).await;
    client
        .batch_execute(&format!(
            "{SHOP} CREATE TABLE invoices (id integer PRIMARY KEY, order_id integer, amount numeric(10,2));"
        ))
        .await
        .expect("schema");
    apply(&mut client, KEEPS).await;
    let config = Config::parse(KEEPS, "pgtrail.toml").expect("config");
    // Invoices 200 and 100 days ago; orders then, 150 days ago and since.
    for (n, offset, invoices) in [
        (1, "-200d", true),
        (2, "-150d", false),
        (3, "-100d", true),
        (4, "-30d", false),
        (5, "+0d", false),
    ] {
        clock.set(offset);
        pgtrail::archive::partitions::premake(&client, &config.retention)
            .await
            .expect("premake");
        client
            .batch_execute(&format!("INSERT INTO orders VALUES ({n}, 'new', {n})"))
            .await
            .expect("an order");
        if invoices {
            client
                .batch_execute(&format!("INSERT INTO invoices VALUES ({n}, {n}, {n})"))
                .await
                .expect("an invoice");
        }
    }
    let kept = invoice_month(&client, 3).await;
    let old_invoices = invoice_month(&client, 1).await;

    let signed = SignedArchive::new(&config);
    let (dir, key) = (&signed.dir, &signed.key);
    let outcomes = signed.run(&mut client).await;
    let done = archived(&outcomes);
    assert!(done.contains(&old_invoices), "past 120 days: {outcomes:?}");
    assert!(!done.contains(&kept), "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, Outcome::Skipped { partition, reason }
            if *partition == kept && reason.contains("public.invoices (kept 120 days)"))),
        "the invoices' month says why it stays: {outcomes:?}"
    );
    // The order of the kept month stays in the database with its invoice.
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM pgtrail.changes WHERE table_name = 'orders' AND pk->>'id' = '3'"
        )
        .await,
        1
    );
    // The month with orders only, 150 days ago, is gone at 60 days.
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM pgtrail.changes WHERE table_name = 'orders' AND pk->>'id' = '2'"
        )
        .await,
        0
    );
    let problems = pgtrail::archive::partitions::check(&client, &config.retention, Some(dir.path()))
        .await
        .expect("check");
    assert!(
        !problems.iter().any(|p| p.contains("past retention")),
        "check agrees: {problems:?}"
    );

    // Two months later the invoices' month is past 120 days too.
    clock.set("+60d");
    let problems = pgtrail::archive::partitions::check(&client, &config.retention, Some(dir.path()))
        .await
        .expect("check");
    assert!(
        problems
            .iter()
            .any(|p| p.contains(&kept) && p.contains("past retention")),
        "{problems:?}"
    );
    let outcomes = signed.run(&mut client).await;
    assert!(archived(&outcomes).contains(&kept), "{outcomes:?}");
    let report = verify(&mut client, key, Some(dir.path())).await;
    assert!(report.intact(), "{:?}", report.problems);
}

/// The partition holding invoice `id`'s change.
async fn invoice_month(client: &Client, id: i32) -> String {
    let name: String = client
        .query_one(
            "SELECT c.tableoid::regclass::text FROM pgtrail.change AS c
             JOIN pgtrail.audited_table AS a ON a.id = c.table_id
             WHERE a.table_name = 'invoices' AND c.pk = jsonb_build_object('id', $1::integer)",
            &[&id],
        )
        .await
        .expect("the invoice's partition")
        .get(0);
    name.trim_start_matches("pgtrail.").to_string()
}

/// A big month on a small machine: the archive holds the transaction
/// records of one slice of the partition's ids at a time, not the month's.
/// A long transaction opens the month, spans hundreds of others whose ids
/// jump over several slices, and writes again at the end; in a database
/// that does not sort text by its bytes (`C.UTF-8`, when the cluster has
/// it), the server sorts the changed fields. Every archived row carries
/// its own transaction's record and fields, as the database shows them.
#[tokio::test]
async fn a_long_transaction_across_a_big_month_is_archived_with_its_own_records() {
    let (cluster, clock) = cluster_at("-100d");
    let admin = connect_to(&cluster.url("postgres")).await;
    if let Err(e) = admin
        .batch_execute("CREATE DATABASE shop TEMPLATE template0 LOCALE 'C.UTF-8'")
        .await
    {
        eprintln!("no C.UTF-8 locale in this cluster ({e}): the shop sorts text by its bytes");
        admin
            .batch_execute("CREATE DATABASE shop")
            .await
            .expect("create shop");
    }
    let (mut client, config) = audited_shop(&cluster).await;
    let long = connect_to(&cluster.url("shop")).await;
    long.batch_execute(
        "BEGIN; SELECT pgtrail.set_context(actor_id => 'import', reason => 'the long import');
         INSERT INTO orders SELECT g, 'new', g FROM generate_series(100001, 100010) AS g;",
    )
    .await
    .expect("the long transaction starts");
    for n in 1..=400 {
        client
            .batch_execute(&format!(
                "BEGIN; SELECT pgtrail.set_context(actor_id => 'clerk{n}', reason => 'order {n}');
                 INSERT INTO orders VALUES ({n}, 'new', {n});
                 UPDATE orders SET status = 'paid', total = total + 1 WHERE id = {n};
                 COMMIT;"
            ))
            .await
            .expect("an order");
        if n % 100 == 0 {
            // Ids jump past a slice (as they do between other partitions' changes).
            client
                .batch_execute(
                    "SELECT setval(pg_get_serial_sequence('pgtrail.change', 'id'),
                                   nextval(pg_get_serial_sequence('pgtrail.change', 'id')) + 100000)",
                )
                .await
                .expect("ids jump");
        }
    }
    long.batch_execute(
        "INSERT INTO orders SELECT g, 'new', g FROM generate_series(100011, 100100) AS g; COMMIT;",
    )
    .await
    .expect("the long transaction ends");
    let partition = partition_of(&client, 100100).await;
    assert_eq!(partition, partition_of(&client, 100001).await);
    assert!(
        count(
            &client,
            &format!("SELECT max(id) - min(id) FROM pgtrail.{partition}")
        )
        .await
            > 3 * 65_536,
        "the month spans several slices of ids"
    );
    let expected: Vec<serde_json::Value> = client
        .query(
            "SELECT json_build_array(v.id, v.txid, v.op, v.changed_fields, v.actor_id, v.reason, x.backend_pid)
             FROM pgtrail.changes AS v JOIN pgtrail.change AS c ON c.id = v.id
             LEFT JOIN pgtrail.transaction AS x ON x.txid = c.txid AND x.ctx = c.ctx ORDER BY v.id",
            &[],
        )
        .await
        .expect("the database's rows")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(expected.len(), 2 * 400 + 100);

    clock.set("+0d");
    let signed = SignedArchive::new(&config);
    let outcomes = signed.run(&mut client).await;
    assert!(archived(&outcomes).contains(&partition), "{outcomes:?}");
    let rows = read_rows(&signed.dir.path().join(format!("{partition}.parquet"))).expect("read the archive");
    let got: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!([
                r.id,
                r.txid,
                r.op,
                r.changed_fields,
                r.actor_id,
                r.reason,
                r.backend_pid
            ])
        })
        .collect();
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g, e);
    }
    let report = verify(&mut client, &signed.key, Some(signed.dir.path())).await;
    assert!(report.intact(), "{:?}", report.problems);
}

/// The partition holding order `id`'s first change.
async fn partition_of(client: &Client, id: i32) -> String {
    let name: String = client
        .query_one(
            "SELECT c.tableoid::regclass::text FROM pgtrail.change AS c
             WHERE c.pk = jsonb_build_object('id', $1::integer) ORDER BY c.id LIMIT 1",
            &[&id],
        )
        .await
        .expect("the order's partition")
        .get(0);
    name.trim_start_matches("pgtrail.").to_string()
}

/// A database that does not sort text by its bytes (an ICU collation; on
/// PostgreSQL 14, libc's C.UTF-8): each diff-image UPDATE's
/// changed fields are archived in the order `pgtrail.changes` shows them,
/// the database's, which the archive asks the server for once per set of
/// fields instead of sorting every row's in the server.
#[tokio::test]
async fn changed_fields_are_archived_in_the_order_the_database_sorts_them() {
    let (cluster, clock) = cluster_at("-150d");
    let admin = connect_to(&cluster.url("postgres")).await;
    // ICU databases came in PostgreSQL 15; on 14 the order is libc's
    // C.UTF-8 (by code point, as by bytes: the path is run, not the order).
    let version: i32 = admin
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .expect("server version")
        .get(0);
    let icu = version >= 150000;
    let create = if icu {
        "CREATE DATABASE shop LOCALE_PROVIDER icu ICU_LOCALE 'en-US' TEMPLATE template0"
    } else {
        "CREATE DATABASE shop LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8' TEMPLATE template0"
    };
    admin.batch_execute(create).await.expect("create shop");
    let mut client = connect_to(&cluster.url("shop")).await;
    client
        .batch_execute(
            r#"CREATE TABLE orders (id integer PRIMARY KEY, "Zeta" integer, alpha integer, status text)"#,
        )
        .await
        .expect("schema");
    apply(&mut client, CONFIG).await;
    let config = Config::parse(CONFIG, "pgtrail.toml").expect("config");
    pgtrail::archive::partitions::premake(&client, &config.retention)
        .await
        .expect("premake");
    client
        .batch_execute(
            r#"INSERT INTO orders SELECT g, g, g, 'new' FROM generate_series(1, 30) AS g;
               UPDATE orders SET "Zeta" = "Zeta" + 1, alpha = alpha + 1 WHERE id <= 10;
               UPDATE orders SET status = 'paid' WHERE id > 20;
               UPDATE orders SET alpha = 0, status = 'held' WHERE id = 15;"#,
        )
        .await
        .expect("changes");
    clock.set("+0d");
    pgtrail::archive::partitions::premake(&client, &config.retention)
        .await
        .expect("premake now");
    let shown: Vec<(i64, Option<Vec<String>>)> = client
        .query("SELECT id, changed_fields FROM pgtrail.changes ORDER BY id", &[])
        .await
        .expect("the changes")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let both = shown
        .iter()
        .find(|(_, fields)| {
            fields
                .as_ref()
                .is_some_and(|f| f.len() == 2 && f.iter().any(|f| f == "Zeta"))
        })
        .expect("an UPDATE of Zeta and alpha");
    let expected = if icu { ["alpha", "Zeta"] } else { ["Zeta", "alpha"] };
    assert_eq!(
        both.1.as_deref(),
        Some(&expected.map(String::from)[..]),
        "icu: {icu}"
    );

    let archive = SignedArchive::new(&config);
    let outcomes = archive.run(&mut client).await;
    let mut archived: Vec<(i64, Option<Vec<String>>)> = Vec::new();
    for outcome in &outcomes {
        let Outcome::Archived { file, .. } = outcome else {
            panic!("every partition archived: {outcomes:?}");
        };
        let rows = read_rows(&archive.dir.path().join(file)).expect("read the archive");
        archived.extend(rows.into_iter().map(|c| (c.id, c.changed_fields)));
    }
    archived.sort_by_key(|(id, _)| *id);
    assert_eq!(archived, shown);
    let report = verify(&mut client, &archive.key, Some(archive.dir.path())).await;
    assert!(report.intact(), "{:?}", report.problems);
}

/// A month whose changes do not lie in their partition in id order is
/// archived in id order (the archive reads a partition in the order of
/// its blocks and reads it again by id when a change comes before one it
/// has written): two sessions wrote side by side (each takes ids from a
/// cache of its own), and order 1's change was moved (as a rewrite of the
/// table by a tool would move it; here a superuser's UPDATE that changes
/// nothing, the append-only guard off), so that it lies blocks past
/// where the read began. The file holds the database's rows, by id, and
/// verifies.
#[tokio::test]
async fn a_month_not_lying_in_id_order_is_archived_in_id_order() {
    let (cluster, clock) = cluster_at("-100d");
    let admin = connect_to(&cluster.url("postgres")).await;
    admin
        .batch_execute("CREATE DATABASE shop")
        .await
        .expect("create shop");
    let (mut client, config) = audited_shop(&cluster).await;
    let other = connect_to(&cluster.url("shop")).await;
    for round in 0..60 {
        for (n, session) in [&client, &other].into_iter().enumerate() {
            let first = (round * 2 + n) * 1000 + 1;
            session
                .batch_execute(&format!(
                    "BEGIN; SELECT pgtrail.set_context(actor_id => 'clerk{n}', reason => 'round {round}');
                     INSERT INTO orders SELECT g, 'new', g FROM generate_series({first}, {}) AS g;
                     COMMIT;",
                    first + 999
                ))
                .await
                .expect("orders");
        }
    }
    let partition = partition_of(&client, 1).await;
    client
        .batch_execute(&format!(
            "BEGIN; SET LOCAL session_replication_role = replica;
             UPDATE pgtrail.{partition} SET txid = txid WHERE id = (SELECT min(id) FROM pgtrail.{partition});
             COMMIT;"
        ))
        .await
        .expect("order 1's change moved");
    assert_eq!(partition, partition_of(&client, 120_000).await);
    // Out of id order in the blocks: within them, and order 1's change
    // (the least id) past the first 256 blocks and some 65,536 changes
    // more (the first two slices the archive reads: their changes are
    // joined before it comes).
    let below = count(
        &client,
        &format!(
            "SELECT count(*) FROM (SELECT c.id < lag(c.id) OVER (ORDER BY c.ctid) AS below
             FROM pgtrail.{partition} AS c) AS o WHERE o.below"
        ),
    )
    .await;
    assert!(below > 1, "{below} changes below the one before them");
    let block = count(
        &client,
        &format!(
            "SELECT ((c.ctid::text::point)[0])::bigint FROM pgtrail.{partition} AS c
             WHERE c.id = (SELECT min(id) FROM pgtrail.{partition})"
        ),
    )
    .await;
    assert!(block >= 256, "order 1's change lies in block {block}");
    let before = count(
        &client,
        &format!(
            "SELECT count(*) FROM pgtrail.{partition} AS c
             WHERE c.ctid < (SELECT m.ctid FROM pgtrail.{partition} AS m
                             WHERE m.id = (SELECT min(id) FROM pgtrail.{partition}))"
        ),
    )
    .await;
    assert!(before > 100_000, "{before} changes lie before order 1's");
    let expected: Vec<(i64, Option<String>, Option<String>)> = client
        .query(
            &format!(
                "SELECT c.id, c.new_values::text, x.reason FROM pgtrail.{partition} AS c
                      LEFT JOIN pgtrail.transaction AS x ON x.txid = c.txid AND x.ctx = c.ctx ORDER BY c.id"
            ),
            &[],
        )
        .await
        .expect("the database's rows")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(expected.len(), 120_000);

    clock.set("+0d");
    let signed = SignedArchive::new(&config);
    let outcomes = signed.run(&mut client).await;
    assert!(archived(&outcomes).contains(&partition), "{outcomes:?}");
    let rows = read_rows(&signed.dir.path().join(format!("{partition}.parquet"))).expect("read the archive");
    let got: Vec<(i64, Option<String>, Option<String>)> =
        rows.into_iter().map(|r| (r.id, r.new_values, r.reason)).collect();
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g, e);
    }
    let report = verify(&mut client, &signed.key, Some(signed.dir.path())).await;
    assert!(report.intact(), "{:?}", report.problems);
    assert_eq!(report.archived_checked, 120_000);
}
