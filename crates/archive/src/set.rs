//! An archive directory as `pgtrail verify --archive DIR` reads it: every
//! archive the database recorded, its file checked against the recorded
//! hash, its change ids read to index its row groups, and its rows read a
//! row group at a time as verify asks for them (memory bounded by a few row
//! groups and a bit per archived change, whatever the files' size); and
//! what is wrong with each.

use std::collections::VecDeque;
use std::fs::File;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::GenericClient;

use crate::ArchiveError;
use crate::archive::sha256_of;
use crate::parquet_file::ArchiveReader;
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

/// Row groups kept decoded at once (verify asks for changes in id order
/// within a seal; a change of a long transaction sealed later sends it back
/// a little).
const CACHED_GROUPS: usize = 3;

/// The archive files of a directory, read as verify asks for their rows.
#[derive(Default)]
pub struct ArchiveSet {
    pub records: Vec<ArchiveRecord>,
    /// What is wrong with the files (grows as rows are read).
    pub problems: Vec<ArchiveProblem>,
    /// By record: the file opened and indexed, None when it cannot be read.
    files: Vec<Option<Indexed>>,
    /// Decoded row groups: (record, group, rows), most recent last.
    cache: VecDeque<(usize, usize, Vec<ArchivedChange>)>,
}

impl std::fmt::Debug for ArchiveSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveSet")
            .field("records", &self.records)
            .field("problems", &self.problems)
            .finish_non_exhaustive()
    }
}

/// One file opened for reading.
struct Indexed {
    reader: ArchiveReader<File>,
    /// The smallest and largest change id of each row group, and whether
    /// the group is sorted.
    groups: Vec<(i64, i64, bool)>,
    /// By row position: whether verify met the row.
    met: Vec<u64>,
}

impl ArchiveSet {
    /// The archive record whose id range holds `change_id`.
    pub fn record_of(&self, change_id: i64) -> Option<&ArchiveRecord> {
        archived_range(&self.records, change_id)
    }

    /// The archived change `change_id` from the file whose recorded range
    /// holds it (None when the file does not hold it, or cannot be read);
    /// it counts as met.
    pub fn take(&mut self, change_id: i64) -> Option<ArchivedChange> {
        let index = self.records.iter().position(|r| {
            r.first_id.is_some_and(|f| f <= change_id) && r.last_id.is_some_and(|l| change_id <= l)
        })?;
        let candidates: Vec<usize> = {
            let file = self.files.get(index)?.as_ref()?;
            file.groups
                .iter()
                .enumerate()
                .filter(|(_, (min, max, _))| *min <= change_id && change_id <= *max)
                .map(|(g, _)| g)
                .collect()
        };
        for g in candidates {
            let sorted = self.files[index].as_ref().is_some_and(|f| f.groups[g].2);
            let found = {
                let rows = self.group(index, g)?;
                let position = if sorted {
                    rows.binary_search_by_key(&change_id, |r| r.id).ok()
                } else {
                    rows.iter().position(|r| r.id == change_id)
                };
                position.map(|p| (p, rows[p].clone()))
            };
            if let Some((position, change)) = found {
                if let Some(file) = self.files[index].as_mut() {
                    let at = file.reader.group_start(g) + position;
                    file.met[at / 64] |= 1 << (at % 64);
                }
                return Some(change);
            }
        }
        None
    }

    /// The rows of row group `g` of file `index`, decoded (or from the
    /// cache); None, with the problem reported, when it cannot be read.
    fn group(&mut self, index: usize, g: usize) -> Option<&Vec<ArchivedChange>> {
        if let Some(at) = self
            .cache
            .iter()
            .position(|(i, group, _)| *i == index && *group == g)
        {
            let entry = self.cache.remove(at)?;
            self.cache.push_back(entry);
        } else {
            let read = self.files[index].as_ref()?.reader.read_group(g);
            match read {
                Ok(rows) => {
                    if self.cache.len() >= CACHED_GROUPS {
                        self.cache.pop_front();
                    }
                    self.cache.push_back((index, g, rows));
                }
                Err(error) => {
                    self.unreadable(index, error.to_string());
                    return None;
                }
            }
        }
        self.cache.back().map(|(_, _, rows)| rows)
    }

    fn unreadable(&mut self, index: usize, reason: String) {
        self.files[index] = None;
        self.cache.retain(|(i, _, _)| *i != index);
        self.problems.push(ArchiveProblem::Unreadable {
            file: self.records[index].file.clone(),
            reason,
        });
    }

    /// The archived changes [`take`](Self::take) never met: (change id,
    /// file), in file order.
    pub fn unmet(&mut self) -> Vec<(i64, String)> {
        let mut unmet = Vec::new();
        let mut failed = Vec::new();
        for (index, file) in self.files.iter().enumerate() {
            let Some(file) = file else { continue };
            for g in 0..file.groups.len() {
                let start = file.reader.group_start(g);
                let end = if g + 1 < file.groups.len() {
                    file.reader.group_start(g + 1)
                } else {
                    file.reader.rows()
                };
                if (start..end).all(|at| file.met[at / 64] & (1 << (at % 64)) != 0) {
                    continue;
                }
                match file.reader.read_ids(g) {
                    Ok(ids) => {
                        for (offset, id) in ids.into_iter().enumerate() {
                            let at = start + offset;
                            if file.met[at / 64] & (1 << (at % 64)) == 0 {
                                unmet.push((id, self.records[index].file.clone()));
                            }
                        }
                    }
                    Err(error) => {
                        failed.push((index, error.to_string()));
                        break;
                    }
                }
            }
        }
        for (index, reason) in failed {
            self.unreadable(index, reason);
        }
        unmet
    }
}

/// The record whose id range holds `change_id`.
pub fn archived_range(records: &[ArchiveRecord], change_id: i64) -> Option<&ArchiveRecord> {
    records
        .iter()
        .find(|r| r.first_id.is_some_and(|f| f <= change_id) && r.last_id.is_some_and(|l| change_id <= l))
}

/// Opens every recorded archive of `dir`: checks its hash, row count and
/// order, and indexes its row groups by change id (reading the ids only).
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
    for record in &set.records {
        let indexed = open(dir, record, &mut set.problems);
        set.files.push(indexed);
    }
    Ok(set)
}

fn open(dir: &Path, record: &ArchiveRecord, problems: &mut Vec<ArchiveProblem>) -> Option<Indexed> {
    let path = dir.join(&record.file);
    if !path.is_file() {
        problems.push(ArchiveProblem::FileMissing {
            file: record.file.clone(),
        });
        return None;
    }
    let unreadable = |reason: String| ArchiveProblem::Unreadable {
        file: record.file.clone(),
        reason,
    };
    let mut file = match File::open(&path) {
        Ok(file) => file,
        Err(error) => {
            problems.push(unreadable(error.to_string()));
            return None;
        }
    };
    match sha256_of(&mut file) {
        Ok(found) if found != record.sha256 => problems.push(ArchiveProblem::FileChanged {
            file: record.file.clone(),
            recorded: record.sha256.clone(),
            found,
        }),
        Ok(_) => {}
        Err(error) => {
            problems.push(unreadable(error.to_string()));
            return None;
        }
    }
    let reader = match ArchiveReader::new(file) {
        Ok(reader) => reader,
        Err(error) => {
            problems.push(unreadable(error.to_string()));
            return None;
        }
    };
    if reader.rows() as i64 != record.rows {
        problems.push(ArchiveProblem::RowCount {
            file: record.file.clone(),
            recorded: record.rows,
            found: reader.rows() as i64,
        });
    }
    let mut groups = Vec::with_capacity(reader.groups());
    let mut last = i64::MIN;
    let mut reported = false;
    for g in 0..reader.groups() {
        let ids = match reader.read_ids(g) {
            Ok(ids) => ids,
            Err(error) => {
                problems.push(unreadable(error.to_string()));
                return None;
            }
        };
        let (mut min, mut max, mut sorted) = (i64::MAX, i64::MIN, true);
        for (offset, id) in ids.iter().enumerate() {
            if *id <= last {
                if offset > 0 {
                    sorted = false;
                }
                if !reported {
                    problems.push(ArchiveProblem::OutOfOrder {
                        file: record.file.clone(),
                        change_id: *id,
                    });
                    reported = true;
                }
            }
            last = last.max(*id);
            min = min.min(*id);
            max = max.max(*id);
        }
        groups.push((min, max, sorted));
    }
    let met = vec![0u64; reader.rows().div_ceil(64)];
    Some(Indexed { reader, groups, met })
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
