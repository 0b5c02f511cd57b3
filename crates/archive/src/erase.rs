//! Erasure in archive files: `pgtrail erase` of a subject whose changes
//! were archived finds them in the recorded files ([`find`]) and, in the
//! erasure's transaction, writes each affected file again with the erased
//! values replaced ([`rewrite`]) under a new name
//! (`<partition>.e<erasure id>.parquet`), reads it back and checks it, and
//! records its name and hash in `pgtrail.archive`. Only after the commit is
//! the manifest rewritten and the old file removed ([`finish`]); a run that
//! stopped in between is finished by [`tidy`], which every erase (under the
//! seal lock) and archive run calls first. The proofs need nothing from the files: the erasure
//! keeps each erased value's commitment in the database, as for live
//! changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio_postgres::GenericClient;

use crate::ArchiveError;
use crate::archive::{read_back, sha256_of};
use crate::manifest::Manifest;
use crate::parquet_file::{ArchiveReader, ParquetWriter};
use crate::row::ArchivedChange;
use crate::set::{ArchiveRecord, records};

/// The archived changes of one subject in one archive file.
#[derive(Debug, Clone)]
pub struct Found {
    pub record: ArchiveRecord,
    pub changes: Vec<ArchivedChange>,
}

/// Every archived change of table `table_id` whose key (`pk`, or `old_pk`
/// before a key change) is `pk_text` (the key as PostgreSQL prints the
/// jsonb), by file. A recorded file that is missing or no longer the one
/// recorded is an error: an erasure must not skip it.
pub fn find(
    dir: &Path,
    records: &[ArchiveRecord],
    table_id: i32,
    pk_text: &str,
) -> Result<Vec<Found>, ArchiveError> {
    let mut found = Vec::new();
    for record in records {
        let path = dir.join(&record.file);
        let reader = open_recorded(&path, record, |found| {
            format!(
                "archive file {} is not the one recorded (sha256 {found}, recorded {}); nothing was erased\n  \
                 help: run `pgtrail verify --archive {}` to see what happened to it",
                path.display(),
                record.sha256,
                dir.display()
            )
        })?;
        let mut changes = Vec::new();
        for g in 0..reader.groups() {
            let rows = reader.read_group(g).map_err(|e| unreadable(&path, e))?;
            changes.extend(rows.into_iter().filter(|c| {
                c.table_id == table_id
                    && (c.pk.as_deref() == Some(pk_text) || c.old_pk.as_deref() == Some(pk_text))
            }));
        }
        if !changes.is_empty() {
            found.push(Found {
                record: record.clone(),
                changes,
            });
        }
    }
    Ok(found)
}

/// [`find`] over `records`, reusing what an earlier [`find`] over `earlier`
/// found: a file still recorded under the same name and hash is the same
/// file and is not read again; only the files recorded since are. An erasure
/// reads the files before it takes the seal lock, and under the lock reads
/// again only what an archive run or another erasure recorded meanwhile.
/// (A reused file is checked again when it is written anew: [`rewrite`]
/// refuses a file whose hash is no longer the recorded one.)
pub fn find_again(
    dir: &Path,
    records: &[ArchiveRecord],
    earlier: &[ArchiveRecord],
    found: &[Found],
    table_id: i32,
    pk_text: &str,
) -> Result<Vec<Found>, ArchiveError> {
    let same = |a: &ArchiveRecord, b: &ArchiveRecord| {
        a.partition == b.partition && a.file == b.file && a.sha256 == b.sha256
    };
    let mut again = Vec::new();
    for record in records {
        if let Some(f) = found.iter().find(|f| same(&f.record, record)) {
            again.push(Found {
                record: record.clone(),
                changes: f.changes.clone(),
            });
        } else if !earlier.iter().any(|e| same(e, record)) {
            again.extend(find(dir, std::slice::from_ref(record), table_id, pk_text)?);
        }
    }
    Ok(again)
}

fn unreadable(path: &Path, error: crate::parquet_file::ReadError) -> ArchiveError {
    ArchiveError::Unreadable {
        file: path.display().to_string(),
        reason: error.to_string(),
    }
}

/// Opens the recorded file of `record` for reading a row group at a time,
/// once its hash is the recorded one (else the error `changed` words from
/// the hash found).
fn open_recorded(
    path: &Path,
    record: &ArchiveRecord,
    changed: impl FnOnce(&str) -> String,
) -> Result<ArchiveReader<std::fs::File>, ArchiveError> {
    let io = |what: &str| {
        let what = format!("{what} {}", path.display());
        move |source| ArchiveError::Io { what, source }
    };
    let mut file = std::fs::File::open(path).map_err(io("opening"))?;
    let sha256 = sha256_of(&mut file).map_err(io("reading"))?;
    if sha256 != record.sha256 {
        return Err(ArchiveError::Mismatch(changed(&sha256)));
    }
    ArchiveReader::new(file).map_err(|e| unreadable(path, e))
}

/// An archive file written again without the erased values.
#[derive(Debug, Clone)]
pub struct Rewritten {
    pub partition: String,
    /// The new file's name in the directory.
    pub file: String,
    /// The file it replaces.
    pub replaces: String,
    pub sha256: String,
    pub rows_sha256: String,
    pub erasure_id: i64,
}

/// The name of the file that replaces `partition`'s after erasure `erasure_id`.
fn erased_name(partition: &str, erasure_id: i64) -> String {
    format!("{partition}.e{erasure_id}.parquet")
}

/// Writes the recorded file of `record` again with the rows of `patched`
/// (by change id) in place of the file's, as `<partition>.e<id>.parquet`;
/// reads it back and checks that it holds exactly the rows meant. The old
/// file is left in place.
pub fn rewrite(
    dir: &Path,
    record: &ArchiveRecord,
    erasure_id: i64,
    patched: &HashMap<i64, ArchivedChange>,
) -> Result<Rewritten, ArchiveError> {
    let old = dir.join(&record.file);
    let reader = open_recorded(&old, record, |_| {
        format!(
            "archive file {} changed while it was erased from; nothing was erased",
            old.display()
        )
    })?;
    let file = erased_name(&record.partition, erasure_id);
    let path = dir.join(&file);
    let temporary = dir.join(format!("{file}.partial"));
    let mut writer = ParquetWriter::create(&temporary).map_err(|e| ArchiveError::parquet(&temporary, e))?;
    let mut hasher = Sha256::new();
    let mut replaced = 0usize;
    let rows = reader.rows() as i64;
    // A row group at a time: memory bounded whatever the file's size.
    for g in 0..reader.groups() {
        let group = match reader.read_group(g) {
            Ok(group) => group,
            Err(error) => {
                drop(writer);
                let _ = std::fs::remove_file(&temporary);
                return Err(unreadable(&old, error));
            }
        };
        for change in group {
            let change = match patched.get(&change.id) {
                Some(patch) => {
                    replaced += 1;
                    patch.clone()
                }
                None => change,
            };
            change.digest_into(&mut hasher);
            writer
                .push(change)
                .map_err(|e| ArchiveError::parquet(&temporary, e))?;
        }
    }
    writer
        .finish()
        .map_err(|e| ArchiveError::parquet(&temporary, e))?;
    let rows_sha256 = crate::hex(&hasher.finalize());
    if replaced != patched.len() {
        let _ = std::fs::remove_file(&temporary);
        return Err(ArchiveError::Mismatch(format!(
            "{} holds {replaced} of the {} changes to erase; nothing was erased",
            old.display(),
            patched.len()
        )));
    }
    let written = read_back(&temporary)?;
    if written.rows != rows || written.rows_sha256 != rows_sha256 || !written.ordered {
        let _ = std::fs::remove_file(&temporary);
        return Err(ArchiveError::Mismatch(format!(
            "{} read back {} rows (digest {}), {} were written (digest {}); nothing was erased",
            temporary.display(),
            written.rows,
            written.rows_sha256,
            rows,
            rows_sha256
        )));
    }
    std::fs::rename(&temporary, &path).map_err(|e| ArchiveError::Io {
        what: format!("renaming {} to {}", temporary.display(), path.display()),
        source: e,
    })?;
    Ok(Rewritten {
        partition: record.partition.clone(),
        file,
        replaces: record.file.clone(),
        sha256: written.sha256,
        rows_sha256,
        erasure_id,
    })
}

/// Records the rewritten file in `pgtrail.archive` (in the erasure's
/// transaction, which allows it).
pub async fn record(client: &impl GenericClient, rewritten: &Rewritten) -> Result<(), ArchiveError> {
    client
        .execute(
            "UPDATE pgtrail.archive SET file = $2, sha256 = $3 WHERE partition = $1",
            &[&rewritten.partition, &rewritten.file, &rewritten.sha256],
        )
        .await
        .map_err(ArchiveError::database(
            "recording the archive file without the erased values",
        ))?;
    Ok(())
}

/// After the erasure committed: the manifest names the new file and the
/// old file is removed.
pub fn finish(dir: &Path, rewritten: &Rewritten) -> Result<(), ArchiveError> {
    crate::failpoint("erase:committed");
    update_manifest(
        dir,
        &rewritten.partition,
        &rewritten.file,
        &rewritten.sha256,
        &rewritten.rows_sha256,
        Some(rewritten.erasure_id),
    )?;
    remove(&dir.join(&rewritten.replaces))
}

fn remove(path: &Path) -> Result<(), ArchiveError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ArchiveError::Io {
            what: format!("removing {} (its values were erased)", path.display()),
            source: e,
        }),
    }
}

fn update_manifest(
    dir: &Path,
    partition: &str,
    file: &str,
    sha256: &str,
    rows_sha256: &str,
    erasure: Option<i64>,
) -> Result<(), ArchiveError> {
    let path = dir.join(format!("{partition}.json"));
    let text = std::fs::read(&path).map_err(|e| ArchiveError::Io {
        what: format!("reading the manifest {}", path.display()),
        source: e,
    })?;
    let mut manifest: Manifest = serde_json::from_slice(&text).map_err(|e| ArchiveError::Unreadable {
        file: path.display().to_string(),
        reason: e.to_string(),
    })?;
    manifest.file = file.to_string();
    manifest.sha256 = sha256.to_string();
    manifest.rows_sha256 = rows_sha256.to_string();
    if let Some(id) = erasure
        && !manifest.erasures.contains(&id)
    {
        manifest.erasures.push(id);
    }
    crate::archive::write_manifest(dir, &manifest)
}

/// What [`tidy`] did.
#[derive(Debug, Default, Clone)]
pub struct Tidied {
    /// Files removed: replaced by a file without erased values.
    pub removed: Vec<PathBuf>,
    /// Manifests brought up to date with their recorded file.
    pub manifests: Vec<PathBuf>,
}

/// The erasure a file name of `partition` carries: 0 for the file
/// `archive` wrote, N for `<partition>.eN.parquet`, None for another name.
fn erasure_of(partition: &str, name: &str) -> Option<i64> {
    let rest = name.strip_prefix(partition)?.strip_prefix('.')?;
    if rest == "parquet" {
        return Some(0);
    }
    let n = rest.strip_prefix('e')?.strip_suffix(".parquet")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// Finishes erasures that stopped after their commit: for every recorded
/// archive, the files of its partition that an erasure replaced are removed
/// (only once the recorded file is there with its recorded hash), and a
/// manifest that names another file is brought up to date.
///
/// `exclusive`: the caller holds the seal lock, so no erasure is under way
/// and a file of a later erasure than the recorded one is left over from an
/// erasure that did not commit: it goes too. Without it such a file may be
/// one an erasure is writing now, and stays.
pub async fn tidy(client: &impl GenericClient, dir: &Path, exclusive: bool) -> Result<Tidied, ArchiveError> {
    let mut tidied = Tidied::default();
    if !dir.is_dir() {
        return Ok(tidied);
    }
    let records = records(client).await?;
    if records.is_empty() {
        return Ok(tidied);
    }
    let by_partition: HashMap<&str, &ArchiveRecord> =
        records.iter().map(|r| (r.partition.as_str(), r)).collect();
    let mut stale: Vec<(&ArchiveRecord, PathBuf)> = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| ArchiveError::Io {
        what: format!("listing {}", dir.display()),
        source: e,
    })?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((partition, _)) = name.split_once('.') else {
            continue;
        };
        let Some(record) = by_partition.get(partition) else {
            continue;
        };
        let (Some(this), Some(recorded)) = (erasure_of(partition, name), erasure_of(partition, &record.file))
        else {
            continue;
        };
        if this < recorded || (exclusive && this > recorded) {
            stale.push((record, entry.path()));
        }
    }
    let mut checked: HashMap<&str, bool> = HashMap::new();
    for (record, path) in stale {
        let recorded = dir.join(&record.file);
        let intact = match checked.get(record.partition.as_str()) {
            Some(intact) => *intact,
            None => {
                let intact = crate::archive::file_sha256(&recorded).is_ok_and(|s| s == record.sha256);
                checked.insert(record.partition.as_str(), intact);
                intact
            }
        };
        if intact {
            remove(&path)?;
            tidied.removed.push(path);
        }
    }
    for record in &records {
        let path = dir.join(format!("{}.json", record.partition));
        let Ok(text) = std::fs::read(&path) else { continue };
        let Ok(manifest) = serde_json::from_slice::<Manifest>(&text) else {
            continue;
        };
        if manifest.file == record.file && manifest.sha256 == record.sha256 {
            continue;
        }
        let Ok(back) = read_back(&dir.join(&record.file)) else {
            continue;
        };
        if back.sha256 != record.sha256 {
            continue;
        }
        let erasure = erasure_of(&record.partition, &record.file).filter(|n| *n > 0);
        update_manifest(
            dir,
            &record.partition,
            &record.file,
            &back.sha256,
            &back.rows_sha256,
            erasure,
        )?;
        tidied.manifests.push(path);
    }
    Ok(tidied)
}

#[cfg(test)]
mod tests {
    use super::erasure_of;

    #[test]
    fn file_names_carry_their_erasure() {
        assert_eq!(
            erasure_of("change_p20260101", "change_p20260101.parquet"),
            Some(0)
        );
        assert_eq!(
            erasure_of("change_p20260101", "change_p20260101.e12.parquet"),
            Some(12)
        );
        assert_eq!(
            erasure_of("change_p20260101", "change_p20260101.e12.parquet.partial"),
            None
        );
        assert_eq!(erasure_of("change_p20260101", "change_p20260101.json"), None);
        assert_eq!(erasure_of("change_p20260101", "change_p20260101.e.parquet"), None);
        assert_eq!(erasure_of("change_p20260101", "change_p202601015.parquet"), None);
    }
}
