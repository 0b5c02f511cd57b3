//! `pgtrail verify-bundle DIR --public-key FILE`: checks an evidence bundle
//! offline; exit 0 intact, 1 not (every problem named), 2 error.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use pgtrail::integrity::crypto::read_verifier;

use crate::cli::{Common, Format};
use crate::output;

pub fn run(common: &Common, dir: &Path, public_key: &Path) -> Result<ExitCode> {
    let verifier = read_verifier(public_key)?;
    let check = pgtrail::evidence::verify_bundle(dir, &verifier)?;
    match common.format {
        Format::Json => {
            let mut json = serde_json::to_value(&check)?;
            json["intact"] = serde_json::Value::Bool(check.intact());
            output::print_json(&json)?
        }
        Format::Table => {
            output::print_rows(&[
                [
                    "report".to_string(),
                    check.kind.clone().unwrap_or_else(|| "?".to_string()),
                ],
                ["changes listed".to_string(), check.changes_listed.to_string()],
                ["changes proved".to_string(), check.changes_proved.to_string()],
                [
                    "checkpoint".to_string(),
                    match (check.tree_size, &check.root) {
                        (Some(size), Some(root)) => format!("{size} changes, root {root}"),
                        _ => "not verified".to_string(),
                    },
                ],
                ["key".to_string(), check.key.clone()],
            ]);
            if check.intact() {
                output::say(output::GOOD, "intact: every file, signature and proof checks out");
            } else {
                output::say(
                    output::BAD,
                    &format!("NOT intact: {} problem(s)", check.problems.len()),
                );
                for problem in &check.problems {
                    output::say(output::BAD, &format!("  {problem}"));
                }
            }
        }
    }
    Ok(if check.intact() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
