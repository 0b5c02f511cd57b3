//! `pgtrail seal --key FILE [--export DIR]`: appends the changes of finished
//! transactions to the log and signs a checkpoint; with --export, also
//! writes it as a C2SP signed note into DIR.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use pgtrail::integrity::crypto::read_signer;

use crate::cli::{Common, Format};
use crate::output;

pub async fn run(common: &Common, key: &Path, export: Option<&Path>) -> Result<ExitCode> {
    let signer = read_signer(key)?;
    let mut client = super::connect(common).await?;
    let mut progress = |done: u64| {
        if done > 0 {
            output::progress(done as usize - 1, 0, &format!("{done} changes sealed"));
        }
    };
    let report = pgtrail::integrity::seal(&mut client, &signer, &mut progress).await;
    output::progress_done();
    let report = report?;
    let mut exported = Vec::new();
    if let (Some(dir), false) = (export, report.note.is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for name in [
            "checkpoint".to_string(),
            format!("checkpoint.{}", report.tree_size),
        ] {
            let path = dir.join(&name);
            let partial = dir.join(format!(".{name}.partial"));
            std::fs::write(&partial, &report.note)
                .with_context(|| format!("cannot write {}", partial.display()))?;
            std::fs::rename(&partial, &path).with_context(|| format!("cannot write {}", path.display()))?;
            exported.push(path.display().to_string());
        }
    }
    let root = pgtrail::integrity::hex(&report.root);
    match common.format {
        Format::Json => output::print_json(&serde_json::json!({
            "seal": report.seal_id,
            "appended": report.appended,
            "tree_size": report.tree_size,
            "root": root,
            "checkpoint": report.note,
            "exported": exported,
        }))?,
        Format::Table => {
            match report.seal_id {
                Some(id) => output::say(
                    output::GOOD,
                    &format!(
                        "seal {id}: {} changes appended; the log holds {}",
                        report.appended, report.tree_size
                    ),
                ),
                None => output::say(
                    output::DIM,
                    &format!("nothing new to seal; the log holds {} changes", report.tree_size),
                ),
            }
            output::print_rows(&[["root".to_string(), root]]);
            for path in &exported {
                output::say(output::DIM, &format!("wrote {path}"));
            }
            if export.is_some() && exported.is_empty() {
                output::say(output::WARN, "nothing is sealed yet: no checkpoint to export");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
