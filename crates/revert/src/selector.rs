//! What to revert, as the JSON selector `pgtrail.revert_plan` and
//! `pgtrail.revert` take, and what to do about conflicts.

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value, json};

/// The changes to revert. Times are absolute moments PostgreSQL reads as
/// `timestamptz` (RFC 3339 is safest).
#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    /// Every change of these transactions (the `txid` of `pgtrail.changes`).
    Transactions(Vec<i64>),
    /// One row (`table` as `schema.name`, `key` as in `pgtrail.changes.pk`).
    Row {
        table: String,
        key: Value,
        to: RowTarget,
    },
    /// The changes made by an actor (its id or name) from `since` to `until`.
    Actor {
        actor: String,
        since: String,
        until: Option<String>,
    },
    /// The changes whose context has these values (`request_id`,
    /// `migration`, ...), from `since` to `until`.
    Context {
        context: Map<String, Value>,
        since: String,
        until: Option<String>,
    },
}

/// How far back one row goes.
#[derive(Debug, Clone, PartialEq)]
pub enum RowTarget {
    /// Undo its last change.
    LastChange,
    /// Back to how it was at this moment (every later change undone).
    Time(String),
    /// Back to how it was right after this change (every later change undone).
    AfterChange(i64),
}

/// What to do when a change outside the selection touched a selected row since.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Change nothing and list the conflicts.
    #[default]
    Refuse,
    /// Leave the conflicting rows as they are, and say which.
    Skip,
    /// Revert the later transactions that depend on the selection too.
    Cascade,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Refuse => "refuse",
            Policy::Skip => "skip",
            Policy::Cascade => "cascade",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Policy {
    type Err = String;

    fn from_str(text: &str) -> Result<Policy, String> {
        match text.to_ascii_lowercase().as_str() {
            "refuse" => Ok(Policy::Refuse),
            "skip" => Ok(Policy::Skip),
            "cascade" => Ok(Policy::Cascade),
            other => Err(format!(
                "unknown conflict policy `{other}` (refuse, skip or cascade)"
            )),
        }
    }
}

/// A revert to plan or apply: the selection, the tables it is limited to,
/// the conflict policy and the knobs of large reverts.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub selector: Selector,
    /// Only changes of these tables (`schema.name` or `name`); empty: all.
    pub tables: Vec<String>,
    pub policy: Policy,
    /// The cap on row changes (default in SQL: 1,000,000).
    pub max_rows: Option<i64>,
    /// Rows per statement batch (default in SQL: 10,000).
    pub batch_rows: Option<i64>,
    /// How long each batch waits for row locks, three times (default in SQL: 5s).
    pub lock_timeout: Option<String>,
}

impl Request {
    pub fn new(selector: Selector) -> Request {
        Request {
            selector,
            tables: Vec::new(),
            policy: Policy::Refuse,
            max_rows: None,
            batch_rows: None,
            lock_timeout: None,
        }
    }

    /// The selector JSON of the SQL functions.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        match &self.selector {
            Selector::Transactions(txids) => {
                out.insert("txids".into(), json!(txids));
            }
            Selector::Row { table, key, to } => {
                out.insert("table".into(), json!(table));
                out.insert("pk".into(), key.clone());
                match to {
                    RowTarget::LastChange => {}
                    RowTarget::Time(at) => {
                        out.insert("since".into(), json!(at));
                    }
                    RowTarget::AfterChange(id) => {
                        out.insert("after_change".into(), json!(id));
                    }
                }
            }
            Selector::Actor { actor, since, until } => {
                out.insert("actor".into(), json!(actor));
                out.insert("since".into(), json!(since));
                if let Some(until) = until {
                    out.insert("until".into(), json!(until));
                }
            }
            Selector::Context {
                context,
                since,
                until,
            } => {
                out.insert("context".into(), Value::Object(context.clone()));
                out.insert("since".into(), json!(since));
                if let Some(until) = until {
                    out.insert("until".into(), json!(until));
                }
            }
        }
        if !self.tables.is_empty() {
            out.insert("tables".into(), json!(self.tables));
        }
        if let Some(max) = self.max_rows {
            out.insert("max_rows".into(), json!(max));
        }
        if let Some(batch) = self.batch_rows {
            out.insert("batch_rows".into(), json!(batch));
        }
        if let Some(timeout) = &self.lock_timeout {
            out.insert("lock_timeout".into(), json!(timeout));
        }
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_read_as_the_sql_contract_says() {
        let mut request = Request::new(Selector::Transactions(vec![7, 9]));
        request.tables = vec!["public.users".into()];
        assert_eq!(
            request.to_json(),
            json!({"txids": [7, 9], "tables": ["public.users"]})
        );
        let row = Request::new(Selector::Row {
            table: "public.users".into(),
            key: json!({"id": 42}),
            to: RowTarget::Time("2026-06-01T14:00:00Z".into()),
        });
        assert_eq!(
            row.to_json(),
            json!({"table": "public.users", "pk": {"id": 42}, "since": "2026-06-01T14:00:00Z"})
        );
        let mut context = Map::new();
        context.insert("request_id".into(), json!("r-1"));
        let mut by_context = Request::new(Selector::Context {
            context,
            since: "2026-06-01T14:00:00Z".into(),
            until: None,
        });
        by_context.max_rows = Some(10);
        assert_eq!(
            by_context.to_json(),
            json!({"context": {"request_id": "r-1"}, "since": "2026-06-01T14:00:00Z", "max_rows": 10})
        );
    }

    #[test]
    fn policies_parse() {
        assert_eq!("Skip".parse::<Policy>(), Ok(Policy::Skip));
        assert!("undo".parse::<Policy>().is_err());
        assert_eq!(Policy::default().as_str(), "refuse");
    }
}
