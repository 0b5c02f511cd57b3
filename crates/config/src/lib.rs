//! Parsing and validation of `pgtrail.toml`.
//!
//! ```toml
//! [capture]
//! schemas = ["public"]              # schemas to consider (default ["public"])
//! include = ["*"]                   # patterns on "table" or "schema.table" (default ["*"])
//! exclude = ["sessions", "*_audit"] # default []
//! images = "diff"                   # "diff" or "full"; default "diff"
//! ignore_columns = ["updated_at"]   # everywhere; default []
//! redact_columns = []               # everywhere; default []
//! auto_attach = false               # default false
//! truncate = "event"                # "event" or "capture"; default "event"
//! truncate_row_limit = 100000       # with "capture": the most rows recorded; default 100000
//! mode = "trigger"                  # "trigger" or "wal" (logical decoding, `pgtrail follow`)
//! wal_max_lag_bytes = 1073741824    # `pgtrail check` reports a slot further behind
//!
//! [context]                         # custom settings the app already sets
//! actor_id = ["app.user_id"]
//! actor_name = ["app.actor_email", "app.current_user"]
//! require_actor = false
//! outside_transaction = "warn"      # set_context outside BEGIN..COMMIT: "warn", "refuse" or "ignore"
//! # also: actor_type, reason, migration, request_id, session_id,
//! # business_process, ip, user_agent, and [context.extra] for anything else
//!
//! [tables."public.students"]
//! key = ["std_no"]
//! images = "full"
//! truncate = "capture"              # per-table overrides of [capture]
//! mode = "wal"
//!
//! [install]                         # what an install without full rights may lack (default false)
//! accept_installer_can_edit_trail = false   # no owner role: the installer owns the trail
//! accept_unseen_capture_gaps = false        # no DDL watch (event triggers need a superuser)
//!
//! [retention]                       # the trail partitioned by time, archived, then dropped
//! partition = "month"               # day, week or month
//! premake = 3                       # partitions made ahead
//! keep = "400 days"                 # older partitions are archived, verified, then dropped
//! archive_dir = "/var/lib/pgtrail/archive"
//! [retention.tables."public.invoices"]   # a table kept longer (or shorter): a partition
//! keep = "10 years"                 # is archived once every table in it is past its keep
//! [report]                          # for `pgtrail report --kind privileged|schema|subject`
//! application_roles = ["app"]       # roles the application connects as
//! migration_roles = ["migrator"]    # roles migrations run as
//! subject_columns = ["user_id"]     # columns naming a data subject in any table
//!
//! [serve]                           # `pgtrail serve`: the JSON API and web UI
//! listen = "127.0.0.1:8420"
//! anonymous_read = false            # true: requests without a token may read (trusted network only)
//! # tls_cert = "/etc/pgtrail/cert.pem" # with tls_key: HTTPS served directly (else behind a TLS proxy)
//! # tls_key = "/etc/pgtrail/key.pem"
//! [serve.tokens.support]            # a bearer token, by name; only its SHA-256 is written here
//! role = "reader"                   # reader (default) or operator
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! ```
//!
//! Every section and key is optional; an empty file gives
//! [`Config::default`]. Table names are split as described in [`name`];
//! patterns and table selection are described in [`matching`]. A table has
//! one section at most: two sections that name the same table (`accounts`
//! and `public.accounts`, or `public.users` and `"public"."users"`) are an
//! error naming both.
//!
//! Problems are reported as [`ConfigError`]s that point at a line and
//! column of the file and, where possible, suggest a fix:
//!
//! ```
//! use pgtrail_config::Config;
//! let err = Config::parse("[capture]\ninclde = [\"*\"]\n", "pgtrail.toml").unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "pgtrail.toml:2:1: unknown key `inclde` in [capture]\n  help: did you mean `include`?"
//! );
//! ```

mod diagnose;
mod error;
pub mod matching;
mod model;
pub mod name;
mod raw;
pub mod retention;
pub mod serve;
mod setting;
mod suggest;
mod validate;
mod walk;

use std::path::Path;

pub use error::{ConfigError, ErrorKind, Location};
pub use matching::{ColumnRules, Pattern, PatternError, Selection};
pub use model::{
    Capture, Config, Context, DEFAULT_FILE_NAME, DEFAULT_TRUNCATE_ROW_LIMIT, DEFAULT_WAL_MAX_LAG_BYTES,
    Images, Install, Mode, OutsideTransaction, Report, TableRule, Truncate,
};
pub use name::{NameError, QualifiedName};
pub use retention::{Grain, Keep, KeepUnit, Retention, TableKeep};
pub use serve::{Serve, ServeTls, ServeToken, TokenRole};
pub use suggest::suggest;

use error::Source;
use raw::RawConfig;

impl Config {
    /// Reads and parses the file at `path`; messages name the file as `path`
    /// was written.
    pub fn from_path(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ConfigError::NotFound {
                    path: path.to_path_buf(),
                }
            } else {
                ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses `text`; `origin` is the file name used in messages.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let src = Source { text, origin };
        let (keys, walk_error) = walk::walk(text);
        if let Some(walk_error) = walk_error {
            // Normally a syntax error. The typed pass below reports the same
            // error, or a better one for the rare documents the walk cannot
            // handle (a date where a section is expected).
            return Err(match toml::from_str::<RawConfig>(text) {
                Err(e) => diagnose::toml_error(src, &e, &keys, ErrorKind::Syntax),
                Ok(_) => diagnose::toml_error(src, &walk_error, &keys, ErrorKind::Syntax),
            });
        }
        if let Some(key) = keys
            .iter()
            .filter(|k| k.unknown.is_some())
            .min_by_key(|k| k.span.start)
        {
            let expected = key.unknown.unwrap_or_default();
            return Err(diagnose::unknown_key(src, key, expected));
        }
        let raw: RawConfig = toml::from_str(text)
            .map_err(|e| diagnose::toml_error(src, &e, &keys, ErrorKind::InvalidValue))?;
        validate::build(src, raw)
    }
}

#[cfg(test)]
mod tests;
