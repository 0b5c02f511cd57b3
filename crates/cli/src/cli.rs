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
    /// Read the database and write a commented pgtrail.toml listing every table with its key.
    #[command(
        after_help = "Example:\n  pgtrail init --database-url postgres://app@localhost/shop\n  pgtrail init --schema public --schema billing --config audit/pgtrail.toml\n\n\
        Review the file (excluded tables, ignored and redacted columns), then run `pgtrail apply`.\n\
        An existing file is kept unless --force is given."
    )]
    Init {
        /// Overwrite the file if it exists.
        #[arg(long)]
        force: bool,
        /// A schema to list (repeat for several).
        #[arg(long = "schema", value_name = "NAME", default_value = "public")]
        schemas: Vec<String>,
    },
    /// Install or upgrade pgtrail and make capture match the config, in one transaction.
    #[command(
        after_help = "Example:\n  pgtrail apply --config pgtrail.toml --database-url postgres://app@localhost/shop\n\n\
        Safe to run twice and from two places at once: installs take an advisory lock,\n\
        and either everything is applied or nothing is."
    )]
    Apply,
    /// Print the SQL `apply` would run; nothing when the database already matches the config.
    #[command(
        after_help = "Example:\n  pgtrail plan --database-url postgres://app@localhost/shop\n\n\
        The problems being repaired are listed on standard error as SQL comments;\n\
        the SQL itself goes to standard output."
    )]
    Plan,
    /// Compare the database with the config and list every problem; exit 1 if any (for CI).
    #[command(after_help = "Example:\n  pgtrail check --format json\n\n\
        Reports: pgtrail missing or of another version, missing or disabled capture triggers,\n\
        triggers on excluded tables, tables no rule covers, settings that differ from the config.\n\
        Exit codes: 0 clean, 1 problems found, 2 usage, config or connection error.")]
    Check,
    /// Print the whole install as one SQL migration file (for Drizzle, Prisma, Flyway, sqlx, Rails).
    #[command(
        after_help = "Example:\n  pgtrail sql > drizzle/0042_pgtrail.sql\n  psql -v ON_ERROR_STOP=1 -f drizzle/0042_pgtrail.sql\n\n\
        The file is built from the config and the tables of the database it connects to."
    )]
    Sql,
    /// Remove the capture triggers from every table; the trail stays unless --drop-trail.
    #[command(
        after_help = "Example:\n  pgtrail uninstall\n  pgtrail uninstall --drop-trail --yes   # also delete the whole trail\n\n\
        --drop-trail asks for the database name on a terminal; elsewhere it needs --yes."
    )]
    Uninstall {
        /// Also drop the schema pgtrail with everything recorded in it.
        #[arg(long)]
        drop_trail: bool,
        /// Do not ask before --drop-trail (for scripts).
        #[arg(long, requires = "drop_trail")]
        yes: bool,
    },
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
