//! `pgtrail apply`: install or upgrade, and make capture match the config.

use std::process::ExitCode;

use anyhow::Result;
use pgtrail::plan::{ApplyReport, TableAction};

use crate::cli::{Format, Global};
use crate::output;

pub async fn run(global: &Global) -> Result<ExitCode> {
    let config = super::load_config(global)?;
    let mut client = super::connect(global).await?;
    let report = pgtrail::plan::apply(&mut client, &config).await?;
    match global.format {
        Format::Json => output::print_json(&to_json(&report))?,
        Format::Table => print_table(&report),
    }
    Ok(ExitCode::SUCCESS)
}

fn action_name(action: &TableAction) -> &'static str {
    match action {
        TableAction::Attached => "attached",
        TableAction::Refreshed => "refreshed",
        TableAction::Detached => "detached",
    }
}

fn to_json(report: &ApplyReport) -> serde_json::Value {
    serde_json::json!({
        "previous_version": report.previous_version,
        "version": report.version,
        "tables": report.tables.iter().map(|(schema, name, action)| serde_json::json!({
            "schema": schema, "table": name, "action": action_name(action),
        })).collect::<Vec<_>>(),
    })
}

fn print_table(report: &ApplyReport) {
    let install = match &report.previous_version {
        None => format!("installed pgtrail {}", report.version),
        Some(previous) if previous == report.version => {
            format!("pgtrail {} already installed", report.version)
        }
        Some(previous) => format!("upgraded pgtrail {previous} → {}", report.version),
    };
    println!("{install}");
    let rows: Vec<[String; 2]> = report
        .tables
        .iter()
        .map(|(schema, name, action)| [action_name(action).to_string(), format!("{schema}.{name}")])
        .collect();
    output::print_rows(&rows);
    let count = |wanted: TableAction| report.tables.iter().filter(|(_, _, a)| *a == wanted).count();
    println!(
        "{} attached, {} refreshed, {} detached",
        count(TableAction::Attached),
        count(TableAction::Refreshed),
        count(TableAction::Detached)
    );
}
