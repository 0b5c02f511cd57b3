//! What capture should look like, table by table, according to the config.

use pgtrail_catalog::{Catalog, Table};
use pgtrail_config::{Config, ConfigError, ErrorKind, Location, Selection, Truncate, suggest};

/// Capture settings of one audited table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredTable {
    pub schema: String,
    pub name: String,
    pub key_columns: Vec<String>,
    /// `primary_key`, `configured`, `replica_identity` or `full_row`.
    pub key_kind: &'static str,
    pub images: &'static str,
    pub ignore_columns: Vec<String>,
    pub redact_columns: Vec<String>,
    /// `event` or `capture`: what a TRUNCATE records.
    pub truncate: &'static str,
    /// With `capture`, the most rows a TRUNCATE records one by one.
    pub truncate_row_limit: Option<i64>,
    /// `trigger` or `wal`: how its changes reach the trail.
    pub mode: &'static str,
}

/// The whole desired state.
#[derive(Debug, Clone)]
pub struct Desired {
    pub tables: Vec<DesiredTable>,
    /// Tables that carry capture triggers but should not, with the reason
    /// (excluded by a pattern, or not covered by any rule).
    pub detach: Vec<((String, String), String)>,
    /// Tables no include or exclude rule covers.
    pub not_covered: Vec<(String, String)>,
    /// `{"actor_id": ["app.user_id"], ...}` for `pgtrail.configure_context`.
    pub context_sources: serde_json::Value,
    /// The rules `pgtrail.configure_auto_attach` needs, or JSON null when
    /// auto_attach is off.
    pub auto_attach: serde_json::Value,
    pub require_actor: bool,
    /// `[retention]`: the partition grain (`day`, `week`, `month`) and how
    /// many partitions to make ahead.
    pub partition_grain: &'static str,
    pub premake: i64,
    /// `[context] outside_transaction`: warn, refuse or ignore.
    pub outside_transaction: String,
    /// `[capture] wal_max_lag_bytes`: the slot lag `check` reports.
    pub wal_max_lag_bytes: i64,
}

impl Desired {
    /// Whether some table is captured in WAL mode (then the slot must exist).
    pub fn wants_wal(&self) -> bool {
        self.tables.iter().any(|t| t.mode == "wal")
    }
}

/// Decides what capture should look like and checks the config against the
/// catalog. Returns every problem at once, not just the first.
pub fn resolve(config: &Config, catalog: &Catalog) -> Result<Desired, Vec<ConfigError>> {
    let mut problems = Vec::new();
    check_schemas(config, catalog, &mut problems);
    check_table_rules(config, catalog, &mut problems);
    check_literal_patterns(config, catalog, &mut problems);

    let mut tables = Vec::new();
    let mut detach = Vec::new();
    let mut not_covered = Vec::new();
    for table in catalog.top_level_tables() {
        if !config.capture.schemas.contains(&table.schema) {
            continue;
        }
        match config.selects(&table.schema, &table.name) {
            Selection::Included => match desired_table(config, table) {
                Ok(desired) => tables.push(desired),
                Err(problem) => problems.push(problem),
            },
            Selection::Excluded { pattern } => {
                if has_capture_triggers(table, catalog) {
                    let reason = format!("the config excludes it (\"{pattern}\")");
                    detach.push(((table.schema.clone(), table.name.clone()), reason));
                }
            }
            Selection::NotCovered => {
                let name = (table.schema.clone(), table.name.clone());
                if has_capture_triggers(table, catalog) {
                    detach.push((name.clone(), "no include rule covers it".to_string()));
                }
                not_covered.push(name);
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Desired {
        tables,
        detach,
        not_covered,
        context_sources: context_sources(config),
        auto_attach: auto_attach(config),
        require_actor: config.context.require_actor,
        partition_grain: config.retention.partition.name(),
        premake: i64::from(config.retention.premake),
        outside_transaction: config.context.outside_transaction.as_str().to_string(),
        wal_max_lag_bytes: config.capture.wal_max_lag_bytes,
    })
}

/// Whether the table or any of its partitions carries a pgtrail capture trigger.
fn has_capture_triggers(table: &Table, catalog: &Catalog) -> bool {
    let is_capture = |t: &Table| {
        t.triggers.iter().any(|tr| {
            pgtrail_capture::TRIGGER_NAMES.contains(&tr.name.as_str())
                || tr.name == pgtrail_capture::WAL_TRIGGER_NAME
        })
    };
    is_capture(table)
        || table
            .partitions
            .iter()
            .filter_map(|(schema, name)| catalog.table(schema, name))
            .any(|p| has_capture_triggers(p, catalog))
}

fn desired_table(config: &Config, table: &Table) -> Result<DesiredTable, ConfigError> {
    let rules = config.columns_for(&table.schema, &table.name);
    let (key_columns, key_kind) = match &rules.key {
        Some(key) => (key.clone(), "configured"),
        None => (table.key.columns().to_vec(), table.key.kind()),
    };
    // Global lists apply where the column exists; per-table lists were
    // checked by check_table_rules.
    let present = |columns: &[String]| -> Vec<String> {
        let mut kept: Vec<String> = columns
            .iter()
            .filter(|c| table.column(c).is_some())
            .cloned()
            .collect();
        kept.sort();
        kept.dedup();
        kept
    };
    let ignore_columns = present(&rules.ignore);
    if let Some(key) = key_columns.iter().find(|k| ignore_columns.contains(k)) {
        return Err(problem(
            config,
            None,
            format!(
                "column `{key}` of `{}.{}` is part of the row key and cannot be ignored",
                table.schema, table.name
            ),
            Some("remove it from ignore_columns, or set another key for this table".to_string()),
        ));
    }
    let redact_columns = present(&rules.redact);
    if let Some(key) = key_columns.iter().find(|k| redact_columns.contains(k)) {
        return Err(problem(
            config,
            None,
            format!(
                "column `{key}` of `{}.{}` is part of the row key and cannot be redacted: \
                 the trail finds a row's history by its key",
                table.schema, table.name
            ),
            Some("set another key for this table (key = [...]), or exclude the table".to_string()),
        ));
    }
    Ok(DesiredTable {
        schema: table.schema.clone(),
        name: table.name.clone(),
        key_columns,
        key_kind,
        images: rules.images.as_str(),
        ignore_columns,
        redact_columns,
        truncate: rules.truncate.as_str(),
        truncate_row_limit: rules.truncate_row_limit,
        mode: rules.mode.as_str(),
    })
}

fn check_schemas(config: &Config, catalog: &Catalog, problems: &mut Vec<ConfigError>) {
    for schema in &config.capture.schemas {
        if !catalog.schemas.contains(schema) {
            let help = suggest(schema, catalog.schemas.iter().map(String::as_str))
                .map(|s| format!("did you mean `{s}`?"));
            problems.push(problem(
                config,
                None,
                format!("schema `{schema}` in capture.schemas does not exist"),
                help,
            ));
        }
    }
}

/// An include or exclude entry that names one table (no glob characters)
/// and matches none is a typo: the table it meant would be captured, or not,
/// against the config's intent. With auto_attach on it may name a table
/// created later, so it is accepted.
fn check_literal_patterns(config: &Config, catalog: &Catalog, problems: &mut Vec<ConfigError>) {
    if config.capture.auto_attach {
        return;
    }
    let in_scope = || {
        catalog
            .top_level_tables()
            .filter(|t| config.capture.schemas.contains(&t.schema))
    };
    for (list, patterns) in [
        ("include", &config.capture.include),
        ("exclude", &config.capture.exclude),
    ] {
        for pattern in patterns.iter().filter(|p| p.is_literal()) {
            if in_scope().any(|t| pattern.matches_table(&t.schema, &t.name)) {
                continue;
            }
            let qualified = pattern.as_str().contains('.');
            let candidates: Vec<String> = in_scope()
                .map(|t| match qualified {
                    true => format!("{}.{}", t.schema, t.name),
                    false => t.name.clone(),
                })
                .collect();
            let help = suggest(pattern.as_str(), candidates.iter().map(String::as_str))
                .map(|s| format!("did you mean `{s}`?"))
                .or_else(|| Some("run `pgtrail init` to list the tables pgtrail can see".to_string()));
            problems.push(problem(
                config,
                None,
                format!(
                    "capture.{list} names `{pattern}`, which matches no table in schema {}",
                    config.capture.schemas.join(", ")
                ),
                help,
            ));
        }
    }
}

fn check_table_rules(config: &Config, catalog: &Catalog, problems: &mut Vec<ConfigError>) {
    for rule in &config.tables {
        let schemas: Vec<&str> = match &rule.name.schema {
            Some(schema) => vec![schema.as_str()],
            None => config.capture.schemas.iter().map(String::as_str).collect(),
        };
        let found = schemas
            .iter()
            .find_map(|schema| catalog.table(schema, &rule.name.table));
        let Some(table) = found else {
            let candidates: Vec<String> = catalog
                .top_level_tables()
                .map(|t| match &rule.name.schema {
                    Some(_) => format!("{}.{}", t.schema, t.name),
                    None => t.name.clone(),
                })
                .collect();
            let written = rule.name.to_string();
            let help = case_folded_help(config, catalog, rule, &schemas)
                .or_else(|| {
                    suggest(&written, candidates.iter().map(String::as_str))
                        .map(|s| format!("did you mean `{s}`?"))
                })
                .or_else(|| Some("run `pgtrail init` to list the tables pgtrail can see".to_string()));
            problems.push(problem(
                config,
                Some(rule.location),
                format!(
                    "table `{written}` does not exist in schema {}",
                    schemas.join(", ")
                ),
                help,
            ));
            continue;
        };
        if table.partition_of.is_some() {
            problems.push(problem(
                config,
                Some(rule.location),
                format!(
                    "`{}.{}` is a partition; configure its partitioned parent instead",
                    table.schema, table.name
                ),
                None,
            ));
        }
        let lists: [(&str, Option<&Vec<String>>); 3] = [
            ("key", rule.key.as_ref()),
            ("ignore_columns", Some(&rule.ignore_columns)),
            ("redact_columns", Some(&rule.redact_columns)),
        ];
        for (setting, columns) in lists {
            for (index, column) in columns.into_iter().flatten().enumerate() {
                if table.column(column).is_none() {
                    let location = match setting {
                        "key" => rule.key_location.get(index).copied().unwrap_or(rule.location),
                        _ => rule.location,
                    };
                    let help = suggest(column, table.column_names())
                        .map(|s| format!("did you mean `{s}`?"))
                        .or_else(|| Some(columns_help(table)));
                    problems.push(problem(
                        config,
                        Some(location),
                        format!(
                            "{setting} names column `{column}`, which `{}.{}` does not have",
                            table.schema, table.name
                        ),
                        help,
                    ));
                }
            }
        }
    }
}

/// The help for a column a table does not have (and none it has is close
/// to): the columns it has, the first dozen when there are many.
fn columns_help(table: &Table) -> String {
    const SHOWN: usize = 12;
    let names: Vec<String> = table.column_names().map(|c| format!("`{c}`")).collect();
    let more = names.len().saturating_sub(SHOWN);
    let shown = names.into_iter().take(SHOWN).collect::<Vec<_>>().join(", ");
    if more > 0 {
        format!("its columns are {shown} and {more} more")
    } else {
        format!("its columns are {shown}")
    }
}

/// The help for a `[tables."..."]` name that matches no table but one whose
/// name differs in case only: pgtrail.toml keeps the case of names (as
/// PostgreSQL stores them), where SQL folds unquoted names to lower case.
/// When another section configures that table, both sections are named.
fn case_folded_help(
    config: &Config,
    catalog: &Catalog,
    rule: &pgtrail_config::TableRule,
    schemas: &[&str],
) -> Option<String> {
    let table = catalog.top_level_tables().find(|t| {
        schemas.contains(&t.schema.as_str()) && t.name.to_lowercase() == rule.name.table.to_lowercase()
    })?;
    let meant = pgtrail_config::QualifiedName::new(table.schema.clone(), table.name.clone());
    let header = |name: &pgtrail_config::QualifiedName| {
        format!(
            "[tables.\"{}\"]",
            name.to_string().replace('\\', "\\\\").replace('"', "\\\"")
        )
    };
    let mut help = format!(
        "names in pgtrail.toml keep their case (unlike unquoted names in SQL): the table is `{meant}`"
    );
    match config.table_rules_for(&table.schema, &table.name).first() {
        Some(other) => help.push_str(&format!(
            ", which {} at {} configures already; move this section's settings there and remove this one",
            header(&other.name),
            other.location
        )),
        None => help.push_str(&format!("; write {}", header(&meant))),
    }
    Some(help)
}

fn context_sources(config: &Config) -> serde_json::Value {
    let context = &config.context;
    let mut map = serde_json::Map::new();
    let named = [
        ("actor_id", &context.actor_id),
        ("actor_name", &context.actor_name),
        ("actor_type", &context.actor_type),
        ("reason", &context.reason),
    ];
    for (field, settings) in named
        .into_iter()
        .chain(context.extra.iter().map(|(k, v)| (k.as_str(), v)))
    {
        if !settings.is_empty() {
            map.insert(field.to_string(), serde_json::json!(settings));
        }
    }
    serde_json::Value::Object(map)
}

/// A config problem found against the catalog, at its place in the file when known.
fn problem(
    config: &Config,
    location: Option<Location>,
    message: String,
    help: Option<String>,
) -> ConfigError {
    match location {
        Some(location) => ConfigError::at(config.origin(), location, message, help),
        None => ConfigError::Unlocated {
            kind: ErrorKind::Other,
            origin: config.origin().to_string(),
            message,
            help,
        },
    }
}

/// What the database needs to apply the include/exclude rules itself to
/// tables created later: the patterns as regular expressions.
fn auto_attach(config: &Config) -> serde_json::Value {
    if !config.capture.auto_attach {
        return serde_json::Value::Null;
    }
    let rules = |patterns: &[pgtrail_config::Pattern]| -> Vec<serde_json::Value> {
        patterns
            .iter()
            .map(|pattern| {
                let (schema, table) = pattern.to_pg_regex();
                serde_json::json!({ "schema": schema, "table": table })
            })
            .collect()
    };
    let mut settings = serde_json::json!({
        "schemas": config.capture.schemas,
        "include": rules(&config.capture.include),
        "exclude": rules(&config.capture.exclude),
        "images": config.capture.images.as_str(),
        "ignore_columns": config.capture.ignore_columns,
        "redact_columns": config.capture.redact_columns,
    });
    // Only when set, so that configs without it keep the rules they had.
    if config.capture.truncate == Truncate::Capture {
        settings["truncate"] = serde_json::json!(config.capture.truncate.as_str());
        settings["truncate_row_limit"] = serde_json::json!(
            config
                .capture
                .truncate_row_limit
                .unwrap_or(pgtrail_config::DEFAULT_TRUNCATE_ROW_LIMIT)
        );
    }
    settings
}
