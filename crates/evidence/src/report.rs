//! The reports' data: what each kind lists, as it is serialized to JSON
//! (`pgtrail report --format json`, `report.json` in a bundle).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The kinds of compliance report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Every change in the period, counts, and how complete the trail is.
    Population,
    /// Changes and DDL by roles outside the application and migration
    /// roles, without an actor, or during a capture gap.
    Privileged,
    /// Every DDL on audited tables, matched to a migration or not.
    Schema,
    /// Every change to one data subject's rows, and its erasures.
    Subject,
    /// GRANT and REVOKE in the period; roles, memberships and grants
    /// changed since the previous access report.
    Access,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Population => "population",
            Kind::Privileged => "privileged",
            Kind::Schema => "schema",
            Kind::Subject => "subject",
            Kind::Access => "access",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Kind::Population => "Population of changes",
            Kind::Privileged => "Privileged and out-of-process changes",
            Kind::Schema => "Schema changes",
            Kind::Subject => "Data subject",
            Kind::Access => "Access changes",
        }
    }
}

/// A period: from `since` (inclusive) to `until` (exclusive); either end
/// open. Moments as RFC 3339 text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Period {
    pub since: Option<String>,
    pub until: Option<String>,
}

/// One recorded row change, as listed by a report (and proved in a bundle).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub id: i64,
    pub txid: i64,
    pub changed_at: String,
    /// `schema.table`.
    pub table: String,
    pub op: String,
    pub pk: Option<Value>,
    pub old_values: Option<Value>,
    pub new_values: Option<Value>,
    pub actor_id: Option<String>,
    pub actor_name: Option<String>,
    pub actor_type: Option<String>,
    pub db_user: Option<String>,
    pub migration: Option<String>,
    pub reason: Option<String>,
    /// Why a privileged report lists it (empty elsewhere).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<String>,
}

impl Change {
    /// Who, for people: the actor's name or id, else the database user.
    pub fn who(&self) -> String {
        match (&self.actor_name, &self.actor_id) {
            (Some(name), _) => name.clone(),
            (None, Some(id)) => id.clone(),
            (None, None) => format!("({})", self.db_user.as_deref().unwrap_or("nobody")),
        }
    }
}

/// One DDL command on an audited table (from the DDL watch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ddl {
    pub id: i64,
    pub at: String,
    pub db_user: String,
    pub command_tag: String,
    pub object: String,
    pub table: Option<String>,
    pub command: Option<String>,
    /// Capture after it: `on`, `off` or `dropped`.
    pub capture: Option<String>,
    /// The migration named in the transaction's context, if any.
    pub migration: Option<String>,
    pub actor: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<String>,
}

/// A period in which capture was off for a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    pub table: String,
    pub off_from: String,
    pub off_until: Option<String>,
    pub turned_off_by: Option<String>,
    pub turned_off_with: Option<String>,
}

/// A seal checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seal {
    pub id: i64,
    pub sealed_at: String,
    pub tree_size: i64,
    pub root: String,
    /// Changes of the report sealed by this seal.
    pub changes: i64,
}

/// A live row that changed without a trace (from `pgtrail.reconcile`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unrecorded {
    pub table: String,
    pub pk: Value,
    pub problem: String,
}

/// How complete and how provable the population is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completeness {
    /// The seals whose checkpoints cover the listed changes.
    pub seals: Vec<Seal>,
    /// The latest checkpoint: a bundle proves every listed change against it.
    pub latest_seal: Option<Seal>,
    /// Listed changes no seal covers yet.
    pub unsealed: i64,
    /// Capture gaps that overlap the period.
    pub gaps: Vec<Gap>,
    /// Tables reconciled, and the live rows that changed without a trace.
    pub reconciled_tables: i64,
    pub unrecorded: Vec<Unrecorded>,
    /// The oldest change the trail still holds (older ones were archived
    /// and dropped by retention, or never recorded).
    pub trail_starts_at: Option<String>,
}

/// Counts of the listed changes by one dimension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Count {
    pub key: String,
    pub changes: i64,
}

/// One erasure of a data subject's values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Erasure {
    pub id: i64,
    pub erased_at: String,
    pub db_user: String,
    pub table: String,
    pub pk: Value,
    pub columns: Option<Vec<String>>,
    pub reason: String,
    pub change_ids: Vec<i64>,
}

/// A change of who may do what, found by comparing two access snapshots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessChange {
    /// `role added`, `role removed`, `role changed`, `membership added`,
    /// `membership removed`, `grant added`, `grant removed`.
    pub change: String,
    pub detail: String,
}

/// Access changes between the previous access snapshot and this report's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessDiff {
    /// When the previous snapshot was taken (None: this is the first; the
    /// changes are then empty).
    pub since_snapshot: Option<String>,
    pub changes: Vec<AccessChange>,
}

/// A compliance report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub kind: Kind,
    pub generated_at: String,
    pub period: Period,
    /// The database the report was made from.
    pub database: String,
    /// The subject (subject reports): what was looked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Application and migration roles the report judged by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<crate::read::Roles>,
    /// The changes listed (every one is proved in a bundle).
    pub changes: Vec<Change>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ddl: Vec<Ddl>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub erasures: Vec<Erasure>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_table: Vec<Count>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_op: Vec<Count>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_actor_type: Vec<Count>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completeness: Option<Completeness>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessDiff>,
}

/// Whether a JSON value is an erasure marker (`{"pgtrail_erased": N}`).
pub fn erased_marker(value: &Value) -> Option<i64> {
    value.as_object()?.get("pgtrail_erased")?.as_i64()
}

/// A value for people: erased values as `‹erased #N›`, strings bare,
/// anything else as JSON.
pub fn value_text(value: &Value) -> String {
    if let Some(id) = erased_marker(value) {
        return format!("‹erased #{id}›");
    }
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "NULL".to_string(),
        other => other.to_string(),
    }
}

/// A key for people: `42` for one column, `a=1, b=2` for more.
pub fn key_text(pk: Option<&Value>) -> String {
    match pk {
        None | Some(Value::Null) => String::new(),
        Some(Value::Object(map)) if map.len() == 1 => map.values().next().map(value_text).unwrap_or_default(),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", value_text(v)))
            .collect::<Vec<_>>()
            .join(", "),
        Some(other) => other.to_string(),
    }
}

/// The values of a change for people: `col=value` pairs, `old → new` for
/// an update.
pub fn values_text(change: &Change) -> String {
    let empty = serde_json::Map::new();
    let old = change
        .old_values
        .as_ref()
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let new = change
        .new_values
        .as_ref()
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut columns: Vec<&String> = old.keys().chain(new.keys()).collect();
    columns.sort();
    columns.dedup();
    columns
        .into_iter()
        .map(|c| match (old.get(c), new.get(c)) {
            (Some(o), Some(n)) => format!("{c}: {} → {}", value_text(o), value_text(n)),
            (Some(o), None) => format!("{c}: {}", value_text(o)),
            (None, Some(n)) => format!("{c}: {}", value_text(n)),
            (None, None) => String::new(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}
