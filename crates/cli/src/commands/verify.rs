//! `pgtrail verify [--public-key FILE] [--checkpoint FILE]`: recomputes the
//! log from the trail; exit 0 intact, 1 tampered (every problem named), 2
//! error.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use pgtrail::integrity::crypto::read_verifier;
use pgtrail::integrity::{Problem, VerifyOptions};

use crate::cli::{Common, Format};
use crate::output;

pub async fn run(
    common: &Common,
    public_key: Option<&Path>,
    checkpoint: Option<&Path>,
    archive: Option<&Path>,
) -> Result<ExitCode> {
    let options = VerifyOptions {
        public_key: public_key.map(read_verifier).transpose()?,
        checkpoint: checkpoint
            .map(|path| {
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the checkpoint {}", path.display()))
            })
            .transpose()?,
        archive_dir: archive.map(Path::to_path_buf),
    };
    let mut client = super::connect(common).await?;
    let report = pgtrail::integrity::verify(&mut client, &options).await?;
    match common.format {
        Format::Json => {
            // The report's fields, with each problem's message beside its fields.
            let mut json = serde_json::to_value(&report)?;
            json["intact"] = serde_json::Value::Bool(report.intact());
            json["problems"] = report
                .problems
                .iter()
                .map(|p| {
                    let mut problem = serde_json::to_value(p)?;
                    problem["message"] = serde_json::Value::String(p.message());
                    Ok(problem)
                })
                .collect::<Result<Vec<_>>>()?
                .into();
            output::print_json(&json)?
        }
        Format::Table => print_table(&report, checkpoint.is_some()),
    }
    Ok(if report.intact() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_table(report: &pgtrail::integrity::VerifyReport, checkpoint: bool) {
    let key = match (&report.key, report.key_from_database) {
        (None, _) => "none (nothing sealed yet)".to_string(),
        (Some(key), false) => key.clone(),
        (Some(key), true) => {
            format!("{key} (recorded in the database: pass --public-key to trust your own copy)")
        }
    };
    output::print_rows(&[
        ["checkpoints".to_string(), report.seals.to_string()],
        ["changes sealed".to_string(), report.tree_size.to_string()],
        ["not sealed yet".to_string(), report.unsealed.to_string()],
        ["erasures".to_string(), report.erasures.to_string()],
        [
            "archived".to_string(),
            match (report.archived_checked, report.archived_unchecked) {
                (0, 0) => "none".to_string(),
                (checked, 0) => format!("{checked} checked from the archive files"),
                (checked, unchecked) => format!(
                    "{checked} checked from the archive files, {unchecked} not checked (pass --archive DIR)"
                ),
            },
        ],
        ["root".to_string(), report.root.clone()],
        ["key".to_string(), key],
    ]);
    if report.intact() && report.seals == 0 {
        // No checkpoint: nothing was checked, so "intact" would claim too much.
        output::say(
            output::WARN,
            &format!(
                "nothing is sealed yet: there is no checkpoint to check the trail against ({} change(s) not sealed)",
                report.unsealed
            ),
        );
        output::say(
            output::DIM,
            "help: `pgtrail keygen --key FILE` once, then `pgtrail seal --key FILE` (e.g. every minute from cron)",
        );
        return;
    }
    if report.intact() {
        let mut text = match report.seals {
            1 => "intact: the trail matches its checkpoint".to_string(),
            n => format!("intact: the trail matches all {n} checkpoints"),
        };
        if checkpoint {
            text.push_str(", and the checkpoint you kept is a prefix of the log");
        }
        output::say(output::GOOD, &text);
        if report.key_from_database && report.seals > 0 {
            output::say(
                output::WARN,
                "warning: checked with the key recorded in the database; a superuser could have replaced it",
            );
        }
        return;
    }
    // Capture gaps leave the trail incomplete; everything else is tampering.
    let gaps = report
        .problems
        .iter()
        .filter(|p| matches!(p, Problem::CaptureGap { .. }))
        .count();
    let tampered = report.problems.len() - gaps;
    let headline = match (tampered, gaps) {
        (0, gaps) => {
            format!("INCOMPLETE: capture was off {gaps} time(s); changes in those periods were not recorded")
        }
        (tampered, 0) => format!("TAMPERED: {tampered} problem(s)"),
        (tampered, gaps) => format!("TAMPERED: {tampered} problem(s), and capture was off {gaps} time(s)"),
    };
    output::say(output::BAD, &headline);
    if report.seals == 0 {
        output::say(
            output::WARN,
            &format!("nothing is sealed yet ({} change(s) not sealed)", report.unsealed),
        );
    }
    let rows: Vec<[String; 2]> = report
        .problems
        .iter()
        .map(|p: &Problem| {
            [
                p.change_id()
                    .map_or_else(|| "-".to_string(), |id| format!("change {id}")),
                p.message(),
            ]
        })
        .collect();
    output::print_styled(&rows, false, |column, _| {
        if column == 0 { output::BAD } else { output::PLAIN }
    });
}
