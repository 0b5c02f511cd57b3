//! [`AuditContext`]: the fields pgtrail records, as transaction-local
//! settings set with `set_config(..., true)` and bind parameters.

use std::collections::BTreeMap;
use std::fmt::Display;

use serde_json::{Map, Value};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, GenericClient, Transaction};

/// Why a context could not be set.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// A setting name PostgreSQL would not accept as a custom setting.
    #[error("setting `{0}` is not a custom setting name: use prefix.name, such as app.actor_email")]
    SettingName(String),
    /// The database refused a statement.
    #[error("setting the audit context: {0}")]
    Database(#[from] tokio_postgres::Error),
}

/// Who is acting and why, for the changes of one transaction.
///
/// `actor_id`, `actor_name`, `actor_type` and `reason` go to the trail's
/// columns of the same name; `extra` (request_id, business_process, ip,
/// user_agent, ...) to the change's `context`; `settings` are other
/// settings set the same way, such as the ones pgtrail.toml's `[context]`
/// maps (`app.actor_email`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditContext {
    pub actor_id: Option<String>,
    pub actor_name: Option<String>,
    pub actor_type: Option<String>,
    pub reason: Option<String>,
    pub extra: Map<String, Value>,
    pub settings: BTreeMap<String, String>,
}

impl AuditContext {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// The actor's id: any type that prints (integers, UUIDs, strings).
    pub fn actor_id(mut self, id: impl Display) -> Self {
        self.actor_id = Some(id.to_string());
        self
    }

    /// The actor's name or e-mail.
    pub fn actor_name(mut self, name: impl Into<String>) -> Self {
        self.actor_name = Some(name.into());
        self
    }

    /// The actor's type: user, moderator, system, migration, ...
    pub fn actor_type(mut self, kind: impl Into<String>) -> Self {
        self.actor_type = Some(kind.into());
        self
    }

    /// Why the changes are made.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Another field of the change's context (request_id, business_process, ip, ...).
    pub fn extra(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }

    /// Another setting to set transaction-locally, such as `app.actor_email`.
    pub fn setting(mut self, name: impl Into<String>, value: impl Display) -> Self {
        self.settings.insert(name.into(), value.to_string());
        self
    }

    /// The settings this context stands for, in order: pgtrail.actor_id,
    /// actor_name, actor_type, reason, pgtrail.context (the extra fields as
    /// one JSON object), then the other settings.
    pub fn settings(&self) -> Result<Vec<(String, String)>, ContextError> {
        let mut pairs = Vec::new();
        let fields = [
            ("pgtrail.actor_id", &self.actor_id),
            ("pgtrail.actor_name", &self.actor_name),
            ("pgtrail.actor_type", &self.actor_type),
            ("pgtrail.reason", &self.reason),
        ];
        for (name, value) in fields {
            if let Some(value) = value {
                pairs.push((name.to_string(), value.clone()));
            }
        }
        let extra: Map<String, Value> = self
            .extra
            .iter()
            .filter(|(_, value)| !value.is_null())
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        if !extra.is_empty() {
            pairs.push(("pgtrail.context".to_string(), Value::Object(extra).to_string()));
        }
        for (name, value) in &self.settings {
            if !is_setting_name(name) {
                return Err(ContextError::SettingName(name.clone()));
            }
            pairs.push((name.clone(), value.clone()));
        }
        Ok(pairs)
    }

    /// Sets this context in the transaction `client` is in (a
    /// [`Transaction`], or a client inside BEGIN ... COMMIT): one statement,
    /// every value a bind parameter, every setting transaction-local.
    pub async fn set(&self, client: &impl GenericClient) -> Result<(), ContextError> {
        let pairs = self.settings()?;
        if pairs.is_empty() {
            return Ok(());
        }
        let calls: Vec<String> = (0..pairs.len())
            .map(|i| format!("pg_catalog.set_config(${}, ${}, true)", 2 * i + 1, 2 * i + 2))
            .collect();
        let params: Vec<&(dyn ToSql + Sync)> = pairs
            .iter()
            .flat_map(|(name, value)| [name as &(dyn ToSql + Sync), value as &(dyn ToSql + Sync)])
            .collect();
        client
            .execute(&format!("SELECT {}", calls.join(", ")), &params)
            .await?;
        Ok(())
    }

    /// Begins a transaction with this context set. Commit it with
    /// [`Transaction::commit`]; dropped without a commit, it rolls back.
    pub async fn begin<'a>(&self, client: &'a mut Client) -> Result<Transaction<'a>, ContextError> {
        self.settings()?; // wrong input fails before BEGIN
        let tx = client.transaction().await?;
        self.set(&tx).await?;
        Ok(tx)
    }
}

/// A name PostgreSQL accepts as a custom setting: `prefix.name`, each part an identifier.
fn is_setting_name(name: &str) -> bool {
    let mut parts = name.split('.');
    let identifier = |part: &str| {
        let mut chars = part.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
    };
    name.contains('.') && parts.all(identifier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_follow_the_fields_then_extra_then_other_settings() {
        let context = AuditContext::new()
            .actor_id(9_007_199_254_740_993u64)
            .reason("r")
            .extra("request_id", "req-1")
            .extra("dropped", Value::Null)
            .setting("app.actor_email", "a@example.com");
        assert_eq!(
            context.settings().unwrap(),
            vec![
                ("pgtrail.actor_id".into(), "9007199254740993".into()),
                ("pgtrail.reason".into(), "r".into()),
                ("pgtrail.context".into(), r#"{"request_id":"req-1"}"#.into()),
                ("app.actor_email".into(), "a@example.com".into()),
            ]
        );
    }

    #[test]
    fn a_setting_name_needs_a_prefix_and_identifiers() {
        for good in ["app.actor_email", "a.b.c", "_x.y$1"] {
            assert!(is_setting_name(good), "{good}");
        }
        for bad in ["nodot", "app.", ".x", "app.actor-email", "1a.b", "app.x y"] {
            assert!(!is_setting_name(bad), "{bad}");
        }
        let error = AuditContext::new().setting("nodot", 1).settings().unwrap_err();
        assert!(error.to_string().contains("use prefix.name"), "{error}");
    }
}
