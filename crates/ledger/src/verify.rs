//! `pgtrail verify`: recomputes the log from the trail, seal by seal, and
//! names every change whose content, presence or place differs from what
//! was sealed; checks every checkpoint's signature, and the consistency of
//! a checkpoint kept elsewhere with the log as it is now.
//!
//! All of it runs in one REPEATABLE READ, read-only transaction, so the
//! trail is read as of one moment while writers go on.

use std::collections::HashMap;

use pgtrail_integrity::{Checkpoint, Hash, NoteSignature, Seed, Tree, VerifierKey};
use serde::Serialize;
use tokio_postgres::{Client, Transaction};

use super::leaves::{
    ChangeRow, DESTROYED_SEED, ErasedValue, Leaves, Salts, SealRange, SealSnapshot, transaction_digest_of,
    transaction_digests, visible_in_seal,
};
use super::{IntegrityError, hash_of, require_installed};
use pgtrail_archive::{ArchiveRecord, ArchiveSet};

/// Rows fetched at a time from the trail.
const FETCH: i32 = 10_000;

/// Rows hashed between two chances for the connection to read.
const YIELD_EVERY: usize = 200;

/// What to verify against.
#[derive(Debug, Default)]
pub struct VerifyOptions {
    /// The key that must have signed every checkpoint. Without it, verify
    /// uses the public key recorded in the database, which a superuser
    /// could replace along with everything else (the report says so).
    pub public_key: Option<VerifierKey>,
    /// A signed checkpoint kept outside the database (C2SP note text).
    pub checkpoint: Option<String>,
    /// The directory `pgtrail archive` wrote to: archived changes are then
    /// checked from its files. Without it they are counted as archived and
    /// not checked.
    pub archive_dir: Option<std::path::PathBuf>,
}

/// Something verify found wrong. Every variant names what it affects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// The change's content (a value, its actor, time, key, or its
    /// transaction record) differs from what was sealed.
    Edited { change_id: i64, seal: i64 },
    /// A sealed change is gone from the trail.
    Deleted { change_id: i64, seal: i64 },
    /// A change of a transaction that a seal covers, but not in that seal:
    /// written into the trail after the seal (forged), or moved there.
    NotSealed { change_id: i64, seal: i64 },
    /// The stored list of a seal's changes is out of order.
    OrderRewritten { seal: i64 },
    /// A seal's leaves do not give its signed root although each change
    /// matches its stored leaf: the stored leaves were rewritten.
    LeavesRewritten {
        seal: i64,
        first_position: u64,
        last_position: u64,
    },
    /// A seal holds another number of leaves than its checkpoint says.
    SizeMismatch { seal: i64, signed: u64, found: u64 },
    /// A checkpoint whose signature does not verify with the key.
    BadSignature { seal: i64, reason: String },
    /// Seal numbers are not consecutive: this one is missing.
    SealMissing { seal: i64 },
    /// The checkpoint kept outside covers more changes than the log has.
    Truncated { checkpoint_size: u64, log_size: u64 },
    /// The log's root at the size of the checkpoint kept outside differs
    /// from that checkpoint's: the log was rewritten since.
    Inconsistent { checkpoint_size: u64 },
    /// The checkpoint kept outside is not this trail's, or not valid.
    CheckpointRejected { reason: String },
    /// An archived change whose row in the archive file differs from what
    /// was sealed.
    ArchivedEdited { change_id: i64, seal: i64, file: String },
    /// A sealed change of an archived range missing from its archive file.
    ArchivedMissing { change_id: i64, seal: i64, file: String },
    /// A row of an archive file that no seal covers.
    ArchivedNotSealed { change_id: i64, file: String },
    /// An archive file is missing, changed, unreadable or out of order.
    ArchiveFile { file: String, problem: String },
    /// Capture was off for an audited table (a capture trigger disabled or
    /// dropped, the table dropped): changes in that period went unrecorded.
    CaptureGap {
        table: String,
        from: String,
        until: Option<String>,
        by: String,
        command: Option<String>,
    },
}

impl Problem {
    /// One line for people.
    pub fn message(&self) -> String {
        match self {
            Problem::Edited { change_id, seal } => {
                format!("change {change_id} was edited after it was sealed (seal {seal})")
            }
            Problem::Deleted { change_id, seal } => {
                format!("change {change_id} was deleted after it was sealed (seal {seal})")
            }
            Problem::NotSealed { change_id, seal } => format!(
                "change {change_id} was inserted after seal {seal} covered its transaction (forged, or its txid was edited)"
            ),
            Problem::OrderRewritten { seal } => {
                format!("the order of the changes of seal {seal} was rewritten")
            }
            Problem::LeavesRewritten {
                seal,
                first_position,
                last_position,
            } => format!(
                "the stored leaves of seal {seal} (log positions {first_position}..={last_position}) no longer give its signed root"
            ),
            Problem::SizeMismatch { seal, signed, found } => {
                format!("seal {seal} signed a log of {signed} changes; the database holds {found}")
            }
            Problem::BadSignature { seal, reason } => {
                format!("the checkpoint of seal {seal} is not validly signed: {reason}")
            }
            Problem::SealMissing { seal } => format!("seal {seal} is missing"),
            Problem::ArchivedEdited {
                change_id,
                seal,
                file,
            } => {
                format!("change {change_id} was edited in archive file {file} (seal {seal})")
            }
            Problem::ArchivedMissing {
                change_id,
                seal,
                file,
            } => {
                format!("change {change_id} is missing from archive file {file} (seal {seal})")
            }
            Problem::ArchivedNotSealed { change_id, file } => {
                format!("change {change_id} in archive file {file} was never sealed (forged)")
            }
            Problem::ArchiveFile { problem, .. } => problem.clone(),
            Problem::Truncated {
                checkpoint_size,
                log_size,
            } => format!(
                "the log was cut: the checkpoint you kept covers {checkpoint_size} changes, the database has {log_size}"
            ),
            Problem::Inconsistent { checkpoint_size } => format!(
                "the first {checkpoint_size} changes of the log no longer match the checkpoint you kept"
            ),
            Problem::CheckpointRejected { reason } => {
                format!("the checkpoint you gave was refused: {reason}")
            }
            Problem::CaptureGap {
                table,
                from,
                until,
                by,
                command,
            } => format!(
                "capture was off for {table} from {from} {} (by {by}: {})",
                match until {
                    Some(until) => format!("until {until}"),
                    None => "and still is".to_string(),
                },
                command.as_deref().unwrap_or("?")
            ),
        }
    }

    /// The change this problem names, if it names one.
    pub fn change_id(&self) -> Option<i64> {
        match self {
            Problem::Edited { change_id, .. }
            | Problem::Deleted { change_id, .. }
            | Problem::NotSealed { change_id, .. }
            | Problem::ArchivedEdited { change_id, .. }
            | Problem::ArchivedMissing { change_id, .. }
            | Problem::ArchivedNotSealed { change_id, .. } => Some(*change_id),
            _ => None,
        }
    }
}

/// What verify found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Checkpoints checked.
    pub seals: u64,
    /// The size of the log (changes sealed).
    pub tree_size: u64,
    /// The root of the log recomputed from the trail, hex.
    pub root: String,
    /// Changes recorded after the last seal (not covered yet).
    pub unsealed: u64,
    /// Values erased with `pgtrail erase` (they still verify).
    pub erasures: u64,
    /// Sealed changes checked from archive files (`--archive DIR`).
    pub archived_checked: u64,
    /// Sealed changes in archived ranges not checked (no `--archive DIR`).
    pub archived_unchecked: u64,
    /// The verifier key used, and whether it came from the database rather
    /// than from the caller.
    pub key: Option<String>,
    pub key_from_database: bool,
    /// Everything wrong, in log order; empty when the trail is intact.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One row of `pgtrail.seal`.
struct SealRow {
    id: i64,
    snapshot: SealSnapshot,
    tree_size: u64,
    checkpoint: Option<Checkpoint>,
    signature: NoteSignature,
    frontier: Option<Tree>,
    public_key: String,
}

/// Verifies the whole log against the trail.
pub async fn verify(client: &mut Client, options: &VerifyOptions) -> Result<VerifyReport, IntegrityError> {
    require_installed(client).await?;
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(IntegrityError::database("starting verify"))?;
    // As in seal: each seal's changes are sorted by id in memory.
    tx.batch_execute("SET LOCAL work_mem = '64MB'")
        .await
        .map_err(IntegrityError::database("configuring verify"))?;
    let origin: String = tx
        .query_one(
            "SELECT coalesce((SELECT value FROM pgtrail.setting WHERE name = 'origin'), '')",
            &[],
        )
        .await
        .map_err(IntegrityError::database("reading the trail's origin"))?
        .get(0);
    let seals = read_seals(&tx).await?;
    let erased = read_erased(&tx).await?;
    let mut problems = Vec::new();
    let mut archive = ArchiveState::default();
    match &options.archive_dir {
        Some(dir) => {
            let set = pgtrail_archive::set::load(&tx, dir)
                .await
                .map_err(IntegrityError::archive)?;
            archive.records = set.records.clone();
            archive.set = Some(set);
        }
        None => {
            archive.records = pgtrail_archive::set::records(&tx)
                .await
                .map_err(IntegrityError::archive)?;
        }
    }
    let mut report_key = options.public_key.as_ref().map(|k| k.to_string());
    let key_from_database = options.public_key.is_none();

    let external = match &options.checkpoint {
        Some(note) => external_checkpoint(note, options.public_key.as_ref(), &seals, &origin, &mut problems),
        None => None,
    };
    let mut external_root: Option<Hash> = None;

    // `tree` is the log recomputed from the trail; `judge` restarts from
    // each seal's signed head, so that each seal is judged on its own. While
    // the two agree (an intact trail) there is one tree: `judge` is None.
    let mut tree = Tree::new();
    let mut judge: Option<Tree> = None;
    let mut leaves = Leaves::default();
    let mut previous: Option<&SealRow> = None;
    for seal in &seals {
        let expected = previous.map_or(1, |p| p.id + 1);
        for missing in expected..seal.id {
            problems.push(Problem::SealMissing { seal: missing });
        }
        // The signature, with the caller's key or the one recorded.
        let key = match &options.public_key {
            Some(key) => Ok(key.clone()),
            None => VerifierKey::parse(&seal.public_key),
        };
        match (&seal.checkpoint, key) {
            (Some(checkpoint), Ok(key)) => {
                report_key.get_or_insert_with(|| key.to_string());
                if checkpoint.origin != origin {
                    problems.push(Problem::BadSignature {
                        seal: seal.id,
                        reason: format!("it names log `{}`, this trail is `{origin}`", checkpoint.origin),
                    });
                }
                let opened = checkpoint
                    .note_from_parts(std::slice::from_ref(&seal.signature))
                    .and_then(|note| pgtrail_integrity::open(&note, &key));
                if let Err(error) = opened {
                    problems.push(Problem::BadSignature {
                        seal: seal.id,
                        reason: error.to_string(),
                    });
                }
            }
            (None, _) => problems.push(Problem::BadSignature {
                seal: seal.id,
                reason: "its stored checkpoint is malformed".to_string(),
            }),
            (_, Err(error)) => problems.push(Problem::BadSignature {
                seal: seal.id,
                reason: format!("its recorded public key is unreadable: {error}"),
            }),
        }

        let first_position = judge.as_ref().unwrap_or(&tree).size();
        let found_before = problems.len();
        let range = SealRange {
            current: seal.snapshot.clone(),
            previous: previous.map(|p| p.snapshot.clone()),
        };
        let mut check = SealCheck {
            seal: seal.id,
            tree: &mut tree,
            judge: &mut judge,
            leaves: &mut leaves,
            erased: &erased,
            archive: &mut archive,
            problems: &mut problems,
            external_size: external.as_ref().map(|c| c.size),
            external_root: &mut external_root,
        };
        check.run(&tx, &range).await?;

        let judged = judge.as_ref().unwrap_or(&tree);
        if judged.size() != seal.tree_size {
            problems.push(Problem::SizeMismatch {
                seal: seal.id,
                signed: seal.tree_size,
                found: judged.size(),
            });
        }
        let signed_root = seal.checkpoint.as_ref().map(|c| c.root);
        let judged_root = judged.root();
        if problems.len() == found_before && Some(judged_root) != signed_root {
            problems.push(Problem::LeavesRewritten {
                seal: seal.id,
                first_position,
                last_position: judged.size().saturating_sub(1),
            });
        }
        // Go on from the signed head (when its stored frontier gives it).
        if let (Some(frontier), Some(root)) = (&seal.frontier, signed_root) {
            if frontier.root() == root && root != judged_root {
                judge = if frontier.size() == tree.size() && root == tree.root() {
                    None
                } else {
                    Some(frontier.clone())
                };
            }
        }
        previous = Some(seal);
    }

    if let Some(set) = &mut archive.set {
        let unmet = set.unmet();
        // What is wrong with the files, found as they were opened and read.
        let found: Vec<Problem> = set
            .problems
            .iter()
            .map(|problem| Problem::ArchiveFile {
                file: file_of(problem),
                problem: problem.message(),
            })
            .collect();
        problems.splice(0..0, found);
        for (change_id, file) in unmet {
            problems.push(Problem::ArchivedNotSealed { change_id, file });
        }
    }

    if let Some(checkpoint) = &external {
        if checkpoint.size > tree.size() {
            problems.push(Problem::Truncated {
                checkpoint_size: checkpoint.size,
                log_size: tree.size(),
            });
        } else {
            let root = if checkpoint.size == 0 {
                Some(Tree::new().root())
            } else {
                external_root
            };
            if root != Some(checkpoint.root) {
                problems.push(Problem::Inconsistent {
                    checkpoint_size: checkpoint.size,
                });
            }
        }
    }

    let unsealed: i64 = tx
        .query_one(
            concat!(
                "SELECT count(*) FROM pgtrail.change AS c
                 WHERE $1::text IS NULL
                    OR (c.txid >= ($2::bigint << 48) + pg_snapshot_xmin($1::text::pg_snapshot)::text::bigint
                        AND NOT ",
                visible_in_seal!("c.txid", "$1", "$2"),
                ")"
            ),
            &[
                &previous.map(|p| p.snapshot.snapshot.clone()),
                &previous.map(|p| i64::from(p.snapshot.era)),
            ],
        )
        .await
        .map_err(IntegrityError::database("counting the changes not sealed yet"))?
        .get(0);
    problems.extend(capture_gaps(&tx).await?);
    let erasures: i64 = tx
        .query_one("SELECT count(*) FROM pgtrail.erasure", &[])
        .await
        .map_err(IntegrityError::database("counting erasures"))?
        .get(0);
    tx.rollback()
        .await
        .map_err(IntegrityError::database("ending verify"))?;
    Ok(VerifyReport {
        seals: seals.len() as u64,
        tree_size: tree.size(),
        root: hex(&tree.root()),
        unsealed: unsealed.max(0) as u64,
        erasures: erasures.max(0) as u64,
        archived_checked: archive.checked,
        archived_unchecked: archive.unchecked,
        key: report_key,
        key_from_database,
        problems,
    })
}

/// Opens the checkpoint kept outside: with the caller's key, else with the
/// key of the last seal. Problems go to `problems`.
fn external_checkpoint(
    note: &str,
    key: Option<&VerifierKey>,
    seals: &[SealRow],
    origin: &str,
    problems: &mut Vec<Problem>,
) -> Option<Checkpoint> {
    let key = match key {
        Some(key) => Some(key.clone()),
        None => seals.last().and_then(|s| VerifierKey::parse(&s.public_key).ok()),
    };
    let Some(key) = key else {
        problems.push(Problem::CheckpointRejected {
            reason: "there is no public key to check its signature: pass --public-key".to_string(),
        });
        return None;
    };
    match pgtrail_integrity::open(note, &key) {
        Ok(checkpoint) if checkpoint.origin != origin => {
            problems.push(Problem::CheckpointRejected {
                reason: format!(
                    "it is the checkpoint of log `{}`; this trail is `{origin}`",
                    checkpoint.origin
                ),
            });
            None
        }
        Ok(checkpoint) => Some(checkpoint),
        Err(error) => {
            problems.push(Problem::CheckpointRejected {
                reason: error.to_string(),
            });
            None
        }
    }
}

/// Compares one seal's changes, as the trail has them now, with its stored
/// leaves, appending the recomputed leaves to the tree.
struct SealCheck<'a> {
    seal: i64,
    tree: &'a mut Tree,
    /// The seal-by-seal tree, when it differs from `tree`.
    judge: &'a mut Option<Tree>,
    leaves: &'a mut Leaves,
    erased: &'a HashMap<i64, HashMap<String, ErasedValue>>,
    archive: &'a mut ArchiveState,
    problems: &'a mut Vec<Problem>,
    external_size: Option<u64>,
    external_root: &'a mut Option<Hash>,
}

impl SealCheck<'_> {
    async fn run(&mut self, tx: &Transaction<'_>, range: &SealRange) -> Result<(), IntegrityError> {
        let params = range.params(tx).await?;
        let transactions = transaction_digests(tx, &params).await?;
        let statement = tx
            .prepare(super::leaves::CHANGES_OF_SEAL)
            .await
            .map_err(IntegrityError::database("reading the sealed changes"))?;
        let portal = tx
            .bind(&statement, &params.as_params())
            .await
            .map_err(IntegrityError::database("reading the sealed changes"))?;
        let fetch = || async {
            tx.query_portal(&portal, FETCH)
                .await
                .map_err(IntegrityError::database("reading the sealed changes"))
        };
        let mut stored = StoredLeaves::new(self.seal);
        let mut rows = fetch().await?;
        while !rows.is_empty() {
            // The server reads the next rows while this batch is hashed.
            let (next, merged) = tokio::join!(fetch(), self.merge(tx, &rows, &mut stored, &transactions));
            merged?;
            rows = next?;
        }
        // Sealed changes after the last one the trail still has: gone.
        self.gone_before(tx, &mut stored, None).await
    }

    /// Merges a batch of the trail's changes (in change id order) with the
    /// stored leaves (in log order, which is change id order too).
    async fn merge(
        &mut self,
        tx: &Transaction<'_>,
        rows: &[tokio_postgres::Row],
        stored: &mut StoredLeaves,
        transactions: &HashMap<(i64, i16), Hash>,
    ) -> Result<(), IntegrityError> {
        for (index, row) in rows.iter().enumerate() {
            // Hashing never waits on I/O: let the connection task (on a
            // single-threaded runtime, this same thread) take in the next
            // batch now and then, so the server never waits for the client.
            if index % YIELD_EVERY == 0 {
                tokio::task::yield_now().await;
            }
            let change = ChangeRow::from_row(row)?;
            self.gone_before(tx, stored, Some(change.id)).await?;
            let entry = match stored.peek(tx).await? {
                Some(entry) if entry.id == change.id => entry,
                // In the trail, in this seal's range, but not sealed.
                _ => {
                    self.problems.push(Problem::NotSealed {
                        change_id: change.id,
                        seal: self.seal,
                    });
                    continue;
                }
            };
            let salts = match self.erased.get(&change.id) {
                Some(kept) if entry.seed == DESTROYED_SEED => Salts::Erased(kept),
                _ => Salts::Seed(&entry.seed),
            };
            let leaf = self
                .leaves
                .leaf(&change, transactions.get(&(change.txid, change.ctx)), salts)?;
            if leaf != entry.hash {
                self.problems.push(Problem::Edited {
                    change_id: change.id,
                    seal: self.seal,
                });
            }
            self.push(leaf)?;
            self.advance(stored, entry.id);
        }
        Ok(())
    }

    /// Reports the stored leaves before change `id` (all, with None): their
    /// changes are gone from the trail.
    async fn gone_before(
        &mut self,
        tx: &Transaction<'_>,
        stored: &mut StoredLeaves,
        id: Option<i64>,
    ) -> Result<(), IntegrityError> {
        while let Some(entry) = stored.peek(tx).await? {
            if id.is_some_and(|id| entry.id >= id) {
                break;
            }
            // Not in the database: archived, or deleted.
            let leaf = self.archived_leaf(&entry)?;
            self.push(leaf)?;
            self.advance(stored, entry.id);
        }
        Ok(())
    }

    /// The leaf of a sealed change that is not in the database: recomputed
    /// from its archive file, or the stored one (reporting what is wrong).
    fn archived_leaf(&mut self, entry: &StoredLeaf) -> Result<Hash, IntegrityError> {
        let record =
            pgtrail_archive::set::archived_range(&self.archive.records, entry.id).map(|r| r.file.clone());
        let Some(file) = record else {
            self.problems.push(Problem::Deleted {
                change_id: entry.id,
                seal: self.seal,
            });
            return Ok(entry.hash);
        };
        let Some(set) = &mut self.archive.set else {
            self.archive.unchecked += 1;
            return Ok(entry.hash);
        };
        let Some(row) = set.take(entry.id) else {
            self.problems.push(Problem::ArchivedMissing {
                change_id: entry.id,
                seal: self.seal,
                file,
            });
            return Ok(entry.hash);
        };
        self.archive.checked += 1;
        let change = ChangeRow::from_archived(&row);
        let transaction = row.transaction_record().map(|t| transaction_digest_of(&t));
        let salts = match self.erased.get(&entry.id) {
            Some(kept) if entry.seed == DESTROYED_SEED => Salts::Erased(kept),
            _ => Salts::Seed(&entry.seed),
        };
        let leaf = self.leaves.leaf(&change, transaction.as_ref(), salts)?;
        if leaf != entry.hash {
            self.problems.push(Problem::ArchivedEdited {
                change_id: entry.id,
                seal: self.seal,
                file,
            });
        }
        Ok(leaf)
    }

    /// Moves past a stored leaf; its ids must keep increasing.
    fn advance(&mut self, stored: &mut StoredLeaves, id: i64) {
        if id <= stored.last_id && !stored.order_reported {
            self.problems.push(Problem::OrderRewritten { seal: self.seal });
            stored.order_reported = true;
        }
        stored.last_id = id;
        stored.advance();
    }

    fn push(&mut self, leaf: Hash) -> Result<(), IntegrityError> {
        if let Some(judge) = self.judge {
            judge.push(leaf)?;
        }
        self.tree.push(leaf)?;
        if Some(self.tree.size()) == self.external_size {
            *self.external_root = Some(self.tree.root());
        }
        Ok(())
    }
}

/// The archive as verify reads it.
#[derive(Default)]
struct ArchiveState {
    records: Vec<ArchiveRecord>,
    /// The archive files, with `--archive DIR`.
    set: Option<ArchiveSet>,
    checked: u64,
    unchecked: u64,
}

fn file_of(problem: &pgtrail_archive::ArchiveProblem) -> String {
    use pgtrail_archive::ArchiveProblem as P;
    match problem {
        P::FileMissing { file }
        | P::FileChanged { file, .. }
        | P::Unreadable { file, .. }
        | P::OutOfOrder { file, .. }
        | P::RowCount { file, .. } => file.clone(),
    }
}

/// One stored leaf.
#[derive(Clone, Copy)]
struct StoredLeaf {
    id: i64,
    hash: Hash,
    seed: Seed,
}

/// The stored leaves of one seal, read a chunk at a time.
struct StoredLeaves {
    seal: i64,
    next_chunk_from: i64,
    chunk: Vec<StoredLeaf>,
    index: usize,
    done: bool,
    /// The change id of the last leaf passed, and whether an id out of
    /// order was reported.
    last_id: i64,
    order_reported: bool,
}

impl StoredLeaves {
    fn new(seal: i64) -> StoredLeaves {
        StoredLeaves {
            seal,
            next_chunk_from: i64::MIN,
            chunk: Vec::new(),
            index: 0,
            done: false,
            last_id: i64::MIN,
            order_reported: false,
        }
    }

    async fn peek(&mut self, tx: &Transaction<'_>) -> Result<Option<StoredLeaf>, IntegrityError> {
        while self.index >= self.chunk.len() && !self.done {
            let row = tx
                .query_opt(
                    "SELECT first_position, change_ids, leaf_hashes, seeds FROM pgtrail.seal_leaves
                     WHERE seal_id = $1 AND first_position >= $2 ORDER BY first_position LIMIT 1",
                    &[&self.seal, &self.next_chunk_from],
                )
                .await
                .map_err(IntegrityError::database("reading the sealed leaves"))?;
            let Some(row) = row else {
                self.done = true;
                break;
            };
            let first: i64 = row.get(0);
            let ids: Vec<i64> = row.get(1);
            let hashes: &[u8] = row.get(2);
            let seeds: &[u8] = row.get(3);
            self.next_chunk_from = first.saturating_add(1);
            self.index = 0;
            self.chunk = ids
                .iter()
                .enumerate()
                .map(|(i, id)| StoredLeaf {
                    id: *id,
                    hash: hashes
                        .get(i * 32..i * 32 + 32)
                        .and_then(hash_of)
                        .unwrap_or([0; 32]),
                    seed: seeds
                        .get(i * 16..i * 16 + 16)
                        .and_then(|s| s.try_into().ok())
                        .unwrap_or(DESTROYED_SEED),
                })
                .collect();
        }
        Ok(self.chunk.get(self.index).copied())
    }

    fn advance(&mut self) {
        self.index += 1;
    }
}

async fn read_seals(tx: &Transaction<'_>) -> Result<Vec<SealRow>, IntegrityError> {
    let rows = tx
        .query(
            "SELECT id, snapshot::text, tree_size, root, frontier, origin, extensions, key_name, key_id, signature, public_key, era
             FROM pgtrail.seal ORDER BY id",
            &[],
        )
        .await
        .map_err(IntegrityError::database("reading the checkpoints"))?;
    Ok(rows
        .iter()
        .map(|row| {
            let tree_size = u64::try_from(row.get::<_, i64>(2)).unwrap_or(0);
            let root = hash_of(row.get::<_, &[u8]>(3));
            let frontier: Vec<Vec<u8>> = row.get(4);
            let frontier = frontier
                .iter()
                .map(|h| hash_of(h))
                .collect::<Option<Vec<Hash>>>()
                .and_then(|f| Tree::from_frontier(tree_size, f).ok());
            SealRow {
                id: row.get(0),
                snapshot: SealSnapshot {
                    snapshot: row.get(1),
                    era: row.get(11),
                },
                tree_size,
                checkpoint: root.map(|root| Checkpoint {
                    origin: row.get(5),
                    size: tree_size,
                    root,
                    extensions: row.get(6),
                }),
                signature: NoteSignature {
                    key_name: row.get(7),
                    key_id: u32::try_from(row.get::<_, i64>(8)).unwrap_or(0),
                    signature: row.get(9),
                },
                frontier,
                public_key: row.get(10),
            }
        })
        .collect())
}

async fn read_erased(
    tx: &Transaction<'_>,
) -> Result<HashMap<i64, HashMap<String, ErasedValue>>, IntegrityError> {
    let rows = tx
        .query(
            "SELECT change_id, field, salt, commitment FROM pgtrail.erased_value",
            &[],
        )
        .await
        .map_err(IntegrityError::database("reading erased values"))?;
    let mut erased: HashMap<i64, HashMap<String, ErasedValue>> = HashMap::new();
    for row in rows {
        let salt: Option<&[u8]> = row.get(2);
        let commitment: Option<&[u8]> = row.get(3);
        let value = match (salt.and_then(|s| s.try_into().ok()), commitment.and_then(hash_of)) {
            (Some(salt), _) => ErasedValue::Salt(salt),
            (None, Some(commitment)) => ErasedValue::Commitment(commitment),
            (None, None) => continue,
        };
        erased.entry(row.get(0)).or_default().insert(row.get(1), value);
    }
    Ok(erased)
}

/// The periods in which capture was off for an audited table, oldest first
/// (from `pgtrail.capture_gaps`; empty before pgtrail 0.2.0).
pub async fn capture_gaps(
    client: &impl tokio_postgres::GenericClient,
) -> Result<Vec<Problem>, IntegrityError> {
    let has_view: bool = client
        .query_one("SELECT to_regclass('pgtrail.capture_gaps') IS NOT NULL", &[])
        .await
        .map_err(IntegrityError::database("looking for pgtrail.capture_gaps"))?
        .get(0);
    if !has_view {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT format('%I.%I', table_schema, table_name), off_from::text, off_until::text, turned_off_by,
                    turned_off_with
             FROM pgtrail.capture_gaps ORDER BY off_from",
            &[],
        )
        .await
        .map_err(IntegrityError::database("reading the capture gaps"))?;
    Ok(rows
        .iter()
        .map(|row| Problem::CaptureGap {
            table: row.get(0),
            from: row.get(1),
            until: row.get(2),
            by: row.get(3),
            command: row.get(4),
        })
        .collect())
}

/// Lower-case hex (how roots are shown).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
