//! Catalog introspection: what the database holds, read from `pg_catalog`.
//!
//! [`Catalog::load`] reads, for the schemas pgtrail considers, every ordinary
//! and partitioned table with its columns, its key (primary key, else replica
//! identity index), its partitions, and the capture triggers pgtrail put on
//! it. Planning compares this with the configuration; nothing here writes.

mod model;
pub mod pg_error;
mod queries;

pub use model::{Catalog, Column, KeySource, Table, TableKind, Trigger, TriggerState};

/// Errors while reading the catalog.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Carries the server's message itself (see [`pg_error::describe`]).
    #[error("could not read the catalog: {}", pg_error::describe(.0))]
    Query(tokio_postgres::Error),
    #[error("unexpected catalog content: {0}")]
    Unexpected(String),
}

impl From<tokio_postgres::Error> for CatalogError {
    fn from(error: tokio_postgres::Error) -> Self {
        CatalogError::Query(error)
    }
}
