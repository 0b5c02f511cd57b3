//! `pgtrail erase`: removes the values of one row (or some of its columns)
//! from every change of the trail, for a data-protection request, and keeps
//! every seal verifiable.
//!
//! Each erased value is replaced by `{"pgtrail_erased": <erasure id>}`. For a
//! sealed change, the commitment of each erased value and the salt of each
//! value kept go to `pgtrail.erased_value`, and the change's seed is
//! destroyed (zeroed): the leaf still rebuilds, and an erased value cannot
//! be guessed from its commitment. The erasure is recorded in
//! `pgtrail.erasure` with who, when, why and which changes. All of it is one
//! transaction.
//!
//! Changes already archived are erased the same way, from their files: each
//! archive file holding the subject is written again without the values
//! (see `pgtrail_archive::erase`), checked, and recorded in
//! `pgtrail.archive` in the same transaction; after the commit its manifest
//! is updated and the old file removed. With archives recorded, the archive
//! directory must be given: an erasure never leaves values behind silently.
//! The files are searched for the row before the seal lock is taken (the
//! slow read holds up no seal or archive run); under the lock only files
//! recorded since are searched, and each file is written again from the
//! recorded file, its hash checked.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use pgtrail_archive::ArchivedChange;
use pgtrail_archive::erase::{Found, Rewritten};
use pgtrail_integrity::{Seed, field_commitment, field_salt};
use tokio_postgres::Client;

use super::leaves::{CHANGES_BY_ID, ChangeRow, DESTROYED_SEED};
use super::{IntegrityError, SEAL_LOCK, require_installed};

/// What an erasure did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EraseReport {
    pub erasure_id: i64,
    /// Changes whose values were erased.
    pub change_ids: Vec<i64>,
    /// Values erased, over all those changes.
    pub values: u64,
    /// Of those changes, how many were sealed (and keep verifying).
    pub sealed: u64,
    /// Of those changes, how many were archived (erased from their files).
    pub archived: u64,
    /// The archive files written again without the erased values.
    pub files: Vec<String>,
}

/// Where an erasure looks besides the database.
#[derive(Debug, Clone, Default)]
pub struct EraseOptions {
    /// The directory `pgtrail archive` wrote to; needed once anything was
    /// archived.
    pub archive_dir: Option<PathBuf>,
}

/// Erases the values of the row `pk` of the audited table `schema`.`name`,
/// or only of `columns`, from the trail (refused once anything was archived:
/// see [`erase_with`]).
pub async fn erase(
    client: &mut Client,
    schema: &str,
    name: &str,
    pk: &serde_json::Value,
    columns: Option<&[String]>,
    reason: &str,
) -> Result<EraseReport, IntegrityError> {
    erase_with(
        client,
        schema,
        name,
        pk,
        columns,
        reason,
        &EraseOptions::default(),
    )
    .await
}

/// [`erase`], reaching into the archive files of `options.archive_dir`.
pub async fn erase_with(
    client: &mut Client,
    schema: &str,
    name: &str,
    pk: &serde_json::Value,
    columns: Option<&[String]>,
    reason: &str,
    options: &EraseOptions,
) -> Result<EraseReport, IntegrityError> {
    require_installed(client).await?;
    let table = format!("{schema}.{name}");
    if reason.trim().is_empty() {
        return Err(IntegrityError::Refused(
            "an erasure needs a reason\n  help: pass --reason, e.g. --reason 'GDPR request #4411'"
                .to_string(),
        ));
    }
    // Reading the archive files is the slow part of an erasure and needs no
    // lock: it is done before the seal lock is taken, so seals (and archive
    // runs, which seal first) are not held up by it; under the lock only the
    // files recorded meanwhile are read.
    let early = match &options.archive_dir {
        Some(dir) => read_early(client, dir, schema, name, pk).await,
        None => None,
    };
    let tx = client
        .transaction()
        .await
        .map_err(IntegrityError::database("starting the erasure"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SEAL_LOCK])
        .await
        .map_err(IntegrityError::database("waiting for a seal to finish"))?;
    if let Some(dir) = &options.archive_dir {
        // No other erasure is under way (the seal lock): finish what one
        // that stopped left.
        pgtrail_archive::erase::tidy(&tx, dir, true)
            .await
            .map_err(IntegrityError::archive)?;
    }
    tx.execute(
        "SELECT set_config('pgtrail.erasing', txid_current()::text, true)",
        &[],
    )
    .await
    .map_err(IntegrityError::database("marking the erasure"))?;
    let row = tx
        .query_opt(
            "SELECT a.id, a.key_columns FROM pgtrail.audited_table AS a
             WHERE a.table_schema = $1 AND a.table_name = $2",
            &[&schema, &name],
        )
        .await
        .map_err(IntegrityError::database("looking up the table"))?
        .ok_or_else(|| {
            IntegrityError::Refused(format!(
                "`{table}` is not an audited table\n  help: name it as schema.table, as `pgtrail log` shows it"
            ))
        })?;
    let table_id: i32 = row.get(0);
    let key_columns: Vec<String> = row.get(1);
    if let Some(columns) = columns {
        if let Some(key) = columns.iter().find(|c| key_columns.contains(c)) {
            return Err(IntegrityError::Refused(format!(
                "`{key}` is a key column of `{table}`: it identifies the row in the trail and cannot be erased\n  \
                 help: erase the other columns, or the whole row without --columns (the key stays)"
            )));
        }
    }
    let ids: Vec<i64> = tx
        .query(
            "SELECT id FROM pgtrail.change
             WHERE table_id = $1 AND ((pgtrail._h(pk) = pgtrail._h($2) AND pk = $2)
                                   OR (pgtrail._h(old_pk) = pgtrail._h($2) AND old_pk = $2))
             ORDER BY id",
            &[&table_id, pk],
        )
        .await
        .map_err(IntegrityError::database("finding the row's changes"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let found = archived_changes(&tx, options.archive_dir.as_deref(), table_id, pk, early.as_ref()).await?;
    let archived: HashMap<i64, (usize, &ArchivedChange)> = found
        .iter()
        .enumerate()
        .flat_map(|(file, f)| f.changes.iter().map(move |c| (c.id, (file, c))))
        .collect();
    if ids.is_empty() && archived.is_empty() {
        return Err(IntegrityError::Refused(format!(
            "the trail holds no change of `{table}` with key {pk}\n  help: check the key with `pgtrail history {table} '{pk}'`"
        )));
    }
    let mut ids = ids;
    ids.extend(archived.keys().copied());
    ids.sort_unstable();
    let sealed = sealed_seeds(&tx, &ids).await?;
    let earlier = earlier_erasures(&tx, &ids).await?;
    let changes = tx
        .query(CHANGES_BY_ID, &[&ids])
        .await
        .map_err(IntegrityError::database("reading the row's changes"))?;
    let mut changes: Vec<ChangeRow> = changes
        .iter()
        .map(ChangeRow::from_row)
        .collect::<Result<_, _>>()?;
    changes.extend(archived.values().map(|(_, c)| ChangeRow::from_archived(c)));
    changes.sort_by_key(|c| c.id);
    // Which values go, per change: every value of the asked columns (all
    // but the key's by default) not erased before.
    let erasable = |change: &ChangeRow| -> Result<Vec<String>, IntegrityError> {
        Ok(change
            .fields()?
            .into_iter()
            .filter(|(name, value)| {
                let column = name.split_once('.').map_or(name.as_str(), |(_, c)| c);
                !key_columns.iter().any(|k| k == column)
                    && columns.is_none_or(|cs| cs.iter().any(|c| c == column))
                    && !is_marker(value)
            })
            .map(|(name, _)| name)
            .collect())
    };
    let mut touched = Vec::new();
    for change in &changes {
        if !erasable(change)?.is_empty() {
            touched.push(change.id);
        }
    }
    if touched.is_empty() {
        return Err(IntegrityError::Refused(format!(
            "nothing to erase: the changes of `{table}` {pk} hold no such value, or it was erased before"
        )));
    }
    let erasure_id: i64 = tx
        .query_one(
            "INSERT INTO pgtrail.erasure (table_id, pk, columns, reason, change_ids)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[&table_id, pk, &columns, &reason, &touched],
        )
        .await
        .map_err(IntegrityError::database("recording the erasure"))?
        .get(0);
    let marker = serde_json::json!({ "pgtrail_erased": erasure_id });
    let mut report = EraseReport {
        erasure_id,
        change_ids: Vec::new(),
        values: 0,
        sealed: 0,
        archived: 0,
        files: Vec::new(),
    };
    // The archived changes with their values replaced, by file.
    let mut patched: Vec<HashMap<i64, ArchivedChange>> = vec![HashMap::new(); found.len()];
    for change in &changes {
        let fields = change.fields()?;
        let erased_now = erasable(change)?;
        if erased_now.is_empty() {
            continue;
        }
        if let Some(seal) = sealed.get(&change.id) {
            // Commitments of the erased values, salts of the others.
            let kept = earlier.get(&change.id);
            for (name, value) in &fields {
                let salt = match (seal.seed, kept.and_then(|k| k.get(name))) {
                    (Some(seed), _) => Some(field_salt(&seed, name)),
                    (None, Some(Some(salt))) => Some(*salt),
                    // Erased before: its commitment is already stored.
                    (None, _) => None,
                };
                let Some(salt) = salt else { continue };
                let erase_this = erased_now.iter().any(|n| n == name);
                let (salt_col, commitment_col): (Option<Vec<u8>>, Option<Vec<u8>>) = if erase_this {
                    (
                        None,
                        Some(field_commitment(&salt, name, Some(value.as_bytes()))?.to_vec()),
                    )
                } else {
                    (Some(salt.to_vec()), None)
                };
                tx.execute(
                    "INSERT INTO pgtrail.erased_value (change_id, field, salt, commitment, erasure_id)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (change_id, field) DO UPDATE
                     SET salt = excluded.salt, commitment = excluded.commitment, erasure_id = excluded.erasure_id",
                    &[&change.id, name, &salt_col, &commitment_col, &erasure_id],
                )
                .await
                .map_err(IntegrityError::database("storing what verify needs of the erased values"))?;
            }
            if seal.seed.is_some() {
                tx.execute(
                    "UPDATE pgtrail.seal_leaves
                     SET seeds = overlay(seeds PLACING $3 FROM $2 FOR 16)
                     WHERE first_position = $1",
                    &[&seal.chunk, &(seal.index * 16 + 1), &DESTROYED_SEED.as_slice()],
                )
                .await
                .map_err(IntegrityError::database(
                    "destroying the seed of an erased change",
                ))?;
            }
            report.sealed += 1;
        }
        let mut old_patch = serde_json::Map::new();
        let mut new_patch = serde_json::Map::new();
        for name in &erased_now {
            match name.split_once('.') {
                Some(("old", column)) => old_patch.insert(column.to_string(), marker.clone()),
                Some((_, column)) => new_patch.insert(column.to_string(), marker.clone()),
                None => None,
            };
        }
        let old_patch = serde_json::Value::Object(old_patch);
        let new_patch = serde_json::Value::Object(new_patch);
        if let Some((file, archived_change)) = archived.get(&change.id) {
            // PostgreSQL prints the patched values, as it printed them when
            // they were archived: the values kept keep their text.
            let row = tx
                .query_one(
                    "SELECT ($1::text::jsonb || $2)::text, ($3::text::jsonb || $4)::text",
                    &[
                        &archived_change.old_values,
                        &old_patch,
                        &archived_change.new_values,
                        &new_patch,
                    ],
                )
                .await
                .map_err(IntegrityError::database("replacing the erased values"))?;
            let mut replaced = (*archived_change).clone();
            replaced.old_values = row.get(0);
            replaced.new_values = row.get(1);
            patched[*file].insert(change.id, replaced);
            report.archived += 1;
        } else {
            tx.execute(
                "UPDATE pgtrail.change
                 SET old_values = CASE WHEN old_values IS NULL THEN NULL ELSE old_values || $2 END,
                     new_values = CASE WHEN new_values IS NULL THEN NULL ELSE new_values || $3 END
                 WHERE id = $1",
                &[&change.id, &old_patch, &new_patch],
            )
            .await
            .map_err(IntegrityError::database("replacing the erased values"))?;
        }
        report.values += erased_now.len() as u64;
        report.change_ids.push(change.id);
    }
    let mut rewritten: Vec<Rewritten> = Vec::new();
    if let Some(dir) = &options.archive_dir {
        for (found, patched) in found.iter().zip(&patched) {
            if patched.is_empty() {
                continue;
            }
            let written = pgtrail_archive::erase::rewrite(dir, &found.record, erasure_id, patched);
            let written = match written {
                Ok(written) => written,
                Err(error) => {
                    discard(dir, &rewritten);
                    return Err(IntegrityError::archive(error));
                }
            };
            let recorded = pgtrail_archive::erase::record(&tx, &written).await;
            rewritten.push(written);
            if let Err(error) = recorded {
                discard(dir, &rewritten);
                return Err(IntegrityError::archive(error));
            }
        }
    }
    if let Err(error) = tx.commit().await {
        if let Some(dir) = &options.archive_dir {
            discard(dir, &rewritten);
        }
        return Err(IntegrityError::database("committing the erasure")(error));
    }
    if let Some(dir) = &options.archive_dir {
        for written in &rewritten {
            pgtrail_archive::erase::finish(dir, written).map_err(IntegrityError::archive)?;
            report.files.push(written.file.clone());
        }
    }
    Ok(report)
}

/// Removes the new files of an erasure that did not commit.
fn discard(dir: &Path, rewritten: &[Rewritten]) {
    for written in rewritten {
        let _ = std::fs::remove_file(dir.join(&written.file));
    }
}

/// What an erasure found in the archive files before it took the seal lock.
struct Early {
    table_id: i32,
    /// The archives recorded then.
    records: Vec<pgtrail_archive::ArchiveRecord>,
    found: Vec<Found>,
}

/// Reads the archive files for the row before the seal lock is taken; None
/// when anything is amiss (the erasure then reads them all under the lock,
/// and reports what is wrong from there).
async fn read_early(
    client: &Client,
    dir: &Path,
    schema: &str,
    name: &str,
    pk: &serde_json::Value,
) -> Option<Early> {
    if !dir.is_dir() {
        return None;
    }
    let table_id: i32 = client
        .query_opt(
            "SELECT id FROM pgtrail.audited_table WHERE table_schema = $1 AND table_name = $2",
            &[&schema, &name],
        )
        .await
        .ok()??
        .get(0);
    let records = pgtrail_archive::set::records(client).await.ok()?;
    if records.is_empty() {
        return None;
    }
    let pk_text: String = client
        .query_one("SELECT $1::jsonb::text", &[pk])
        .await
        .ok()?
        .get(0);
    let found = pgtrail_archive::erase::find(dir, &records, table_id, &pk_text).ok()?;
    Some(Early {
        table_id,
        records,
        found,
    })
}

/// The archived changes of the row, by file (reusing what was read `early`
/// from files still recorded as they were then); with archives recorded and
/// no directory given, a refusal that says how to go on.
async fn archived_changes(
    tx: &tokio_postgres::Transaction<'_>,
    dir: Option<&Path>,
    table_id: i32,
    pk: &serde_json::Value,
    early: Option<&Early>,
) -> Result<Vec<Found>, IntegrityError> {
    let records = pgtrail_archive::set::records(tx)
        .await
        .map_err(IntegrityError::archive)?;
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let Some(dir) = dir else {
        return Err(IntegrityError::Refused(format!(
            "{} partition(s) of the trail are archived and the erasure must reach their files too\n  \
             help: pass --archive DIR, the directory `pgtrail archive` wrote to",
            records.len()
        )));
    };
    if !dir.is_dir() {
        return Err(IntegrityError::Refused(format!(
            "{} is not a directory\n  help: pass --archive DIR, the directory `pgtrail archive` wrote to",
            dir.display()
        )));
    }
    // The key as PostgreSQL prints it, as the files hold it.
    let pk_text: String = tx
        .query_one("SELECT $1::jsonb::text", &[pk])
        .await
        .map_err(IntegrityError::database("reading the key"))?
        .get(0);
    match early.filter(|e| e.table_id == table_id) {
        Some(early) => pgtrail_archive::erase::find_again(
            dir,
            &records,
            &early.records,
            &early.found,
            table_id,
            &pk_text,
        ),
        None => pgtrail_archive::erase::find(dir, &records, table_id, &pk_text),
    }
    .map_err(IntegrityError::archive)
}

/// Whether a value is an erasure marker already: an object with the key
/// `pgtrail_erased`, as reconcile (65_reconcile.sql) tells them too.
fn is_marker(value: &str) -> bool {
    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(value)
        .is_ok_and(|object| object.contains_key("pgtrail_erased"))
}

/// Where a sealed change's seed is.
struct SealedSeed {
    chunk: i64,
    index: i32,
    /// None when destroyed by an earlier erasure.
    seed: Option<Seed>,
}

async fn sealed_seeds(
    tx: &tokio_postgres::Transaction<'_>,
    ids: &[i64],
) -> Result<HashMap<i64, SealedSeed>, IntegrityError> {
    let rows = tx
        .query(
            "SELECT u.id, s.first_position, (u.ord - 1)::integer,
                    substring(s.seeds FROM ((u.ord - 1) * 16 + 1)::integer FOR 16)
             FROM pgtrail.seal_leaves AS s, unnest(s.change_ids) WITH ORDINALITY AS u(id, ord)
             WHERE u.id = ANY ($1)",
            &[&ids],
        )
        .await
        .map_err(IntegrityError::database("finding the seals of the row's changes"))?;
    Ok(rows
        .iter()
        .map(|row| {
            let seed: &[u8] = row.get(3);
            let seed: Option<Seed> = seed.try_into().ok().filter(|s: &Seed| *s != DESTROYED_SEED);
            (
                row.get(0),
                SealedSeed {
                    chunk: row.get(1),
                    index: row.get(2),
                    seed,
                },
            )
        })
        .collect())
}

/// Salts kept by earlier erasures (None for a value erased then).
async fn earlier_erasures(
    tx: &tokio_postgres::Transaction<'_>,
    ids: &[i64],
) -> Result<HashMap<i64, HashMap<String, Option<[u8; 16]>>>, IntegrityError> {
    let rows = tx
        .query(
            "SELECT change_id, field, salt FROM pgtrail.erased_value WHERE change_id = ANY ($1)",
            &[&ids],
        )
        .await
        .map_err(IntegrityError::database("reading earlier erasures"))?;
    let mut map: HashMap<i64, HashMap<String, Option<[u8; 16]>>> = HashMap::new();
    for row in rows {
        let salt: Option<&[u8]> = row.get(2);
        map.entry(row.get(0))
            .or_default()
            .insert(row.get(1), salt.and_then(|s| s.try_into().ok()));
    }
    Ok(map)
}
