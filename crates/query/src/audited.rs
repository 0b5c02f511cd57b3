//! An audited table found by the name a user typed (`orders`, `sales.orders`,
//! `"Sales Dept"."Order Items"`), with its key and live columns: shared by the
//! CLI's query commands and `pgtrail serve`, so both refuse a name the same way.

use serde_json::Value;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::{QueryError, parse_key};

/// An audited table, found by the name a user typed.
#[derive(Debug, Clone)]
pub struct Audited {
    pub schema: String,
    pub name: String,
    pub key_columns: Vec<String>,
    /// (column, type as `format_type` names it) of the live table; empty if
    /// it no longer exists.
    pub columns: Vec<(String, String)>,
}

/// Why a typed table name does not name one audited table. Displayed in the
/// CLI's form: `message\n  help: …`.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(
        "pgtrail is not installed in this database\n  help: `pgtrail apply` installs it and starts recording changes"
    )]
    NotInstalled,
    #[error("{message}\n  help: {help}")]
    NotAudited { message: String, help: String },
    #[error("{message}\n  help: {help}")]
    Ambiguous { message: String, help: String },
    #[error(transparent)]
    Database(#[from] tokio_postgres::Error),
}

/// A key that cannot be the table's, with the help that says how to write one.
#[derive(Debug, thiserror::Error)]
#[error("{error}\n  help: {help}")]
pub struct KeyError {
    pub error: QueryError,
    pub help: String,
}

impl Audited {
    /// Finds `input` (`name` or `schema.name`) in `pgtrail.audited_table`: a
    /// bare name must match in one schema only.
    pub async fn resolve(client: &Client, input: &str) -> Result<Audited, ResolveError> {
        // One query: a database without pgtrail has no pgtrail.audited_table.
        let rows = client
            .query(
                "SELECT table_schema, table_name, key_columns FROM pgtrail.audited_table ORDER BY 1, 2",
                &[],
            )
            .await
            .map_err(|error| match error.code() {
                Some(code)
                    if *code == SqlState::UNDEFINED_TABLE || *code == SqlState::INVALID_SCHEMA_NAME =>
                {
                    ResolveError::NotInstalled
                }
                _ => ResolveError::Database(error),
            })?;
        let all: Vec<(String, String, Vec<String>)> =
            rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
        let (schema, name) = match input.split_once('.') {
            Some((schema, name)) => (Some(unquote(schema)), unquote(name)),
            None => (None, unquote(input)),
        };
        let matches: Vec<&(String, String, Vec<String>)> = all
            .iter()
            .filter(|(s, n, _)| *n == name && schema.as_ref().is_none_or(|schema| s == schema))
            .collect();
        let (schema, name, key_columns) = match matches.as_slice() {
            [one] => (*one).clone(),
            [] => return Err(not_audited(input, &all)),
            several => {
                let names: Vec<String> = several.iter().map(|(s, n, _)| format!("{s}.{n}")).collect();
                return Err(ResolveError::Ambiguous {
                    message: format!(
                        "table `{input}` is audited in several schemas: {}",
                        names.join(", ")
                    ),
                    help: format!("name one with its schema, e.g. `{}`", names[0]),
                });
            }
        };
        let columns = client
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
                 FROM pg_attribute AS a
                 WHERE a.attrelid = to_regclass($1::text) AND a.attnum > 0 AND NOT a.attisdropped
                 ORDER BY a.attnum",
                &[&quote_table(&schema, &name)],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        Ok(Audited {
            schema,
            name,
            key_columns,
            columns,
        })
    }

    /// `"schema"."name"`, for `$n::text::regclass`.
    pub fn regclass(&self) -> String {
        quote_table(&self.schema, &self.name)
    }

    /// `schema.name`, as people read it.
    pub fn display(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// The `pk` JSON of a key as typed (`42`, `col=value,...` or JSON).
    pub fn key(&self, input: &str) -> Result<Value, KeyError> {
        parse_key(input, &self.key_columns, &self.columns).map_err(|error| {
            let key = if self.key_columns.is_empty() {
                "the whole row (no key)".to_string()
            } else {
                format!("({})", self.key_columns.join(", "))
            };
            KeyError {
                error,
                help: format!(
                    "{}'s key is {key}; write 42 for a one-column key, col=value,... or JSON",
                    self.display()
                ),
            }
        })
    }
}

/// `input` names no audited table: the nearest name, and the audited ones.
fn not_audited(input: &str, all: &[(String, String, Vec<String>)]) -> ResolveError {
    let qualified: Vec<String> = all.iter().map(|(s, n, _)| format!("{s}.{n}")).collect();
    let candidates = all
        .iter()
        .map(|(_, n, _)| n.as_str())
        .chain(qualified.iter().map(String::as_str));
    let mut message = format!("table `{input}` is not audited by pgtrail");
    if let Some(near) = pgtrail_config::suggest(input, candidates) {
        message.push_str(&format!("; did you mean `{near}`?"));
    }
    let help = if qualified.is_empty() {
        "no table is audited yet: `pgtrail apply` installs capture".to_string()
    } else {
        let mut list = qualified.iter().take(12).cloned().collect::<Vec<_>>().join(", ");
        if qualified.len() > 12 {
            list.push_str(&format!(" and {} more", qualified.len() - 12));
        }
        format!("the audited tables are {list}")
    };
    ResolveError::NotAudited { message, help }
}

/// A name as typed, its double quotes removed (`"Order Items"` -> `Order Items`).
fn unquote(text: &str) -> String {
    let text = text.trim();
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\""),
        None => text.to_string(),
    }
}

fn quote_table(schema: &str, name: &str) -> String {
    let quote = |ident: &str| format!("\"{}\"", ident.replace('"', "\"\""));
    format!("{}.{}", quote(schema), quote(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_names_lose_their_quotes() {
        assert_eq!(unquote(" \"Order Items\" "), "Order Items");
        assert_eq!(unquote("\"a\"\"b\""), "a\"b");
        assert_eq!(quote_table("Sales Dept", "a\"b"), "\"Sales Dept\".\"a\"\"b\"");
    }

    #[test]
    fn an_unknown_name_suggests_the_nearest_and_lists_the_audited() {
        let all = vec![("public".to_string(), "orders".to_string(), vec!["id".to_string()])];
        let error = not_audited("order", &all).to_string();
        assert!(error.contains("did you mean `orders`?"), "{error}");
        assert!(
            error.contains("help: the audited tables are public.orders"),
            "{error}"
        );
    }
}
