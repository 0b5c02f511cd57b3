//! One module per subcommand; `run` dispatches.

mod apply;
mod at;
mod blame;
mod check;
mod compliance;
mod demo;
mod erase;
mod follow;
mod history;
mod hold;
mod init;
mod keygen;
mod log;
mod plan;
mod reconcile;
mod report;
mod retention;
mod revert;
mod seal;
mod serve;
mod sql;
mod tx;
mod uninstall;
mod unprotected;
mod verify;
mod verify_bundle;
mod wal;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use pgtrail::config::Config;

use crate::cli::{Cli, Command, Common, ConfigFile, Connection, Format, HoldAction, OutputFormat, WalAction};

pub async fn run(cli: Cli) -> Result<ExitCode> {
    let common = common(&cli.command);
    match cli.command {
        Command::Apply { baseline, .. } => apply::run(&common, baseline).await,
        Command::Init { force, schemas, .. } => init::run(&common, force, &schemas).await,
        Command::Plan { file, .. } => plan::run(&common, &file).await,
        Command::Check { .. } => check::run(&common).await,
        Command::Sql { file, .. } => sql::run(&common, &file).await,
        Command::Uninstall { drop_trail, yes, .. } => uninstall::run(&common, drop_trail, yes).await,
        Command::Follow {
            once,
            batch_size,
            sink,
            stream,
            no_trail,
            sql,
            ..
        } => {
            follow::run(
                &common,
                follow::Args {
                    once,
                    batch_size,
                    sink,
                    stream,
                    no_trail,
                    sql,
                },
            )
            .await
        }
        Command::Demo { keep, serve } => demo::run(keep, serve).await,
        Command::Serve {
            listen,
            connections,
            tls_cert,
            tls_key,
            new_token,
            hash_token,
            operator,
            ..
        } => {
            let tls = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => Some(pgtrail::serve::ServeTls { cert, key }),
                _ => None,
            };
            serve::run(
                &common,
                listen,
                connections,
                tls,
                new_token.as_deref(),
                hash_token,
                operator,
            )
            .await
        }
        Command::Log(args) => log::run(&common, &args).await,
        Command::History { table, key, .. } => history::run(&common, &table, &key).await,
        Command::At {
            table,
            key,
            time,
            clock,
            ..
        } => at::run(&common, &table, key.as_deref(), &time, clock).await,
        Command::Blame { table, key, .. } => blame::run(&common, &table, &key).await,
        Command::Tx {
            txid, limit, after, ..
        } => tx::run(&common, txid, limit, after).await,
        Command::Report(args) => report::run(&common, &args).await,
        Command::VerifyBundle { dir, public_key, .. } => verify_bundle::run(&common, &dir, &public_key),
        Command::Keygen { key, name, .. } => keygen::run(&common, &key, &name),
        Command::Seal { key, export, .. } => seal::run(&common, &key, export.as_deref()).await,
        Command::Verify {
            public_key,
            checkpoint,
            archive,
            ..
        } => {
            verify::run(
                &common,
                public_key.as_deref(),
                checkpoint.as_deref(),
                archive.as_deref(),
            )
            .await
        }
        Command::Archive {
            dir,
            key,
            dry_run,
            priority,
            ..
        } => retention::archive(&common, dir.as_deref(), key.as_deref(), dry_run, priority).await,
        Command::Maintain {
            key,
            archive_dir,
            dry_run,
            priority,
            ..
        } => retention::maintain(&common, key.as_deref(), archive_dir.as_deref(), dry_run, priority).await,
        Command::Hold { action } => hold::run(&common, &action).await,
        Command::Wal { action } => wal::run(&common, &action).await,
        Command::Reconcile { table, .. } => reconcile::run(&common, table.as_deref()).await,
        Command::Erase {
            table,
            key,
            columns,
            reason,
            archive,
            ..
        } => erase::run(&common, &table, &key, columns.as_deref(), &reason, archive).await,
        Command::Revert(args) => revert::run(&common, &args).await,
    }
}

/// The options a command declares, gathered for its `run`; the defaults
/// stand in for those it does not declare (and so does not use).
fn common(command: &Command) -> Common {
    let (conn, config, output): (Option<&Connection>, Option<&ConfigFile>, OutputFormat) = match command {
        Command::Init {
            config, conn, format, ..
        }
        | Command::Apply {
            config, conn, format, ..
        }
        | Command::Check { config, conn, format }
        | Command::Archive {
            config, conn, format, ..
        }
        | Command::Maintain {
            config, conn, format, ..
        } => (Some(conn), Some(config), format.format.into()),
        Command::Plan { config, conn, .. }
        | Command::Sql { config, conn, .. }
        | Command::Serve { config, conn, .. } => (Some(conn), Some(config), OutputFormat::Table),
        Command::Demo { .. } => (None, None, OutputFormat::Table),
        Command::Log(args) => (Some(&args.conn), None, args.format.format),
        Command::Report(args) => (Some(&args.conn), Some(&args.config), args.format.format),
        Command::Revert(args) => (Some(&args.conn), None, args.format.format.into()),
        Command::At { conn, format, .. } | Command::Blame { conn, format, .. } => {
            (Some(conn), None, format.format)
        }
        Command::Hold {
            action:
                HoldAction::Add { conn, format, .. }
                | HoldAction::List { conn, format, .. }
                | HoldAction::Release { conn, format, .. },
        }
        | Command::Wal {
            action: WalAction::RotateKey { conn, format, .. } | WalAction::Acknowledge { conn, format },
        }
        | Command::Uninstall { conn, format, .. }
        | Command::Follow { conn, format, .. }
        | Command::History { conn, format, .. }
        | Command::Tx { conn, format, .. }
        | Command::Seal { conn, format, .. }
        | Command::Verify { conn, format, .. }
        | Command::Reconcile { conn, format, .. }
        | Command::Erase { conn, format, .. } => (Some(conn), None, format.format.into()),
        Command::VerifyBundle { format, .. } | Command::Keygen { format, .. } => {
            (None, None, format.format.into())
        }
    };
    Common {
        database_url: conn.and_then(|c| c.database_url.clone()),
        config: config.map_or_else(|| PathBuf::from("pgtrail.toml"), |c| c.config.clone()),
        output,
        format: match output {
            OutputFormat::Json => Format::Json,
            OutputFormat::Table | OutputFormat::Csv => Format::Table,
        },
    }
}

/// The config named by `--config`.
fn load_config(common: &Common) -> Result<Config> {
    Ok(Config::from_path(&common.config)?)
}

/// A connection to the database named by the flags or the environment.
/// Failures are one line that names the server and where its address came
/// from, plus a help line.
async fn connect(common: &Common) -> Result<tokio_postgres::Client> {
    let target = pgtrail::connect::Target::from_env(common.database_url.as_deref())?;
    Ok(pgtrail::connect::connect(&target).await?)
}

/// Where the database's history starts: changes before `until` were
/// archived to `files` and dropped (see `pgtrail archive`).
pub(super) struct Horizon {
    pub until: chrono::DateTime<chrono::Utc>,
    pub files: Vec<String>,
}

impl Horizon {
    /// The horizon, None when nothing was archived.
    pub async fn read(client: &tokio_postgres::Client) -> Result<Option<Horizon>> {
        Ok(pgtrail::archive::set::horizon(client)
            .await?
            .map(|(until, files)| Horizon { until, files }))
    }

    /// One line for people.
    pub fn note(&self) -> String {
        let shown: Vec<&str> = self.files.iter().take(3).map(String::as_str).collect();
        format!(
            "note: history before {} is archived in {}{} (ask it with DuckDB: the README's Retention section has the history, at and actor queries)",
            self.until.format("%Y-%m-%d %H:%M:%S%:z"),
            shown.join(", "),
            if self.files.len() > shown.len() {
                format!(" and {} more file(s)", self.files.len() - shown.len())
            } else {
                String::new()
            }
        )
    }

    /// The JSON of reports that carry it: `archived_before`, `files`, `note`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "archived_before": self.until.to_rfc3339_opts(chrono::SecondsFormat::Micros, false),
            "files": self.files,
            "note": self.note(),
        })
    }
}

/// Says where an answer read from the database stops: changes before the
/// retention horizon are in archive files, not in the database. Tables get
/// the note on stdout; JSON and CSV (whose shape scripts rely on) on stderr.
async fn say_horizon(client: &tokio_postgres::Client) -> Result<()> {
    say_horizon_as(client, false).await
}

async fn say_horizon_as(client: &tokio_postgres::Client, machine: bool) -> Result<()> {
    if let Some(horizon) = Horizon::read(client).await? {
        if machine {
            eprintln!("{}", horizon.note());
        } else {
            crate::output::say(crate::output::DIM, &horizon.note());
        }
    }
    Ok(())
}
