//! The `[retention]` section: how the trail is partitioned by time, how
//! many partitions are made ahead, how long changes stay in the database
//! and where archives go.

use std::fmt;

use serde_spanned::Spanned;

use crate::error::{ConfigError, ErrorKind, Source};
use crate::raw::RawRetention;
use crate::suggest::{one_of, suggest};

/// The time span of one partition of the trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Grain {
    Day,
    Week,
    #[default]
    Month,
}

impl Grain {
    pub const NAMES: [&'static str; 3] = ["day", "week", "month"];

    pub fn from_name(name: &str) -> Option<Grain> {
        match name {
            "day" => Some(Grain::Day),
            "week" => Some(Grain::Week),
            "month" => Some(Grain::Month),
            _ => None,
        }
    }

    /// The name used in the config and in PostgreSQL's `date_trunc`.
    pub fn name(self) -> &'static str {
        match self {
            Grain::Day => "day",
            Grain::Week => "week",
            Grain::Month => "month",
        }
    }
}

impl fmt::Display for Grain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A retention period: a whole number of days, weeks, months or years.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep {
    pub amount: u32,
    pub unit: KeepUnit,
}

/// The unit of a [`Keep`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepUnit {
    Days,
    Weeks,
    Months,
    Years,
}

impl Keep {
    const UNITS: [&'static str; 4] = ["days", "weeks", "months", "years"];

    /// Parses `"400 days"`, `"13 months"`, `"7 years"` (singular units too).
    pub fn parse(text: &str) -> Option<Keep> {
        let mut words = text.split_whitespace();
        let amount: u32 = words.next()?.parse().ok()?;
        let unit = match words.next()?.to_ascii_lowercase().as_str() {
            "day" | "days" => KeepUnit::Days,
            "week" | "weeks" => KeepUnit::Weeks,
            "month" | "months" => KeepUnit::Months,
            "year" | "years" => KeepUnit::Years,
            _ => return None,
        };
        if words.next().is_some() || amount == 0 {
            return None;
        }
        Some(Keep { amount, unit })
    }

    /// The period as a PostgreSQL interval literal (`400 days`).
    pub fn interval(&self) -> String {
        self.to_string()
    }
}

impl Default for Keep {
    fn default() -> Self {
        Keep {
            amount: 400,
            unit: KeepUnit::Days,
        }
    }
}

impl fmt::Display for Keep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.unit {
            KeepUnit::Days => "days",
            KeepUnit::Weeks => "weeks",
            KeepUnit::Months => "months",
            KeepUnit::Years => "years",
        };
        write!(f, "{} {unit}", self.amount)
    }
}

/// The `[retention]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// The span of one partition; default a month.
    pub partition: Grain,
    /// Partitions made ahead of the current one; default 3.
    pub premake: u32,
    /// How long changes stay in the database; default 400 days.
    pub keep: Keep,
    /// Where `pgtrail archive` writes; none by default (then it must be given).
    pub archive_dir: Option<String>,
    /// Per-table overrides of `keep` (`[retention.tables."schema.table"]`),
    /// sorted by table. A partition holds every table's changes: it is
    /// archived only once every table with changes in it is past its keep.
    pub tables: Vec<TableKeep>,
}

/// `[retention.tables."schema.table"] keep = "..."`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableKeep {
    /// The schema, or None for a bare table name (any schema).
    pub schema: Option<String>,
    pub table: String,
    pub keep: Keep,
}

impl TableKeep {
    /// Whether this override is for the table `schema`.`table`.
    pub fn matches(&self, schema: &str, table: &str) -> bool {
        self.table == table && self.schema.as_deref().is_none_or(|s| s == schema)
    }
}

impl fmt::Display for TableKeep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.table),
            None => f.write_str(&self.table),
        }
    }
}

impl Retention {
    /// The keep of the table `schema`.`table`: its override (a
    /// schema-qualified one before a bare name), else `keep`.
    pub fn keep_of(&self, schema: &str, table: &str) -> Keep {
        TableKeep::keep_of(&self.tables, self.keep, schema, table)
    }
}

impl TableKeep {
    /// The keep of `schema`.`table` among `tables` (a schema-qualified
    /// override before a bare name), else `keep`.
    pub fn keep_of(tables: &[TableKeep], keep: Keep, schema: &str, table: &str) -> Keep {
        tables
            .iter()
            .find(|t| t.schema.is_some() && t.matches(schema, table))
            .or_else(|| tables.iter().find(|t| t.matches(schema, table)))
            .map_or(keep, |t| t.keep)
    }
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            partition: Grain::Month,
            premake: 3,
            keep: Keep::default(),
            archive_dir: None,
            tables: Vec::new(),
        }
    }
}

/// Checks the raw section.
pub(crate) fn retention(src: Source<'_>, raw: RawRetention) -> Result<Retention, ConfigError> {
    let mut out = Retention::default();
    if let Some(value) = raw.partition {
        out.partition = grain(src, &value)?;
    }
    if let Some(value) = raw.premake {
        let n = *value.get_ref();
        out.premake = u32::try_from(n)
            .ok()
            .filter(|n| (1..=366).contains(n))
            .ok_or_else(|| {
                src.error(
                    ErrorKind::InvalidValue,
                    &value.span(),
                    format!("`premake` in [retention] must be between 1 and 366, not {n}"),
                    Some(
                        "the number of partitions made ahead of the current one, e.g. `premake = 3`"
                            .to_string(),
                    ),
                )
            })?;
    }
    if let Some(value) = raw.keep {
        out.keep = keep(src, &value, "[retention]")?;
    }
    for (name, table) in raw.tables.into_iter().flatten() {
        let section = format!("[retention.tables.\"{name}\"]");
        let (schema, bare) = match name.split_once('.') {
            Some((schema, bare)) => (Some(schema.to_string()), bare.to_string()),
            None => (None, name.clone()),
        };
        if bare.is_empty() || schema.as_deref().is_some_and(str::is_empty) || bare.contains('.') {
            return Err(src.error(
                ErrorKind::InvalidValue,
                &table.keep.span(),
                format!("{section} does not name a table"),
                Some("name it as `schema.table` (or a bare table name for every schema), e.g. [retention.tables.\"public.invoices\"]".to_string()),
            ));
        }
        out.tables.push(TableKeep {
            schema,
            table: bare,
            keep: keep(src, &table.keep, &section)?,
        });
    }
    if let Some(value) = raw.archive_dir {
        if value.get_ref().trim().is_empty() {
            return Err(src.error(
                ErrorKind::InvalidValue,
                &value.span(),
                "`archive_dir` in [retention] is empty",
                Some("name a directory, e.g. `archive_dir = \"/var/lib/pgtrail/archive\"`".to_string()),
            ));
        }
        out.archive_dir = Some(value.get_ref().clone());
    }
    Ok(out)
}

fn keep(src: Source<'_>, value: &Spanned<String>, section: &str) -> Result<Keep, ConfigError> {
    Keep::parse(value.get_ref()).ok_or_else(|| {
        src.error(
            ErrorKind::InvalidValue,
            &value.span(),
            format!(
                "`keep` in {section} must be a number and a unit ({}), not `{}`",
                one_of(&Keep::UNITS),
                value.get_ref()
            ),
            Some("for example `keep = \"400 days\"` or `keep = \"7 years\"`".to_string()),
        )
    })
}

fn grain(src: Source<'_>, value: &Spanned<String>) -> Result<Grain, ConfigError> {
    let name = value.get_ref();
    Grain::from_name(name).ok_or_else(|| {
        let help = match suggest(name, Grain::NAMES) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("use {}", one_of(&Grain::NAMES)),
        };
        src.error(
            ErrorKind::InvalidValue,
            &value.span(),
            format!(
                "unknown value `{name}` for `partition` in [retention]; expected {}",
                one_of(&Grain::NAMES)
            ),
            Some(help),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn tables_override_keep() {
        let config = Config::parse(
            "[retention]\nkeep = \"60 days\"\n[retention.tables.\"public.invoices\"]\nkeep = \"10 years\"\n\
             [retention.tables.sessions]\nkeep = \"7 days\"\n",
            "pgtrail.toml",
        )
        .unwrap();
        let retention = &config.retention;
        assert_eq!(retention.keep_of("public", "invoices").to_string(), "10 years");
        assert_eq!(retention.keep_of("billing", "invoices").to_string(), "60 days");
        assert_eq!(retention.keep_of("app", "sessions").to_string(), "7 days");
        assert_eq!(retention.keep_of("public", "orders").to_string(), "60 days");
        let err = Config::parse(
            "[retention.tables.\"public.invoices\"]\nkeep = \"forever\"\n",
            "pgtrail.toml",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("[retention.tables.\"public.invoices\"]"),
            "{err}"
        );
        let err =
            Config::parse("[retention.tables.\"a.b.c\"]\nkeep = \"1 day\"\n", "pgtrail.toml").unwrap_err();
        assert!(err.to_string().contains("does not name a table"), "{err}");
        let err = Config::parse("[retention.tables.x]\nkeeps = \"1 day\"\n", "pgtrail.toml").unwrap_err();
        assert!(err.to_string().contains("keep"), "{err}");
    }

    #[test]
    fn keep_reads_numbers_and_units() {
        assert_eq!(
            Keep::parse("400 days").map(|k| k.to_string()),
            Some("400 days".into())
        );
        assert_eq!(
            Keep::parse("1 year").map(|k| k.to_string()),
            Some("1 years".into())
        );
        assert_eq!(
            Keep::parse("13  Months").map(|k| k.to_string()),
            Some("13 months".into())
        );
        assert_eq!(Keep::parse("0 days"), None);
        assert_eq!(Keep::parse("400"), None);
        assert_eq!(Keep::parse("400 fortnights"), None);
        assert_eq!(Keep::parse("400 days ago"), None);
    }

    #[test]
    fn the_section_is_read_and_checked() {
        let config = Config::parse(
            "[retention]\npartition = \"day\"\npremake = 5\nkeep = \"30 days\"\narchive_dir = \"arch\"\n",
            "pgtrail.toml",
        )
        .unwrap();
        assert_eq!(config.retention.partition, Grain::Day);
        assert_eq!(config.retention.premake, 5);
        assert_eq!(config.retention.keep.to_string(), "30 days");
        assert_eq!(config.retention.archive_dir.as_deref(), Some("arch"));
        assert!(config.retention.tables.is_empty());
        assert_eq!(Config::default().retention, Retention::default());

        let err = Config::parse("[retention]\npartition = \"mnth\"\n", "pgtrail.toml").unwrap_err();
        assert!(err.to_string().contains("did you mean `month`"), "{err}");
        let err = Config::parse("[retention]\nkeep = \"forever\"\n", "pgtrail.toml").unwrap_err();
        assert!(err.to_string().contains("pgtrail.toml:2:"), "{err}");
        let err = Config::parse("[retention]\npremake = 0\n", "pgtrail.toml").unwrap_err();
        assert!(err.to_string().contains("between 1 and 366"), "{err}");
        let err = Config::parse("[retention]\nkeeps = \"1 day\"\n", "pgtrail.toml").unwrap_err();
        assert!(err.to_string().contains("keep"), "{err}");
    }
}
