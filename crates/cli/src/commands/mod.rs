//! One module per subcommand; `run` dispatches.

mod apply;
mod check;
mod demo;
mod init;
mod plan;
mod sql;
mod uninstall;

use std::process::ExitCode;

use anyhow::Result;
use pgtrail::config::Config;

use crate::cli::{Cli, Command, Global};

pub async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Apply => apply::run(&cli.global).await,
        Command::Init { force, schemas } => init::run(&cli.global, force, &schemas).await,
        Command::Plan => plan::run(&cli.global).await,
        Command::Check => check::run(&cli.global).await,
        Command::Sql => sql::run(&cli.global).await,
        Command::Uninstall { drop_trail, yes } => uninstall::run(&cli.global, drop_trail, yes).await,
        Command::Demo { keep } => demo::run(keep).await,
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
