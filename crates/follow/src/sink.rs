//! Where decoded changes go besides (or instead of) the trail: a [`Sink`]
//! receives each batch's changes as `pgtrail.changes` shows them, with their
//! position, before the trail's transaction commits and before the slot
//! moves on. A sink that returns only once every change is durably
//! acknowledged, and skips positions it already holds, receives each change
//! exactly once across follower restarts (pgtrail-nats is one).

use std::future::Future;
use std::pin::Pin;

use serde_json::Value as Json;

/// One change for a sink.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkChange {
    /// The end LSN of its transaction (the follower's position after it).
    pub end_lsn: u64,
    /// Its order in the transaction, from 1.
    pub seq: u32,
    pub table_schema: String,
    pub table_name: String,
    /// The row of `pgtrail.changes` (without the trail's `id`) as JSON.
    pub row: Json,
}

impl SinkChange {
    /// `LSN/seq`: the change's position, unique and increasing in a slot.
    pub fn position(&self) -> String {
        format!("{}:{}", crate::follower::lsn_text(self.end_lsn), self.seq)
    }
}

/// Why a sink could not take a batch: the follower stops, rolls the trail's
/// transaction back and leaves the slot where it was.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

/// The future a sink's `publish` returns.
pub type Publish<'a> = Pin<Box<dyn Future<Output = Result<u64, SinkError>> + Send + 'a>>;

/// A destination for decoded changes.
pub trait Sink: Send {
    /// Publishes `changes` (in commit order, then in order in each
    /// transaction) and returns once each is acknowledged, with how many
    /// were new to the sink (changes at or before what it already holds
    /// are skipped).
    fn publish<'a>(&'a mut self, database: &'a str, changes: &'a [SinkChange]) -> Publish<'a>;

    /// What the sink is, for messages (`nats://host:4222`).
    fn describe(&self) -> String;
}
