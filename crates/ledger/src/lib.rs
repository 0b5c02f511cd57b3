//! Tamper evidence over the trail in the database: [`seal`] appends the
//! changes of finished transactions to a Merkle log and signs its head,
//! [`verify`] recomputes the log from the trail and names what differs, and
//! [`erase`] removes values while keeping every proof valid, and
//! [`reconcile`] finds live rows that changed without a trace.
//!
//! The cryptography (RFC 6962 tree, salted commitments, Ed25519 keys, C2SP
//! checkpoints) is in the `pgtrail-integrity` crate, which knows nothing of
//! PostgreSQL; this crate reads and writes the tables of migration
//! `0002_integrity.sql` (`pgtrail.seal`, `pgtrail.seal_leaves`,
//! `pgtrail.erasure`, `pgtrail.erased_value`).

mod erase;
mod leaves;
mod reconcile;
mod seal;
mod verify;

pub use erase::{EraseOptions, EraseReport, erase, erase_with};
pub use reconcile::{ReconcileReport, Unrecorded, reconcile};
pub use seal::{SealReport, seal, seal_at};
pub use verify::{Problem, VerifyOptions, VerifyReport, capture_gaps, hex, verify};

pub use pgtrail_integrity as crypto;

/// An advisory lock key that serializes seals, erasures and the drop of an
/// archived partition ("pgtrail-seal").
const SEAL_LOCK: i64 = pgtrail_archive::SEAL_LOCK;

/// What can go wrong while sealing, verifying or erasing (tampering found
/// by verify is not an error: it is the report).
#[derive(Debug, thiserror::Error)]
pub enum IntegrityError {
    #[error("{context}: {}", pgtrail_catalog::pg_error::describe(source))]
    Database {
        context: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(transparent)]
    Crypto(#[from] pgtrail_integrity::Error),
    #[error(
        "pgtrail is not installed in this database, or is older than sealing (0.2.0)\n  help: run `pgtrail apply` first"
    )]
    NotInstalled,
    #[error("change {change_id}: {reason}")]
    Malformed { change_id: i64, reason: String },
    #[error(
        "the last checkpoint (seal {seal}, {size} changes) {problem}\n  help: run `pgtrail verify --public-key FILE` to see what happened; seal refuses to sign on top of it"
    )]
    BrokenHead { seal: i64, size: u64, problem: String },
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Archive(#[from] pgtrail_archive::ArchiveError),
}

impl IntegrityError {
    fn archive(error: pgtrail_archive::ArchiveError) -> IntegrityError {
        IntegrityError::Archive(error)
    }

    fn database(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> IntegrityError {
        move |source| IntegrityError::Database { context, source }
    }
}

/// Fails with [`IntegrityError::NotInstalled`] unless the seal tables exist.
async fn require_installed(client: &impl tokio_postgres::GenericClient) -> Result<(), IntegrityError> {
    let installed: bool = client
        .query_one("SELECT to_regclass('pgtrail.seal') IS NOT NULL", &[])
        .await
        .map_err(IntegrityError::database("looking for pgtrail"))?
        .get(0);
    if installed {
        Ok(())
    } else {
        Err(IntegrityError::NotInstalled)
    }
}

/// The hash stored in a bytea column, checked to be 32 bytes.
fn hash_of(bytes: &[u8]) -> Option<pgtrail_integrity::Hash> {
    bytes.try_into().ok()
}
