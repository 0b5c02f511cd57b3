//! Indexes an upgrade leaves to build: on a large trail, building an index
//! inside `apply`'s transaction would lock capture out for as long as it
//! takes, so the migration lists it in `pgtrail.index_build` instead and
//! `apply` builds it after its transaction with CREATE INDEX CONCURRENTLY
//! (writers go on), then drops the index it replaces.

use tokio_postgres::Client;

use crate::PlanError;

/// The session-level lock two applies building at once take turns on
/// (the install lock's number plus one).
const BUILD_LOCK: i64 = crate::ADVISORY_LOCK + 1;

/// Builds every index listed in `pgtrail.index_build`, calling
/// `progress(done, total, index)` before each. Returns the names built.
/// Safe to interrupt: an index left invalid by an interrupted build is
/// dropped and built again next time.
pub async fn build_pending_indexes(
    client: &Client,
    progress: &mut (dyn FnMut(usize, usize, &str) + Send),
) -> Result<Vec<String>, PlanError> {
    let listed: bool = client
        .query_one("SELECT to_regclass('pgtrail.index_build') IS NOT NULL", &[])
        .await
        .map_err(PlanError::database("reading pgtrail.index_build"))?
        .get(0);
    if !listed {
        return Ok(Vec::new());
    }
    client
        .execute("SELECT pg_advisory_lock($1)", &[&BUILD_LOCK])
        .await
        .map_err(PlanError::database("taking the index build lock"))?;
    let result = build(client, progress).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&BUILD_LOCK])
        .await
        .map_err(PlanError::database("releasing the index build lock"));
    let built = result?;
    unlocked?;
    Ok(built)
}

async fn build(
    client: &Client,
    progress: &mut (dyn FnMut(usize, usize, &str) + Send),
) -> Result<Vec<String>, PlanError> {
    let pending = client
        .query(
            "SELECT name, definition, replaces FROM pgtrail.index_build ORDER BY name",
            &[],
        )
        .await
        .map_err(PlanError::database("reading pgtrail.index_build"))?;
    let total = pending.len();
    let mut built = Vec::new();
    for (done, row) in pending.iter().enumerate() {
        let name: String = row.get(0);
        let definition: String = row.get(1);
        let replaces: Vec<String> = row.get(2);
        progress(done, total, &format!("build index pgtrail.{name} (concurrently)"));
        let invalid: bool = client
            .query_one(
                "SELECT EXISTS (SELECT FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid
                                WHERE c.relnamespace = 'pgtrail'::regnamespace AND c.relname = $1
                                  AND NOT i.indisvalid)",
                &[&name],
            )
            .await
            .map_err(PlanError::database(format!("inspecting index pgtrail.{name}")))?
            .get(0);
        let quoted = pgtrail_capture::quote::ident(&name);
        if invalid {
            client
                .batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS pgtrail.{quoted}"))
                .await
                .map_err(PlanError::database(format!(
                    "dropping the unfinished index pgtrail.{name}"
                )))?;
        }
        let concurrent = definition.replacen("CREATE INDEX ", "CREATE INDEX CONCURRENTLY IF NOT EXISTS ", 1);
        client
            .batch_execute(&concurrent)
            .await
            .map_err(PlanError::database(format!("building index pgtrail.{name}")))?;
        for old in &replaces {
            client
                .batch_execute(&format!(
                    "DROP INDEX CONCURRENTLY IF EXISTS pgtrail.{}",
                    pgtrail_capture::quote::ident(old)
                ))
                .await
                .map_err(PlanError::database(format!("dropping index pgtrail.{old}")))?;
        }
        client
            .execute("DELETE FROM pgtrail.index_build WHERE name = $1", &[&name])
            .await
            .map_err(PlanError::database("updating pgtrail.index_build"))?;
        built.push(name);
    }
    Ok(built)
}
