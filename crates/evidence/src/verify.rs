//! `pgtrail verify-bundle`: checks an evidence bundle offline, with only
//! the public key of the seal key.
//!
//! It checks that the manifest is signed by the key and that every file has
//! the SHA-256 the manifest lists (and that no file was added or removed);
//! that the checkpoint is signed by the key; that the leaf of every change
//! in `proofs.json` computes again from its evidence and is in the log of
//! the checkpoint (RFC 6962 inclusion proof); and that the changes of
//! `report.json` are exactly the proved ones, each saying what its evidence
//! says (operation, key, time, values, actor, database user, migration).
//! Each finding is named; nothing stops at the first.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use pgtrail_integrity::{SignedNote, VerifierKey};

use crate::EvidenceError;
use crate::bundle::{FILES, MANIFEST_HEADER, sha256_hex};
use crate::collect::Proofs;
use crate::evidence::{LeafEvidence, hex};
use crate::report::{Change, Report, erased_marker};

/// What verify-bundle found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BundleCheck {
    pub kind: Option<String>,
    /// Changes whose leaf and inclusion proof verified.
    pub changes_proved: usize,
    pub changes_listed: usize,
    pub tree_size: Option<u64>,
    pub root: Option<String>,
    pub key: String,
    /// Every problem, one sentence each; empty when the bundle is intact.
    pub problems: Vec<String>,
}

impl BundleCheck {
    pub fn intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the bundle in `dir` against `verifier`. Errors only when `dir`
/// cannot be read at all; everything else is a problem of the result.
pub fn verify_bundle(dir: &Path, verifier: &VerifierKey) -> Result<BundleCheck, EvidenceError> {
    if !dir.is_dir() {
        return Err(EvidenceError::Usage(format!(
            "{} is not a directory\n  help: name the directory `pgtrail report --bundle DIR` wrote",
            dir.display()
        )));
    }
    let mut check = BundleCheck {
        key: format!("{}+{:08x}", verifier.name(), verifier.key_id()),
        ..BundleCheck::default()
    };
    let problems = &mut check.problems;
    let read = |name: &str| std::fs::read(dir.join(name));

    // The manifest and the files it lists.
    let manifest = match read("manifest").map(String::from_utf8) {
        Ok(Ok(text)) => text,
        _ => {
            problems.push("the bundle has no readable manifest".to_string());
            return Ok(check);
        }
    };
    let note = match SignedNote::parse(&manifest) {
        Ok(note) => note,
        Err(e) => {
            problems.push(format!("the manifest is not a signed note: {e}"));
            return Ok(check);
        }
    };
    if note.verify(verifier).is_err() {
        problems.push(format!(
            "the manifest is not signed by the key {}: the bundle was changed, or made with another key",
            check.key
        ));
    }
    let mut lines = note.text().lines();
    if lines.next() != Some(MANIFEST_HEADER) {
        problems.push(format!("the manifest does not start with `{MANIFEST_HEADER}`"));
    }
    check.kind = lines
        .next()
        .and_then(|l| l.strip_prefix("kind "))
        .map(str::to_string);
    let listed: BTreeMap<&str, &str> = lines
        .filter_map(|line| line.split_once("  ").map(|(hash, name)| (name, hash)))
        .collect();
    for name in FILES {
        match (listed.get(name), read(name)) {
            (None, _) => problems.push(format!("{name} is not listed in the manifest")),
            (Some(_), Err(_)) => problems.push(format!("{name} is missing from the bundle")),
            (Some(hash), Ok(bytes)) if sha256_hex(&bytes) != *hash => problems.push(format!(
                "{name} was changed after the bundle was made (its SHA-256 differs from the manifest's)"
            )),
            _ => {}
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name != "manifest" && !FILES.contains(&name.as_str()) {
                problems.push(format!(
                    "{name} is not part of the bundle (added after it was made)"
                ));
            }
        }
    }

    // The checkpoint and the proofs.
    let checkpoint = match read("checkpoint").map(String::from_utf8) {
        Ok(Ok(text)) => match pgtrail_integrity::open(&text, verifier) {
            Ok(checkpoint) => Some(checkpoint),
            Err(e) => {
                problems.push(format!(
                    "the checkpoint does not verify with the key {}: {e}",
                    check.key
                ));
                None
            }
        },
        _ => None,
    };
    let proofs: Option<Proofs> = read("proofs.json")
        .ok()
        .and_then(|b| match serde_json::from_slice(&b) {
            Ok(p) => Some(p),
            Err(e) => {
                problems.push(format!("proofs.json cannot be read: {e}"));
                None
            }
        });
    let report: Option<Report> = read("report.json")
        .ok()
        .and_then(|b| match serde_json::from_slice(&b) {
            Ok(r) => Some(r),
            Err(e) => {
                problems.push(format!("report.json cannot be read: {e}"));
                None
            }
        });
    let (Some(checkpoint), Some(proofs), Some(report)) = (checkpoint, proofs, report) else {
        return Ok(check);
    };
    check.tree_size = Some(checkpoint.size);
    check.root = Some(hex(&checkpoint.root));
    if proofs.tree_size != checkpoint.size || proofs.root != hex(&checkpoint.root) {
        problems.push("proofs.json is for another checkpoint than the bundle's".to_string());
    }
    let mut proved: HashMap<i64, &LeafEvidence> = HashMap::new();
    for leaf in &proofs.leaves {
        match leaf.leaf() {
            Ok(hash) if leaf.included(&hash, checkpoint.size, &checkpoint.root) => {
                proved.insert(leaf.change_id, leaf);
            }
            Ok(_) => problems.push(format!(
                "change {}: its evidence is not in the signed log (a value, time, key or actor differs from what was sealed, or its proof was altered)",
                leaf.change_id
            )),
            Err(e) => problems.push(format!("change {}: {e}", leaf.change_id)),
        }
    }
    check.changes_proved = proved.len();
    check.changes_listed = report.changes.len();

    // The report says what the proofs prove, no more and no less.
    let listed_ids: std::collections::HashSet<i64> = report.changes.iter().map(|c| c.id).collect();
    for leaf in &proofs.leaves {
        if !listed_ids.contains(&leaf.change_id) {
            problems.push(format!(
                "change {} is proved but missing from report.json (removed from the report)",
                leaf.change_id
            ));
        }
    }
    let all_evidence: HashMap<i64, &LeafEvidence> = proofs.leaves.iter().map(|l| (l.change_id, l)).collect();
    for change in &report.changes {
        match all_evidence.get(&change.id) {
            None => problems.push(format!(
                "change {} is listed in report.json but has no proof (added to the report, or its proof was removed)",
                change.id
            )),
            Some(leaf) => {
                for difference in differences(change, leaf, &proofs.tables) {
                    problems.push(format!("change {}: report.json says {difference}", change.id));
                }
            }
        }
    }
    Ok(check)
}

/// Where a listed change says something else than its evidence.
fn differences(change: &Change, leaf: &LeafEvidence, tables: &BTreeMap<i32, String>) -> Vec<String> {
    let mut found = Vec::new();
    let op = match change.op.as_str() {
        "INSERT" => "I",
        "UPDATE" => "U",
        "DELETE" => "D",
        "TRUNCATE" => "T",
        _ => "?",
    };
    if op != leaf.op {
        found.push(format!("{}, the sealed operation is {}", change.op, leaf.op));
    }
    if change.txid != leaf.txid {
        found.push(format!("transaction {}, sealed {}", change.txid, leaf.txid));
    }
    let micros = chrono::DateTime::parse_from_rfc3339(&change.changed_at)
        .ok()
        .map(|t| t.timestamp_micros());
    if micros != Some(leaf.changed_at_us) {
        found.push(format!("time {}, not the sealed time", change.changed_at));
    }
    if tables.get(&leaf.table_id) != Some(&change.table) {
        found.push(format!("table {}, not the sealed table", change.table));
    }
    let sealed_pk: Option<Value> = leaf.pk.as_deref().and_then(|pk| serde_json::from_str(pk).ok());
    if change.pk.as_ref().filter(|v| !v.is_null()) != sealed_pk.as_ref() {
        found.push(format!(
            "key {}, not the sealed key",
            change.pk.as_ref().map_or("NULL".to_string(), Value::to_string)
        ));
    }
    let mut named = 0;
    for (side, values) in [("new", &change.new_values), ("old", &change.old_values)] {
        let Some(Value::Object(values)) = values else {
            continue;
        };
        for (column, value) in values {
            named += 1;
            let name = format!("{side}.{column}");
            let field = leaf.fields.iter().find(|f| f.name == name);
            let same = match (field, erased_marker(value)) {
                (Some(f), Some(_)) => f.value.is_none() && f.commitment.is_some(),
                (Some(f), None) => f
                    .value
                    .as_deref()
                    .and_then(|v| serde_json::from_str::<Value>(v).ok())
                    .is_some_and(|v| &v == value),
                (None, _) => false,
            };
            if !same {
                found.push(format!("{name} = {value}, not the sealed value"));
            }
        }
    }
    if named != leaf.fields.len() {
        found.push(format!(
            "{named} values, the sealed change has {}",
            leaf.fields.len()
        ));
    }
    let record = leaf.transaction.as_ref();
    let sealed_context: Option<Value> = record
        .and_then(|t| t.context.as_deref())
        .and_then(|c| serde_json::from_str(c).ok());
    let sealed_migration = sealed_context
        .as_ref()
        .and_then(|c| c.get("migration"))
        .and_then(Value::as_str)
        .map(str::to_string);
    for (what, said, sealed) in [
        (
            "actor id",
            &change.actor_id,
            record.and_then(|t| t.actor_id.clone()),
        ),
        (
            "actor name",
            &change.actor_name,
            record.and_then(|t| t.actor_name.clone()),
        ),
        (
            "actor type",
            &change.actor_type,
            record.and_then(|t| t.actor_type.clone()),
        ),
        (
            "database user",
            &change.db_user,
            record.and_then(|t| t.db_user.clone()),
        ),
        ("reason", &change.reason, record.and_then(|t| t.reason.clone())),
        ("migration", &change.migration, sealed_migration),
    ] {
        if *said != sealed {
            found.push(format!(
                "{what} {}, sealed {}",
                said.as_deref().unwrap_or("(none)"),
                sealed.as_deref().unwrap_or("(none)")
            ));
        }
    }
    found
}
