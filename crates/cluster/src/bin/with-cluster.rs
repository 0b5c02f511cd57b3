//! `with-cluster [--] COMMAND [ARGS...]`: runs COMMAND against a throwaway
//! PostgreSQL cluster.
//!
//! Starts a fast (non-durable) cluster, runs COMMAND with
//! `PGTRAIL_TEST_URL=postgres://postgres@127.0.0.1:PORT/postgres` and
//! `PGTRAIL_PG_BIN=<server binary dir>` in its environment, stops the cluster
//! and exits with COMMAND's exit code. `scripts/test` uses it to give the
//! whole test suite one server.
//!
//! On Ctrl-C the terminal interrupts both COMMAND and this program; the
//! cluster's supervisor notices that we are gone and stops the server and
//! removes its directory (see the `pgtrail_cluster` crate docs).

use std::env;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::process::{self, Command};

use pgtrail_cluster::{BIN_DIR_ENV, Cluster, ClusterOptions};

const USAGE: &str = "usage: with-cluster [--] COMMAND [ARGS...]\n\
    Runs COMMAND with PGTRAIL_TEST_URL pointing at a throwaway PostgreSQL cluster \
    (and PGTRAIL_PG_BIN at the server binaries), then stops the cluster and exits \
    with COMMAND's exit code.";

/// The environment variable with the admin URL handed to COMMAND.
const TEST_URL_ENV: &str = "PGTRAIL_TEST_URL";

fn main() {
    let mut args: Vec<OsString> = env::args_os().skip(1).collect();
    match args.first().and_then(|a| a.to_str()) {
        Some("--") => {
            args.remove(0);
        }
        Some("-h" | "--help") => {
            println!("{USAGE}");
            return;
        }
        _ => {}
    }
    if args.is_empty() {
        eprintln!("{USAGE}");
        process::exit(2);
    }
    process::exit(run(&args));
}

fn run(args: &[OsString]) -> i32 {
    let cluster = match Cluster::start(ClusterOptions {
        fast: true,
        ..ClusterOptions::default()
    }) {
        Ok(cluster) => cluster,
        Err(error) => {
            eprintln!("with-cluster: {error}");
            return 1;
        }
    };
    let url = cluster.url("postgres");
    eprintln!(
        "with-cluster: throwaway PostgreSQL cluster at {url} (socket dir {}, data dir {}, binaries {}); {TEST_URL_ENV} is set",
        cluster.socket_dir().display(),
        cluster.data_dir().display(),
        cluster.bin_dir().display(),
    );
    let status = Command::new(&args[0])
        .args(&args[1..])
        .env(TEST_URL_ENV, &url)
        .env(BIN_DIR_ENV, cluster.bin_dir())
        .status();
    let code = match status {
        Ok(status) => status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        Err(error) => {
            eprintln!("with-cluster: cannot run {}: {error}", args[0].to_string_lossy());
            127
        }
    };
    if let Err(error) = cluster.stop() {
        eprintln!("with-cluster: {error}");
        if code == 0 {
            return 1;
        }
    }
    code
}
