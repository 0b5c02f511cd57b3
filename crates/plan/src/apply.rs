//! Applying a plan: one transaction, under an advisory lock, all or nothing.

use pgtrail_catalog::Catalog;
use pgtrail_config::Config;
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use crate::step::{Arg, Step, pg_array_text};
use crate::{PlanError, desired, step};

/// The advisory lock every install takes, so two `apply` runs at once
/// serialize instead of racing (the bytes of "pgtrail" and a version byte).
pub const ADVISORY_LOCK: i64 = 8101176133498366316;

/// What happened to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableAction {
    /// Capture started: the table had no capture triggers before.
    Attached,
    /// Capture was already there; its triggers and settings were refreshed.
    Refreshed,
    /// Capture stopped: the table is excluded or no longer covered.
    Detached,
}

/// What `apply` did.
#[derive(Debug, Clone)]
pub struct ApplyReport {
    /// pgtrail's version before, if it was installed.
    pub previous_version: Option<String>,
    pub version: &'static str,
    pub tables: Vec<(String, String, TableAction)>,
}

/// Installs or upgrades pgtrail and makes capture match `config`, in one
/// transaction: either everything is done or nothing is.
pub async fn apply(client: &mut Client, config: &Config) -> Result<ApplyReport, PlanError> {
    let tx = client
        .transaction()
        .await
        .map_err(PlanError::database("could not start a transaction"))?;
    tx.batch_execute("SET LOCAL client_min_messages = warning")
        .await
        .map_err(PlanError::database("could not configure the session"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&ADVISORY_LOCK])
        .await
        .map_err(PlanError::database("could not take pgtrail's install lock"))?;

    let catalog = Catalog::load(&tx, &config.capture.schemas).await?;
    let desired = desired::resolve(config, &catalog).map_err(PlanError::Config)?;

    let mut report = ApplyReport {
        previous_version: catalog.installed_version.clone(),
        version: pgtrail_capture::VERSION,
        tables: Vec::new(),
    };
    for table in &desired.tables {
        let had_triggers = catalog
            .table(&table.schema, &table.name)
            .is_some_and(|t| !t.triggers.is_empty());
        let action = if had_triggers {
            TableAction::Refreshed
        } else {
            TableAction::Attached
        };
        report
            .tables
            .push((table.schema.clone(), table.name.clone(), action));
    }
    for (schema, name) in &desired.detach {
        report
            .tables
            .push((schema.clone(), name.clone(), TableAction::Detached));
    }

    for step in step::steps(&desired) {
        match step {
            Step::Script(sql) => tx.batch_execute(&sql).await.map_err(PlanError::database(
                "installing pgtrail's schema and functions failed",
            ))?,
            Step::Statement { sql, args, summary } => {
                let values: Vec<Box<dyn ToSql + Sync + Send>> = args.iter().map(bind_value).collect();
                let params: Vec<&(dyn ToSql + Sync)> =
                    values.iter().map(|v| v.as_ref() as &(dyn ToSql + Sync)).collect();
                tx.execute(sql, &params)
                    .await
                    .map_err(PlanError::database(format!("{summary} failed")))?;
            }
        }
    }
    tx.commit()
        .await
        .map_err(PlanError::database("could not commit the install"))?;
    Ok(report)
}

/// Every argument goes as a text parameter; the statement casts it.
fn bind_value(arg: &Arg) -> Box<dyn ToSql + Sync + Send> {
    match arg {
        Arg::Text(text) => Box::new(text.clone()),
        Arg::TextArray(items) => Box::new(pg_array_text(items)),
        Arg::Bool(value) => Box::new(*value),
        Arg::Json(value) => Box::new(value.to_string()),
        Arg::Table { schema, name } => Box::new(pgtrail_capture::quote::qualified(schema, name)),
    }
}
