//! Who is acting and why, from Rust services: an [`AuditContext`] set in a
//! tokio-postgres transaction ([`AuditContext::begin`]), and a tower
//! [`AuditContextLayer`] that builds one from each HTTP request and puts it
//! in the request's extensions for the handler to use.
//!
//! ```no_run
//! # async fn example(client: &mut tokio_postgres::Client) -> Result<(), pgtrail_context::ContextError> {
//! use pgtrail_context::AuditContext;
//!
//! let context = AuditContext::new()
//!     .actor_id(42)
//!     .actor_name("alice@example.com")
//!     .actor_type("user")
//!     .reason("ticket #7")
//!     .extra("request_id", "req-81f2");
//! let tx = context.begin(client).await?;
//! tx.execute("UPDATE users SET status = 'suspended' WHERE id = $1", &[&123i32]).await?;
//! tx.commit().await?;
//! # Ok(()) }
//! ```

mod audit;
mod layer;

pub use audit::{AuditContext, ContextError};
pub use layer::{AuditContextLayer, AuditContextService};
