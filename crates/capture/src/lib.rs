//! The SQL that pgtrail installs in the database, and the Rust that assembles it.
//!
//! Everything that runs inside PostgreSQL is plain SQL and PL/pgSQL kept in
//! `.sql` files beside this crate (`sql/migrations`, `sql/functions`), so it
//! works on managed PostgreSQL with no extension:
//!
//! - **migrations** create and change the trail's tables; each runs once, in
//!   order, and is recorded in `pgtrail.migration`, which gives an upgrade
//!   path from every released version;
//! - **functions** (capture triggers, context, attach/detach, the
//!   `pgtrail.changes` view, append-only guards, privileges) are re-created on
//!   every install.
//!
//! [`install_script`] joins them into one idempotent script that `pgtrail
//! apply` runs in a transaction and `pgtrail sql` prints as a migration file.

pub mod quote;
mod script;

pub use script::{
    FUNCTIONS, MIGRATIONS, Migration, SqlFile, TRIGGER_NAMES, VERSION, WAL_CONTEXT_FUNCTION,
    WAL_TRIGGER_NAME, build_id, capture_function, install_script,
};
