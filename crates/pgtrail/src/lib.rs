//! pgtrail: an audit trail for PostgreSQL. Who changed what, when, how and why.
//!
//! This crate is the library face of pgtrail; the `pgtrail` binary is built on
//! it. The work is split by architecture, one crate each:
//!
//! | module | crate | what it does |
//! |---|---|---|
//! | [`capture`] | `pgtrail-capture` | the SQL installed in the database: trail tables, capture triggers, context |
//! | [`catalog`] | `pgtrail-catalog` | reads tables, keys, partitions and triggers from `pg_catalog` |
//! | [`config`] | `pgtrail-config` | parses and checks `pgtrail.toml` |
//! | [`plan`] | `pgtrail-plan` | config × catalog → steps; `apply` in one transaction; `sql` as a file |
//! | [`query`] | `pgtrail-query` | row keys, moments and filters as users type them, into queries |
//! | [`serve`] | `pgtrail-serve` | `pgtrail serve`: the JSON API and web UI over the trail |
//! | [`connect`] | `pgtrail-connect` | finds the database from flags, `DATABASE_URL` or libpq variables |
//! | [`init`] | `pgtrail-init` | a first `pgtrail.toml` from what the database holds |
//! | [`integrity`] | `pgtrail-ledger`, on `pgtrail-integrity` | seal, verify, erase and reconcile: a trail you can prove |
//! | [`revert`] | `pgtrail-revert` | undo recorded changes: plan, conflicts, apply |
//! | [`follow`] | `pgtrail-follow` | WAL mode: reads the slot, writes the trail exactly once |
//! | [`nats`] | `pgtrail-nats` | WAL mode's NATS JetStream sink: each change as one message, exactly once |
//! | [`archive`] | `pgtrail-archive` | retention: time partitions, Parquet archives, legal holds, maintain |
//! | [`evidence`] | `pgtrail-evidence` | compliance reports, evidence bundles verified offline, HTML |
//! | [`context`] | `pgtrail-context` | who is acting and why, from Rust: a transaction with it set; a tower layer |
//!
//! ```no_run
//! # async fn example() -> Result<(), pgtrail::Error> {
//! let config = pgtrail::config::Config::from_path("pgtrail.toml".as_ref())?;
//! let mut client = pgtrail::connect::connect(&pgtrail::connect::Target::from_env(None)?).await?;
//! let report = pgtrail::plan::apply(&mut client, &config).await?;
//! println!("pgtrail {} installed on {} tables", report.version, report.tables.len());
//! # Ok(()) }
//! ```

pub use pgtrail_archive as archive;
pub use pgtrail_capture as capture;
pub use pgtrail_catalog as catalog;
pub use pgtrail_config as config;
pub use pgtrail_connect as connect;
pub use pgtrail_context as context;
pub use pgtrail_evidence as evidence;
pub use pgtrail_follow as follow;
pub use pgtrail_init as init;
pub use pgtrail_ledger as integrity;
pub use pgtrail_nats as nats;
pub use pgtrail_plan as plan;
pub use pgtrail_query as query;
pub use pgtrail_revert as revert;
pub use pgtrail_serve as serve;

/// Any error of the pgtrail library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] pgtrail_config::ConfigError),
    #[error(transparent)]
    Connect(#[from] connect::ConnectError),
    #[error(transparent)]
    Plan(#[from] pgtrail_plan::PlanError),
    #[error(transparent)]
    Catalog(#[from] pgtrail_catalog::CatalogError),
    #[error(transparent)]
    Follow(#[from] pgtrail_follow::FollowError),
}
