//! Legal holds (`pgtrail hold add|list|release`): ranges of the trail that
//! must stay in the database. A partition holding any change a hold matches
//! is neither archived nor dropped.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::GenericClient;

use crate::ArchiveError;

/// A hold to add.
#[derive(Debug, Clone, Default)]
pub struct NewHold {
    /// (schema, table), or None for every table.
    pub table: Option<(String, String)>,
    /// The row's key as recorded in `pk` (JSON), or None for the whole table.
    pub pk: Option<serde_json::Value>,
    pub from_at: Option<DateTime<Utc>>,
    pub until_at: Option<DateTime<Utc>>,
    pub reason: String,
}

/// A hold as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Hold {
    pub id: i64,
    pub table: Option<String>,
    pub pk: Option<serde_json::Value>,
    pub from_at: Option<DateTime<Utc>>,
    pub until_at: Option<DateTime<Utc>>,
    pub reason: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub released_at: Option<DateTime<Utc>>,
    pub released_by: Option<String>,
    pub release_reason: Option<String>,
}

/// Records a hold; returns its id.
pub async fn add(client: &impl GenericClient, hold: &NewHold) -> Result<i64, ArchiveError> {
    if hold.reason.trim().is_empty() {
        return Err(ArchiveError::Usage(
            "a hold needs a reason (--reason TEXT)".to_string(),
        ));
    }
    if let (Some(from), Some(until)) = (hold.from_at, hold.until_at)
        && from >= until
    {
        return Err(ArchiveError::Usage(format!(
            "--from ({from}) must be before --until ({until})"
        )));
    }
    if hold.pk.is_some() && hold.table.is_none() {
        return Err(ArchiveError::Usage("--key needs --table".to_string()));
    }
    let (schema, table) = match &hold.table {
        Some((s, t)) => (Some(s.as_str()), Some(t.as_str())),
        None => (None, None),
    };
    let row = client
        .query_one(
            "INSERT INTO pgtrail.hold (table_schema, table_name, pk, from_at, until_at, reason)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            &[
                &schema,
                &table,
                &hold.pk,
                &hold.from_at,
                &hold.until_at,
                &hold.reason,
            ],
        )
        .await
        .map_err(ArchiveError::database("recording the hold"))?;
    Ok(row.get(0))
}

/// Every hold (released ones too when `all`), newest first.
pub async fn list(client: &impl GenericClient, all: bool) -> Result<Vec<Hold>, ArchiveError> {
    let rows = client
        .query(
            "SELECT id, CASE WHEN table_name IS NOT NULL THEN format('%I.%I', table_schema, table_name) END,
                    pk, from_at, until_at, reason, created_at, created_by, released_at, released_by, release_reason
             FROM pgtrail.hold WHERE $1 OR released_at IS NULL ORDER BY id DESC",
            &[&all],
        )
        .await
        .map_err(ArchiveError::database("reading the holds"))?;
    Ok(rows
        .iter()
        .map(|r| Hold {
            id: r.get(0),
            table: r.get(1),
            pk: r.get(2),
            from_at: r.get(3),
            until_at: r.get(4),
            reason: r.get(5),
            created_at: r.get(6),
            created_by: r.get(7),
            released_at: r.get(8),
            released_by: r.get(9),
            release_reason: r.get(10),
        })
        .collect())
}

/// Releases a hold (it stays recorded, with who released it and why).
pub async fn release(client: &impl GenericClient, id: i64, reason: &str) -> Result<(), ArchiveError> {
    if reason.trim().is_empty() {
        return Err(ArchiveError::Usage(
            "releasing a hold needs a reason (--reason TEXT)".to_string(),
        ));
    }
    let n = client
        .execute(
            "UPDATE pgtrail.hold SET released_at = clock_timestamp(), released_by = session_user, release_reason = $2
             WHERE id = $1 AND released_at IS NULL",
            &[&id, &reason],
        )
        .await
        .map_err(ArchiveError::database("releasing the hold"))?;
    if n == 0 {
        return Err(ArchiveError::Usage(format!(
            "there is no active hold {id}\n  help: `pgtrail hold list` shows the active holds"
        )));
    }
    Ok(())
}

/// The active holds that match a change of partition `partition` (its
/// bounds `from_at`..`until_at`): (id, reason). Without any active hold,
/// the partition is not asked: planning the match against a partition
/// of many changes costs the server tens of milliseconds.
pub async fn matching(
    client: &impl GenericClient,
    partition: &str,
    from_at: Option<DateTime<Utc>>,
    until_at: Option<DateTime<Utc>>,
) -> Result<Vec<(i64, String)>, ArchiveError> {
    let any: bool = client
        .query_one(
            "SELECT EXISTS (SELECT FROM pgtrail.hold WHERE released_at IS NULL)",
            &[],
        )
        .await
        .map_err(ArchiveError::database("looking for active legal holds"))?
        .get(0);
    if !any {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT h.id, h.reason FROM pgtrail.hold AS h
         WHERE h.released_at IS NULL
           AND (h.from_at IS NULL OR $2::timestamptz IS NULL OR h.from_at < $2)
           AND (h.until_at IS NULL OR $1::timestamptz IS NULL OR h.until_at > $1)
           AND (h.table_name IS NULL OR EXISTS (
                SELECT FROM pgtrail.{p} AS c JOIN pgtrail.audited_table AS t ON t.id = c.table_id
                WHERE t.table_schema = h.table_schema AND t.table_name = h.table_name
                  AND (h.pk IS NULL OR c.pk = h.pk OR c.old_pk = h.pk)
                  AND (h.from_at IS NULL OR c.changed_at >= h.from_at)
                  AND (h.until_at IS NULL OR c.changed_at < h.until_at)))
         ORDER BY h.id",
        p = pgtrail_capture::quote::ident(partition)
    );
    let rows = client
        .query(&sql, &[&from_at, &until_at])
        .await
        .map_err(ArchiveError::database("matching the legal holds"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
