//! `pgtrail plan`: the SQL `apply` would run, and nothing when nothing would change.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use pgtrail::plan::{Privileges, inspect, render_with, repairs};

use crate::cli::{Common, MigrationFileArgs};

pub async fn run(common: &Common, args: &MigrationFileArgs) -> Result<ExitCode> {
    let config = super::load_config(common)?;
    let client = super::connect(common).await?;
    let (desired, _, installed, problems) = inspect(&client, &config).await?;
    let steps = repairs(&client, &desired, &problems).await?;
    // What an install by this role lacks: predicted before the first
    // install, read from the database after it.
    let privileges = Privileges::load(&client).await?;
    let shortfalls = match installed.version {
        None => privileges.predicted_shortfalls(),
        Some(_) => privileges.installed_shortfalls(),
    };
    super::unprotected::print(
        &shortfalls,
        &privileges,
        &config.install,
        installed.version.is_none(),
    );
    if steps.is_empty() {
        eprintln!("nothing to do: the database matches {}", config.origin());
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &problems {
        eprintln!("-- {problem}");
    }
    std::io::stdout()
        .lock()
        .write_all(render_with(&steps, args.transaction()).as_bytes())
        .context("writing to standard output")?;
    Ok(ExitCode::SUCCESS)
}
