//! `pgtrail apply`: install or upgrade, and make capture match the config.

use std::process::ExitCode;

use anyhow::Result;
use pgtrail::plan::{ApplyReport, Problem, TableAction};

use crate::cli::{Common, Format};
use crate::output;

pub async fn run(common: &Common, baseline: bool) -> Result<ExitCode> {
    let config = super::load_config(common)?;
    let mut client = super::connect(common).await?;
    let options = pgtrail::plan::ApplyOptions { baseline };
    let report =
        pgtrail::plan::apply_with_options(&mut client, &config, options, &mut output::progress).await;
    output::progress_done();
    let report = report?;
    // What the install could not do, read from the database as it is now.
    let privileges = pgtrail::plan::Privileges::load(&client).await?;
    let shortfalls = privileges.installed_shortfalls();
    match common.format {
        Format::Json => {
            let mut json = to_json(&report);
            json["unprotected"] = super::unprotected::to_json(&shortfalls, &config.install);
            output::print_json(&json)?
        }
        Format::Table => print_table(&report),
    }
    super::unprotected::print(&shortfalls, &privileges, &config.install, false);
    Ok(ExitCode::SUCCESS)
}

fn action_name(action: &TableAction) -> &'static str {
    match action {
        TableAction::Attached => "attached",
        TableAction::Repaired => "repaired",
        TableAction::Detached => "detached",
    }
}

fn not_covered(report: &ApplyReport) -> Vec<String> {
    report
        .problems
        .iter()
        .filter_map(|p| match p {
            Problem::NotCovered { table } => Some(format!("{}.{}", table.0, table.1)),
            _ => None,
        })
        .collect()
}

fn to_json(report: &ApplyReport) -> serde_json::Value {
    serde_json::json!({
        "previous_version": report.previous_version,
        "version": report.version,
        "installed": report.installed,
        "tables": report.tables.iter().map(|(schema, name, action)| serde_json::json!({
            "schema": schema, "table": name, "action": action_name(action),
        })).collect::<Vec<_>>(),
        "unchanged": report.unchanged,
        "not_covered": not_covered(report),
        "baselined": report.baselined.iter().map(|(schema, name, rows)| serde_json::json!({
            "schema": schema, "table": name, "rows": rows,
        })).collect::<Vec<_>>(),
        "indexes_built": report.indexes_built,
    })
}

fn print_table(report: &ApplyReport) {
    let install = match (&report.previous_version, report.installed) {
        (None, _) => format!("installed pgtrail {}", report.version),
        (Some(previous), true) if previous == report.version => {
            format!(
                "reinstalled pgtrail {}'s functions (they differed)",
                report.version
            )
        }
        (Some(previous), true) => format!("upgraded pgtrail {previous} → {}", report.version),
        (Some(_), false) => format!("pgtrail {} is up to date", report.version),
    };
    output::say(output::HEADER, &install);
    let rows: Vec<[String; 2]> = report
        .tables
        .iter()
        .map(|(schema, name, action)| [action_name(action).to_string(), format!("{schema}.{name}")])
        .collect();
    output::print_styled(&rows, false, |column, cell| match (column, cell) {
        (0, "attached") => output::GOOD,
        (0, "repaired") => output::WARN,
        (0, "detached") => output::BAD,
        _ => output::PLAIN,
    });
    let count = |wanted: TableAction| report.tables.iter().filter(|(_, _, a)| *a == wanted).count();
    println!(
        "{} attached, {} repaired, {} detached, {} unchanged",
        count(TableAction::Attached),
        count(TableAction::Repaired),
        count(TableAction::Detached),
        report.unchanged
    );
    for (schema, name, rows) in &report.baselined {
        output::say(
            output::DIM,
            &format!("baseline: recorded the {rows} existing rows of {schema}.{name}"),
        );
    }
    for index in &report.indexes_built {
        output::say(
            output::DIM,
            &format!("built index pgtrail.{index} (concurrently: writers were not blocked)"),
        );
    }
    let uncovered = not_covered(report);
    if !uncovered.is_empty() {
        output::say(
            output::WARN,
            &format!(
                "warning: {} table(s) not covered by any include or exclude rule: {}",
                uncovered.len(),
                uncovered.join(", ")
            ),
        );
    }
}
