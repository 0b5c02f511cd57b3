//! What a bundle carries to prove each listed change, and how the leaf of a
//! change is computed again from it, without a database.
//!
//! A leaf is exactly what `pgtrail seal` appended (the layout is documented
//! in `pgtrail::integrity` and in `pgtrail_integrity::commit`): header
//! values (txid, ctx, table id, op letter, change time in microseconds,
//! `pk`, `old_pk` and `changed_fields` as PostgreSQL prints them, and the
//! digest of the transaction record), then one commitment per value, named
//! `new.<column>` or `old.<column>`. A bundle gives, per value, the value's
//! JSON text and its salt (never the seed the salts derive from), or only
//! the commitment of a value that was erased.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use pgtrail_integrity::merkle::verify_inclusion;
use pgtrail_integrity::{Hash, LeafBuilder, field_commitment};

use crate::EvidenceError;

/// The transaction record of a change, as it enters the leaf: each column
/// as PostgreSQL prints it (times in microseconds since 1970).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransactionRecord {
    pub txid: String,
    pub ctx: String,
    pub started_us: String,
    pub recorded_us: String,
    pub actor_id: Option<String>,
    pub actor_name: Option<String>,
    pub actor_type: Option<String>,
    pub reason: Option<String>,
    pub context: Option<String>,
    pub db_user: Option<String>,
    pub db_role: Option<String>,
    pub application_name: Option<String>,
    pub client_addr: Option<String>,
    pub client_port: Option<String>,
    pub backend_pid: Option<String>,
}

impl TransactionRecord {
    /// SHA-256 of `"pgtrail transaction v1" || 0x00` and every column, each
    /// as `u32(len) || text`, or `0xFFFFFFFF` for NULL.
    pub fn digest(&self) -> Hash {
        let mut hasher = Sha256::new();
        hasher.update(b"pgtrail transaction v1\0");
        let columns: [Option<&str>; 15] = [
            Some(&self.txid),
            Some(&self.ctx),
            Some(&self.started_us),
            Some(&self.recorded_us),
            self.actor_id.as_deref(),
            self.actor_name.as_deref(),
            self.actor_type.as_deref(),
            self.reason.as_deref(),
            self.context.as_deref(),
            self.db_user.as_deref(),
            self.db_role.as_deref(),
            self.application_name.as_deref(),
            self.client_addr.as_deref(),
            self.client_port.as_deref(),
            self.backend_pid.as_deref(),
        ];
        for column in columns {
            match column {
                Some(text) => {
                    hasher.update((text.len() as u32).to_be_bytes());
                    hasher.update(text.as_bytes());
                }
                None => hasher.update(u32::MAX.to_be_bytes()),
            }
        }
        hasher.finalize().into()
    }
}

/// One value of a change: its JSON text and salt, or, erased, only its
/// commitment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Field {
    /// `new.<column>` or `old.<column>`.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commitment: Option<String>,
}

/// Everything needed to recompute one change's leaf and to place it in the
/// log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeafEvidence {
    pub change_id: i64,
    /// The leaf's index in the log.
    pub position: u64,
    pub txid: i64,
    pub ctx: i16,
    pub table_id: i32,
    /// `I`, `U`, `D` or `T`.
    pub op: String,
    pub changed_at_us: i64,
    pub pk: Option<String>,
    pub old_pk: Option<String>,
    pub changed_fields: Option<String>,
    pub transaction: Option<TransactionRecord>,
    /// In leaf order: `new.*` then `old.*`, each by column name.
    pub fields: Vec<Field>,
    /// The RFC 6962 inclusion proof (hex hashes) against the checkpoint.
    pub proof: Vec<String>,
}

impl LeafEvidence {
    /// The leaf hash, computed from this evidence alone.
    pub fn leaf(&self) -> Result<Hash, EvidenceError> {
        let malformed = |reason: String| EvidenceError::Malformed {
            change_id: self.change_id,
            reason,
        };
        let mut builder = LeafBuilder::new();
        let mut writer = builder.begin(self.change_id);
        let numbers = [
            self.txid.to_string(),
            self.ctx.to_string(),
            self.table_id.to_string(),
        ];
        let digest = self.transaction.as_ref().map(TransactionRecord::digest);
        for value in [
            Some(numbers[0].as_bytes()),
            Some(numbers[1].as_bytes()),
            Some(numbers[2].as_bytes()),
            Some(self.op.as_bytes()),
            Some(self.changed_at_us.to_string().as_bytes()),
            self.pk.as_deref().map(str::as_bytes),
            self.old_pk.as_deref().map(str::as_bytes),
            self.changed_fields.as_deref().map(str::as_bytes),
            digest.as_ref().map(|d| d.as_slice()),
        ] {
            writer.header(value)?;
        }
        for field in &self.fields {
            let commitment = match (&field.value, &field.salt, &field.commitment) {
                (Some(value), Some(salt), None) => {
                    let salt: [u8; 16] = unhex(salt).and_then(|s| s.try_into().ok()).ok_or_else(|| {
                        malformed(format!("the salt of {} is not 16 hex bytes", field.name))
                    })?;
                    field_commitment(&salt, &field.name, Some(value.as_bytes()))?
                }
                (None, None, Some(commitment)) => {
                    unhex(commitment).and_then(|c| c.try_into().ok()).ok_or_else(|| {
                        malformed(format!("the commitment of {} is not 32 hex bytes", field.name))
                    })?
                }
                _ => {
                    return Err(malformed(format!(
                        "{} needs a value and its salt, or only a commitment",
                        field.name
                    )));
                }
            };
            writer.field(&field.name, &commitment)?;
        }
        Ok(writer.finish())
    }

    /// Whether the leaf is at `position` in the log of `size` with `root`.
    pub fn included(&self, leaf: &Hash, size: u64, root: &Hash) -> bool {
        let proof: Option<Vec<Hash>> = self
            .proof
            .iter()
            .map(|h| unhex(h).and_then(|h| h.try_into().ok()))
            .collect();
        proof.is_some_and(|proof| verify_inclusion(self.position, size, leaf, &proof, root))
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of lower- or upper-case hex, or None.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_goes_both_ways() {
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
        assert_eq!(unhex("00ab10"), Some(vec![0, 0xab, 0x10]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
    }

    /// A value changed in the evidence gives another leaf; an erased value
    /// (commitment only) gives the same leaf as the value with its salt.
    #[test]
    fn the_leaf_follows_every_value() {
        let salt = [7u8; 16];
        let commitment = field_commitment(&salt, "new.email", Some(br#""a@example.com""#)).unwrap();
        let mut evidence = LeafEvidence {
            change_id: 1,
            position: 0,
            txid: 10,
            ctx: 0,
            table_id: 1,
            op: "I".into(),
            changed_at_us: 1_700_000_000_000_000,
            pk: Some(r#"{"id": 1}"#.into()),
            old_pk: None,
            changed_fields: None,
            transaction: None,
            fields: vec![Field {
                name: "new.email".into(),
                value: Some(r#""a@example.com""#.into()),
                salt: Some(hex(&salt)),
                commitment: None,
            }],
            proof: Vec::new(),
        };
        let leaf = evidence.leaf().unwrap();
        assert!(evidence.included(&leaf, 1, &pgtrail_integrity::root_of(&[leaf])));
        let mut erased = evidence.clone();
        erased.fields[0] = Field {
            name: "new.email".into(),
            value: None,
            salt: None,
            commitment: Some(hex(&commitment)),
        };
        assert_eq!(erased.leaf().unwrap(), leaf);
        evidence.fields[0].value = Some(r#""b@example.com""#.into());
        assert_ne!(evidence.leaf().unwrap(), leaf);
    }
}
