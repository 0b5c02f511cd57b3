//! `pgtrail init` on a database where pgtrail is installed: the file it
//! writes says what the install does now (see [`render_live_config`]), so
//! that `pgtrail plan` right after it has nothing to do.

use std::fmt::Write as _;

use pgtrail_catalog::Catalog;
use pgtrail_config::{Context, DEFAULT_TRUNCATE_ROW_LIMIT, QualifiedName};
use pgtrail_plan::Installed;

use super::{string_array, toml_string};

/// The schemas a live config must consider: those asked for, then those of
/// every table capture is attached to.
pub fn live_schemas(wanted: &[String], installed: &Installed) -> Vec<String> {
    let mut schemas = wanted.to_vec();
    for ((schema, _), table) in &installed.tables {
        if !table.detached && !schemas.contains(schema) {
            schemas.push(schema.clone());
        }
    }
    schemas
}

/// A `pgtrail.toml` written from the live install: the context settings
/// (mappings, `require_actor`, `outside_transaction`), every audited table
/// with its recorded settings (key when it is not the detected one, images,
/// ignored and redacted columns, truncate and its row limit), and every
/// other table of `schemas` excluded by name. `auto_attach` is written as it
/// is; its include and exclude rules are stored as regular expressions,
/// which cannot be turned back into patterns, so `plan` may then propose to
/// configure auto_attach again from this file's patterns.
pub fn render_live_config(catalog: &Catalog, schemas: &[String], installed: &Installed) -> String {
    let mut out = String::new();
    let version = installed.version.as_deref().unwrap_or("?");
    let _ = write!(
        out,
        "\
# pgtrail.toml: which tables pgtrail records, and how.
#
# Written by `pgtrail init` from pgtrail {version} as installed in this database:
# the tables it records with their settings, and its context settings.
# `pgtrail plan` shows nothing to do until you change something here.
#   pgtrail apply   makes the capture triggers match this file
#   pgtrail check   reports any difference between the database and this file (for CI)

"
    );
    let audited = |schema: &str, name: &str| {
        installed
            .tables
            .get(&(schema.to_string(), name.to_string()))
            .filter(|t| !t.detached)
    };

    // [capture]: nothing global, so each table's section says all.
    out.push_str("[capture]\n");
    let _ = writeln!(out, "schemas = {}", string_array(schemas));
    out.push_str("include = [\"*\"]\n");
    let not_audited: Vec<String> = catalog
        .top_level_tables()
        .filter(|t| schemas.contains(&t.schema) && audited(&t.schema, &t.name).is_none())
        .map(|t| toml_string(&literal_pattern(&t.schema, &t.name)))
        .collect();
    if not_audited.is_empty() {
        out.push_str("exclude = []\n");
    } else {
        out.push_str("# Not recorded now.\nexclude = [\n");
        for name in &not_audited {
            let _ = writeln!(out, "    {name},");
        }
        out.push_str("]\n");
    }
    if !installed.auto_attach.is_null() {
        out.push_str("auto_attach = true   # tables created later that `include` selects are recorded\n");
    }
    out.push('\n');

    context(&mut out, installed);

    for table in catalog.top_level_tables() {
        let Some(recorded) = audited(&table.schema, &table.name) else {
            continue;
        };
        if !schemas.contains(&table.schema) {
            continue;
        }
        let name = QualifiedName::new(table.schema.as_str(), table.name.as_str());
        let _ = writeln!(out, "[tables.{}]", toml_string(&name.to_string()));
        if recorded.key_columns.as_slice() != table.key.columns() {
            let _ = writeln!(out, "key = {}", string_array(&recorded.key_columns));
        }
        if recorded.images != "diff" {
            let _ = writeln!(out, "images = {}", toml_string(&recorded.images));
        }
        if !recorded.ignore_columns.is_empty() {
            let _ = writeln!(out, "ignore_columns = {}", string_array(&recorded.ignore_columns));
        }
        if !recorded.redact_columns.is_empty() {
            let _ = writeln!(out, "redact_columns = {}", string_array(&recorded.redact_columns));
        }
        if recorded.truncate != "event" {
            let _ = writeln!(out, "truncate = {}", toml_string(&recorded.truncate));
            let limit = recorded.truncate_row_limit.unwrap_or(DEFAULT_TRUNCATE_ROW_LIMIT);
            let _ = writeln!(out, "truncate_row_limit = {limit}");
        }
        out.push('\n');
    }
    out
}

/// A pattern that matches exactly this table: quoted where a part holds
/// glob characters (a quoted part matches literally).
fn literal_pattern(schema: &str, table: &str) -> String {
    let globby = |s: &str| s.contains(['*', '?', '[', ']']);
    if globby(schema) || globby(table) {
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        format!("{}.{}", quote(schema), quote(table))
    } else {
        QualifiedName::new(schema, table).to_string()
    }
}

/// `[context]` from the installed settings.
fn context(out: &mut String, installed: &Installed) {
    out.push_str("[context]\n");
    let sources = installed.context_sources.as_object();
    let settings = |field: &str| -> Option<Vec<String>> {
        let list: Vec<String> = sources?
            .get(field)?
            .as_array()?
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        (!list.is_empty()).then_some(list)
    };
    let direct: Vec<&str> = ["actor_id", "actor_name", "actor_type", "reason"]
        .into_iter()
        .chain(Context::WELL_KNOWN_EXTRA)
        .collect();
    for field in &direct {
        if let Some(list) = settings(field) {
            let _ = writeln!(out, "{field} = {}", string_array(&list));
        }
    }
    let _ = writeln!(out, "require_actor = {}", installed.require_actor);
    let outside = if installed.outside_transaction.is_empty() {
        "warn"
    } else {
        installed.outside_transaction.as_str()
    };
    let _ = writeln!(out, "outside_transaction = {}", toml_string(outside));
    let others: Vec<(&String, Vec<String>)> = sources
        .into_iter()
        .flatten()
        .filter(|(field, _)| !direct.contains(&field.as_str()))
        .filter_map(|(field, _)| settings(field).map(|list| (field, list)))
        .collect();
    if !others.is_empty() {
        out.push_str("\n[context.extra]\n");
        for (field, list) in others {
            let _ = writeln!(out, "{} = {}", toml_string(field), string_array(&list));
        }
    }
    out.push('\n');
}
