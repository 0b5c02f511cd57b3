//! The access part of `pgtrail report --kind access`: a snapshot of roles,
//! memberships and grants on audited tables (`pgtrail.access_snapshot()`,
//! stored in `pgtrail.ddl_event`), compared with the previous one.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use tokio_postgres::GenericClient;

use crate::EvidenceError;
use crate::report::{AccessChange, AccessDiff};

/// Takes a new snapshot and lists what changed since the previous one.
pub async fn snapshot_and_diff(client: &impl GenericClient) -> Result<AccessDiff, EvidenceError> {
    let available: bool = client
        .query_one(
            "SELECT to_regprocedure('pgtrail.access_snapshot()') IS NOT NULL",
            &[],
        )
        .await
        .map_err(EvidenceError::database("looking for pgtrail.access_snapshot"))?
        .get(0);
    if !available {
        return Err(EvidenceError::Refused(
            "this pgtrail has no access snapshots yet\n  help: run `pgtrail apply` to upgrade".to_string(),
        ));
    }
    let previous = client
        .query_opt(
            "SELECT detail, to_jsonb(at)#>>'{}' FROM pgtrail.ddl_event WHERE action = 'access_snapshot'
             ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .map_err(EvidenceError::database("reading the previous access snapshot"))?;
    let current: Value = client
        .query_one("SELECT pgtrail.access_snapshot()", &[])
        .await
        .map_err(EvidenceError::database(
            "taking an access snapshot (needs pgtrail's owner role or a superuser)",
        ))?
        .get(0);
    Ok(match previous {
        None => AccessDiff {
            since_snapshot: None,
            changes: Vec::new(),
        },
        Some(row) => AccessDiff {
            since_snapshot: row.get(1),
            changes: diff(&row.get::<_, Value>(0), &current),
        },
    })
}

/// What changed from snapshot `old` to `new`.
pub fn diff(old: &Value, new: &Value) -> Vec<AccessChange> {
    let roles = |v: &Value| -> BTreeMap<String, String> {
        v["roles"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let set = |v: &Value, key: &str| -> BTreeSet<String> {
        v[key]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let change = |change: &str, detail: String| AccessChange {
        change: change.to_string(),
        detail,
    };
    let attributes = |a: &str| {
        if a.is_empty() {
            "(no attributes)".to_string()
        } else {
            a.to_string()
        }
    };
    let mut changes = Vec::new();
    let (old_roles, new_roles) = (roles(old), roles(new));
    for (name, attrs) in &new_roles {
        match old_roles.get(name) {
            None => changes.push(change("role added", format!("{name}: {}", attributes(attrs)))),
            Some(before) if before != attrs => changes.push(change(
                "role changed",
                format!("{name}: {} → {}", attributes(before), attributes(attrs)),
            )),
            Some(_) => {}
        }
    }
    for name in old_roles.keys().filter(|n| !new_roles.contains_key(*n)) {
        changes.push(change("role removed", name.clone()));
    }
    for (key, what) in [("memberships", "membership"), ("grants", "grant")] {
        let (before, after) = (set(old, key), set(new, key));
        for item in after.difference(&before) {
            changes.push(change(&format!("{what} added"), item.clone()));
        }
        for item in before.difference(&after) {
            changes.push(change(&format!("{what} removed"), item.clone()));
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_kind_of_access_change_is_named() {
        let old = json!({"roles": {"app": "login", "old": ""}, "memberships": ["a is a member of b"],
                         "grants": ["SELECT on public.t to app"]});
        let new = json!({"roles": {"app": "login createrole", "auditor": "login"},
                         "memberships": ["auditor is a member of app"], "grants": ["SELECT on public.t to app", "DELETE on public.t to app"]});
        let found: Vec<(String, String)> = diff(&old, &new)
            .into_iter()
            .map(|c| (c.change, c.detail))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "role changed".to_string(),
                    "app: login → login createrole".to_string()
                ),
                ("role added".to_string(), "auditor: login".to_string()),
                ("role removed".to_string(), "old".to_string()),
                (
                    "membership added".to_string(),
                    "auditor is a member of app".to_string()
                ),
                ("membership removed".to_string(), "a is a member of b".to_string()),
                ("grant added".to_string(), "DELETE on public.t to app".to_string()),
            ]
        );
    }
}
