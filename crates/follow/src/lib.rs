//! WAL capture mode's reader (`pgtrail follow`): reads this database's
//! logical replication slot (pgoutput) and writes the same trail rows the
//! capture triggers write. It reads the slot by streaming replication
//! ([`stream`]: a replication connection, `START_REPLICATION`, the server
//! decoding each change once), or, without a [`Replication`] target, over
//! plain SQL ([`follower`]: `pg_logical_slot_peek_binary_changes`, then
//! `pg_replication_slot_advance`, which decodes every change twice: for
//! connections that need TLS, which the replication client here does not
//! do, and poolers that take no replication connection). Either way: keys, diffs and redaction markers computed here
//! as capture computes them ([`rows`]), written per batch of decoded
//! transactions by binary COPY into `pgtrail.change` and `pgtrail.transaction`
//! between `pgtrail._follow_begin` and `pgtrail._follow_write_position`
//! (80_wal.sql; `pgtrail._follow_write_context` for a batch whose context
//! messages the follower does not read itself).
//!
//! Exactly once: each batch is written with the follower's position (the
//! end LSN of its last transaction) in `pgtrail.follow_position`, in the
//! same database transaction; a [`Sink`] gets the batch's changes before
//! that commits; the slot is advanced (SQL) or acknowledged (stream: the
//! standby status update's flush position) only after that commits; a
//! transaction at or before the stored position is never written again
//! (a follower killed between its commit and the advance finds it done).
//! A session advisory lock keeps a second follower from running at once.
//!
//! - [`pgoutput`]: the protocol's messages;
//! - [`transaction`]: messages grouped into committed transactions, with
//!   their context and unchanged TOASTed values filled from the old row;
//! - [`signing`]: the context messages' signatures, checked against the
//!   transaction each is decoded in (a forged one is ignored);
//! - [`values`]: text values to the JSON capture records, here for the
//!   common types, by the server for the others;
//! - [`rows`]: the trail row of each change (key, diff, redaction);
//! - [`context_rows`]: the `pgtrail.transaction` rows read from the
//!   context messages;
//! - [`copy_rows`]: the trail rows' binary COPY, encoded here;
//! - [`operations`]: rotating the signing key, acknowledging ignored
//!   context messages;
//! - [`sink`]: where changes go besides (or instead of) the trail;
//! - [`follower`]: the loop over SQL, and the batch writing both share;
//! - [`stream`]: the loop over a replication connection;
//! - [`unsigned`]: transactions whose changes came without a signed context
//!   message (`pgtrail.wal_unsigned`);
//! - [`writer`]: the streaming follower's trail writer (a second
//!   connection writing batch N while N+1 is built).

pub mod context_rows;
pub mod copy_rows;
pub mod follower;
pub mod operations;
pub mod pgoutput;
pub mod rows;
pub mod signing;
pub mod sink;
pub mod stream;
pub mod transaction;
pub mod unsigned;
pub mod values;
pub mod writer;

use std::time::Duration;

pub use follower::{FOLLOW_LOCK, run, run_with};
pub use sink::{Sink, SinkChange, SinkError};
pub use stream::Replication;

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
    /// Where to open the replication connection that streams the slot;
    /// `None`: read it over SQL (peek, then advance: decoded twice).
    pub replication: Option<Replication>,
    /// Which values the follower turns into JSON itself
    /// ([`Values::Here`]); the others only to compare the ways, in
    /// benchmarks and tests.
    pub values: Values,
    /// Streaming into the trail (no sink): write each batch on a second
    /// connection while the next is read and built ([`stream`]). `false`
    /// builds and writes each batch in turn on the one connection, as
    /// without it; for benchmarks and tests.
    pub pipeline: bool,
}

impl Default for FollowOptions {
    fn default() -> Self {
        FollowOptions {
            once: false,
            batch_size: 10_000,
            poll_interval: Duration::from_millis(200),
            write_trail: true,
            replication: None,
            values: Values::Here,
            pipeline: true,
        }
    }
}

/// Which column values the follower turns into JSON itself (the rest by
/// the server, one statement per relation and batch).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Values {
    /// Every type [`values::Convert::of`] knows.
    #[default]
    Here,
    /// Those of [`Values::Here`] but floats, `bytea`, `json`, arrays,
    /// intervals and times (as 0.10.0 did before it converted those).
    Scalar,
    /// Integers, booleans, `text` and `varchar` only (as 0.8.0 did before
    /// `char(n)`, `uuid`, `numeric`, `jsonb`, dates and timestamps).
    Basic,
    /// None: every value by the server.
    Server,
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
    /// Context messages ignored because they were not signed for their
    /// transaction (forged, or copied from another one).
    pub rejected_messages: u64,
    /// Transactions whose changes came before any context message that
    /// verifies (recorded in `pgtrail.wal_unsigned`; counted when written,
    /// so once across restarts).
    pub unsigned_transactions: u64,
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
    #[error("the replication connection to {target} failed: {error}{}", help_for(.error))]
    Replication {
        target: String,
        error: pgwire_replication::PgWireError,
    },
    #[error("the slot sent something this follower cannot read: {0}")]
    Protocol(String),
    #[error("the follower's trail writer stopped without reporting why")]
    WriterLost,
    #[error("{context}: {}", pgtrail_catalog::pg_error::describe(.error))]
    Database {
        context: String,
        error: tokio_postgres::Error,
    },
}

/// A help line for a replication connection's failure.
fn help_for(error: &pgwire_replication::PgWireError) -> &'static str {
    let text = error.to_string();
    if text.contains("SQLSTATE 42501") || text.contains("must be superuser or replication role") {
        "\n  help: the role needs the REPLICATION attribute (ALTER ROLE ... REPLICATION) or superuser"
    } else if text.contains("no pg_hba.conf entry") {
        "\n  help: pg_hba.conf must let this role connect to this database (logical replication connections match the database's own lines)"
    } else {
        ""
    }
}

impl FollowError {
    pub(crate) fn database(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> FollowError {
        move |error| FollowError::Database {
            context: context.to_string(),
            error,
        }
    }
}
