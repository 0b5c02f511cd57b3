//! `pgtrail reconcile`: compares every live row of audited tables with what
//! the trail says it should be (`pgtrail.reconcile(regclass)`), and lists the
//! rows changed without a trace: while capture was off, or under
//! `session_replication_role = replica`, which no trigger sees.

use serde::Serialize;
use tokio_postgres::GenericClient;

use super::{IntegrityError, require_installed};

/// One row that changed without a trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unrecorded {
    /// `schema.table`.
    pub table: String,
    pub pk: serde_json::Value,
    /// `unrecorded insert`, `unrecorded update` or `unrecorded delete`.
    pub problem: String,
    /// For an update: the fields whose live value differs.
    pub fields: Option<Vec<String>>,
    /// The last recorded values of those fields (or of the row).
    pub recorded: Option<serde_json::Value>,
    /// Their live values (or the live row).
    pub live: Option<serde_json::Value>,
}

/// What reconcile compared and found.
#[derive(Debug, Clone, Serialize)]
pub struct ReconcileReport {
    /// Tables compared, and whether each has a baseline (without one, live
    /// rows the trail never saw cannot be told from rows older than the
    /// install, and are not reported).
    pub tables: Vec<(String, bool)>,
    pub rows: Vec<Unrecorded>,
}

/// Reconciles one audited table (`schema`, `name`), or all of them.
pub async fn reconcile(
    client: &impl GenericClient,
    table: Option<(&str, &str)>,
) -> Result<ReconcileReport, IntegrityError> {
    require_installed(client).await?;
    let (schema, name) = table.unzip();
    let tables = client
        .query(
            "SELECT table_schema, table_name, baseline_at IS NOT NULL, format('%I.%I', table_schema, table_name)
             FROM pgtrail.audited_table
             WHERE detached_at IS NULL AND ($1::text IS NULL OR (table_schema = $1 AND table_name = $2))
               AND to_regclass(format('%I.%I', table_schema, table_name)) IS NOT NULL
             ORDER BY 1, 2",
            &[&schema, &name],
        )
        .await
        .map_err(IntegrityError::database("listing the audited tables"))?;
    let mut report = ReconcileReport {
        tables: Vec::new(),
        rows: Vec::new(),
    };
    for row in &tables {
        let display = format!("{}.{}", row.get::<_, String>(0), row.get::<_, String>(1));
        let regclass: String = row.get(3);
        let found = client
            .query(
                "SELECT pk, problem, fields, recorded, live FROM pgtrail.reconcile($1::text::regclass)
                 ORDER BY problem, pk::text",
                &[&regclass],
            )
            .await
            .map_err(IntegrityError::database("reconciling a table"))?;
        report.rows.extend(found.iter().map(|r| Unrecorded {
            table: display.clone(),
            pk: r.get(0),
            problem: r.get(1),
            fields: r.get(2),
            recorded: r.get(3),
            live: r.get(4),
        }));
        report.tables.push((display, row.get(2)));
    }
    Ok(report)
}
