//! Which connection settings apply, and where each came from, in libpq's
//! order: the connection string, then the service named by `service` or
//! `PGSERVICE` (`pg_service.conf`), then the `PG*` variables, then the
//! defaults. [`Env`] is the environment they are read from, so tests can
//! pass their own instead of changing the process's.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::ConnectError;
use super::{conninfo, service};

/// Every keyword pgtrail understands, with the variable libpq reads for it.
pub(crate) const KEYWORDS: &[(&str, Option<&str>)] = &[
    ("host", Some("PGHOST")),
    ("hostaddr", Some("PGHOSTADDR")),
    ("port", Some("PGPORT")),
    ("dbname", Some("PGDATABASE")),
    ("user", Some("PGUSER")),
    ("password", Some("PGPASSWORD")),
    ("passfile", Some("PGPASSFILE")),
    ("service", Some("PGSERVICE")),
    ("options", Some("PGOPTIONS")),
    ("application_name", Some("PGAPPNAME")),
    ("fallback_application_name", None),
    ("connect_timeout", Some("PGCONNECT_TIMEOUT")),
    ("sslmode", Some("PGSSLMODE")),
    ("sslrootcert", Some("PGSSLROOTCERT")),
    ("sslcert", Some("PGSSLCERT")),
    ("sslkey", Some("PGSSLKEY")),
    ("sslnegotiation", Some("PGSSLNEGOTIATION")),
    ("sslcompression", Some("PGSSLCOMPRESSION")),
    ("sslsni", Some("PGSSLSNI")),
    ("gssencmode", Some("PGGSSENCMODE")),
    ("channel_binding", Some("PGCHANNELBINDING")),
    ("target_session_attrs", Some("PGTARGETSESSIONATTRS")),
    ("load_balance_hosts", Some("PGLOADBALANCEHOSTS")),
    ("keepalives", None),
    ("keepalives_idle", None),
    ("keepalives_interval", None),
    ("keepalives_count", None),
    ("tcp_user_timeout", None),
];

/// libpq keywords pgtrail's client does not implement: an error names them
/// rather than connecting in a way the user did not ask for.
const UNSUPPORTED: &[&str] = &[
    "sslcrl",
    "sslcrldir",
    "sslpassword",
    "sslcertmode",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "requirepeer",
    "require_auth",
    "krbsrvname",
    "gsslib",
    "gssdelegation",
    "client_encoding",
    "replication",
    "requiressl",
];

/// The application_name pgtrail reports when none is set.
pub(crate) const APPLICATION_NAME: &str = "pgtrail";

/// Where a setting came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The connection string given by this flag or variable (`--database-url`, `DATABASE_URL`).
    ConnString(String),
    /// A service of a `pg_service.conf` file.
    Service { name: String, file: PathBuf },
    /// A libpq variable (`PGHOST`, `PGSSLMODE`, ...).
    Var(&'static str),
    /// The password file.
    PassFile(PathBuf),
    /// A default, with what it is (`"the OS user"`, `"libpq's"`).
    Default(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::ConnString(source) => write!(f, "from {source}"),
            Origin::Service { name, file } => write!(f, "from service {name} in {}", file.display()),
            Origin::Var(name) => write!(f, "from {name}"),
            Origin::PassFile(file) => write!(f, "from {}", file.display()),
            Origin::Default(what) => write!(f, "default: {what}"),
        }
    }
}

/// One setting's value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub value: String,
    pub origin: Origin,
}

/// The environment settings are read from: variables, the home directory
/// (for `~/.pgpass`, `~/.pg_service.conf`, `~/.postgresql/`), the OS user
/// and the places libpq looks for a server's socket.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
    home: Option<PathBuf>,
    os_user: Option<String>,
    socket_dirs: Vec<PathBuf>,
}

impl Env {
    /// This process's environment.
    pub fn process() -> Env {
        let vars: HashMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k.starts_with("PG") || ["DATABASE_URL", "HOME", "USER"].contains(&k.as_str()))
            .collect();
        let home = vars.get("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
        Env {
            os_user: os_user().or_else(|| vars.get("USER").cloned()),
            vars,
            home,
            socket_dirs: vec![PathBuf::from("/var/run/postgresql"), PathBuf::from("/tmp")],
        }
    }

    /// An environment with no variables, no home and no socket directory:
    /// only the connection string and the defaults count.
    pub fn empty() -> Env {
        Env::default()
    }

    /// Sets a variable (for tests and callers that build their own).
    pub fn var(mut self, name: &str, value: &str) -> Env {
        self.vars.insert(name.to_string(), value.to_string());
        self
    }

    /// Sets the home directory.
    pub fn home(mut self, home: &Path) -> Env {
        self.home = Some(home.to_path_buf());
        self
    }

    /// Sets the OS user name (the default user).
    pub fn os_user(mut self, user: &str) -> Env {
        self.os_user = Some(user.to_string());
        self
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    pub(crate) fn home_dir(&self) -> Option<&Path> {
        self.home.as_deref()
    }

    /// The directories where a local server's socket is looked for.
    pub(crate) fn socket_dirs(&self) -> &[PathBuf] {
        &self.socket_dirs
    }
}

/// The name of the user this process runs as, from the password database.
fn os_user() -> Option<String> {
    let uid = std::fs::metadata("/proc/self").ok()?.uid();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let _password = fields.next()?;
        (fields.next()?.parse::<u32>().ok()? == uid).then(|| name.to_string())
    })
}

/// Every setting that applies, by keyword.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    map: BTreeMap<&'static str, Setting>,
}

impl Settings {
    /// The settings of `conn_string` (if any, from `source`), completed from
    /// the service file, the variables of `env` and the defaults.
    pub(crate) fn resolve(conn_string: Option<(&str, &str)>, env: &Env) -> Result<Settings, ConnectError> {
        let mut settings = Settings::default();
        if let Some((text, source)) = conn_string {
            let origin = Origin::ConnString(source.to_string());
            let pairs = conninfo::parse(text).map_err(|message| ConnectError::InvalidUrl {
                origin: source.to_string(),
                message,
            })?;
            for (key, value) in pairs {
                let keyword = keyword(&key).map_err(|message| ConnectError::InvalidUrl {
                    origin: source.to_string(),
                    message,
                })?;
                settings.map.insert(
                    keyword,
                    Setting {
                        value,
                        origin: origin.clone(),
                    },
                );
            }
        }
        let service = match settings.get("service") {
            Some(setting) => Some(setting.clone()),
            None => env.get("PGSERVICE").map(|name| Setting {
                value: name.to_string(),
                origin: Origin::Var("PGSERVICE"),
            }),
        };
        if let Some(service) = service {
            for (key, value, file) in service::lookup(&service, env)? {
                let keyword = keyword(&key).map_err(|message| ConnectError::Service {
                    message: format!("{}: service {}: {message}", file.display(), service.value),
                })?;
                settings.map.entry(keyword).or_insert(Setting {
                    value,
                    origin: Origin::Service {
                        name: service.value.clone(),
                        file: file.clone(),
                    },
                });
            }
        }
        for (keyword, var) in KEYWORDS {
            if let Some(var) = var
                && let Some(value) = env.get(var)
            {
                settings.map.entry(keyword).or_insert(Setting {
                    value: value.to_string(),
                    origin: Origin::Var(var),
                });
            }
        }
        settings.apply_defaults(env);
        Ok(settings)
    }

    fn apply_defaults(&mut self, env: &Env) {
        if !self.map.contains_key("host") && !self.map.contains_key("hostaddr") {
            let port = self
                .get("port")
                .map(|p| p.value.split(',').next().unwrap_or("").to_string())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "5432".to_string());
            let socket_dir = env
                .socket_dirs()
                .iter()
                .find(|dir| dir.join(format!(".s.PGSQL.{port}")).exists());
            let (value, what) = match socket_dir {
                Some(dir) => (dir.display().to_string(), "the local server's socket"),
                None => ("localhost".to_string(), "no local socket found"),
            };
            self.set_default("host", value, what);
        }
        self.set_default("port", "5432".to_string(), "PostgreSQL's port");
        let user = env.os_user.clone().unwrap_or_else(|| "postgres".to_string());
        self.set_default("user", user, "the OS user");
        let dbname = self.value("user").unwrap_or("postgres").to_string();
        self.set_default("dbname", dbname, "the user name");
        if !self.map.contains_key("application_name") {
            let fallback = self.get("fallback_application_name").cloned().unwrap_or(Setting {
                value: APPLICATION_NAME.to_string(),
                origin: Origin::Default("pgtrail's"),
            });
            self.map.insert("application_name", fallback);
        }
        self.set_default("sslmode", "prefer".to_string(), "libpq's");
    }

    fn set_default(&mut self, keyword: &'static str, value: String, what: &'static str) {
        self.map.entry(keyword).or_insert(Setting {
            value,
            origin: Origin::Default(what),
        });
    }

    /// The setting of `keyword`, if any.
    pub fn get(&self, keyword: &str) -> Option<&Setting> {
        self.map
            .get(keyword)
            .filter(|s| !s.value.is_empty() || keyword == "password")
    }

    /// The value of `keyword`, if any.
    pub fn value(&self, keyword: &str) -> Option<&str> {
        self.get(keyword).map(|s| s.value.as_str())
    }

    /// Replaces a setting (e.g. the default sslmode that `sslrootcert=system` changes).
    pub(crate) fn set(&mut self, keyword: &'static str, value: &str, origin: Origin) {
        self.map.insert(
            keyword,
            Setting {
                value: value.to_string(),
                origin,
            },
        );
    }

    /// `keyword value (origin)`, for messages.
    pub fn describe(&self, keyword: &str) -> String {
        match self.get(keyword) {
            Some(setting) => format!("{} ({})", setting.value, setting.origin),
            None => "(none)".to_string(),
        }
    }
}

/// The canonical keyword for `key`, or why it is refused.
fn keyword(key: &str) -> Result<&'static str, String> {
    if let Some((keyword, _)) = KEYWORDS.iter().find(|(k, _)| *k == key) {
        return Ok(keyword);
    }
    if UNSUPPORTED.contains(&key) {
        return Err(format!(
            "`{key}` is a libpq setting pgtrail does not support; remove it"
        ));
    }
    let names: Vec<&str> = KEYWORDS.iter().map(|(k, _)| *k).collect();
    let suggestion = names
        .iter()
        .map(|name| (strsim_distance(key, name), name))
        .filter(|(distance, _)| *distance <= 2)
        .min()
        .map(|(_, name)| format!(" (did you mean `{name}`?)"))
        .unwrap_or_default();
    Err(format!("unknown connection setting `{key}`{suggestion}"))
}

/// Levenshtein distance, for suggestions.
fn strsim_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = if ca == *cb {
                previous
            } else {
                1 + previous.min(row[j]).min(row[j + 1])
            };
            previous = current;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env::empty().os_user("ann")
    }

    #[test]
    fn the_connection_string_wins_then_variables_then_defaults() {
        let env = env()
            .var("PGHOST", "ignored.example")
            .var("PGSSLMODE", "require")
            .var("PGDATABASE", "from_var");
        let settings = Settings::resolve(Some(("postgres://db.internal", "DATABASE_URL")), &env).unwrap();
        assert_eq!(settings.describe("host"), "db.internal (from DATABASE_URL)");
        assert_eq!(settings.describe("sslmode"), "require (from PGSSLMODE)");
        assert_eq!(settings.describe("dbname"), "from_var (from PGDATABASE)");
        assert_eq!(settings.describe("port"), "5432 (default: PostgreSQL's port)");
        assert_eq!(settings.describe("user"), "ann (default: the OS user)");
        assert_eq!(
            settings.describe("application_name"),
            "pgtrail (default: pgtrail's)"
        );
    }

    #[test]
    fn defaults_follow_libpq() {
        let settings = Settings::resolve(None, &env()).unwrap();
        assert_eq!(settings.value("host"), Some("localhost"));
        assert_eq!(settings.describe("dbname"), "ann (default: the user name)");
        assert_eq!(settings.describe("sslmode"), "prefer (default: libpq's)");
        let settings = Settings::resolve(None, &env().var("PGAPPNAME", "nightly")).unwrap();
        assert_eq!(settings.describe("application_name"), "nightly (from PGAPPNAME)");
    }

    #[test]
    fn unknown_and_unsupported_keywords_are_errors() {
        let error = Settings::resolve(Some(("host=x sslmod=require", "--database-url")), &env()).unwrap_err();
        assert!(error.to_string().contains("did you mean `sslmode`"), "{error}");
        let error =
            Settings::resolve(Some(("postgres://h/d?sslcrl=x", "--database-url")), &env()).unwrap_err();
        assert!(error.to_string().contains("does not support"), "{error}");
    }
}
