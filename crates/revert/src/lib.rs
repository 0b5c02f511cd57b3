//! Undo a mistake from the trail: a revert of recorded changes, planned
//! first, conflict-checked, and itself captured like any other change.
//!
//! The work happens in the database, in `pgtrail.revert_plan` and
//! `pgtrail.revert` (PL/pgSQL, `crates/capture/sql/functions/70_revert.sql`),
//! so SQL users and the command line get the same semantics. This crate is
//! the typed face of those two functions:
//!
//! - [`selector`]: what to revert (transactions, one row, an actor or a
//!   context in a time window, optionally some tables) and the policy for
//!   conflicts, as the JSON selector the SQL functions take;
//! - [`plan`]: the plan, read from `pgtrail.revert_plan`: each statement with
//!   its rows, per-table counts, conflicts, skipped and cascaded rows, values
//!   that cannot be restored;
//! - [`apply`]: runs `pgtrail.revert` in one transaction, under the actor
//!   given (or the connection's user), and commits only when it did what the
//!   plan shown said;
//! - [`progress`]: the progress notices `pgtrail.revert` sends while it works.
//!
//! ```no_run
//! # async fn example(client: &mut tokio_postgres::Client) -> Result<(), pgtrail_revert::RevertError> {
//! use pgtrail_revert::{Request, Selector, Policy, apply::ApplyOptions};
//! let request = Request::new(Selector::Transactions(vec![48211]));
//! let plan = pgtrail_revert::plan::plan(client, &request).await?;
//! if plan.conflicts().count() == 0 {
//!     let options = ApplyOptions { reason: "undo the batch script".into(), actor: None, expected: Some(&plan) };
//!     pgtrail_revert::apply::apply(client, &request, &options).await?;
//! }
//! # Ok(()) }
//! ```

pub mod apply;
mod error;
pub mod plan;
pub mod progress;
pub mod selector;

pub use error::RevertError;
pub use plan::{Operation, Plan, PlanItem, StatementKind};
pub use selector::{Policy, Request, RowTarget, Selector};
