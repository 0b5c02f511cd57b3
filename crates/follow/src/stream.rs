//! The follower's loop over a replication connection (pgwire-replication):
//! `START_REPLICATION SLOT ... LOGICAL <position> (proto_version '1',
//! publication_names 'pgtrail', messages 'true')` from the position stored
//! with the trail (or the slot's, if further), so the server decodes each
//! change once and streams it while the follower writes.
//!
//! Committed transactions are gathered into batches (up to `batch_size`
//! changes, or what arrived until the stream paused, or [`LINGER`]), their
//! trail rows built ([`crate::follower::build_batch`]) and written as over
//! SQL ([`crate::follower::commit_batch`]: the position in the same
//! transaction, a sink before it commits). Into the trail alone, the
//! writing is done by the trail writer ([`crate::writer`], a second
//! connection) while the next batch is read and built, the batches
//! committed in order; with a sink, or without that connection, each batch
//! is built and written in turn on this one. Only once a batch is committed
//! is its end acknowledged (the standby status update's flush position),
//! so the slot keeps everything not yet in the trail: a follower killed at
//! any point starts again from the trail's position and writes nothing
//! twice. A keepalive's WAL end, while no transaction is open, is
//! acknowledged once what came before it is written (all committed before
//! it was received: with the batch built after it, or at once when nothing
//! is pending or being written), so the slot's lag shows what is really
//! left.

use std::time::{Duration, Instant};

use pgwire_replication::{Lsn, PgWireError, ReplicationClient, ReplicationConfig, ReplicationEvent};
use tokio_postgres::Client;
use tracing::{debug, info, warn};

use crate::follower::{self, Slot, lsn_text};
use crate::pgoutput::{self, Message};
use crate::signing::Verifier;
use crate::sink::Sink;
use crate::transaction::{Assembler, Transaction};
use crate::values::Relations;
use crate::writer::{Ends, Writer};
use crate::{FollowError, FollowOptions, FollowReport};

/// How long committed transactions wait for more before they are written
/// when the stream has paused with fewer than [`SMALL_BATCH`] changes: a
/// little lag (well under the second the issue allows) for fewer, larger
/// batches when transactions trickle in.
pub const LINGER: Duration = Duration::from_millis(50);

/// A batch this small waits up to [`LINGER`] for more: each batch costs a
/// few round trips (the values' JSON, the tables' settings, the write and
/// its commit), which on a loaded machine cost more than the rows.
const SMALL_BATCH: usize = 2_000;

/// How often the follower tells the server what it acknowledged, at most.
const STATUS_INTERVAL: Duration = Duration::from_millis(100);

/// How long a follower tries again while the slot is still held by the
/// replication connection of a follower that just stopped (or was killed).
const SLOT_BUSY_FOR: Duration = Duration::from_secs(30);

/// With `--once`: how long the stream may stay silent before the slot is
/// taken as drained even though the WAL position noted at the start was
/// not reported reached (a keepalive may stop short of it by a page
/// header).
const ONCE_SILENCE: Duration = Duration::from_secs(3);

/// Where the follower opens its replication connection: the same server,
/// database and role as its SQL connection (the role needs REPLICATION).
/// The replication client here speaks no TLS: a connection that needs it
/// reads the slot over SQL instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replication {
    /// A host name, an address, or a Unix socket directory (starts with `/`).
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub database: String,
}

impl Replication {
    /// `host H, port P, database D, user U` for messages (never the password).
    pub fn describe(&self) -> String {
        format!(
            "host {}, port {}, database {}, user {}",
            self.host, self.port, self.database, self.user
        )
    }

    fn config(&self, slot: &str, publication: &str, start: u64, options: &str) -> ReplicationConfig {
        ReplicationConfig::new(
            self.host.clone(),
            self.user.clone(),
            self.password.clone().unwrap_or_default(),
            self.database.clone(),
            slot,
            publication,
        )
        .with_port(self.port)
        .with_start_lsn(Lsn::from_u64(start))
        .with_status_interval(STATUS_INTERVAL)
        .with_wakeup_interval(Duration::from_secs(1))
        .with_buffer_size(65_536)
        .with_application_name("pgtrail follow")
        .with_options(options)
    }
}

/// Runs the follower on a replication connection to `replication`, with
/// `client` for the lock, the catalog and the trail.
pub(crate) async fn run(
    client: &mut Client,
    options: &FollowOptions,
    replication: &Replication,
    mut sink: Option<&mut dyn Sink>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<FollowReport, FollowError> {
    tokio::pin!(stop);
    let mut slot = follower::prepare(client, options, false).await?;
    let publication: String = client
        .query_one("SELECT pgtrail.wal_publication()", &[])
        .await
        .map_err(FollowError::database("reading the publication's name"))?
        .get(0);
    let mut account = Account {
        report: FollowReport {
            slot: slot.name.clone(),
            ..FollowReport::default()
        },
        progress: Progress::new(),
        acknowledged: slot.position,
        // With --once: what was written before the follower started.
        drain_to: if options.once {
            drain_target(client).await?
        } else {
            0
        },
    };
    // Dates and timestamps printed in ISO form (the follower converts
    // those itself), timestamps with time zone in the zone of the session
    // that would convert them otherwise.
    let zone: String = client
        .query_one("SELECT current_setting('TimeZone')", &[])
        .await
        .map_err(FollowError::database("reading the time zone"))?
        .get(0);
    let settings = session_options(&zone);
    // Into the trail alone: batches written on a second connection while
    // the next are read and built; on this one, in turn, if that
    // connection cannot be opened.
    let mut writer = match options.pipeline && options.write_trail && sink.is_none() {
        true => match Writer::open(replication, &slot).await {
            Ok(writer) => Some(writer),
            Err(error) => {
                warn!(%error, "pgtrail follow: no second connection for the trail writer; building and writing each batch in turn");
                None
            }
        },
        false => None,
    };
    let mut stream = open(replication, &slot, &publication, &settings).await?;
    let metrics = stream.metrics();
    info!(slot = %slot.name, position = %lsn_text(slot.position), "pgtrail follow: streaming the slot");

    let batch_size = usize::try_from(options.batch_size.max(1)).unwrap_or(usize::MAX);
    let mut assembler = Assembler::verifying(Verifier::load(client).await?);
    let mut relations = Relations::new(options.values);
    let mut pending: Vec<Transaction> = Vec::new();
    let mut pending_changes = 0usize;
    let mut pending_since = Instant::now();
    // Everything committed before it has been received (a keepalive's WAL
    // end while no transaction was open).
    let mut received: u64 = slot.position;
    let mut last_event = Instant::now();
    // Events taken from the client: fewer than it forwarded means more
    // are buffered.
    let mut taken: u64 = 0;
    let mut stopping = false;

    let outcome: Result<(), FollowError> = async {
        loop {
            // Write what is committed when the batch is full, when the
            // stream has paused (nothing more to read now), or on the way out.
            let write_now = !pending.is_empty()
                && (pending_changes >= batch_size || stopping || {
                    // Paused: nothing buffered from the server.
                    metrics.events_forwarded() <= taken
                        && (pending_changes >= SMALL_BATCH || pending_since.elapsed() >= LINGER)
                });
            if write_now {
                let decoded = std::mem::take(&mut pending);
                pending_changes = 0;
                let end = decoded.iter().map(|t| t.end_lsn).max().unwrap_or(0);
                // Nothing is pending now: every transaction committed before
                // `received` is in this batch or an earlier one.
                let ends = Ends {
                    end,
                    safe: end.max(received),
                };
                let batch =
                    follower::build_batch(client, &mut relations, &decoded, assembler.relations()).await?;
                let written = match writer.as_mut() {
                    Some(writer) => {
                        writer.hand(batch, ends, decoded).await?;
                        None
                    }
                    None => Some(
                        follower::commit_batch(
                            client,
                            &slot,
                            &batch,
                            options.write_trail,
                            sink.as_deref_mut(),
                        )
                        .await?,
                    ),
                };
                if let Some(written) = written {
                    account
                        .batch_written(client, options, &mut slot, &stream, &written, ends)
                        .await?;
                }
                continue;
            }
            let in_flight = writer.as_ref().map_or(0, Writer::in_flight);
            if stopping {
                // What was handed to the writer is written before the end.
                if let Some(writer) = writer.as_mut().filter(|_| in_flight > 0) {
                    let (written, ends) = writer.next().await?;
                    account
                        .batch_written(client, options, &mut slot, &stream, &written, ends)
                        .await?;
                    continue;
                }
                break;
            }
            if options.once
                && pending.is_empty()
                && in_flight == 0
                && !assembler.in_transaction()
                && (account.acknowledged >= account.drain_to || last_event.elapsed() >= ONCE_SILENCE)
            {
                break;
            }

            // The next event, or a batch the writer finished: without
            // waiting longer than the linger when committed transactions
            // wait to be written (a pause writes them), else until one of
            // them comes or the stop.
            let wait = match pending.is_empty() {
                true if options.once => ONCE_SILENCE,
                true => Duration::from_secs(3600),
                false => LINGER.saturating_sub(pending_since.elapsed()),
            };
            let next = tokio::select! {
                biased;
                done = async {
                    match writer.as_mut() {
                        Some(writer) => writer.next().await,
                        None => std::future::pending().await,
                    }
                } => Next::Written(done),
                () = &mut stop, if pending.is_empty() => Next::Stop,
                event = stream.recv() => Next::Event(event),
                () = tokio::time::sleep(wait) => Next::Idle,
            };
            let next = match next {
                Next::Written(done) => {
                    let (written, ends) = done?;
                    account
                        .batch_written(client, options, &mut slot, &stream, &written, ends)
                        .await?;
                    continue;
                }
                Next::Stop => {
                    stopping = true;
                    continue;
                }
                Next::Idle => continue,
                Next::Event(event) => event,
            };
            let event = next.map_err(|error| FollowError::Replication {
                target: replication.describe(),
                error,
            })?;
            let Some(event) = event else {
                return Err(FollowError::Protocol(
                    "the server ended the replication stream".to_string(),
                ));
            };
            last_event = Instant::now();
            taken += 1;
            let message = match event {
                ReplicationEvent::KeepAlive { wal_end, .. } => {
                    if !assembler.in_transaction() {
                        received = received.max(wal_end.as_u64());
                        let idle = pending.is_empty() && writer.as_ref().map_or(0, Writer::in_flight) == 0;
                        if idle && received > account.acknowledged {
                            account.acknowledged = received;
                            stream.update_applied_lsn(Lsn::from_u64(account.acknowledged));
                        }
                    }
                    if follower::futures_ready(&mut stop) {
                        stopping = true;
                    }
                    continue;
                }
                ReplicationEvent::Begin {
                    final_lsn,
                    xid,
                    commit_time_micros,
                } => Message::Begin {
                    final_lsn: final_lsn.as_u64(),
                    commit_time: commit_time_micros,
                    xid,
                },
                ReplicationEvent::Commit {
                    lsn,
                    end_lsn,
                    commit_time_micros,
                } => Message::Commit {
                    commit_lsn: lsn.as_u64(),
                    end_lsn: end_lsn.as_u64(),
                    commit_time: commit_time_micros,
                },
                ReplicationEvent::Message {
                    transactional,
                    lsn,
                    prefix,
                    content,
                } => Message::Message {
                    transactional,
                    lsn: lsn.as_u64(),
                    prefix,
                    content: content.to_vec(),
                },
                ReplicationEvent::XLogData { data, .. } => {
                    pgoutput::decode(&data).map_err(|e| FollowError::Protocol(e.to_string()))?
                }
                ReplicationEvent::StoppedAt { .. } => {
                    return Err(FollowError::Protocol(
                        "the replication stream stopped at a position it was not asked to".to_string(),
                    ));
                }
            };
            if assembler.key_may_be_stale(&message)
                && let Some(verifier) = assembler.verifier_mut()
            {
                verifier.reload(client).await?;
            }
            if let Some(tx) = assembler.push(message) {
                // At or before the position: in the trail already (the
                // server starts from the slot's position if it is further).
                if tx.end_lsn > slot.position {
                    account.report.rejected_messages += tx.rejected as u64;
                    if pending.is_empty() {
                        pending_since = Instant::now();
                    }
                    pending_changes += tx.changes.len();
                    pending.push(tx);
                }
                if follower::futures_ready(&mut stop) {
                    stopping = true;
                }
            }
        }
        Ok(())
    }
    .await;

    if let Some(writer) = writer {
        writer.close().await;
    }
    close(client, stream, &slot, account.acknowledged).await;
    outcome?;
    account.progress.finish(&slot);
    follower::unlock(client).await?;
    Ok(account.report)
}

/// What the follower's loop waits for next.
enum Next {
    /// The writer's outcome of the oldest batch handed to it.
    Written(Result<(follower::Written, Ends), FollowError>),
    /// The stop resolved.
    Stop,
    /// The stream's next event.
    Event(Result<Option<ReplicationEvent>, PgWireError>),
    /// The linger (or silence) passed.
    Idle,
}

/// What the follower has written and told the server, moved by each
/// written batch.
struct Account {
    report: FollowReport,
    progress: Progress,
    /// Everything committed before it is in the trail: what the server is told.
    acknowledged: u64,
    /// With --once: where the slot must get to before the follower ends.
    drain_to: u64,
}

impl Account {
    /// A batch is written: the position moves to its end and the batch is
    /// counted; the server is told what is in the trail (and what was
    /// received before the batch was built with nothing open: `ends.safe`);
    /// `--once`'s end moves past the follower's own writes; progress logged.
    async fn batch_written(
        &mut self,
        client: &Client,
        options: &FollowOptions,
        slot: &mut Slot,
        stream: &ReplicationClient,
        written: &follower::Written,
        ends: Ends,
    ) -> Result<(), FollowError> {
        slot.position = slot.position.max(ends.end);
        self.report.transactions += written.transactions;
        self.report.changes += written.changes;
        self.report.published += written.published;
        self.report.unsigned_transactions += written.unsigned;
        self.report.position = Some(lsn_text(slot.position));
        self.progress.add(written);

        let safe = slot.position.max(ends.safe);
        if safe > self.acknowledged {
            self.acknowledged = safe;
            stream.update_applied_lsn(Lsn::from_u64(self.acknowledged));
        }
        if options.once {
            // The follower's own writes are WAL too: the slot moves past them
            // before --once ends.
            self.drain_to = self.drain_to.max(drain_target(client).await?);
        }
        let lag = stream
            .metrics()
            .last_wal_end()
            .as_u64()
            .saturating_sub(slot.position);
        self.progress.log(slot, lag);
        Ok(())
    }
}

/// Opens the replication connection and starts streaming from the slot's
/// position; while the slot is still held by a follower that just stopped
/// or was killed (its walsender has not noticed yet), tries again.
async fn open(
    replication: &Replication,
    slot: &Slot,
    publication: &str,
    options: &str,
) -> Result<ReplicationClient, FollowError> {
    let deadline = Instant::now() + SLOT_BUSY_FOR;
    loop {
        let config = replication.config(&slot.name, publication, slot.position, options);
        let attempt = async {
            let mut stream = ReplicationClient::connect(config).await?;
            stream.wait_started().await?;
            Ok::<_, PgWireError>(stream)
        }
        .await;
        match attempt {
            Ok(stream) => return Ok(stream),
            Err(error) if slot_in_use(&error) && Instant::now() < deadline => {
                debug!(%error, "pgtrail follow: the slot is still held; trying again");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => {
                return Err(FollowError::Replication {
                    target: replication.describe(),
                    error,
                });
            }
        }
    }
}

/// The replication session's settings (the startup packet's `options`):
/// `DateStyle` ISO and the time zone `zone`, spaces and backslashes
/// escaped as the server splits them.
fn session_options(zone: &str) -> String {
    let mut escaped = String::with_capacity(zone.len());
    for ch in zone.chars() {
        if ch == ' ' || ch == '\\' {
            escaped.push('\\');
        }
        escaped.push(ch);
    }
    format!("-c DateStyle=ISO -c TimeZone={escaped}")
}

/// "replication slot ... is active for PID ...".
fn slot_in_use(error: &PgWireError) -> bool {
    error.to_string().contains("SQLSTATE 55006")
}

/// Ends the stream once the server has been told `acknowledged`, and waits
/// (briefly) until the slot is free for the next follower: the follower
/// lock is released after this.
async fn close(client: &Client, mut stream: ReplicationClient, slot: &Slot, acknowledged: u64) {
    let metrics = stream.metrics();
    let deadline = Instant::now() + Duration::from_secs(2);
    while stream.is_running()
        && metrics.last_applied_lsn().as_u64() < acknowledged
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if let Err(error) = stream.shutdown().await {
        debug!(%error, "pgtrail follow: the replication stream ended with an error");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let held = client
            .query_one(
                "SELECT coalesce((SELECT active FROM pg_replication_slots WHERE slot_name = $1), false)",
                &[&slot.name],
            )
            .await
            .map(|row| row.get::<_, bool>(0));
        match held {
            Ok(true) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(true) => {
                warn!(slot = %slot.name, "pgtrail follow: the slot is still held after the stream ended");
                break;
            }
            _ => break,
        }
    }
}

/// Where --once stops: the WAL insert position now, less the page header
/// when it stands just after one (a record ending at a page's end is
/// reported as ending there, not after the next page's header).
async fn drain_target(client: &Client) -> Result<u64, FollowError> {
    let row = client
        .query_one(
            "SELECT pg_current_wal_insert_lsn()::text, current_setting('wal_block_size')::int8,
                    (SELECT setting::int8 FROM pg_settings WHERE name = 'wal_segment_size')",
            &[],
        )
        .await
        .map_err(FollowError::database("reading the WAL position"))?;
    let lsn = follower::parse_lsn(row.get::<_, &str>(0)).unwrap_or(0);
    let block = u64::try_from(row.get::<_, i64>(1)).unwrap_or(8192).max(1);
    let segment = u64::try_from(row.get::<_, i64>(2)).unwrap_or(16 << 20).max(1);
    Ok(page_start(lsn, block, segment))
}

/// `lsn`, or the start of its page when it stands right after the page's
/// header (40 bytes on a segment's first page, 24 on the others).
fn page_start(lsn: u64, block: u64, segment: u64) -> u64 {
    let header = if lsn % segment < block { 40 } else { 24 };
    if lsn % block == header { lsn - header } else { lsn }
}

/// Progress logged at most every few seconds (a busy stream writes many
/// small batches).
struct Progress {
    since: Instant,
    transactions: u64,
    changes: u64,
    published: u64,
}

impl Progress {
    const EVERY: Duration = Duration::from_secs(5);

    fn new() -> Progress {
        Progress {
            since: Instant::now(),
            transactions: 0,
            changes: 0,
            published: 0,
        }
    }

    fn add(&mut self, written: &follower::Written) {
        self.transactions += written.transactions;
        self.changes += written.changes;
        self.published += written.published;
    }

    fn log(&mut self, slot: &Slot, lag_bytes: u64) {
        if self.since.elapsed() < Self::EVERY {
            return;
        }
        self.finish_with(slot, lag_bytes);
    }

    fn finish(&mut self, slot: &Slot) {
        if self.transactions > 0 || self.published > 0 {
            self.finish_with(slot, 0);
        }
    }

    fn finish_with(&mut self, slot: &Slot, lag_bytes: u64) {
        let seconds = self.since.elapsed().as_secs_f64().max(0.001);
        info!(
            transactions = self.transactions,
            changes = self.changes,
            published = self.published,
            changes_per_second = (self.changes as f64 / seconds).round(),
            position = %lsn_text(slot.position),
            lag_bytes,
            "pgtrail follow: wrote the stream's changes"
        );
        *self = Progress::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_asks_for_iso_dates_in_the_followers_zone() {
        assert_eq!(
            session_options("Europe/Amsterdam"),
            "-c DateStyle=ISO -c TimeZone=Europe/Amsterdam"
        );
        assert_eq!(session_options(r"a b\c"), r"-c DateStyle=ISO -c TimeZone=a\ b\\c");
    }

    #[test]
    fn a_position_just_after_a_page_header_drains_to_the_page_start() {
        let block = 8192;
        let segment = 16 << 20;
        assert_eq!(page_start(3 * block + 24, block, segment), 3 * block);
        assert_eq!(page_start(segment + 40, block, segment), segment);
        assert_eq!(page_start(3 * block + 25, block, segment), 3 * block + 25);
        assert_eq!(page_start(segment + 24, block, segment), segment + 24);
    }
}
