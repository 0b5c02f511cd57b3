//! Turns the deserialized file into a [`Config`], checking every value.

use std::collections::BTreeMap;

use serde_spanned::Spanned;

use crate::error::{ConfigError, ErrorKind, Location, Source};
use crate::matching::Pattern;
use crate::model::{
    Capture, Config, Context, Images, Install, Mode, OutsideTransaction, Report, TableRule, Truncate,
};
use crate::name::QualifiedName;
use crate::raw::{List, RawCapture, RawConfig, RawContext, RawTable, Table};
use crate::setting::check_setting;
use crate::suggest::{one_of, suggest};
use crate::walk::{Section, write_toml_key};

/// Checks `raw` and builds the configuration.
pub(crate) fn build(src: Source<'_>, raw: RawConfig) -> Result<Config, ConfigError> {
    let truncate_limit_at = raw.capture.0.truncate_row_limit.as_ref().map(|v| v.span());
    let capture = capture(src, raw.capture.0)?;
    let context = context(src, raw.context.0)?;
    let tables = tables(src, raw.tables, &capture)?;
    if let Some(span) = truncate_limit_at
        && capture.truncate == Truncate::Event
        && !tables.iter().any(|t| t.truncate == Some(Truncate::Capture))
    {
        return Err(src.error(
            ErrorKind::InvalidValue,
            &span,
            "`truncate_row_limit` in [capture] has no effect: no table records the rows a TRUNCATE removes",
            Some("set `truncate = \"capture\"` in [capture] or in a [tables] section, or remove `truncate_row_limit`".to_string()),
        ));
    }
    let install = Install {
        accept_installer_can_edit_trail: raw.install.0.accept_installer_can_edit_trail.unwrap_or(false),
        accept_unseen_capture_gaps: raw.install.0.accept_unseen_capture_gaps.unwrap_or(false),
    };
    let retention = crate::retention::retention(src, raw.retention.0)?;
    let serve = crate::serve::serve(src, raw.serve.0)?;
    let report = Report {
        application_roles: strings(
            src,
            raw.report.0.application_roles.as_ref(),
            "`application_roles` in [report]",
        )?,
        migration_roles: strings(
            src,
            raw.report.0.migration_roles.as_ref(),
            "`migration_roles` in [report]",
        )?,
        subject_columns: strings(
            src,
            raw.report.0.subject_columns.as_ref(),
            "`subject_columns` in [report]",
        )?,
    };
    Ok(Config {
        capture,
        context,
        tables,
        install,
        retention,
        report,
        serve,
        origin: src.origin.to_string(),
    })
}

/// Describes `key` in `section` for messages: "`include` in [capture]".
fn field(section: &[&str], key: &str) -> String {
    let section: Vec<String> = section.iter().map(|s| s.to_string()).collect();
    format!("`{key}` {}", Section(&section))
}

/// The items of a list, checked to be non-empty strings without duplicates.
fn items<'r>(src: Source<'_>, list: &'r List, what: &str) -> Result<Vec<&'r Spanned<String>>, ConfigError> {
    let mut seen: Vec<&'r Spanned<String>> = Vec::new();
    for item in list.get_ref() {
        if item.get_ref().is_empty() {
            return Err(src.error(
                ErrorKind::InvalidValue,
                &item.span(),
                format!("empty name in {what}"),
                None,
            ));
        }
        if let Some(first) = seen.iter().find(|s| s.get_ref() == item.get_ref()) {
            return Err(src.error(
                ErrorKind::Duplicate,
                &item.span(),
                format!("`{}` is listed twice in {what}", item.get_ref()),
                Some(format!(
                    "it is already listed at {}; remove one of them",
                    src.location(&first.span())
                )),
            ));
        }
        seen.push(item);
    }
    Ok(seen)
}

/// Like [`items`], as plain strings.
fn strings(src: Source<'_>, list: Option<&List>, what: &str) -> Result<Vec<String>, ConfigError> {
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    Ok(items(src, list, what)?
        .into_iter()
        .map(|s| s.get_ref().clone())
        .collect())
}

fn images(src: Source<'_>, value: &Spanned<String>, what: &str) -> Result<Images, ConfigError> {
    let name = value.get_ref();
    Images::from_name(name).ok_or_else(|| {
        let help = match suggest(name, Images::NAMES) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("use {}", one_of(&Images::NAMES)),
        };
        src.error(
            ErrorKind::InvalidValue,
            &value.span(),
            format!(
                "unknown value `{name}` for {what}; expected {}",
                one_of(&Images::NAMES)
            ),
            Some(help),
        )
    })
}

fn truncate(src: Source<'_>, value: &Spanned<String>, what: &str) -> Result<Truncate, ConfigError> {
    let name = value.get_ref();
    Truncate::from_name(name).ok_or_else(|| {
        let help = match suggest(name, Truncate::NAMES) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("use {}", one_of(&Truncate::NAMES)),
        };
        src.error(
            ErrorKind::InvalidValue,
            &value.span(),
            format!(
                "unknown value `{name}` for {what}; expected {}",
                one_of(&Truncate::NAMES)
            ),
            Some(help),
        )
    })
}

fn outside_transaction(
    src: Source<'_>,
    value: &Spanned<String>,
    what: &str,
) -> Result<OutsideTransaction, ConfigError> {
    let name = value.get_ref();
    OutsideTransaction::from_name(name).ok_or_else(|| {
        let help = match suggest(name, OutsideTransaction::NAMES) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("use {}", one_of(&OutsideTransaction::NAMES)),
        };
        src.error(
            ErrorKind::InvalidValue,
            &value.span(),
            format!(
                "unknown value `{name}` for {what}; expected {}",
                one_of(&OutsideTransaction::NAMES)
            ),
            Some(help),
        )
    })
}

fn mode(src: Source<'_>, value: &Spanned<String>, what: &str) -> Result<Mode, ConfigError> {
    let name = value.get_ref();
    Mode::from_name(name).ok_or_else(|| {
        let help = match suggest(name, Mode::NAMES) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("use {}", one_of(&Mode::NAMES)),
        };
        src.error(
            ErrorKind::InvalidValue,
            &value.span(),
            format!(
                "unknown value `{name}` for {what}; expected {}",
                one_of(&Mode::NAMES)
            ),
            Some(help),
        )
    })
}

fn row_limit(src: Source<'_>, value: &Spanned<i64>, what: &str) -> Result<i64, ConfigError> {
    match *value.get_ref() {
        limit if limit >= 1 => Ok(limit),
        limit => Err(src.error(
            ErrorKind::InvalidValue,
            &value.span(),
            format!("{what} is {limit}; it must be at least 1"),
            Some(format!(
                "the most rows a TRUNCATE records one by one, like {}",
                crate::model::DEFAULT_TRUNCATE_ROW_LIMIT
            )),
        )),
    }
}

fn patterns(src: Source<'_>, list: &List, what: &str) -> Result<Vec<Pattern>, ConfigError> {
    items(src, list, what)?
        .into_iter()
        .map(|item| {
            Pattern::new(item.get_ref()).map_err(|e| {
                src.error(
                    ErrorKind::InvalidValue,
                    &item.span(),
                    format!("invalid pattern in {what}: {e}"),
                    None,
                )
            })
        })
        .collect()
}

fn capture(src: Source<'_>, raw: RawCapture) -> Result<Capture, ConfigError> {
    let what = |key| field(&["capture"], key);
    let mut capture = Capture::default();
    if let Some(list) = &raw.schemas {
        if list.get_ref().is_empty() {
            return Err(src.error(
                ErrorKind::InvalidValue,
                &list.span(),
                format!("{} is empty", what("schemas")),
                Some("list at least one schema, like `schemas = [\"public\"]`".to_string()),
            ));
        }
        capture.schemas = strings(src, Some(list), &what("schemas"))?;
    }
    if let Some(list) = &raw.include {
        capture.include = patterns(src, list, &what("include"))?;
    }
    if let Some(list) = &raw.exclude {
        capture.exclude = patterns(src, list, &what("exclude"))?;
    }
    if let Some(value) = &raw.images {
        capture.images = images(src, value, &what("images"))?;
    }
    capture.ignore_columns = strings(src, raw.ignore_columns.as_ref(), &what("ignore_columns"))?;
    capture.redact_columns = strings(src, raw.redact_columns.as_ref(), &what("redact_columns"))?;
    capture.auto_attach = raw.auto_attach.unwrap_or(false);
    if let Some(value) = &raw.truncate {
        capture.truncate = truncate(src, value, &what("truncate"))?;
    }
    if let Some(value) = &raw.truncate_row_limit {
        capture.truncate_row_limit = Some(row_limit(src, value, &what("truncate_row_limit"))?);
    }
    if let Some(value) = &raw.mode {
        capture.mode = mode(src, value, &what("mode"))?;
    }
    if let Some(value) = &raw.wal_max_lag_bytes {
        capture.wal_max_lag_bytes = match *value.get_ref() {
            bytes if bytes >= 1 => bytes,
            bytes => {
                return Err(src.error(
                    ErrorKind::InvalidValue,
                    &value.span(),
                    format!("{} is {bytes}; it must be at least 1", what("wal_max_lag_bytes")),
                    Some(format!(
                        "the most bytes of WAL the slot may hold unread before `pgtrail check` reports it, like {}",
                        crate::model::DEFAULT_WAL_MAX_LAG_BYTES
                    )),
                ));
            }
        };
    }
    Ok(capture)
}

/// The settings of one context key, each checked to be a custom setting name.
fn settings(src: Source<'_>, list: Option<&List>, what: &str) -> Result<Vec<String>, ConfigError> {
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    for item in items(src, list, what)? {
        if let Err(problem) = check_setting(item.get_ref()) {
            return Err(src.error(
                ErrorKind::InvalidValue,
                &item.span(),
                format!(
                    "`{}` in {what} is not a valid custom setting name: {}",
                    item.get_ref(),
                    problem.explain()
                ),
                Some(problem.help(item.get_ref())),
            ));
        }
    }
    strings(src, Some(list), what)
}

fn context(src: Source<'_>, raw: RawContext) -> Result<Context, ConfigError> {
    let what = |key| field(&["context"], key);
    let mut context = Context {
        actor_id: settings(src, raw.actor_id.as_ref(), &what("actor_id"))?,
        actor_name: settings(src, raw.actor_name.as_ref(), &what("actor_name"))?,
        actor_type: settings(src, raw.actor_type.as_ref(), &what("actor_type"))?,
        reason: settings(src, raw.reason.as_ref(), &what("reason"))?,
        extra: BTreeMap::new(),
        require_actor: raw.require_actor.unwrap_or(false),
        outside_transaction: match &raw.outside_transaction {
            Some(value) => outside_transaction(src, value, &what("outside_transaction"))?,
            None => OutsideTransaction::default(),
        },
    };
    let well_known = [
        ("migration", &raw.migration),
        ("request_id", &raw.request_id),
        ("session_id", &raw.session_id),
        ("business_process", &raw.business_process),
        ("ip", &raw.ip),
        ("user_agent", &raw.user_agent),
    ];
    for (key, list) in well_known {
        let list = settings(src, list.as_ref(), &what(key))?;
        if !list.is_empty() {
            context.extra.insert(key.to_string(), list);
        }
    }
    for (key, list) in raw.extra.iter().flatten() {
        let name = key.get_ref();
        if crate::raw::RawContext::KEYS.contains(&name.as_str()) {
            return Err(src.error(
                ErrorKind::InvalidValue,
                &key.span(),
                format!("`{name}` is a [context] key and cannot be used in [context.extra]"),
                Some(format!("write `{name} = [...]` directly in [context]")),
            ));
        }
        if !is_identifier(name) {
            return Err(src.error(
                ErrorKind::InvalidValue,
                &key.span(),
                format!("invalid context key `{name}` in [context.extra]"),
                Some(
                    "context keys are made of letters, digits and `_`, and do not start with a digit"
                        .to_string(),
                ),
            ));
        }
        let list = settings(src, Some(list), &field(&["context", "extra"], name))?;
        if !list.is_empty() {
            context.extra.insert(name.clone(), list);
        }
    }
    Ok(context)
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}

fn tables(
    src: Source<'_>,
    raw: BTreeMap<Spanned<String>, Table<RawTable>>,
    capture: &Capture,
) -> Result<Vec<TableRule>, ConfigError> {
    let mut raw: Vec<(Spanned<String>, RawTable)> = raw.into_iter().map(|(k, t)| (k, t.0)).collect();
    raw.sort_by_key(|(key, _)| key.span().start);
    let mut rules: Vec<(String, TableRule)> = Vec::with_capacity(raw.len());
    for (key, table) in raw {
        let rule = table_rule(src, &key, table, capture)?;
        if let Some((first_key, first)) = rules.iter().find(|(_, r)| same_table(&r.name, &rule.name)) {
            return Err(named_twice(
                src,
                (first_key, first),
                (&key, &rule),
                &capture.schemas,
            ));
        }
        rules.push((key.get_ref().clone(), rule));
    }
    Ok(rules.into_iter().map(|(_, rule)| rule).collect())
}

/// Whether two `[tables."..."]` names can designate the same table. Names
/// are compared as PostgreSQL stores them (quotes removed, case kept), and a
/// name without a schema designates the table of that name in every schema
/// of `capture.schemas`, which a schema-qualified name's schema always is
/// (checked by [`table_rule`]).
fn same_table(a: &QualifiedName, b: &QualifiedName) -> bool {
    a.table == b.table && (a.schema.is_none() || b.schema.is_none() || a.schema == b.schema)
}

/// `[tables."public.users"]`: the header of a table's section as TOML writes it.
fn section_header(key: &str) -> String {
    let mut header = String::from("[tables.");
    let _ = write_toml_key(&mut header, key);
    header.push(']');
    header
}

/// The error for a table named by two sections: at the second, naming the
/// first, with the fix.
fn named_twice(
    src: Source<'_>,
    (first_key, first): (&str, &TableRule),
    (key, rule): (&Spanned<String>, &TableRule),
    schemas: &[String],
) -> ConfigError {
    let qualified = first.name.schema.as_ref().or(rule.name.schema.as_ref());
    let table = match qualified {
        Some(schema) => QualifiedName::new(schema.clone(), rule.name.table.clone()),
        None => rule.name.clone(),
    };
    let help = match (&first.name.schema, &rule.name.schema) {
        (Some(_), Some(_)) | (None, None) => {
            "both name the same table; keep one section and move the other's settings into it".to_string()
        }
        _ if schemas.len() == 1 => format!(
            "a name without a schema means the table of that name in the schema of `schemas` in [capture] ({}); \
             keep one section and move the other's settings into it",
            schemas[0]
        ),
        _ => format!(
            "a name without a schema means the tables of that name in every schema of `schemas` in [capture] ({}); \
             keep one section per table: write the schema in each name, or merge the two sections",
            schemas.join(", ")
        ),
    };
    src.error(
        ErrorKind::Duplicate,
        &key.span(),
        format!(
            "table `{table}` is configured twice: by {} here and by {} at {}",
            section_header(key.get_ref()),
            section_header(first_key),
            first.location
        ),
        Some(help),
    )
}

fn table_rule(
    src: Source<'_>,
    key: &Spanned<String>,
    raw: RawTable,
    capture: &Capture,
) -> Result<TableRule, ConfigError> {
    let schemas = &capture.schemas;
    let written = key.get_ref();
    let name = QualifiedName::parse(written).map_err(|e| {
        src.error(
            ErrorKind::InvalidValue,
            &key.span(),
            format!("invalid table name in [tables]: {e}"),
            None,
        )
    })?;
    if let Some(schema) = &name.schema {
        if !schemas.contains(schema) {
            let help = match suggest(schema, schemas.iter().map(String::as_str)) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("add `{schema}` to `schemas` in [capture]"),
            };
            return Err(src.error(
                ErrorKind::InvalidValue,
                &key.span(),
                format!("table `{name}` is in schema `{schema}`, which is not in `schemas` in [capture]"),
                Some(help),
            ));
        }
    }
    let section = ["tables", written.as_str()];
    let what = |k| field(&section, k);
    let (key_columns, key_location) = match &raw.key {
        None => (None, Vec::new()),
        Some(list) if list.get_ref().is_empty() => {
            return Err(src.error(
                ErrorKind::InvalidValue,
                &list.span(),
                format!("{} is empty", what("key")),
                Some("list the key columns, or remove `key` to use the detected primary key".to_string()),
            ));
        }
        Some(list) => {
            let columns = items(src, list, &what("key"))?;
            let locations: Vec<Location> = columns.iter().map(|c| src.location(&c.span())).collect();
            let columns = columns.into_iter().map(|c| c.get_ref().clone()).collect();
            (Some(columns), locations)
        }
    };
    let truncate_setting = match &raw.truncate {
        Some(value) => Some(truncate(src, value, &what("truncate"))?),
        None => None,
    };
    let truncate_row_limit = match &raw.truncate_row_limit {
        Some(value) => {
            let limit = row_limit(src, value, &what("truncate_row_limit"))?;
            if truncate_setting.unwrap_or(capture.truncate) == Truncate::Event {
                return Err(src.error(
                    ErrorKind::InvalidValue,
                    &value.span(),
                    format!(
                        "{} has no effect: a TRUNCATE of this table records the event only",
                        what("truncate_row_limit")
                    ),
                    Some(format!(
                        "add `truncate = \"capture\"` to {}, or remove `truncate_row_limit`",
                        section_header(written)
                    )),
                ));
            }
            Some(limit)
        }
        None => None,
    };
    Ok(TableRule {
        mode: match &raw.mode {
            Some(value) => Some(mode(src, value, &what("mode"))?),
            None => None,
        },
        truncate: truncate_setting,
        truncate_row_limit,
        images: match &raw.images {
            Some(value) => Some(images(src, value, &what("images"))?),
            None => None,
        },
        ignore_columns: strings(src, raw.ignore_columns.as_ref(), &what("ignore_columns"))?,
        redact_columns: strings(src, raw.redact_columns.as_ref(), &what("redact_columns"))?,
        name,
        key: key_columns,
        location: src.location(&key.span()),
        key_location,
    })
}
