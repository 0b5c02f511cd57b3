//! The manifest written beside each archive file (`<partition>.json`):
//! what the file holds, its hash and the signed seal that covers it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The format name in every manifest.
pub const FORMAT: &str = "pgtrail-archive v1";

/// The seal whose checkpoint covers every change of an archive.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SealRef {
    pub id: i64,
    pub tree_size: i64,
    /// The signed root, hex.
    pub root: String,
    /// The verifier key that signed it (as recorded with the seal).
    pub public_key: Option<String>,
}

/// `<partition>.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub format: String,
    /// The trail's name in checkpoints (`pgtrail.setting` origin).
    pub origin: String,
    pub partition: String,
    pub from_at: Option<DateTime<Utc>>,
    pub until_at: Option<DateTime<Utc>>,
    /// The Parquet file, relative to the manifest.
    pub file: String,
    pub rows: i64,
    pub first_id: Option<i64>,
    pub last_id: Option<i64>,
    pub first_at: Option<DateTime<Utc>>,
    pub last_at: Option<DateTime<Utc>>,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// SHA-256 over the rows (see `ArchivedChange::digest_into`), hex: as
    /// the database gave them, which the file read back was checked to
    /// hold (see [`crate::digest`]); after an erasure, as the rewritten
    /// file gives them. Not compared by `verify` or `check`: the manifest
    /// is not signed; the rows are proven by their leaves against the
    /// signed checkpoints, the file by its SHA-256 recorded in the
    /// database. It names the rows whatever their Parquet encoding, for
    /// outside tools.
    pub rows_sha256: String,
    pub seal: SealRef,
    pub pgtrail_version: String,
    pub created_at: DateTime<Utc>,
    /// The Parquet schema of the file.
    pub schema: String,
    /// The erasures (`pgtrail.erasure` ids) whose values were removed from
    /// the file after it was written; the file then is
    /// `<partition>.e<last erasure>.parquet`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub erasures: Vec<i64>,
}
