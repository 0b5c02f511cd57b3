//! `pgtrail report --kind population|privileged|schema|subject|access`: the
//! compliance reports of `pgtrail-evidence`, printed as a table, JSON or
//! CSV, and written as an evidence bundle with `--bundle DIR --key FILE`.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use pgtrail::config::Config;
use pgtrail::evidence::{Kind, Period, Roles, Subject};
use pgtrail::query::TimeArg;
use tokio_postgres::Client;

use super::log::{db_error, resolve_table, time};
use crate::cli::{Common, OutputFormat, ReportArgs, ReportKind};
use crate::output;

pub async fn run(common: &Common, args: &ReportArgs) -> Result<ExitCode> {
    let kind = match args.kind {
        ReportKind::Population => Kind::Population,
        ReportKind::Privileged => Kind::Privileged,
        ReportKind::Schema => Kind::Schema,
        ReportKind::Subject => Kind::Subject,
        ReportKind::Access => Kind::Access,
        ReportKind::Activity => bail!("the activity report is not a compliance report"),
    };
    if kind != Kind::Subject && (args.table.is_some() || args.subject.is_some()) {
        bail!(
            "TABLE KEY and --subject are for the subject report\n  help: `pgtrail report --kind subject TABLE KEY` or `--kind subject --subject VALUE`"
        );
    }
    if kind == Kind::Subject && args.row_key.is_none() && args.subject.is_none() {
        bail!(
            "the subject report needs a subject\n  help: `pgtrail report --kind subject users 42`, or `--subject VALUE` with `subject_columns` in [report] of pgtrail.toml"
        );
    }
    // The config is optional: without it, no roles are expected (every
    // change is privileged) and no subject columns are known.
    let config = if common.config.exists() {
        Config::from_path(&common.config)?
    } else {
        Config::default()
    };
    let key = args
        .key
        .as_deref()
        .map(pgtrail::integrity::crypto::read_signer)
        .transpose()?;
    if let Some(dir) = &args.bundle {
        pgtrail::evidence::bundle::check_target(dir)?;
    }
    let since = time(args.since.as_deref())?;
    let until = time(args.until.as_deref())?;
    let client = super::connect(common).await?;
    super::log::check_window(&client, since.as_ref(), until.as_ref()).await?;
    let period = Period {
        since: moment(&client, since.as_ref()).await?,
        until: moment(&client, until.as_ref()).await?,
    };
    let subject = match (&args.table, &args.row_key, &args.subject) {
        (Some(table), Some(key), _) => {
            let audited = resolve_table(&client, table).await?;
            let pk = audited.key(key)?;
            Some(Subject::Row {
                schema: audited.schema,
                table: audited.name,
                pk,
            })
        }
        (Some(_), None, _) => bail!(
            "the subject report needs the row's KEY after TABLE\n  help: e.g. `pgtrail report --kind subject users 42`"
        ),
        (None, _, Some(value)) => Some(Subject::Value {
            columns: config.report.subject_columns.clone(),
            value: value.clone(),
        }),
        _ => None,
    };
    let roles = Roles {
        application_roles: config.report.application_roles.clone(),
        migration_roles: config.report.migration_roles.clone(),
    };
    let report = pgtrail::evidence::build(&client, kind, &period, &roles, subject.as_ref()).await?;
    if let (Some(dir), Some(key)) = (&args.bundle, &key) {
        let summary = pgtrail::evidence::write_bundle(&client, &report, dir, key)
            .await
            .with_context(|| format!("cannot write the bundle {}", dir.display()))?;
        // On standard error: standard output may be the report as JSON or CSV.
        eprintln!(
            "bundle written to {}: {} change(s) proved against seal {} ({} changes, root {})",
            dir.display(),
            summary.changes,
            summary.seal_id,
            summary.tree_size,
            summary.root
        );
    }
    // Printed once the bundle (if any) is written: a failed bundle prints nothing.
    match common.output {
        OutputFormat::Json => output::print_json(&serde_json::to_value(&report)?)?,
        OutputFormat::Csv => print!("{}", pgtrail::evidence::render::csv(&report)?),
        OutputFormat::Table => print!("{}", pgtrail::evidence::render::text(&report)),
    }
    Ok(ExitCode::SUCCESS)
}

/// A moment typed by the user, as the database reads it (RFC 3339).
async fn moment(client: &Client, time: Option<&TimeArg>) -> Result<Option<String>> {
    let Some(time) = time else { return Ok(None) };
    let row = client
        .query_one(
            &format!("SELECT to_jsonb({})#>>'{{}}'", time.sql(1)),
            &[&time.value()],
        )
        .await
        .map_err(db_error)?;
    Ok(row.get(0))
}
