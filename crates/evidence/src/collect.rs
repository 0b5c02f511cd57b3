//! Reads from the database what a bundle needs to prove changes: the latest
//! signed checkpoint, and for each change its leaf evidence and inclusion
//! proof ([`crate::evidence`]).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio_postgres::GenericClient;

use pgtrail_integrity::merkle::inclusion_proof;
use pgtrail_integrity::{Checkpoint, Hash, NoteSignature, field_salt};

use crate::EvidenceError;
use crate::evidence::{Field, LeafEvidence, TransactionRecord, hex};

/// The proofs of a bundle (`proofs.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proofs {
    /// The seal whose checkpoint the proofs are against.
    pub seal_id: i64,
    pub tree_size: u64,
    pub root: String,
    /// Audited tables by id (the leaf names a table by its id).
    pub tables: BTreeMap<i32, String>,
    pub leaves: Vec<LeafEvidence>,
}

/// The signed checkpoint of the latest seal, and the proofs of `ids`
/// against it. Refused when a change is not sealed yet, or when the trail
/// no longer gives the leaf that was sealed.
pub async fn collect(client: &impl GenericClient, ids: &[i64]) -> Result<(String, Proofs), EvidenceError> {
    let Some(seal) = client
        .query_opt(
            "SELECT id, tree_size, root, origin, extensions, key_name, key_id, signature
             FROM pgtrail.seal ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .map_err(EvidenceError::database("reading the latest checkpoint"))?
    else {
        return Err(EvidenceError::Refused(
            "nothing is sealed yet: a bundle proves changes against a signed checkpoint\n  help: `pgtrail seal --key FILE` first"
                .to_string(),
        ));
    };
    let seal_id: i64 = seal.get(0);
    let size = u64::try_from(seal.get::<_, i64>(1)).unwrap_or(0);
    let root: Hash = seal
        .get::<_, &[u8]>(2)
        .try_into()
        .map_err(|_| EvidenceError::Refused(format!("seal {seal_id} has a root that is not 32 bytes")))?;
    let checkpoint = Checkpoint {
        origin: seal.get(3),
        size,
        root,
        extensions: seal.get(4),
    };
    let signature = NoteSignature {
        key_name: seal.get(5),
        key_id: u32::try_from(seal.get::<_, i64>(6))
            .map_err(|_| EvidenceError::Refused(format!("seal {seal_id} has a key id out of range")))?,
        signature: seal.get(7),
    };
    let note = checkpoint.note_from_parts(std::slice::from_ref(&signature))?;

    // Every leaf of the log up to that checkpoint, and where the wanted ones are.
    let wanted: std::collections::HashSet<i64> = ids.iter().copied().collect();
    let chunks = client
        .query(
            "SELECT first_position, change_ids, leaf_hashes, seeds FROM pgtrail.seal_leaves
             WHERE seal_id <= $1 ORDER BY first_position",
            &[&seal_id],
        )
        .await
        .map_err(EvidenceError::database("reading the sealed leaves"))?;
    let mut leaves: Vec<Hash> = Vec::with_capacity(size as usize);
    let mut found: HashMap<i64, (u64, [u8; 16])> = HashMap::new();
    for chunk in &chunks {
        let change_ids: Vec<i64> = chunk.get(1);
        let hashes: &[u8] = chunk.get(2);
        let seeds: &[u8] = chunk.get(3);
        for (i, id) in change_ids.iter().enumerate() {
            let hash: Hash = hashes
                .get(i * 32..i * 32 + 32)
                .and_then(|h| h.try_into().ok())
                .ok_or_else(|| {
                    EvidenceError::Refused(format!("the sealed leaf of change {id} is truncated"))
                })?;
            if wanted.contains(id) {
                let seed: [u8; 16] = seeds
                    .get(i * 16..i * 16 + 16)
                    .and_then(|s| s.try_into().ok())
                    .ok_or_else(|| EvidenceError::Refused(format!("the seed of change {id} is truncated")))?;
                found.insert(*id, (leaves.len() as u64, seed));
            }
            leaves.push(hash);
        }
    }
    let unsealed = ids.iter().filter(|id| !found.contains_key(id)).count();
    if unsealed > 0 {
        return Err(EvidenceError::Refused(format!(
            "{unsealed} of the {} changes listed are not sealed yet, so the bundle could not prove them\n  \
             help: `pgtrail seal --key FILE`, then make the bundle again",
            ids.len()
        )));
    }

    let rows = client
        .query(
            "SELECT c.id, c.txid, c.ctx, c.table_id, c.op::text,
                    (extract(epoch FROM c.changed_at) * 1000000)::bigint,
                    c.pk::text, c.old_pk::text, c.changed_fields::text, c.old_values::text, c.new_values::text
             FROM pgtrail.change AS c WHERE c.id = ANY ($1) ORDER BY c.id",
            &[&ids],
        )
        .await
        .map_err(EvidenceError::database("reading the changes to prove"))?;
    let transactions = transactions(client, &rows).await?;
    let erased = erased_values(client, ids).await?;
    let mut proofs = Proofs {
        seal_id,
        tree_size: size,
        root: hex(&root),
        tables: tables(client).await?,
        leaves: Vec::with_capacity(rows.len()),
    };
    for row in &rows {
        let id: i64 = row.get(0);
        let (position, seed) = found[&id];
        let txid: i64 = row.get(1);
        let ctx: i16 = row.get(2);
        let mut evidence = LeafEvidence {
            change_id: id,
            position,
            txid,
            ctx,
            table_id: row.get(3),
            op: row.get(4),
            changed_at_us: row.get(5),
            pk: row.get(6),
            old_pk: row.get(7),
            changed_fields: row.get(8),
            transaction: transactions.get(&(txid, ctx)).cloned(),
            fields: Vec::new(),
            proof: Vec::new(),
        };
        let destroyed = seed == [0; 16];
        for (side, column) in [("new", 10), ("old", 9)] {
            let text: Option<&str> = row.get(column);
            let Some(text) = text else { continue };
            let members: BTreeMap<String, &RawValue> =
                serde_json::from_str(text).map_err(|e| EvidenceError::Malformed {
                    change_id: id,
                    reason: format!("{side}_values is not a JSON object: {e}"),
                })?;
            for (name, value) in members {
                let name = format!("{side}.{name}");
                let field = match (destroyed, erased.get(&(id, name.clone()))) {
                    (false, _) => Field {
                        value: Some(value.get().to_string()),
                        salt: Some(hex(&field_salt(&seed, &name))),
                        commitment: None,
                        name,
                    },
                    (true, Some(Kept::Salt(salt))) => Field {
                        value: Some(value.get().to_string()),
                        salt: Some(hex(salt)),
                        commitment: None,
                        name,
                    },
                    (true, Some(Kept::Commitment(commitment))) => Field {
                        value: None,
                        salt: None,
                        commitment: Some(hex(commitment)),
                        name,
                    },
                    (true, None) => {
                        return Err(EvidenceError::Malformed {
                            change_id: id,
                            reason: format!("its seed was destroyed but nothing was kept for {name}"),
                        });
                    }
                };
                evidence.fields.push(field);
            }
        }
        let leaf = evidence.leaf()?;
        if leaf != leaves[position as usize] {
            return Err(EvidenceError::Refused(format!(
                "change {id} no longer gives the leaf that was sealed: the trail was changed after it was sealed\n  \
                 help: `pgtrail verify --public-key FILE` names what differs"
            )));
        }
        evidence.proof = inclusion_proof(&leaves, position)?
            .iter()
            .map(|h| hex(h))
            .collect();
        proofs.leaves.push(evidence);
    }
    Ok((note, proofs))
}

/// The transaction records of the changes' (txid, ctx).
async fn transactions(
    client: &impl GenericClient,
    changes: &[tokio_postgres::Row],
) -> Result<HashMap<(i64, i16), TransactionRecord>, EvidenceError> {
    let txids: Vec<i64> = changes.iter().map(|r| r.get(1)).collect();
    let ctxs: Vec<i16> = changes.iter().map(|r| r.get(2)).collect();
    let rows = client
        .query(
            "SELECT t.txid, t.ctx, t.txid::text, t.ctx::text,
                    (extract(epoch FROM t.started_at) * 1000000)::bigint::text,
                    (extract(epoch FROM t.recorded_at) * 1000000)::bigint::text,
                    t.actor_id, t.actor_name, t.actor_type, t.reason, t.context::text,
                    t.db_user, t.db_role, t.application_name, t.client_addr::text,
                    t.client_port::text, t.backend_pid::text
             FROM pgtrail.transaction AS t
             WHERE (t.txid, t.ctx) IN (SELECT * FROM unnest($1::bigint[], $2::smallint[]))",
            &[&txids, &ctxs],
        )
        .await
        .map_err(EvidenceError::database("reading transaction records"))?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                (r.get(0), r.get(1)),
                TransactionRecord {
                    txid: r.get(2),
                    ctx: r.get(3),
                    started_us: r.get(4),
                    recorded_us: r.get(5),
                    actor_id: r.get(6),
                    actor_name: r.get(7),
                    actor_type: r.get(8),
                    reason: r.get(9),
                    context: r.get(10),
                    db_user: r.get(11),
                    db_role: r.get(12),
                    application_name: r.get(13),
                    client_addr: r.get(14),
                    client_port: r.get(15),
                    backend_pid: r.get(16),
                },
            )
        })
        .collect())
}

/// What an erasure kept of a sealed change's value.
enum Kept {
    Salt(Vec<u8>),
    Commitment(Vec<u8>),
}

async fn erased_values(
    client: &impl GenericClient,
    ids: &[i64],
) -> Result<HashMap<(i64, String), Kept>, EvidenceError> {
    let rows = client
        .query(
            "SELECT change_id, field, salt, commitment FROM pgtrail.erased_value WHERE change_id = ANY ($1)",
            &[&ids],
        )
        .await
        .map_err(EvidenceError::database("reading what erasures kept"))?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let key = (r.get::<_, i64>(0), r.get::<_, String>(1));
            match (r.get::<_, Option<Vec<u8>>>(2), r.get::<_, Option<Vec<u8>>>(3)) {
                (Some(salt), _) => Some((key, Kept::Salt(salt))),
                (None, Some(commitment)) => Some((key, Kept::Commitment(commitment))),
                (None, None) => None,
            }
        })
        .collect())
}

/// Every audited table by id, as `schema.table`.
async fn tables(client: &impl GenericClient) -> Result<BTreeMap<i32, String>, EvidenceError> {
    let rows = client
        .query(
            "SELECT id, format('%s.%s', table_schema, table_name) FROM pgtrail.audited_table",
            &[],
        )
        .await
        .map_err(EvidenceError::database("listing the audited tables"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
