//! The follower's loop over SQL: take the follower lock, read a batch from
//! the slot (`pg_logical_slot_peek_binary_changes`), write its transactions
//! and the position in one statement of one transaction (publishing them to
//! the sink, if any, before it commits), then advance the slot; until the
//! slot is drained (`--once`) or a signal asks it to stop. The lock, the
//! position and the batch writing are shared with [`crate::stream`].

use std::collections::BTreeMap;

use tokio_postgres::Client;
use tracing::{info, warn};

use crate::context_rows::ContextRow;
use crate::copy_rows::{COLUMNS, CopyRows, TrailFields};
use crate::pgoutput::{self, Value};
use crate::rows;
use crate::rows::JsonText;
use crate::signing::Verifier;
use crate::sink::{Sink, SinkChange};
use crate::transaction::{self, Assembler, ContextMessage, Transaction};
use crate::values::{JsonRow, Known, Relations, rows_to_json};
use crate::{FollowError, FollowOptions, FollowReport};

/// The advisory lock a follower holds while it runs (session level): a
/// second follower waits (or, with `--once`, gives up) instead of writing
/// the same transactions.
pub const FOLLOW_LOCK: i64 = 8101176133498366320;

/// `X/Y`, PostgreSQL's text form of an LSN.
pub fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

/// Reads an LSN in its text form.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (high, low) = text.split_once('/')?;
    Some((u64::from_str_radix(high, 16).ok()? << 32) | u64::from_str_radix(low, 16).ok()?)
}

#[derive(Clone)]
pub(crate) struct Slot {
    pub(crate) name: String,
    /// current_database(): sinks name their subjects by it.
    pub(crate) database: String,
    /// The end of the last transaction in the trail.
    pub(crate) position: u64,
}

/// Runs the follower on `client` until the slot is drained (`options.once`)
/// or `stop` resolves.
pub async fn run(
    client: &mut Client,
    options: &FollowOptions,
    stop: impl std::future::Future<Output = ()>,
) -> Result<FollowReport, FollowError> {
    run_with(client, options, None, stop).await
}

/// [`run`], publishing each batch to `sink` too (before the trail's
/// transaction commits; with `options.write_trail` false, instead of the
/// trail). With `options.replication` the slot is streamed
/// ([`crate::stream`]), else read over SQL.
pub async fn run_with(
    client: &mut Client,
    options: &FollowOptions,
    sink: Option<&mut dyn Sink>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<FollowReport, FollowError> {
    if !options.write_trail && sink.is_none() {
        return Err(FollowError::NoDestination);
    }
    match &options.replication {
        Some(replication) => crate::stream::run(client, options, replication, sink, stop).await,
        None => run_sql(client, options, sink, stop).await,
    }
}

async fn run_sql(
    client: &mut Client,
    options: &FollowOptions,
    mut sink: Option<&mut dyn Sink>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<FollowReport, FollowError> {
    tokio::pin!(stop);
    let slot = prepare(client, options, true).await?;
    let mut slot = slot;
    let mut relations = Relations::new(options.values);
    let mut report = FollowReport {
        slot: slot.name.clone(),
        ..FollowReport::default()
    };
    let mut verifier = Verifier::load(client).await?;
    let mut drain_to = insert_lsn(client).await?;
    let mut waited = 0;
    loop {
        let batch = read_batch(client, &slot, options.batch_size, &mut verifier).await?;
        let (transactions, relation_versions, last_lsn) = match batch {
            Read::Batch(transactions, versions, last) => (transactions, versions, last),
            Read::Empty { upto } => {
                // Nothing committed before `upto` is published: the slot
                // moves on, so its lag shows what is really left to read.
                if upto > slot.position {
                    advance(client, &slot.name, upto).await?;
                    slot.position = upto;
                }
                if options.once {
                    // Commits made asynchronously (synchronous_commit = off)
                    // reach the slot when the WAL writer flushes them: wait
                    // for what was written before the follower started, and
                    // for its own writes (the slot then moves past them).
                    if upto < drain_to && waited < 100 {
                        waited += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                    break;
                }
                tokio::select! {
                    () = &mut stop => break,
                    () = tokio::time::sleep(options.poll_interval) => continue,
                }
            }
        };
        let written = write_batch(
            client,
            &slot,
            &mut relations,
            &transactions,
            &relation_versions,
            options,
            sink.as_deref_mut(),
        )
        .await?;
        let (written_tx, written_changes) = (written.transactions, written.changes);
        let target = transactions
            .iter()
            .map(|t| t.end_lsn)
            .max()
            .unwrap_or(last_lsn)
            .max(slot.position);
        advance(client, &slot.name, target).await?;
        slot.position = target;
        drain_to = insert_lsn(client).await?;
        waited = 0;
        report.transactions += written_tx;
        report.changes += written_changes;
        report.published += written.published;
        report.unsigned_transactions += written.unsigned;
        let rejected: usize = transactions.iter().map(|t| t.rejected).sum();
        report.rejected_messages += rejected as u64;
        report.position = Some(lsn_text(target));
        let lag: Option<i64> = client
            .query_one(
                "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1::text::pg_lsn)::bigint",
                &[&lsn_text(target)],
            )
            .await
            .ok()
            .and_then(|r| r.get(0));
        info!(
            transactions = written_tx,
            changes = written_changes,
            published = written.published,
            rejected_messages = report.rejected_messages,
            position = %lsn_text(target),
            lag_bytes = lag.unwrap_or(0),
            "pgtrail follow: wrote a batch"
        );
        if futures_ready(&mut stop) {
            break;
        }
    }
    unlock(client).await?;
    Ok(report)
}

/// Releases the follower lock.
pub(crate) async fn unlock(client: &Client) -> Result<(), FollowError> {
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&FOLLOW_LOCK])
        .await
        .map_err(FollowError::database("releasing the follower lock"))?;
    Ok(())
}

/// Where the server inserts WAL now.
pub(crate) async fn insert_lsn(client: &Client) -> Result<u64, FollowError> {
    Ok(client
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .map_err(FollowError::database("reading the WAL position"))?
        .get::<_, Option<String>>(0)
        .and_then(|t| parse_lsn(&t))
        .unwrap_or(0))
}

/// Whether `stop` has resolved, without waiting.
pub(crate) fn futures_ready(stop: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>) -> bool {
    let waker = std::task::Waker::noop();
    let mut context = std::task::Context::from_waker(waker);
    stop.as_mut().poll(&mut context).is_ready()
}

/// Takes the follower lock, checks the slot and reads the stored position;
/// with `move_slot`, moves the slot up to it if a follower stopped between
/// its commit and the slot's advance (a stream starts there instead).
pub(crate) async fn prepare(
    client: &Client,
    options: &FollowOptions,
    move_slot: bool,
) -> Result<Slot, FollowError> {
    let installed: bool = client
        .query_one("SELECT to_regproc('pgtrail._follow_begin') IS NOT NULL", &[])
        .await
        .map_err(FollowError::database("looking for pgtrail"))?
        .get(0);
    if !installed {
        return Err(FollowError::NotInstalled);
    }
    let locked: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&FOLLOW_LOCK])
        .await
        .map_err(FollowError::database("taking the follower lock"))?
        .get(0);
    if !locked {
        if options.once {
            return Err(FollowError::Busy);
        }
        info!("pgtrail follow: another follower is running; waiting for it to stop");
        client
            .execute("SELECT pg_advisory_lock($1)", &[&FOLLOW_LOCK])
            .await
            .map_err(FollowError::database("waiting for the follower lock"))?;
    }
    let row = client
        .query_one(
            "SELECT pgtrail.wal_slot(), current_database()::text,
                    (SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = pgtrail.wal_slot()),
                    (SELECT lsn::text FROM pgtrail.follow_position WHERE slot = pgtrail.wal_slot())",
            &[],
        )
        .await
        .map_err(FollowError::database("reading the slot"))?;
    let name: String = row.get(0);
    let database: String = row.get(1);
    let Some(confirmed) = row.get::<_, Option<String>>(2) else {
        return Err(FollowError::NoSlot { slot: name });
    };
    let confirmed = parse_lsn(&confirmed).unwrap_or(0);
    let stored = row
        .get::<_, Option<String>>(3)
        .and_then(|t| parse_lsn(&t))
        .unwrap_or(0);
    if move_slot && stored > confirmed {
        info!(position = %lsn_text(stored), "pgtrail follow: moving the slot to the position stored with the trail");
        advance(client, &name, stored).await?;
    }
    Ok(Slot {
        name,
        database,
        position: stored.max(confirmed),
    })
}

enum Read {
    /// Whole transactions (those at or before the position left out), the
    /// relation versions their changes refer to, the last LSN read.
    Batch(Vec<Transaction>, Vec<transaction::RelationVersion>, u64),
    /// Nothing published committed before `upto`.
    Empty { upto: u64 },
}

/// The next batch of whole transactions committed before the WAL flushed
/// when it is read, their context messages checked by `verifier`.
async fn read_batch(
    client: &Client,
    slot: &Slot,
    size: i32,
    verifier: &mut Verifier,
) -> Result<Read, FollowError> {
    let upto: String = client
        .query_one("SELECT pg_current_wal_flush_lsn()::text", &[])
        .await
        .map_err(FollowError::database("reading the WAL position"))?
        .get(0);
    let rows = client
        .query(
            "SELECT lsn::text, data FROM pg_logical_slot_peek_binary_changes($1, $2::text::pg_lsn, $3,
                 'proto_version', '1', 'publication_names', 'pgtrail', 'messages', 'true')",
            &[&slot.name, &upto, &size],
        )
        .await
        .map_err(FollowError::database("reading the slot"))?;
    if rows.is_empty() {
        return Ok(Read::Empty {
            upto: parse_lsn(&upto).unwrap_or(0),
        });
    }
    let mut assembler = Assembler::verifying(std::mem::take(verifier));
    let mut transactions = Vec::new();
    let mut last = 0;
    for row in &rows {
        let data: Vec<u8> = row.get(1);
        last = last.max(parse_lsn(row.get::<_, &str>(0)).unwrap_or(0));
        let message = pgoutput::decode(&data).map_err(|e| FollowError::Protocol(e.to_string()))?;
        if assembler.key_may_be_stale(&message)
            && let Some(verifier) = assembler.verifier_mut()
        {
            verifier.reload(client).await?;
        }
        if let Some(tx) = assembler.push(message) {
            if tx.end_lsn > slot.position {
                transactions.push(tx);
            }
        }
    }
    let (relations, kept) = assembler.finish();
    *verifier = kept.unwrap_or_default();
    Ok(Read::Batch(transactions, relations, last))
}

/// Writes the transactions (each with the position after it) in one
/// database transaction. Returns the transactions and changes written.
pub(crate) async fn write_batch(
    client: &mut Client,
    slot: &Slot,
    relations: &mut Relations,
    transactions: &[Transaction],
    versions: &[transaction::RelationVersion],
    options: &FollowOptions,
    sink: Option<&mut (dyn Sink + '_)>,
) -> Result<Written, FollowError> {
    let batch = build_batch(client, relations, transactions, versions).await?;
    commit_batch(client, slot, &batch, options.write_trail, sink).await
}

/// The trail rows of `transactions` (values, keys, diffs and markers, by
/// the tables' settings as they are now), ready for [`commit_batch`]:
/// reads the catalog and the settings on `client`, writes nothing.
pub(crate) async fn build_batch(
    client: &Client,
    relations: &mut Relations,
    transactions: &[Transaction],
    versions: &[transaction::RelationVersion],
) -> Result<Batch, FollowError> {
    // Every row of the batch as JSON, one statement per relation version.
    let mut rows_of: BTreeMap<usize, Vec<&[Value]>> = BTreeMap::new();
    for tx in transactions {
        for change in &tx.changes {
            let rows = rows_of.entry(change.relation).or_default();
            for side in [&change.old, &change.new].into_iter().flatten() {
                rows.push(side.as_slice());
            }
        }
    }
    let mut json_of: BTreeMap<usize, (Option<i32>, Known, std::vec::IntoIter<JsonRow>)> = BTreeMap::new();
    for (version, rows) in rows_of {
        let Some(relation) = versions.get(version) else {
            continue;
        };
        let known = relations.learn(client, relation).await?.clone();
        let json = match known.table_id {
            Some(_) => rows_to_json(client, &known, &rows).await?,
            None => Vec::new(),
        };
        json_of.insert(version, (known.table_id, known, json.into_iter()));
    }

    // The trail rows, computed here (rows.rs) from the tables' settings
    // as they are now. PostgreSQL 14 sends transactions that touched no
    // published table (the follower's own among them) as empty ones:
    // nothing to write, and writing the position for them would never end.
    let audited = audited_tables(client, json_of.values().filter_map(|(id, _, _)| *id)).await?;
    let mut batch = Batch {
        rejected: Rejections::of(transactions),
        ..Batch::default()
    };
    for tx in transactions.iter().filter(|tx| !tx.changes.is_empty()) {
        batch.lsn.push(lsn_text(tx.end_lsn));
        batch.xid.push(i64::from(tx.xid));
        batch.at.push(tx.commit_time);
        let index = i32::try_from(batch.lsn.len()).unwrap_or(i32::MAX);
        if tx.unsigned > 0 {
            batch.unsigned_tx.push(index);
            batch
                .unsigned_changes
                .push(i32::try_from(tx.unsigned).unwrap_or(i32::MAX));
        }
        let mut contexts: Vec<i64> = Vec::new();
        for change in &tx.changes {
            let Some((table_id, known, json)) = json_of.get_mut(&change.relation) else {
                continue;
            };
            let mut next = |present: bool| if present { json.next() } else { None };
            let old = next(change.old.is_some());
            let new = next(change.new.is_some());
            let Some(t) = table_id.and_then(|id| audited.tables.get(&id)) else {
                continue;
            };
            let names = || known.columns.iter().map(|(name, _)| name.as_str());
            let old = old.as_ref().map(|row| rows::fields(t, names(), row));
            let new = new.as_ref().map(|row| rows::fields(t, names(), row));
            let Some(row) = rows::trail_row(
                t,
                change.op,
                old.as_deref(),
                new.as_deref(),
                audited.secret.as_deref(),
            ) else {
                continue;
            };
            let ctx = context_number(change.ctx);
            if !contexts.contains(&change.ctx) {
                contexts.push(change.ctx);
                batch.ctx_tx.push(index);
                batch.ctx_ctx.push(ctx);
                batch.ctx_msg.push(tx.contexts.get(&change.ctx).cloned());
            }
            batch.tx.push(index);
            batch.ctx.push(ctx);
            batch.table.push(t.id);
            batch.op.push(i8::try_from(u32::from(change.op)).unwrap_or(0));
            batch.pk.push(row.pk);
            batch.old_pk.push(row.old_pk);
            batch.old.push(row.old_values);
            batch.new.push(row.new_values);
            batch.fields.push(row.changed_fields);
        }
        if tx.unfilled > 0 {
            warn!(
                xid = tx.xid,
                values = tx.unfilled,
                "pgtrail follow: unchanged TOASTed values without an old row (a table without REPLICA IDENTITY FULL) are recorded as null"
            );
        }
    }
    Ok(batch)
}

/// Writes `batch` (each transaction with the position after it) in one
/// database transaction on `client`, handing its changes to `sink` before
/// it commits; without `write_trail`, rolls it back once the sink has
/// them. Returns the transactions and changes written.
pub(crate) async fn commit_batch(
    client: &mut Client,
    slot: &Slot,
    batch: &Batch,
    write_trail: bool,
    sink: Option<&mut (dyn Sink + '_)>,
) -> Result<Written, FollowError> {
    let mut written = Written::default();
    if batch.lsn.is_empty() && (batch.rejected.is_empty() || !write_trail) {
        return Ok(written);
    }

    let db = client
        .transaction()
        .await
        .map_err(FollowError::database("starting the trail's transaction"))?;
    let (lsn_of, ids) = write_copy(&db, slot, batch, sink.is_some(), &mut written).await?;
    if let Some(sink) = sink {
        let changes = changes_for_sink(&db, &lsn_of, &ids).await?;
        written.published =
            sink.publish(&slot.database, &changes)
                .await
                .map_err(|error| FollowError::Sink {
                    sink: sink.describe(),
                    error,
                })?;
    }
    if write_trail {
        db.commit()
            .await
            .map_err(FollowError::database("committing the trail's transaction"))?;
    } else {
        // The rows were written only to read them as pgtrail.changes shows
        // them: the trail is not kept.
        db.rollback()
            .await
            .map_err(FollowError::database("rolling back the trail's rows"))?;
        written.changes = 0;
    }
    Ok(written)
}

/// The trail's txids and end LSNs of the transactions a batch wrote rows
/// for, in order, and the ids of those rows, in order.
type WrittenRows = (Vec<(i64, u64)>, Vec<i64>);

/// Writes `batch` by binary COPY into `pgtrail.change`, then its context
/// rows by binary COPY into `pgtrail.transaction` and the position with
/// `pgtrail._follow_write_position` (or both with
/// `pgtrail._follow_write_context`, the server reading the messages, when
/// one is not read here: [`ContextRow::of`]), after
/// `pgtrail._follow_begin` locked the stored position: transactions at or
/// before it are left out. With `want_ids` (a sink reads the rows back)
/// the ids are taken from the trail's sequence first and written with the
/// rows.
async fn write_copy(
    db: &tokio_postgres::Transaction<'_>,
    slot: &Slot,
    batch: &Batch,
    want_ids: bool,
    written: &mut Written,
) -> Result<WrittenRows, FollowError> {
    let begin = db
        .query_one(
            "SELECT stored_lsn::text, era, snapshot_xmax FROM pgtrail._follow_begin($1)",
            &[&slot.name],
        )
        .await
        .map_err(FollowError::database("reading the follower's position"))?;
    let position = begin.get::<_, Option<String>>(0).and_then(|t| parse_lsn(&t));
    let (era, xmax): (i64, i64) = (begin.get(1), begin.get(2));
    batch.rejected.write(db, slot, xmax, era).await?;

    // The transactions after the position: their index among those kept
    // (1-based, 0: left out), txid and commit time.
    let mut kept = vec![0i32; batch.lsn.len()];
    let mut txids: Vec<i64> = Vec::new();
    let mut times: Vec<std::time::SystemTime> = Vec::new();
    let mut last_lsn: Option<&str> = None;
    for (i, lsn) in batch.lsn.iter().enumerate() {
        let end = parse_lsn(lsn).unwrap_or(0);
        if position.is_some_and(|p| end <= p) {
            continue;
        }
        txids.push(full_txid(batch.xid[i], xmax, era));
        times.push(commit_time(batch.at[i]));
        kept[i] = i32::try_from(txids.len()).unwrap_or(i32::MAX);
        last_lsn = Some(lsn);
    }
    let Some(last_lsn) = last_lsn else {
        return Ok((Vec::new(), Vec::new()));
    };
    let kept_of = |tx: i32| -> Option<usize> {
        let index = usize::try_from(tx).ok()?.checked_sub(1)?;
        let k = *kept.get(index)?;
        (k > 0).then(|| usize::try_from(k - 1).unwrap_or(0))
    };
    let rows: Vec<usize> = (0..batch.tx.len())
        .filter(|&r| kept_of(batch.tx[r]).is_some())
        .collect();

    // Changed fields in the order the database sorts them (capture's
    // ARRAY(... ORDER BY f), the database's collation).
    let mut names: Vec<&str> = rows
        .iter()
        .filter_map(|&r| batch.fields[r].as_ref())
        .flatten()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    names.dedup();
    let rank: BTreeMap<String, usize> = if names.is_empty() {
        BTreeMap::new()
    } else {
        let sorted: Vec<String> = db
            .query_one(
                "SELECT array_agg(u.f ORDER BY u.f) FROM unnest($1::text[]) AS u(f)",
                &[&names],
            )
            .await
            .map_err(FollowError::database("sorting changed fields"))?
            .get(0);
        sorted.into_iter().enumerate().map(|(i, f)| (f, i)).collect()
    };
    let fields: Vec<Option<Vec<&str>>> = rows
        .iter()
        .map(|&r| {
            batch.fields[r].as_ref().map(|f| {
                let mut f: Vec<&str> = f.iter().map(String::as_str).collect();
                if f.len() > 1 {
                    f.sort_by_key(|name| rank.get(*name).copied().unwrap_or(usize::MAX));
                }
                f
            })
        })
        .collect();

    let ids: Vec<i64> = if want_ids && !rows.is_empty() {
        let count = i32::try_from(rows.len()).unwrap_or(i32::MAX);
        let mut ids: Vec<i64> = db
            .query_one(
                "SELECT array_agg(nextval(pg_get_serial_sequence('pgtrail.change', 'id')))
                 FROM generate_series(1, $1)",
                &[&count],
            )
            .await
            .map_err(FollowError::database("taking the trail rows' ids"))?
            .get(0);
        ids.sort_unstable();
        ids
    } else {
        Vec::new()
    };

    if !rows.is_empty() {
        let failed = || FollowError::database("writing decoded transactions to the trail");
        let statement = match want_ids {
            true => format!("COPY pgtrail.change (id, {COLUMNS}) FROM STDIN (FORMAT binary)"),
            false => format!("COPY pgtrail.change ({COLUMNS}) FROM STDIN (FORMAT binary)"),
        };
        let sink = db.copy_in(&statement).await.map_err(failed())?;
        let mut sink = std::pin::pin!(sink);
        let mut copy = CopyRows::new(want_ids);
        for (n, &r) in rows.iter().enumerate() {
            let k = kept_of(batch.tx[r]).unwrap_or(0);
            let index = usize::try_from(batch.tx[r] - 1).unwrap_or(0);
            copy.push(&TrailFields {
                id: ids.get(n).copied(),
                txid: txids[k],
                ctx: batch.ctx[r],
                table_id: batch.table[r],
                op: batch.op[r],
                changed_at: batch.at[index],
                pk: batch.pk[r].as_ref(),
                old_pk: batch.old_pk[r].as_ref(),
                old_values: batch.old[r].as_ref(),
                new_values: batch.new[r].as_ref(),
                changed_fields: fields[n].as_deref(),
            });
            if copy.full() {
                copy.send(&mut sink).await.map_err(failed())?;
            }
        }
        copy.finish(sink).await.map_err(failed())?;
    }

    let mut ctx_tx: Vec<i32> = Vec::new();
    let mut ctx_ctx: Vec<i16> = Vec::new();
    let mut ctx_msg: Vec<Option<&ContextMessage>> = Vec::new();
    for (i, &tx) in batch.ctx_tx.iter().enumerate() {
        if let Some(k) = kept_of(tx) {
            ctx_tx.push(i32::try_from(k + 1).unwrap_or(i32::MAX));
            ctx_ctx.push(batch.ctx_ctx[i]);
            ctx_msg.push(batch.ctx_msg[i].as_deref());
        }
    }
    // The pgtrail.transaction rows read here and copied, or, when a
    // message holds what is not read here as the server reads it, written
    // by the server from the messages.
    let context_rows: Option<Vec<ContextRow>> = ctx_tx
        .iter()
        .zip(&ctx_msg)
        .map(|(&tx, message)| {
            let at = *times.get(usize::try_from(tx - 1).ok()?)?;
            ContextRow::of(*message, at)
        })
        .collect();
    // A transaction that also wrote a trigger-mode table has its context
    // row already (the capture trigger wrote it), which COPY cannot skip:
    // then the batch's rows are written by the server instead, which skips
    // them. (A savepoint per batch, not a lookup per transaction.)
    let copied = match context_rows {
        Some(context_rows) if !context_rows.is_empty() => {
            db.batch_execute("SAVEPOINT pgtrail_context_rows")
                .await
                .map_err(FollowError::database(
                    "writing the context of decoded transactions",
                ))?;
            match copy_context_rows(db, &ctx_tx, &ctx_ctx, &context_rows, &txids).await {
                Ok(()) => {
                    db.batch_execute("RELEASE SAVEPOINT pgtrail_context_rows")
                        .await
                        .map_err(FollowError::database(
                            "writing the context of decoded transactions",
                        ))?;
                    Some(context_rows)
                }
                Err(FollowError::Database { error, .. })
                    if error.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) =>
                {
                    db.batch_execute(
                        "ROLLBACK TO SAVEPOINT pgtrail_context_rows; RELEASE SAVEPOINT pgtrail_context_rows",
                    )
                    .await
                    .map_err(FollowError::database(
                        "writing the context of decoded transactions",
                    ))?;
                    None
                }
                Err(other) => return Err(other),
            }
        }
        other => other,
    };
    match copied {
        Some(context_rows) => {
            let started: Vec<std::time::SystemTime> = context_rows.iter().map(|r| r.started_at).collect();
            db.execute(
                "SELECT pgtrail._follow_write_position($1, $2, $3, $4, $5, $6, $7)",
                &[&slot.name, &last_lsn, &txids, &times, &ctx_tx, &ctx_ctx, &started],
            )
            .await
            .map_err(FollowError::database("writing the follower's position"))?;
        }
        None => {
            db.execute(
                "SELECT pgtrail._follow_write_context($1, $2, $3, $4, $5, $6, $7)",
                &[&slot.name, &last_lsn, &txids, &times, &ctx_tx, &ctx_ctx, &ctx_msg],
            )
            .await
            .map_err(FollowError::database(
                "writing the context of decoded transactions",
            ))?;
        }
    }
    written.unsigned += record_unsigned(db, batch, &kept_of, &txids, &times).await?;

    // Per transaction with rows, in order: its txid and end LSN.
    let mut lsn_of: Vec<(i64, u64)> = Vec::new();
    let mut last: Option<usize> = None;
    for &r in &rows {
        let k = kept_of(batch.tx[r]).unwrap_or(0);
        if last != Some(k) {
            last = Some(k);
            let index = usize::try_from(batch.tx[r] - 1).unwrap_or(0);
            lsn_of.push((txids[k], parse_lsn(&batch.lsn[index]).unwrap_or(0)));
            written.transactions += 1;
        }
        written.changes += 1;
    }
    Ok((lsn_of, ids))
}

/// Writes `rows` into `pgtrail.transaction` by binary COPY: row `i` of
/// the transaction `ctx_tx[i]` (1-based into `txids`), context `ctx_ctx[i]`.
pub(crate) async fn copy_context_rows(
    db: &tokio_postgres::Transaction<'_>,
    ctx_tx: &[i32],
    ctx_ctx: &[i16],
    rows: &[ContextRow<'_>],
    txids: &[i64],
) -> Result<(), FollowError> {
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    use tokio_postgres::types::{ToSql, Type};

    if rows.is_empty() {
        return Ok(());
    }
    let failed = || FollowError::database("writing the context of decoded transactions");
    let copy = db
        .copy_in(
            "COPY pgtrail.transaction (txid, ctx, started_at, recorded_at, actor_id, actor_name, actor_type,
                 reason, context, db_user, db_role, application_name, client_addr, client_port, backend_pid)
             FROM STDIN (FORMAT binary)",
        )
        .await
        .map_err(failed())?;
    let types = [
        Type::INT8,
        Type::INT2,
        Type::TIMESTAMPTZ,
        Type::TIMESTAMPTZ,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::JSONB,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::INET,
        Type::INT4,
        Type::INT4,
    ];
    let writer = BinaryCopyInWriter::new(copy, &types);
    let mut writer = std::pin::pin!(writer);
    for ((&tx, ctx), row) in ctx_tx.iter().zip(ctx_ctx).zip(rows) {
        let Some(txid) = usize::try_from(tx - 1).ok().and_then(|i| txids.get(i)) else {
            continue;
        };
        let values: [&(dyn ToSql + Sync); 15] = [
            txid,
            ctx,
            &row.started_at,
            &row.recorded_at,
            &row.actor_id,
            &row.actor_name,
            &row.actor_type,
            &row.reason,
            &row.context,
            &row.db_user,
            &row.db_role,
            &row.application_name,
            &row.client_addr,
            &row.client_port,
            &row.backend_pid,
        ];
        writer.as_mut().write(&values).await.map_err(failed())?;
    }
    writer.finish().await.map_err(failed())?;
    Ok(())
}

/// Records in `pgtrail.wal_unsigned` (migration 0017) the transactions of
/// `batch` after the stored position whose changes came before any verified
/// context message: the context trigger was kept from emitting (a role set
/// its mark itself), or its message was rejected. In the batch's
/// transaction, so each is recorded once. Returns how many.
async fn record_unsigned(
    db: &tokio_postgres::Transaction<'_>,
    batch: &Batch,
    kept_of: &impl Fn(i32) -> Option<usize>,
    txids: &[i64],
    times: &[std::time::SystemTime],
) -> Result<u64, FollowError> {
    let mut txid: Vec<i64> = Vec::new();
    let mut changes: Vec<i32> = Vec::new();
    let mut at: Vec<std::time::SystemTime> = Vec::new();
    for (&tx, &n) in batch.unsigned_tx.iter().zip(&batch.unsigned_changes) {
        if let Some(k) = kept_of(tx) {
            txid.push(txids[k]);
            changes.push(n);
            at.push(times[k]);
        }
    }
    if txid.is_empty() {
        return Ok(0);
    }
    db.execute(
        "SELECT pgtrail._follow_record_unsigned($1, $2, $3)",
        &[&txid, &changes, &at],
    )
    .await
    .map_err(FollowError::database(
        "recording transactions without a signed context message",
    ))?;
    for (t, n) in txid.iter().zip(&changes) {
        warn!(
            txid = t,
            changes = n,
            "pgtrail follow: a transaction's changes came without a signed context message \
             (the context trigger was kept from emitting, or its message did not verify): \
             recorded without context, and in pgtrail.wal_unsigned"
        );
    }
    Ok(txid.len() as u64)
}

/// The trail's txid (as `txid_current()` plus the era gives it) of a recent
/// 32-bit xid, `xmax` being the snapshot's and `era` shifted already: the
/// arithmetic `pgtrail._follow_begin` gives the era and `xmax` for.
fn full_txid(xid: i64, xmax: i64, era: i64) -> i64 {
    let epoch = (xmax >> 32) - i64::from(xid > (xmax & 0xffff_ffff));
    ((epoch << 32) | xid) + era
}

/// A commit time in pgoutput's form (microseconds since 2000-01-01 UTC).
fn commit_time(at: i64) -> std::time::SystemTime {
    let epoch = std::time::UNIX_EPOCH + std::time::Duration::from_secs(946_684_800);
    let span = std::time::Duration::from_micros(at.unsigned_abs());
    if at >= 0 { epoch + span } else { epoch - span }
}

/// What one batch wrote.
#[derive(Debug, Default)]
pub(crate) struct Written {
    pub(crate) transactions: u64,
    pub(crate) changes: u64,
    pub(crate) published: u64,
    /// Transactions recorded in `pgtrail.wal_unsigned` (see [`record_unsigned`]).
    pub(crate) unsigned: u64,
}

/// A batch as the follower writes it: per transaction, per trail row, per
/// (transaction, ctx).
#[derive(Default)]
pub(crate) struct Batch {
    lsn: Vec<String>,
    xid: Vec<i64>,
    at: Vec<i64>,
    tx: Vec<i32>,
    ctx: Vec<i16>,
    table: Vec<i32>,
    op: Vec<i8>,
    pk: Vec<Option<JsonText>>,
    old_pk: Vec<Option<JsonText>>,
    old: Vec<Option<JsonText>>,
    new: Vec<Option<JsonText>>,
    fields: Vec<Option<Vec<String>>>,
    ctx_tx: Vec<i32>,
    ctx_ctx: Vec<i16>,
    ctx_msg: Vec<Option<std::sync::Arc<ContextMessage>>>,
    /// Per transaction with changes before any verified context message:
    /// its index (1-based, as `tx`) and how many.
    unsigned_tx: Vec<i32>,
    unsigned_changes: Vec<i32>,
    rejected: Rejections,
}

/// The context messages a batch's transactions held that the verifier
/// rejected, per transaction with any (whether or not it has trail rows),
/// stored with the batch (`pgtrail._follow_rejected`) for `pgtrail check`.
#[derive(Default)]
pub(crate) struct Rejections {
    xid: Vec<i64>,
    lsn: Vec<String>,
    end_lsn: Vec<String>,
    at: Vec<i64>,
    count: Vec<i32>,
    why: Vec<String>,
}

impl Rejections {
    fn of(transactions: &[Transaction]) -> Rejections {
        let mut out = Rejections::default();
        for tx in transactions {
            let Some((lsn, why)) = tx.last_rejected else {
                continue;
            };
            out.xid.push(i64::from(tx.xid));
            out.lsn.push(lsn_text(lsn));
            out.end_lsn.push(lsn_text(tx.end_lsn));
            out.at.push(tx.commit_time);
            out.count.push(i32::try_from(tx.rejected).unwrap_or(i32::MAX));
            out.why.push(why.to_string());
        }
        out
    }

    fn is_empty(&self) -> bool {
        self.xid.is_empty()
    }

    /// Adds them to `pgtrail.wal_rejected` in the batch's transaction `db`
    /// (txids as the trail has them: `xmax` and `era` of
    /// `pgtrail._follow_begin`). Transactions counted before are not
    /// counted again.
    async fn write(
        &self,
        db: &tokio_postgres::Transaction<'_>,
        slot: &Slot,
        xmax: i64,
        era: i64,
    ) -> Result<(), FollowError> {
        if self.is_empty() {
            return Ok(());
        }
        let txids: Vec<i64> = self.xid.iter().map(|&xid| full_txid(xid, xmax, era)).collect();
        let times: Vec<std::time::SystemTime> = self.at.iter().map(|&at| commit_time(at)).collect();
        db.execute(
            "SELECT pgtrail._follow_rejected($1, $2, $3, $4, $5, $6, $7)",
            &[
                &slot.name,
                &txids,
                &self.lsn,
                &self.end_lsn,
                &times,
                &self.count,
                &self.why,
            ],
        )
        .await
        .map_err(FollowError::database("recording the context messages ignored"))?;
        Ok(())
    }
}

/// A context number as `pgtrail.transaction.ctx` holds it (the context
/// trigger caps it the same way).
fn context_number(ctx: i64) -> i16 {
    i16::try_from(ctx.clamp(0, i64::from(i16::MAX))).unwrap_or(i16::MAX)
}

/// The capture settings of the audited tables a batch changed, and the
/// redaction secret, as they are when the batch is written.
struct AuditedTables {
    tables: BTreeMap<i32, rows::Audited>,
    secret: Option<Vec<u8>>,
}

async fn audited_tables(
    client: &Client,
    ids: impl Iterator<Item = i32>,
) -> Result<AuditedTables, FollowError> {
    let ids: Vec<i32> = ids.collect();
    let tables = client
        .query(
            "SELECT id, key_columns, ignore_columns, redact_columns, images = 'full',
                    (SELECT s.value FROM pgtrail.secret AS s WHERE s.name = 'redaction')
             FROM pgtrail.audited_table WHERE id = ANY($1)",
            &[&ids],
        )
        .await
        .map_err(FollowError::database("reading the audited tables' settings"))?;
    let secret = tables.first().and_then(|r| r.get::<_, Option<Vec<u8>>>(5));
    Ok(AuditedTables {
        tables: tables
            .iter()
            .map(|r| {
                let id: i32 = r.get(0);
                let table = rows::Audited {
                    id,
                    key_columns: r.get(1),
                    ignore_columns: r.get(2),
                    redact_columns: r.get(3),
                    full_images: r.get(4),
                };
                (id, table)
            })
            .collect(),
        secret,
    })
}

/// The rows just written (`ids`, of the transactions `lsn_of` gives the
/// end LSN of) as `pgtrail.changes` shows them, in order.
async fn changes_for_sink(
    db: &tokio_postgres::Transaction<'_>,
    lsn_of: &[(i64, u64)],
    ids: &[i64],
) -> Result<Vec<SinkChange>, FollowError> {
    let txids: Vec<i64> = lsn_of.iter().map(|(txid, _)| *txid).collect();
    let rows = db
        .query(
            "SELECT c.txid, c.table_schema::text, c.table_name::text, to_jsonb(c) - 'id'
             FROM pgtrail.changes AS c
             WHERE c.txid = ANY($1) AND c.id = ANY($2)
             ORDER BY c.id",
            &[&txids, &ids],
        )
        .await
        .map_err(FollowError::database("reading the changes written for the sink"))?;
    let lsn: BTreeMap<i64, u64> = lsn_of.iter().copied().collect();
    let mut out = Vec::with_capacity(rows.len());
    let mut last: Option<(i64, u32)> = None;
    for row in rows {
        let txid: i64 = row.get(0);
        let seq = match last {
            Some((t, n)) if t == txid => n + 1,
            _ => 1,
        };
        last = Some((txid, seq));
        out.push(SinkChange {
            end_lsn: lsn.get(&txid).copied().unwrap_or(0),
            seq,
            table_schema: row.get(1),
            table_name: row.get(2),
            row: row.get(3),
        });
    }
    Ok(out)
}

/// Moves the slot on to `lsn` (after the trail's transaction committed).
async fn advance(client: &Client, slot: &str, lsn: u64) -> Result<(), FollowError> {
    client
        .execute(
            "SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)
             FROM pg_replication_slots WHERE slot_name = $1 AND confirmed_flush_lsn < $2::text::pg_lsn",
            &[&slot, &lsn_text(lsn)],
        )
        .await
        .map_err(FollowError::database("advancing the slot"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_round_trip() {
        for lsn in [0u64, 0x0153_aea0, 0x1_0000_0000, u64::MAX] {
            assert_eq!(parse_lsn(&lsn_text(lsn)), Some(lsn));
        }
        assert_eq!(lsn_text(0x0000_0001_0153_AEA0), "1/153AEA0");
        assert_eq!(parse_lsn("0/15431B8"), Some(0x15431B8));
        assert_eq!(parse_lsn("x"), None);
    }

    #[test]
    fn full_txids_take_the_epoch_of_the_snapshot_or_the_one_before() {
        let era = 3i64 << 48;
        // xmax in epoch 2: an xid below its low half is of epoch 2, one above it of epoch 1.
        let xmax = (2i64 << 32) | 1_000;
        assert_eq!(full_txid(999, xmax, 0), (2i64 << 32) | 999);
        assert_eq!(full_txid(1_000, xmax, era), ((2i64 << 32) | 1_000) + era);
        assert_eq!(full_txid(4_000_000_000, xmax, 0), (1i64 << 32) | 4_000_000_000);
    }

    #[test]
    fn commit_times_count_from_2000() {
        let at = commit_time(1_500_000);
        let since_unix = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        assert_eq!(since_unix.as_micros(), 946_684_800_000_000 + 1_500_000);
        assert!(commit_time(-1) < commit_time(0));
    }
}
