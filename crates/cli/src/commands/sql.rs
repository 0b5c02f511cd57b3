//! `pgtrail sql`: the whole install as one migration file.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use pgtrail::catalog::Catalog;
use pgtrail::plan::{PlanError, Privileges, render_with, resolve, steps};

use crate::cli::{Common, MigrationFileArgs};

pub async fn run(common: &Common, args: &MigrationFileArgs) -> Result<ExitCode> {
    let config = super::load_config(common)?;
    let client = super::connect(common).await?;
    let catalog = Catalog::load(&client, &config.capture.schemas).await?;
    let desired = resolve(&config, &catalog).map_err(PlanError::Config)?;
    let script = render_with(&steps(&desired), args.transaction());
    // The file runs as whichever role the migration tool uses; say what an
    // install by the role connected here would lack.
    let privileges = Privileges::load(&client).await?;
    let shortfalls = privileges.predicted_shortfalls();
    super::unprotected::print(&shortfalls, &privileges, &config.install, true);
    if !shortfalls.is_empty() {
        eprintln!(
            "  (said for {}, the role connected now; if your migrations run as another role, `pgtrail check` after them tells)",
            privileges.installer
        );
    }
    std::io::stdout()
        .lock()
        .write_all(script.as_bytes())
        .context("writing to standard output")?;
    Ok(ExitCode::SUCCESS)
}
