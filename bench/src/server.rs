//! The throwaway PostgreSQL server of a benchmark run: started with the
//! run's settings, and connections to it.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use pgtrail_cluster::{Cluster, ClusterOptions};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

/// Starts a throwaway cluster with these server settings (the rest default).
pub fn start(settings: &[(&str, &str)]) -> Result<Cluster> {
    Cluster::start(ClusterOptions {
        settings: settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    })
    .context("start the throwaway PostgreSQL cluster")
}

/// How long to retry a connection the server refuses because it is still
/// starting up.
const STARTUP_GRACE: Duration = Duration::from_secs(30);

/// A connection to database `dbname` of the cluster; its connection task
/// runs on the current runtime.
pub async fn connect(cluster: &Cluster, dbname: &str) -> Result<Client> {
    let url = cluster.url(dbname);
    let deadline = Instant::now() + STARTUP_GRACE;
    // A server may refuse sessions for a moment after it starts ("the
    // database system is starting up"): retry that briefly.
    let (client, connection) = loop {
        match tokio_postgres::connect(&url, NoTls).await {
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
