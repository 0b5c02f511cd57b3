//! `pgtrail erase TABLE KEY [--columns C,...] --reason TEXT`: removes a
//! row's values from every change of the trail, keeping proofs valid.

use std::process::ExitCode;

use anyhow::Result;

use super::log::Audited;
use crate::cli::{Format, Global};
use crate::output;

pub async fn run(
    global: &Global,
    table: &str,
    key: &str,
    columns: Option<&[String]>,
    reason: &str,
) -> Result<ExitCode> {
    let mut client = super::connect(global).await?;
    let audited = Audited::resolve(&client, table).await?;
    let pk = audited.key(key)?;
    let report =
        pgtrail::integrity::erase(&mut client, &audited.schema, &audited.name, &pk, columns, reason).await?;
    match global.format {
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
                    pk,
                    report.sealed
                ),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
