//! The PostgreSQL server of a benchmark run: a throwaway cluster started
//! with the run's settings (or kept running for later runs), the address
//! of one kept by an earlier run, and connections to it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use pgtrail_cluster::{Cluster, ClusterOptions};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

/// Starts a throwaway cluster with these server settings (the rest default).
pub fn start(settings: &[(&str, &str)]) -> Result<Cluster> {
    start_kept(settings, false)
}

/// Starts a cluster with these server settings; with `keep`, it goes on
/// running, its directory in place, after this process ends.
pub fn start_kept(settings: &[(&str, &str)], keep: bool) -> Result<Cluster> {
    Cluster::start(ClusterOptions {
        settings: settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        keep,
        ..Default::default()
    })
    .context("start the throwaway PostgreSQL cluster")
}

/// Where a benchmark's server is: a cluster this run started, or one an
/// earlier run kept.
#[derive(Debug, Clone)]
pub struct Db {
    /// `postgres://user@host:port`, without a database.
    base: String,
    log_file: PathBuf,
}

impl Db {
    /// The cluster this run started.
    pub fn of(cluster: &Cluster) -> Db {
        let url = cluster.url("postgres");
        Db {
            base: url.trim_end_matches("/postgres").to_owned(),
            log_file: cluster.log_file(),
        }
    }

    /// A server kept by an earlier run, at `url`
    /// (`postgres://postgres@127.0.0.1:PORT`, a database name after it is
    /// ignored); its log is `server.log` in its data directory, as a
    /// cluster writes it.
    pub async fn kept(url: &str) -> Result<Db> {
        let Some((scheme, rest)) = url.split_once("://") else {
            bail!("--reuse {url:?}: expected postgres://USER@HOST:PORT (the URL a --keep run printed)");
        };
        let authority = rest.split(['/', '?']).next().unwrap_or(rest);
        let db = Db {
            base: format!("{scheme}://{authority}"),
            log_file: PathBuf::new(),
        };
        let client = connect_url(&db.url("postgres")).await?;
        let data: String = client
            .query_one("SELECT current_setting('data_directory')", &[])
            .await
            .context("read the kept server's data directory")?
            .get(0);
        Ok(Db {
            log_file: PathBuf::from(data).join("server.log"),
            ..db
        })
    }

    /// The URL of database `dbname`.
    pub fn url(&self, dbname: &str) -> String {
        format!("{}/{dbname}", self.base)
    }

    /// The server's log file.
    pub fn log_file(&self) -> PathBuf {
        self.log_file.clone()
    }
}

/// How long to retry a connection the server refuses because it is still
/// starting up.
const STARTUP_GRACE: Duration = Duration::from_secs(30);

/// A connection to database `dbname` of the cluster; its connection task
/// runs on the current runtime.
pub async fn connect(cluster: &Cluster, dbname: &str) -> Result<Client> {
    connect_url(&cluster.url(dbname)).await
}

/// A connection to the database at `url`; its connection task runs on the
/// current runtime.
pub async fn connect_url(url: &str) -> Result<Client> {
    let deadline = Instant::now() + STARTUP_GRACE;
    // A server may refuse sessions for a moment after it starts ("the
    // database system is starting up"): retry that briefly.
    let (client, connection) = loop {
        match tokio_postgres::connect(url, NoTls).await {
            Err(error)
                if error.code() == Some(&SqlState::CANNOT_CONNECT_NOW) && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            outcome => break outcome.with_context(|| format!("connect to {url}"))?,
        }
    };
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("connection error: {error}");
        }
    });
    Ok(client)
}
