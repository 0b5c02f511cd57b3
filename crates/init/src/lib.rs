//! A first `pgtrail.toml`, written from what the database holds (`pgtrail init`).
//!
//! [`render_config`] turns a [`Catalog`] into a commented configuration file
//! that a person reviews before running `pgtrail apply`:
//!
//! * `[capture]` considers the given schemas and includes every table, except
//!   tables whose names look ephemeral (sessions, one-time tokens), like
//!   bookkeeping of a migration tool or an extension, or like audit and log
//!   tables already (see [`EXCLUDE_RULES`]). Only rules that match a table of
//!   the database are written, each with its reason. Columns that look noisy
//!   (`updated_at`, `last_login_at`, ...; see [`looks_noisy`]) and exist in
//!   at least [`GLOBAL_IGNORE_MIN_TABLES`] captured tables are ignored
//!   everywhere.
//! * `[context]` shows, commented out, how to map settings the application
//!   already sets onto pgtrail's context.
//! * Every top-level table gets a `[tables."schema.name"]` section, sorted by
//!   schema then name, whose comments give the detected key, the partitions
//!   (which never get sections of their own), the exclude rule that applies,
//!   and commented-out suggestions: `redact_columns` for columns that look
//!   like secrets ([`looks_secret`]), `ignore_columns` for noisy columns not
//!   ignored everywhere.
//!
//! Sections hold no settings, only comments: an empty TOML table is valid,
//! and the detected key is used by `pgtrail apply` anyway. Writing `key = ...`
//! would freeze today's key (a primary key added later would not be used).
//!
//! The text parses with [`pgtrail_config::Config::parse`] and selects exactly
//! the tables that are not excluded.
//!
//! Where pgtrail is installed already, [`live::render_live_config`] writes
//! what the install does instead, so that `pgtrail plan` has nothing to do.
//!
//! ```
//! use pgtrail_catalog::{Catalog, Column, KeySource, Table, TableKind};
//! use pgtrail_config::{Config, Selection};
//!
//! let column = |name: &str| Column {
//!     name: name.to_string(),
//!     type_name: "text".to_string(),
//!     not_null: false,
//!     generated: false,
//! };
//! let table = |name: &str, key: &str| Table {
//!     schema: "public".to_string(),
//!     name: name.to_string(),
//!     kind: TableKind::Ordinary,
//!     columns: vec![column(key), column("updated_at")],
//!     key: KeySource::PrimaryKey(vec![key.to_string()]),
//!     partition_of: None,
//!     partitions: Vec::new(),
//!     triggers: Vec::new(),
//! };
//! let mut catalog = Catalog::default();
//! catalog.schemas = vec!["public".to_string()];
//! for t in [table("students", "std_no"), table("sessions", "id")] {
//!     catalog.tables.insert((t.schema.clone(), t.name.clone()), t);
//! }
//!
//! let text = pgtrail_init::render_config(&catalog, &["public".to_string()]);
//! assert!(text.contains("[tables.\"public.students\"]\n# key: std_no (primary key)\n"));
//! let config = Config::parse(&text, "pgtrail.toml").unwrap();
//! assert_eq!(config.selects("public", "students"), Selection::Included);
//! assert!(matches!(config.selects("public", "sessions"), Selection::Excluded { .. }));
//! ```

use std::fmt::Write as _;

pub mod live;

use pgtrail_catalog::{Catalog, KeySource, Table};
use pgtrail_config::{Pattern, QualifiedName};

/// Patterns of tables not worth capturing, each with the reason written next
/// to it, most specific first. A table is attributed to the first rule that
/// matches it, like `capture.exclude` does.
pub const EXCLUDE_RULES: &[(&str, &str)] = &[
    // Ephemeral.
    (
        "sessions",
        "login sessions: short-lived, rewritten on every request",
    ),
    (
        "django_session",
        "login sessions: short-lived, rewritten on every request",
    ),
    ("verification_tokens", "one-time tokens: short-lived"),
    ("password_resets", "one-time tokens: short-lived"),
    ("password_reset_tokens", "one-time tokens: short-lived"),
    // Bookkeeping of migration tools and extensions.
    ("schema_migrations", "the migration tool's bookkeeping"),
    ("__drizzle_migrations", "Drizzle's migration bookkeeping"),
    ("_prisma_migrations", "Prisma's migration bookkeeping"),
    ("ar_internal_metadata", "Rails' environment bookkeeping"),
    ("django_migrations", "Django's migration bookkeeping"),
    ("knex_migrations", "Knex's migration bookkeeping"),
    ("knex_migrations_lock", "Knex's migration bookkeeping"),
    ("_sqlx_migrations", "sqlx's migration bookkeeping"),
    ("flyway_schema_history", "Flyway's migration bookkeeping"),
    ("goose_db_version", "goose's migration bookkeeping"),
    ("databasechangelog", "Liquibase's migration bookkeeping"),
    ("databasechangeloglock", "Liquibase's migration bookkeeping"),
    ("SequelizeMeta", "Sequelize's migration bookkeeping"),
    ("mikro_orm_migrations", "MikroORM's migration bookkeeping"),
    ("migrations", "the migration tool's bookkeeping"),
    (
        "spatial_ref_sys",
        "PostGIS reference data, managed by the extension",
    ),
    ("pgtrail.*", "pgtrail's own tables"),
    // Audit and log tables.
    ("audit_logs", "an audit trail already"),
    ("audit_log", "an audit trail already"),
    ("*_audit", "an audit table already"),
    ("*_audits", "an audit table already"),
    ("*_audit_log", "an audit table already"),
    ("*_audit_logs", "an audit table already"),
    ("*_history", "a history table already: its rows are the record"),
    ("*_log", "a log already: its rows are the record"),
    ("*_logs", "a log already: its rows are the record"),
];

/// A noisy column goes into `capture.ignore_columns` when at least this many
/// captured tables have it (and it is no table's key); otherwise it is
/// suggested in the sections of the tables that have it.
pub const GLOBAL_IGNORE_MIN_TABLES: usize = 2;

/// Noisy column names, as their lowercase words run together (so
/// `updated_at`, `updatedAt` and `UpdatedAt` are all `updatedat`).
const NOISY: &[&str] = &[
    "updatedat",
    "updatedon",
    "modifiedat",
    "modifiedon",
    "datemodified",
    "lastmodified",
    "lastmodifiedat",
    "lastupdated",
    "lastupdatedat",
    "lastloginat",
    "lastlogin",
    "lastloggedinat",
    "lastseenat",
    "lastseen",
    "lastactivityat",
    "lastactiveat",
    "lastaccessedat",
    "lastusedat",
    "lastrequestat",
    "lastsigninat",
    "lastsigninip",
    "currentsigninat",
    "currentsigninip",
    "signincount",
];

/// Last words that make a secret-sounding name a plain attribute
/// (`password_changed_at`, `token_type`, `otp_enabled`).
const NOT_SECRET_LAST_WORDS: &[&str] = &[
    "at", "on", "date", "time", "expires", "expiry", "count", "type", "kind", "id", "ids", "enabled",
    "required", "length", "version", "hint",
];

/// What [`render_config`] wrote, in numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    /// Top-level tables listed (partitions are folded into their parent).
    pub tables: usize,
    /// Of those, the ones excluded by the generated `exclude` patterns.
    pub excluded: usize,
    /// Captured (not excluded) tables without a primary key or replica
    /// identity index: the whole row identifies a row.
    pub without_key: usize,
}

/// The commented `pgtrail.toml` for the tables of `schemas` in `catalog`
/// (see the module documentation).
pub fn render_config(catalog: &Catalog, schemas: &[String]) -> String {
    Survey::new(catalog, schemas).render()
}

/// The numbers of what [`render_config`] writes for the same arguments.
pub fn summarize(catalog: &Catalog, schemas: &[String]) -> Summary {
    let survey = Survey::new(catalog, schemas);
    let captured = || survey.entries.iter().filter(|e| e.excluded_by.is_none());
    Summary {
        tables: survey.entries.len(),
        excluded: survey.entries.len() - captured().count(),
        without_key: captured().filter(|e| e.table.key == KeySource::FullRow).count(),
    }
}

/// Whether a column name looks like it holds a secret: a password, token,
/// secret, API or private key, one-time password or passphrase, unless its
/// last word makes it an attribute of one (`password_changed_at`,
/// `token_type`).
pub fn looks_secret(column: &str) -> bool {
    let words = words(column);
    let Some(last) = words.last() else {
        return false;
    };
    if NOT_SECRET_LAST_WORDS.contains(&last.as_str()) {
        return false;
    }
    let joined = words.concat();
    words.iter().any(|w| {
        ["password", "passwd", "passphrase", "secret", "token"]
            .iter()
            .any(|s| w.contains(s))
            || w.starts_with("otp")
    }) || joined.contains("apikey")
        || joined.contains("privatekey")
        || (joined.contains("hash") && joined.contains("pass"))
}

/// Whether a column name looks like one that changes on every write or
/// every visit (`updated_at`, `modifiedAt`, `last_login_at`, ...), whatever
/// the case and separators.
pub fn looks_noisy(column: &str) -> bool {
    NOISY.contains(&words(column).concat().as_str())
}

/// The lowercase words of a name: split at anything but letters and digits,
/// and where a lowercase letter or digit is followed by an uppercase one.
fn words(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut previous_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            previous_lower = false;
            continue;
        }
        if c.is_uppercase() && previous_lower && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        previous_lower = c.is_lowercase() || c.is_numeric();
        current.extend(c.to_lowercase());
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// The decisions behind the file.
struct Survey<'a> {
    schemas: &'a [String],
    /// Top-level tables of the schemas, sorted by schema then name.
    entries: Vec<Entry<'a>>,
    /// The `exclude` patterns written, with their reasons.
    exclude: Vec<(&'static str, &'static str)>,
    /// `capture.ignore_columns`, with the number of captured tables having each.
    ignore: Vec<(&'a str, usize)>,
}

struct Entry<'a> {
    table: &'a Table,
    excluded_by: Option<&'static str>,
    /// Every partition below the table, depth first.
    partitions: Vec<&'a (String, String)>,
}

impl<'a> Survey<'a> {
    fn new(catalog: &'a Catalog, schemas: &'a [String]) -> Survey<'a> {
        // BTreeMap order: by schema, then name.
        let mut entries: Vec<Entry<'a>> = catalog
            .top_level_tables()
            .filter(|t| schemas.contains(&t.schema))
            .map(|table| Entry {
                table,
                excluded_by: None,
                partitions: partitions_below(catalog, table),
            })
            .collect();

        let mut exclude = Vec::new();
        for &(source, reason) in EXCLUDE_RULES {
            let Ok(pattern) = Pattern::new(source) else {
                continue;
            };
            let mut used = false;
            for entry in entries.iter_mut().filter(|e| e.excluded_by.is_none()) {
                if pattern.matches_table(&entry.table.schema, &entry.table.name) {
                    entry.excluded_by = Some(source);
                    used = true;
                }
            }
            if used {
                exclude.push((source, reason));
            }
        }

        // Noisy columns of captured tables, in order of first appearance.
        let captured: Vec<&Table> = entries
            .iter()
            .filter(|e| e.excluded_by.is_none())
            .map(|e| e.table)
            .collect();
        let mut noisy: Vec<&'a str> = Vec::new();
        for table in &captured {
            for column in table.column_names() {
                if looks_noisy(column) && !noisy.contains(&column) {
                    noisy.push(column);
                }
            }
        }
        let ignore = noisy
            .into_iter()
            .filter(|column| {
                !captured
                    .iter()
                    .any(|t| t.key.columns().iter().any(|k| k == column))
            })
            .map(|column| {
                let count = captured.iter().filter(|t| t.column(column).is_some()).count();
                (column, count)
            })
            .filter(|&(_, count)| count >= GLOBAL_IGNORE_MIN_TABLES)
            .collect();

        Survey {
            schemas,
            entries,
            exclude,
            ignore,
        }
    }

    fn render(&self) -> String {
        let mut out = String::new();
        self.header(&mut out);
        self.capture(&mut out);
        context(&mut out);
        self.tables(&mut out);
        out
    }

    fn header(&self, out: &mut String) {
        let schemas: Vec<String> = self.schemas.iter().map(|s| comment_text(s)).collect();
        let _ = write!(
            out,
            "\
# pgtrail.toml: which tables pgtrail records, and how.
#
# Written by `pgtrail init` from the tables of schema{s} {schemas}.
# Review it, then:
#   pgtrail apply   installs pgtrail and makes the capture triggers match this file
#   pgtrail check   reports any difference between the database and this file (for CI)
# Table names in patterns and sections are `table` or `schema.table`; quote a
# part that contains a dot or a double quote in SQL style: `\"my.schema\".users`.

",
            s = if self.schemas.len() == 1 { "" } else { "s" },
            schemas = schemas.join(", "),
        );
    }

    fn capture(&self, out: &mut String) {
        out.push_str("[capture]\n");
        let _ = writeln!(out, "schemas = {}", string_array(self.schemas));
        out.push_str("include = [\"*\"]   # every table of those schemas, except the excluded ones\n");

        if self.exclude.is_empty() {
            out.push_str("exclude = []       # patterns, like \"sessions\" or \"*_audit\"\n");
        } else {
            out.push_str("# Tables not worth recording. Patterns match `table` in any schema above, or\n");
            out.push_str("# `schema.table`; `*` and `?` are wildcards.\n");
            let rows: Vec<(String, String)> = self
                .exclude
                .iter()
                .map(|(pattern, reason)| (format!("{},", toml_string(pattern)), reason.to_string()))
                .collect();
            out.push_str("exclude = [\n");
            aligned(out, "    ", &rows);
            out.push_str("]\n");
        }

        out.push_str(
            "images = \"diff\"   # an UPDATE records the changed fields; \"full\": the whole row before and after\n",
        );

        if self.ignore.is_empty() {
            out.push_str("ignore_columns = []   # columns never recorded, in every table\n");
        } else {
            out.push_str("# Columns that change on every write or visit, in many tables: an UPDATE that\n");
            out.push_str("# changes only these is not recorded, and their values are left out.\n");
            let rows: Vec<(String, String)> = self
                .ignore
                .iter()
                .map(|(column, count)| (format!("{},", toml_string(column)), format!("in {count} tables")))
                .collect();
            out.push_str("ignore_columns = [\n");
            aligned(out, "    ", &rows);
            out.push_str("]\n");
        }
        out.push_str(
            "redact_columns = []   # in every table: the change is recorded, the value is not (see suggestions below)\n\n",
        );
    }

    fn tables(&self, out: &mut String) {
        out.push_str(
            "\
# One section per table, with the key pgtrail detected. A section may set:
#   key = [\"col\", ...]       the columns that identify a row, instead of the detected key
#   images = \"full\"          whole rows before and after every UPDATE of this table
#   ignore_columns = [...]   columns never recorded
#   redact_columns = [...]   columns whose changes are recorded without their values
# A section captures its table even if `include` does not match it: to stop
# recording a table, add it to `exclude` (or narrow `include` and delete its section).
# Partitions are recorded through their partitioned table and have no section.
",
        );
        let global_ignore: Vec<&str> = self.ignore.iter().map(|(c, _)| *c).collect();
        for entry in &self.entries {
            let table = entry.table;
            let name = QualifiedName::new(table.schema.as_str(), table.name.as_str());
            let _ = writeln!(out, "\n[tables.{}]", toml_string(&name.to_string()));
            let _ = writeln!(out, "# {}", key_comment(&table.key));
            if !entry.partitions.is_empty() {
                let _ = writeln!(out, "# {}", partitions_comment(table, &entry.partitions));
            }
            if let Some(pattern) = entry.excluded_by {
                let _ = writeln!(out, "# excluded by {}", toml_string(pattern));
            }

            let key = table.key.columns();
            let secrets: Vec<&str> = table.column_names().filter(|c| looks_secret(c)).collect();
            let redact: Vec<&str> = secrets
                .iter()
                .copied()
                .filter(|c| !key.iter().any(|k| k == c))
                .collect();
            if !redact.is_empty() {
                let _ = writeln!(
                    out,
                    "# redact_columns = {}   # looks like a secret",
                    string_array(&redact)
                );
            }
            // Row keys are recorded unredacted: say so where a secret is in one.
            let in_key: Vec<String> = secrets
                .iter()
                .filter(|c| table.key == KeySource::FullRow || key.iter().any(|k| k == *c))
                .map(|c| comment_text(c))
                .collect();
            if !in_key.is_empty() {
                let names = in_key.join(", ");
                let _ = match (&table.key, in_key.len()) {
                    (KeySource::FullRow, _) => writeln!(
                        out,
                        "# note: without a key, the whole row ({names} included) is recorded as the row key, unredacted"
                    ),
                    (_, 1) => writeln!(
                        out,
                        "# note: {names} looks like a secret and is part of the row key, which is recorded unredacted"
                    ),
                    _ => writeln!(
                        out,
                        "# note: {names} look like secrets and are part of the row key, which is recorded unredacted"
                    ),
                };
            }

            let ignore: Vec<&str> = table
                .column_names()
                .filter(|c| looks_noisy(c) && !global_ignore.contains(c) && !key.iter().any(|k| k == c))
                .collect();
            if !ignore.is_empty() {
                let _ = writeln!(
                    out,
                    "# ignore_columns = {}   # changes on every write or visit",
                    string_array(&ignore)
                );
            }
        }
    }
}

fn context(out: &mut String) {
    out.push_str(
        "\
[context]
# Who made a change and why. The application can call
#   SELECT pgtrail.set_context(actor_id => '42', actor_name => 'ana@example.com', reason => '...');
# in each transaction, or pgtrail can read settings it already sets with
# SET LOCAL or set_config(..., true). Examples:
# actor_id = [\"app.user_id\"]
# actor_name = [\"app.actor_email\", \"app.current_user\"]
# actor_type = [\"app.actor_type\"]
# migration = [\"app.current_migration\"]
require_actor = false   # true: a change with no actor is refused with a clear error

",
    );
}

/// Every partition below `table` (partitions of partitions too), depth first.
fn partitions_below<'a>(catalog: &'a Catalog, table: &'a Table) -> Vec<&'a (String, String)> {
    let mut out = Vec::new();
    let mut stack: Vec<&'a (String, String)> = table.partitions.iter().rev().collect();
    while let Some(partition) = stack.pop() {
        if out.contains(&partition) {
            continue; // a cycle cannot happen in PostgreSQL; do not loop if it did
        }
        out.push(partition);
        if let Some(child) = catalog.tables.get(partition) {
            stack.extend(child.partitions.iter().rev());
        }
    }
    out
}

/// At most this many partitions are named in a comment.
const PARTITIONS_NAMED: usize = 10;

fn partitions_comment(table: &Table, partitions: &[&(String, String)]) -> String {
    let names: Vec<String> = partitions
        .iter()
        .take(PARTITIONS_NAMED)
        .map(|(schema, name)| {
            if *schema == table.schema {
                comment_text(name)
            } else {
                comment_text(&QualifiedName::new(schema.as_str(), name.as_str()).to_string())
            }
        })
        .collect();
    let more = match partitions.len().saturating_sub(PARTITIONS_NAMED) {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    format!(
        "partitioned: {} partition{} ({}{more})",
        partitions.len(),
        if partitions.len() == 1 { "" } else { "s" },
        names.join(", ")
    )
}

fn key_comment(key: &KeySource) -> String {
    let columns = |c: &[String]| {
        c.iter()
            .map(|name| comment_text(name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match key {
        KeySource::PrimaryKey(c) if c.len() == 1 => format!("key: {} (primary key)", columns(c)),
        KeySource::PrimaryKey(c) => format!("key: {} (composite primary key)", columns(c)),
        KeySource::ReplicaIdentity(c) => format!("key: {} (replica identity index)", columns(c)),
        KeySource::FullRow => {
            "no key: the whole row identifies a row (consider adding a primary key)".to_string()
        }
    }
}

/// Writes `(value, comment)` rows with the comments aligned.
fn aligned(out: &mut String, indent: &str, rows: &[(String, String)]) {
    let width = rows.iter().map(|(v, _)| v.chars().count()).max().unwrap_or(0);
    for (value, comment) in rows {
        let _ = writeln!(out, "{indent}{value:<width$}  # {}", comment_text(comment));
    }
}

/// A TOML array of basic strings.
pub(crate) fn string_array<S: AsRef<str>>(items: &[S]) -> String {
    let items: Vec<String> = items.iter().map(|s| toml_string(s.as_ref())).collect();
    format!("[{}]", items.join(", "))
}

/// `text` as a TOML basic string: quotes, backslashes and control characters
/// escaped, everything else (Unicode included) as is.
pub fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `text` made safe for a TOML comment, which may not hold control
/// characters: those are written escaped.
fn comment_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgtrail_catalog::{Column, TableKind};
    use pgtrail_config::{Config, Selection};

    fn column(name: &str) -> Column {
        Column {
            name: name.to_string(),
            type_name: "text".to_string(),
            not_null: false,
            generated: false,
        }
    }

    fn table(schema: &str, name: &str, key: KeySource, columns: &[&str]) -> Table {
        Table {
            schema: schema.to_string(),
            name: name.to_string(),
            kind: TableKind::Ordinary,
            columns: columns.iter().map(|c| column(c)).collect(),
            key,
            partition_of: None,
            partitions: Vec::new(),
            triggers: Vec::new(),
        }
    }

    fn pk(columns: &[&str]) -> KeySource {
        KeySource::PrimaryKey(columns.iter().map(|c| c.to_string()).collect())
    }

    fn catalog(tables: Vec<Table>) -> Catalog {
        let mut catalog = Catalog {
            schemas: vec![
                "public".into(),
                "app".into(),
                "Weird.Schema".into(),
                "données".into(),
            ],
            server_version_num: 150_000,
            ..Catalog::default()
        };
        for t in tables {
            catalog.tables.insert((t.schema.clone(), t.name.clone()), t);
        }
        catalog
    }

    /// A catalog with every kind of key, partitions, awkward names, secrets
    /// and noisy columns.
    fn sample() -> Catalog {
        let mut measurements = table(
            "public",
            "measurements",
            pk(&["id", "at"]),
            &["id", "at", "value"],
        );
        measurements.kind = TableKind::Partitioned;
        measurements.partitions = vec![
            ("public".into(), "measurements_2025".into()),
            ("public".into(), "measurements_2026".into()),
        ];
        let mut m2025 = table(
            "public",
            "measurements_2025",
            pk(&["id", "at"]),
            &["id", "at", "value"],
        );
        m2025.partition_of = Some(("public".into(), "measurements".into()));
        let mut m2026 = m2025.clone();
        m2026.name = "measurements_2026".into();
        m2026.kind = TableKind::Partitioned;
        m2026.partitions = vec![("public".into(), "measurements_2026_h1".into())];
        let mut m2026h1 = m2025.clone();
        m2026h1.name = "measurements_2026_h1".into();
        m2026h1.partition_of = Some(("public".into(), "measurements_2026".into()));

        catalog(vec![
            table(
                "public",
                "students",
                pk(&["std_no"]),
                &["std_no", "name", "updated_at"],
            ),
            table(
                "public",
                "users",
                pk(&["id"]),
                &[
                    "id",
                    "email",
                    "password_hash",
                    "last_login_at",
                    "updated_at",
                    "password_changed_at",
                ],
            ),
            table(
                "public",
                "process_applications",
                pk(&["process_id", "application_id"]),
                &["process_id", "application_id", "updatedAt"],
            ),
            table(
                "public",
                "registration_request_receipts",
                KeySource::ReplicaIdentity(vec!["request_id".into(), "receipt_id".into()]),
                &["request_id", "receipt_id"],
            ),
            table(
                "public",
                "event_tags",
                KeySource::FullRow,
                &["event", "tag", "apiKey"],
            ),
            table(
                "public",
                "sessions",
                pk(&["session_token"]),
                &["session_token", "user_id", "expires"],
            ),
            table(
                "public",
                "verification_tokens",
                KeySource::FullRow,
                &["identifier", "token"],
            ),
            table("public", "assessments_audit", pk(&["id"]), &["id", "updated_at"]),
            table("public", "audit_logs", pk(&["id"]), &["id"]),
            table("public", "student_audit_logs", pk(&["id"]), &["id"]),
            table("public", "__drizzle_migrations", pk(&["id"]), &["id", "hash"]),
            table("public", "Order Items", pk(&["Order Id"]), &["Order Id", "qty"]),
            table("app", "élèves", pk(&["numéro"]), &["numéro", "modified_at"]),
            table("Weird.Schema", "say \"hi\".now", pk(&["id"]), &["id"]),
            table("données", "tab\there", pk(&["line\nbreak"]), &["line\nbreak"]),
            // Not in the considered schemas.
            table("other", "ignored", pk(&["id"]), &["id"]),
            measurements,
            m2025,
            m2026,
            m2026h1,
        ])
    }

    fn schemas() -> Vec<String> {
        ["public", "app", "Weird.Schema", "données"]
            .map(String::from)
            .to_vec()
    }

    fn section<'t>(text: &'t str, header: &str) -> &'t str {
        let start = text
            .find(&format!("{header}\n"))
            .unwrap_or_else(|| panic!("no section {header} in:\n{text}"));
        let rest = &text[start + header.len() + 1..];
        let end = rest.find("\n\n[").map_or(rest.len(), |i| i + 1);
        &rest[..end]
    }

    #[test]
    fn keys_of_every_kind_are_commented() {
        let text = render_config(&sample(), &schemas());
        assert_eq!(
            section(&text, "[tables.\"public.students\"]"),
            "# key: std_no (primary key)\n"
        );
        assert_eq!(
            section(&text, "[tables.\"public.process_applications\"]"),
            "# key: process_id, application_id (composite primary key)\n\
             # ignore_columns = [\"updatedAt\"]   # changes on every write or visit\n"
        );
        assert_eq!(
            section(&text, "[tables.\"public.registration_request_receipts\"]"),
            "# key: request_id, receipt_id (replica identity index)\n"
        );
        assert!(
            section(&text, "[tables.\"public.event_tags\"]")
                .starts_with("# no key: the whole row identifies a row (consider adding a primary key)\n"),
            "{text}"
        );
        assert!(!text.contains("\nkey ="), "no key is forced:\n{text}");
    }

    #[test]
    fn partitions_are_folded_into_their_parent() {
        let text = render_config(&sample(), &schemas());
        assert_eq!(
            section(&text, "[tables.\"public.measurements\"]"),
            "# key: id, at (composite primary key)\n\
             # partitioned: 3 partitions (measurements_2025, measurements_2026, measurements_2026_h1)\n"
        );
        assert!(!text.contains("[tables.\"public.measurements_20"), "{text}");
    }

    #[test]
    fn many_partitions_are_counted_and_the_first_named() {
        let mut parent = table("public", "events", pk(&["id"]), &["id"]);
        parent.kind = TableKind::Partitioned;
        let mut tables = Vec::new();
        for day in 1..=12 {
            let name = format!("events_{day:02}");
            parent.partitions.push(("public".into(), name.clone()));
            let mut child = table("public", &name, pk(&["id"]), &["id"]);
            child.partition_of = Some(("public".into(), "events".into()));
            tables.push(child);
        }
        tables.push(parent);
        let text = render_config(&catalog(tables), &["public".into()]);
        assert!(
            text.contains("# partitioned: 12 partitions (events_01, events_02, events_03, events_04, events_05, events_06, events_07, events_08, events_09, events_10 and 2 more)\n"),
            "{text}"
        );
    }

    #[test]
    fn ephemeral_and_audit_tables_are_excluded_with_reasons() {
        let text = render_config(&sample(), &schemas());
        let capture = section(&text, "[capture]");
        for (pattern, reason) in [
            ("sessions", "login sessions"),
            ("verification_tokens", "one-time tokens"),
            ("__drizzle_migrations", "Drizzle"),
            ("audit_logs", "an audit trail already"),
            ("*_audit", "an audit table already"),
            ("*_audit_logs", "an audit table already"),
        ] {
            let line = capture
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("\"{pattern}\",")))
                .unwrap_or_else(|| panic!("no exclude {pattern} in:\n{capture}"));
            assert!(line.contains(&format!("# {reason}")), "{line}");
        }
        // Rules that match nothing are not written.
        assert!(!capture.contains("schema_migrations"), "{capture}");
        assert!(!capture.contains("*_history"), "{capture}");
        assert!(
            section(&text, "[tables.\"public.student_audit_logs\"]")
                .contains("# excluded by \"*_audit_logs\"\n"),
            "{text}"
        );
        assert!(section(&text, "[tables.\"public.sessions\"]").contains("# excluded by \"sessions\"\n"));
        let summary = summarize(&sample(), &schemas());
        assert_eq!(
            summary,
            Summary {
                tables: 16,
                excluded: 6,
                without_key: 1
            }
        );
    }

    #[test]
    fn awkward_names_are_written_so_they_read_back() {
        let text = render_config(&sample(), &schemas());
        for header in [
            "[tables.\"public.Order Items\"]",
            "[tables.\"app.élèves\"]",
            r#"[tables."\"Weird.Schema\".\"say \"\"hi\"\".now\""]"#,
            r#"[tables."données.tab\there"]"#,
        ] {
            assert!(text.contains(&format!("\n{header}\n")), "no {header} in:\n{text}");
        }
        assert!(text.contains("# key: line\\nbreak (primary key)\n"), "{text}");
        assert!(text.contains("schemas = [\"public\", \"app\", \"Weird.Schema\", \"données\"]\n"));
    }

    #[test]
    fn secrets_and_noisy_columns_are_suggested() {
        let text = render_config(&sample(), &schemas());
        let capture = section(&text, "[capture]");
        // updated_at in students, users and process_applications (as
        // updatedAt, a different column); assessments_audit is excluded.
        assert!(
            capture.contains("ignore_columns = [\n    \"updated_at\",  # in 2 tables\n]\n"),
            "{capture}"
        );
        assert_eq!(
            section(&text, "[tables.\"public.users\"]"),
            "# key: id (primary key)\n\
             # redact_columns = [\"password_hash\"]   # looks like a secret\n\
             # ignore_columns = [\"last_login_at\"]   # changes on every write or visit\n"
        );
        assert!(text.contains("# ignore_columns = [\"modified_at\"]"), "{text}");
        let sessions = section(&text, "[tables.\"public.sessions\"]");
        assert!(
            sessions.contains("# note: session_token looks like a secret and is part of the row key"),
            "{sessions}"
        );
        assert!(!sessions.contains("redact_columns"), "{sessions}");
        let keyless = section(&text, "[tables.\"public.event_tags\"]");
        assert!(keyless.contains("# redact_columns = [\"apiKey\"]"), "{keyless}");
        assert!(
            keyless.contains(
                "# note: without a key, the whole row (apiKey included) is recorded as the row key"
            ),
            "{keyless}"
        );
        assert!(!section(&text, "[tables.\"public.__drizzle_migrations\"]").contains("redact"));
    }

    #[test]
    fn a_noisy_key_column_is_never_ignored_everywhere() {
        let catalog = catalog(vec![
            table("public", "a", pk(&["id"]), &["id", "updated_at"]),
            table("public", "b", pk(&["id"]), &["id", "updated_at"]),
            table("public", "c", pk(&["id", "updated_at"]), &["id", "updated_at"]),
        ]);
        let text = render_config(&catalog, &["public".into()]);
        assert!(text.contains("ignore_columns = []"), "{text}");
        assert!(section(&text, "[tables.\"public.a\"]").contains("# ignore_columns = [\"updated_at\"]"));
        assert!(!section(&text, "[tables.\"public.c\"]").contains("ignore_columns"));
        parse_and_resolve(&text, &catalog);
    }

    #[test]
    fn the_file_parses_and_selects_exactly_the_tables_not_excluded() {
        let catalog = sample();
        let text = render_config(&catalog, &schemas());
        let config = parse_and_resolve(&text, &catalog);
        assert_eq!(config.capture.schemas, schemas());
        assert_eq!(config.tables.len(), 16, "one section per top-level table");
        for t in catalog.top_level_tables() {
            let selection = config.selects(&t.schema, &t.name);
            if t.schema == "other" {
                assert_eq!(selection, Selection::NotCovered);
                continue;
            }
            let written = format!(
                "[tables.{}]",
                toml_string(&QualifiedName::new(t.schema.as_str(), t.name.as_str()).to_string())
            );
            let body = section(&text, &written);
            match body.split("# excluded by ").nth(1) {
                Some(rest) => {
                    let pattern = rest.lines().next().unwrap_or_default().trim_matches('"');
                    assert_eq!(
                        selection,
                        Selection::Excluded {
                            pattern: pattern.to_string()
                        },
                        "{}.{}",
                        t.schema,
                        t.name
                    );
                }
                None => assert_eq!(selection, Selection::Included, "{}.{}", t.schema, t.name),
            }
        }
        let rule = config
            .tables
            .iter()
            .find(|r| r.name.table.starts_with("say"))
            .expect("the quoted name is read back");
        assert_eq!(rule.name, QualifiedName::new("Weird.Schema", "say \"hi\".now"));
        assert!(
            config
                .tables
                .iter()
                .all(|r| r.key.is_none() && r.ignore_columns.is_empty())
        );
        assert_eq!(config.capture.ignore_columns, ["updated_at"]);
        assert!(!config.context.require_actor);
    }

    #[test]
    fn an_empty_database_gives_a_valid_file() {
        let catalog = catalog(vec![]);
        let text = render_config(&catalog, &["public".into()]);
        let config = parse_and_resolve(&text, &catalog);
        assert!(config.tables.is_empty());
        assert!(config.capture.exclude.is_empty());
        assert_eq!(summarize(&catalog, &["public".into()]), Summary::default());
    }

    /// Parses `text` and checks that planning against `catalog` accepts it
    /// (every section names an existing table, no key column is ignored).
    fn parse_and_resolve(text: &str, catalog: &Catalog) -> Config {
        let config = Config::parse(text, "pgtrail.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
        if let Err(problems) = pgtrail_plan::resolve(&config, catalog) {
            panic!("{problems:?}\n{text}");
        }
        config
    }

    #[test]
    fn every_exclude_rule_is_a_valid_pattern() {
        for (pattern, reason) in EXCLUDE_RULES {
            assert!(Pattern::new(pattern).is_ok(), "{pattern}");
            assert!(!reason.is_empty());
        }
    }

    #[test]
    fn secret_and_noisy_names() {
        for name in [
            "password",
            "password_hash",
            "passwordHash",
            "encrypted_password",
            "pass_hash",
            "access_token",
            "refresh_token",
            "id_token",
            "reset_password_token",
            "client_secret",
            "api_key",
            "apiKey",
            "stripe_api_key",
            "otp",
            "otp_secret",
            "otp_backup_codes",
            "private_key",
            "passphrase",
        ] {
            assert!(looks_secret(name), "{name}");
        }
        for name in [
            "email",
            "password_changed_at",
            "token_type",
            "otp_enabled",
            "expires_at",
            "hash",
            "content_hash",
            "topt",
            "",
            "__",
        ] {
            assert!(!looks_secret(name), "{name}");
        }
        for name in [
            "updated_at",
            "updatedAt",
            "UpdatedAt",
            "modified_at",
            "last_login_at",
            "lastSeenAt",
            "last_activity_at",
            "sign_in_count",
        ] {
            assert!(looks_noisy(name), "{name}");
        }
        for name in ["created_at", "updated_by", "login", "status"] {
            assert!(!looks_noisy(name), "{name}");
        }
    }

    #[test]
    fn toml_strings_escape_what_toml_needs() {
        assert_eq!(toml_string("plain é 🙂"), "\"plain é 🙂\"");
        assert_eq!(toml_string("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(toml_string("\n\t\u{1}\u{7f}"), r#""\n\t\u0001\u007F""#);
        for text in ["a\"b\\c", "\n\t\u{1}\u{7f}", "x.y \"z\" 🙂"] {
            let doc = format!("[capture]\nschemas = [{}]\n", toml_string(text));
            let config = Config::parse(&doc, "pgtrail.toml").unwrap_or_else(|e| panic!("{e}\n{doc}"));
            assert_eq!(config.capture.schemas, [text]);
        }
    }
}
