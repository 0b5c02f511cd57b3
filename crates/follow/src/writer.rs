//! The streaming follower's trail writer: a task with a connection of its
//! own that writes the batches handed to it ([`crate::follower::commit_batch`]:
//! the rows, their context and the position in one transaction), one at a
//! time and in the order they were handed over, while the follower reads
//! and builds the next ones. Each batch's outcome comes back in the same
//! order; the follower acknowledges a batch to the slot only once it is
//! reported committed, so exactly-once holds as when it writes them itself.
//! At most [`QUEUED`] built batches wait for the writer: past that the
//! follower waits, and the slot's stream backs up as before.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::debug;

use crate::FollowError;
use crate::follower::{self, Batch, Slot, Written};
use crate::stream::Replication;
use crate::transaction::Transaction;

/// How many built batches may wait while the writer writes another.
const QUEUED: usize = 1;

/// The writer connection's `application_name`.
pub const WRITER_NAME: &str = "pgtrail follow writer";

/// A batch handed over: its trail rows, where it ends, and the decoded
/// transactions it was built from (freed by the writer, off the
/// follower's path).
struct Handed {
    batch: Batch,
    ends: Ends,
    _decoded: Vec<Transaction>,
}

/// Where a batch ends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ends {
    /// The end of its last transaction: the trail's position once it is
    /// written.
    pub(crate) end: u64,
    /// What the server may be told once it is written: `end`, or further
    /// when a keepalive received before the batch was built said that
    /// nothing else committed before its WAL end (nothing being open).
    pub(crate) safe: u64,
}

/// What the writer reports of a batch.
type Outcome = Result<(Written, Ends), FollowError>;

/// The writer task, its queue, and the outcomes coming back.
pub(crate) struct Writer {
    queue: Option<mpsc::Sender<Handed>>,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
    /// Batches handed over whose outcome has not been taken.
    in_flight: usize,
    task: JoinHandle<()>,
}

impl Writer {
    /// Opens the writer's connection (the replication target's server,
    /// database and role, over a plain SQL connection) and starts its task.
    pub(crate) async fn open(replication: &Replication, slot: &Slot) -> Result<Writer, FollowError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&replication.host)
            .port(replication.port)
            .user(&replication.user)
            .dbname(&replication.database)
            .application_name(WRITER_NAME);
        if let Some(password) = &replication.password {
            config.password(password);
        }
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(FollowError::database("opening the trail writer's connection"))?;
        let connection = tokio::spawn(async move {
            if let Err(error) = connection.await {
                debug!(%error, "pgtrail follow: the trail writer's connection ended with an error");
            }
        });
        let (queue, batches) = mpsc::channel(QUEUED);
        let (outcome, outcomes) = mpsc::unbounded_channel();
        let task = tokio::spawn(write_all(client, connection, slot.clone(), batches, outcome));
        Ok(Writer {
            queue: Some(queue),
            outcomes,
            in_flight: 0,
            task,
        })
    }

    /// Hands `batch` over (waiting while [`QUEUED`] others wait). A writer
    /// that failed has stopped taking batches: its error comes with the
    /// outcomes, taken by [`Writer::next`].
    pub(crate) async fn hand(
        &mut self,
        batch: Batch,
        ends: Ends,
        decoded: Vec<Transaction>,
    ) -> Result<(), FollowError> {
        let Some(queue) = &self.queue else {
            return Err(FollowError::WriterLost);
        };
        let handed = Handed {
            batch,
            ends,
            _decoded: decoded,
        };
        match queue.send(handed).await {
            Ok(()) => {
                self.in_flight += 1;
                Ok(())
            }
            Err(_) => {
                self.queue = None;
                Err(self.failure().await)
            }
        }
    }

    /// Batches handed over and not yet reported.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The outcome of the oldest batch handed over: what it wrote and
    /// where it ends, once committed. Waits forever when none is in flight
    /// (for `select!`).
    pub(crate) async fn next(&mut self) -> Outcome {
        if self.in_flight == 0 {
            return std::future::pending().await;
        }
        let outcome = self.outcomes.recv().await;
        self.in_flight -= 1;
        outcome.unwrap_or(Err(FollowError::WriterLost))
    }

    /// The error a writer that stopped taking batches reported.
    async fn failure(&mut self) -> FollowError {
        while let Some(outcome) = self.outcomes.recv().await {
            if let Err(error) = outcome {
                return error;
            }
        }
        FollowError::WriterLost
    }

    /// Stops the writer once the batches handed over are written (their
    /// outcomes are left untaken: take them first) and waits for it.
    pub(crate) async fn close(mut self) {
        self.queue = None;
        if let Err(error) = (&mut self.task).await {
            debug!(%error, "pgtrail follow: the trail writer ended abnormally");
        }
    }
}

/// The writer task: writes each batch handed over on `client`, in order,
/// and reports each outcome; stops at the first error or when the follower
/// hands no more over.
async fn write_all(
    mut client: tokio_postgres::Client,
    connection: JoinHandle<()>,
    slot: Slot,
    mut batches: mpsc::Receiver<Handed>,
    outcomes: mpsc::UnboundedSender<Outcome>,
) {
    while let Some(handed) = batches.recv().await {
        let outcome = follower::commit_batch(&mut client, &slot, &handed.batch, true, None)
            .await
            .map(|written| (written, handed.ends));
        let failed = outcome.is_err();
        drop(handed);
        if outcomes.send(outcome).is_err() || failed {
            break;
        }
    }
    drop(client);
    let _ = connection.await;
}
