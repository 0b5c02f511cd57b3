//! Compliance evidence out of the pgtrail audit trail.
//!
//! * [`report`]: the report kinds an auditor asks a database team for, each
//!   over a period: the **population** of changes with a completeness block,
//!   **privileged** (out-of-process) changes and DDL, **schema** changes
//!   matched to migrations, everything about one data **subject**, and
//!   **access** changes (GRANT and REVOKE, and roles, memberships and
//!   grants compared with the previous access report's snapshot).
//! * [`render`]: each report as an aligned text table, CSV, or one
//!   self-contained HTML file ([`html`]).
//! * [`bundle`]: an evidence bundle, a directory with the report's files, a
//!   manifest of their SHA-256 signed with the seal key, the signed
//!   checkpoint that covers the period and an inclusion proof for every
//!   change listed; [`verify`] checks one offline, with only the public key.
//!
//! Reading the database is in [`read`], [`collect`] and [`access`]; the only
//! write is the access report's snapshot (`pgtrail.access_snapshot()`).

pub mod access;
pub mod bundle;
pub mod collect;
mod error;
pub mod evidence;
pub mod html;
pub mod read;
pub mod render;
pub mod report;
pub mod verify;

pub use bundle::write_bundle;
pub use error::EvidenceError;
pub use read::{Roles, Subject, build};
pub use report::{Kind, Period, Report};
pub use verify::{BundleCheck, verify_bundle};
