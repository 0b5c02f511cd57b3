//! The validated configuration: what the rest of pgtrail works with.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::Location;
use crate::matching::Pattern;
use crate::name::QualifiedName;

/// The name of the configuration file, used as origin when none is given.
pub const DEFAULT_FILE_NAME: &str = "pgtrail.toml";

/// A parsed and validated `pgtrail.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The `[capture]` section: which tables, and what to record.
    pub capture: Capture,
    /// The `[context]` section: where the "who / why" of a change comes from.
    pub context: Context,
    /// The `[tables."..."]` sections, in the order they appear in the file.
    pub tables: Vec<TableRule>,
    /// The `[install]` section: what an install without full rights may lack.
    pub install: Install,
    /// The `[retention]` section: partitions, archive, drop.
    pub retention: crate::retention::Retention,
    /// The `[report]` section: who is expected to change data, for the
    /// compliance reports.
    pub report: Report,
    /// The `[serve]` section: `pgtrail serve`'s address and tokens.
    pub serve: crate::serve::Serve,
    /// The file name used in messages.
    pub(crate) origin: String,
}

impl Default for Config {
    /// The configuration of an empty file.
    fn default() -> Self {
        Config {
            capture: Capture::default(),
            context: Context::default(),
            tables: Vec::new(),
            install: Install::default(),
            retention: crate::retention::Retention::default(),
            report: Report::default(),
            serve: crate::serve::Serve::default(),
            origin: DEFAULT_FILE_NAME.to_string(),
        }
    }
}

impl Config {
    /// The file name used in messages (the path given to
    /// [`Config::from_path`] or the origin given to [`Config::parse`]).
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

/// The `[report]` section: the roles the compliance reports expect to
/// change data (anything else is privileged or out of process), and the
/// columns that name a data subject across tables. All empty by default.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// Database roles the application connects as.
    pub application_roles: Vec<String>,
    /// Database roles migrations run as.
    pub migration_roles: Vec<String>,
    /// Columns whose value names a data subject in any table
    /// (`pgtrail report --kind subject --subject VALUE`).
    pub subject_columns: Vec<String>,
}

/// The `[install]` section: what an install by a role that is not a
/// superuser may lack without `pgtrail check` reporting it, each named by
/// what is given up. Both default to `false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Install {
    /// The trail may belong to the role that installed it (no owner role:
    /// that role could not create roles). Given up: a trail its installer
    /// cannot edit; whoever connects as that role can switch the
    /// append-only guards off and change or delete what was recorded.
    pub accept_installer_can_edit_trail: bool,
    /// The DDL watch may be missing (no event triggers: the installer is
    /// not a superuser). Given up: capture-gap detection; a table owner can
    /// switch capture off and on without a trace in `pgtrail.capture_gaps`,
    /// `check` or `verify`.
    pub accept_unseen_capture_gaps: bool,
}

/// The `[capture]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Capture {
    /// Schemas to consider; default `["public"]`.
    pub schemas: Vec<String>,
    /// Tables to capture, as patterns; default `["*"]`.
    pub include: Vec<Pattern>,
    /// Tables never to capture, as patterns; default none. Wins over `include`.
    pub exclude: Vec<Pattern>,
    /// What an UPDATE records; default [`Images::Diff`].
    pub images: Images,
    /// Columns never recorded, in every table.
    pub ignore_columns: Vec<String>,
    /// Columns recorded as redacted, in every table.
    pub redact_columns: Vec<String>,
    /// Attach capture to new tables automatically; default `false`.
    pub auto_attach: bool,
    /// What a TRUNCATE records; default [`Truncate::Event`].
    pub truncate: Truncate,
    /// With [`Truncate::Capture`], the most rows a TRUNCATE records one by
    /// one (above it, the event only, which says so); `None` in the file
    /// means [`DEFAULT_TRUNCATE_ROW_LIMIT`].
    pub truncate_row_limit: Option<i64>,
    /// How changes are captured; default [`Mode::Trigger`].
    pub mode: Mode,
    /// `pgtrail check` reports a WAL-mode slot holding more WAL than this
    /// (bytes not yet written to the trail); default
    /// [`DEFAULT_WAL_MAX_LAG_BYTES`].
    pub wal_max_lag_bytes: i64,
}

impl Default for Capture {
    fn default() -> Self {
        Capture {
            schemas: vec!["public".to_string()],
            include: vec![Pattern::any()],
            exclude: Vec::new(),
            images: Images::default(),
            ignore_columns: Vec::new(),
            redact_columns: Vec::new(),
            auto_attach: false,
            truncate: Truncate::default(),
            truncate_row_limit: None,
            mode: Mode::default(),
            wal_max_lag_bytes: DEFAULT_WAL_MAX_LAG_BYTES,
        }
    }
}

/// The lag past which `pgtrail check` reports a WAL-mode slot: 1 GiB.
pub const DEFAULT_WAL_MAX_LAG_BYTES: i64 = 1 << 30;

/// How a table's changes reach the trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// Capture triggers, in the writing transaction (the default).
    #[default]
    Trigger,
    /// Logical decoding: a slot read by `pgtrail follow`.
    Wal,
}

impl Mode {
    /// The spellings accepted in the file.
    pub const NAMES: [&'static str; 2] = ["trigger", "wal"];

    /// `"trigger"` or `"wal"`, as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Trigger => "trigger",
            Mode::Wal => "wal",
        }
    }

    /// Reads `"trigger"` or `"wal"` (exact spelling).
    pub fn from_name(name: &str) -> Option<Mode> {
        match name {
            "trigger" => Some(Mode::Trigger),
            "wal" => Some(Mode::Wal),
            _ => None,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is recorded for an UPDATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Images {
    /// Only the fields that changed (the default).
    #[default]
    Diff,
    /// The whole row, before and after.
    Full,
}

impl Images {
    /// The spellings accepted in the file.
    pub const NAMES: [&'static str; 2] = ["diff", "full"];

    /// `"diff"` or `"full"`, as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Images::Diff => "diff",
            Images::Full => "full",
        }
    }

    /// Reads `"diff"` or `"full"` (exact spelling).
    pub fn from_name(name: &str) -> Option<Images> {
        match name {
            "diff" => Some(Images::Diff),
            "full" => Some(Images::Full),
            _ => None,
        }
    }
}

impl fmt::Display for Images {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The row limit of `truncate = "capture"` when the file sets none: a
/// TRUNCATE of more rows records the event only.
pub const DEFAULT_TRUNCATE_ROW_LIMIT: i64 = 100_000;

/// What is recorded for a TRUNCATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Truncate {
    /// The event only: one TRUNCATE change per statement (the default).
    #[default]
    Event,
    /// Every removed row as a DELETE change, then the event (up to the
    /// table's `truncate_row_limit` rows; above it, the event only).
    Capture,
}

impl Truncate {
    /// The spellings accepted in the file.
    pub const NAMES: [&'static str; 2] = ["event", "capture"];

    /// `"event"` or `"capture"`, as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Truncate::Event => "event",
            Truncate::Capture => "capture",
        }
    }

    /// Reads `"event"` or `"capture"` (exact spelling).
    pub fn from_name(name: &str) -> Option<Truncate> {
        match name {
            "event" => Some(Truncate::Event),
            "capture" => Some(Truncate::Capture),
            _ => None,
        }
    }
}

impl fmt::Display for Truncate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `pgtrail.set_context` does when it is called outside a transaction
/// block, where the context ends with its own statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OutsideTransaction {
    /// A warning with a hint (the default).
    #[default]
    Warn,
    /// An error: the call (its transaction) fails.
    Refuse,
    /// Nothing, and no check.
    Ignore,
}

impl OutsideTransaction {
    /// The spellings accepted in the file.
    pub const NAMES: [&'static str; 3] = ["warn", "refuse", "ignore"];

    /// `"warn"`, `"refuse"` or `"ignore"`, as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            OutsideTransaction::Warn => "warn",
            OutsideTransaction::Refuse => "refuse",
            OutsideTransaction::Ignore => "ignore",
        }
    }

    /// Reads `"warn"`, `"refuse"` or `"ignore"` (exact spelling).
    pub fn from_name(name: &str) -> Option<OutsideTransaction> {
        match name {
            "warn" => Some(OutsideTransaction::Warn),
            "refuse" => Some(OutsideTransaction::Refuse),
            "ignore" => Some(OutsideTransaction::Ignore),
            _ => None,
        }
    }
}

impl fmt::Display for OutsideTransaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `[context]` section: for each piece of context pgtrail records, the
/// custom settings (GUCs such as `app.user_id`) the application already sets,
/// tried in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Context {
    /// Settings holding the actor's id.
    pub actor_id: Vec<String>,
    /// Settings holding the actor's display name.
    pub actor_name: Vec<String>,
    /// Settings holding the actor's type (user, service, ...).
    pub actor_type: Vec<String>,
    /// Settings holding the reason for a change.
    pub reason: Vec<String>,
    /// Every other context key: the well-known ones
    /// ([`Context::WELL_KNOWN_EXTRA`]) written directly in `[context]`, and
    /// the free-form ones from `[context.extra]`. Only keys with at least one
    /// setting are present.
    pub extra: BTreeMap<String, Vec<String>>,
    /// When `true`, a change with no actor is refused.
    pub require_actor: bool,
    /// What `set_context` does outside a transaction block.
    pub outside_transaction: OutsideTransaction,
}

impl Context {
    /// Keys written directly in `[context]` that are stored in
    /// [`Context::extra`].
    pub const WELL_KNOWN_EXTRA: [&'static str; 6] = [
        "migration",
        "request_id",
        "session_id",
        "business_process",
        "ip",
        "user_agent",
    ];

    /// Every context key with at least one setting, with its settings:
    /// `actor_id`, `actor_name`, `actor_type`, `reason`, then [`Context::extra`].
    pub fn keys(&self) -> impl Iterator<Item = (&str, &[String])> {
        [
            ("actor_id", &self.actor_id),
            ("actor_name", &self.actor_name),
            ("actor_type", &self.actor_type),
            ("reason", &self.reason),
        ]
        .into_iter()
        .chain(self.extra.iter().map(|(k, v)| (k.as_str(), v)))
        .filter(|(_, settings)| !settings.is_empty())
        .map(|(k, v)| (k, v.as_slice()))
    }
}

/// One `[tables."..."]` section.
///
/// The name is `table` or `schema.table` (see [`crate::name`]). A
/// schema-qualified name whose schema is not in `capture.schemas` is rejected
/// when the file is parsed; a bare name applies to a table of that name in
/// any schema of `capture.schemas` (the catalog decides which exist).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRule {
    /// The table, as written.
    pub name: QualifiedName,
    /// Columns forming the row key, overriding the detected primary key.
    pub key: Option<Vec<String>>,
    /// Per-table override of `capture.images`.
    pub images: Option<Images>,
    /// Columns never recorded for this table (in addition to the global ones).
    pub ignore_columns: Vec<String>,
    /// Columns redacted for this table (in addition to the global ones).
    pub redact_columns: Vec<String>,
    /// Per-table override of `capture.truncate`.
    pub truncate: Option<Truncate>,
    /// Per-table override of `capture.truncate_row_limit`.
    pub truncate_row_limit: Option<i64>,
    /// Per-table override of `capture.mode`.
    pub mode: Option<Mode>,
    /// Where the table's name is written in the file.
    pub location: Location,
    /// Where each column of `key` is written, in the same order as `key`
    /// (empty when there is no `key`).
    pub key_location: Vec<Location>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_names() {
        assert_eq!(Images::Diff.as_str(), "diff");
        assert_eq!(Images::Full.to_string(), "full");
        assert_eq!(Images::from_name("full"), Some(Images::Full));
        assert_eq!(Images::from_name("Full"), None);
        assert_eq!(Images::default(), Images::Diff);
        for name in Images::NAMES {
            assert_eq!(Images::from_name(name).map(Images::as_str), Some(name));
        }
    }

    #[test]
    fn truncate_names() {
        assert_eq!(Truncate::default(), Truncate::Event);
        assert_eq!(Truncate::Capture.to_string(), "capture");
        assert_eq!(Truncate::from_name("Capture"), None);
        for name in Truncate::NAMES {
            assert_eq!(Truncate::from_name(name).map(Truncate::as_str), Some(name));
        }
    }

    #[test]
    fn context_keys_skip_empty_lists() {
        let mut context = Context {
            actor_id: vec!["app.user_id".into()],
            ..Context::default()
        };
        context
            .extra
            .insert("tenant".into(), vec!["app.tenant_id".into()]);
        let keys: Vec<_> = context.keys().map(|(k, _)| k).collect();
        assert_eq!(keys, ["actor_id", "tenant"]);
    }

    #[test]
    fn default_config() {
        let config = Config::default();
        assert_eq!(config.origin(), "pgtrail.toml");
        assert_eq!(config.capture.schemas, ["public"]);
        assert_eq!(config.capture.include.len(), 1);
        assert_eq!(config.capture.include[0].as_str(), "*");
        assert!(config.tables.is_empty());
    }
}
