//! Which tables the configuration selects, and the column rules for each.
//!
//! # Patterns
//!
//! `capture.include` and `capture.exclude` hold glob patterns (`*`, `?`,
//! `[abc]`, `[!abc]`) split like table names (see [`crate::name`]): a pattern
//! with an unquoted dot, such as `audit.*` or `public.*_log`, matches the
//! schema against the part before the dot and the table against the part
//! after it; a pattern without one, such as `*_audit`, matches the table name
//! in any considered schema. A quoted part (`"my.schema".*`) is matched
//! literally, without glob characters. Matching is case-sensitive.
//!
//! # Selection
//!
//! [`Config::selects`] decides, in this order:
//!
//! 1. a table whose schema is not in `capture.schemas` is
//!    [`Selection::NotCovered`];
//! 2. a table matching any `exclude` pattern is [`Selection::Excluded`]
//!    (exclude wins over everything else);
//! 3. a table with a `[tables."..."]` section (see [`Config::table_rules_for`])
//!    is [`Selection::Included`], whether or not an `include` pattern matches;
//! 4. a table matching any `include` pattern is [`Selection::Included`];
//! 5. anything else is [`Selection::NotCovered`].

use std::fmt;

use crate::model::{Config, DEFAULT_TRUNCATE_ROW_LIMIT, Images, Mode, TableRule, Truncate};
use crate::name::{NameError, split_parts};

/// Why a pattern is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The pattern does not split into `table` or `schema.table`.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A part is not a valid glob.
    #[error("`{pattern}` is not a valid glob: {message}")]
    Glob {
        /// The whole pattern as written.
        pattern: String,
        /// What the glob parser said.
        message: String,
    },
}

/// A glob pattern on `table` or `schema.table`, with its source text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    schema: Option<glob::Pattern>,
    table: glob::Pattern,
}

impl Pattern {
    /// Compiles a pattern (see the module documentation).
    pub fn new(source: &str) -> Result<Pattern, PatternError> {
        let compile = |part: &crate::name::Part| {
            let glob = if part.quoted {
                glob::Pattern::escape(&part.text)
            } else {
                part.text.clone()
            };
            glob::Pattern::new(&glob).map_err(|e| PatternError::Glob {
                pattern: source.to_string(),
                message: e.msg.to_string(),
            })
        };
        let parts = split_parts(source)?;
        let (schema, table) = match parts.as_slice() {
            [table] => (None, compile(table)?),
            [schema, table] => (Some(compile(schema)?), compile(table)?),
            _ => return Err(NameError::TooManyParts(source.to_string()).into()),
        };
        Ok(Pattern {
            source: source.to_string(),
            schema,
            table,
        })
    }

    /// The pattern `*`, matching every table.
    pub fn any() -> Pattern {
        Pattern {
            source: "*".to_string(),
            schema: None,
            table: glob::Pattern::new("*").expect("`*` is a valid glob"),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The pattern as anchored PostgreSQL regular expressions (`~`) on the
    /// schema name (None: any schema) and on the table name, matching exactly
    /// what [`Pattern::matches_table`] matches. Used where the database itself
    /// must apply the rules (auto-attach of tables created later).
    pub fn to_pg_regex(&self) -> (Option<String>, String) {
        (
            self.schema.as_ref().map(|glob| glob_to_regex(glob.as_str())),
            glob_to_regex(self.table.as_str()),
        )
    }

    /// Whether the pattern names one table rather than a set: no `*`, `?`
    /// or `[...]` in it (a quoted name counts as literal only when it has
    /// none of those characters either).
    pub fn is_literal(&self) -> bool {
        let literal = |glob: &glob::Pattern| glob::Pattern::escape(glob.as_str()) == glob.as_str();
        self.schema.as_ref().is_none_or(literal) && literal(&self.table)
    }

    /// Whether the pattern matches the table `schema.table`.
    pub fn matches_table(&self, schema: &str, table: &str) -> bool {
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: false,
            require_literal_leading_dot: false,
        };
        self.schema
            .as_ref()
            .is_none_or(|s| s.matches_with(schema, options))
            && self.table.matches_with(table, options)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Translates a glob (as the `glob` crate reads it: `*`, `?`, `[...]`,
/// `[!...]`, and `[x]` to quote a special character) into an anchored
/// PostgreSQL regular expression.
fn glob_to_regex(glob: &str) -> String {
    let chars: Vec<char> = glob.chars().collect();
    let mut out = String::from("^");
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            '[' => {
                // A class runs to the first `]` after at least one character.
                let close = (i + 2..chars.len()).find(|&j| chars[j] == ']');
                match close {
                    Some(end) => {
                        out.push_str(&class_to_regex(&chars[i + 1..end]));
                        i = end;
                    }
                    None => out.push_str("\\["),
                }
            }
            c => {
                if "\\.^$|()[]*+?{}".contains(c) {
                    out.push('\\');
                }
                out.push(c);
            }
        }
        i += 1;
    }
    out.push('$');
    out
}

/// A glob character class body (between `[` and `]`) as a regular
/// expression. Ranges run from the lower to the higher character; a
/// reversed one (`x-a`) matches nothing, as in the glob crate, and is left
/// out rather than passed on as an invalid regex.
fn class_to_regex(body: &[char]) -> String {
    let (negated, body) = match body {
        ['!', rest @ ..] if !rest.is_empty() => (true, rest),
        _ => (false, body),
    };
    let escape = |c: char| {
        if matches!(c, '\\' | '^' | '[' | ']' | '-') {
            format!("\\{c}")
        } else {
            c.to_string()
        }
    };
    let mut items = String::new();
    let mut k = 0;
    while k < body.len() {
        if k + 2 < body.len() && body[k + 1] == '-' {
            if body[k] <= body[k + 2] {
                items.push_str(&format!("{}-{}", escape(body[k]), escape(body[k + 2])));
            }
            k += 3;
        } else {
            items.push_str(&escape(body[k]));
            k += 1;
        }
    }
    match (negated, items.is_empty()) {
        (false, true) => "(?!)x".to_string(),
        (true, true) => ".".to_string(),
        (false, false) => format!("[{items}]"),
        (true, false) => format!("[^{items}]"),
    }
}

/// Whether a table is captured; see the module documentation for the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// The table is captured.
    Included,
    /// The table matches an `exclude` pattern.
    Excluded {
        /// The first matching `exclude` pattern, as written.
        pattern: String,
    },
    /// The table's schema is not in `capture.schemas`, or nothing includes it.
    NotCovered,
}

/// The settings of one table: the global settings merged with its
/// `[tables."..."]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnRules {
    /// Columns not recorded: `capture.ignore_columns` followed by the
    /// table's own, without duplicates.
    pub ignore: Vec<String>,
    /// Columns redacted: `capture.redact_columns` followed by the table's
    /// own, without duplicates.
    pub redact: Vec<String>,
    /// The table's `images`, or else `capture.images`.
    pub images: Images,
    /// The table's `key` override, if any.
    pub key: Option<Vec<String>>,
    /// The table's `truncate`, or else `capture.truncate`.
    pub truncate: Truncate,
    /// With [`Truncate::Capture`], the table's `truncate_row_limit`, or else
    /// `capture.truncate_row_limit`, or else [`DEFAULT_TRUNCATE_ROW_LIMIT`];
    /// `None` with [`Truncate::Event`].
    pub truncate_row_limit: Option<i64>,
    /// The table's `mode`, or else `capture.mode`.
    pub mode: Mode,
}

impl Config {
    /// The `[tables."..."]` section that applies to `schema.table`, written
    /// with its schema or without (a name without a schema applies to a
    /// table of that name in any considered schema). A parsed config has one
    /// at most: two sections naming the same table are refused.
    pub fn table_rules_for(&self, schema: &str, table: &str) -> Vec<&TableRule> {
        if !self.capture.schemas.iter().any(|s| s == schema) {
            return Vec::new();
        }
        let mut rules: Vec<&TableRule> = self
            .tables
            .iter()
            .filter(|rule| rule.name.matches(schema, table))
            .collect();
        rules.sort_by_key(|rule| rule.name.schema.is_none());
        rules
    }

    /// Whether `schema.table` is captured. In order: a schema not in
    /// `capture.schemas` gives [`Selection::NotCovered`]; a matching `exclude`
    /// pattern gives [`Selection::Excluded`]; a `[tables."..."]` section for
    /// the table (see [`Config::table_rules_for`]) or a matching `include`
    /// pattern gives [`Selection::Included`]; anything else is
    /// [`Selection::NotCovered`].
    pub fn selects(&self, schema: &str, table: &str) -> Selection {
        if !self.capture.schemas.iter().any(|s| s == schema) {
            return Selection::NotCovered;
        }
        if let Some(pattern) = self
            .capture
            .exclude
            .iter()
            .find(|p| p.matches_table(schema, table))
        {
            return Selection::Excluded {
                pattern: pattern.as_str().to_string(),
            };
        }
        let listed = !self.table_rules_for(schema, table).is_empty();
        if listed
            || self
                .capture
                .include
                .iter()
                .any(|p| p.matches_table(schema, table))
        {
            Selection::Included
        } else {
            Selection::NotCovered
        }
    }

    /// The settings for `schema.table`: the global settings merged with the
    /// table's section (see [`Config::table_rules_for`]), which adds columns
    /// to ignore and redact and overrides the rest.
    pub fn columns_for(&self, schema: &str, table: &str) -> ColumnRules {
        let rules = self.table_rules_for(schema, table);
        let union = |global: &[String], per_table: fn(&TableRule) -> &[String]| {
            let mut out: Vec<String> = Vec::new();
            let all = global.iter().chain(rules.iter().flat_map(|r| per_table(r)));
            for column in all {
                if !out.contains(column) {
                    out.push(column.clone());
                }
            }
            out
        };
        let truncate = rules
            .iter()
            .find_map(|r| r.truncate)
            .unwrap_or(self.capture.truncate);
        ColumnRules {
            mode: rules.iter().find_map(|r| r.mode).unwrap_or(self.capture.mode),
            ignore: union(&self.capture.ignore_columns, |r| &r.ignore_columns),
            redact: union(&self.capture.redact_columns, |r| &r.redact_columns),
            images: rules.iter().find_map(|r| r.images).unwrap_or(self.capture.images),
            key: rules.iter().find_map(|r| r.key.clone()),
            truncate,
            truncate_row_limit: match truncate {
                Truncate::Event => None,
                Truncate::Capture => Some(
                    rules
                        .iter()
                        .find_map(|r| r.truncate_row_limit)
                        .or(self.capture.truncate_row_limit)
                        .unwrap_or(DEFAULT_TRUNCATE_ROW_LIMIT),
                ),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Location;
    use crate::name::QualifiedName;

    fn pattern(s: &str) -> Pattern {
        Pattern::new(s).unwrap()
    }

    #[test]
    fn bare_patterns_match_table_names() {
        let p = pattern("*_audit");
        assert!(p.matches_table("public", "users_audit"));
        assert!(p.matches_table("app", "users_audit"));
        assert!(!p.matches_table("public", "users"));
        assert!(pattern("*").matches_table("x", "Order Items"));
        assert!(pattern("sessions").matches_table("public", "sessions"));
    }

    #[test]
    fn qualified_patterns_match_schema_and_table() {
        let p = pattern("audit.*");
        assert!(p.matches_table("audit", "anything"));
        assert!(!p.matches_table("public", "audit"));
        let p = pattern("pub*.user?");
        assert!(p.matches_table("public", "users"));
        assert!(!p.matches_table("public", "user"));
    }

    #[test]
    fn matching_is_case_sensitive() {
        assert!(!pattern("users").matches_table("public", "Users"));
        assert!(!pattern("Public.*").matches_table("public", "users"));
    }

    #[test]
    fn quoted_parts_are_literal() {
        let p = pattern(r#""my.schema".*"#);
        assert!(p.matches_table("my.schema", "t"));
        assert!(!p.matches_table("my", "schema"));
        let p = pattern(r#""a*""#);
        assert!(p.matches_table("s", "a*"));
        assert!(!p.matches_table("s", "ab"));
    }

    #[test]
    fn invalid_patterns() {
        assert!(matches!(Pattern::new("[abc"), Err(PatternError::Glob { .. })));
        assert!(matches!(Pattern::new("a**"), Err(PatternError::Glob { .. })));
        assert!(matches!(
            Pattern::new("a.b.c"),
            Err(PatternError::Name(NameError::TooManyParts(_)))
        ));
        assert!(matches!(
            Pattern::new(""),
            Err(PatternError::Name(NameError::Empty))
        ));
    }

    fn rule(name: QualifiedName) -> TableRule {
        TableRule {
            name,
            key: None,
            images: None,
            ignore_columns: Vec::new(),
            redact_columns: Vec::new(),
            truncate: None,
            truncate_row_limit: None,
            mode: None,
            location: Location::new(1, 1),
            key_location: Vec::new(),
        }
    }

    fn config() -> Config {
        let mut config = Config::default();
        config.capture.schemas = vec!["public".into(), "app".into()];
        config.capture.include = vec![pattern("public.*"), pattern("orders")];
        config.capture.exclude = vec![pattern("sessions"), pattern("*_audit")];
        config.tables = vec![
            rule(QualifiedName::new("app", "students")),
            rule(QualifiedName::new("app", "users_audit")),
            rule(QualifiedName::bare("teachers")),
        ];
        config
    }

    #[test]
    fn selection_precedence() {
        let config = config();
        // Schema not considered: not covered, even when a pattern would match.
        assert_eq!(config.selects("other", "orders"), Selection::NotCovered);
        // Included by a qualified pattern and by a bare one.
        assert_eq!(config.selects("public", "users"), Selection::Included);
        assert_eq!(config.selects("app", "orders"), Selection::Included);
        // No include pattern matches.
        assert_eq!(config.selects("app", "users"), Selection::NotCovered);
        // Exclude wins over include.
        assert_eq!(
            config.selects("public", "sessions"),
            Selection::Excluded {
                pattern: "sessions".into()
            }
        );
        // Listed in [tables]: included without an include pattern...
        assert_eq!(config.selects("app", "students"), Selection::Included);
        assert_eq!(config.selects("app", "teachers"), Selection::Included);
        // ...unless excluded.
        assert_eq!(
            config.selects("app", "users_audit"),
            Selection::Excluded {
                pattern: "*_audit".into()
            }
        );
    }

    #[test]
    fn empty_include_covers_only_listed_tables() {
        let mut config = config();
        config.capture.include.clear();
        assert_eq!(config.selects("public", "users"), Selection::NotCovered);
        assert_eq!(config.selects("app", "students"), Selection::Included);
    }

    #[test]
    fn column_rules_merge() {
        let mut config = config();
        config.capture.ignore_columns = vec!["updated_at".into()];
        config.capture.redact_columns = vec!["ssn".into()];
        config.capture.images = Images::Diff;
        let mut qualified = rule(QualifiedName::new("app", "teachers"));
        qualified.images = Some(Images::Full);
        qualified.key = Some(vec!["teacher_no".into()]);
        qualified.ignore_columns = vec!["last_login_at".into(), "updated_at".into()];
        qualified.truncate = Some(Truncate::Capture);
        let mut bare = rule(QualifiedName::bare("students"));
        bare.images = Some(Images::Full);
        bare.key = Some(vec!["id".into()]);
        bare.redact_columns = vec!["password_hash".into()];
        bare.truncate = Some(Truncate::Capture);
        bare.truncate_row_limit = Some(10);
        config.tables = vec![bare, qualified];

        let rules = config.columns_for("app", "teachers");
        assert_eq!(rules.ignore, ["updated_at", "last_login_at"]);
        assert_eq!(rules.redact, ["ssn"]);
        assert_eq!(rules.images, Images::Full);
        assert_eq!(rules.key, Some(vec!["teacher_no".to_string()]));
        assert_eq!(rules.truncate, Truncate::Capture);
        assert_eq!(rules.truncate_row_limit, Some(DEFAULT_TRUNCATE_ROW_LIMIT));
        // A section of another schema does not apply.
        assert_eq!(config.columns_for("public", "teachers").key, None);

        // A section without a schema applies in every considered schema.
        for schema in ["public", "app"] {
            let rules = config.columns_for(schema, "students");
            assert_eq!(rules.ignore, ["updated_at"]);
            assert_eq!(rules.redact, ["ssn", "password_hash"]);
            assert_eq!(rules.images, Images::Full);
            assert_eq!(rules.key, Some(vec!["id".to_string()]));
            assert_eq!(rules.truncate_row_limit, Some(10));
        }

        // No section: the global settings.
        config.capture.truncate_row_limit = Some(500);
        let rules = config.columns_for("public", "users");
        assert_eq!(
            rules,
            ColumnRules {
                ignore: vec!["updated_at".into()],
                redact: vec!["ssn".into()],
                images: Images::Diff,
                key: None,
                truncate: Truncate::Event,
                truncate_row_limit: None,
                mode: Mode::Trigger,
            }
        );
        config.capture.truncate = Truncate::Capture;
        assert_eq!(
            config.columns_for("public", "users").truncate_row_limit,
            Some(500)
        );
        assert_eq!(
            config.columns_for("public", "students").truncate_row_limit,
            Some(10)
        );
    }
}
