//! `pgtrail erase TABLE KEY [--columns C,...] --reason TEXT [--archive DIR]`:
//! removes a row's values from every change of the trail, archived ones
//! included, keeping proofs valid.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};

use super::log::{key_text, resolve_table};
use crate::cli::{Common, Format};
use crate::output;

pub async fn run(
    common: &Common,
    table: &str,
    key: &str,
    columns: Option<&[String]>,
    reason: &str,
    archive: Option<PathBuf>,
) -> Result<ExitCode> {
    let mut client = super::connect(common).await?;
    let audited = resolve_table(&client, table).await?;
    let pk = audited.key(key)?;
    if let (Some(columns), false) = (columns, audited.columns.is_empty()) {
        for column in columns {
            if !audited.columns.iter().any(|(name, _)| name == column) {
                let mut message = format!("`{}` has no column `{column}`", audited.display());
                if let Some(near) =
                    pgtrail::config::suggest(column, audited.columns.iter().map(|(n, _)| n.as_str()))
                {
                    message.push_str(&format!("; did you mean `{near}`?"));
                }
                bail!("{message}\n  help: --columns takes the table's column names, comma-separated");
            }
        }
    }
    let options = pgtrail::integrity::EraseOptions { archive_dir: archive };
    let report = pgtrail::integrity::erase_with(
        &mut client,
        &audited.schema,
        &audited.name,
        &pk,
        columns,
        reason,
        &options,
    )
    .await?;
    match common.format {
        Format::Json => output::print_json(&serde_json::to_value(&report)?)?,
        Format::Table => {
            output::say(
                output::GOOD,
                &format!(
                    "erasure {}: {} value(s) erased from {} change(s) of {} {} ({} of them sealed; verify still passes)",
                    report.erasure_id,
                    report.values,
                    report.change_ids.len(),
                    audited.display(),
                    key_text(&pk),
                    report.sealed
                ),
            );
            if !report.files.is_empty() {
                output::say(
                    output::GOOD,
                    &format!(
                        "{} archived change(s) erased; archive files written again without the values: {}",
                        report.archived,
                        report.files.join(", ")
                    ),
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
