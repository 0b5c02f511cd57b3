//! pgtrail's retention: the trail's time partitions ([`partitions`]), legal
//! holds ([`holds`]), Parquet archives of old partitions written, read back
//! and checked before the partition is dropped ([`archive`], reading the
//! partition with one binary COPY (`copy`), with the file layout in
//! [`parquet_file`] and [`manifest`], the rows' digests in [`digest`]),
//! `pgtrail maintain` ([`maintain`]), and the archive as `pgtrail verify --archive` reads it
//! ([`set`]); erasure reaching into archive files ([`erase`]).
//!
//! Sealing is pgtrail's integrity module's job; archive and maintain call
//! it through [`Sealer`], so this crate does not depend on it.

pub mod archive;
pub mod columns;
mod copy;
pub mod digest;
pub mod erase;
pub mod holds;
mod key_order;
pub mod maintain;
pub mod manifest;
pub mod parquet_file;
pub mod partitions;
pub mod priority;
pub mod row;
pub mod set;

use std::future::Future;
use std::pin::Pin;

pub use archive::{ArchiveOptions, Outcome, archive, due};
pub use maintain::{MaintainReport, maintain};
pub use priority::Priority;
pub use row::ArchivedChange;
pub use set::{ArchiveProblem, ArchiveRecord, ArchiveSet};

/// Seals the trail (the CLI passes pgtrail's `integrity::seal_at` with a key).
pub trait Sealer {
    /// Seals what is not sealed yet, at `priority` (the archive's: under
    /// [`Priority::Low`] the seal's own work yields the CPU too); returns a
    /// line saying what was sealed.
    fn seal<'a>(
        &'a self,
        client: &'a mut tokio_postgres::Client,
        priority: Priority,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + 'a>>;
}

/// What can go wrong in retention.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{context}: {}", pgtrail_catalog::pg_error::describe(source))]
    Database {
        context: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {file}: {reason}")]
    Parquet { file: String, reason: String },
    #[error("archive file {file} cannot be read: {reason}")]
    Unreadable { file: String, reason: String },
    #[error("the archive does not match the database: {0}")]
    Mismatch(String),
    #[error("sealing failed: {0}")]
    Seal(String),
    /// Bad input from the user (exit code 2).
    #[error("{0}")]
    Usage(String),
}

impl ArchiveError {
    pub(crate) fn database(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> ArchiveError {
        move |source| ArchiveError::Database { context, source }
    }

    pub(crate) fn parquet(path: &std::path::Path, error: parquet::errors::ParquetError) -> ArchiveError {
        ArchiveError::Parquet {
            file: path.display().to_string(),
            reason: error.to_string(),
        }
    }
}

/// The environment variable naming a step at which the process stops dead,
/// as if killed there (tests of a crash at each step; see DESIGN.md).
pub const FAILPOINT_VAR: &str = "PGTRAIL_FAILPOINT";

/// The exit code of a process stopped by [`FAILPOINT_VAR`].
pub const FAILPOINT_EXIT: i32 = 86;

/// Stops the process at once (no destructors, no rollback sent: the server
/// sees the connection drop, as after `kill -9`) when [`FAILPOINT_VAR`]
/// names `step`. Steps: `maintain:premade`, `maintain:sealed`,
/// `archive:sealed`, `archive:parquet-partial`, `archive:parquet-written`,
/// `archive:read-back`, `archive:manifest-written`, `archive:detached`,
/// `archive:recorded`, `archive:dropped` (before the commit),
/// `archive:committed` and `erase:committed` (an erasure of archived values
/// committed, its manifest and old file not yet updated).
pub(crate) fn failpoint(step: &str) {
    if std::env::var(FAILPOINT_VAR).is_ok_and(|v| v == step) {
        eprintln!("pgtrail: stopped at {step} ({FAILPOINT_VAR})");
        std::process::exit(FAILPOINT_EXIT);
    }
}

/// The advisory lock key that serializes seals, erasures and the drop of
/// an archived partition ("pgtrail-seal"): an erasure takes it before it
/// touches the trail, so the drop, which takes it before it locks the
/// partition, never waits for an erasure that waits for it.
pub const SEAL_LOCK: i64 = 0x7067_7472_7365_616c;

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
