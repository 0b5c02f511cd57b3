//! Test helpers: every integration test gets its own fresh database.
//!
//! [`TestDb::new`] creates a uniquely named database (`pgtrail_test_<16 hex>`)
//! and connects to it; dropping the [`TestDb`] drops the database.
//!
//! The server comes from `PGTRAIL_TEST_URL` (an admin URL, set by
//! `scripts/test` through `with-cluster`, or by CI). When that is unset, the
//! first `TestDb` in a test process starts one private fast [`Cluster`] that
//! the rest of the process shares. It lives in a `static`, which is never
//! dropped; it still cannot outlive the process, because its supervisor stops
//! the server and deletes its directory as soon as this process exits, however
//! it exits (see the `pgtrail_cluster` crate docs).

pub mod nats;
pub mod tls;

use std::env;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

pub use pgtrail_cluster::{Cluster, ClusterOptions};

/// The environment variable holding the admin URL of the server to test on.
pub const TEST_URL_ENV: &str = "PGTRAIL_TEST_URL";

/// How long dropping a test database may take before we give up on it.
const DROP_TIMEOUT: Duration = Duration::from_secs(30);

/// The private cluster of this test process, when `PGTRAIL_TEST_URL` is unset.
static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// The directory of the PostgreSQL server binaries (`initdb`, `postgres`),
/// if installed. Honors `PGTRAIL_PG_BIN`.
pub fn pg_bin_dir() -> Option<PathBuf> {
    pgtrail_cluster::find_bin_dir()
}

/// A client program (`psql`, `pgbench`): beside the server binaries, else on
/// `PATH` (server builds without client programs use the installed ones).
pub fn program(name: &str) -> PathBuf {
    pgtrail_cluster::client_program(name, pg_bin_dir().as_deref())
}

/// The admin URL of the server tests run on: `PGTRAIL_TEST_URL`, or this
/// process's private cluster (started on first use).
///
/// # Panics
///
/// If the private cluster cannot be started.
pub fn admin_url() -> String {
    if let Some(url) = env::var(TEST_URL_ENV).ok().filter(|url| !url.is_empty()) {
        return url;
    }
    let cluster = CLUSTER.get_or_init(|| {
        Cluster::start(ClusterOptions {
            fast: true,
            ..ClusterOptions::default()
        })
        .map_err(|error| error.to_string())
    });
    match cluster {
        Ok(cluster) => cluster.url("postgres"),
        Err(error) => panic!(
            "cannot start a throwaway PostgreSQL cluster for the tests \
             (alternatively set {TEST_URL_ENV} to an admin URL of a server): {error}"
        ),
    }
}

/// A fresh database for one test, dropped (with `FORCE`) when this is dropped.
pub struct TestDb {
    /// A connection to the test database.
    pub client: Client,
    url: String,
    name: String,
    admin_url: String,
}

impl TestDb {
    /// Creates a fresh database and connects [`TestDb::client`] to it.
    ///
    /// Must be called inside a tokio runtime: the connection task is spawned
    /// on it.
    ///
    /// # Panics
    ///
    /// If no server is available or the database cannot be created.
    pub async fn new() -> TestDb {
        TestDb::created_with("").await
    }

    /// Like [`TestDb::new`], with `options` added to its `CREATE DATABASE`
    /// (`ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'`, say).
    ///
    /// # Panics
    ///
    /// If no server is available or the database cannot be created.
    pub async fn created_with(options: &str) -> TestDb {
        let admin_url = admin_url();
        let name = format!("pgtrail_test_{:016x}", rand::random::<u64>());
        let admin = connect_to(&admin_url).await;
        admin
            .batch_execute(&format!(
                "CREATE DATABASE \"{name}\" TEMPLATE template0 {options}"
            ))
            .await
            .unwrap_or_else(|error| panic!("cannot create test database {name}: {error}"));
        drop(admin);
        let url = with_dbname(&admin_url, &name);
        let client = connect_to(&url).await;
        TestDb {
            client,
            url,
            name,
            admin_url,
        }
    }

    /// Opens another session on the test database.
    ///
    /// Runs `sql` in one transaction with `session_replication_role =
    /// replica`: as a superuser past every ordinary trigger, so past
    /// pgtrail's capture and its append-only guards (edits nobody records).
    ///
    /// # Panics
    ///
    /// If the SQL fails.
    pub async fn behind_the_triggers(&self, sql: &str) {
        self.client
            .batch_execute(&format!(
                "BEGIN; SET LOCAL session_replication_role = replica; {sql}; COMMIT;"
            ))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }

    /// # Panics
    ///
    /// If the connection fails.
    pub async fn connect(&self) -> Client {
        connect_to(&self.url).await
    }

    /// The server's version as a number: 150012 for 15.12, 180004 for 18.4.
    ///
    /// # Panics
    ///
    /// If the server cannot be asked.
    pub async fn server_version(&self) -> i32 {
        let version: String = self
            .client
            .query_one("SELECT current_setting('server_version_num')", &[])
            .await
            .expect("server_version_num")
            .get(0);
        version.parse().expect("server_version_num is a number")
    }

    /// Whether the server is at least `min` (as [`TestDb::server_version`]);
    /// if not, says on standard error that the test is skipped and why, so
    /// a test of a newer feature returns early on older servers.
    pub async fn supports(&self, min: i32, feature: &str) -> bool {
        let version = self.server_version().await;
        if version < min {
            eprintln!(
                "skipped: {feature} needs PostgreSQL {} or newer; this server is {}.{}",
                min / 10000,
                version / 10000,
                version % 10000
            );
            return false;
        }
        true
    }

    /// The URL of the test database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The name of the test database.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The admin URL of the server the test database lives on.
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Tests run on current-thread runtimes, where we cannot block on
        // async work, so drop the database from a thread with its own runtime.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropper = std::thread::Builder::new()
            .name(format!("drop {name}"))
            .spawn(move || drop_database(&admin_url, &name));
        let outcome = match dropper {
            Ok(handle) => match handle.join() {
                Ok(result) => result,
                Err(_) => Err("the dropping thread panicked".to_owned()),
            },
            Err(error) => Err(format!("cannot spawn a thread: {error}")),
        };
        if let Err(error) = outcome {
            eprintln!(
                "pgtrail-testkit: cannot drop test database {}: {error}",
                self.name
            );
        }
    }
}

fn drop_database(admin_url: &str, name: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot build a tokio runtime: {error}"))?;
    runtime.block_on(async {
        let work = async {
            let (client, connection) = tokio_postgres::connect(admin_url, NoTls)
                .await
                .map_err(|error| format!("cannot connect to {admin_url}: {error}"))?;
            let connection = tokio::spawn(connection);
            let result = client
                .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await
                .map_err(|error| error.to_string());
            drop(client);
            let _ = connection.await;
            result
        };
        tokio::time::timeout(DROP_TIMEOUT, work)
            .await
            .unwrap_or_else(|_| Err(format!("timed out after {DROP_TIMEOUT:?}")))
    })
}

/// A connection to `url` (retried while a server starts up).
///
/// # Panics
///
/// If no connection can be made.
pub async fn connect_to(url: &str) -> Client {
    // A server that has just started may still refuse connections for a
    // moment ("the database system is starting up"): retry for a few seconds.
    let mut attempt = 0;
    let (client, connection) = loop {
        match tokio_postgres::connect(url, NoTls).await {
            Ok(pair) => break pair,
            Err(error) if attempt < 50 => {
                attempt += 1;
                pause_before_retry(error).await;
            }
            Err(error) => panic!("cannot connect to {url}: {error} ({error:?})"),
        }
    };
    tokio::spawn(async move {
        // Errors here surface on the client; a forced DROP DATABASE at the
        // end of a test terminates the session on purpose.
        let _ = connection.await;
    });
    client
}

/// `url` with its database replaced by `dbname`. Handles `postgres://` and
/// `postgresql://` URLs and `key=value` connection strings.
fn with_dbname(url: &str, dbname: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        // key=value: a later dbname overrides an earlier one.
        return format!("{url} dbname={dbname}");
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let after_authority = &rest[authority_end..];
    let query = after_authority.find('?').map_or("", |i| &after_authority[i..]);
    format!("{}{}/{dbname}{query}", &url[..scheme_end], &rest[..authority_end])
}

/// Waits a little before the next connection attempt.
async fn pause_before_retry(_error: tokio_postgres::Error) {
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
}

#[cfg(test)]
mod tests {
    use super::with_dbname;

    #[test]
    fn replaces_the_database_in_urls() {
        let cases = [
            (
                "postgres://postgres@127.0.0.1:5433/postgres",
                "postgres://postgres@127.0.0.1:5433/t1",
            ),
            (
                "postgresql://u:p@h/db?sslmode=disable",
                "postgresql://u:p@h/t1?sslmode=disable",
            ),
            ("postgres://h:1", "postgres://h:1/t1"),
            (
                "postgres://h:1?application_name=x",
                "postgres://h:1/t1?application_name=x",
            ),
            (
                "host=/tmp port=5 dbname=postgres",
                "host=/tmp port=5 dbname=postgres dbname=t1",
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(with_dbname(url, "t1"), expected, "{url}");
        }
    }
}
