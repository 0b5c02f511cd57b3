//! Runs `pgbench` against the throwaway cluster and reads its throughput.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use tokio::process::Command;

/// Where pgbench connects, and with which binary.
#[derive(Debug, Clone)]
pub struct Pgbench {
    /// Path of the `pgbench` executable.
    pub program: PathBuf,
    /// Server host (an address or a socket directory).
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Database user.
    pub user: String,
}

/// One timed pgbench run: `-c clients -j threads -T seconds -M prepared -n`.
#[derive(Debug, Clone)]
pub struct Run<'a> {
    /// Database to run in.
    pub dbname: &'a str,
    /// Custom script file (`-f`); the built-in TPC-B-like script when `None`.
    pub script: Option<&'a Path>,
    /// Client connections (`-c`).
    pub clients: u32,
    /// Worker threads (`-j`).
    pub threads: u32,
    /// Duration in seconds (`-T`).
    pub seconds: u64,
}

/// What a timed run reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// Transactions per second, without initial connection time.
    pub tps: f64,
    /// Transactions processed.
    pub transactions: u64,
}

impl Pgbench {
    /// pgbench of `cluster`'s server binaries, connecting to it as postgres.
    pub fn on(cluster: &pgtrail_cluster::Cluster) -> Pgbench {
        Pgbench {
            program: cluster.program("pgbench"),
            host: cluster.host().to_owned(),
            port: cluster.port(),
            user: "postgres".to_owned(),
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.arg("-h")
            .arg(&self.host)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-U")
            .arg(&self.user)
            .kill_on_drop(true);
        cmd
    }

    /// `pgbench -i -s scale -q dbname`: creates and fills the TPC-B-like tables.
    pub async fn initialize(&self, dbname: &str, scale: u32) -> Result<()> {
        let mut cmd = self.command();
        cmd.arg("-i")
            .arg("-s")
            .arg(scale.to_string())
            .arg("-q")
            .arg(dbname);
        let output = cmd
            .output()
            .await
            .with_context(|| format!("run {}", self.program.display()))?;
        if !output.status.success() {
            bail!(
                "pgbench -i failed ({}):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// Runs the benchmark and returns its throughput.
    pub async fn run(&self, run: &Run<'_>) -> Result<Outcome> {
        let mut cmd = self.command();
        cmd.arg("-c")
            .arg(run.clients.to_string())
            .arg("-j")
            .arg(run.threads.to_string())
            .arg("-T")
            .arg(run.seconds.to_string())
            .arg("-M")
            .arg("prepared")
            .arg("-n");
        if let Some(script) = run.script {
            cmd.arg("-f").arg(script);
        }
        cmd.arg(run.dbname);
        let output = cmd
            .output()
            .await
            .with_context(|| format!("run {}", self.program.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            bail!("pgbench failed ({}):\n{stdout}\n{stderr}", output.status);
        }
        parse_outcome(&stdout).with_context(|| format!("no tps in pgbench output:\n{stdout}\n{stderr}"))
    }
}

/// Reads `tps = N (without initial connection time)` and
/// `number of transactions actually processed: N` from pgbench's report.
pub fn parse_outcome(report: &str) -> Option<Outcome> {
    let mut tps = None;
    let mut transactions = None;
    for line in report.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("tps = ") {
            if rest.contains("without initial connection time") || tps.is_none() {
                tps = rest.split_whitespace().next()?.parse::<f64>().ok();
            }
        } else if let Some(rest) = line.strip_prefix("number of transactions actually processed: ") {
            transactions = rest.split(['/', ' ']).next()?.parse::<u64>().ok();
        }
    }
    Some(Outcome {
        tps: tps?,
        transactions: transactions.unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pgbench_15_report() {
        let report = "\
transaction type: <builtin: TPC-B (sort of)>
scaling factor: 10
query mode: prepared
number of clients: 4
number of threads: 2
maximum number of tries: 1
duration: 5 s
number of transactions actually processed: 6789
number of failed transactions: 0 (0.000%)
latency average = 2.946 ms
initial connection time = 10.133 ms
tps = 1357.812345 (without initial connection time)
";
        let outcome = parse_outcome(report).expect("parses");
        assert_eq!(outcome.transactions, 6789);
        assert!((outcome.tps - 1357.812345).abs() < 1e-9);
    }

    #[test]
    fn missing_tps_is_none() {
        assert_eq!(parse_outcome("nothing here"), None);
    }
}
