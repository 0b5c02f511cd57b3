//! The trail's time partitions: listing them with their bounds and making
//! the next ones (`pgtrail.partitions()`, `pgtrail.make_partitions()` in
//! functions/45_partitions.sql).

use chrono::{DateTime, Utc};
use pgtrail_config::Retention;
use serde::Serialize;
use tokio_postgres::GenericClient;

use crate::ArchiveError;

/// One partition of `pgtrail.change`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    /// None: from the beginning (the history partition) or the default.
    pub from_at: Option<DateTime<Utc>>,
    /// None: the default partition.
    pub until_at: Option<DateTime<Utc>>,
    pub is_default: bool,
}

/// Every partition, oldest first, the default last.
pub async fn list(client: &impl GenericClient) -> Result<Vec<Partition>, ArchiveError> {
    let rows = client
        .query(
            "SELECT name, from_at, until_at, is_default FROM pgtrail.partitions()",
            &[],
        )
        .await
        .map_err(ArchiveError::database("listing the trail's partitions"))?;
    Ok(rows
        .iter()
        .map(|r| Partition {
            name: r.get(0),
            from_at: r.get(1),
            until_at: r.get(2),
            is_default: r.get(3),
        })
        .collect())
}

/// Makes the partitions the config asks for ahead of now; returns their names.
pub async fn premake(
    client: &impl GenericClient,
    retention: &Retention,
) -> Result<Vec<String>, ArchiveError> {
    let premake = i32::try_from(retention.premake).unwrap_or(i32::MAX);
    let rows = client
        .query(
            "SELECT pgtrail.make_partitions($1, $2)",
            &[&retention.partition.name(), &premake],
        )
        .await
        .map_err(ArchiveError::database("making the trail's next partitions"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The partitions `premake` would make now, without making them: (from, until).
pub async fn missing(
    client: &impl GenericClient,
    retention: &Retention,
) -> Result<Vec<(DateTime<Utc>, DateTime<Utc>)>, ArchiveError> {
    let premake = i32::try_from(retention.premake).unwrap_or(i32::MAX);
    let rows = client
        .query(
            "WITH RECURSIVE target AS (
                 SELECT pgtrail._grain_next(clock_timestamp(), $1) AS t, 0 AS n
                 UNION ALL SELECT pgtrail._grain_next(t, $1), n + 1 FROM target WHERE n < $2),
             start AS (SELECT coalesce(max(until_at), date_trunc($1, clock_timestamp(), 'UTC')) AS s
                       FROM pgtrail.partitions()),
             parts AS (
                 SELECT s AS f, pgtrail._grain_next(s, $1) AS u FROM start
                 UNION ALL SELECT u, pgtrail._grain_next(u, $1) FROM parts
                 WHERE u < (SELECT max(t) FROM target))
             SELECT f, u FROM parts WHERE f < (SELECT max(t) FROM target) ORDER BY f",
            &[&retention.partition.name(), &premake],
        )
        .await
        .map_err(ArchiveError::database("finding the partitions to make"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Rows in the default partition (changes outside every time partition).
pub async fn default_rows(client: &impl GenericClient) -> Result<i64, ArchiveError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('pgtrail.change_default') IS NOT NULL", &[])
        .await
        .map_err(ArchiveError::database("looking for the default partition"))?
        .get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client
        .query_one("SELECT count(*) FROM pgtrail.change_default", &[])
        .await
        .map_err(ArchiveError::database("counting the default partition's rows"))?
        .get(0))
}

/// What `pgtrail check` reports about retention: missing partitions ahead,
/// rows in the default partition, partitions past retention, and archive
/// files (with `archive_dir`) that do not match their record.
pub async fn check(
    client: &impl GenericClient,
    retention: &Retention,
    archive_dir: Option<&std::path::Path>,
) -> Result<Vec<String>, ArchiveError> {
    let partitioned: bool = client
        .query_one("SELECT to_regprocedure('pgtrail.partitions()') IS NOT NULL", &[])
        .await
        .map_err(ArchiveError::database("looking for pgtrail.partitions()"))?
        .get(0);
    if !partitioned {
        return Ok(Vec::new());
    }
    let mut problems = Vec::new();
    let missing = missing(client, retention).await?;
    if let (Some(first), Some(last)) = (missing.first(), missing.last()) {
        problems.push(format!(
            "{} partition(s) of the trail missing ahead ({} to {}): `pgtrail maintain` (or `pgtrail apply`) makes them",
            missing.len(),
            first.0.format("%Y-%m-%d"),
            last.1.format("%Y-%m-%d")
        ));
    }
    let stray = default_rows(client).await?;
    if stray > 0 {
        problems.push(format!(
            "{stray} change(s) in pgtrail.change_default, outside every time partition: they are never archived; \
             run `pgtrail maintain` regularly so partitions exist before their changes"
        ));
    }
    for (partition, kept) in crate::archive::judge(client, &retention.keep, &retention.tables).await? {
        if kept.is_none() {
            problems.push(format!(
                "partition {} is past retention ({}): `pgtrail archive` or `pgtrail maintain` archives and drops it",
                partition.name, retention.keep
            ));
        }
    }
    if let Some(dir) = archive_dir {
        for record in crate::set::records(client).await? {
            let path = dir.join(&record.file);
            if !path.is_file() {
                problems.push(format!(
                    "archive file {} is missing from {}",
                    record.file,
                    dir.display()
                ));
                continue;
            }
            let found = crate::archive::file_sha256(&path)?;
            if found != record.sha256 {
                problems.push(format!(
                    "archive file {} does not match its manifest (sha256 {found}, recorded {})",
                    record.file, record.sha256
                ));
            }
            let manifest = dir.join(format!("{}.json", record.partition));
            let ok = std::fs::read(&manifest)
                .ok()
                .and_then(|b| serde_json::from_slice::<crate::manifest::Manifest>(&b).ok())
                .is_some_and(|m| m.sha256 == record.sha256 && m.rows == record.rows);
            if !ok {
                problems.push(format!(
                    "archive manifest {} is missing or does not match the archive record",
                    manifest.display()
                ));
            }
        }
    }
    Ok(problems)
}
