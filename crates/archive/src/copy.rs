//! Reading a partition for its archive with binary `COPY ... TO STDOUT`,
//! a slice of its ids at a time (memory bounded by a slice, whatever the
//! partition's size): the slice's change rows alone (no join, no value
//! printed as text but the `jsonb` documents, which PostgreSQL sends as
//! their text anyway), then the transaction records of the keys found in
//! them, fetched by key (no second scan of the slice in the server), and
//! the tables' names in a query; the rows are joined here and copied into
//! the Parquet columns ([`Columns`]: one buffer a column, nothing counted
//! or allocated per value), and the row digests
//! ([`ArchivedChange::digest_into`]; [`crate::digest`]) are taken from
//! the joined values as they go into the columns.
//!
//! [`ArchivedChange::digest_into`]: crate::row::ArchivedChange::digest_into

use std::borrow::Cow;
use std::collections::HashMap;

use bytes::{Bytes, BytesMut};

use sha2::{Digest, Sha256};

use crate::digest::ColumnCheck;
use crate::key_order::{KeyOrders, ToSort};
use crate::parquet_file::Columns;

/// The partition's changes of a slice of ids, in id order; `{partition}`
/// is replaced by the quoted partition name, `{from}` and `{until}` by the
/// slice's bounds (integers: COPY takes no parameters). The list column
/// is `changed_fields` as stored: for an UPDATE recorded with diff images
/// (no stored list) the keys of `new_values` are taken here from its text
/// and put in the order `pgtrail.changes` shows ([`crate::key_order`]),
/// without a sort per row in the server. `changed_fields` as stored, in
/// its text form (the seal's leaves read that), is printed here from the
/// array as PostgreSQL's `array_out` prints it ([`array_text`]), not by
/// the server.
pub(crate) const COPY_CHANGES: &str = "
COPY (SELECT c.id, c.txid, c.changed_at, c.table_id, c.op, c.ctx, c.pk, c.old_values, c.new_values,
       c.changed_fields, c.old_pk
FROM pgtrail.{partition} AS c
WHERE c.id >= {from} AND c.id < {until}
ORDER BY c.id) TO STDOUT (FORMAT binary)";

/// The partition's changes in a range of its blocks, as they lie there
/// (a TID range scan: no index read, no sort); `{blocks}` is replaced by
/// the range's condition on `c.ctid` ([`blocks_condition`]). A trail
/// written by one session at a time lies in id order; the decoder sorts
/// each range's changes by id and stops when one of them comes before a
/// change of an earlier range (the partition is then read again with
/// [`COPY_CHANGES`]: rows an erasure rewrote, or written by sessions side
/// by side, lie out of id order).
pub(crate) const COPY_CHANGES_BY_BLOCKS: &str = "
COPY (SELECT c.id, c.txid, c.changed_at, c.table_id, c.op, c.ctx, c.pk, c.old_values, c.new_values,
       c.changed_fields, c.old_pk
FROM pgtrail.{partition} AS c
WHERE {blocks}) TO STDOUT (FORMAT binary)";

/// The condition of [`COPY_CHANGES_BY_BLOCKS`] for blocks `from` up to
/// `until` (None: to the end of the partition).
pub(crate) fn blocks_condition(from: u32, until: Option<u32>) -> String {
    match until {
        Some(until) => format!("c.ctid >= '({from},0)'::tid AND c.ctid < '({until},0)'::tid"),
        None => format!("c.ctid >= '({from},0)'::tid"),
    }
}

/// Whether an erasure rewrote changes of the partition (`{partition}`):
/// their new versions lie where there was room, out of id order, and the
/// partition is read by id at once.
pub(crate) const ERASED: &str = "
SELECT EXISTS (SELECT 1 FROM pgtrail.erasure AS e, unnest(e.change_ids) AS i
               WHERE i BETWEEN (SELECT min(c.id) FROM pgtrail.{partition} AS c)
                           AND (SELECT max(c.id) FROM pgtrail.{partition} AS c))";

/// The partition's size in blocks (`$1` its name).
pub(crate) const BLOCKS: &str = "
SELECT pg_catalog.pg_relation_size(pg_catalog.format('pgtrail.%I', $1::text)::regclass)
       / pg_catalog.current_setting('block_size')::bigint";

/// Whether the database sorts text by its bytes (then the keys of a
/// diff-image UPDATE sorted by their bytes are the list `pgtrail.changes`
/// shows). PostgreSQL 14 has no
/// `datlocprovider`: its databases all sort with libc.
pub(crate) const SORTS_BY_BYTES: &str = "
SELECT coalesce((SELECT coalesce(to_jsonb(d) ->> 'datlocprovider', 'c') = 'c' AND d.datcollate IN ('C', 'POSIX')
                 FROM pg_catalog.pg_database AS d WHERE d.datname = current_database()), false)";

/// The transaction records of the keys `$1` (txids) and `$2` (their
/// `ctx`), `$3` and `$4` the least and greatest of the txids (they bound
/// the scan of the records' key; the keys pick the records in it). Its
/// rows, in binary, are what a binary COPY of the same columns would send
/// ([`Transactions::insert`]).
pub(crate) const TRANSACTIONS_BY_KEY: &str = "
SELECT x.txid, x.ctx, x.actor_id, x.actor_name, x.actor_type, x.reason, x.context,
       x.db_user, x.application_name, x.client_addr::text, x.started_at, x.recorded_at,
       x.db_role, x.client_port, x.backend_pid
FROM pgtrail.transaction AS x
WHERE x.txid BETWEEN $3 AND $4
  AND (x.txid, x.ctx) IN (SELECT k.txid, k.ctx FROM unnest($1::bigint[], $2::smallint[]) AS k(txid, ctx))";

/// The first id of the partition at or after `$1` (NULL past its end).
pub(crate) const NEXT_ID: &str = "SELECT min(c.id) FROM pgtrail.{partition} AS c WHERE c.id >= $1";

/// The audited tables' names by id (a change's `table_id`).
pub(crate) const TABLES: &str = "SELECT id, table_schema, table_name FROM pgtrail.audited_table";

/// Columns in a tuple of [`COPY_CHANGES`] and in a row of [`TRANSACTIONS_BY_KEY`].
const CHANGE_FIELDS: usize = 11;
const TRANSACTION_FIELDS: usize = 15;

/// Microseconds from 1970-01-01 to 2000-01-01 (PostgreSQL's epoch).
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// The binary COPY header's fixed part: signature, flags, extension length.
const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// The version byte that starts a `jsonb` value in binary form (its text follows).
const JSONB_VERSION: u8 = 1;

/// Why the COPY data could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading the partition's COPY data: {0}")]
pub struct CopyError(pub String);

fn bad(what: impl Into<String>) -> CopyError {
    CopyError(what.into())
}

/// A field's place in the tuple: start of its bytes (after the length),
/// and its length (None for NULL).
#[derive(Clone, Copy, Default)]
struct Field {
    start: usize,
    len: Option<usize>,
}

/// Splits binary COPY data into tuples of `N` fields, whatever the chunks
/// it arrives in.
#[derive(Default)]
struct Tuples<const N: usize> {
    /// Bytes of a tuple not complete yet (or of the header).
    pending: BytesMut,
    header: bool,
    finished: bool,
}

impl<const N: usize> Tuples<N> {
    /// Hands every complete tuple of `chunk` (with what was left over from
    /// the chunks before) to `each`: the bytes it lies in, where it starts
    /// and ends, and its fields.
    fn feed(
        &mut self,
        chunk: Bytes,
        mut each: impl FnMut(&Bytes, usize, usize, &[Field; N]) -> Result<(), CopyError>,
    ) -> Result<(), CopyError> {
        let data = if self.pending.is_empty() {
            chunk
        } else {
            self.pending.extend_from_slice(&chunk);
            self.pending.split().freeze()
        };
        let mut pos = 0;
        if !self.header {
            let fixed = SIGNATURE.len() + 8;
            if data.len() < fixed {
                self.pending.extend_from_slice(&data);
                return Ok(());
            }
            if &data[..SIGNATURE.len()] != SIGNATURE {
                return Err(bad("not binary COPY data"));
            }
            let extension = be_u32(&data[SIGNATURE.len() + 4..fixed]) as usize;
            if data.len() < fixed + extension {
                self.pending.extend_from_slice(&data);
                return Ok(());
            }
            pos = fixed + extension;
            self.header = true;
        }
        while pos < data.len() {
            if self.finished {
                return Err(bad("data after the end of the COPY"));
            }
            if data.len() < pos + 2 {
                break;
            }
            let count = i16::from_be_bytes([data[pos], data[pos + 1]]);
            if count == -1 {
                self.finished = true;
                pos += 2;
                continue;
            }
            match fields::<N>(&data, pos)? {
                Some((fields, end)) => {
                    each(&data, pos, end, &fields)?;
                    pos = end;
                }
                None => break,
            }
        }
        if pos < data.len() {
            self.pending.extend_from_slice(&data[pos..]);
        }
        Ok(())
    }
}

/// The fields of the tuple at `pos` and where it ends, or None when the
/// tuple is not complete in `data`.
fn fields<const N: usize>(data: &[u8], pos: usize) -> Result<Option<([Field; N], usize)>, CopyError> {
    if data.len() < pos + 2 {
        return Ok(None);
    }
    let count = i16::from_be_bytes([data[pos], data[pos + 1]]);
    if count as usize != N {
        return Err(bad(format!("a row of {count} columns, {N} expected")));
    }
    let mut fields = [Field::default(); N];
    let mut at = pos + 2;
    for field in &mut fields {
        if data.len() < at + 4 {
            return Ok(None);
        }
        let len = i32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
        at += 4;
        field.start = at;
        if len >= 0 {
            let len = len as usize;
            if data.len() < at + len {
                return Ok(None);
            }
            field.len = Some(len);
            at += len;
        } else if len != -1 {
            return Err(bad(format!("a field of length {len}")));
        }
    }
    Ok(Some((fields, at)))
}

/// Reading the fields of one tuple.
struct Tuple<'a, const N: usize> {
    data: &'a Bytes,
    f: &'a [Field; N],
    what: &'static str,
}

impl<const N: usize> Tuple<'_, N> {
    fn raw(&self, i: usize) -> Option<&[u8]> {
        self.f[i]
            .len
            .map(|n| &self.data[self.f[i].start..self.f[i].start + n])
    }

    fn fixed<const W: usize>(&self, i: usize) -> Result<Option<[u8; W]>, CopyError> {
        match self.raw(i) {
            None => Ok(None),
            Some(b) => <[u8; W]>::try_from(b).map(Some).map_err(|_| {
                bad(format!(
                    "column {} of a {} has {} bytes, {W} expected",
                    i + 1,
                    self.what,
                    b.len()
                ))
            }),
        }
    }

    fn long(&self, i: usize) -> Result<Option<i64>, CopyError> {
        Ok(self.fixed::<8>(i)?.map(i64::from_be_bytes))
    }

    fn int(&self, i: usize) -> Result<Option<i32>, CopyError> {
        Ok(self.fixed::<4>(i)?.map(i32::from_be_bytes))
    }

    fn short(&self, i: usize) -> Result<Option<i16>, CopyError> {
        Ok(self.fixed::<2>(i)?.map(i16::from_be_bytes))
    }

    /// A time in microseconds since 1970.
    fn time(&self, i: usize) -> Result<Option<i64>, CopyError> {
        self.long(i)?
            .map(|v| {
                v.checked_add(POSTGRES_EPOCH_MICROS).ok_or_else(|| {
                    bad(format!(
                        "column {} of a {} is not a finite time",
                        i + 1,
                        self.what
                    ))
                })
            })
            .transpose()
    }

    fn required<T>(&self, v: Result<Option<T>, CopyError>, name: &str) -> Result<T, CopyError> {
        v?.ok_or_else(|| bad(format!("`{name}` of a {} is NULL", self.what)))
    }

    /// A text value, as a slice of the buffer.
    fn text(&self, i: usize) -> Option<Bytes> {
        self.f[i]
            .len
            .map(|n| self.data.slice(self.f[i].start..self.f[i].start + n))
    }

    /// A `jsonb` value's text, as a slice of the buffer.
    fn jsonb(&self, i: usize) -> Result<Option<Bytes>, CopyError> {
        let start = self.f[i].start;
        Ok(self
            .jsonb_slice(i)?
            .map(|text| self.data.slice(start + 1..start + 1 + text.len())))
    }

    /// A `jsonb` value's text, borrowed.
    fn jsonb_slice(&self, i: usize) -> Result<Option<&[u8]>, CopyError> {
        match self.raw(i) {
            None => Ok(None),
            Some([JSONB_VERSION, text @ ..]) => Ok(Some(text)),
            Some(_) => Err(bad(format!(
                "column {} of a {} is not jsonb of version {JSONB_VERSION}",
                i + 1,
                self.what
            ))),
        }
    }
}

/// A change's transaction record (all None without one).
#[derive(Default, Clone)]
struct Transaction {
    /// actor_id, actor_name, actor_type, reason, context, db_user,
    /// application_name, client_addr, db_role.
    texts: [Option<Bytes>; 9],
    started_at: Option<i64>,
    recorded_at: Option<i64>,
    client_port: Option<i32>,
    backend_pid: Option<i32>,
}

impl Transaction {
    fn decode(data: &Bytes, f: &[Field; TRANSACTION_FIELDS]) -> Result<Transaction, CopyError> {
        let t = Tuple {
            data,
            f,
            what: "transaction record",
        };
        Ok(Transaction {
            texts: [
                t.text(2),
                t.text(3),
                t.text(4),
                t.text(5),
                t.jsonb(6)?,
                t.text(7),
                t.text(8),
                t.text(9),
                t.text(12),
            ],
            started_at: t.time(10)?,
            recorded_at: t.time(11)?,
            client_port: t.int(13)?,
            backend_pid: t.int(14)?,
        })
    }
}

/// The transaction records of [`TRANSACTIONS_BY_KEY`] by (txid, ctx), each
/// kept as the bytes of a binary COPY tuple of its fields and decoded when
/// a change asks for it.
#[derive(Default)]
pub(crate) struct Transactions {
    rows: HashMap<(i64, i16), Bytes>,
}

impl Transactions {
    /// Adds a record given as its fields' binary values (None for NULL).
    pub(crate) fn insert<'a>(
        &mut self,
        values: impl IntoIterator<Item = Option<&'a [u8]>>,
    ) -> Result<(), CopyError> {
        let mut tuple = Vec::with_capacity(256);
        tuple.extend_from_slice(&(TRANSACTION_FIELDS as i16).to_be_bytes());
        for field in values {
            match field {
                Some(bytes) => {
                    let len = i32::try_from(bytes.len()).map_err(|_| bad("a transaction record of 2 GiB"))?;
                    tuple.extend_from_slice(&len.to_be_bytes());
                    tuple.extend_from_slice(bytes);
                }
                None => tuple.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        let tuple = Bytes::from(tuple);
        let Some((f, end)) = fields::<TRANSACTION_FIELDS>(&tuple, 0)? else {
            return Err(bad("a transaction record was cut short"));
        };
        if end != tuple.len() {
            return Err(bad(format!(
                "a transaction record of more than {TRANSACTION_FIELDS} columns"
            )));
        }
        let t = Tuple {
            data: &tuple,
            f: &f,
            what: "transaction record",
        };
        let key = (t.required(t.long(0), "txid")?, t.required(t.short(1), "ctx")?);
        self.rows.insert(key, tuple);
        Ok(())
    }

    fn get(&self, key: (i64, i16)) -> Result<Transaction, CopyError> {
        match self.rows.get(&key) {
            None => Ok(Transaction::default()),
            Some(tuple) => match fields::<TRANSACTION_FIELDS>(tuple, 0)? {
                Some((f, _)) => Transaction::decode(tuple, &f),
                None => Err(bad("a transaction record was cut short")),
            },
        }
    }
}

/// A table's schema and name.
pub(crate) type Tables = HashMap<i32, (Bytes, Bytes)>;

/// Decodes the COPY data of [`COPY_CHANGES`] a slice at a time: takes
/// its tuples apart, chunk by chunk, and the keys of their transaction
/// records; once the records are there, joins each change with its table
/// and record into [`Columns`], hashing each row.
pub(crate) struct Decoder {
    tuples: Tuples<CHANGE_FIELDS>,
    /// The slice's tuples being read: the buffers they arrived in and
    /// where each tuple starts in its buffer (no count of a buffer taken
    /// per tuple).
    pending: Pending,
    /// The tuples of the slices before not joined yet: at or above the
    /// least id of the slice after theirs (read in the order of the
    /// partition's blocks, a change of the next slice may come before
    /// them).
    held: Pending,
    /// The tuples to join when their transaction records come
    /// ([`Self::keys`]).
    ready: Pending,
    /// The order of a diff-image UPDATE's changed fields.
    key_orders: KeyOrders,
    /// The sets of changed fields of the slice's diff-image UPDATEs the
    /// server is to sort, noted as their tuples are taken apart.
    to_sort: ToSort,
    tables: Tables,
    transactions: Transactions,
    /// The transaction record of the change before (changes of one
    /// transaction mostly follow each other).
    current: Option<((i64, i16), Transaction)>,
    /// One row's digest input, reused.
    scratch: Vec<u8>,
    /// One row's `changed_fields` in its text form, reused.
    recorded: Vec<u8>,
    pub(crate) columns: Columns,
    /// The SHA-256 of the rows (the manifest's `rows_sha256`).
    pub(crate) sha256: Sha256,
    /// The check of the row groups taken (their columns in bulk), which
    /// the file read back is compared with.
    pub(crate) check: ColumnCheck,
    pub(crate) rows: i64,
    pub(crate) first: Option<(i64, i64)>,
    pub(crate) last: Option<(i64, i64)>,
    /// Whether a slice held a change whose id is not above every id
    /// joined before (read in the order of the partition's blocks, it
    /// does not lie in id order): the file is not complete.
    pub(crate) disordered: bool,
    capacity: usize,
}

/// Tuples taken apart and not joined yet: each buffer they lie in once,
/// and per tuple its change id, its transaction record's key, its buffer
/// and where it starts there.
#[derive(Default)]
struct Pending {
    buffers: Vec<Bytes>,
    tuples: Vec<(i64, (i64, i16), u32, u32)>,
}

impl Pending {
    /// Notes the tuple at `start` of `data`, which is buffer `buffer`
    /// (kept the first time one of its tuples is noted).
    fn push(
        &mut self,
        id: i64,
        key: (i64, i16),
        buffer: usize,
        data: &Bytes,
        start: usize,
    ) -> Result<(), CopyError> {
        if self.buffers.len() == buffer {
            self.buffers.push(data.clone());
        }
        let index = u32::try_from(buffer).map_err(|_| bad("too many buffers of COPY data"))?;
        let start = u32::try_from(start).map_err(|_| bad("a buffer of COPY data of 4 GiB"))?;
        self.tuples.push((id, key, index, start));
        Ok(())
    }

    /// Adds `tuple` of `buffers` (an index into them), keeping its buffer
    /// once; `kept` maps the indexes of `buffers` to this one's.
    fn carry(&mut self, tuple: (i64, (i64, i16), u32, u32), buffers: &[Bytes], kept: &mut [Option<u32>]) {
        let (id, key, buffer, start) = tuple;
        let index = match kept[buffer as usize] {
            Some(index) => index,
            None => {
                let index = self.buffers.len() as u32;
                self.buffers.push(buffers[buffer as usize].clone());
                kept[buffer as usize] = Some(index);
                index
            }
        };
        self.tuples.push((id, key, index, start));
    }

    fn len(&self) -> usize {
        self.tuples.len()
    }
}

const INSERT: &[u8] = b"INSERT";
const UPDATE: &[u8] = b"UPDATE";
const DELETE: &[u8] = b"DELETE";
const TRUNCATE: &[u8] = b"TRUNCATE";

impl Decoder {
    /// A decoder of [`COPY_CHANGES`] from a database that sorts text by its
    /// bytes ([`SORTS_BY_BYTES`], `by_bytes`) or not, its row groups of
    /// `capacity` rows.
    pub(crate) fn new(capacity: usize, by_bytes: bool, tables: Tables, seed: u64) -> Decoder {
        Decoder {
            tuples: Tuples::default(),
            pending: Pending::default(),
            held: Pending::default(),
            ready: Pending::default(),
            key_orders: KeyOrders::new(by_bytes),
            to_sort: ToSort::default(),
            tables,
            transactions: Transactions::default(),
            current: None,
            scratch: Vec::with_capacity(1024),
            recorded: Vec::new(),
            columns: Columns::with_capacity(capacity),
            sha256: Sha256::new(),
            check: ColumnCheck::new(seed, crate::parquet_file::COLUMN_COUNT),
            rows: 0,
            first: None,
            last: None,
            disordered: false,
            capacity,
        }
    }

    /// Whether the slice's COPY has ended.
    pub(crate) fn finished(&self) -> bool {
        self.tuples.finished
    }

    /// Takes the rows joined so far, feeding them into the check.
    pub(crate) fn take(&mut self) -> Columns {
        self.columns.check_into(&mut self.check);
        let next = self.columns.with_room_of(self.capacity);
        std::mem::replace(&mut self.columns, next)
    }

    /// Takes apart every complete tuple of `chunk` (with what was left
    /// over from the chunks before), noting its transaction's key and,
    /// where the server orders them, a diff-image UPDATE's set of changed
    /// fields.
    pub(crate) fn feed(&mut self, chunk: Bytes) -> Result<(), CopyError> {
        let pending = &mut self.pending;
        let (key_orders, to_sort) = (&mut self.key_orders, &mut self.to_sort);
        let by_server = key_orders.by_server();
        let buffer = pending.buffers.len();
        self.tuples.feed(chunk, |data, start, _, f| {
            let t = Tuple {
                data,
                f,
                what: "change",
            };
            let id = t.required(t.long(0), "id")?;
            let key = (t.required(t.long(1), "txid")?, t.required(t.short(5), "ctx")?);
            if by_server && let Some(keys) = unlisted_fields(&t)? {
                key_orders.note(&keys, to_sort).map_err(|e| change_error(&t, e))?;
            }
            pending.push(id, key, buffer, data, start)
        })
    }

    /// Once a slice's COPY has ended (or, `last`, once every slice was
    /// read): the changes held from the slices before that lie below the
    /// slice's least id (all of them, `last`) are made ready to join, the
    /// rest held with the slice's; the keys of the ready changes'
    /// transaction records, least txid first. (Read in the order of the
    /// partition's blocks, a change may lie a little past changes of
    /// higher ids, in the next slice: a slice's changes wait for the
    /// next one.)
    pub(crate) fn keys(&mut self, last: bool) -> Vec<(i64, i16)> {
        let slice = std::mem::take(&mut self.pending);
        let held = std::mem::take(&mut self.held);
        let least = slice.tuples.iter().map(|t| t.0).min();
        let (mut ready, mut next) = (Pending::default(), Pending::default());
        let mut kept = vec![None; held.buffers.len()];
        for &tuple in &held.tuples {
            if last || least.is_some_and(|least| tuple.0 < least) {
                ready.tuples.push(tuple);
            } else {
                next.carry(tuple, &held.buffers, &mut kept);
            }
        }
        ready.buffers = held.buffers;
        let mut kept = vec![None; slice.buffers.len()];
        for &tuple in &slice.tuples {
            if last {
                ready.carry(tuple, &slice.buffers, &mut kept);
            } else {
                next.carry(tuple, &slice.buffers, &mut kept);
            }
        }
        // Changes of one transaction mostly follow each other.
        let mut keys: Vec<(i64, i16)> = Vec::new();
        for tuple in &ready.tuples {
            if keys.last() != Some(&tuple.1) {
                keys.push(tuple.1);
            }
        }
        keys.sort_unstable();
        keys.dedup();
        // Changes far out of id order all through the partition would be
        // held back slice after slice: past three slices' worth, the read
        // is given up (and made again by id).
        if next.len() > 3 * self.capacity {
            self.disordered = true;
        }
        (self.ready, self.held) = (ready, next);
        keys
    }

    /// The changes taken apart and not joined yet.
    pub(crate) fn unjoined(&self) -> usize {
        self.pending.len() + self.held.len() + self.ready.len()
    }

    /// The sets of changed fields of the slice's diff-image UPDATEs whose
    /// order the server must give (none where the database sorts text by
    /// its bytes), each once, as [`Self::feed`] noted them; [`Self::join`]
    /// takes the answers.
    pub(crate) fn fields_to_sort(&mut self) -> ToSort {
        std::mem::take(&mut self.to_sort)
    }

    /// The changes of the slice taken apart so far.
    pub(crate) fn slice_rows(&self) -> usize {
        self.pending.len()
    }

    /// Joins the changes [`Self::keys`] made ready (sorted by id, when
    /// they did not come so) with `transactions` (their records),
    /// handing the columns to `full` each time they hold a row group;
    /// false when `full` did, or when a change among them comes before a
    /// change joined already ([`Self::disordered`]: none of them is
    /// joined), true when they are done and the decoder ready for the
    /// next slice.
    pub(crate) fn join(
        &mut self,
        transactions: Transactions,
        sorted_fields: Vec<(i32, Vec<i32>)>,
        full: &mut dyn FnMut(Columns) -> bool,
    ) -> Result<bool, CopyError> {
        self.key_orders.learn(sorted_fields).map_err(bad)?;
        if self.disordered {
            return Ok(false);
        }
        let mut ready = std::mem::take(&mut self.ready);
        if !ready.tuples.is_sorted_by_key(|t| t.0) {
            ready.tuples.sort_unstable_by_key(|t| t.0);
        }
        if let (Some(&(first, ..)), Some((last, _))) = (ready.tuples.first(), self.last)
            && first <= last
        {
            self.disordered = true;
            return Ok(false);
        }
        self.transactions = transactions;
        self.current = None;
        for &(_, _, buffer, start) in &ready.tuples {
            let data = &ready.buffers[buffer as usize];
            let Some((f, _)) = fields::<CHANGE_FIELDS>(data, start as usize)? else {
                return Err(bad("a change was cut short"));
            };
            self.row(data, &f)?;
            if self.columns.rows >= self.capacity && !full(self.take()) {
                return Ok(false);
            }
        }
        self.tuples = Tuples::default();
        self.transactions = Transactions::default();
        self.current = None;
        Ok(true)
    }

    fn row(&mut self, data: &Bytes, f: &[Field; CHANGE_FIELDS]) -> Result<(), CopyError> {
        let t = Tuple {
            data,
            f,
            what: "change",
        };
        let id = t.required(t.long(0), "id")?;
        let txid = t.required(t.long(1), "txid")?;
        let changed_at = t.required(t.time(2), "changed_at")?;
        let table_id = t.required(t.int(3), "table_id")?;
        let op: &'static [u8] = match t.required(t.fixed::<1>(4), "op")? {
            [b'I'] => INSERT,
            [b'U'] => UPDATE,
            [b'D'] => DELETE,
            [b'T'] => TRUNCATE,
            [other] => return Err(bad(format!("change {id} has op {:?}", char::from(other)))),
        };
        let ctx = t.required(t.short(5), "ctx")?;
        let pk = t.jsonb_slice(6)?;
        let old_values = t.jsonb_slice(7)?;
        let new_values = t.jsonb_slice(8)?;
        let items = match (op, list(data, f[9])?) {
            (UPDATE, Some(items)) => Some(items),
            (UPDATE, None) => Some(match unlisted_fields(&t)? {
                Some(keys) => self.key_orders.order(keys).map_err(|e| change_error(&t, e))?,
                None => Vec::new(),
            }),
            _ => None,
        };
        let old_pk = t.jsonb_slice(10)?;
        let recorded_fields = match t.raw(9) {
            None => None,
            Some(array) => {
                array_text(array, &mut self.recorded)?;
                Some(&self.recorded[..])
            }
        };
        let (schema, name) = self
            .tables
            .get(&table_id)
            .map(|(s, n)| (&s[..], &n[..]))
            .ok_or_else(|| {
                bad(format!(
                    "change {id} is of table {table_id}, which pgtrail.audited_table does not know"
                ))
            })?;
        let key = (txid, ctx);
        if self.current.as_ref().is_none_or(|(k, _)| *k != key) {
            self.current = Some((key, self.transactions.get(key)?));
        }
        let Some((_, x)) = &self.current else {
            return Err(bad("no transaction record"));
        };

        // The digest ([`ArchivedChange::digest_into`]): every column as
        // u32(len) || bytes or 0xFFFFFFFF for NULL, integers and times
        // (since 1970) as 64-bit, the list's items joined by U+001F.
        let b = &mut self.scratch;
        b.clear();
        num(b, Some(id));
        num(b, Some(txid));
        num(b, Some(changed_at));
        put(b, Some(schema));
        put(b, Some(name));
        put(b, Some(op));
        put(b, pk);
        put(b, old_values);
        put(b, new_values);
        match &items {
            Some(items) => {
                let len = items.iter().map(|i| i.len()).sum::<usize>() + items.len().saturating_sub(1);
                b.extend_from_slice(&(len as u32).to_be_bytes());
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        b.push(0x1f);
                    }
                    b.extend_from_slice(item);
                }
            }
            None => put(b, None),
        }
        for text in &x.texts[..8] {
            put(b, text.as_deref());
        }
        num(b, x.started_at);
        num(b, Some(i64::from(ctx)));
        num(b, Some(i64::from(table_id)));
        put(b, old_pk);
        put(b, recorded_fields);
        num(b, x.recorded_at);
        put(b, x.texts[8].as_deref());
        num(b, x.client_port.map(i64::from));
        num(b, x.backend_pid.map(i64::from));
        self.sha256.update(&b[..]);

        let c = &mut self.columns;
        c.rows += 1;
        c.longs[0].push(id);
        c.longs[1].push(txid);
        c.longs[2].push(changed_at);
        c.names[0].push(Some(schema));
        c.names[1].push(Some(name));
        c.names[2].push(Some(op));
        c.fields
            .push(items.as_ref().map(|items| items.iter().map(|i| &i[..])));
        let texts = [
            pk,
            old_values,
            new_values,
            x.texts[0].as_deref(),
            x.texts[1].as_deref(),
            x.texts[2].as_deref(),
            x.texts[3].as_deref(),
            x.texts[4].as_deref(),
            x.texts[5].as_deref(),
            x.texts[6].as_deref(),
            x.texts[7].as_deref(),
            old_pk,
            recorded_fields,
            x.texts[8].as_deref(),
        ];
        for (column, value) in c.texts.iter_mut().zip(texts) {
            column.push(value);
        }
        c.times[0].push(x.started_at);
        c.times[1].push(x.recorded_at);
        c.ints[0].push(i32::from(ctx));
        c.ints[1].push(table_id);
        c.small[0].push(x.client_port);
        c.small[1].push(x.backend_pid);

        self.rows += 1;
        self.first.get_or_insert((id, changed_at));
        self.last = Some((id, changed_at));
        Ok(())
    }
}

fn put(b: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        Some(bytes) => {
            b.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            b.extend_from_slice(bytes);
        }
        None => b.extend_from_slice(&u32::MAX.to_be_bytes()),
    }
}

fn num(b: &mut Vec<u8>, value: Option<i64>) {
    match value {
        Some(v) => {
            b.extend_from_slice(&8u32.to_be_bytes());
            b.extend_from_slice(&v.to_be_bytes());
        }
        None => b.extend_from_slice(&u32::MAX.to_be_bytes()),
    }
}

/// The changed fields of a diff-image UPDATE whose trail row has no list
/// of them (`changed_fields` NULL): its new values' keys, sorted by bytes
/// and unescaped ([`object_keys`]). None for any other change, and for an
/// UPDATE without new values. (The decoder notes these sets as tuples
/// arrive, for a database that orders them itself, and orders them as
/// rows are written: both through here.)
fn unlisted_fields<'t>(t: &'t Tuple<'_, CHANGE_FIELDS>) -> Result<Option<Vec<Cow<'t, [u8]>>>, CopyError> {
    if t.required(t.fixed::<1>(4), "op")? != [b'U'] || t.raw(9).is_some() {
        return Ok(None);
    }
    match t.jsonb_slice(8)? {
        Some(values) => object_keys(values).map(Some).map_err(|e| change_error(t, e)),
        None => Ok(None),
    }
}

/// An error about the change in `t`, named by its id.
fn change_error(t: &Tuple<'_, CHANGE_FIELDS>, e: String) -> CopyError {
    match t.long(0) {
        Ok(Some(id)) => bad(format!("change {id}: {e}")),
        _ => bad(format!("a change: {e}")),
    }
}

/// The keys of the JSON object `text` (as PostgreSQL prints a `jsonb`
/// object), sorted by their bytes; each a slice of `text` unless it holds
/// an escape.
fn object_keys(text: &[u8]) -> Result<Vec<Cow<'_, [u8]>>, String> {
    let not_object = || "`new_values` is not a JSON object".to_string();
    let b = text;
    let mut at = skip_space(b, 0);
    if b.get(at) != Some(&b'{') {
        return Err(not_object());
    }
    at = skip_space(b, at + 1);
    let mut keys = Vec::new();
    if b.get(at) == Some(&b'}') {
        return Ok(keys);
    }
    loop {
        if b.get(at) != Some(&b'"') {
            return Err(not_object());
        }
        let end = string_end(b, at + 1).ok_or_else(not_object)?;
        let raw = &b[at + 1..end];
        keys.push(if raw.contains(&b'\\') {
            Cow::Owned(unescape(raw).ok_or_else(|| "a key of `new_values` has a bad escape".to_string())?)
        } else {
            Cow::Borrowed(raw)
        });
        at = skip_space(b, end + 1);
        if b.get(at) != Some(&b':') {
            return Err(not_object());
        }
        // The value: up to the comma or brace at this depth.
        let mut depth = 0usize;
        at += 1;
        loop {
            match b.get(at) {
                None => return Err(not_object()),
                Some(b'"') => at = string_end(b, at + 1).ok_or_else(not_object)?,
                Some(b'{' | b'[') => depth += 1,
                Some(b'}' | b']') if depth > 0 => depth -= 1,
                Some(b'}') => {
                    keys.sort_unstable();
                    return Ok(keys);
                }
                Some(b',') if depth == 0 => break,
                Some(_) => {}
            }
            at += 1;
        }
        at = skip_space(b, at + 1);
    }
}

fn skip_space(b: &[u8], mut at: usize) -> usize {
    while b
        .get(at)
        .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
    {
        at += 1;
    }
    at
}

/// Where the JSON string whose text starts at `at` ends (its closing quote).
fn string_end(b: &[u8], mut at: usize) -> Option<usize> {
    loop {
        match b.get(at)? {
            b'"' => return Some(at),
            b'\\' => at += 2,
            _ => at += 1,
        }
    }
}

/// A JSON string's text without its escapes.
fn unescape(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut at = 0;
    let hex = |at: usize| -> Option<u32> {
        let digits = std::str::from_utf8(raw.get(at..at + 4)?).ok()?;
        u32::from_str_radix(digits, 16).ok()
    };
    while at < raw.len() {
        if raw[at] != b'\\' {
            out.push(raw[at]);
            at += 1;
            continue;
        }
        let c = *raw.get(at + 1)?;
        at += 2;
        let plain = match c {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let mut code = hex(at)?;
                at += 4;
                if (0xd800..0xdc00).contains(&code) && raw.get(at..at + 2) == Some(&b"\\u"[..]) {
                    let low = hex(at + 2)?;
                    if (0xdc00..0xe000).contains(&low) {
                        code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
                        at += 6;
                    }
                }
                let mut buffer = [0u8; 4];
                out.extend_from_slice(char::from_u32(code)?.encode_utf8(&mut buffer).as_bytes());
                continue;
            }
            _ => return None,
        };
        out.push(plain);
    }
    Some(out)
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The items of a one-dimensional `text[]` in binary form (None for NULL;
/// a NULL item is refused: `changed_fields` never holds one).
fn list(data: &[u8], field: Field) -> Result<Option<Vec<Cow<'_, [u8]>>>, CopyError> {
    let Some(len) = field.len else {
        return Ok(None);
    };
    let bytes = &data[field.start..field.start + len];
    let shape = || bad("`changed_fields` is not a list of text");
    if bytes.len() < 12 {
        return Err(shape());
    }
    let dimensions = be_u32(&bytes[0..4]);
    match dimensions {
        0 => return Ok(Some(Vec::new())),
        1 => {}
        _ => return Err(shape()),
    }
    if bytes.len() < 20 {
        return Err(shape());
    }
    let count = be_u32(&bytes[12..16]) as usize;
    let mut items = Vec::with_capacity(count);
    let mut at = 20;
    for _ in 0..count {
        if bytes.len() < at + 4 {
            return Err(shape());
        }
        let n = i32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        at += 4;
        let n = usize::try_from(n).map_err(|_| shape())?;
        if bytes.len() < at + n {
            return Err(shape());
        }
        let s = field.start + at;
        items.push(Cow::Borrowed(&data[s..s + n]));
        at += n;
    }
    if at != bytes.len() {
        return Err(shape());
    }
    Ok(Some(items))
}

/// Writes the text form of the binary `text[]` `array` into `out` (emptied
/// first), byte for byte as PostgreSQL's `array_out` prints it (what
/// `changed_fields::text` gives): `{}` for an empty array; `[lower:upper]=`
/// first when the lower bound is not 1; items joined by commas; NULL items
/// as `NULL`; an item in double quotes, its `"` and `\` escaped by a
/// backslash, when it is empty, is `NULL` in any case, or holds `"`, `\`,
/// `{`, `}`, `,` or white space as `array_isspace` sees it (space, tab,
/// newline, carriage return, vertical tab, form feed). Arrays of more
/// than one dimension are refused (`changed_fields` is a list).
pub(crate) fn array_text(array: &[u8], out: &mut Vec<u8>) -> Result<(), CopyError> {
    let shape = || bad("`changed_fields` is not a list of text");
    out.clear();
    let word = |at: usize| -> Result<i32, CopyError> {
        array
            .get(at..at + 4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(shape)
    };
    match word(0)? {
        0 => {
            out.extend_from_slice(b"{}");
            return Ok(());
        }
        1 => {}
        _ => return Err(shape()),
    }
    let count = usize::try_from(word(12)?).map_err(|_| shape())?;
    let lower = word(16)?;
    if lower != 1 {
        let upper = i64::from(lower) + count as i64 - 1;
        out.extend_from_slice(format!("[{lower}:{upper}]=").as_bytes());
    }
    out.push(b'{');
    let mut at = 20;
    for i in 0..count {
        if i > 0 {
            out.push(b',');
        }
        let n = word(at)?;
        at += 4;
        if n == -1 {
            out.extend_from_slice(b"NULL");
            continue;
        }
        let n = usize::try_from(n).map_err(|_| shape())?;
        let item = array.get(at..at + n).ok_or_else(shape)?;
        at += n;
        let quote = item.is_empty()
            || item.eq_ignore_ascii_case(b"NULL")
            || item.iter().any(|c| {
                matches!(
                    c,
                    b'"' | b'\\' | b'{' | b'}' | b',' | b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c
                )
            });
        if !quote {
            out.extend_from_slice(item);
            continue;
        }
        out.push(b'"');
        for &c in item {
            if c == b'"' || c == b'\\' {
                out.push(b'\\');
            }
            out.push(c);
        }
        out.push(b'"');
    }
    if at != array.len() {
        return Err(shape());
    }
    out.push(b'}');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row::ArchivedChange;

    /// A binary COPY tuple of these fields.
    fn tuple(fields: &[Option<Vec<u8>>]) -> Vec<u8> {
        let mut out = (fields.len() as i16).to_be_bytes().to_vec();
        for field in fields {
            match field {
                Some(b) => {
                    out.extend((b.len() as i32).to_be_bytes());
                    out.extend(b);
                }
                None => out.extend((-1i32).to_be_bytes()),
            }
        }
        out
    }

    fn time(v: i64) -> Vec<u8> {
        (v - POSTGRES_EPOCH_MICROS).to_be_bytes().to_vec()
    }

    fn text(v: &Option<String>) -> Option<Vec<u8>> {
        v.as_ref().map(|s| s.as_bytes().to_vec())
    }

    fn jsonb(v: &Option<String>) -> Option<Vec<u8>> {
        v.as_ref().map(|s| [&[JSONB_VERSION][..], s.as_bytes()].concat())
    }

    /// The tuple PostgreSQL sends for `c` in [`COPY_CHANGES`] (the list
    /// column as stored, whose text `changed_fields_recorded` is: none
    /// for a diff image's UPDATE).
    fn change_tuple(c: &ArchivedChange) -> Vec<u8> {
        let list = match c.changed_fields_recorded {
            None => None,
            Some(_) => c.changed_fields.as_ref(),
        };
        let list = list.map(|items| {
            let mut a = Vec::new();
            if items.is_empty() {
                a.extend([0u8; 4]);
                a.extend([0u8; 4]);
                a.extend(25u32.to_be_bytes());
                return a;
            }
            a.extend(1u32.to_be_bytes());
            a.extend(0u32.to_be_bytes());
            a.extend(25u32.to_be_bytes());
            a.extend((items.len() as u32).to_be_bytes());
            a.extend(1u32.to_be_bytes());
            for item in items {
                a.extend((item.len() as u32).to_be_bytes());
                a.extend(item.as_bytes());
            }
            a
        });
        tuple(&[
            Some(c.id.to_be_bytes().to_vec()),
            Some(c.txid.to_be_bytes().to_vec()),
            Some(time(c.changed_at)),
            Some(c.table_id.to_be_bytes().to_vec()),
            Some(c.op_code().as_bytes().to_vec()),
            Some(c.ctx.to_be_bytes().to_vec()),
            jsonb(&c.pk),
            jsonb(&c.old_values),
            jsonb(&c.new_values),
            list,
            jsonb(&c.old_pk),
        ])
    }

    /// The fields PostgreSQL sends for `c`'s transaction record in a row
    /// of [`TRANSACTIONS_BY_KEY`] (None without one).
    fn transaction_fields(c: &ArchivedChange) -> Option<Vec<Option<Vec<u8>>>> {
        let pid = c.backend_pid?;
        Some(vec![
            Some(c.txid.to_be_bytes().to_vec()),
            Some(c.ctx.to_be_bytes().to_vec()),
            text(&c.actor_id),
            text(&c.actor_name),
            text(&c.actor_type),
            text(&c.reason),
            jsonb(&c.context),
            text(&c.db_user),
            text(&c.application_name),
            text(&c.client_addr),
            c.tx_started_at.map(time),
            c.tx_recorded_at.map(time),
            text(&c.db_role),
            c.client_port.map(|v| v.to_be_bytes().to_vec()),
            Some(pid.to_be_bytes().to_vec()),
        ])
    }

    fn changes() -> Vec<ArchivedChange> {
        let full = ArchivedChange {
            id: 7,
            txid: (1 << 48) + 900,
            changed_at: 1_700_000_000_123_456,
            table_schema: "public".into(),
            table_name: "orders".into(),
            op: "UPDATE".into(),
            pk: Some(r#"{"id": 1}"#.into()),
            old_values: Some(r#"{"status": "new"}"#.into()),
            new_values: Some(r#"{"status": "paid"}"#.into()),
            changed_fields: Some(vec!["status".into(), "total".into()]),
            actor_id: Some("42".into()),
            context: Some(r#"{"request_id": "r1"}"#.into()),
            db_user: Some("app".into()),
            client_addr: Some("10.0.0.1/32".into()),
            tx_started_at: Some(1_700_000_000_000_001),
            ctx: 2,
            table_id: 3,
            changed_fields_recorded: Some("{status,total}".into()),
            tx_recorded_at: Some(1_700_000_000_000_002),
            client_port: Some(5555),
            backend_pid: Some(1234),
            ..ArchivedChange::default()
        };
        let bare = ArchivedChange {
            id: 8,
            op: "INSERT".into(),
            table_schema: "s".into(),
            table_name: "t".into(),
            changed_at: -5,
            ..ArchivedChange::default()
        };
        let other = ArchivedChange {
            id: 9,
            ctx: 3,
            actor_id: Some("43".into()),
            db_role: Some("auditor".into()),
            changed_fields: Some(Vec::new()),
            changed_fields_recorded: Some("{}".into()),
            ..full.clone()
        };
        let again = ArchivedChange {
            id: 10,
            op: "DELETE".into(),
            changed_fields: None,
            changed_fields_recorded: None,
            new_values: None,
            ..full.clone()
        };
        // Recorded with diff images: no stored list, the keys of
        // `new_values` (as PostgreSQL prints them: shorter keys first)
        // sorted by their bytes.
        let diff = ArchivedChange {
            id: 11,
            new_values: Some(
                r#"{"b": 1, "é": {"}": [1, "]\"}"]}, "a\"q": null, "x\ty": "a,b", "total": [{"c": 2}]}"#
                    .into(),
            ),
            changed_fields: Some(vec![
                "a\"q".into(),
                "b".into(),
                "total".into(),
                "x\ty".into(),
                "é".into(),
            ]),
            changed_fields_recorded: None,
            ..full.clone()
        };
        let no_values = ArchivedChange {
            id: 12,
            new_values: None,
            changed_fields: Some(Vec::new()),
            changed_fields_recorded: None,
            ..full.clone()
        };
        vec![full, bare, other, again, diff, no_values]
    }

    fn stream(tuples: impl IntoIterator<Item = Vec<u8>>) -> Vec<u8> {
        let mut data = SIGNATURE.to_vec();
        data.extend(0u32.to_be_bytes());
        data.extend(0u32.to_be_bytes());
        for t in tuples {
            data.extend(t);
        }
        data.extend((-1i16).to_be_bytes());
        data
    }

    fn tables() -> Tables {
        let mut tables = Tables::new();
        for c in changes() {
            tables.insert(
                c.table_id,
                (
                    Bytes::from(c.table_schema.into_bytes()),
                    Bytes::from(c.table_name.into_bytes()),
                ),
            );
        }
        tables
    }

    fn transactions() -> Transactions {
        let mut transactions = Transactions::default();
        for fields in changes().iter().filter_map(transaction_fields) {
            transactions
                .insert(fields.iter().map(Option::as_deref))
                .expect("a record");
        }
        transactions
    }

    /// Whatever the chunks, the joined rows and the digest are those of the
    /// changes, row group by row group, the digest is
    /// `ArchivedChange::digest_into`'s and the check that of the row
    /// groups' columns; the decoder goes on with the next slice (the
    /// same changes, their ids 6 higher).
    #[test]
    fn changes_join_their_transaction_into_columns_and_the_row_digest() {
        let seed = crate::digest::seed();
        let slice_of = |slice: i64| {
            changes()
                .into_iter()
                .map(move |c| ArchivedChange {
                    id: c.id + 6 * slice,
                    ..c
                })
                .collect::<Vec<_>>()
        };
        let mut expected = Sha256::new();
        let mut groups = Vec::new();
        for slice in 0..2 {
            for (i, c) in slice_of(slice).iter().enumerate() {
                if (slice as usize * 6 + i) % 4 == 0 {
                    groups.push(Columns::default());
                }
                c.digest_into(&mut expected);
                groups.last_mut().expect("a group").push_change(c);
            }
        }
        let mut check = ColumnCheck::new(seed, crate::parquet_file::COLUMN_COUNT);
        for group in &groups {
            group.check_into(&mut check);
        }
        let (expected, check) = (expected.finalize(), check.value());
        let keys = vec![(0, 0), ((1 << 48) + 900, 2), ((1 << 48) + 900, 3)];
        let data = [0, 1].map(|slice| stream(slice_of(slice).iter().map(change_tuple)));
        for (by_bytes, size) in [false, true]
            .into_iter()
            .flat_map(|s| [1, 3, 17, 100, 1 << 20].map(|n| (s, n)))
        {
            let mut decoder = Decoder::new(4, by_bytes, tables(), seed);
            let mut got = Vec::new();
            for (slice, data) in data.iter().enumerate() {
                for chunk in data.chunks(size) {
                    decoder.feed(Bytes::copy_from_slice(chunk)).expect("decodes");
                }
                assert!(decoder.finished(), "chunks of {size}");
                let to_sort = decoder.fields_to_sort();
                // Asked once for the partition, never where the database
                // sorts by bytes; this server sorts by bytes too.
                assert_eq!(to_sort.is_empty(), by_bytes || slice > 0, "{to_sort:?}");
                let sorted = crate::key_order::answer(&to_sort, str::to_string);
                // A slice's changes wait for the next slice's (or the end).
                let ready = if slice == 0 { Vec::new() } else { keys.clone() };
                assert_eq!(decoder.keys(false), ready);
                let joined = decoder.join(transactions(), sorted, &mut |columns| {
                    got.push(columns);
                    true
                });
                assert!(joined.expect("joins"), "chunks of {size}");
            }
            assert_eq!(decoder.unjoined(), 6);
            assert_eq!(decoder.keys(true), keys);
            let joined = decoder.join(transactions(), Vec::new(), &mut |columns| {
                got.push(columns);
                true
            });
            assert!(joined.expect("joins"), "chunks of {size}");
            assert_eq!(decoder.unjoined(), 0);
            assert_eq!(decoder.take().rows, 0, "12 rows make 3 row groups of 4");
            assert_eq!(decoder.rows, 12);
            assert_eq!(decoder.first, Some((7, 1_700_000_000_123_456)));
            assert_eq!(decoder.last, Some((18, 1_700_000_000_123_456)));
            assert_eq!(got, groups, "chunks of {size}");
            assert_eq!(decoder.check.value(), check, "chunks of {size}");
            assert_eq!(decoder.sha256.finalize(), expected, "chunks of {size}");
        }
    }

    /// Changes that come out of id order (read in the order of the
    /// partition's blocks) are joined in id order, within a slice and
    /// across the edge of two: a slice's changes wait for the next slice,
    /// and those below its least id are joined. A change below one joined
    /// before is not joined, nor any other of those ready, and the decoder
    /// says so.
    #[test]
    fn changes_out_of_order_are_joined_in_id_order_and_one_below_a_joined_one_is_refused() {
        let seed = crate::digest::seed();
        let mut expected = Sha256::new();
        let mut group = Columns::default();
        for c in changes() {
            c.digest_into(&mut expected);
            group.push_change(&c);
        }
        let slice = |ids: &[i64]| {
            let all = changes();
            Bytes::from(stream(ids.iter().map(|id| {
                change_tuple(all.iter().find(|c| c.id == *id).expect("a change"))
            })))
        };
        let mut decoder = Decoder::new(100, true, tables(), seed);
        let join = |decoder: &mut Decoder| {
            decoder
                .join(transactions(), Vec::new(), &mut |_| panic!("fewer than 100 rows"))
                .expect("joins")
        };
        decoder.feed(slice(&[12, 9, 7])).expect("decodes");
        assert_eq!(decoder.slice_rows(), 3);
        assert_eq!(decoder.keys(false), vec![]);
        assert!(join(&mut decoder));
        assert_eq!(decoder.rows, 0);
        decoder.feed(slice(&[11, 8, 10])).expect("decodes");
        assert_eq!(decoder.keys(false), vec![((1 << 48) + 900, 2)], "change 7 only");
        assert!(join(&mut decoder));
        assert_eq!(decoder.rows, 1);
        assert_eq!(decoder.unjoined(), 5);
        assert_eq!(decoder.keys(true).len(), 3);
        assert!(join(&mut decoder));
        assert!(!decoder.disordered);
        assert_eq!(decoder.take(), group);
        assert_eq!(decoder.sha256.clone().finalize(), expected.finalize());
        assert_eq!(decoder.first, Some((7, 1_700_000_000_123_456)));
        assert_eq!(decoder.last, Some((12, 1_700_000_000_123_456)));

        // The next slice holds changes 13 and 10: 10 was joined before.
        let later = changes()
            .into_iter()
            .filter(|c| c.id == 8 || c.id == 9)
            .map(|c| ArchivedChange {
                id: if c.id == 8 { 13 } else { 10 },
                ..c
            });
        decoder
            .feed(Bytes::from(stream(later.map(|c| change_tuple(&c)))))
            .expect("decodes");
        decoder.keys(true);
        let joined = decoder
            .join(transactions(), Vec::new(), &mut |_| panic!("nothing is joined"))
            .expect("no error of the data");
        assert!(!joined && decoder.disordered);
        assert_eq!(decoder.rows, 6);
        assert_eq!(decoder.columns.rows, 0);

        // Slices each with a change below all the others': nothing is
        // ready, and past three slices' worth held the read is given up.
        let mut decoder = Decoder::new(1, true, tables(), seed);
        let mut joined = Vec::new();
        for ids in [[12, 11], [10, 9], [8, 7]] {
            decoder.feed(slice(&ids)).expect("decodes");
            assert_eq!(decoder.keys(false), vec![]);
            joined.push(join(&mut decoder));
            if decoder.disordered {
                break;
            }
        }
        assert_eq!(joined, vec![true, false], "4 held at the second slice, 3 at most");
        assert_eq!(decoder.rows, 0);
    }

    #[test]
    fn a_truncated_or_foreign_stream_or_an_unknown_table_is_refused() {
        let data = stream(changes().iter().map(change_tuple));
        let mut decoder = Decoder::new(4, true, tables(), 0);
        decoder
            .feed(Bytes::copy_from_slice(&data[..data.len() - 40]))
            .expect("a partial tuple waits");
        assert!(!decoder.finished());
        assert_eq!(decoder.pending.len(), 5);
        assert!(
            Decoder::new(4, true, tables(), 0)
                .feed(Bytes::from_static(b"id,txid,changed_at\n1,2,2026-01-01\n"))
                .is_err()
        );
        let mut decoder = Decoder::new(4, true, Tables::new(), 0);
        decoder.feed(Bytes::from(data)).expect("takes the tuples apart");
        decoder.keys(true);
        let error = decoder
            .join(transactions(), Vec::new(), &mut |_| true)
            .expect_err("no table 3");
        assert!(error.to_string().contains("table 3"), "{error}");
        // A record of another shape.
        assert!(
            Transactions::default()
                .insert([Some(&1i64.to_be_bytes()[..]), Some(&[0, 1][..])])
                .is_err()
        );
    }

    /// A field as the server sent it in binary.
    struct Raw(Vec<u8>);

    impl<'a> tokio_postgres::types::FromSql<'a> for Raw {
        fn from_sql(
            _: &tokio_postgres::types::Type,
            raw: &'a [u8],
        ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
            Ok(Raw(raw.to_vec()))
        }

        fn accepts(_: &tokio_postgres::types::Type) -> bool {
            true
        }
    }

    /// [`array_text`] prints a list as the server's `array_out` does
    /// (`changed_fields::text`, which the archive no longer asks for):
    /// asked of PostgreSQL for items it must quote or not, NULL items and
    /// lower bounds other than 1.
    #[tokio::test]
    async fn lists_are_printed_as_the_server_prints_them() {
        let db = pgtrail_testkit::TestDb::new().await;
        let items = [
            "", "a", "NULL", "null", "nUlL", "NULLx", " NULL", "a b", "a\tb", "a\nb", "a\rb", "a\u{b}b",
            "a\u{c}b", "\u{1f}", "\u{a0}", "\u{2003}", "\"", "\\", "{", "}", ",", "a,b", "x\"y\\z", "\\\"",
            "(", ")", "[", "]", ":", "=", "'", ";", "é", "日本", "status",
        ];
        let mut lists: Vec<Vec<Option<&str>>> = vec![Vec::new()];
        lists.extend(items.iter().map(|i| vec![Some(*i)]));
        lists.push(items.iter().map(|i| Some(*i)).collect());
        lists.push(vec![Some("a"), None, Some("NULL"), None]);
        let mut out = Vec::new();
        for list in &lists {
            let row = db
                .client
                .query_one("SELECT $1::text[], $1::text[]::text", &[list])
                .await
                .expect("the server prints the list");
            let (array, text): (Raw, String) = (row.get(0), row.get(1));
            array_text(&array.0, &mut out).expect("a list");
            assert_eq!(String::from_utf8_lossy(&out), text, "{list:?}");
        }
        for literal in [
            "[0:1]={a,b}",
            "[-3:-3]={\" x\"}",
            "[5:7]={\"\",NULL,\"{\"}",
            "[1:2]={a,b}",
        ] {
            let row = db
                .client
                .query_one("SELECT $1::text::text[], $1::text::text[]::text", &[&literal])
                .await
                .expect("the server prints the list");
            let (array, text): (Raw, String) = (row.get(0), row.get(1));
            array_text(&array.0, &mut out).expect("a list");
            assert_eq!(String::from_utf8_lossy(&out), text, "{literal}");
        }
        let row = db
            .client
            .query_one("SELECT '{{a,b},{c,d}}'::text[]", &[])
            .await
            .expect("two dimensions");
        assert!(array_text(&row.get::<_, Raw>(0).0, &mut out).is_err());
    }

    #[test]
    fn object_keys_come_sorted_by_bytes_and_unescaped() {
        let keys = |text: &str| {
            object_keys(&Bytes::from(text.to_string())).map(|keys| {
                keys.iter()
                    .map(|k| String::from_utf8(k.to_vec()).expect("UTF-8"))
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(keys("{}"), Ok(vec![]));
        assert_eq!(
            keys(r#"{"b": "}", "B": {"x": "\"]"}, "\u0001\ud83d\ude00": [[], {}]}"#),
            Ok(vec!["\u{1}\u{1F600}".to_string(), "B".into(), "b".into()])
        );
        assert!(keys("[1]").is_err());
        assert!(keys(r#"{"a": 1"#).is_err());
        assert!(keys("null").is_err());
    }
}
