//! `pgtrail init`: read the database and write a commented `pgtrail.toml`.

use std::io::{ErrorKind, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use pgtrail::catalog::Catalog;
use pgtrail::config::suggest;
use pgtrail::init::live::{live_schemas, render_live_config};
use pgtrail::init::{Summary, render_config, summarize};
use pgtrail::plan::Installed;

use crate::cli::{Common, Format};
use crate::output;

pub async fn run(common: &Common, force: bool, schemas: &[String]) -> Result<ExitCode> {
    let path = common.config.as_path();
    // Checked before connecting, so the common mistake costs nothing; the
    // write below checks again, atomically.
    if !force && path.try_exists().unwrap_or(false) {
        bail!(refusal(path));
    }
    let mut wanted: Vec<String> = Vec::new();
    for schema in schemas {
        if !wanted.contains(schema) {
            wanted.push(schema.clone());
        }
    }

    let client = super::connect(common).await?;
    // On an install, the file says what it does now: `plan` then has
    // nothing to do until the file is changed.
    let installed = Installed::load(&client).await?;
    let live = installed.version.is_some();
    if live {
        wanted = live_schemas(&wanted, &installed);
    }
    let catalog = Catalog::load(&client, &wanted).await?;
    for schema in &wanted {
        if !catalog.schemas.contains(schema) {
            let help = match suggest(schema, catalog.schemas.iter().map(String::as_str)) {
                Some(close) => format!("did you mean `{close}`?"),
                None => format!("the database has schemas {}", catalog.schemas.join(", ")),
            };
            bail!("schema `{schema}` given with --schema does not exist\n  help: {help}");
        }
    }

    let text = if live {
        render_live_config(&catalog, &wanted, &installed)
    } else {
        render_config(&catalog, &wanted)
    };
    write(path, &text, force)?;

    let summary = if live {
        let audited = |t: &&pgtrail::catalog::Table| {
            installed
                .tables
                .get(&(t.schema.clone(), t.name.clone()))
                .is_some_and(|r| !r.detached)
        };
        let tables: Vec<_> = catalog
            .top_level_tables()
            .filter(|t| wanted.contains(&t.schema))
            .collect();
        Summary {
            tables: tables.len(),
            excluded: tables.iter().filter(|t| !audited(t)).count(),
            without_key: tables
                .iter()
                .filter(|t| audited(t) && t.key.columns().is_empty())
                .count(),
        }
    } else {
        summarize(&catalog, &wanted)
    };
    match common.format {
        Format::Json => output::print_json(&serde_json::json!({
            "path": path.display().to_string(),
            "tables": summary.tables,
            "excluded": summary.excluded,
            "without_key": summary.without_key,
        }))?,
        Format::Table if live => println!(
            "{}; written from the live install: `pgtrail plan` shows nothing to do until you change it",
            summary_line(path, summary).trim_end_matches("; review it, then run `pgtrail apply`")
        ),
        Format::Table => println!("{}", summary_line(path, summary)),
    }
    Ok(ExitCode::SUCCESS)
}

fn refusal(path: &Path) -> String {
    format!(
        "`{}` already exists; pass --force to overwrite it, or choose another path with --config",
        path.display()
    )
}

/// Writes the file; without `force`, only if it does not exist yet.
fn write(path: &Path, text: &str, force: bool) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = match options.open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == ErrorKind::AlreadyExists => bail!(refusal(path)),
        Err(error) => {
            return Err(error).with_context(|| format!("cannot write `{}`", path.display()));
        }
    };
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write `{}`", path.display()))
}

fn summary_line(path: &Path, summary: Summary) -> String {
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    format!(
        "wrote {}: {}, {} excluded, {} without key; review it, then run `pgtrail apply`",
        path.display(),
        plural(summary.tables, "table"),
        summary.excluded,
        summary.without_key
    )
}
