//! Integration tests for `pgtrail-cluster`: starting, using and stopping a
//! throwaway cluster, startup errors, the `with-cluster` binary, and that a
//! cluster whose owning process is SIGKILLed does not leak.

use std::env;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use pgtrail_cluster::{Cluster, ClusterError, ClusterOptions};

fn fast() -> ClusterOptions {
    ClusterOptions {
        fast: true,
        ..ClusterOptions::default()
    }
}

fn accepts_tcp(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

/// Polls until `done` holds, for up to 30 s.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(100));
    }
}

fn psql(cluster: &Cluster, sql: &str) -> String {
    let output = Command::new(cluster.program("psql"))
        .args(["-h", cluster.host(), "-p", &cluster.port().to_string()])
        .args(["-U", "postgres", "-d", "postgres", "-X", "-A", "-t", "-c", sql])
        .output()
        .expect("run psql");
    assert!(
        output.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("psql output is UTF-8")
}

#[test]
fn start_query_and_drop() {
    let cluster = Cluster::start(fast()).expect("start cluster");
    assert_eq!(psql(&cluster, "show wal_level").trim(), "logical");
    assert_eq!(psql(&cluster, "show fsync").trim(), "off");
    assert_eq!(
        cluster.url("db1"),
        format!("postgres://postgres@127.0.0.1:{}/db1", cluster.port())
    );
    // The Unix socket works too.
    let socket = cluster.socket_dir().join(format!(".s.PGSQL.{}", cluster.port()));
    assert!(socket.exists(), "{} missing", socket.display());
    assert!(cluster.log_file().starts_with(cluster.data_dir()));

    let data_dir = cluster.data_dir().to_owned();
    let socket_dir = cluster.socket_dir().to_owned();
    let port = cluster.port();
    drop(cluster);
    assert!(!data_dir.exists(), "{} still exists", data_dir.display());
    assert!(!socket_dir.exists(), "{} still exists", socket_dir.display());
    assert!(!accepts_tcp(port), "port {port} still accepts connections");
}

#[test]
fn user_settings_apply_and_bad_ones_report_the_server_log() {
    let cluster = Cluster::start(ClusterOptions {
        settings: vec![("work_mem".into(), "7MB".into())],
        ..fast()
    })
    .expect("start cluster");
    assert_eq!(psql(&cluster, "show work_mem").trim(), "7MB");
    cluster.stop().expect("stop cluster");

    let error = Cluster::start(ClusterOptions {
        settings: vec![("no_such_setting".into(), "1".into())],
        ..fast()
    })
    .expect_err("a bad setting must fail");
    assert!(
        matches!(error, ClusterError::Startup { .. }),
        "unexpected error: {error}"
    );
    let message = error.to_string();
    assert!(message.contains("no_such_setting"), "{message}");
}

#[test]
fn with_cluster_runs_the_command_and_passes_its_exit_code() {
    let output = Command::new(env!("CARGO_BIN_EXE_with-cluster"))
        .args(["--", "sh", "-c"])
        .arg(r#"psql -X -Atc "show wal_level" "$PGTRAIL_TEST_URL" && exit 7"#)
        .output()
        .expect("run with-cluster");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(7), "stderr: {stderr}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "logical");
    assert!(
        stderr.contains("throwaway PostgreSQL cluster at postgres://"),
        "{stderr}"
    );
}

const OWNER_ENV: &str = "PGTRAIL_CLUSTER_TEST_OWNER";

/// Not a test by itself: `killed_owner_does_not_leak_the_server` runs this in
/// a child process, which starts a cluster, reports it and waits to be killed.
#[test]
#[ignore = "helper process for killed_owner_does_not_leak_the_server"]
fn owner_process() {
    if env::var_os(OWNER_ENV).is_none() {
        return;
    }
    let cluster = Cluster::start(fast()).expect("start cluster");
    println!("CLUSTER {} {}", cluster.port(), cluster.socket_dir().display());
    thread::sleep(Duration::from_secs(120));
}

#[test]
fn killed_owner_does_not_leak_the_server() {
    let mut owner = Command::new(env::current_exe().expect("current_exe"))
        .args(["--exact", "owner_process", "--ignored", "--nocapture"])
        .env(OWNER_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn owner process");
    let stdout = owner.stdout.take().expect("owner stdout");
    let line = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|line| line.starts_with("CLUSTER "));
    let Some(line) = line else {
        let _ = owner.kill();
        let _ = owner.wait();
        panic!("owner process did not report a cluster");
    };
    let mut fields = line.split(' ').skip(1);
    let port: u16 = fields.next().and_then(|p| p.parse().ok()).expect("port");
    let dir = PathBuf::from(fields.next().expect("dir"));
    assert!(accepts_tcp(port));

    owner.kill().expect("SIGKILL the owner");
    owner.wait().expect("reap the owner");

    eventually("the server stops", || !accepts_tcp(port));
    eventually("the cluster directory is removed", || !Path::new(&dir).exists());
}

#[test]
fn kept_cluster_survives_drop_and_stop_still_works() {
    let kept = Cluster::start(ClusterOptions { keep: true, ..fast() }).expect("start kept cluster");
    let port = kept.port();
    let data_dir = kept.data_dir().to_owned();
    let socket_dir = kept.socket_dir().to_owned();
    drop(kept);
    assert!(accepts_tcp(port), "a kept cluster must survive drop");
    assert!(data_dir.exists());
    // Clean up by hand: SIGINT the postmaster, then remove the directory.
    let pid_file = std::fs::read_to_string(data_dir.join("postmaster.pid")).expect("postmaster.pid");
    let pid = pid_file.lines().next().expect("pid line").trim().to_owned();
    let status = Command::new("sh")
        .args(["-c", "kill -INT \"$1\"", "kill", &pid])
        .status()
        .expect("run kill");
    assert!(status.success());
    eventually("the kept server stops", || !accepts_tcp(port));
    eventually("the kept server removes its pid file", || {
        !data_dir.join("postmaster.pid").exists()
    });
    std::fs::remove_dir_all(&socket_dir).expect("remove kept cluster directory");

    // stop() stops even a kept cluster.
    let kept = Cluster::start(ClusterOptions { keep: true, ..fast() }).expect("start kept cluster");
    let port = kept.port();
    let socket_dir = kept.socket_dir().to_owned();
    kept.stop().expect("stop kept cluster");
    assert!(!accepts_tcp(port));
    assert!(!socket_dir.exists());
}
