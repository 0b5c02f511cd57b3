//! A throwaway NATS server with JetStream for the NATS sink's tests:
//! Debian's `nats-server` (`PGTRAIL_NATS_SERVER`, else `nats-server` on
//! `PATH`, else `/usr/sbin/nats-server`) started with `-js` on a free port
//! of 127.0.0.1 and a fresh store directory.
//!
//! Like [`crate::Cluster`], it cannot outlive the test process: it runs
//! under a `/bin/sh` supervisor whose stdin is a pipe only this process
//! holds; at end-of-file (the [`Nats`] dropped, or the process gone however
//! it ended) the supervisor stops the server and removes its directory.

use std::io;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// The environment variable naming the `nats-server` binary.
pub const NATS_SERVER_ENV: &str = "PGTRAIL_NATS_SERVER";

/// A running `nats-server -js`.
pub struct Nats {
    port: u16,
    child: Child,
    lifeline: Option<ChildStdin>,
}

/// The `nats-server` binary, if installed.
pub fn nats_server() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(NATS_SERVER_ENV) {
        return Some(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nats-server"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| Some(PathBuf::from("/usr/sbin/nats-server")).filter(|p| p.is_file()))
}

impl Nats {
    /// Starts a server and waits until it accepts connections.
    pub fn start() -> io::Result<Nats> {
        let binary = nats_server().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("nats-server not found: install Debian's nats-server or set {NATS_SERVER_ENV}"),
            )
        })?;
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port();
        let store = std::env::temp_dir().join(format!("pgtrail-nats-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&store)?;
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(
                "\"$1\" -js -a 127.0.0.1 -p \"$2\" -sd \"$3\" </dev/null >\"$3/server.log\" 2>&1 & pid=$!; \
                 cat >/dev/null; kill $pid; wait $pid; rm -rf \"$3\"",
            )
            .arg("sh")
            .arg(&binary)
            .arg(port.to_string())
            .arg(&store)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let lifeline = child.stdin.take();
        let nats = Nats {
            port,
            child,
            lifeline,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(store.join("server.log")).unwrap_or_default();
                return Err(io::Error::other(format!(
                    "nats-server did not start on port {port}:\n{log}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(nats)
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        drop(self.lifeline.take());
        let _ = self.child.wait();
    }
}
