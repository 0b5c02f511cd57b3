//! Planning: from the configuration and the catalog to the steps that make
//! the database match, and applying them in one transaction.
//!
//! - [`resolve`] decides, table by table, what capture should look like
//!   ([`Desired`]) and reports every config problem against the catalog
//!   (unknown table, key or column) with its place in the file;
//! - [`problems`] compares it with what is installed ([`Installed`]) and the
//!   catalog: every drift `pgtrail check` reports;
//! - [`steps`] turns the desired state into [`Step`]s (the install script, then
//!   one `pgtrail.attach`/`pgtrail.detach` call per table), [`repair_steps`]
//!   only those that repair the problems found;
//! - [`Privileges`] tells what an install by a role that is not a superuser
//!   lacks ([`Shortfall`]: no owner role, no reader role, no DDL watch);
//! - [`apply`] runs the repair steps in one transaction under an advisory lock,
//!   with every value as a bind parameter, then builds the indexes an
//!   upgrade left to build concurrently; [`render`] prints steps as one
//!   migration file; [`uninstall`] removes capture (and, if asked, the trail).

mod apply;
mod desired;
mod drift;
mod index_build;
mod installed;
mod privileges;
mod step;
mod uninstall;
mod wal;

pub use apply::{
    ADVISORY_LOCK, ApplyOptions, ApplyReport, TableAction, apply, apply_with_options, apply_with_progress,
    inspect, repairs,
};
pub use desired::{Desired, DesiredTable, resolve};
pub use drift::{Problem, TableName, problems};
pub use index_build::build_pending_indexes;
pub use installed::{Installed, InstalledTable};
pub use privileges::{Privileges, Shortfall, role_name};
pub use step::{Arg, Step, Transaction, render, render_with, repair_steps, steps};
pub use uninstall::{UninstallReport, uninstall};
pub use wal::{CREATE_SLOT_SQL, RejectedMessages, SlotStatus, WalState, ensure_slot};

/// Errors while planning or applying.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The config does not fit the database; each entry names its place in the file.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Config(Vec<pgtrail_config::ConfigError>),
    #[error(transparent)]
    Catalog(#[from] pgtrail_catalog::CatalogError),
    /// The message already carries the server's message, detail and hint,
    /// so the database error is kept as data, not as a `source` to repeat.
    #[error("{context}: {}", pgtrail_catalog::pg_error::describe(.error))]
    Database {
        context: String,
        error: tokio_postgres::Error,
    },
    /// WAL mode is configured but the server does not decode logically.
    #[error(
        "WAL mode (mode = \"wal\") needs wal_level = logical, and this server runs with wal_level = {level}\n  \
         help: run ALTER SYSTEM SET wal_level = logical; and restart PostgreSQL (on a managed service, turn \
         logical replication on: rds.logical_replication = 1 on RDS, cloudsql.logical_decoding = on on Cloud SQL), \
         or set mode = \"trigger\""
    )]
    WalLevel { level: String },
    /// The slot could not be created (no REPLICATION right, no free slot, ...).
    #[error(
        "could not create the logical replication slot WAL mode needs: {}\n  \
         help: the role running apply needs the REPLICATION attribute (ALTER ROLE ... REPLICATION) or \
         superuser, and the server a free slot (max_replication_slots)",
        pgtrail_catalog::pg_error::describe(.error)
    )]
    Slot { error: tokio_postgres::Error },
}

impl PlanError {
    pub(crate) fn database(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> PlanError {
        let context = context.into();
        move |error| PlanError::Database { context, error }
    }
}
