//! Finding and connecting to the database, the way libpq does.
//!
//! The connection string comes from `--database-url`, else
//! `PGTRAIL_DATABASE_URL`, else `DATABASE_URL` (a `postgres://` URL or
//! `key=value` pairs); whatever it leaves unset comes from the service it
//! names (`service`, `PGSERVICE`: `pg_service.conf`), then from libpq's
//! variables (`PGHOST`, `PGPORT`, `PGDATABASE`, `PGUSER`, `PGPASSWORD`,
//! `PGSSLMODE`, `PGSSLROOTCERT`, `PGCONNECT_TIMEOUT`, `PGAPPNAME`, ...),
//! then from the defaults. A missing password is looked up in the password
//! file (`PGPASSFILE`, `~/.pgpass`). TLS follows `sslmode` ([`tls`]).
//!
//! Every failure is one clear sentence that names the host, port and
//! database, and where each came from, plus a help line.
//!
//! - [`conninfo`]: parsing URLs and `key=value` strings;
//! - [`settings`]: which setting applies and its origin;
//! - [`service`], [`pgpass`]: the service and password files;
//! - [`tls`]: sslmode and the rustls connector.

mod conninfo;
mod pgpass;
mod service;
pub mod settings;
pub mod tls;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio_postgres::config::{
    ChannelBinding, LoadBalanceHosts, SslMode as PgSslMode, SslNegotiation, TargetSessionAttrs,
};
use tokio_postgres::{AsyncMessage, Client};

pub use settings::{Env, Origin, Setting, Settings};
pub use tls::{SslMode, TlsPolicy};

/// How long to wait for a server when neither `connect_timeout` nor
/// `PGCONNECT_TIMEOUT` says (libpq waits forever; a command-line tool
/// should not).
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where to connect, and how the user told us.
#[derive(Debug, Clone)]
pub struct Target {
    settings: Settings,
    tls: TlsPolicy,
    hosts: Vec<HostEntry>,
    base: tokio_postgres::Config,
    passfile: Option<PathBuf>,
    load_balance: bool,
}

/// One server to try.
#[derive(Debug, Clone)]
struct HostEntry {
    /// A host name, an address, or a socket directory (starts with `/`).
    host: String,
    hostaddr: Option<IpAddr>,
    port: u16,
}

impl HostEntry {
    fn is_socket(&self) -> bool {
        self.host.starts_with('/') || self.host.starts_with('@')
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid connection string from {origin}: {message}")]
    InvalidUrl { origin: String, message: String },
    #[error("{message}")]
    Setting { message: String },
    #[error("{message}")]
    Service { message: String },
    #[error(
        "cannot reach PostgreSQL at {where_}: {message}\n  help: is the server running? Set --database-url, DATABASE_URL or PGHOST/PGPORT"
    )]
    Unreachable { where_: String, message: String },
    #[error("PostgreSQL at {where_} refused the login as `{user}`: {message}\n  help: {help}")]
    Authentication {
        user: String,
        where_: String,
        message: String,
        help: String,
    },
    #[error(
        "database `{database}` does not exist on {where_}\n  help: create it (createdb {database}) or point --database-url at another one"
    )]
    NoDatabase { database: String, where_: String },
    #[error("TLS connection to {where_} failed: {message}")]
    Tls { where_: String, message: String },
    #[error("could not connect to {where_}: {message}")]
    Other { where_: String, message: String },
    #[error("could not connect to any of {} servers:\n{}", .0.len(), .0.iter().map(|e| format!("- {e}")).collect::<Vec<_>>().join("\n"))]
    AllHosts(Vec<ConnectError>),
}

impl Target {
    /// Resolves the target from an explicit URL, the process environment
    /// and the files libpq reads.
    pub fn from_env(explicit: Option<&str>) -> Result<Target, ConnectError> {
        Target::resolve(explicit, &Env::process())
    }

    /// [`Target::from_env`] with the environment given.
    pub fn resolve(explicit: Option<&str>, env: &Env) -> Result<Target, ConnectError> {
        let conn_string = explicit
            .map(|u| (u.to_string(), "--database-url"))
            .or_else(|| {
                env.get("PGTRAIL_DATABASE_URL")
                    .map(|u| (u.to_string(), "PGTRAIL_DATABASE_URL"))
            })
            .or_else(|| env.get("DATABASE_URL").map(|u| (u.to_string(), "DATABASE_URL")));
        let settings = Settings::resolve(conn_string.as_ref().map(|(u, s)| (u.as_str(), *s)), env)?;
        Target::build(settings, env)
    }

    /// A connection string on its own, named `source` in messages: no
    /// variable, service or password file is read.
    pub fn parse(url: &str, source: &str) -> Result<Target, ConnectError> {
        let env = Env::empty();
        Target::build(Settings::resolve(Some((url, source)), &env)?, &env)
    }

    fn build(mut settings: Settings, env: &Env) -> Result<Target, ConnectError> {
        let tls = TlsPolicy::resolve(&mut settings, env)?;
        let hosts = host_entries(&settings)?;
        let base = base_config(&settings)?;
        let load_balance = match settings.value("load_balance_hosts") {
            None | Some("disable") => false,
            Some("random") => true,
            Some(other) => {
                return Err(invalid(
                    &settings,
                    "load_balance_hosts",
                    other,
                    "disable or random",
                ));
            }
        };
        Ok(Target {
            passfile: pgpass::file(&settings, env),
            settings,
            tls,
            hosts,
            base,
            load_balance,
        })
    }

    /// The settings that apply, each with its origin.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// How connections use TLS.
    pub fn tls(&self) -> &TlsPolicy {
        &self.tls
    }

    /// `host H (origin), port P (origin), database D (origin)` for messages
    /// (never the password).
    pub fn describe(&self) -> String {
        let database = self.settings.describe("dbname");
        let hosts = match self
            .settings
            .get("host")
            .or_else(|| self.settings.get("hostaddr"))
        {
            Some(setting) => format!("host {} ({})", setting.value, setting.origin),
            None => "host (none)".to_string(),
        };
        format!(
            "{hosts}, port {}, database {database}",
            self.settings.describe("port")
        )
    }

    fn describe_host(&self, entry: &HostEntry) -> String {
        if self.hosts.len() == 1 {
            return self.describe();
        }
        let origin = |keyword: &str| {
            self.settings
                .get(keyword)
                .map(|s| s.origin.to_string())
                .unwrap_or_default()
        };
        format!(
            "host {} ({}), port {} ({}), database {}",
            entry.host,
            origin("host"),
            entry.port,
            origin("port"),
            self.settings.describe("dbname")
        )
    }
}

impl Target {
    /// Where `pgtrail follow` opens its replication connection: the first
    /// host, with the same port, role, password (or password file line) and
    /// database. `None` when the connection must use TLS (`sslmode`
    /// require, verify-ca or verify-full over TCP) or an abstract socket:
    /// the replication client speaks neither, and the follower reads the
    /// slot over SQL instead.
    pub fn replication(&self) -> Option<pgtrail_follow::Replication> {
        let entry = self.hosts.first()?;
        if entry.host.starts_with('@') {
            return None;
        }
        if !entry.is_socket()
            && matches!(
                self.tls.mode,
                SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull
            )
        {
            return None;
        }
        let host = match entry.hostaddr {
            Some(addr) => addr.to_string(),
            None => entry.host.clone(),
        };
        Some(pgtrail_follow::Replication {
            host,
            port: entry.port,
            user: self.settings.value("user").unwrap_or("postgres").to_string(),
            password: password_for(self, entry).map(|(password, _)| password),
            database: self.settings.value("dbname").unwrap_or("postgres").to_string(),
        })
    }
}

fn invalid(settings: &Settings, keyword: &str, value: &str, expected: &str) -> ConnectError {
    let origin = settings
        .get(keyword)
        .map(|s| s.origin.to_string())
        .unwrap_or_default();
    ConnectError::Setting {
        message: format!("{keyword} `{value}` ({origin}) is not valid: expected {expected}"),
    }
}

/// The hosts to try, in order: `host` and `hostaddr` may list several,
/// with one port for all or one each.
fn host_entries(settings: &Settings) -> Result<Vec<HostEntry>, ConnectError> {
    let split = |keyword: &str| -> Vec<String> {
        settings
            .value(keyword)
            .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default()
    };
    let hosts = split("host");
    let addrs = split("hostaddr");
    let ports = split("port");
    let count = hosts.len().max(addrs.len()).max(1);
    if !hosts.is_empty() && !addrs.is_empty() && hosts.len() != addrs.len() {
        return Err(ConnectError::Setting {
            message: format!(
                "{} hosts ({}) but {} hostaddrs ({}): give one address per host",
                hosts.len(),
                settings.describe("host"),
                addrs.len(),
                settings.describe("hostaddr")
            ),
        });
    }
    if ports.len() > 1 && ports.len() != count {
        return Err(ConnectError::Setting {
            message: format!(
                "{} ports ({}) for {count} hosts: give one port, or one per host",
                ports.len(),
                settings.describe("port")
            ),
        });
    }
    (0..count)
        .map(|i| {
            let port_text = ports.get(i).or(ports.first()).map(String::as_str).unwrap_or("");
            let port = match port_text {
                "" => 5432,
                text => text
                    .parse::<u16>()
                    .map_err(|_| invalid(settings, "port", text, "a port number"))?,
            };
            let hostaddr = match addrs.get(i).map(String::as_str) {
                None | Some("") => None,
                Some(text) => Some(
                    text.parse::<IpAddr>()
                        .map_err(|_| invalid(settings, "hostaddr", text, "an IP address"))?,
                ),
            };
            let host = match hosts.get(i).map(String::as_str) {
                Some(host) if !host.is_empty() => host.to_string(),
                _ => hostaddr.map_or_else(|| "localhost".to_string(), |a| a.to_string()),
            };
            Ok(HostEntry { host, hostaddr, port })
        })
        .collect()
}

/// Everything but the host, port, password and TLS mode.
fn base_config(settings: &Settings) -> Result<tokio_postgres::Config, ConnectError> {
    let mut config = tokio_postgres::Config::new();
    if let Some(user) = settings.value("user") {
        config.user(user);
    }
    if let Some(dbname) = settings.value("dbname") {
        config.dbname(dbname);
    }
    if let Some(name) = settings.value("application_name") {
        config.application_name(name);
    }
    if let Some(options) = settings.value("options") {
        config.options(options);
    }
    let seconds = |keyword: &str| -> Result<Option<i64>, ConnectError> {
        settings
            .value(keyword)
            .map(|v| {
                v.trim()
                    .parse::<i64>()
                    .map_err(|_| invalid(settings, keyword, v, "a whole number of seconds"))
            })
            .transpose()
    };
    match seconds("connect_timeout")? {
        // libpq: 0 or less waits forever, and 1 means 2.
        Some(s) if s <= 0 => {}
        Some(s) => {
            config.connect_timeout(Duration::from_secs(s.max(2).unsigned_abs()));
        }
        None => {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
    }
    if let Some(value) = settings.value("keepalives") {
        config.keepalives(value != "0");
    }
    if let Some(s) = seconds("keepalives_idle")?.filter(|s| *s > 0) {
        config.keepalives_idle(Duration::from_secs(s.unsigned_abs()));
    }
    if let Some(s) = seconds("keepalives_interval")?.filter(|s| *s > 0) {
        config.keepalives_interval(Duration::from_secs(s.unsigned_abs()));
    }
    if let Some(n) = seconds("keepalives_count")?.filter(|n| *n > 0) {
        config.keepalives_retries(u32::try_from(n).unwrap_or(u32::MAX));
    }
    if let Some(ms) = seconds("tcp_user_timeout")?.filter(|ms| *ms > 0) {
        config.tcp_user_timeout(Duration::from_millis(ms.unsigned_abs()));
    }
    if let Some(value) = settings.value("target_session_attrs") {
        config.target_session_attrs(match value {
            "any" => TargetSessionAttrs::Any,
            "read-write" => TargetSessionAttrs::ReadWrite,
            "read-only" => TargetSessionAttrs::ReadOnly,
            other => {
                return Err(invalid(
                    settings,
                    "target_session_attrs",
                    other,
                    "any, read-write or read-only (pgtrail's client has no primary, standby or prefer-standby)",
                ));
            }
        });
    }
    if let Some(value) = settings.value("channel_binding") {
        config.channel_binding(match value {
            "disable" => ChannelBinding::Disable,
            "prefer" => ChannelBinding::Prefer,
            "require" => ChannelBinding::Require,
            other => {
                return Err(invalid(
                    settings,
                    "channel_binding",
                    other,
                    "disable, prefer or require",
                ));
            }
        });
    }
    if let Some(value) = settings.value("sslnegotiation") {
        config.ssl_negotiation(match value {
            "postgres" => SslNegotiation::Postgres,
            "direct" => SslNegotiation::Direct,
            other => return Err(invalid(settings, "sslnegotiation", other, "postgres or direct")),
        });
    }
    match settings.value("gssencmode") {
        None | Some("disable" | "prefer") => {}
        Some(other) => {
            return Err(invalid(
                settings,
                "gssencmode",
                other,
                "disable or prefer (pgtrail's client has no GSSAPI encryption)",
            ));
        }
    }
    config.load_balance_hosts(LoadBalanceHosts::Disable);
    Ok(config)
}

/// Connects, trying each host in turn, and spawns the connection task on
/// the current tokio runtime. The server's warnings (pgtrail's install says
/// with them what it could not do) are passed on as `tracing` warnings;
/// notices stay at debug level.
pub async fn connect(target: &Target) -> Result<Client, ConnectError> {
    connect_observed(target, |_| {}).await
}

/// A notice handler of [`connect_observed`].
type OnNotice = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

/// Like [`connect`], and every notice below WARNING (e.g. the progress of
/// `pgtrail.revert`) is also passed to `on_notice` as it arrives.
pub async fn connect_observed(
    target: &Target,
    on_notice: impl Fn(&str) + Send + Sync + 'static,
) -> Result<Client, ConnectError> {
    let on_notice: OnNotice = std::sync::Arc::new(on_notice);
    let connector = target.tls.connector()?;
    let mut order: Vec<&HostEntry> = target.hosts.iter().collect();
    if target.load_balance {
        let start = rand::random_range(0..order.len().max(1));
        order.rotate_left(start);
    }
    let mut failures = Vec::new();
    for entry in order {
        match connect_host(target, entry, &connector, &on_notice).await {
            Ok(client) => return Ok(client),
            Err(error) => failures.push(error),
        }
    }
    if failures.len() == 1
        && let Some(error) = failures.pop()
    {
        return Err(error);
    }
    Err(ConnectError::AllHosts(failures))
}

async fn connect_host(
    target: &Target,
    entry: &HostEntry,
    connector: &tokio_postgres_rustls::MakeRustlsConnect,
    on_notice: &OnNotice,
) -> Result<Client, ConnectError> {
    let mut config = target.base.clone();
    if entry.is_socket() {
        config.host_path(&entry.host);
    } else {
        config.host(&entry.host);
        if let Some(addr) = entry.hostaddr {
            config.hostaddr(addr);
        }
    }
    config.port(entry.port);
    let password = password_for(target, entry);
    if let Some((password, _)) = &password {
        config.password(password.as_str());
    }
    // TLS never runs over a Unix socket (libpq does the same).
    let modes: &[PgSslMode] = match (entry.is_socket(), target.tls.mode) {
        (true, _) | (false, SslMode::Disable) => &[PgSslMode::Disable],
        (false, SslMode::Allow) => &[PgSslMode::Disable, PgSslMode::Require],
        (false, SslMode::Prefer) => &[PgSslMode::Prefer],
        (false, _) => &[PgSslMode::Require],
    };
    let mut last = None;
    for mode in modes {
        config.ssl_mode(*mode);
        match config.connect(connector.clone()).await {
            Ok((client, connection)) => {
                spawn_connection(connection, on_notice.clone());
                return Ok(client);
            }
            // allow: a server that refuses the plain login may take it over TLS.
            Err(error) if error.code().is_some_and(|c| c.code().starts_with("28")) => last = Some(error),
            Err(error) => return Err(classify(error, target, entry, password.as_ref())),
        }
    }
    match last {
        Some(error) => Err(classify(error, target, entry, password.as_ref())),
        None => Err(ConnectError::Other {
            where_: target.describe_host(entry),
            message: "no connection attempt was made".to_string(),
        }),
    }
}

/// The password: the one set (connection string, service, PGPASSWORD), else
/// the password file's line for this host, port, database and user.
fn password_for(target: &Target, entry: &HostEntry) -> Option<(String, Origin)> {
    if let Some(setting) = target.settings.get("password") {
        return Some((setting.value.clone(), setting.origin.clone()));
    }
    let file = target.passfile.as_ref()?;
    let host = match entry.hostaddr {
        Some(addr) if target.settings.get("host").is_none() => addr.to_string(),
        _ => entry.host.clone(),
    };
    pgpass::lookup(
        file,
        &host,
        &entry.port.to_string(),
        target.settings.value("dbname").unwrap_or(""),
        target.settings.value("user").unwrap_or(""),
    )
    .map(|password| (password, Origin::PassFile(file.clone())))
}

/// Connections whose task has not ended (see [`closed`]).
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// Counts a connection's task as open until it ends or is dropped.
struct Open;

impl Open {
    fn new() -> Open {
        OPEN.fetch_add(1, Ordering::SeqCst);
        Open
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Waits, at most `timeout`, until every connection made here whose client
/// was dropped has said goodbye to the server (a Terminate message, then
/// the socket closed), for a program about to exit: its runtime would
/// otherwise drop the connections' tasks before they run again, and the
/// server logs each connection closed under it ("could not receive data
/// from client: Connection reset by peer"). Connections still in use keep
/// it waiting until the timeout.
pub async fn closed(timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    while OPEN.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn spawn_connection<S, T>(mut connection: tokio_postgres::Connection<S, T>, on_notice: OnNotice)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let open = Open::new();
    tokio::spawn(async move {
        let _open = open;
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = futures_util::StreamExt::next(&mut messages).await {
            match message {
                Ok(AsyncMessage::Notice(notice)) if notice.severity() == "WARNING" => {
                    tracing::warn!("{}", notice.message());
                }
                Ok(AsyncMessage::Notice(notice)) => {
                    tracing::debug!("{}", notice.message());
                    on_notice(notice.message());
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "connection closed");
                    break;
                }
            }
        }
    });
}

fn classify(
    error: tokio_postgres::Error,
    target: &Target,
    entry: &HostEntry,
    password: Option<&(String, Origin)>,
) -> ConnectError {
    let where_ = target.describe_host(entry);
    let chain = error_chain(&error);
    let server_code = error
        .as_db_error()
        .map(|db| (db.code().code().to_string(), db.message().to_string()));
    // tokio-postgres says so itself when the server asks for a password it was not given.
    let server_code = server_code.or_else(|| {
        chain
            .contains("password missing")
            .then(|| ("28P01".to_string(), "the server asks for a password".to_string()))
    });
    if let Some((code, message)) = server_code {
        return match code.as_str() {
            "28P01" | "28000" => {
                let help = match password {
                    Some((_, origin)) => format!(
                        "check the user ({}) and the password ({origin})",
                        target.settings.describe("user")
                    ),
                    None => format!(
                        "check the user ({}); no password was given (none in the connection string, PGPASSWORD{})",
                        target.settings.describe("user"),
                        target
                            .passfile
                            .as_ref()
                            .map(|f| format!(" or {}", f.display()))
                            .unwrap_or_default()
                    ),
                };
                let help = if message.contains("no encryption") && entry_uses_no_tls(target, entry) {
                    format!("{help}; the server may require TLS: use sslmode=require or verify-full")
                } else {
                    help
                };
                ConnectError::Authentication {
                    user: target.settings.value("user").unwrap_or("").to_string(),
                    where_,
                    message,
                    help,
                }
            }
            "3D000" => ConnectError::NoDatabase {
                database: target.settings.value("dbname").unwrap_or("").to_string(),
                where_,
            },
            _ => ConnectError::Other { where_, message },
        };
    }
    if let Some(message) = tls::explain(&error, &entry.host, &target.tls) {
        return ConnectError::Tls { where_, message };
    }
    if chain.contains("server does not support TLS") {
        return ConnectError::Tls {
            where_,
            message: format!(
                "the server does not accept TLS connections, and {} demands them\n  help: turn ssl on in the server's configuration, or use sslmode=prefer (encrypts when the server can)",
                target.tls.describe()
            ),
        };
    }
    if chain.contains("TLS") || chain.contains("certificate") {
        return ConnectError::Tls {
            where_,
            message: chain,
        };
    }
    let message = std::error::Error::source(&error)
        .map(|s| s.to_string())
        .unwrap_or_else(|| error.to_string());
    ConnectError::Unreachable { where_, message }
}

fn entry_uses_no_tls(target: &Target, entry: &HostEntry) -> bool {
    entry.is_socket()
        || matches!(
            target.tls.mode,
            SslMode::Disable | SslMode::Allow | SslMode::Prefer
        )
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut current = error.source();
    while let Some(e) = current {
        parts.push(e.to_string());
        current = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_and_keeps_the_source() {
        let target =
            Target::parse("postgres://app@db.internal:6543/shop", "DATABASE_URL").expect("valid url");
        assert_eq!(
            target.describe(),
            "host db.internal (from DATABASE_URL), port 6543 (from DATABASE_URL), database shop (from DATABASE_URL)"
        );
        assert_eq!(target.settings().value("application_name"), Some("pgtrail"));
        assert_eq!(target.tls().mode, SslMode::Prefer);
    }

    #[test]
    fn rejects_garbage_with_a_message() {
        let error = Target::parse("postgres://x:y@host:notaport/db", "--database-url").unwrap_err();
        assert!(error.to_string().contains("--database-url"), "{error}");
        assert!(error.to_string().contains("port `notaport`"), "{error}");
    }

    #[test]
    fn names_where_each_part_came_from_without_a_url() {
        let env = Env::empty().os_user("ann").var("PGPORT", "6000");
        let target = Target::resolve(None, &env).unwrap();
        assert_eq!(
            target.describe(),
            "host localhost (default: no local socket found), port 6000 (from PGPORT), database ann (default: the user name)"
        );
        let env = Env::empty()
            .var("DATABASE_URL", "postgres://h/db")
            .var("PGTRAIL_DATABASE_URL", "postgres://p/db");
        assert!(
            Target::resolve(None, &env)
                .unwrap()
                .describe()
                .starts_with("host p (from PGTRAIL_DATABASE_URL)")
        );
        assert!(
            Target::resolve(Some("host=f"), &env)
                .unwrap()
                .describe()
                .starts_with("host f (from --database-url)")
        );
    }

    #[test]
    fn sslmode_from_urls_key_values_and_pgsslmode() {
        let mode = |url: Option<&str>, env: Env| {
            Target::resolve(url, &env).map(|t| (t.tls().mode, t.tls().roots.clone()))
        };
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "").unwrap();
        let ca_text = ca.to_str().unwrap();
        assert_eq!(
            mode(Some("postgres://h/d?sslmode=require"), Env::empty()).unwrap(),
            (SslMode::Require, tls::Roots::None)
        );
        assert_eq!(
            mode(
                Some(&format!("host=h sslmode=verify-full sslrootcert={ca_text}")),
                Env::empty()
            )
            .unwrap(),
            (SslMode::VerifyFull, tls::Roots::File(ca.clone()))
        );
        assert_eq!(
            mode(
                Some("postgres://h/d"),
                Env::empty()
                    .var("PGSSLMODE", "verify-ca")
                    .var("PGSSLROOTCERT", ca_text)
            )
            .unwrap(),
            (SslMode::VerifyCa, tls::Roots::File(ca.clone()))
        );
        // libpq: require with a root file checks the chain.
        assert_eq!(
            mode(
                Some("postgres://h/d?sslmode=require"),
                Env::empty().var("PGSSLROOTCERT", ca_text)
            )
            .unwrap(),
            (SslMode::Require, tls::Roots::File(ca.clone()))
        );
        assert_eq!(
            mode(Some("postgres://h/d?sslrootcert=system"), Env::empty()).unwrap(),
            (SslMode::VerifyFull, tls::Roots::System)
        );
        let error = mode(
            Some("postgres://h/d?sslrootcert=system&sslmode=require"),
            Env::empty(),
        )
        .unwrap_err();
        assert!(error.to_string().contains("weak sslmode `require`"), "{error}");
        let error = mode(
            Some("postgres://h/d"),
            Env::empty().var("PGSSLMODE", "verify_full"),
        )
        .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("sslmode `verify_full` (from PGSSLMODE) is not one of"),
            "{error}"
        );
        let error = mode(
            Some("postgres://h/d?sslmode=verify-full"),
            Env::empty().home(dir.path()),
        )
        .unwrap_err();
        assert!(error.to_string().contains(".postgresql/root.crt"), "{error}");
    }

    #[test]
    fn several_hosts_and_their_ports() {
        let target = Target::parse("postgres://a:1,b:2/db", "--database-url").unwrap();
        let hosts: Vec<(String, u16)> = target.hosts.iter().map(|h| (h.host.clone(), h.port)).collect();
        assert_eq!(hosts, [("a".to_string(), 1), ("b".to_string(), 2)]);
        let target = Target::parse("host=/tmp,b port=7", "--database-url").unwrap();
        assert!(target.hosts[0].is_socket() && !target.hosts[1].is_socket());
        assert_eq!(target.hosts[1].port, 7);
        assert!(Target::parse("host=a,b port=1,2,3", "--database-url").is_err());
    }

    #[test]
    fn service_file_fills_in_before_variables() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("services.conf");
        std::fs::write(&file, "[shop]\nhost=db.internal\ndbname=shop\nsslmode=require\n").unwrap();
        let env = Env::empty()
            .var("PGSERVICEFILE", file.to_str().unwrap())
            .var("PGSERVICE", "shop")
            .var("PGHOST", "other")
            .var("PGPORT", "6543");
        let target = Target::resolve(None, &env).unwrap();
        assert!(target.describe().starts_with(&format!(
            "host db.internal (from service shop in {})",
            file.display()
        )));
        assert!(target.describe().contains("port 6543 (from PGPORT)"));
        assert_eq!(target.tls().mode, SslMode::Require);
    }

    #[test]
    fn connect_timeout_follows_libpq() {
        let timeout = |url: &str| {
            Target::parse(url, "--database-url")
                .map(|t| t.base.get_connect_timeout().copied())
                .unwrap()
        };
        assert_eq!(timeout("host=h"), Some(DEFAULT_CONNECT_TIMEOUT));
        assert_eq!(timeout("host=h connect_timeout=1"), Some(Duration::from_secs(2)));
        assert_eq!(timeout("host=h connect_timeout=0"), None);
        assert!(Target::parse("host=h connect_timeout=soon", "--database-url").is_err());
    }
}
