//! An archive directory as `pgtrail verify --archive DIR` reads it: every
//! archive the database recorded, its file checked against the recorded
//! hash and read row by row, and what is wrong with each.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::GenericClient;

use crate::ArchiveError;
use crate::archive::read_back;
use crate::row::ArchivedChange;

/// A row of `pgtrail.archive`.
#[derive(Debug, Clone, Serialize)]
pub struct ArchiveRecord {
    pub partition: String,
    pub from_at: Option<DateTime<Utc>>,
    pub until_at: DateTime<Utc>,
    pub first_id: Option<i64>,
    pub last_id: Option<i64>,
    pub rows: i64,
    pub file: String,
    pub sha256: String,
    pub seal_id: i64,
    pub archived_at: DateTime<Utc>,
}

/// Every archive recorded, oldest first (none before migration 0011).
pub async fn records(client: &impl GenericClient) -> Result<Vec<ArchiveRecord>, ArchiveError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('pgtrail.archive') IS NOT NULL", &[])
        .await
        .map_err(ArchiveError::database("looking for pgtrail.archive"))?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT partition, from_at, until_at, first_id, last_id, row_count, file, sha256, seal_id, archived_at
             FROM pgtrail.archive ORDER BY until_at, id",
            &[],
        )
        .await
        .map_err(ArchiveError::database("reading the archives"))?;
    Ok(rows
        .iter()
        .map(|r| ArchiveRecord {
            partition: r.get(0),
            from_at: r.get(1),
            until_at: r.get(2),
            first_id: r.get(3),
            last_id: r.get(4),
            rows: r.get(5),
            file: r.get(6),
            sha256: r.get(7),
            seal_id: r.get(8),
            archived_at: r.get(9),
        })
        .collect())
}

/// Something wrong with an archive file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ArchiveProblem {
    /// The file of a recorded archive is not in the directory.
    FileMissing { file: String },
    /// The file's SHA-256 is not the one recorded when it was written.
    FileChanged {
        file: String,
        recorded: String,
        found: String,
    },
    /// The file cannot be read as an archive.
    Unreadable { file: String, reason: String },
    /// The rows are not sorted by change id (rows were moved).
    OutOfOrder { file: String, change_id: i64 },
    /// The file holds another number of rows than recorded.
    RowCount { file: String, recorded: i64, found: i64 },
}

impl ArchiveProblem {
    pub fn message(&self) -> String {
        match self {
            ArchiveProblem::FileMissing { file } => format!("archive file {file} is missing"),
            ArchiveProblem::FileChanged {
                file,
                recorded,
                found,
            } => format!(
                "archive file {file} changed since it was written (sha256 {found}, recorded {recorded})"
            ),
            ArchiveProblem::Unreadable { file, reason } => {
                format!("archive file {file} cannot be read: {reason}")
            }
            ArchiveProblem::OutOfOrder { file, change_id } => {
                format!("archive file {file} is out of order at change {change_id} (rows were reordered)")
            }
            ArchiveProblem::RowCount {
                file,
                recorded,
                found,
            } => {
                format!("archive file {file} holds {found} changes; {recorded} were archived")
            }
        }
    }
}

/// The archived changes of a directory, by change id.
#[derive(Debug, Default)]
pub struct ArchiveSet {
    pub records: Vec<ArchiveRecord>,
    /// change id → (change, index of its file in `records`).
    pub rows: BTreeMap<i64, (ArchivedChange, usize)>,
    pub problems: Vec<ArchiveProblem>,
}

impl ArchiveSet {
    /// The archive record whose id range holds `change_id`.
    pub fn record_of(&self, change_id: i64) -> Option<&ArchiveRecord> {
        archived_range(&self.records, change_id)
    }
}

/// The record whose id range holds `change_id`.
pub fn archived_range(records: &[ArchiveRecord], change_id: i64) -> Option<&ArchiveRecord> {
    records
        .iter()
        .find(|r| r.first_id.is_some_and(|f| f <= change_id) && r.last_id.is_some_and(|l| change_id <= l))
}

/// Reads every recorded archive from `dir`.
pub async fn load(client: &impl GenericClient, dir: &Path) -> Result<ArchiveSet, ArchiveError> {
    if !dir.is_dir() {
        return Err(ArchiveError::Usage(format!(
            "{} is not a directory\n  help: pass the directory `pgtrail archive` wrote to",
            dir.display()
        )));
    }
    let mut set = ArchiveSet {
        records: records(client).await?,
        ..ArchiveSet::default()
    };
    for (index, record) in set.records.iter().enumerate() {
        let path = dir.join(&record.file);
        if !path.is_file() {
            set.problems.push(ArchiveProblem::FileMissing {
                file: record.file.clone(),
            });
            continue;
        }
        let rows = match read_back(&path) {
            Ok(back) => {
                if back.sha256 != record.sha256 {
                    set.problems.push(ArchiveProblem::FileChanged {
                        file: record.file.clone(),
                        recorded: record.sha256.clone(),
                        found: back.sha256,
                    });
                }
                back.changes
            }
            Err(error) => {
                set.problems.push(ArchiveProblem::Unreadable {
                    file: record.file.clone(),
                    reason: error.to_string(),
                });
                continue;
            }
        };
        if rows.len() as i64 != record.rows {
            set.problems.push(ArchiveProblem::RowCount {
                file: record.file.clone(),
                recorded: record.rows,
                found: rows.len() as i64,
            });
        }
        let mut last = i64::MIN;
        let mut reported = false;
        for row in rows {
            if row.id <= last && !reported {
                set.problems.push(ArchiveProblem::OutOfOrder {
                    file: record.file.clone(),
                    change_id: row.id,
                });
                reported = true;
            }
            last = last.max(row.id);
            set.rows.insert(row.id, (row, index));
        }
    }
    Ok(set)
}

/// The retention horizon: the end of the latest archived partition and the
/// archive files before it (None when nothing was archived).
pub async fn horizon(
    client: &impl GenericClient,
) -> Result<Option<(DateTime<Utc>, Vec<String>)>, ArchiveError> {
    let records = records(client).await?;
    let until = records.iter().map(|r| r.until_at).max();
    Ok(until.map(|u| (u, records.into_iter().map(|r| r.file).collect())))
}
