//! `pgtrail plan`: the SQL `apply` would run, and nothing when nothing would change.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use pgtrail::plan::{inspect, render, repair_steps};

use crate::cli::Global;

pub async fn run(global: &Global) -> Result<ExitCode> {
    let config = super::load_config(global)?;
    let client = super::connect(global).await?;
    let (desired, _, _, problems) = inspect(&client, &config).await?;
    let steps = repair_steps(&desired, &problems);
    if steps.is_empty() {
        eprintln!("nothing to do: the database matches {}", config.origin());
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &problems {
        eprintln!("-- {problem}");
    }
    std::io::stdout()
        .lock()
        .write_all(render(&steps).as_bytes())
        .context("writing to standard output")?;
    Ok(ExitCode::SUCCESS)
}
