//! `pgtrail archive [--dir DIR] [--key FILE] [--dry-run]` and `pgtrail
//! maintain [--key FILE] [--archive-dir DIR] [--dry-run]`: retention, from
//! the `[retention]` section of the config (pgtrail-archive does the work).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;

use anyhow::{Result, bail};
use pgtrail::archive::{Outcome, Sealer};
use pgtrail::integrity::crypto::{SignerKey, read_signer};

use crate::cli::{Common, Format};
use crate::output;

/// Seals with the key given by --key.
struct KeySealer(SignerKey);

impl Sealer for KeySealer {
    fn seal<'a>(
        &'a self,
        client: &'a mut tokio_postgres::Client,
        priority: pgtrail::archive::Priority,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + 'a>> {
        Box::pin(async move {
            let report = pgtrail::integrity::seal_at(client, &self.0, &mut |_| {}, priority)
                .await
                .map_err(|e| e.to_string())?;
            Ok(match report.seal_id {
                Some(id) => format!(
                    "seal {id}: {} changes appended; the log holds {}",
                    report.appended, report.tree_size
                ),
                None => format!("nothing new to seal; the log holds {} changes", report.tree_size),
            })
        })
    }
}

fn sealer(key: Option<&Path>) -> Result<Option<KeySealer>> {
    Ok(key.map(read_signer).transpose()?.map(KeySealer))
}

fn archive_dir(common: &Common, config: &pgtrail::config::Config, given: Option<&Path>) -> Result<PathBuf> {
    match (given, &config.retention.archive_dir) {
        (Some(dir), _) => Ok(dir.to_path_buf()),
        (None, Some(dir)) => Ok(PathBuf::from(dir)),
        (None, None) => bail!(
            "no archive directory: {} sets no `archive_dir` in [retention]\n  help: add `archive_dir = \"DIR\"` under [retention], or pass --dir DIR",
            common.config.display()
        ),
    }
}

fn progress(line: &str) {
    eprintln!("  {line}");
}

pub async fn archive(
    common: &Common,
    dir: Option<&Path>,
    key: Option<&Path>,
    dry_run: bool,
    priority: pgtrail::archive::Priority,
) -> Result<ExitCode> {
    let config = super::load_config(common)?;
    let dir = archive_dir(common, &config, dir)?;
    let sealer = sealer(key)?;
    let mut client = super::connect(common).await?;
    let options = pgtrail::archive::ArchiveOptions {
        dir,
        keep: config.retention.keep,
        tables: config.retention.tables.clone(),
        dry_run,
        priority,
    };
    let outcomes = pgtrail::archive::archive(
        &mut client,
        &options,
        sealer.as_ref().map(|s| s as &dyn Sealer),
        &mut progress,
    )
    .await?;
    match common.format {
        Format::Json => output::print_json(&serde_json::json!({
            "dry_run": dry_run,
            "keep": config.retention.keep.to_string(),
            "partitions": outcomes,
        }))?,
        Format::Table => print_outcomes(&outcomes, &config.retention.keep.to_string()),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_outcomes(outcomes: &[Outcome], keep: &str) {
    if outcomes.is_empty() {
        output::say(
            output::DIM,
            &format!("no partition is older than {keep}: nothing to archive"),
        );
        return;
    }
    let mut rows = vec![[
        "partition".to_string(),
        "outcome".to_string(),
        "detail".to_string(),
    ]];
    for outcome in outcomes {
        let (what, detail) = match outcome {
            Outcome::Archived {
                file,
                rows,
                bytes,
                seconds,
                lock_ms,
                ..
            } => (
                "archived".to_string(),
                format!(
                    "{rows} changes → {file} ({bytes} bytes, {seconds:.1}s; dropped, lock held {lock_ms:.0} ms)"
                ),
            ),
            Outcome::WouldArchive { rows, .. } => ("would archive".to_string(), format!("{rows} changes")),
            Outcome::Skipped { reason, .. } => ("skipped".to_string(), reason.clone()),
        };
        rows.push([outcome.partition().to_string(), what, detail]);
    }
    output::print_styled(&rows, true, |column, cell| match (column, cell) {
        (1, "archived") => output::GOOD,
        (1, "skipped") => output::WARN,
        _ => output::PLAIN,
    });
}

pub async fn maintain(
    common: &Common,
    key: Option<&Path>,
    dir: Option<&Path>,
    dry_run: bool,
    priority: pgtrail::archive::Priority,
) -> Result<ExitCode> {
    let config = super::load_config(common)?;
    let dir = archive_dir(common, &config, dir)?;
    let sealer = sealer(key)?;
    let mut client = super::connect(common).await?;
    let report = pgtrail::archive::maintain(
        &mut client,
        &config.retention,
        Some(&dir),
        sealer.as_ref().map(|s| s as &dyn Sealer),
        dry_run,
        priority,
        &mut progress,
    )
    .await?;
    match common.format {
        Format::Json => output::print_json(&serde_json::to_value(&report)?)?,
        Format::Table => {
            if report.busy {
                output::say(
                    output::WARN,
                    "another pgtrail maintain is running on this database: nothing done",
                );
                return Ok(ExitCode::SUCCESS);
            }
            let made = if report.partitions_made.is_empty() {
                "none needed".to_string()
            } else {
                report.partitions_made.join(", ")
            };
            let verb = if dry_run { "would make" } else { "partitions made" };
            output::print_rows(&[
                [verb.to_string(), made],
                [
                    "seal".to_string(),
                    report.sealed.clone().unwrap_or_else(|| {
                        if dry_run {
                            "not in a dry run".to_string()
                        } else {
                            "no --key: not sealed".to_string()
                        }
                    }),
                ],
            ]);
            print_outcomes(&report.archives, &config.retention.keep.to_string());
        }
    }
    Ok(ExitCode::SUCCESS)
}
