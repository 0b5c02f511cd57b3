//! Applying a plan: one transaction, under an advisory lock, all or nothing.

use pgtrail_catalog::Catalog;
use pgtrail_config::Config;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, GenericClient, Transaction};

use crate::desired::Desired;
use crate::drift::{Problem, tables_to_attach};
use crate::installed::Installed;
use crate::privileges::{Privileges, Shortfall};
use crate::step::{Arg, Step, pg_array_text, repair_steps};
use crate::{PlanError, desired, drift};

/// The advisory lock every install takes, so two `apply` runs at once
/// serialize instead of racing (the bytes of "pgtrail" and a version byte).
pub const ADVISORY_LOCK: i64 = 8101176133498366316;

/// Opens the transaction every install, repair and uninstall runs in, with
/// notices quieted and pgtrail's install lock taken (two runs at once wait
/// for each other instead of racing).
pub(crate) async fn begin_locked(client: &mut Client) -> Result<Transaction<'_>, PlanError> {
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
    Ok(tx)
}

/// What happened to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableAction {
    /// Capture started: the table had no capture triggers before.
    Attached,
    /// Capture was there but drifted (missing or disabled trigger, other settings); repaired.
    Repaired,
    /// Capture stopped: the table is excluded or no longer covered.
    Detached,
}

/// What `apply` did.
#[derive(Debug, Clone)]
pub struct ApplyReport {
    /// pgtrail's version before, if it was installed.
    pub previous_version: Option<String>,
    pub version: &'static str,
    /// Whether the schema and functions were (re)installed.
    pub installed: bool,
    pub tables: Vec<(String, String, TableAction)>,
    /// Audited tables that needed nothing.
    pub unchanged: usize,
    /// The problems found before applying (all repaired, except `NotCovered`).
    pub problems: Vec<Problem>,
    /// With [`ApplyOptions::baseline`]: the rows recorded per table without history.
    pub baselined: Vec<(String, String, i64)>,
    /// Indexes an upgrade left to build, built after the transaction
    /// without blocking writers (see [`crate::build_pending_indexes`]).
    pub indexes_built: Vec<String>,
}

/// How `apply` goes about it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyOptions {
    /// Record the rows that audited tables without any history yet (newly
    /// attached ones) already have, once, as inserts under a context of their
    /// own, so that time travel and `reconcile` cover rows older than the
    /// install. Tables with recorded changes are left as they are.
    pub baseline: bool,
}

/// Reads the catalog and what is installed, resolves the config against them
/// and lists the problems: everything `plan`, `check` and `apply` need.
pub async fn inspect(
    client: &impl GenericClient,
    config: &Config,
) -> Result<(Desired, Catalog, Installed, Vec<Problem>), PlanError> {
    let catalog = Catalog::load(client, &config.capture.schemas).await?;
    let installed = Installed::load(client).await?;
    let desired = desired::resolve(config, &catalog).map_err(PlanError::Config)?;
    let mut problems = drift::problems(&desired, &catalog, &installed);
    let current = installed.version.is_some()
        && !problems
            .iter()
            .any(|p| matches!(p, Problem::NotInstalled | Problem::StaleInstall { .. }));
    if current {
        let privileges = Privileges::load(client).await?;
        problems.extend(
            privileges
                .installed_shortfalls()
                .into_iter()
                .filter(|s| !matches!(s, Shortfall::NoReaderRole { .. }) && !s.accepted(&config.install))
                .map(Problem::Unprotected),
        );
    }
    Ok((desired, catalog, installed, problems))
}

/// [`repair_steps`], and the install script again when an unprotected
/// install can be repaired by the connected role (an administrator created
/// the owner role since, or a superuser runs apply): what `plan` prints and
/// `apply` runs.
pub async fn repairs(
    client: &impl GenericClient,
    desired: &Desired,
    problems: &[Problem],
) -> Result<Vec<Step>, PlanError> {
    let mut steps = repair_steps(desired, problems);
    let unprotected: Vec<&Shortfall> = problems
        .iter()
        .filter_map(|p| match p {
            Problem::Unprotected(shortfall) => Some(shortfall),
            _ => None,
        })
        .collect();
    if !unprotected.is_empty() && !steps.iter().any(|s| matches!(s, Step::Script(_))) {
        let privileges = Privileges::load(client).await?;
        let still = privileges.predicted_shortfalls();
        let fixable = unprotected.iter().any(|s| match s {
            Shortfall::InstallerOwnsTrail { .. } => !still
                .iter()
                .any(|x| matches!(x, Shortfall::InstallerOwnsTrail { .. })),
            other => !still.contains(other),
        });
        if fixable {
            steps.insert(0, Step::Script(pgtrail_capture::install_script()));
        }
    }
    Ok(steps)
}

/// Installs or upgrades pgtrail and makes capture match `config`, in one
/// transaction: either everything is done or nothing is. Only what differs is
/// changed; running it again finds nothing to do.
pub async fn apply(client: &mut Client, config: &Config) -> Result<ApplyReport, PlanError> {
    apply_with_progress(client, config, &mut |_, _, _| {}).await
}

/// [`apply`], calling `progress(done, total, step)` before each step.
pub async fn apply_with_progress(
    client: &mut Client,
    config: &Config,
    progress: &mut (dyn FnMut(usize, usize, &str) + Send),
) -> Result<ApplyReport, PlanError> {
    apply_with_options(client, config, ApplyOptions::default(), progress).await
}

/// [`apply_with_progress`] with [`ApplyOptions`].
pub async fn apply_with_options(
    client: &mut Client,
    config: &Config,
    options: ApplyOptions,
    progress: &mut (dyn FnMut(usize, usize, &str) + Send),
) -> Result<ApplyReport, PlanError> {
    // WAL mode: the slot first, outside the transaction (a slot cannot be
    // created in one that has written). Tables move into WAL mode only in
    // the transaction below, so every change committed after it is in the
    // slot; if that transaction fails, the slot stays, unused and harmless
    // (check reports it), and the next apply reuses it.
    if config_wants_wal(config) {
        crate::wal::ensure_slot(&*client).await?;
    }
    let tx = begin_locked(client).await?;

    let (desired, catalog, installed, problems) = inspect(&tx, config).await?;
    let to_attach = tables_to_attach(&problems);
    let mut report = ApplyReport {
        previous_version: installed.version.clone(),
        version: pgtrail_capture::VERSION,
        installed: problems
            .iter()
            .any(|p| matches!(p, Problem::NotInstalled | Problem::StaleInstall { .. })),
        tables: Vec::new(),
        unchanged: 0,
        problems: problems.clone(),
        baselined: Vec::new(),
        indexes_built: Vec::new(),
    };
    for table in &desired.tables {
        let name = (table.schema.clone(), table.name.clone());
        if !to_attach.contains(&name) {
            report.unchanged += 1;
            continue;
        }
        let had_capture = catalog.table(&table.schema, &table.name).is_some_and(|t| {
            t.triggers.iter().any(|tr| {
                pgtrail_capture::TRIGGER_NAMES.contains(&tr.name.as_str())
                    || tr.name == pgtrail_capture::WAL_TRIGGER_NAME
            })
        });
        let action = if had_capture {
            TableAction::Repaired
        } else {
            TableAction::Attached
        };
        report
            .tables
            .push((table.schema.clone(), table.name.clone(), action));
    }
    for ((schema, name), _) in &desired.detach {
        report
            .tables
            .push((schema.clone(), name.clone(), TableAction::Detached));
    }

    let steps = repairs(&tx, &desired, &problems).await?;
    let total = steps.len();
    for (done, step) in steps.into_iter().enumerate() {
        let label = match &step {
            Step::Script(_) => "install pgtrail's schema and functions".to_string(),
            Step::CreateSlot => "logical replication slot (created before the transaction)".to_string(),
            Step::Statement { summary, .. } => summary.clone(),
        };
        progress(done, total, &label);
        match step {
            Step::Script(sql) => tx.batch_execute(&sql).await.map_err(PlanError::database(
                "installing pgtrail's schema and functions failed",
            ))?,
            Step::CreateSlot => {}
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
    if options.baseline {
        // Every audited table with no history yet: newly attached ones, and
        // ones attached earlier that have recorded nothing so far. A table
        // with changes already has a history a baseline would contradict; a
        // dropped one (no DDL watch to detach it) has no rows to record.
        progress(total, total, "baseline of the tables without history");
        let rows = tx
            .query(
                "SELECT a.table_schema, a.table_name,
                        pgtrail.baseline(format('%I.%I', a.table_schema, a.table_name)::regclass)
                 FROM pgtrail.audited_table AS a
                 WHERE a.detached_at IS NULL AND a.baseline_at IS NULL
                   AND to_regclass(format('%I.%I', a.table_schema, a.table_name)) IS NOT NULL
                   AND NOT EXISTS (SELECT FROM pgtrail.change AS c WHERE c.table_id = a.id)
                 ORDER BY 1, 2",
                &[],
            )
            .await
            .map_err(PlanError::database(
                "recording the rows of newly audited tables failed",
            ))?;
        report.baselined = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    }
    // The trail's time partitions ahead of now, as [retention] asks
    // (`pgtrail maintain` keeps making them).
    let premake = i32::try_from(config.retention.premake).unwrap_or(i32::MAX);
    tx.query(
        "SELECT pgtrail.make_partitions($1, $2)",
        &[&config.retention.partition.name(), &premake],
    )
    .await
    .map_err(PlanError::database("making the trail's partitions ahead failed"))?;
    tx.commit()
        .await
        .map_err(PlanError::database("could not commit the install"))?;
    report.indexes_built = crate::index_build::build_pending_indexes(client, progress).await?;
    Ok(report)
}

/// Whether the config puts any table in WAL mode (globally or in a section).
fn config_wants_wal(config: &Config) -> bool {
    config.capture.mode == pgtrail_config::Mode::Wal
        || config
            .tables
            .iter()
            .any(|t| t.mode == Some(pgtrail_config::Mode::Wal))
}

/// Every argument goes as a text parameter; the statement casts it.
fn bind_value(arg: &Arg) -> Box<dyn ToSql + Sync + Send> {
    match arg {
        Arg::Text(text) => Box::new(text.clone()),
        Arg::TextArray(items) => Box::new(pg_array_text(items)),
        Arg::Bool(value) => Box::new(*value),
        Arg::Json(value) => Box::new(value.to_string()),
        Arg::BigInt(value) => Box::new(*value),
        Arg::Table { schema, name } => Box::new(pgtrail_capture::quote::qualified(schema, name)),
    }
}
