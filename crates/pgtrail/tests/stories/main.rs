//! Integration tests of pgtrail against a real PostgreSQL, one fresh database
//! per test, written as the user stories of the seeds: what gets recorded,
//! for which keys and values, with which context, how it is protected, how
//! it installs, and the seeds' own queries.

mod actor_window;
mod auto_attach;
mod bulk;
mod context;
mod gaps;
mod generated;
mod identifiers;
mod init;
mod install;
mod integrity;
mod keys;
mod lineage;
mod never_fails;
mod queries;
mod reconcile;
mod restore;
mod retention;
mod revert;
mod revert_keys;
mod revert_oracle;
mod rollout;
mod rows;
mod security;
mod seeds;
mod support;
mod tls;
mod truncate;
mod upgrade;
mod values;
mod wal;
mod wal_operations;
mod wal_signing;
