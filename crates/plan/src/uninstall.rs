//! Uninstalling: capture triggers off every table; the trail stays unless
//! asked otherwise. One transaction, under the install lock.

use tokio_postgres::Client;

use crate::PlanError;
use crate::apply::begin_locked;

/// What `uninstall` did.
#[derive(Debug, Clone, Default)]
pub struct UninstallReport {
    /// Tables whose capture triggers were removed (partitions included).
    pub detached: Vec<(String, String)>,
    /// Whether the schema `pgtrail`, with the whole trail, was dropped.
    pub dropped_trail: bool,
    /// Changes recorded in the trail (before dropping it).
    pub changes: i64,
    /// WAL mode's slot, dropped, with the bytes of WAL it still held that
    /// `pgtrail follow` had not written to the trail.
    pub dropped_slot: Option<(String, i64)>,
}

/// Removes every capture trigger, in every schema; with `drop_trail`, drops
/// the schema `pgtrail` and everything recorded in it.
pub async fn uninstall(client: &mut Client, drop_trail: bool) -> Result<UninstallReport, PlanError> {
    let tx = begin_locked(client).await?;
    let mut names: Vec<&str> = pgtrail_capture::TRIGGER_NAMES.to_vec();
    names.push(pgtrail_capture::WAL_TRIGGER_NAME);
    let carriers = tx
        .query(
            "SELECT DISTINCT n.nspname::text, c.relname::text, t.tgname::text
             FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE NOT t.tgisinternal AND t.tgname = ANY($1::text[])
             ORDER BY 1, 2, 3",
            &[&names],
        )
        .await
        .map_err(PlanError::database("finding capture triggers"))?;
    let mut report = UninstallReport::default();
    for row in &carriers {
        let (schema, table, trigger): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        let statement = format!(
            "DROP TRIGGER {} ON {}",
            pgtrail_capture::quote::ident(&trigger),
            pgtrail_capture::quote::qualified(&schema, &table)
        );
        tx.batch_execute(&statement)
            .await
            .map_err(PlanError::database(format!(
                "dropping {trigger} on {schema}.{table}"
            )))?;
        if !report.detached.contains(&(schema.clone(), table.clone())) {
            report.detached.push((schema, table));
        }
    }
    let installed: bool = tx
        .query_one("SELECT to_regclass('pgtrail.change') IS NOT NULL", &[])
        .await
        .map_err(PlanError::database("looking for the trail"))?
        .get(0);
    if installed {
        report.changes = tx
            .query_one("SELECT count(*) FROM pgtrail.change", &[])
            .await
            .map_err(PlanError::database("counting the trail"))?
            .get(0);
        tx.execute(
            "UPDATE pgtrail.audited_table SET detached_at = clock_timestamp() WHERE detached_at IS NULL",
            &[],
        )
        .await
        .map_err(PlanError::database("marking tables as detached"))?;
    }
    // The event trigger of auto_attach would attach new tables again.
    tx.batch_execute(
        "DO $uninstall$ BEGIN
             IF EXISTS (SELECT FROM pg_event_trigger WHERE evtname = 'pgtrail_auto_attach') THEN
                 DROP EVENT TRIGGER pgtrail_auto_attach;
             END IF;
             DROP EVENT TRIGGER IF EXISTS pgtrail_ddl_watch;
             DROP EVENT TRIGGER IF EXISTS pgtrail_drop_watch;
         END $uninstall$",
    )
    .await
    .map_err(PlanError::database("dropping the auto_attach event trigger"))?;
    if installed {
        tx.execute("DELETE FROM pgtrail.setting WHERE name = 'auto_attach'", &[])
            .await
            .map_err(PlanError::database("turning auto_attach off"))?;
    }
    // WAL mode's publication (its tables stay as they are otherwise).
    tx.batch_execute(
        "DO $uninstall$ BEGIN
             IF EXISTS (SELECT FROM pg_publication WHERE pubname = 'pgtrail') THEN
                 DROP PUBLICATION pgtrail;
             END IF;
         END $uninstall$",
    )
    .await
    .map_err(PlanError::database("dropping the publication pgtrail"))?;
    if drop_trail {
        tx.batch_execute("DROP SCHEMA IF EXISTS pgtrail CASCADE")
            .await
            .map_err(PlanError::database("dropping the schema pgtrail"))?;
        report.dropped_trail = true;
    }
    tx.commit()
        .await
        .map_err(PlanError::database("could not commit the uninstall"))?;
    // The slot last, outside the transaction: once capture is gone nothing
    // may keep WAL from being recycled.
    report.dropped_slot = client
        .query_opt(
            &format!(
                "SELECT s.slot_name::text, pg_wal_lsn_diff(pg_current_wal_insert_lsn(), s.confirmed_flush_lsn)::bigint,
                        pg_drop_replication_slot(s.slot_name)
                 FROM pg_replication_slots AS s WHERE s.slot_name = ({})",
                crate::wal::SLOT_NAME_SQL
            ),
            &[],
        )
        .await
        .map_err(PlanError::database("dropping the logical replication slot of WAL mode"))?
        .map(|r| (r.get(0), r.get::<_, Option<i64>>(1).unwrap_or(0)));
    Ok(report)
}
