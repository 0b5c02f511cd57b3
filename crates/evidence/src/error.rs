//! What can go wrong while building, writing or verifying evidence
//! (tampering found in a bundle is not an error: it is the check's result).

/// An error of the evidence crate.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("{context}: {}", pgtrail_catalog::pg_error::describe(source))]
    Database {
        context: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(
        "pgtrail is not installed in this database, or is older than sealing (0.2.0)\n  help: run `pgtrail apply` first"
    )]
    NotInstalled,
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Refused(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Crypto(#[from] pgtrail_integrity::Error),
    #[error("change {change_id}: {reason}")]
    Malformed { change_id: i64, reason: String },
    #[error("writing {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl EvidenceError {
    pub(crate) fn database(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> EvidenceError {
        move |source| EvidenceError::Database { context, source }
    }

    pub(crate) fn io(
        what: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> EvidenceError {
        let path = path.display().to_string();
        move |source| EvidenceError::Io { what, path, source }
    }

    /// Whether the user can fix this by changing what they typed.
    pub fn is_usage(&self) -> bool {
        matches!(self, EvidenceError::Usage(_))
    }
}
