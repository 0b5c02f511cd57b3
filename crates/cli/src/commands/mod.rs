//! One module per subcommand; `run` dispatches.

mod apply;
mod at;
mod blame;
mod check;
mod compliance;
mod demo;
mod erase;
mod history;
mod init;
mod keygen;
mod log;
mod plan;
mod reconcile;
mod report;
mod revert;
mod seal;
mod sql;
mod tx;
mod uninstall;
mod unprotected;
mod verify;
mod verify_bundle;

use std::process::ExitCode;

use anyhow::{Result, bail};
use pgtrail::config::Config;

use crate::cli::{Cli, Command, Format, Global, OutputFormat};

pub async fn run(mut cli: Cli) -> Result<ExitCode> {
    cli.global.format = match cli.global.output {
        OutputFormat::Table => Format::Table,
        OutputFormat::Json => Format::Json,
        OutputFormat::Csv => match &cli.command {
            Command::Log(_) | Command::At { .. } | Command::Blame { .. } | Command::Report(_) => {
                Format::Table
            }
            other => bail!(
                "`pgtrail {}` prints no CSV (CSV is for the commands that print one table: log, at, blame, report)\n  \
                 help: use --format json, or --format table",
                command_name(other)
            ),
        },
    };
    if let Command::Init { config, .. }
    | Command::Apply { config, .. }
    | Command::Plan { config, .. }
    | Command::Check(config)
    | Command::Sql { config, .. } = &cli.command
    {
        cli.global.config = config.config.clone();
    }
    if let Command::Report(args) = &cli.command {
        cli.global.config = args.config.config.clone();
    }
    match cli.command {
        Command::Apply { baseline, .. } => apply::run(&cli.global, baseline).await,
        Command::Init { force, schemas, .. } => init::run(&cli.global, force, &schemas).await,
        Command::Plan { file, .. } => plan::run(&cli.global, &file).await,
        Command::Check(_) => check::run(&cli.global).await,
        Command::Sql { file, .. } => sql::run(&cli.global, &file).await,
        Command::Uninstall { drop_trail, yes } => uninstall::run(&cli.global, drop_trail, yes).await,
        Command::Demo { keep } => demo::run(keep).await,
        Command::Log(args) => log::run(&cli.global, &args).await,
        Command::History { table, key } => history::run(&cli.global, &table, &key).await,
        Command::At {
            table,
            key,
            time,
            clock,
        } => at::run(&cli.global, &table, key.as_deref(), &time, clock).await,
        Command::Blame { table, key } => blame::run(&cli.global, &table, &key).await,
        Command::Tx { txid } => tx::run(&cli.global, txid).await,
        Command::Report(args) => report::run(&cli.global, &args).await,
        Command::VerifyBundle { dir, public_key } => verify_bundle::run(&cli.global, &dir, &public_key),
        Command::Keygen { key, name } => keygen::run(&cli.global, &key, &name),
        Command::Seal { key, export } => seal::run(&cli.global, &key, export.as_deref()).await,
        Command::Verify {
            public_key,
            checkpoint,
        } => verify::run(&cli.global, public_key.as_deref(), checkpoint.as_deref()).await,
        Command::Reconcile { table } => reconcile::run(&cli.global, table.as_deref()).await,
        Command::Erase {
            table,
            key,
            columns,
            reason,
        } => erase::run(&cli.global, &table, &key, columns.as_deref(), &reason).await,
        Command::Revert(args) => revert::run(&cli.global, &args).await,
    }
}

fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Init { .. } => "init",
        Command::Apply { .. } => "apply",
        Command::Plan { .. } => "plan",
        Command::Check(_) => "check",
        Command::Sql { .. } => "sql",
        Command::Uninstall { .. } => "uninstall",
        Command::Demo { .. } => "demo",
        Command::Log(_) => "log",
        Command::History { .. } => "history",
        Command::At { .. } => "at",
        Command::Blame { .. } => "blame",
        Command::Tx { .. } => "tx",
        Command::Report(_) => "report",
        Command::VerifyBundle { .. } => "verify-bundle",
        Command::Keygen { .. } => "keygen",
        Command::Seal { .. } => "seal",
        Command::Verify { .. } => "verify",
        Command::Erase { .. } => "erase",
        Command::Reconcile { .. } => "reconcile",
        Command::Revert(_) => "revert",
    }
}

/// The config named by `--config`.
fn load_config(global: &Global) -> Result<Config> {
    Ok(Config::from_path(&global.config)?)
}

/// A connection to the database named by the flags or the environment.
/// Failures are one line that names the server and where its address came
/// from, plus a help line.
async fn connect(global: &Global) -> Result<tokio_postgres::Client> {
    let target = pgtrail::connect::Target::from_env(global.database_url.as_deref())?;
    Ok(pgtrail::connect::connect(&target).await?)
}
