//! `pgtrail sql`: the whole install as one migration file.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use pgtrail::catalog::Catalog;
use pgtrail::plan::{PlanError, render, resolve, steps};

use crate::cli::Global;

pub async fn run(global: &Global) -> Result<ExitCode> {
    let config = super::load_config(global)?;
    let client = super::connect(global).await?;
    let catalog = Catalog::load(&client, &config.capture.schemas).await?;
    let desired = resolve(&config, &catalog).map_err(PlanError::Config)?;
    let script = render(&steps(&desired));
    std::io::stdout()
        .lock()
        .write_all(script.as_bytes())
        .context("writing to standard output")?;
    Ok(ExitCode::SUCCESS)
}
