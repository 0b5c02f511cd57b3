//! `pgtrail seal`: appends every change of every transaction finished since
//! the last seal to the log, in change id order, and stores a signed
//! checkpoint of the new head.
//!
//! A seal reads in a REPEATABLE READ transaction whose snapshot decides which
//! transactions it covers (those visible in it and not in the previous
//! seal's), so it takes no lock that writers wait for; seals serialize among
//! themselves (and with erasures) with an advisory lock, taken before the
//! transaction begins so that its snapshot sees the seal before it. Each sealed change gets 16 random bytes
//! (its seed) from which the salts of its values derive.

use std::collections::HashMap;

use chrono::{SecondsFormat, Utc};
use futures_util::{Stream, TryStreamExt, pin_mut};
use pgtrail_archive::priority::{Pacer, Priority};
use pgtrail_integrity::{Checkpoint, Hash, NoteSignature, Seed, SignerKey, Tree};
use rand::RngCore;
use tokio_postgres::{Client, Row};

use super::leaves::{
    CHANGES_OF_SEAL_PRINTED_AS_READ, ChangeRow, Leaves, Salts, SealParams, SealRange, SealSnapshot,
    TRANSACTIONS_OF_SEAL, transaction_digest, transaction_digests,
};
use super::{IntegrityError, SEAL_LOCK, hash_of, require_installed};

/// Leaves per row of `pgtrail.seal_leaves`.
const CHUNK: usize = 50_000;

/// What a seal did.
#[derive(Debug, Clone)]
pub struct SealReport {
    /// The new seal's number, or None when there was nothing new to seal.
    pub seal_id: Option<i64>,
    /// Changes appended by this seal.
    pub appended: u64,
    /// The size of the log after it.
    pub tree_size: u64,
    /// The root of the log after it.
    pub root: Hash,
    /// The signed checkpoint of the log's head (C2SP signed note), also for
    /// an unchanged head.
    pub note: String,
}

/// The head of the log as the last seal left it.
struct Head {
    id: i64,
    snapshot: SealSnapshot,
    tree: Tree,
    note: String,
}

/// Seals the changes of every transaction finished since the last seal.
/// `progress` is called with the number of changes read so far.
pub async fn seal(
    client: &mut Client,
    key: &SignerKey,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<SealReport, IntegrityError> {
    seal_at(client, key, progress, Priority::Normal).await
}

/// [`seal`] at a CPU priority: under [`Priority::Low`] the transaction
/// records and the changes are hashed on a thread of their own at nice
/// 19, their reading is paced (bursts, each followed by a pause that
/// grows while the machine's cores stay busy: [`Pacer`]), the server
/// prints the changes' values as they are read rather than before the
/// first, and the leaves are stored with the same pauses between their
/// rows, so that neither this process nor the backend that sends the
/// changes takes the cores from the application's backends. The seal made
/// is the same.
pub async fn seal_at(
    client: &mut Client,
    key: &SignerKey,
    progress: &mut (dyn FnMut(u64) + Send),
    priority: Priority,
) -> Result<SealReport, IntegrityError> {
    require_installed(client).await?;
    // Seals (and erasures) take turns. The lock is the session's, taken
    // before the transaction: a snapshot taken before the lock was granted
    // would not see the seal that held it.
    client
        .execute("SELECT pg_advisory_lock($1)", &[&SEAL_LOCK])
        .await
        .map_err(IntegrityError::database(
            "waiting for another seal or erase to finish",
        ))?;
    let sealed = seal_locked(client, key, progress, priority).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&SEAL_LOCK])
        .await
        .map_err(IntegrityError::database("releasing the seal lock"));
    let report = sealed?;
    unlocked?;
    Ok(report)
}

/// [`seal`], under the seal lock.
async fn seal_locked(
    client: &mut Client,
    key: &SignerKey,
    progress: &mut (dyn FnMut(u64) + Send),
    priority: Priority,
) -> Result<SealReport, IntegrityError> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await
        .map_err(IntegrityError::database("starting the seal"))?;
    // The changes of a later seal come from a BRIN range and are sorted by
    // id: in memory, not spilled to disk (measured: a third of a
    // 100,000-change seal at the default 4 MB).
    tx.batch_execute("SET LOCAL work_mem = '64MB'")
        .await
        .map_err(IntegrityError::database("configuring the seal"))?;
    // What this first statement's snapshot sees is what is sealed; it is a
    // snapshot of this cluster, whose era it opens if the trail has moved.
    let row = tx
        .query_one(
            "SELECT pg_current_snapshot()::text, clock_timestamp(),
                    (SELECT value FROM pgtrail.setting WHERE name = 'origin'), pgtrail._era_now()",
            &[],
        )
        .await
        .map_err(IntegrityError::database("reading the snapshot to seal"))?;
    let snapshot = SealSnapshot {
        snapshot: row.get(0),
        era: row.get(3),
    };
    let now: chrono::DateTime<Utc> = row.get(1);
    let origin: Option<String> = row.get(2);
    let origin = origin.ok_or(IntegrityError::NotInstalled)?;
    let head = last_head(&tx, key, &origin).await?;

    let range = SealRange {
        current: snapshot.clone(),
        previous: head.as_ref().map(|h| h.snapshot.clone()),
    };
    let params = range.params(&tx).await?;

    let seal_id = head.as_ref().map_or(1, |h| h.id + 1);
    let tree = head.as_ref().map_or_else(Tree::new, |h| h.tree.clone());
    let start_size = tree.size();
    let mut pacer = Pacer::new(priority);
    let (tree, chunk, mut chunks) = match priority {
        Priority::Normal => {
            let transactions = transaction_digests(&tx, &params).await?;
            let statement = tx
                .prepare(super::leaves::CHANGES_OF_SEAL)
                .await
                .map_err(IntegrityError::database("reading the changes to seal"))?;
            let rows = tx
                .query_raw(&statement, params.as_params())
                .await
                .map_err(IntegrityError::database("reading the changes to seal"))?;
            hash_here(rows, Hashing::new(tree, transactions), progress).await?
        }
        Priority::Low => {
            hash_low(
                &tx,
                &params,
                Hashing::new(tree, HashMap::new()),
                &mut pacer,
                progress,
            )
            .await?
        }
    };
    let appended = tree.size() - start_size;
    if appended == 0 {
        tx.rollback()
            .await
            .map_err(IntegrityError::database("ending the seal"))?;
        return Ok(SealReport {
            seal_id: None,
            appended: 0,
            tree_size: tree.size(),
            root: tree.root(),
            note: head.map(|h| h.note).unwrap_or_default(),
        });
    }
    if !chunk.ids.is_empty() {
        chunks.push(chunk);
    }

    let checkpoint = Checkpoint {
        origin: origin.clone(),
        size: tree.size(),
        root: tree.root(),
        extensions: vec![format!(
            "time {}",
            now.to_rfc3339_opts(SecondsFormat::Micros, true)
        )],
    };
    let signature = checkpoint.signature(key)?;
    let note = checkpoint.note_from_parts(std::slice::from_ref(&signature))?;
    let frontier: Vec<Vec<u8>> = tree.frontier().iter().map(|h| h.to_vec()).collect();
    tx.execute(
        "INSERT INTO pgtrail.seal (id, sealed_at, snapshot, tree_size, root, frontier, origin, extensions,
                                   key_name, key_id, signature, public_key, era)
         VALUES ($1, $2, $3::text::pg_snapshot, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        &[
            &seal_id,
            &now,
            &snapshot.snapshot,
            &(tree.size() as i64),
            &tree.root().as_slice(),
            &frontier,
            &origin,
            &checkpoint.extensions,
            &signature.key_name,
            &i64::from(signature.key_id),
            &signature.signature,
            &key.verifier().to_string(),
            &snapshot.era,
        ],
    )
    .await
    .map_err(IntegrityError::database("storing the checkpoint"))?;
    for chunk in &chunks {
        tx.execute(
            "INSERT INTO pgtrail.seal_leaves (first_position, seal_id, change_ids, leaf_hashes, seeds)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &(chunk.first_position as i64),
                &seal_id,
                &chunk.ids,
                &chunk.hashes,
                &chunk.seeds,
            ],
        )
        .await
        .map_err(IntegrityError::database("storing the sealed leaves"))?;
        pacer.pace().await;
    }
    tx.commit()
        .await
        .map_err(IntegrityError::database("committing the seal"))?;
    Ok(SealReport {
        seal_id: Some(seal_id),
        appended,
        tree_size: tree.size(),
        root: tree.root(),
        note,
    })
}

/// Progress is reported every this many changes read.
const PROGRESS_EVERY: u64 = 10_000;

/// Rows sent to the hashing thread at a time under [`Priority::Low`].
const BATCH: usize = 256;

/// The leaves of a seal being computed, change by change in id order.
struct Hashing {
    tree: Tree,
    transactions: HashMap<(i64, i16), Hash>,
    leaves: Leaves,
    chunk: Chunk,
    chunks: Vec<Chunk>,
}

/// The log after the seal's changes, the last (partly filled) chunk of
/// leaves and the full ones.
type Hashed = (Tree, Chunk, Vec<Chunk>);

impl Hashing {
    fn new(tree: Tree, transactions: HashMap<(i64, i16), Hash>) -> Hashing {
        let chunk = Chunk::new(tree.size());
        Hashing {
            tree,
            transactions,
            leaves: Leaves::default(),
            chunk,
            chunks: Vec::new(),
        }
    }

    /// Appends the leaf of one change, with a fresh seed from `rng`.
    fn add(&mut self, row: &Row, rng: &mut impl RngCore) -> Result<(), IntegrityError> {
        let change = ChangeRow::from_row(row)?;
        let mut seed: Seed = [0; 16];
        rng.fill_bytes(&mut seed);
        let leaf = self.leaves.leaf(
            &change,
            self.transactions.get(&(change.txid, change.ctx)),
            Salts::Seed(&seed),
        )?;
        self.tree.push(leaf)?;
        self.chunk.push(change.id, &leaf, &seed);
        if self.chunk.ids.len() == CHUNK {
            let next = Chunk::new(self.tree.size());
            self.chunks.push(std::mem::replace(&mut self.chunk, next));
        }
        Ok(())
    }

    fn finish(self) -> Hashed {
        (self.tree, self.chunk, self.chunks)
    }
}

/// Hashes the changes as they arrive, on the caller's thread.
async fn hash_here(
    rows: impl Stream<Item = Result<Row, tokio_postgres::Error>>,
    mut hashing: Hashing,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Hashed, IntegrityError> {
    pin_mut!(rows);
    let mut rng = rand::rng();
    let mut read = 0u64;
    while let Some(row) = rows
        .try_next()
        .await
        .map_err(IntegrityError::database("reading the changes to seal"))?
    {
        hashing.add(&row, &mut rng)?;
        read += 1;
        if read % PROGRESS_EVERY == 0 {
            progress(read);
        }
    }
    progress(read);
    Ok(hashing.finish())
}

/// Rows for the hashing thread of [`hash_low`].
enum Fed {
    /// Transaction records (all come before the first change).
    Transactions(Vec<Row>),
    Changes(Vec<Row>),
}

/// Hashes on a thread of its own at nice 19, fed in batches: first the
/// transaction records' digests, then the changes' leaves. The reading
/// of both is paced, and the changes are read with their values printed
/// as they are read ([`super::leaves::CHANGES_OF_SEAL_PRINTED_AS_READ`]),
/// so that the pauses reach the backend. Stops reading, without an error
/// of its own, when that thread has stopped (it says why).
async fn hash_low(
    tx: &tokio_postgres::Transaction<'_>,
    params: &SealParams,
    mut hashing: Hashing,
    pacer: &mut Pacer,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Hashed, IntegrityError> {
    let (feed, mut fed) = tokio::sync::mpsc::channel::<Fed>(4);
    let worker = std::thread::spawn(move || {
        Priority::Low.enter();
        let mut rng = rand::rng();
        while let Some(batch) = fed.blocking_recv() {
            match batch {
                Fed::Transactions(rows) => {
                    for row in &rows {
                        let key: (i64, i16) = (
                            row.try_get(0)
                                .map_err(IntegrityError::database("reading a transaction record"))?,
                            row.try_get(1)
                                .map_err(IntegrityError::database("reading a transaction record"))?,
                        );
                        hashing.transactions.insert(key, transaction_digest(row)?);
                    }
                }
                Fed::Changes(rows) => {
                    for row in &rows {
                        hashing.add(row, &mut rng)?;
                    }
                }
            }
        }
        Ok::<_, IntegrityError>(hashing.finish())
    });
    let read = async {
        let what = "reading transaction records";
        let rows = tx
            .query_raw(TRANSACTIONS_OF_SEAL, params.as_params())
            .await
            .map_err(IntegrityError::database(what))?;
        if read_paced(rows, what, Fed::Transactions, &feed, pacer, &mut |_| {}).await? {
            let what = "reading the changes to seal";
            let rows = tx
                .query_raw(CHANGES_OF_SEAL_PRINTED_AS_READ, params.as_params())
                .await
                .map_err(IntegrityError::database(what))?;
            read_paced(rows, what, Fed::Changes, &feed, pacer, progress).await?;
        }
        Ok::<_, IntegrityError>(())
    }
    .await;
    drop(feed);
    let hashed = worker.join().map_err(|_| {
        IntegrityError::Refused("hashing the changes to seal failed unexpectedly".to_string())
    })?;
    read?;
    hashed
}

/// Reads rows in paced bursts and sends them to `feed` in batches; false
/// when the hashing thread has stopped.
async fn read_paced(
    rows: impl Stream<Item = Result<Row, tokio_postgres::Error>>,
    what: &'static str,
    wrap: fn(Vec<Row>) -> Fed,
    feed: &tokio::sync::mpsc::Sender<Fed>,
    pacer: &mut Pacer,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<bool, IntegrityError> {
    pin_mut!(rows);
    let mut batch = Vec::with_capacity(BATCH);
    let mut read = 0u64;
    while let Some(row) = rows.try_next().await.map_err(IntegrityError::database(what))? {
        batch.push(row);
        read += 1;
        if read % PROGRESS_EVERY == 0 {
            progress(read);
        }
        if batch.len() == BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            if feed.send(wrap(full)).await.is_err() {
                return Ok(false);
            }
            pacer.pace().await;
        }
    }
    if !batch.is_empty() && feed.send(wrap(batch)).await.is_err() {
        return Ok(false);
    }
    progress(read);
    Ok(true)
}

/// Leaves of one `pgtrail.seal_leaves` row, being filled.
struct Chunk {
    first_position: u64,
    ids: Vec<i64>,
    hashes: Vec<u8>,
    seeds: Vec<u8>,
}

impl Chunk {
    fn new(first_position: u64) -> Chunk {
        Chunk {
            first_position,
            ids: Vec::new(),
            hashes: Vec::new(),
            seeds: Vec::new(),
        }
    }

    fn push(&mut self, id: i64, leaf: &Hash, seed: &Seed) {
        self.ids.push(id);
        self.hashes.extend_from_slice(leaf);
        self.seeds.extend_from_slice(seed);
    }
}

/// The last seal, checked before anything is signed on top of it: its
/// frontier must give its root, and its signature must be this key's (a
/// seal never continues a log that it could not vouch for).
async fn last_head(
    tx: &tokio_postgres::Transaction<'_>,
    key: &SignerKey,
    origin: &str,
) -> Result<Option<Head>, IntegrityError> {
    let Some(row) = tx
        .query_opt(
            "SELECT id, snapshot::text, tree_size, root, frontier, origin, extensions, key_name, key_id, signature, era
             FROM pgtrail.seal ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .map_err(IntegrityError::database("reading the last checkpoint"))?
    else {
        return Ok(None);
    };
    let id: i64 = row.get(0);
    let size = u64::try_from(row.get::<_, i64>(2)).unwrap_or(0);
    let broken = |problem: &str| IntegrityError::BrokenHead {
        seal: id,
        size,
        problem: problem.to_string(),
    };
    let root = hash_of(row.get::<_, &[u8]>(3)).ok_or_else(|| broken("has a root that is not 32 bytes"))?;
    let frontier: Vec<Vec<u8>> = row.get(4);
    let frontier: Vec<Hash> = frontier
        .iter()
        .map(|h| hash_of(h))
        .collect::<Option<_>>()
        .ok_or_else(|| broken("has a frontier hash that is not 32 bytes"))?;
    let tree = Tree::from_frontier(size, frontier)
        .map_err(|_| broken("has a frontier that does not fit its size"))?;
    if tree.root() != root {
        return Err(broken("has a frontier that does not give its root"));
    }
    let stored_origin: String = row.get(5);
    if stored_origin != origin {
        return Err(broken("names another log (its origin differs)"));
    }
    let checkpoint = Checkpoint {
        origin: stored_origin,
        size,
        root,
        extensions: row.get(6),
    };
    let key_id = u32::try_from(row.get::<_, i64>(8)).map_err(|_| broken("has a key id out of range"))?;
    let signature = NoteSignature {
        key_name: row.get(7),
        key_id,
        signature: row.get(9),
    };
    let note = checkpoint.note_from_parts(std::slice::from_ref(&signature))?;
    if signature.key_name != key.name() || signature.key_id != key.key_id() {
        return Err(IntegrityError::Refused(format!(
            "the last checkpoint (seal {id}) was signed by key `{}+{:08x}`, not by this key (`{}+{:08x}`)\n  \
             help: seal with the key that signed before; a new key needs the old log verified first (`pgtrail verify --public-key OLD.pub`)",
            signature.key_name,
            signature.key_id,
            key.name(),
            key.key_id()
        )));
    }
    pgtrail_integrity::open(&note, &key.verifier())
        .map_err(|_| broken("carries a signature that does not verify"))?;
    let snapshot = SealSnapshot {
        snapshot: row.get(1),
        era: row.get(10),
    };
    Ok(Some(Head {
        id,
        snapshot,
        tree,
        note,
    }))
}
