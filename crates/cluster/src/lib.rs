//! A throwaway PostgreSQL cluster, started from the installed server binaries,
//! for tests, benchmarks and the demo.
//!
//! [`Cluster::start`] runs `initdb` into a fresh directory `/tmp/pgtrail-XXXXXX`
//! and starts `postgres` on it. The server listens on a Unix socket in that
//! directory and on `127.0.0.1` at a free TCP port, with `wal_level=logical`
//! and trust authentication for the superuser `postgres`. When we run as root
//! the server runs as the `postgres` OS user, since PostgreSQL refuses root.
//!
//! # Shutdown that cannot leak
//!
//! Unless [`ClusterOptions::keep`] is set, `postgres` is not our child: it runs
//! under a tiny `/bin/sh` supervisor whose stdin is a pipe that only this
//! process holds open (the "lifeline"; the pipe is close-on-exec, so no other
//! program we start inherits it). The supervisor waits for end-of-file on that
//! pipe, then sends the server SIGINT (fast shutdown), waits for it to exit and
//! removes the cluster directory. End-of-file arrives when the [`Cluster`] is
//! dropped (including during a panic's unwinding) *and* when this process ends
//! in any other way: `std::process::exit`, a `static` that is never dropped,
//! SIGKILL, a crash. The supervisor runs in its own process group, so Ctrl-C in
//! a terminal does not kill it before it has cleaned up.

mod binaries;
mod user;

use std::fmt;
use std::fs::{self, File};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

pub use binaries::{BIN_DIR_ENV, client_program, find_bin_dir, pg_bin_dir};

use user::Account;

/// How long to wait for the server to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for the server to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// The database superuser created by `initdb`.
const SUPERUSER: &str = "postgres";
/// The address the server listens on besides its Unix socket.
const HOST: &str = "127.0.0.1";
/// Server log, inside the data directory.
const LOG_FILE: &str = "server.log";
/// Written by the supervisor (into the cluster directory) when `postgres` exits.
const EXITED_MARKER: &str = "server.exited";
/// The TLS files written into the data directory.
const TLS_CERT: &str = "server.crt";
const TLS_KEY: &str = "server.key";
const TLS_CLIENT_CA: &str = "client_ca.crt";
/// How many log lines to quote in a startup error.
const LOG_TAIL_LINES: usize = 30;
/// Attempts to start on a fresh free port when another process grabbed ours.
const PORT_ATTEMPTS: u32 = 3;

/// The supervisor: `$1` is the cluster directory, the rest the `postgres`
/// command line. Its stdin is the lifeline pipe (see the crate docs).
const SUPERVISOR: &str = r#"
trap '' HUP INT
root=$1
shift
exec 3<&0 </dev/null
"$@" 3<&- &
pg=$!
echo "$pg" >"$root/server.pid"
{
    cat <&3 >/dev/null
    [ -f "$root/server.exited" ] || kill -INT "$(cat "$root/server.pid")" 2>/dev/null
} &
exec 3<&-
while :; do
    wait "$pg"
    status=$?
    # Cluster::restart: the server stopped in order, to start again.
    [ -f "$root/restart" ] || break
    rm -f "$root/restart"
    "$@" &
    pg=$!
    echo "$pg" >"$root/server.pid"
done
echo "$status" >"$root/server.exited"
wait
rm -rf "$root"
"#;

/// How to start a [`Cluster`].
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Extra server settings, passed as `postgres -c name=value` after the
    /// built-in ones (so they win).
    pub settings: Vec<(String, String)>,
    /// Leave the server running and its directory in place when the
    /// [`Cluster`] is dropped or this process exits.
    pub keep: bool,
    /// Trade durability for speed (`fsync`, `synchronous_commit` and
    /// `full_page_writes` off, `initdb --no-sync`). For tests.
    pub fast: bool,
    /// TCP port on 127.0.0.1; a free one is picked when `None`.
    pub port: Option<u16>,
    /// Serve TLS (`ssl = on`) with this certificate and key.
    pub tls: Option<ServerTls>,
    /// `pg_hba.conf` lines placed before initdb's (the first match wins),
    /// e.g. `hostssl all tls_only 127.0.0.1/32 trust`.
    pub hba: Vec<String>,
    /// Extra environment variables of the server process (e.g. `LD_PRELOAD`
    /// and `FAKETIME_TIMESTAMP_FILE`, to run it at another time).
    pub env: Vec<(String, String)>,
}

/// The server side of TLS, as PEM text.
#[derive(Debug, Clone, Default)]
pub struct ServerTls {
    /// The server's certificate (and its chain).
    pub cert_pem: String,
    /// The server's private key.
    pub key_pem: String,
    /// CAs whose client certificates the server accepts (`ssl_ca_file`).
    pub client_ca_pem: Option<String>,
}

/// Why a cluster could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No directory with `initdb` and `postgres` was found.
    #[error(
        "PostgreSQL server binaries (initdb, postgres) not found{}; install them \
         (Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql@16) \
         or set {BIN_DIR_ENV} to their directory",
        looked_in(.searched)
    )]
    BinariesNotFound {
        /// The directories that were looked at.
        searched: Vec<PathBuf>,
    },
    /// We are root, and there is no `postgres` OS user to run the server as.
    #[error(
        "PostgreSQL refuses to run as root and there is no `postgres` OS user to run it as; \
         create one (e.g. `useradd --system --user-group --home-dir /var/lib/postgresql postgres`) \
         or run as a non-root user"
    )]
    NoServerUser,
    /// An operating-system operation failed.
    #[error("could not {action}: {error}")]
    Io {
        /// What was being done, e.g. "run /usr/lib/postgresql/15/bin/initdb".
        action: String,
        /// The underlying error.
        error: io::Error,
    },
    /// `initdb` exited unsuccessfully.
    #[error("initdb failed ({status}):\n{output}")]
    Initdb {
        /// Its exit status.
        status: ExitStatus,
        /// What it printed.
        output: String,
    },
    /// The server exited or did not accept connections in time.
    #[error("PostgreSQL server did not start: {reason}; last lines of its log:\n{log_tail}")]
    Startup {
        /// What went wrong.
        reason: String,
        /// The end of the server log.
        log_tail: String,
    },
    /// The server did not stop in time and was killed.
    #[error("PostgreSQL server in {} did not stop within {:?}; killed it", .data_dir.display(), STOP_TIMEOUT)]
    StopTimeout {
        /// The cluster's data directory.
        data_dir: PathBuf,
    },
}

fn looked_in(searched: &[PathBuf]) -> String {
    if searched.is_empty() {
        return String::new();
    }
    let dirs: Vec<String> = searched.iter().map(|d| d.display().to_string()).collect();
    format!(" (looked in: {})", dirs.join(", "))
}

fn io_error(action: impl fmt::Display) -> impl FnOnce(io::Error) -> ClusterError {
    let action = action.to_string();
    move |error| ClusterError::Io { action, error }
}

/// A running throwaway PostgreSQL cluster; stopped and deleted on drop unless
/// started with [`ClusterOptions::keep`].
#[derive(Debug)]
pub struct Cluster {
    bin_dir: PathBuf,
    /// `/tmp/pgtrail-XXXXXX`: the Unix socket directory, parent of `data_dir`.
    root: PathBuf,
    data_dir: PathBuf,
    port: u16,
    keep: bool,
    server: Server,
}

#[derive(Debug)]
enum Server {
    /// Not started, or already stopped.
    None,
    /// Runs under the supervisor; stops when `lifeline` closes.
    Supervised {
        supervisor: Child,
        lifeline: Option<ChildStdin>,
    },
    /// Our direct child, left running when we go away (`keep`).
    Detached { postgres: Child },
}

impl Cluster {
    /// Runs `initdb` and starts the server; returns once it accepts connections.
    pub fn start(options: ClusterOptions) -> Result<Cluster, ClusterError> {
        let bin_dir = pg_bin_dir()?;
        let mut attempt = 1;
        loop {
            let port = match options.port {
                Some(port) => port,
                None => free_port()?,
            };
            match Cluster::start_on(bin_dir.clone(), port, &options) {
                Err(ClusterError::Startup { log_tail, .. })
                    if options.port.is_none() && attempt < PORT_ATTEMPTS && port_was_taken(&log_tail) =>
                {
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    fn start_on(bin_dir: PathBuf, port: u16, options: &ClusterOptions) -> Result<Self, ClusterError> {
        // Short on purpose: the socket path must fit in ~107 bytes.
        let root = tempfile::Builder::new()
            .prefix("pgtrail-")
            .tempdir_in("/tmp")
            .map_err(io_error("create a cluster directory in /tmp"))?
            .keep();
        // From here on, dropping `cluster` (e.g. on `?`) removes everything.
        let mut cluster = Cluster {
            bin_dir,
            data_dir: root.join("data"),
            root,
            port,
            keep: false,
            server: Server::None,
        };
        let euid = fs::metadata(&cluster.root)
            .map_err(io_error(format_args!("inspect {}", cluster.root.display())))?
            .uid();
        let account = user::server_account(euid).map_err(|()| ClusterError::NoServerUser)?;
        if let Some(account) = account {
            chown(&cluster.root, Some(account.uid), Some(account.gid))
                .map_err(io_error(format_args!("chown {}", cluster.root.display())))?;
        }
        cluster.initdb(account, options.fast)?;
        cluster.configure(account, options)?;
        cluster.launch(account, options)?;
        cluster.wait_until_ready()?;
        cluster.keep = options.keep;
        Ok(cluster)
    }

    /// `postgres://postgres@127.0.0.1:PORT/dbname`.
    pub fn url(&self, dbname: &str) -> String {
        format!("postgres://{SUPERUSER}@{HOST}:{}/{dbname}", self.port)
    }

    /// The TCP port the server listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TCP host the server listens on: `127.0.0.1`.
    pub fn host(&self) -> &str {
        HOST
    }

    /// The directory holding the server's Unix socket (usable as `psql -h`).
    pub fn socket_dir(&self) -> &Path {
        &self.root
    }

    /// The directory of the server binaries.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// A client program (`psql`, `pgbench`, `pg_ctl`): beside the server
    /// binaries if there, else found like [`client_program`].
    pub fn program(&self, name: &str) -> PathBuf {
        client_program(name, Some(&self.bin_dir))
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server log file (inside the data directory).
    pub fn log_file(&self) -> PathBuf {
        self.data_dir.join(LOG_FILE)
    }

    /// Stops the server in order (a fast shutdown: sessions end, the
    /// walsenders wait for their clients to confirm what was sent, a
    /// shutdown checkpoint) and starts it again on the same directory and
    /// port; returns once it accepts connections. Only for a cluster its
    /// supervisor runs (not `keep`).
    pub fn restart(&mut self) -> Result<(), ClusterError> {
        if !matches!(self.server, Server::Supervised { .. }) {
            return Err(ClusterError::Startup {
                reason: "only a supervised cluster (not `keep`) restarts".to_owned(),
                log_tail: String::new(),
            });
        }
        let pid_file = self.data_dir.join("postmaster.pid");
        let old = fs::read_to_string(&pid_file)
            .map_err(io_error(format_args!("read {}", pid_file.display())))?
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<u32>().ok())
            .ok_or_else(|| ClusterError::Startup {
                reason: "postmaster.pid names no process".to_owned(),
                log_tail: String::new(),
            })?;
        let marker = self.root.join("restart");
        fs::write(&marker, "").map_err(io_error(format_args!("write {}", marker.display())))?;
        signal(old, "INT");
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Path::new(&format!("/proc/{old}")).exists() {
            if Instant::now() >= deadline {
                return Err(ClusterError::StopTimeout {
                    data_dir: self.data_dir.clone(),
                });
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.wait_until_ready()
    }

    /// Stops the server and removes the cluster's directory (even for a
    /// `keep` cluster), reporting problems that [`Drop`] can only print.
    pub fn stop(mut self) -> Result<(), ClusterError> {
        self.keep = false;
        self.shutdown()
    }

    fn initdb(&self, account: Option<Account>, fast: bool) -> Result<(), ClusterError> {
        let program = self.bin_dir.join("initdb");
        let mut cmd = Command::new(&program);
        cmd.arg("-D")
            .arg(&self.data_dir)
            .args(["-U", SUPERUSER, "--auth=trust", "--encoding=UTF8", "--locale=C"])
            .current_dir(&self.root)
            .stdin(Stdio::null());
        if fast {
            cmd.arg("--no-sync");
        }
        user::run_as(&mut cmd, account);
        let output = cmd
            .output()
            .map_err(io_error(format_args!("run {}", program.display())))?;
        if output.status.success() {
            return Ok(());
        }
        Err(ClusterError::Initdb {
            status: output.status,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        })
    }

    /// Writes the TLS files and the extra `pg_hba.conf` lines.
    fn configure(&self, account: Option<Account>, options: &ClusterOptions) -> Result<(), ClusterError> {
        let write = |name: &str, contents: &str, mode: u32| -> Result<(), ClusterError> {
            let path = self.data_dir.join(name);
            fs::write(&path, contents).map_err(io_error(format_args!("write {}", path.display())))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                .map_err(io_error(format_args!("chmod {}", path.display())))?;
            if let Some(account) = account {
                chown(&path, Some(account.uid), Some(account.gid))
                    .map_err(io_error(format_args!("chown {}", path.display())))?;
            }
            Ok(())
        };
        if let Some(tls) = &options.tls {
            write(TLS_CERT, &tls.cert_pem, 0o600)?;
            write(TLS_KEY, &tls.key_pem, 0o600)?;
            if let Some(ca) = &tls.client_ca_pem {
                write(TLS_CLIENT_CA, ca, 0o600)?;
            }
        }
        if !options.hba.is_empty() {
            let path = self.data_dir.join("pg_hba.conf");
            let existing =
                fs::read_to_string(&path).map_err(io_error(format_args!("read {}", path.display())))?;
            let mut text = options.hba.join("\n");
            text.push('\n');
            text.push_str(&existing);
            write("pg_hba.conf", &text, 0o600)?;
        }
        Ok(())
    }

    fn server_args(&self, options: &ClusterOptions) -> Vec<String> {
        let mut settings: Vec<(&str, &str)> = vec![
            ("listen_addresses", HOST),
            ("wal_level", "logical"),
            ("max_connections", "200"),
            ("shared_buffers", "128MB"),
            // Many tests may each hold a logical replication slot at once.
            ("max_replication_slots", "100"),
            ("max_wal_senders", "100"),
        ];
        if options.fast {
            settings.extend([
                ("fsync", "off"),
                ("synchronous_commit", "off"),
                ("full_page_writes", "off"),
            ]);
        }
        if let Some(tls) = &options.tls {
            settings.extend([
                ("ssl", "on"),
                ("ssl_cert_file", TLS_CERT),
                ("ssl_key_file", TLS_KEY),
            ]);
            if tls.client_ca_pem.is_some() {
                settings.push(("ssl_ca_file", TLS_CLIENT_CA));
            }
        }
        settings.extend(options.settings.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut args = vec![
            "-D".to_owned(),
            self.data_dir.display().to_string(),
            "-k".to_owned(),
            self.root.display().to_string(),
            "-p".to_owned(),
            self.port.to_string(),
        ];
        for (name, value) in settings {
            args.push("-c".to_owned());
            args.push(format!("{name}={value}"));
        }
        args
    }

    fn launch(&mut self, account: Option<Account>, options: &ClusterOptions) -> Result<(), ClusterError> {
        let log_path = self.log_file();
        let log = File::create(&log_path).map_err(io_error(format_args!("create {}", log_path.display())))?;
        if let Some(account) = account {
            chown(&log_path, Some(account.uid), Some(account.gid))
                .map_err(io_error(format_args!("chown {}", log_path.display())))?;
        }
        let log2 = log
            .try_clone()
            .map_err(io_error(format_args!("reopen {}", log_path.display())))?;
        let postgres = self.bin_dir.join("postgres");
        let args = self.server_args(options);
        let mut cmd = if options.keep {
            let mut cmd = Command::new(&postgres);
            cmd.args(&args).stdin(Stdio::null());
            cmd
        } else {
            let mut cmd = Command::new("/bin/sh");
            cmd.arg("-c")
                .arg(SUPERVISOR)
                .arg("pgtrail-cluster-supervisor")
                .arg(&self.root)
                .arg(&postgres)
                .args(&args)
                .stdin(Stdio::piped());
            cmd
        };
        // Own process group: Ctrl-C in a terminal must not reach the server
        // or its supervisor; they stop when we are gone.
        cmd.envs(options.env.iter().map(|(k, v)| (k, v)));
        cmd.stdout(log)
            .stderr(log2)
            .current_dir(&self.root)
            .process_group(0);
        user::run_as(&mut cmd, account);
        let mut child = cmd
            .spawn()
            .map_err(io_error(format_args!("start {}", postgres.display())))?;
        self.server = if options.keep {
            Server::Detached { postgres: child }
        } else {
            let lifeline = child.stdin.take();
            Server::Supervised {
                supervisor: child,
                lifeline,
            }
        };
        Ok(())
    }

    fn wait_until_ready(&mut self) -> Result<(), ClusterError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(reason) = self.exit_reason() {
                return Err(self.startup_error(reason));
            }
            if self.accepts_connections() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let reason = format!("it did not accept connections within {START_TIMEOUT:?}");
                return Err(self.startup_error(reason));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Why the server (or its supervisor) is no longer running, if it is not.
    fn exit_reason(&mut self) -> Option<String> {
        match &mut self.server {
            Server::None => Some("it was never started".to_owned()),
            Server::Supervised { supervisor, .. } => {
                if let Ok(status) = fs::read_to_string(self.root.join(EXITED_MARKER)) {
                    return Some(format!("postgres exited with status {}", status.trim()));
                }
                match supervisor.try_wait() {
                    Ok(Some(status)) => Some(format!("its supervisor exited ({status})")),
                    Ok(None) => None,
                    Err(error) => Some(format!("cannot check on its supervisor: {error}")),
                }
            }
            Server::Detached { postgres } => match postgres.try_wait() {
                Ok(Some(status)) => Some(format!("postgres exited ({status})")),
                Ok(None) => None,
                Err(error) => Some(format!("cannot check on postgres: {error}")),
            },
        }
    }

    /// The postmaster reports "ready" in `postmaster.pid` once it accepts
    /// connections (PostgreSQL 10+); the TCP check confirms the port.
    fn accepts_connections(&self) -> bool {
        let Ok(pid_file) = fs::read_to_string(self.data_dir.join("postmaster.pid")) else {
            return false;
        };
        // Line 8 is written in stages ("starting", then "ready"); a file that
        // has no status line yet is a server still starting up.
        let status = pid_file.lines().nth(7).map(str::trim);
        if !matches!(status, Some("ready" | "standby")) {
            return false;
        }
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
    }

    fn startup_error(&self, reason: String) -> ClusterError {
        let log = fs::read_to_string(self.log_file()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let start = lines.len().saturating_sub(LOG_TAIL_LINES);
        let log_tail = if lines.is_empty() {
            "(empty)".to_owned()
        } else {
            lines[start..].join("\n")
        };
        ClusterError::Startup { reason, log_tail }
    }

    /// Stops the server (if running) and removes the cluster directory.
    fn shutdown(&mut self) -> Result<(), ClusterError> {
        let result = match std::mem::replace(&mut self.server, Server::None) {
            Server::None => Ok(()),
            Server::Supervised {
                mut supervisor,
                lifeline,
            } => {
                // End-of-file on the lifeline: the supervisor stops the
                // server and removes the directory.
                drop(lifeline);
                match wait_timeout(&mut supervisor, STOP_TIMEOUT) {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) | Err(_) => {
                        self.kill_postmaster();
                        let _ = supervisor.kill();
                        let _ = supervisor.wait();
                        Err(ClusterError::StopTimeout {
                            data_dir: self.data_dir.clone(),
                        })
                    }
                }
            }
            Server::Detached { mut postgres } => {
                signal(postgres.id(), "INT");
                match wait_timeout(&mut postgres, STOP_TIMEOUT) {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) | Err(_) => {
                        let _ = postgres.kill();
                        let _ = postgres.wait();
                        Err(ClusterError::StopTimeout {
                            data_dir: self.data_dir.clone(),
                        })
                    }
                }
            }
        };
        match fs::remove_dir_all(&self.root) {
            Err(error) if error.kind() != io::ErrorKind::NotFound && result.is_ok() => {
                Err(io_error(format_args!("remove {}", self.root.display()))(error))
            }
            _ => result,
        }
    }

    /// Last resort: SIGKILL the postmaster named in `postmaster.pid`.
    fn kill_postmaster(&self) {
        if let Ok(pid_file) = fs::read_to_string(self.data_dir.join("postmaster.pid"))
            && let Some(Ok(pid)) = pid_file.lines().next().map(|l| l.trim().parse::<u32>())
        {
            signal(pid, "KILL");
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Err(error) = self.shutdown() {
            eprintln!("pgtrail-cluster: {error}");
        }
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16, ClusterError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(io_error("find a free TCP port on 127.0.0.1"))
}

fn port_was_taken(log_tail: &str) -> bool {
    log_tail.contains("Address already in use") || log_tail.contains("could not create any TCP/IP sockets")
}

/// Sends a signal with the shell's `kill` builtin (std has no `kill(2)`).
fn signal(pid: u32, signal: &str) {
    let _ = Command::new("/bin/sh")
        .args([
            "-c",
            "kill -s \"$1\" \"$2\" 2>/dev/null",
            "kill",
            signal,
            &pid.to_string(),
        ])
        .stdin(Stdio::null())
        .status();
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(20));
    }
}
