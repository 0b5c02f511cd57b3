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
    #[command(subcommand)]
    pub command: Command,
}

/// `--database-url`, for the commands that connect to a database.
#[derive(Debug, Args)]
pub struct Connection {
    /// Database to connect to: a postgres:// URL or key=value pairs, as for psql.
    /// Default: PGTRAIL_DATABASE_URL, then DATABASE_URL. What it leaves unset comes
    /// from the service (PGSERVICE, pg_service.conf), then libpq's variables (PGHOST,
    /// PGPORT, PGDATABASE, PGUSER, PGPASSWORD, PGSSLMODE, PGSSLROOTCERT, PGAPPNAME,
    /// PGCONNECT_TIMEOUT, ...), then ~/.pgpass and the defaults (sslmode=prefer).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

/// `--format` of the commands that print for people or as JSON.
#[derive(Debug, Args)]
pub struct FormatArg {
    /// Output format.
    #[arg(long = "format", value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// `--format` of the commands that print one table, and so also CSV
/// (log, at, blame, and the compliance reports).
#[derive(Debug, Args)]
pub struct TableFormatArg {
    /// Output format.
    #[arg(long = "format", value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

/// What a command's `run` gets from its options: built by `commands::run`
/// from the options the command declares (the defaults for those it has not).
#[derive(Debug)]
pub struct Common {
    /// `--database-url`.
    pub database_url: Option<String>,
    /// `--config` (pgtrail.toml for the commands without it).
    pub config: PathBuf,
    /// `--format` as typed.
    pub output: OutputFormat,
    /// `--format` without csv (table for csv).
    pub format: Format,
}

/// `--config`, for the commands that read (or write) the config file.
#[derive(Debug, Args)]
pub struct ConfigFile {
    /// The configuration file.
    #[arg(long, value_name = "FILE", default_value = "pgtrail.toml")]
    pub config: PathBuf,
}

/// The options of the commands that print a migration file (`sql`, `plan`).
#[derive(Debug, Args)]
pub struct MigrationFileArgs {
    /// Wrap the file in BEGIN ... COMMIT (for `psql -f` and for tools that do not run
    /// a migration in a transaction, such as Prisma). Without it the file has no
    /// transaction control and runs inside the migration tool's transaction.
    #[arg(long)]
    pub transaction: bool,
}

impl MigrationFileArgs {
    /// Who holds the file's transaction.
    pub fn transaction(&self) -> pgtrail::plan::Transaction {
        if self.transaction {
            pgtrail::plan::Transaction::Own
        } else {
            pgtrail::plan::Transaction::Caller
        }
    }
}

/// `--format` as typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    Csv,
}

impl From<Format> for OutputFormat {
    fn from(format: Format) -> OutputFormat {
        match format {
            Format::Table => OutputFormat::Table,
            Format::Json => OutputFormat::Json,
        }
    }
}

/// The formats of the commands that print no CSV.
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
        #[command(flatten)]
        config: ConfigFile,
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        format: FormatArg,
        /// Overwrite the file if it exists.
        #[arg(long)]
        force: bool,
        /// A schema to list (repeat for several).
        #[arg(long = "schema", value_name = "NAME", default_value = "public")]
        schemas: Vec<String>,
    },
    /// Install or upgrade pgtrail and make capture match the config, in one transaction.
    #[command(
        after_help = "Example:\n  pgtrail apply --config pgtrail.toml --database-url postgres://app@localhost/shop\n  \
        pgtrail apply --baseline   # also record the rows newly audited tables already have\n\n\
        Safe to run twice and from two places at once: installs take an advisory lock,\n\
        and either everything is applied or nothing is."
    )]
    Apply {
        #[command(flatten)]
        config: ConfigFile,
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        format: FormatArg,
        /// Also record the rows that audited tables without history yet (newly attached
        /// ones) already have, once, so time travel and `pgtrail reconcile` cover rows
        /// older than the install.
        #[arg(long)]
        baseline: bool,
    },
    /// Print the SQL `apply` would run; nothing when the database already matches the config.
    #[command(
        after_help = "Example:\n  pgtrail plan --database-url postgres://app@localhost/shop\n  \
        pgtrail plan > migrations/0043_pgtrail_new_tables.sql   # the next migration to ship\n\n\
        The problems being repaired are listed on standard error as SQL comments;\n\
        the SQL itself goes to standard output, as a migration file like `pgtrail sql`'s:\n\
        no BEGIN/COMMIT of its own unless --transaction."
    )]
    Plan {
        #[command(flatten)]
        config: ConfigFile,
        #[command(flatten)]
        file: MigrationFileArgs,
        #[command(flatten)]
        conn: Connection,
    },
    /// Compare the database with the config and list every problem; exit 1 if any (for CI).
    #[command(after_help = "Example:\n  pgtrail check --format json\n\n\
        Reports: pgtrail missing or of another version, missing or disabled capture triggers,\n\
        triggers on excluded tables, tables no rule covers, settings that differ from the config.\n\
        Exit codes: 0 clean, 1 problems found, 2 usage, config or connection error.")]
    Check {
        #[command(flatten)]
        config: ConfigFile,
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Print the whole install as one SQL migration file (for Drizzle, Prisma, Flyway, sqlx, Rails).
    #[command(after_help = "Example:\n  pgtrail sql > drizzle/0042_pgtrail.sql\n  \
        psql -v ON_ERROR_STOP=1 --single-transaction -f drizzle/0042_pgtrail.sql\n\n\
        The file is built from the config and the tables of the database it connects to.\n\
        It has no BEGIN/COMMIT of its own: migration tools (Drizzle, Flyway, sqlx, Rails, Django)\n\
        run it inside their transaction, so a later failing migration rolls it back too.\n\
        Run statement by statement in autocommit, it stops before any change.\n\
        For tools that run a file without a transaction (Prisma), or plain `psql -f`, add --transaction.\n\
        Tables added after the first install: ship `pgtrail plan > next-migration.sql`.")]
    Sql {
        #[command(flatten)]
        config: ConfigFile,
        #[command(flatten)]
        file: MigrationFileArgs,
        #[command(flatten)]
        conn: Connection,
    },
    /// WAL mode's reader: write the slot's changes to the trail, exactly once.
    #[command(
        after_help = "Example:\n  pgtrail follow            # until SIGTERM or Ctrl-C, logging progress and lag\n  \
        pgtrail follow --once     # drain what the slot holds, then exit (cron, tests)\n  \
        pgtrail follow --sink nats://localhost:4222   # and publish each change to NATS JetStream\n\n\
        Needs [capture] mode = \"wal\" (or a table with mode = \"wal\") and `pgtrail apply`, which creates\n\
        the publication and the logical replication slot. The role needs REPLICATION (or superuser)\n\
        and must be able to write the trail (the installer). One follower runs at a time.\n\
        It streams the slot on a replication connection to the same server, database and role\n\
        (the server decodes each change once). It reads the slot over SQL instead (peek, then\n\
        advance: each change decoded twice) with --sql (a pooler that takes no replication\n\
        connection), or when sslmode is require, verify-ca or verify-full (the replication\n\
        client speaks no TLS).\n\
        Each batch of whole transactions is written to the trail with the follower's position in\n\
        one transaction (with --sink, published and acknowledged by JetStream before it commits);\n\
        only after it commits is the slot acknowledged (streaming: the flush position of a standby\n\
        status update; over SQL: pg_replication_slot_advance). A transaction at or before the\n\
        stored position is never written again, so a follower killed at any point loses and\n\
        repeats nothing.\n\
        Exit codes: 0 stopped cleanly or drained, 1 another follower is running (--once), 2 error\n\
        (also when the connection ends, a server restart: run it under a supervisor)."
    )]
    Follow {
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        format: FormatArg,
        /// Drain the slot, then exit.
        #[arg(long)]
        once: bool,
        /// Changes read from the slot at a time (whole transactions).
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(i32).range(1..))]
        batch_size: i32,
        /// Also publish each change to NATS JetStream: nats://HOST:PORT[/SUBJECT-PREFIX].
        #[arg(long, value_name = "URL")]
        sink: Option<String>,
        /// The JetStream stream (created when missing).
        #[arg(long, value_name = "NAME", requires = "sink", default_value = "PGTRAIL")]
        stream: String,
        /// Publish to the sink only: do not keep the trail in this database.
        #[arg(long, requires = "sink")]
        no_trail: bool,
        /// Read the slot over SQL (peek, then advance: every change decoded twice) instead of
        /// streaming it on a replication connection: for a pooler that takes no replication connection.
        #[arg(long)]
        sql: bool,
    },
    /// WAL mode's context messages: rotate their signing key, acknowledge ignored ones.
    #[command(
        after_help = "Example:\n  pgtrail wal rotate-key            # a new signing key; the old one verifies what it signed\n  \
        pgtrail wal acknowledge           # `pgtrail check` stops reporting those seen so far"
    )]
    Wal {
        #[command(subcommand)]
        action: WalAction,
    },
    /// Remove the capture triggers from every table; the trail stays unless --drop-trail.
    #[command(
        after_help = "Example:\n  pgtrail uninstall\n  pgtrail uninstall --drop-trail --yes   # also delete the whole trail\n\n\
        --drop-trail asks for the database name on a terminal; elsewhere it needs --yes."
    )]
    Uninstall {
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        format: FormatArg,
        /// Also drop the schema pgtrail with everything recorded in it.
        #[arg(long)]
        drop_trail: bool,
        /// Do not ask before --drop-trail (for scripts).
        #[arg(long, requires = "drop_trail")]
        yes: bool,
    },
    /// The JSON API and web UI over the trail, read-only, behind bearer tokens.
    #[command(
        after_help = "Examples:\n  pgtrail serve --new-token support         # a token, and the lines for pgtrail.toml\n  \
        pgtrail serve                              # [serve] of pgtrail.toml: listen, tokens\n  \
        pgtrail serve --listen 0.0.0.0:8420        # behind a TLS proxy\n\n\
        The server reads the trail as the role pgtrail_<db>_reader (the database user must be a member),\n\
        so redacted and erased values are never shown. Every page and endpoint but /healthz needs a token\n\
        (Authorization: Bearer TOKEN, or the login page) unless [serve] anonymous_read = true.\n\
        The API is described at /api/openapi.json. Stops cleanly on SIGTERM or Ctrl-C.\n\
        Exit codes: 0 stopped, 2 configuration, address or database error."
    )]
    Serve {
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        config: ConfigFile,
        /// Address and port to listen on (default: `listen` in [serve], else 127.0.0.1:8420).
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Option<std::net::SocketAddr>,
        /// Database connections at most.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
        connections: u16,
        /// Serve HTTPS with this PEM certificate chain (with --tls-key; overrides `tls_cert` in [serve]).
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<std::path::PathBuf>,
        /// The PEM private key of --tls-cert (overrides `tls_key` in [serve]).
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<std::path::PathBuf>,
        /// Print a new random token named NAME and the [serve.tokens.NAME] lines to add, then exit.
        #[arg(long, value_name = "NAME")]
        new_token: Option<String>,
        /// Read a token on stdin and print its sha256 for [serve.tokens.NAME], then exit.
        #[arg(long, conflicts_with = "new_token")]
        hash_token: bool,
        /// Operator instead of reader, with --new-token.
        #[arg(long, requires = "new_token")]
        operator: bool,
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
        /// Then open the web UI on the demo's data: print its URL and a token, serve until Ctrl-C.
        #[arg(long)]
        serve: bool,
    },
    /// Changes, newest first, filtered by table, row, actor, kind, field, transaction, time.
    #[command(
        after_help = "Examples:\n  pgtrail log\n  pgtrail log users 42\n  pgtrail log --actor alice@example.com --since '2h ago'\n  \
        pgtrail log students std_no=901234 --field email --op update\n  pgtrail log --migration 0042_rename_acme --format csv > changes.csv\n  \
        pgtrail log --context request_id=r-42 --tx 81234\n  pgtrail log --since '1h ago' --show request_id --show ip\n\n\
        TABLE is `name` or `schema.name`; KEY is 42, std_no=901234, a=1,b=7 or JSON.\n\
        Times: 2026-03-14, '2026-03-14 09:30', RFC 3339, now, or '2h ago', '30 min ago', '3 days ago', '1w ago'."
    )]
    Log(LogArgs),
    /// One row's timeline: every change, oldest first, with field-by-field diffs.
    #[command(
        after_help = "Example:\n  pgtrail history users 42\n  pgtrail history enrollments process_id=1,application_id=7 --format json\n\n\
        Redacted values show as [redacted]; the JSON output carries each change's full state after it."
    )]
    History {
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        format: FormatArg,
        /// The audited table: `name` or `schema.name`.
        table: String,
        /// The row: 42, std_no=901234, a=1,b=7 or a JSON object.
        key: String,
    },
    /// A row, or a whole table, as it was at a moment.
    #[command(
        after_help = "Example:\n  pgtrail at users 42 --time '2026-03-14 09:30'\n  pgtrail at users --time '2h ago' --format csv > users_2h_ago.csv\n  pgtrail at users 42 --time \"$MODERATION_CREATED_AT\" --clock transaction"
    )]
    At {
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        format: TableFormatArg,
        /// The audited table: `name` or `schema.name`.
        table: String,
        /// The row (without it: every row of the table).
        key: Option<String>,
        /// The moment: 2026-03-14, '2026-03-14 09:30', RFC 3339, now, '2h ago', '3 days ago', ...
        #[arg(long, value_name = "T")]
        time: String,
        /// The clock of --time: `change` counts each change from its own time; `transaction` from its
        /// transaction's start (the now() that `DEFAULT now()` columns hold, e.g. a moderation's created_at)
        #[arg(long, value_enum, default_value_t = Clock::Change)]
        clock: Clock,
    },
    /// Per column of one row: its value and who changed it last, when and why.
    #[command(
        after_help = "Example:\n  pgtrail blame users 42\n  pgtrail blame students std_no=901234 --format csv"
    )]
    Blame {
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        format: TableFormatArg,
        /// The audited table: `name` or `schema.name`.
        table: String,
        /// The row: 42, std_no=901234, a=1,b=7 or a JSON object.
        key: String,
    },
    /// Everything one transaction did, with who and why, and field-by-field diffs.
    #[command(
        after_help = "Examples:\n  pgtrail tx 81234\n  pgtrail tx 81234 --after 5120377 --limit 500\n  \
        pgtrail tx 81234 --format json\n\n\
        Transaction ids are in the TX column of `pgtrail log`. A large transaction comes a page at a time, \
        in the order it made its changes: the last line (JSON: `next`) says how to ask for the next page."
    )]
    Tx {
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        format: FormatArg,
        /// The transaction's number in the trail (the TX column of `pgtrail log`): txid_current()
        /// when it ran, plus era * 2^48 once the trail has moved to another cluster.
        txid: i64,
        /// At most this many changes.
        #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..))]
        limit: i64,
        /// Only changes after this change id (the `next` of the page before).
        #[arg(long, value_name = "CHANGE_ID", value_parser = clap::value_parser!(i64).range(0..))]
        after: Option<i64>,
    },
    /// Activity by actor and table (default), or a compliance report: population, privileged, schema, subject, access.
    #[command(
        after_help = "Examples:\n  pgtrail report --since '1 day ago'\n  pgtrail report --since 2026-03-01 --until 2026-04-01 --burst 100 --window 10 --format json\n  \
        pgtrail report --kind population --since 2026-01-01 --until 2026-04-01\n  \
        pgtrail report --kind privileged --since 2026-01-01 --until 2026-04-01 --format csv\n  \
        pgtrail report --kind schema --since 2026-01-01 --bundle evidence/q1-schema --key seal.key\n  \
        pgtrail report --kind subject users 42\n  pgtrail report --kind subject --subject alice@example.com --format json\n  \
        pgtrail report --kind access --since 2026-01-01\n\n\
        activity: a burst is more than --burst changes by one actor within --window minutes.\n\
        privileged: changes and DDL by roles outside `application_roles` and `migration_roles`\n\
        ([report] in pgtrail.toml), with no actor, or during a capture gap.\n\
        --bundle DIR writes the report (JSON, CSV, text, HTML), an inclusion proof per change\n\
        listed, the signed checkpoint and a manifest signed with --key (the seal key); check it\n\
        offline with `pgtrail verify-bundle DIR --public-key FILE`."
    )]
    Report(ReportArgs),
    /// Check an evidence bundle offline (no database); exit 1 when anything differs.
    #[command(
        after_help = "Example:\n  pgtrail verify-bundle evidence/q1-schema --public-key seal.key.pub\n\n\
        Checks the manifest's signature and every file's SHA-256, the checkpoint's signature, each\n\
        change's leaf and inclusion proof, and that report.json lists exactly the proved changes\n\
        and says what they say. Exit 0 intact, 1 not, 2 error."
    )]
    VerifyBundle {
        #[command(flatten)]
        format: FormatArg,
        /// The directory `pgtrail report --bundle` wrote.
        dir: PathBuf,
        /// The public key (FILE.pub from `pgtrail keygen`) of the seal key.
        #[arg(long, value_name = "FILE")]
        public_key: PathBuf,
    },
    /// Write a new signing key for checkpoints: FILE (private, mode 0600) and FILE.pub.
    #[command(
        after_help = "Example:\n  pgtrail keygen --key /secure/pgtrail-seal.key\n  pgtrail keygen --key seal.key --name audit.example.com/shop\n\n\
        Keep FILE outside the database (and away from its superusers); give FILE.pub to\n\
        whoever runs `pgtrail verify`. An existing FILE is never overwritten."
    )]
    Keygen {
        #[command(flatten)]
        format: FormatArg,
        /// Where to write the private key (FILE.pub gets the public key).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The key's name in signed checkpoints.
        #[arg(long, default_value = "pgtrail")]
        name: String,
    },
    /// Append the changes of finished transactions to the Merkle log and sign a checkpoint.
    #[command(
        after_help = "Example:\n  pgtrail seal --key /secure/pgtrail-seal.key\n  pgtrail seal --key seal.key --export /mnt/worm/checkpoints\n\n\
        Never blocks writers; run it every minute from cron or a scheduler. --export also\n\
        writes the checkpoint as a C2SP signed note (DIR/checkpoint and DIR/checkpoint.<size>)\n\
        to keep somewhere a database superuser cannot reach."
    )]
    Seal {
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        format: FormatArg,
        /// The private key written by `pgtrail keygen`.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Also write the signed checkpoint into this directory.
        #[arg(long, value_name = "DIR")]
        export: Option<PathBuf>,
    },
    /// Recompute the log from the trail and check every checkpoint; exit 1 when tampered.
    #[command(
        after_help = "Example:\n  pgtrail verify --public-key seal.key.pub\n  pgtrail verify --public-key seal.key.pub --checkpoint /mnt/worm/checkpoints/checkpoint --format json\n\n\
        Names every change edited, deleted, inserted or moved after it was sealed, and checks\n\
        that a checkpoint kept elsewhere is still a prefix of the log. Exit 0 intact,\n\
        1 tampered, 2 error. Without --public-key it trusts the key recorded in the database."
    )]
    Verify {
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        format: FormatArg,
        /// The public key (FILE.pub from `pgtrail keygen`) that must have signed.
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
        /// A checkpoint kept outside the database (from `pgtrail seal --export`).
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
        /// The directory `pgtrail archive` wrote to: archived changes are checked from its files.
        #[arg(long, value_name = "DIR")]
        archive: Option<PathBuf>,
    },
    /// Archive the trail's partitions older than [retention] keep to Parquet, then drop them.
    #[command(
        after_help = "Example:\n  pgtrail archive --key seal.key\n  pgtrail archive --dir /mnt/archive --dry-run\n\n\
        Each partition entirely older than `keep` is sealed (with --key; else skipped if it\n\
        holds unsealed changes), written to DIR/<partition>.parquet with a manifest\n\
        DIR/<partition>.json, read back and compared with the database, and only then\n\
        detached, recorded in pgtrail.archive and dropped. Legal holds keep a partition."
    )]
    Archive {
        #[command(flatten)]
        config: ConfigFile,
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        format: FormatArg,
        /// Where the files go (default: `archive_dir` in [retention]).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Seal the partition's unsealed changes first with this private key.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Print what would be archived; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// CPU priority of sealing, reading, writing and reading back:
        /// `normal`, or `low` (nice 19 and paced reads, the pauses growing
        /// while the machine's cores stay busy: the archive takes the CPU
        /// the application leaves).
        #[arg(long, value_name = "PRIORITY", default_value = "normal")]
        priority: pgtrail::archive::Priority,
    },
    /// Retention in one run for cron: make partitions ahead, seal, archive and drop.
    #[command(
        after_help = "Example:\n  pgtrail maintain --key /secure/pgtrail-seal.key\n  pgtrail maintain --dry-run\n\n\
        Idempotent; a second run at the same time does nothing and says so; a run that\n\
        stopped anywhere is finished by the next."
    )]
    Maintain {
        #[command(flatten)]
        config: ConfigFile,
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        format: FormatArg,
        /// The private key to seal with (without it nothing is sealed).
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Where archives go (default: `archive_dir` in [retention]).
        #[arg(long, value_name = "DIR")]
        archive_dir: Option<PathBuf>,
        /// Print what would be done; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// CPU priority of sealing and of the archive's reading, writing and
        /// reading back: `normal`, or `low` (nice 19 and paced reads, the
        /// pauses growing while the machine's cores stay busy: they take the
        /// CPU the application leaves; never while the trail's lock is
        /// held). What cron should use on a database busy when it runs.
        #[arg(long, value_name = "PRIORITY", default_value = "normal")]
        priority: pgtrail::archive::Priority,
    },
    /// Legal holds: keep ranges of the trail from archive and drop.
    #[command(
        after_help = "Example:\n  pgtrail hold add --table users --key 42 --from 2025-01-01 --reason \"case 2025-17\"\n  pgtrail hold list\n  pgtrail hold release 3 --reason \"case closed\""
    )]
    Hold {
        #[command(subcommand)]
        action: HoldAction,
    },
    /// List live rows that changed without a trace in the trail; exit 1 if any.
    #[command(
        after_help = "Example:\n  pgtrail reconcile\n  pgtrail reconcile users --format json\n\n\
        Finds rows inserted, updated or deleted while capture was off or under\n\
        session_replication_role = replica. Rows older than the install are judged only for\n\
        tables with a baseline (`pgtrail apply --baseline` when adding them)."
    )]
    Reconcile {
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        format: FormatArg,
        /// Only this audited table: `name` or `schema.name`.
        table: Option<String>,
    },
    /// Erase one row's values (or some columns) from the whole trail; proofs stay valid.
    #[command(
        after_help = "Example:\n  pgtrail erase users 42 --reason 'GDPR request #4411'\n  pgtrail erase users 42 --columns email,phone --reason 'GDPR request #4411'\n\n\
        Values become {\"pgtrail_erased\": ID}; the key stays. The erasure is recorded with who,\n\
        when, why and which changes, and `pgtrail verify` still passes. Once partitions are\n\
        archived, pass --archive DIR: the archive files holding the row are written again\n\
        without the values (DIR/<partition>.e<ID>.parquet) and `verify --archive` still passes."
    )]
    Erase {
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        format: FormatArg,
        /// The audited table: `name` or `schema.name`.
        table: String,
        /// The row: 42, std_no=901234, a=1,b=7 or a JSON object.
        key: String,
        /// Only these columns (comma-separated); default: every value.
        #[arg(long, value_delimiter = ',', value_name = "C,...")]
        columns: Option<Vec<String>>,
        /// Why (kept with the erasure).
        #[arg(long)]
        reason: String,
        /// The directory `pgtrail archive` wrote to (needed once partitions are archived).
        #[arg(long, value_name = "DIR")]
        archive: Option<PathBuf>,
    },
    /// Undo recorded changes (transactions, a row, an actor's or a request's); plan first.
    #[command(
        after_help = "Examples:\n  pgtrail revert --tx 48211 --reason 'ticket #4211: undo the batch script'\n  \
        pgtrail revert --row users 42 --to-time '2026-06-01 14:00' --reason 'restore the customer' --yes\n  \
        pgtrail revert --actor batch_script@system --since '2h ago' --reason 'bad run' --on-conflict skip\n  \
        pgtrail revert --context request_id=req-81f2 --since '1 day ago' --table users --reason 'wrong customer'\n\n\
        Prints the plan (statements, rows per table, conflicts, values that cannot be restored)\n\
        and changes nothing without --yes, or a yes on a terminal. The revert is itself recorded,\n\
        with its reason, under --as (default: the connection's actor, else its database user),\n\
        and can be reverted in turn. Exit codes: 0 done (or plan shown), 1 conflicts refused, 2 error."
    )]
    Revert(RevertArgs),
}

/// `--on-conflict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConflictPolicy {
    /// Change nothing when a later change touched a selected row (exit 1).
    Refuse,
    /// Leave the rows later changes touched as they are, and list them.
    Skip,
    /// Also revert the later transactions that touched selected rows.
    Cascade,
}

impl From<ConflictPolicy> for pgtrail::revert::Policy {
    fn from(policy: ConflictPolicy) -> pgtrail::revert::Policy {
        match policy {
            ConflictPolicy::Refuse => pgtrail::revert::Policy::Refuse,
            ConflictPolicy::Skip => pgtrail::revert::Policy::Skip,
            ConflictPolicy::Cascade => pgtrail::revert::Policy::Cascade,
        }
    }
}

#[derive(Debug, Args)]
pub struct RevertArgs {
    #[command(flatten)]
    pub conn: Connection,
    #[command(flatten)]
    pub format: FormatArg,
    /// Revert every change of this transaction (repeat for several).
    #[arg(long = "tx", value_name = "TXID")]
    pub tx: Vec<i64>,
    /// Revert one row: its last change, or back to --to-time / --to-change.
    #[arg(long, num_args = 2, value_names = ["TABLE", "KEY"])]
    pub row: Option<Vec<String>>,
    /// With --row: put the row back as it was at this moment.
    #[arg(long, value_name = "T", requires = "row", conflicts_with = "to_change")]
    pub to_time: Option<String>,
    /// With --row: put the row back as it was right after this change.
    #[arg(long, value_name = "ID", requires = "row")]
    pub to_change: Option<i64>,
    /// Revert the changes of this actor (id or name) from --since to --until.
    #[arg(long, value_name = "A", requires = "since")]
    pub actor: Option<String>,
    /// Revert the changes whose context has key=value (repeat), from --since to --until.
    #[arg(long, value_name = "K=V", requires = "since")]
    pub context: Vec<String>,
    /// With --actor or --context: from this moment on.
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// With --actor or --context: before this moment.
    #[arg(long, value_name = "T")]
    pub until: Option<String>,
    /// Only changes of this table (repeat for several).
    #[arg(long = "table", value_name = "TABLE")]
    pub tables: Vec<String>,
    /// What to do when later changes touched the selected rows.
    #[arg(long, value_enum, default_value_t = ConflictPolicy::Refuse)]
    pub on_conflict: ConflictPolicy,
    /// Why (required; recorded with the revert's changes).
    #[arg(long)]
    pub reason: String,
    /// Who reverts (recorded as the actor); default: the connection's context, else its user.
    #[arg(long = "as", value_name = "ACTOR")]
    pub as_actor: Option<String>,
    /// Apply without asking (otherwise only the plan is shown, or asked about on a terminal).
    #[arg(long)]
    pub yes: bool,
    /// The most row changes a revert may undo.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..))]
    pub max_rows: Option<i64>,
    /// Rows per statement batch.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..))]
    pub batch_rows: Option<i64>,
    /// How long each batch waits for row locks (three tries), e.g. 5s.
    #[arg(long, value_name = "DURATION")]
    pub lock_timeout: Option<String>,
}

/// `pgtrail report`'s kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportKind {
    /// Activity by actor, by table and kind of change, and bursts.
    Activity,
    /// Every change in the period, counts, and a completeness block.
    Population,
    /// Changes and DDL outside the application and migration roles, without an actor, or in a gap.
    Privileged,
    /// Every DDL on audited tables, matched to a migration or not.
    Schema,
    /// Every change to one data subject's rows, and its erasures.
    Subject,
    /// GRANT and REVOKE in the period; roles, memberships and grants changed since the last access report.
    Access,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub config: ConfigFile,
    #[command(flatten)]
    pub conn: Connection,
    #[command(flatten)]
    pub format: TableFormatArg,
    /// Which report.
    #[arg(long, value_enum, default_value_t = ReportKind::Activity)]
    pub kind: ReportKind,
    /// subject: the audited table of the subject's row (`name` or `schema.name`).
    pub table: Option<String>,
    /// subject: the row: 42, std_no=901234, a=1,b=7 or a JSON object.
    #[arg(value_name = "KEY", requires = "table")]
    pub row_key: Option<String>,
    /// subject: a value of the `subject_columns` of [report], in any audited table.
    #[arg(long, value_name = "VALUE", conflicts_with = "table")]
    pub subject: Option<String>,
    /// From this moment on (default: the whole trail).
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// Before this moment.
    #[arg(long, value_name = "T")]
    pub until: Option<String>,
    /// activity: a burst is more than this many changes by one actor...
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub burst: i64,
    /// activity: ...within this many minutes.
    #[arg(long, value_name = "MINUTES", default_value_t = 60, value_parser = clap::value_parser!(i32).range(1..))]
    pub window: i32,
    /// activity: count per value of this context key too, e.g. request_id (repeat for several).
    #[arg(long, value_name = "KEY")]
    pub show: Vec<String>,
    /// Write an evidence bundle into this new or empty directory (needs --key).
    #[arg(long, value_name = "DIR", requires = "key")]
    pub bundle: Option<PathBuf>,
    /// The seal key (from `pgtrail keygen`) that signs the bundle's manifest.
    #[arg(long, value_name = "FILE", requires = "bundle")]
    pub key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    #[command(flatten)]
    pub conn: Connection,
    #[command(flatten)]
    pub format: TableFormatArg,
    /// Only this audited table: `name` or `schema.name`.
    pub table: Option<String>,
    /// Only this row of TABLE: 42, std_no=901234, a=1,b=7 or a JSON object.
    #[arg(requires = "table")]
    pub key: Option<String>,
    /// Only changes by this actor (its id or its name).
    #[arg(long, value_name = "A")]
    pub actor: Option<String>,
    /// Only changes by actors of this type (user, moderator, system, migration, ...).
    #[arg(long, value_name = "T")]
    pub actor_type: Option<String>,
    /// From this moment on.
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// Before this moment.
    #[arg(long, value_name = "T")]
    pub until: Option<String>,
    /// Only this kind of change: insert, update, delete or truncate.
    #[arg(long, value_name = "OP")]
    pub op: Option<String>,
    /// Only changes of this field (column).
    #[arg(long, value_name = "F")]
    pub field: Option<String>,
    /// Only this transaction.
    #[arg(long, value_name = "TXID")]
    pub tx: Option<i64>,
    /// Only changes made by this migration (context `migration`).
    #[arg(long, value_name = "M")]
    pub migration: Option<String>,
    /// Only changes whose context has key=value (repeat for several).
    #[arg(long, value_name = "K=V")]
    pub context: Vec<String>,
    /// Add this context key as a column, e.g. request_id (repeat for several).
    #[arg(long, value_name = "KEY")]
    pub show: Vec<String>,
    /// At most this many changes.
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..))]
    pub limit: i64,
}

/// `pgtrail hold ...`.
#[derive(Debug, Subcommand)]
pub enum HoldAction {
    /// Add a hold: the matching changes are never archived or dropped until released.
    Add {
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        format: FormatArg,
        /// Only this audited table (`name` or `schema.name`); default every table.
        #[arg(long)]
        table: Option<String>,
        /// Only this row of --table (KEY as for `pgtrail history`).
        #[arg(long)]
        key: Option<String>,
        /// Changes from this time (included).
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// Changes until this time (excluded).
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Why (a case number, a request).
        #[arg(long)]
        reason: String,
    },
    /// List the active holds (--all: released ones too).
    List {
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        format: FormatArg,
        #[arg(long)]
        all: bool,
    },
    /// Release a hold (it stays recorded).
    #[command(alias = "remove")]
    Release {
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        format: FormatArg,
        id: i64,
        #[arg(long)]
        reason: String,
    },
}

/// `pgtrail wal ...`.
#[derive(Debug, Subcommand)]
pub enum WalAction {
    /// Replace the key that signs context messages. The old key keeps verifying the messages
    /// signed before the rotation (those still in the slot), and no later ones.
    #[command(
        after_help = "The new key signs from the rotation's commit on. A transaction open then may still\n\
        sign with the old key: the command waits (up to --wait) until those have ended, then\n\
        retires the old key at the WAL position reached: `pgtrail follow` accepts it only for\n\
        messages before that position. If they have not ended in time, the old key stays valid\n\
        everywhere until a later rotation retires it (exit 1).\n\
        Exit codes: 0 rotated and retired, 1 rotated but the old key not yet retired, 2 error."
    )]
    RotateKey {
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        format: FormatArg,
        /// Seconds to wait for the transactions open at the rotation to end.
        #[arg(long, value_name = "SECONDS", default_value_t = 60)]
        wait: u64,
    },
    /// Mark the context messages `pgtrail follow` ignored so far (forged, or copied from another
    /// transaction) as looked into: `pgtrail check` then reports only later ones.
    Acknowledge {
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        format: FormatArg,
    },
}

/// The clock a moment is read on (`pgtrail at --clock`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Clock {
    /// Each change counts from its own time (changed_at).
    Change,
    /// Each change counts from its transaction's start (tx_started_at).
    Transaction,
}

impl Clock {
    /// The name `pgtrail.row_as_of` and `table_as_of` take.
    pub fn as_str(self) -> &'static str {
        match self {
            Clock::Change => "change",
            Clock::Transaction => "transaction",
        }
    }
}
