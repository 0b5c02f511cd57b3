//! WAL capture mode's reader (`pgtrail follow`): reads this database's
//! logical replication slot (pgoutput, polled over plain SQL with
//! `pg_logical_slot_peek_binary_changes`) and writes the same trail rows the
//! capture triggers write: keys, diffs and redaction markers computed here
//! as capture computes them ([`rows`]), written by
//! `pgtrail._follow_write_rows` (80_wal.sql): one statement of plain array
//! inserts per batch of decoded transactions.
//!
//! Exactly once: each batch is written with the follower's position (the
//! end LSN of its last transaction) in `pgtrail.follow_position`, in the
//! same database transaction; a [`Sink`] gets the batch's changes before
//! that commits; the slot is advanced only after that commits; a
//! transaction at or before the stored position is never written again
//! (a follower killed between its commit and the advance finds it done).
//! A session advisory lock keeps a second follower from running at once.
//!
//! - [`pgoutput`]: the protocol's messages;
//! - [`transaction`]: messages grouped into committed transactions, with
//!   their context and unchanged TOASTed values filled from the old row;
//! - [`values`]: text values to the JSON capture records, by the server;
//! - [`rows`]: the trail row of each change (key, diff, redaction);
//! - [`sink`]: where changes go besides (or instead of) the trail;
//! - [`follower`]: the loop.

pub mod follower;
pub mod pgoutput;
pub mod rows;
pub mod sink;
pub mod transaction;
pub mod values;

use std::time::Duration;

pub use follower::{FOLLOW_LOCK, run, run_with};
pub use sink::{Sink, SinkChange, SinkError};

/// How the follower runs.
#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// Drain what the slot holds, then return.
    pub once: bool,
    /// Changes read from the slot at a time (whole transactions: a batch may
    /// hold more).
    pub batch_size: i32,
    /// How long to wait when the slot is empty.
    pub poll_interval: Duration,
    /// Write the trail in this database (false: only a sink gets the changes).
    pub write_trail: bool,
}

impl Default for FollowOptions {
    fn default() -> Self {
        FollowOptions {
            once: false,
            batch_size: 10_000,
            poll_interval: Duration::from_millis(200),
            write_trail: true,
        }
    }
}

/// What a run of the follower did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FollowReport {
    pub slot: String,
    /// Decoded transactions written to the trail.
    pub transactions: u64,
    /// Changes written to the trail.
    pub changes: u64,
    /// Changes a sink took (new to it).
    pub published: u64,
    /// The position reached (end LSN of the last transaction), if any batch was read.
    pub position: Option<String>,
}

/// Why the follower stopped.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error(
        "pgtrail is not installed in this database, or is older than WAL mode\n  help: run `pgtrail apply` with mode = \"wal\" in pgtrail.toml"
    )]
    NotInstalled,
    #[error(
        "the logical replication slot {slot} does not exist\n  help: set mode = \"wal\" in pgtrail.toml and run `pgtrail apply`, which creates it"
    )]
    NoSlot { slot: String },
    #[error("another `pgtrail follow` is running on this database (it holds the follower lock)")]
    Busy,
    #[error(
        "nothing to write to: --no-trail needs a sink\n  help: add --sink nats://HOST:PORT, or drop --no-trail"
    )]
    NoDestination,
    #[error(
        "{sink} did not take the batch: {error}\n  nothing was written to the trail and the slot did not move; the follower starts again from there"
    )]
    Sink { sink: String, error: SinkError },
    #[error("the slot sent something this follower cannot read: {0}")]
    Protocol(String),
    #[error("{context}: {}", pgtrail_catalog::pg_error::describe(.error))]
    Database {
        context: String,
        error: tokio_postgres::Error,
    },
}

impl FollowError {
    pub(crate) fn database(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> FollowError {
        move |error| FollowError::Database {
            context: context.to_string(),
            error,
        }
    }
}
