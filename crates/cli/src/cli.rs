//! Command-line arguments (clap derive). Each subcommand's `--help` carries an example.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "pgtrail",
    version,
    about = "An audit trail for PostgreSQL: who changed what, when, how and why.",
    after_help = "Examples:\n  pgtrail demo\n  pgtrail apply --database-url postgres://app@localhost/shop\n  pgtrail sql > migrations/0042_pgtrail.sql"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Database to connect to. Default: PGTRAIL_DATABASE_URL, then DATABASE_URL,
    /// then the libpq variables PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD.
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,

    /// The configuration file.
    #[arg(long, global = true, value_name = "FILE", default_value = "pgtrail.toml")]
    pub config: PathBuf,

    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install or upgrade pgtrail and make capture match the config, in one transaction.
    #[command(
        after_help = "Example:\n  pgtrail apply --config pgtrail.toml --database-url postgres://app@localhost/shop\n\n\
        Safe to run twice and from two places at once: installs take an advisory lock,\n\
        and either everything is applied or nothing is."
    )]
    Apply,
    /// Print the whole install as one SQL migration file (for Drizzle, Prisma, Flyway, sqlx, Rails).
    #[command(
        after_help = "Example:\n  pgtrail sql > drizzle/0042_pgtrail.sql\n  psql -v ON_ERROR_STOP=1 -f drizzle/0042_pgtrail.sql\n\n\
        The file is built from the config and the tables of the database it connects to."
    )]
    Sql,
    /// Show pgtrail at work on a throwaway PostgreSQL (no server needed; removed afterwards).
    #[command(
        after_help = "Example:\n  pgtrail demo\n  pgtrail demo --keep   # leave the server running to try other commands\n\n\
        Needs PostgreSQL's server binaries (initdb, postgres); set PGTRAIL_PG_BIN to their directory\n\
        if they are not found."
    )]
    Demo {
        /// Leave the throwaway server running and print its connection URL.
        #[arg(long)]
        keep: bool,
    },
}
