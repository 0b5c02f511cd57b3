//! Finding and connecting to the database.
//!
//! The target comes from, in order: `--database-url`, `PGTRAIL_DATABASE_URL`,
//! `DATABASE_URL`, else the usual libpq variables (`PGHOST`, `PGPORT`,
//! `PGUSER`, `PGDATABASE`, `PGPASSWORD`) with libpq's defaults. Connection
//! failures become one clear sentence: server not reachable, authentication
//! failed, database missing.

use std::path::Path;
use std::str::FromStr;

use tokio_postgres::{AsyncMessage, Client, NoTls};

/// Where to connect, and how the user told us.
#[derive(Debug, Clone)]
pub struct Target {
    pub config: tokio_postgres::Config,
    /// Where the target came from, for messages (`--database-url`, `DATABASE_URL`, ...).
    pub source: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid connection string from {origin}: {message}")]
    InvalidUrl { origin: &'static str, message: String },
    #[error(
        "cannot reach PostgreSQL at {where_}: {message}\n  help: is the server running? Set --database-url, DATABASE_URL or PGHOST/PGPORT"
    )]
    Unreachable { where_: String, message: String },
    #[error(
        "PostgreSQL at {where_} refused the login as `{user}`: {message}\n  help: check the user and password in the connection string (or PGUSER/PGPASSWORD)"
    )]
    Authentication {
        user: String,
        where_: String,
        message: String,
    },
    #[error(
        "database `{database}` does not exist on {where_}\n  help: create it (createdb {database}) or point --database-url at another one"
    )]
    NoDatabase { database: String, where_: String },
    #[error("could not connect to {where_}: {message}")]
    Other { where_: String, message: String },
}

impl Target {
    /// Resolves the target from an explicit URL or the environment.
    pub fn from_env(explicit: Option<&str>) -> Result<Target, ConnectError> {
        let from_var = |name: &'static str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .map(|v| (v, name))
        };
        let url = explicit
            .map(|u| (u.to_string(), "--database-url"))
            .or_else(|| from_var("PGTRAIL_DATABASE_URL"))
            .or_else(|| from_var("DATABASE_URL"));
        match url {
            Some((url, source)) => Target::parse(&url, source),
            None => Ok(Target::from_libpq_env()),
        }
    }

    /// Parses a `postgres://` URL or a `key=value` connection string.
    pub fn parse(url: &str, source: &'static str) -> Result<Target, ConnectError> {
        let mut config = tokio_postgres::Config::from_str(url).map_err(|e| ConnectError::InvalidUrl {
            origin: source,
            message: e.to_string(),
        })?;
        apply_defaults(&mut config);
        Ok(Target { config, source })
    }

    fn from_libpq_env() -> Target {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mut config = tokio_postgres::Config::new();
        if let Some(hosts) = var("PGHOST") {
            for host in hosts.split(',') {
                config.host(host);
            }
        }
        if let Some(port) = var("PGPORT").and_then(|p| p.parse::<u16>().ok()) {
            config.port(port);
        }
        if let Some(user) = var("PGUSER") {
            config.user(&user);
        }
        if let Some(db) = var("PGDATABASE") {
            config.dbname(&db);
        }
        if let Some(password) = var("PGPASSWORD") {
            config.password(password);
        }
        if let Some(app) = var("PGAPPNAME") {
            config.application_name(&app);
        }
        apply_defaults(&mut config);
        Target {
            config,
            source: "PGHOST/PGPORT/PGUSER/PGDATABASE",
        }
    }

    /// `host:port/dbname` for messages (never the password).
    pub fn describe(&self) -> String {
        let host = self
            .config
            .get_hosts()
            .first()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .unwrap_or_else(|| "localhost".to_string());
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!("{host}:{port}/{}", self.config.get_dbname().unwrap_or(""))
    }
}

/// libpq's defaults: the local socket directory (or localhost), port 5432,
/// the OS user, a database named like the user; and our application_name.
fn apply_defaults(config: &mut tokio_postgres::Config) {
    if config.get_hosts().is_empty() {
        let socket_dir = ["/var/run/postgresql", "/tmp"]
            .into_iter()
            .find(|dir| Path::new(dir).join(".s.PGSQL.5432").exists());
        match socket_dir {
            Some(dir) => config.host_path(dir),
            None => config.host("localhost"),
        };
    }
    if config.get_user().is_none() {
        let user = std::env::var("USER").unwrap_or_else(|_| "postgres".to_string());
        config.user(&user);
    }
    if config.get_dbname().is_none() {
        let user = config.get_user().unwrap_or("postgres").to_string();
        config.dbname(&user);
    }
    if config.get_application_name().is_none() {
        config.application_name("pgtrail");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(10));
    }
}

/// Connects, spawning the connection task on the current tokio runtime.
/// The server's warnings (pgtrail's install says with them what it could
/// not do: a role not created, a table its owner cannot read, no DDL watch)
/// are passed on as `tracing` warnings; notices stay at debug level.
pub async fn connect(target: &Target) -> Result<Client, ConnectError> {
    connect_observed(target, |_| {}).await
}

/// Like [`connect`], and every notice below WARNING (e.g. the progress of
/// `pgtrail.revert`) is also passed to `on_notice` as it arrives.
pub async fn connect_observed(
    target: &Target,
    on_notice: impl Fn(&str) + Send + 'static,
) -> Result<Client, ConnectError> {
    let (client, mut connection) = target
        .config
        .connect(NoTls)
        .await
        .map_err(|e| classify(e, target))?;
    tokio::spawn(async move {
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
    Ok(client)
}

fn classify(error: tokio_postgres::Error, target: &Target) -> ConnectError {
    let where_ = format!("{} (from {})", target.describe(), target.source);
    if let Some(db) = error.as_db_error() {
        let message = db.message().to_string();
        return match db.code().code() {
            "28P01" | "28000" => ConnectError::Authentication {
                user: target.config.get_user().unwrap_or("").to_string(),
                where_,
                message,
            },
            "3D000" => ConnectError::NoDatabase {
                database: target.config.get_dbname().unwrap_or("").to_string(),
                where_,
            },
            _ => ConnectError::Other { where_, message },
        };
    }
    let message = std::error::Error::source(&error)
        .map(|s| s.to_string())
        .unwrap_or_else(|| error.to_string());
    ConnectError::Unreachable { where_, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_and_keeps_the_source() {
        let target =
            Target::parse("postgres://app@db.internal:6543/shop", "DATABASE_URL").expect("valid url");
        assert_eq!(target.source, "DATABASE_URL");
        assert_eq!(target.describe(), "db.internal:6543/shop");
        assert_eq!(target.config.get_application_name(), Some("pgtrail"));
    }

    #[test]
    fn rejects_garbage_with_a_message() {
        let error = Target::parse("postgres://x:y@host:notaport/db", "--database-url").unwrap_err();
        assert!(error.to_string().contains("--database-url"), "{error}");
    }
}
