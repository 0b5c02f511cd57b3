//! `pgtrail archive`: each partition entirely older than the retention
//! period is, in order: checked against legal holds, sealed (or skipped),
//! written to `<partition>.parquet`, read back and compared with the
//! database, described in `<partition>.json`, and only then detached,
//! recorded in `pgtrail.archive` and dropped, in one transaction. A crash at
//! any point leaves either the partition (and a rerun writes the file
//! again) or the record of its archive.

use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use pgtrail_config::{Keep, TableKeep};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use crate::copy::{
    BLOCKS, COPY_CHANGES, COPY_CHANGES_BY_BLOCKS, Decoder, ERASED, NEXT_ID, SORTS_BY_BYTES, TABLES,
    TRANSACTIONS_BY_KEY, Tables, Transactions, blocks_condition,
};
use crate::digest::{ColumnCheck, RowDigest};
use crate::key_order::{SORT_KEYS, ToSort};
use crate::manifest::{FORMAT, Manifest, SealRef};
use crate::parquet_file::{
    ArchiveReader, COLUMN_COUNT, Columns, ParquetWriter, ROW_GROUP, ReadError, SCHEMA,
};
use crate::partitions::{self, Partition};
use crate::priority::{Pacer, Priority};
use crate::{ArchiveError, Sealer, holds};

/// What to archive and where.
#[derive(Debug, Clone)]
pub struct ArchiveOptions {
    pub dir: PathBuf,
    pub keep: Keep,
    /// Per-table keeps (`[retention.tables."schema.table"]`): a partition
    /// waits until every table with changes in it is past its keep.
    pub tables: Vec<TableKeep>,
    pub dry_run: bool,
    /// The CPU priority of sealing, reading the partitions, writing and
    /// reading back the files (never of the lock to detach and drop).
    pub priority: Priority,
}

/// What happened to one partition.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Archived {
        partition: String,
        file: String,
        rows: i64,
        bytes: u64,
        seconds: f64,
        /// Of which: reading the partition and writing the file.
        write_seconds: f64,
        /// Of which: reading the file back and comparing it.
        read_back_seconds: f64,
        /// How long the trail was locked to detach and drop the partition.
        lock_ms: f64,
    },
    WouldArchive {
        partition: String,
        rows: i64,
    },
    Skipped {
        partition: String,
        reason: String,
    },
}

impl Outcome {
    pub fn partition(&self) -> &str {
        match self {
            Outcome::Archived { partition, .. }
            | Outcome::WouldArchive { partition, .. }
            | Outcome::Skipped { partition, .. } => partition,
        }
    }
}

/// The partitions past their retention: entirely older than the keep of
/// every table with changes in them (`keep`, or the table's own in
/// `tables`); never the default partition.
pub async fn due(
    client: &impl tokio_postgres::GenericClient,
    keep: &Keep,
    tables: &[TableKeep],
) -> Result<Vec<Partition>, ArchiveError> {
    Ok(judge(client, keep, tables)
        .await?
        .into_iter()
        .filter_map(|(p, kept)| kept.is_none().then_some(p))
        .collect())
}

/// The partitions past the shortest keep, each with None when it is past
/// its retention, else why it stays (a table in it kept longer).
pub async fn judge(
    client: &impl tokio_postgres::GenericClient,
    keep: &Keep,
    tables: &[TableKeep],
) -> Result<Vec<(Partition, Option<String>)>, ArchiveError> {
    let mut cutoffs: Vec<(Keep, DateTime<Utc>)> = Vec::new();
    for k in std::iter::once(keep).chain(tables.iter().map(|t| &t.keep)) {
        if cutoffs.iter().any(|(c, _)| c == k) {
            continue;
        }
        let cutoff: DateTime<Utc> = client
            .query_one("SELECT clock_timestamp() - $1::text::interval", &[&k.interval()])
            .await
            .map_err(ArchiveError::database("computing the retention cutoff"))?
            .get(0);
        cutoffs.push((*k, cutoff));
    }
    let cutoff_of = |k: &Keep| cutoffs.iter().find(|(c, _)| c == k).map(|(_, t)| *t);
    let earliest = cutoffs.iter().map(|(_, t)| *t).max();
    let default_cutoff = cutoff_of(keep);
    let mut judged = Vec::new();
    for partition in partitions::list(client).await? {
        let Some(until) = partition.until_at else { continue };
        if partition.is_default || earliest.is_none_or(|e| until > e) {
            continue;
        }
        if tables.is_empty() {
            judged.push((partition, None));
            continue;
        }
        let present = client
            .query(
                &format!(
                    "SELECT a.table_schema, a.table_name FROM pgtrail.audited_table AS a
                     WHERE EXISTS (SELECT FROM pgtrail.{} AS c WHERE c.table_id = a.id)
                     ORDER BY 1, 2",
                    pgtrail_capture::quote::ident(&partition.name)
                ),
                &[],
            )
            .await
            .map_err(ArchiveError::database("reading which tables a partition holds"))?;
        let mut kept = Vec::new();
        let mut any = false;
        for row in &present {
            let (schema, table): (String, String) = (row.get(0), row.get(1));
            any = true;
            let table_keep = TableKeep::keep_of(tables, *keep, &schema, &table);
            if cutoff_of(&table_keep).is_some_and(|c| until > c) {
                kept.push(format!("{schema}.{table} (kept {table_keep})"));
            }
        }
        if !any && default_cutoff.is_some_and(|c| until > c) {
            // Empty: the default keep decides.
            continue;
        }
        let reason = (!kept.is_empty()).then(|| {
            format!(
                "holds changes of {}: a partition is archived once every table in it is past its keep",
                kept.join(", ")
            )
        });
        judged.push((partition, reason));
    }
    Ok(judged)
}

/// The last seal: (id, tree size, root hex, snapshot, era).
struct LastSeal {
    id: i64,
    tree_size: i64,
    root: String,
    snapshot: String,
    era: i32,
}

impl LastSeal {
    /// A trail txid below which every change is visible in the seal's
    /// snapshot: its era's first txid plus the snapshot's xmin (every
    /// transaction before xmin had ended when the seal was taken; an
    /// earlier era is covered whole). The lowest txid when the snapshot
    /// does not read as `xmin:xmax:...` with an xmin of 48 bits.
    fn visible_below(&self) -> i64 {
        let xmin = self
            .snapshot
            .split(':')
            .next()
            .and_then(|x| x.parse::<i64>().ok())
            .filter(|x| (0..1 << 48).contains(x));
        match (xmin, i64::from(self.era)) {
            (Some(xmin), era) if (0..1 << 15).contains(&era) => (era << 48) + xmin,
            _ => i64::MIN,
        }
    }
}

async fn last_seal(client: &Client) -> Result<Option<LastSeal>, ArchiveError> {
    let row = client
        .query_opt(
            "SELECT id, tree_size, encode(root, 'hex'), snapshot::text, era FROM pgtrail.seal ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .map_err(ArchiveError::database("reading the last seal"))?;
    Ok(row.map(|r| LastSeal {
        id: r.get(0),
        tree_size: r.get(1),
        root: r.get(2),
        snapshot: r.get(3),
        era: r.get(4),
    }))
}

/// The partition's changes that no seal covers yet. Only those at or
/// above the seal's [`LastSeal::visible_below`] can be: they are found by
/// the partition's index on `txid` (for a partition past its retention,
/// usually none), not by a scan of the whole partition.
async fn unsealed(client: &Client, partition: &str, seal: Option<&LastSeal>) -> Result<i64, ArchiveError> {
    let table = pgtrail_capture::quote::ident(partition);
    let row = match seal {
        None => {
            client
                .query_one(&format!("SELECT count(*) FROM pgtrail.{table}"), &[])
                .await
        }
        Some(seal) => {
            client
                .query_one(
                    &format!(
                        "SELECT count(*) FROM pgtrail.{table} AS c
                         WHERE c.txid >= $3 AND NOT (c.txid >> 48 < $2 OR (c.txid >> 48 = $2 AND pg_visible_in_snapshot(
                                 (c.txid & 281474976710655)::text::xid8, $1::text::pg_snapshot)))"
                    ),
                    &[&seal.snapshot, &i64::from(seal.era), &seal.visible_below()],
                )
                .await
        }
    };
    let row = row.map_err(ArchiveError::database(
        "counting the partition's unsealed changes",
    ))?;
    Ok(row.get(0))
}

/// The partition's changes (for `--dry-run`).
async fn count(client: &Client, partition: &str) -> Result<i64, ArchiveError> {
    let table = pgtrail_capture::quote::ident(partition);
    let row = client
        .query_one(&format!("SELECT count(*) FROM pgtrail.{table}"), &[])
        .await
        .map_err(ArchiveError::database("counting the partition's changes"))?;
    Ok(row.get(0))
}

/// Archives every partition that is due; `progress` hears of each step.
pub async fn archive(
    client: &mut Client,
    options: &ArchiveOptions,
    sealer: Option<&dyn Sealer>,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Outcome>, ArchiveError> {
    if !options.dry_run {
        // Finish what an erasure that stopped after its commit left.
        for path in crate::erase::tidy(&*client, &options.dir, false).await?.removed {
            progress(&format!(
                "removed {} (replaced by a file without erased values)",
                path.display()
            ));
        }
    }
    let judged = judge(client, &options.keep, &options.tables).await?;
    let mut outcomes = Vec::new();
    let mut due = Vec::new();
    for (partition, kept) in judged {
        match kept {
            None => due.push(partition),
            Some(reason) => outcomes.push(Outcome::Skipped {
                partition: partition.name,
                reason,
            }),
        }
    }
    if !options.dry_run && !due.is_empty() {
        std::fs::create_dir_all(&options.dir).map_err(|e| ArchiveError::Io {
            what: format!("creating the archive directory {}", options.dir.display()),
            source: e,
        })?;
    }
    for partition in due {
        let outcome = one(client, options, sealer, &partition, progress).await?;
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

async fn one(
    client: &mut Client,
    options: &ArchiveOptions,
    sealer: Option<&dyn Sealer>,
    partition: &Partition,
    progress: &mut dyn FnMut(&str),
) -> Result<Outcome, ArchiveError> {
    let name = partition.name.clone();
    let skipped = |reason: String| Outcome::Skipped {
        partition: name.clone(),
        reason,
    };
    let held = holds::matching(client, &name, partition.from_at, partition.until_at).await?;
    if !held.is_empty() {
        let list: Vec<String> = held
            .iter()
            .map(|(id, reason)| format!("hold {id} ({reason})"))
            .collect();
        return Ok(skipped(format!("under legal hold: {}", list.join(", "))));
    }
    let mut seal = last_seal(client).await?;
    let mut open = unsealed(client, &name, seal.as_ref()).await?;
    if open > 0 {
        match sealer {
            Some(sealer) if !options.dry_run => {
                progress(&format!("{name}: sealing {open} changes first"));
                sealer
                    .seal(client, options.priority)
                    .await
                    .map_err(ArchiveError::Seal)?;
                crate::failpoint("archive:sealed");
                seal = last_seal(client).await?;
                open = unsealed(client, &name, seal.as_ref()).await?;
                if open > 0 {
                    return Ok(skipped(format!(
                        "{open} changes are still not sealed (their transactions were running when sealing)"
                    )));
                }
            }
            Some(_) => {}
            None => {
                return Ok(skipped(format!(
                    "{open} changes are not sealed yet: seal them first (`pgtrail seal --key FILE`, or pass --key)"
                )));
            }
        }
    }
    if options.dry_run {
        return Ok(Outcome::WouldArchive {
            rows: count(client, &name).await?,
            partition: name,
        });
    }
    let Some(seal) = seal else {
        return Ok(skipped("the trail has never been sealed".to_string()));
    };
    let started = Instant::now();
    let file_name = format!("{name}.parquet");
    let path = options.dir.join(&file_name);
    let temporary = options.dir.join(format!("{name}.parquet.partial"));
    progress(&format!("{name}: writing {}", path.display()));
    let written = write(client, &name, &temporary, options.priority).await?;
    let write_seconds = started.elapsed().as_secs_f64();
    std::fs::rename(&temporary, &path).map_err(|e| ArchiveError::Io {
        what: format!("renaming {} to {}", temporary.display(), path.display()),
        source: e,
    })?;
    crate::failpoint("archive:parquet-written");
    progress(&format!("{name}: reading {} back", path.display()));
    let reading = Instant::now();
    let back = {
        let (file, seed, priority) = (path.clone(), written.seed, options.priority);
        priority
            .run(move || {
                read_back_paced(
                    &file,
                    ColumnCheck::new(seed, COLUMN_COUNT),
                    &mut Pacer::new(priority),
                )
            })
            .ok_or_else(|| {
                ArchiveError::Mismatch(format!("reading {} back failed unexpectedly", path.display()))
            })??
    };
    let read_back_seconds = reading.elapsed().as_secs_f64();
    let check = back.digest.value();
    if back.rows != written.rows || check != written.check || !back.ordered {
        return Err(ArchiveError::Mismatch(format!(
            "{}: read back {} rows (check {check:032x}{}), the database gave {} (check {:032x}); the partition is kept",
            path.display(),
            back.rows,
            if back.ordered { "" } else { ", not sorted by id" },
            written.rows,
            written.check
        )));
    }
    crate::failpoint("archive:read-back");
    let origin: String = client
        .query_one(
            "SELECT coalesce((SELECT value FROM pgtrail.setting WHERE name = 'origin'), '')",
            &[],
        )
        .await
        .map_err(ArchiveError::database("reading the trail's origin"))?
        .get(0);
    let public_key: Option<String> = client
        .query_opt("SELECT public_key FROM pgtrail.seal WHERE id = $1", &[&seal.id])
        .await
        .map_err(ArchiveError::database("reading the covering seal"))?
        .map(|r| r.get(0));
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let manifest = Manifest {
        format: FORMAT.to_string(),
        origin,
        partition: name.clone(),
        from_at: partition.from_at,
        until_at: partition.until_at,
        file: file_name.clone(),
        rows: written.rows,
        first_id: written.first.as_ref().map(|r| r.0),
        last_id: written.last.as_ref().map(|r| r.0),
        first_at: written.first.as_ref().and_then(|r| micros(r.1)),
        last_at: written.last.as_ref().and_then(|r| micros(r.1)),
        sha256: back.sha256.clone(),
        rows_sha256: written.rows_sha256.clone(),
        seal: SealRef {
            id: seal.id,
            tree_size: seal.tree_size,
            root: seal.root.clone(),
            public_key,
        },
        pgtrail_version: pgtrail_capture::VERSION.to_string(),
        created_at: Utc::now(),
        schema: SCHEMA.to_string(),
        erasures: Vec::new(),
    };
    write_manifest(&options.dir, &manifest)?;
    crate::failpoint("archive:manifest-written");
    progress(&format!("{name}: detaching and dropping the partition"));
    let lock_ms = match detach_and_drop(client, &manifest, partition, written.erasure).await {
        Ok(ms) => ms,
        Err(error) => {
            // The partition stays; so must no file that might hold values
            // erased since it was written (a rerun writes it again).
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(options.dir.join(format!("{name}.json")));
            return Err(error);
        }
    };
    crate::failpoint("archive:committed");
    Ok(Outcome::Archived {
        partition: name,
        file: file_name,
        rows: written.rows,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
        write_seconds,
        read_back_seconds,
        lock_ms,
    })
}

fn micros(v: i64) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_micros(v)
}

/// What was written: rows, digests over them, first and last (id, time).
struct Written {
    /// The last erasure the partition was read after (0 for none).
    erasure: i64,
    rows: i64,
    rows_sha256: String,
    /// The check of the rows (see [`crate::digest`]) and its seed.
    check: u128,
    seed: u64,
    first: Option<(i64, i64)>,
    last: Option<(i64, i64)>,
}

async fn write(
    client: &mut Client,
    partition: &str,
    path: &Path,
    priority: Priority,
) -> Result<Written, ArchiveError> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(ArchiveError::database("starting to read the partition"))?;
    // An erasure that commits after this snapshot would be missing from the
    // file: the drop checks that none did.
    let erasure: i64 = tx
        .query_one("SELECT coalesce(max(id), 0) FROM pgtrail.erasure", &[])
        .await
        .map_err(ArchiveError::database("reading the last erasure"))?
        .get(0);
    let mut tables = Tables::new();
    for row in tx
        .query(TABLES, &[])
        .await
        .map_err(ArchiveError::database("reading the audited tables' names"))?
    {
        let (id, schema, name): (i32, String, String) = (row.get(0), row.get(1), row.get(2));
        tables.insert(id, (schema.into_bytes().into(), name.into_bytes().into()));
    }
    let by_bytes: bool = tx
        .query_one(SORTS_BY_BYTES, &[])
        .await
        .map_err(ArchiveError::database("reading the database's collation"))?
        .get(0);
    // The partition's primary key gives its rows in id order: a sort of the
    // whole partition in the server (chosen when the partition has no
    // statistics yet) would spill to disk and cost more than the read.
    tx.batch_execute("SET LOCAL enable_sort = off")
        .await
        .map_err(ArchiveError::database(
            "preferring the id order of the partition's key",
        ))?;
    let blocks: i64 = tx
        .query_one(BLOCKS, &[&partition])
        .await
        .map_err(ArchiveError::database("reading the partition's size"))?
        .get(0);
    let erased: bool = tx
        .query_one(
            ERASED
                .replace("{partition}", &pgtrail_capture::quote::ident(partition))
                .as_str(),
            &[],
        )
        .await
        .map_err(ArchiveError::database("reading the partition's erasures"))?
        .get(0);
    let seed = crate::digest::seed();
    // First in the order the rows lie in the partition's blocks (no index
    // read): a trail written by one session at a time lies in id order.
    // When a change comes before one already written, the file is begun
    // again, read by id; at once where an erasure rewrote changes.
    let mut by = match erased {
        true => Slices::Ids,
        false => Slices::Blocks(u32::try_from(blocks).unwrap_or(u32::MAX)),
    };
    let decoded = loop {
        let writer = ParquetWriter::create(path).map_err(|e| ArchiveError::parquet(path, e))?;
        // This task only receives the COPY data; a thread of its own (at
        // the archive's priority) decodes, joins and hashes the rows, and
        // another encodes them, so the three overlap and none of the work
        // but the receiving runs on the caller's thread.
        let (feed, fed) = tokio::sync::mpsc::channel::<Feed>(4);
        let worker = {
            let (path, partition) = (path.to_path_buf(), partition.to_string());
            let decoder = Decoder::new(ROW_GROUP, by_bytes, tables.clone(), seed);
            std::thread::spawn(move || {
                priority.enter();
                decode(writer, decoder, fed, priority, &path, &partition)
            })
        };
        let mut pacer = Pacer::new(priority);
        let read = read_slices(&tx, partition, by, &feed, &mut pacer).await;
        drop(feed);
        let decoded = worker
            .join()
            .map_err(|_| ArchiveError::Mismatch(format!("writing {} failed unexpectedly", path.display())))?;
        read?;
        let decoded = decoded?;
        match by {
            Slices::Blocks(_) if decoded.disordered => by = Slices::Ids,
            _ if decoded.disordered => {
                return Err(ArchiveError::Mismatch(format!(
                    "the changes of partition {partition} read by id came out of id order"
                )));
            }
            _ => break decoded,
        }
    };
    tx.rollback()
        .await
        .map_err(ArchiveError::database("ending the read of the partition"))?;
    Ok(Written {
        erasure,
        rows: decoded.rows,
        rows_sha256: crate::hex(&decoded.sha256.finalize()),
        check: decoded.check,
        seed,
        first: decoded.first,
        last: decoded.last,
    })
}

/// Ids of the partition read at a time: the transaction records held are
/// those of one slice's changes at most.
const SLICE: i64 = ROW_GROUP as i64;

/// Blocks of the partition read at a time at first; then as many as held
/// about [`SLICE`] changes in the slice before.
const FIRST_BLOCKS: u32 = 256;

/// The most blocks of the partition read at a time (1 GiB in blocks of
/// 8 KiB), where the slices before were (nearly) empty.
const MOST_BLOCKS: u32 = 1 << 17;

/// How the partition is read, a slice at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slices {
    /// By ranges of its blocks ([`COPY_CHANGES_BY_BLOCKS`]), of which it
    /// had this many when the read began (the last range reaches past
    /// them).
    Blocks(u32),
    /// By ranges of ids ([`COPY_CHANGES`]), through its key.
    Ids,
}

/// What the decoding thread is fed, slice by slice: the COPY data of the
/// changes (the server sends a message a row; their data goes copied
/// into one buffer a batch), then, once it has answered with their
/// transactions' keys, those records.
enum Feed {
    /// The COPY data of some of the slice's changes, in order.
    Changes(Bytes),
    /// The slice's changes are all there: the keys of their transaction
    /// records, please, the sets of changed fields for the server to
    /// sort, and how many changes the slice held.
    SliceEnd(tokio::sync::oneshot::Sender<SliceEnded>),
    /// Every slice was read: the keys of the transaction records of the
    /// changes still held back, please.
    Flush(tokio::sync::oneshot::Sender<Vec<(i64, i16)>>),
    /// The transaction records asked for and those sets sorted (the
    /// changes ready are joined).
    Transactions(Transactions, Vec<(i32, Vec<i32>)>),
}

/// The answer to [`Feed::SliceEnd`]: the keys of the slice's transaction
/// records (least txid first), the sets of changed fields to sort, and
/// how many changes the slice held.
type SliceEnded = (Vec<(i64, i16)>, ToSort, usize);

/// Bytes of COPY data sent to the decoding thread at a time. Each row's
/// message is copied in and dropped where it was received: the decoding
/// thread touches none of the counts of the buffers the messages share.
const BATCH: usize = 64 << 10;

/// A field of a row as the server sent it in binary (any type).
struct Raw<'a>(&'a [u8]);

impl<'a> tokio_postgres::types::FromSql<'a> for Raw<'a> {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw))
    }

    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }
}

/// Reads the partition a slice at a time, `by` ranges of blocks or of ids
/// (the slice's changes, then the transaction records of the keys the
/// decoding thread found in them) and feeds it to the decoding thread;
/// stops early, without an error of its own, when that thread has
/// stopped (it reports why, or that the blocks' order was not the ids').
async fn read_slices(
    tx: &tokio_postgres::Transaction<'_>,
    partition: &str,
    by: Slices,
    feed: &tokio::sync::mpsc::Sender<Feed>,
    pacer: &mut Pacer,
) -> Result<(), ArchiveError> {
    let partition_sql = pgtrail_capture::quote::ident(partition);
    let next_id = NEXT_ID.replace("{partition}", &partition_sql);
    let next_id = next_id.as_str();
    let first = |from: i64| async move {
        tx.query_one(next_id, &[&from])
            .await
            .map_err(ArchiveError::database(
                "finding the partition's next slice of ids",
            ))
            .map(|row| row.get::<_, Option<i64>>(0))
    };
    // The next slice: its first id, or its first block and how many.
    let mut next = match by {
        Slices::Ids => first(i64::MIN).await?,
        Slices::Blocks(_) => None,
    };
    let (mut block, mut step) = (matches!(by, Slices::Blocks(_)).then_some(0u32), FIRST_BLOCKS);
    loop {
        let (sql, until) = match by {
            Slices::Ids => {
                let Some(from) = next else { break };
                let until = from.saturating_add(SLICE);
                let sql = COPY_CHANGES
                    .replace("{partition}", &partition_sql)
                    .replace("{from}", &from.to_string())
                    .replace("{until}", &until.to_string());
                (sql, until)
            }
            Slices::Blocks(blocks) => {
                let Some(from) = block else { break };
                // The last range reaches past the blocks there were.
                let until = from.saturating_add(step);
                let condition = blocks_condition(from, (until < blocks).then_some(until));
                block = (until < blocks).then_some(until);
                let sql = COPY_CHANGES_BY_BLOCKS
                    .replace("{partition}", &partition_sql)
                    .replace("{blocks}", &condition);
                (sql, 0)
            }
        };
        let what = "reading the partition";
        let stream = tx
            .copy_out(sql.as_str())
            .await
            .map_err(ArchiveError::database(what))?;
        futures_util::pin_mut!(stream);
        let mut batch = Vec::with_capacity(BATCH + 1024);
        while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
            batch.extend_from_slice(&chunk.map_err(ArchiveError::database(what))?);
            if batch.len() >= BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH + 1024));
                if feed.send(Feed::Changes(full.into())).await.is_err() {
                    return Ok(());
                }
                pacer.pace().await;
            }
        }
        let (ask, answer) = tokio::sync::oneshot::channel();
        if feed.send(Feed::Changes(batch.into())).await.is_err()
            || feed.send(Feed::SliceEnd(ask)).await.is_err()
        {
            return Ok(());
        }
        let Ok((keys, to_sort, rows)) = answer.await else {
            return Ok(());
        };
        // As many blocks as held about a slice's changes in this one.
        step = match u64::try_from(rows) {
            Ok(0) | Err(_) => step.saturating_mul(2),
            Ok(rows) => (SLICE as u64 * u64::from(step) / rows)
                .max(1)
                .try_into()
                .unwrap_or(u32::MAX),
        }
        .min(MOST_BLOCKS);
        let transactions = records(tx, &keys).await?;
        let mut sorted_fields = Vec::new();
        if !to_sort.is_empty() {
            let what = "sorting changed fields in the database's collation";
            for row in tx
                .query(SORT_KEYS, &[&to_sort.sets, &to_sort.positions, &to_sort.keys])
                .await
                .map_err(ArchiveError::database(what))?
            {
                let set: i32 = row.try_get(0).map_err(ArchiveError::database(what))?;
                let positions: Vec<i32> = row.try_get(1).map_err(ArchiveError::database(what))?;
                sorted_fields.push((set, positions));
            }
        }
        if feed
            .send(Feed::Transactions(transactions, sorted_fields))
            .await
            .is_err()
        {
            return Ok(());
        }
        if by == Slices::Ids {
            next = match until {
                i64::MAX => None,
                _ => first(until).await?,
            };
        }
    }
    // The changes the last slice held back.
    let (ask, answer) = tokio::sync::oneshot::channel();
    if feed.send(Feed::Flush(ask)).await.is_err() {
        return Ok(());
    }
    let Ok(keys) = answer.await else {
        return Ok(());
    };
    let transactions = records(tx, &keys).await?;
    let _ = feed.send(Feed::Transactions(transactions, Vec::new())).await;
    Ok(())
}

/// The transaction records of `keys` (least txid first).
async fn records(
    tx: &tokio_postgres::Transaction<'_>,
    keys: &[(i64, i16)],
) -> Result<Transactions, ArchiveError> {
    let mut transactions = Transactions::default();
    if let (Some(least), Some(greatest)) = (keys.first(), keys.last()) {
        let txids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let ctxs: Vec<i16> = keys.iter().map(|k| k.1).collect();
        let what = "reading the partition's transaction records";
        for row in tx
            // Planned for these keys each time (no generic plan).
            .query(TRANSACTIONS_BY_KEY, &[&txids, &ctxs, &least.0, &greatest.0])
            .await
            .map_err(ArchiveError::database(what))?
        {
            let mut fields = Vec::with_capacity(row.len());
            for i in 0..row.len() {
                let field: Option<Raw<'_>> = row.try_get(i).map_err(ArchiveError::database(what))?;
                fields.push(field.map(|f| f.0));
            }
            transactions
                .insert(fields)
                .map_err(|e| ArchiveError::Mismatch(e.to_string()))?;
        }
    }
    Ok(transactions)
}

/// What the decoding thread made of the partition.
struct Decoded {
    rows: i64,
    /// The SHA-256 of the rows.
    sha256: Sha256,
    /// The check of their columns.
    check: u128,
    first: Option<(i64, i64)>,
    last: Option<(i64, i64)>,
    /// Whether a slice's changes came before those of the slices before
    /// (the file is not complete).
    disordered: bool,
}

/// The decoding thread: joins and hashes the rows it is fed into
/// `decoder`, hands each full row group to an encoding thread of its own
/// (at `priority`) and finishes the file once the feed ends.
fn decode(
    writer: ParquetWriter,
    mut decoder: Decoder,
    fed: tokio::sync::mpsc::Receiver<Feed>,
    priority: Priority,
    path: &Path,
    partition: &str,
) -> Result<Decoded, ArchiveError> {
    // The channel holds a row group or two at most.
    let (sender, receiver) = std::sync::mpsc::sync_channel::<Columns>(1);
    let encoder = std::thread::spawn(move || {
        priority.enter();
        encode(writer, receiver)
    });
    let fed = feed_decoder(&mut decoder, fed, &sender, partition);
    if matches!(fed, Ok(false)) && decoder.columns.rows > 0 {
        let _ = sender.send(decoder.take());
    }
    drop(sender);
    let encoded = encoder
        .join()
        .map_err(|_| ArchiveError::Mismatch(format!("writing {} failed unexpectedly", path.display())))?;
    fed?;
    encoded.map_err(|e| ArchiveError::parquet(path, e))?;
    Ok(Decoded {
        rows: decoder.rows,
        sha256: decoder.sha256,
        check: decoder.check.value(),
        first: decoder.first,
        last: decoder.last,
        disordered: decoder.disordered,
    })
}

/// Decodes what is fed, slice by slice, sending each full row group to
/// the encoder; true when the encoder stopped (its error is reported by
/// the caller).
fn feed_decoder(
    decoder: &mut Decoder,
    mut fed: tokio::sync::mpsc::Receiver<Feed>,
    sender: &std::sync::mpsc::SyncSender<Columns>,
    partition: &str,
) -> Result<bool, ArchiveError> {
    // Whether a slice's changes are being read, and whether they were all
    // read and its records are awaited.
    let (mut in_slice, mut awaiting) = (false, false);
    let mut full = |columns: Columns| sender.send(columns).is_ok();
    let ended_early = || ArchiveError::Mismatch(format!("the COPY of partition {partition} ended early"));
    while let Some(feed) = fed.blocking_recv() {
        match feed {
            Feed::Changes(data) => {
                if awaiting {
                    return Err(ended_early());
                }
                in_slice = true;
                decoder
                    .feed(data)
                    .map_err(|e| ArchiveError::Mismatch(e.to_string()))?;
            }
            Feed::SliceEnd(ask) => {
                if !in_slice || awaiting || !decoder.finished() {
                    return Err(ended_early());
                }
                awaiting = true;
                let to_sort = decoder.fields_to_sort();
                let rows = decoder.slice_rows();
                if ask.send((decoder.keys(false), to_sort, rows)).is_err() {
                    return Err(ended_early());
                }
            }
            Feed::Flush(ask) => {
                if in_slice || awaiting {
                    return Err(ended_early());
                }
                awaiting = true;
                if ask.send(decoder.keys(true)).is_err() {
                    return Err(ended_early());
                }
            }
            Feed::Transactions(transactions, sorted_fields) => {
                if !awaiting {
                    return Err(ended_early());
                }
                (in_slice, awaiting) = (false, false);
                if !decoder
                    .join(transactions, sorted_fields, &mut full)
                    .map_err(|e| ArchiveError::Mismatch(e.to_string()))?
                {
                    return Ok(true);
                }
            }
        }
    }
    if in_slice || decoder.unjoined() > 0 {
        return Err(ended_early());
    }
    Ok(false)
}

/// Writes the row groups it receives, then finishes the file.
fn encode(
    mut writer: ParquetWriter,
    groups: std::sync::mpsc::Receiver<Columns>,
) -> parquet::errors::Result<()> {
    for mut columns in groups {
        // Its values' buffers are released here, on this thread.
        writer.write_columns(&mut columns)?;
    }
    crate::failpoint("archive:parquet-partial");
    writer.finish()
}

/// A file as read back.
pub(crate) struct ReadBack {
    pub rows: i64,
    pub rows_sha256: String,
    pub sha256: String,
    pub ordered: bool,
}

/// Reads a file back a row group at a time (memory bounded by a row
/// group whatever the file's size): its SHA-256, then the SHA-256 of its
/// rows taken from the columns, both from one opening of the file.
pub(crate) fn read_back(path: &Path) -> Result<ReadBack, ArchiveError> {
    let back = read_back_with(path, Sha256::new())?;
    Ok(ReadBack {
        rows: back.rows,
        rows_sha256: crate::hex(&back.digest.finalize()),
        sha256: back.sha256,
        ordered: back.ordered,
    })
}

/// A file as read back, its rows fed into a digest of the caller's.
pub(crate) struct ReadBackWith<D> {
    pub rows: i64,
    pub digest: D,
    pub sha256: String,
    pub ordered: bool,
}

/// What a file's row groups are fed into as they are read back: the rows
/// (a [`RowDigest`], e.g. their SHA-256) or the columns in bulk (the
/// [`ColumnCheck`] an archive compares).
pub(crate) trait GroupDigest {
    /// Feeds row group `g`; its change ids in file order.
    fn feed(&mut self, reader: &ArchiveReader<std::fs::File>, g: usize) -> Result<Vec<i64>, ReadError>;
}

impl<D: RowDigest> GroupDigest for D {
    fn feed(&mut self, reader: &ArchiveReader<std::fs::File>, g: usize) -> Result<Vec<i64>, ReadError> {
        reader.digest_group(g, self)
    }
}

impl GroupDigest for ColumnCheck {
    fn feed(&mut self, reader: &ArchiveReader<std::fs::File>, g: usize) -> Result<Vec<i64>, ReadError> {
        reader.check_group(g, self)
    }
}

/// [`read_back`], the rows fed into `digest`.
pub(crate) fn read_back_with<D: GroupDigest>(
    path: &Path,
    digest: D,
) -> Result<ReadBackWith<D>, ArchiveError> {
    read_back_paced(path, digest, &mut Pacer::new(Priority::Normal))
}

/// [`read_back_with`], pausing between row groups as `pacer` says.
fn read_back_paced<D: GroupDigest>(
    path: &Path,
    mut digest: D,
    pacer: &mut Pacer,
) -> Result<ReadBackWith<D>, ArchiveError> {
    let io = |what: &str| {
        let what = format!("{what} {}", path.display());
        move |source| ArchiveError::Io { what, source }
    };
    let mut file = std::fs::File::open(path).map_err(io("opening"))?;
    let sha256 = sha256_of(&mut file).map_err(io("reading"))?;
    let unreadable = |e: crate::parquet_file::ReadError| ArchiveError::Unreadable {
        file: path.display().to_string(),
        reason: e.to_string(),
    };
    let reader = ArchiveReader::new(file).map_err(unreadable)?;
    let mut ordered = true;
    let mut last = i64::MIN;
    for g in 0..reader.groups() {
        for id in digest.feed(&reader, g).map_err(unreadable)? {
            if id <= last {
                ordered = false;
            }
            last = id;
        }
        pacer.pace_blocking();
    }
    Ok(ReadBackWith {
        rows: reader.rows() as i64,
        digest,
        sha256,
        ordered,
    })
}

/// SHA-256 of what is left to read of `file`, hex.
pub(crate) fn sha256_of(file: &mut impl std::io::Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(crate::hex(&hasher.finalize()))
}

/// The SHA-256 of an archive file's rows, recomputed from the file as
/// the manifest's `rows_sha256` was computed from the database's rows.
pub fn file_rows_sha256(path: &Path) -> Result<String, ArchiveError> {
    Ok(read_back(path)?.rows_sha256)
}

/// SHA-256 of a file, hex.
pub fn file_sha256(path: &Path) -> Result<String, ArchiveError> {
    let mut file = std::fs::File::open(path).map_err(|e| ArchiveError::Io {
        what: format!("opening {}", path.display()),
        source: e,
    })?;
    sha256_of(&mut file).map_err(|e| ArchiveError::Io {
        what: format!("reading {}", path.display()),
        source: e,
    })
}

pub(crate) fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), ArchiveError> {
    let path = dir.join(format!("{}.json", manifest.partition));
    let temporary = dir.join(format!("{}.json.partial", manifest.partition));
    let text = serde_json::to_string_pretty(manifest).map_err(|e| ArchiveError::Mismatch(e.to_string()))?;
    let io = |what: String| move |source| ArchiveError::Io { what, source };
    std::fs::write(&temporary, text + "\n").map_err(io(format!("writing {}", temporary.display())))?;
    std::fs::rename(&temporary, &path).map_err(io(format!("renaming {}", temporary.display())))?;
    Ok(())
}

/// Detaches and drops the partition and records its archive, in one
/// transaction; returns how long the trail's lock was held (ms).
async fn detach_and_drop(
    client: &mut Client,
    manifest: &Manifest,
    partition: &Partition,
    erasure: i64,
) -> Result<f64, ArchiveError> {
    let table = pgtrail_capture::quote::ident(&manifest.partition);
    let tx = client
        .transaction()
        .await
        .map_err(ArchiveError::database("starting the drop"))?;
    // No seal or erasure runs from here to the commit (an erasure takes
    // this lock before it touches the trail: no deadlock). Waited for
    // without a timeout: a seal may take longer than the drop may wait
    // for the trail, and nothing is locked yet.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&crate::SEAL_LOCK])
        .await
        .map_err(ArchiveError::database(
            "waiting for a seal or an erasure to finish",
        ))?;
    tx.batch_execute("SET LOCAL lock_timeout = '5s'")
        .await
        .map_err(ArchiveError::database("setting the lock timeout"))?;
    // The partition is counted before the trail is locked: the SHARE lock
    // on the partition alone blocks only writes into it (none are due in a
    // partition past its retention), so writers of the trail wait only for
    // the detach, the record and the drop.
    tx.batch_execute(&format!("LOCK TABLE pgtrail.{table} IN SHARE MODE"))
        .await
        .map_err(ArchiveError::database("locking the partition"))?;
    let row = tx
        .query_one(&format!("SELECT count(*), max(id) FROM pgtrail.{table}"), &[])
        .await
        .map_err(ArchiveError::database("counting the partition"))?;
    let (count, max): (i64, Option<i64>) = (row.get(0), row.get(1));
    let locked = Instant::now();
    tx.batch_execute(&format!(
        "ALTER TABLE pgtrail.change DETACH PARTITION pgtrail.{table}"
    ))
    .await
    .map_err(ArchiveError::database("detaching the partition"))?;
    crate::failpoint("archive:detached");
    // An erasure that committed since the partition was read (none runs
    // now: the seal lock).
    let last_erasure: i64 = tx
        .query_one("SELECT coalesce(max(id), 0) FROM pgtrail.erasure", &[])
        .await
        .map_err(ArchiveError::database("reading the last erasure"))?
        .get(0);
    if last_erasure != erasure {
        return Err(ArchiveError::Mismatch(format!(
            "erasure {last_erasure} ran while partition {} was archived; nothing was dropped and the file was removed, run archive again",
            manifest.partition
        )));
    }
    if count != manifest.rows || max != manifest.last_id {
        return Err(ArchiveError::Mismatch(format!(
            "partition {} changed while it was archived ({} rows now, {} archived); nothing was dropped, run archive again",
            manifest.partition, count, manifest.rows
        )));
    }
    tx.execute(
        "INSERT INTO pgtrail.archive (partition, from_at, until_at, first_id, last_id, first_at, last_at, row_count,
                                      file, sha256, seal_id, pgtrail_version)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        &[
            &manifest.partition,
            &partition.from_at,
            &partition.until_at,
            &manifest.first_id,
            &manifest.last_id,
            &manifest.first_at,
            &manifest.last_at,
            &manifest.rows,
            &manifest.file,
            &manifest.sha256,
            &manifest.seal.id,
            &manifest.pgtrail_version,
        ],
    )
    .await
    .map_err(ArchiveError::database("recording the archive"))?;
    crate::failpoint("archive:recorded");
    tx.batch_execute(&format!("DROP TABLE pgtrail.{table}"))
        .await
        .map_err(ArchiveError::database("dropping the archived partition"))?;
    crate::failpoint("archive:dropped");
    tx.commit()
        .await
        .map_err(ArchiveError::database("committing the drop"))?;
    Ok(locked.elapsed().as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(snapshot: &str, era: i32) -> LastSeal {
        LastSeal {
            id: 1,
            tree_size: 1,
            root: String::new(),
            snapshot: snapshot.to_string(),
            era,
        }
    }

    /// Below the bound every txid is of an earlier era or before the
    /// snapshot's xmin; a snapshot that does not read leaves no bound.
    #[test]
    fn the_visible_bound_is_the_era_and_the_snapshot_xmin() {
        assert_eq!(seal("900:905:901,903", 0).visible_below(), 900);
        assert_eq!(seal("900:900:", 2).visible_below(), (2 << 48) + 900);
        assert_eq!(seal("", 1).visible_below(), i64::MIN);
        assert_eq!(seal("x:9:", 1).visible_below(), i64::MIN);
        assert_eq!(seal(&format!("{}:0:", 1i64 << 48), 1).visible_below(), i64::MIN);
        assert_eq!(seal("5:6:", -1).visible_below(), i64::MIN);
    }
}
