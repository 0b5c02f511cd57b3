//! The leaves of the log, read from the trail: which changes a seal covers,
//! and the canonical leaf of each change (the byte layout is in
//! [`pgtrail_integrity::commit`]; what goes into it is decided here).
//!
//! A leaf's header values, in this order (`pgtrail leaf v1`):
//! txid, ctx, table id, op (`I`, `U`, `D`, `T`), change time in microseconds
//! since 1970 (UTC), `pk`, `old_pk` and `changed_fields` as PostgreSQL prints
//! them (NULL stays NULL), and the digest of the change's transaction record
//! (who, why, and what the database knew: [`transaction_digest`]). Its
//! erasable fields are the values of the change, named `old.<column>` and
//! `new.<column>`, each the JSON text of the value as PostgreSQL prints it.
//! The table is named by its id, which survives renames.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use pgtrail_integrity::{Hash, LeafBuilder, Salt, Seed, field_commitment, field_salt};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use tokio_postgres::{GenericClient, Row};

use super::IntegrityError;

/// The columns of a change as [`ChangeRow::from_row`] reads them.
macro_rules! change_values {
    () => {
        "SELECT c.id, c.txid, c.ctx, c.table_id, c.op::text,
                (extract(epoch FROM c.changed_at) * 1000000)::bigint,
                c.pk::text, c.old_pk::text, c.changed_fields::text, c.old_values::text, c.new_values::text"
    };
}

/// [`change_values`] from the trail.
macro_rules! change_columns {
    () => {
        concat!(change_values!(), " FROM pgtrail.change AS c")
    };
}

/// Whether the transaction numbered by the SQL expression `$txid` is
/// visible in the seal snapshot `$snapshot` (text) of era `$era`: a trail
/// number is era * 2^48 + the cluster's own transaction id (migration
/// 0005), the snapshot is one of its era's cluster, and every transaction
/// of an earlier era finished before the trail moved on.
macro_rules! visible_in_seal {
    ($txid:literal, $snapshot:literal, $era:literal) => {
        concat!(
            "(",
            $txid,
            " >> 48 < ",
            $era,
            " OR (",
            $txid,
            " >> 48 = ",
            $era,
            " AND pg_visible_in_snapshot((",
            $txid,
            " & 281474976710655)::text::xid8, ",
            $snapshot,
            "::text::pg_snapshot)))"
        )
    };
}
pub(crate) use visible_in_seal;

/// The transactions one seal covers (`$1`..`$6` of [`SealParams`]), their
/// number in column `$txid`: between the bounds, visible in the seal's
/// snapshot and not in the previous seal's (if there is one).
macro_rules! sealed_by_range {
    ($txid:literal) => {
        concat!(
            $txid,
            " >= $1 AND ",
            $txid,
            " < $2 AND ",
            visible_in_seal!($txid, "$3", "$5"),
            " AND ($4::text IS NULL OR NOT ",
            visible_in_seal!($txid, "$4", "$6"),
            ")"
        )
    };
}

/// The changes a seal covers: those of the transactions visible in its
/// snapshot and not in the previous seal's (all of them for the first
/// seal), in change id order.
pub(crate) const CHANGES_OF_SEAL: &str = concat!(
    change_columns!(),
    " WHERE ",
    sealed_by_range!("c.txid"),
    " ORDER BY c.id"
);

/// [`CHANGES_OF_SEAL`] with the rows sorted before their values are
/// printed as text (a subquery that the planner keeps: `OFFSET 0`): the
/// server then does most of its work as the rows are read, so pausing the
/// reading (`Priority::Low`) pauses it, instead of all of it before the
/// first row.
pub(crate) const CHANGES_OF_SEAL_PRINTED_AS_READ: &str = concat!(
    change_values!(),
    " FROM (SELECT * FROM pgtrail.change AS c WHERE ",
    sealed_by_range!("c.txid"),
    " ORDER BY c.id OFFSET 0) AS c"
);

/// The seed stored for a sealed change whose values were erased: the real
/// seed is destroyed (zeroed) so that an erased value cannot be guessed from
/// its commitment; verify then reads the kept salts instead.
pub(crate) const DESTROYED_SEED: Seed = [0; 16];

/// Changes by id (`$1`, a bigint[]), read like [`CHANGES_OF_SEAL`].
pub(crate) const CHANGES_BY_ID: &str = concat!(change_columns!(), " WHERE c.id = ANY ($1) ORDER BY c.id");

/// The transaction records of the same transactions (see [`CHANGES_OF_SEAL`]).
pub(crate) const TRANSACTIONS_OF_SEAL: &str = concat!(
    "SELECT t.txid, t.ctx,
           (extract(epoch FROM t.started_at) * 1000000)::bigint,
           (extract(epoch FROM t.recorded_at) * 1000000)::bigint,
           t.actor_id, t.actor_name, t.actor_type, t.reason, t.context::text,
           t.db_user, t.db_role, t.application_name, t.client_addr::text,
           t.client_port::text, t.backend_pid::text
    FROM pgtrail.transaction AS t WHERE ",
    sealed_by_range!("t.txid")
);

/// The snapshot a seal was taken with, and the era of the cluster it is a
/// snapshot of.
#[derive(Debug, Clone)]
pub(crate) struct SealSnapshot {
    /// The snapshot, as text.
    pub snapshot: String,
    /// The era (`pgtrail.era`) the seal was taken in.
    pub era: i32,
}

/// The range of transactions one seal covers.
#[derive(Debug, Clone)]
pub(crate) struct SealRange {
    /// The seal's snapshot.
    pub current: SealSnapshot,
    /// The previous seal's snapshot, if there is one.
    pub previous: Option<SealSnapshot>,
}

impl SealRange {
    /// Bind parameters for [`CHANGES_OF_SEAL`]: trail number bounds (from
    /// the snapshots' xmin and xmax in their eras, so that the index on
    /// txid narrows the scan), both snapshots and both eras.
    pub async fn params(&self, client: &impl GenericClient) -> Result<SealParams, IntegrityError> {
        let previous = self.previous.as_ref().map(|p| p.snapshot.clone());
        let previous_era = self.previous.as_ref().map(|p| i64::from(p.era));
        let era = i64::from(self.current.era);
        let row = client
            .query_one(
                "SELECT coalesce(($2::bigint << 48) + pg_snapshot_xmin($1::text::pg_snapshot)::text::bigint, 0),
                        ($4::bigint << 48) + pg_snapshot_xmax($3::text::pg_snapshot)::text::bigint",
                &[&previous, &previous_era, &self.current.snapshot, &era],
            )
            .await
            .map_err(IntegrityError::database(
                "reading the bounds of a seal's snapshot",
            ))?;
        Ok(SealParams {
            low: row.get(0),
            high: row.get(1),
            snapshot: self.current.snapshot.clone(),
            previous,
            era,
            previous_era: previous_era.unwrap_or(0),
        })
    }
}

/// Bound parameters of the queries of one seal's range.
pub(crate) struct SealParams {
    low: i64,
    high: i64,
    snapshot: String,
    previous: Option<String>,
    era: i64,
    previous_era: i64,
}

impl SealParams {
    pub fn as_params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 6] {
        [
            &self.low,
            &self.high,
            &self.snapshot,
            &self.previous,
            &self.era,
            &self.previous_era,
        ]
    }
}

/// One change as read by [`CHANGES_OF_SEAL`].
pub(crate) struct ChangeRow {
    pub id: i64,
    pub txid: i64,
    pub ctx: i16,
    table_id: i32,
    op: String,
    changed_at: i64,
    pk: Option<String>,
    old_pk: Option<String>,
    changed_fields: Option<String>,
    old_values: Option<String>,
    new_values: Option<String>,
}

impl ChangeRow {
    /// A change as an archive file holds it (see `pgtrail_archive::row`).
    pub fn from_archived(change: &pgtrail_archive::ArchivedChange) -> ChangeRow {
        ChangeRow {
            id: change.id,
            txid: change.txid,
            ctx: change.ctx,
            table_id: change.table_id,
            op: change.op_code().to_string(),
            changed_at: change.changed_at,
            pk: change.pk.clone(),
            old_pk: change.old_pk.clone(),
            changed_fields: change.changed_fields_recorded.clone(),
            old_values: change.old_values.clone(),
            new_values: change.new_values.clone(),
        }
    }

    pub fn from_row(row: &Row) -> Result<ChangeRow, IntegrityError> {
        let read = || -> Result<ChangeRow, tokio_postgres::Error> {
            Ok(ChangeRow {
                id: row.try_get(0)?,
                txid: row.try_get(1)?,
                ctx: row.try_get(2)?,
                table_id: row.try_get(3)?,
                op: row.try_get(4)?,
                changed_at: row.try_get(5)?,
                pk: row.try_get(6)?,
                old_pk: row.try_get(7)?,
                changed_fields: row.try_get(8)?,
                old_values: row.try_get(9)?,
                new_values: row.try_get(10)?,
            })
        };
        read().map_err(IntegrityError::database("reading a change"))
    }

    /// The erasable fields of the change: `(name, JSON text of the value)`,
    /// sorted by name.
    pub fn fields(&self) -> Result<Vec<(String, &str)>, IntegrityError> {
        let mut fields = Vec::new();
        for (side, values) in self.values()? {
            fields.extend(values.into_iter().map(|(k, v)| (format!("{side}.{k}"), v.get())));
        }
        Ok(fields)
    }

    /// The new and the old values, each sorted by column name (byte order),
    /// so that `new.*` then `old.*` is the order of the leaf's fields.
    fn values(&self) -> Result<[(&'static str, Members<'_>); 2], IntegrityError> {
        Ok([
            ("new", parse_object(self.id, "new", self.new_values.as_deref())?),
            ("old", parse_object(self.id, "old", self.old_values.as_deref())?),
        ])
    }
}

/// The members of a JSON object: (name, value as its own text).
type Members<'a> = Vec<(Cow<'a, str>, &'a RawValue)>;

/// The members of a JSON object as PostgreSQL printed it, sorted by name.
/// Names are borrowed unless they hold escapes.
fn parse_object<'a>(
    change_id: i64,
    side: &str,
    json: Option<&'a str>,
) -> Result<Members<'a>, IntegrityError> {
    let Some(json) = json else { return Ok(Vec::new()) };
    if let Ok(object) = serde_json::from_str::<BTreeMap<&'a str, &'a RawValue>>(json) {
        return Ok(object.into_iter().map(|(k, v)| (Cow::Borrowed(k), v)).collect());
    }
    let object: BTreeMap<String, &'a RawValue> =
        serde_json::from_str(json).map_err(|e| IntegrityError::Malformed {
            change_id,
            reason: format!("{side}_values is not a JSON object: {e}"),
        })?;
    Ok(object.into_iter().map(|(k, v)| (Cow::Owned(k), v)).collect())
}

/// How the values of one change are committed to: from its seed, or, after
/// an erasure, from what the erasure kept.
pub(crate) enum Salts<'a> {
    Seed(&'a Seed),
    Erased(&'a HashMap<String, ErasedValue>),
}

/// What an erasure kept of one field of a sealed change.
#[derive(Debug, Clone)]
pub(crate) enum ErasedValue {
    /// A value that stays: its salt (the seed is gone).
    Salt(Salt),
    /// An erased value: its commitment.
    Commitment(Hash),
}

/// Computes the leaf hash of changes; reuses its buffers.
#[derive(Default)]
pub(crate) struct Leaves {
    builder: LeafBuilder,
    /// The name of the field being committed (`new.<column>`).
    name: String,
    /// txid, ctx, table id and time, as decimal text.
    numbers: [String; 4],
}

impl Leaves {
    /// The leaf of `change`, whose transaction record hashes to `transaction`.
    pub fn leaf(
        &mut self,
        change: &ChangeRow,
        transaction: Option<&Hash>,
        salts: Salts<'_>,
    ) -> Result<Hash, IntegrityError> {
        let values = change.values()?;
        let Leaves {
            builder,
            name,
            numbers,
        } = self;
        for (text, number) in numbers.iter_mut().zip([
            change.txid,
            i64::from(change.ctx),
            i64::from(change.table_id),
            change.changed_at,
        ]) {
            text.clear();
            let _ = write!(text, "{number}");
        }
        let mut writer = builder.begin(change.id);
        for value in [
            Some(numbers[0].as_bytes()),
            Some(numbers[1].as_bytes()),
            Some(numbers[2].as_bytes()),
            Some(change.op.as_bytes()),
            Some(numbers[3].as_bytes()),
            change.pk.as_deref().map(str::as_bytes),
            change.old_pk.as_deref().map(str::as_bytes),
            change.changed_fields.as_deref().map(str::as_bytes),
            transaction.map(|h| h.as_slice()),
        ] {
            writer.header(value)?;
        }
        for (side, members) in &values {
            for (column, value) in members {
                name.clear();
                name.push_str(side);
                name.push('.');
                name.push_str(column);
                let value = value.get().as_bytes();
                let commitment = match &salts {
                    Salts::Seed(seed) => field_commitment(&field_salt(seed, name), name, Some(value))?,
                    Salts::Erased(kept) => match kept.get(name.as_str()) {
                        Some(ErasedValue::Salt(salt)) => field_commitment(salt, name, Some(value))?,
                        Some(ErasedValue::Commitment(commitment)) => *commitment,
                        // A field the erasure did not know: it cannot match.
                        None => [0; 32],
                    },
                };
                writer.field(name, &commitment)?;
            }
        }
        Ok(writer.finish())
    }
}

/// The digests of the transaction records of a seal's range, by (txid, ctx).
pub(crate) async fn transaction_digests(
    client: &impl GenericClient,
    params: &SealParams,
) -> Result<HashMap<(i64, i16), Hash>, IntegrityError> {
    let rows = client
        .query(TRANSACTIONS_OF_SEAL, &params.as_params())
        .await
        .map_err(IntegrityError::database("reading transaction records"))?;
    let mut digests = HashMap::with_capacity(rows.len());
    for row in rows {
        let key: (i64, i16) = (row.get(0), row.get(1));
        digests.insert(key, transaction_digest(&row)?);
    }
    Ok(digests)
}

/// [`transaction_digest`] of a transaction record given as its 15 values
/// in text form (as an archive file holds them).
pub(crate) fn transaction_digest_of(values: &[Option<String>; 15]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(b"pgtrail transaction v1\0");
    for value in values {
        match value {
            Some(text) => {
                hasher.update((text.len() as u32).to_be_bytes());
                hasher.update(text.as_bytes());
            }
            None => hasher.update(u32::MAX.to_be_bytes()),
        }
    }
    hasher.finalize().into()
}

/// SHA-256 of `"pgtrail transaction v1" || 0x00` followed by every column of
/// the record as read by the query above (txid, ctx, started and recorded in
/// microseconds, actor id, name, type, reason, context, db user, db role,
/// application name, client address, client port, backend pid), each as
/// `u32(len) || text` or `0xFFFFFFFF` for NULL.
pub(crate) fn transaction_digest(row: &Row) -> Result<Hash, IntegrityError> {
    let mut hasher = Sha256::new();
    hasher.update(b"pgtrail transaction v1\0");
    let mut put = |value: Option<&[u8]>| match value {
        Some(bytes) => {
            hasher.update((bytes.len() as u32).to_be_bytes());
            hasher.update(bytes);
        }
        None => hasher.update(u32::MAX.to_be_bytes()),
    };
    let read = || -> Result<[String; 4], tokio_postgres::Error> {
        Ok([
            row.try_get::<_, i64>(0)?.to_string(),
            row.try_get::<_, i16>(1)?.to_string(),
            row.try_get::<_, i64>(2)?.to_string(),
            row.try_get::<_, i64>(3)?.to_string(),
        ])
    };
    for number in read().map_err(IntegrityError::database("reading a transaction record"))? {
        put(Some(number.as_bytes()));
    }
    for column in 4..15 {
        let text: Option<&str> = row
            .try_get(column)
            .map_err(IntegrityError::database("reading a transaction record"))?;
        put(text.map(str::as_bytes));
    }
    Ok(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The leaf of a change is exactly the layout the module doc describes:
    /// header values in their order, then `new.*` and `old.*` fields sorted
    /// by name, each committed with its own salt. (Sealed logs depend on
    /// this never changing silently.)
    #[test]
    fn a_leaf_is_the_documented_layout() {
        let change = ChangeRow {
            id: 7,
            txid: 42,
            ctx: 1,
            table_id: 3,
            op: "U".to_string(),
            changed_at: 1_700_000_000_123_456,
            pk: Some(r#"{"id": 1}"#.to_string()),
            old_pk: None,
            changed_fields: None,
            old_values: Some(r#"{"b": 2, "a": "x", "é\"q": [1, 2]}"#.to_string()),
            new_values: Some(r#"{"a": "y", "b": 3.50}"#.to_string()),
        };
        let seed = [9u8; 16];
        let transaction = [5u8; 32];
        let leaf = Leaves::default()
            .leaf(&change, Some(&transaction), Salts::Seed(&seed))
            .unwrap();

        let mut builder = LeafBuilder::new();
        let mut expected = builder.begin(7);
        for value in [
            Some(&b"42"[..]),
            Some(b"1"),
            Some(b"3"),
            Some(b"U"),
            Some(b"1700000000123456"),
            Some(br#"{"id": 1}"#),
            None,
            None,
            Some(&transaction[..]),
        ] {
            expected.header(value).unwrap();
        }
        for (name, value) in [
            ("new.a", r#""y""#),
            ("new.b", "3.50"),
            ("old.a", r#""x""#),
            ("old.b", "2"),
            ("old.é\"q", "[1, 2]"),
        ] {
            let commitment =
                field_commitment(&field_salt(&seed, name), name, Some(value.as_bytes())).unwrap();
            expected.field(name, &commitment).unwrap();
        }
        assert_eq!(leaf, expected.finish());
    }
}
