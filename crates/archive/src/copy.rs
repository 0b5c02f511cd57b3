//! Reading a partition for its archive with one binary `COPY ... TO
//! STDOUT`: the tuples are decoded straight into Parquet columns (each text
//! value a slice of the buffer it was received in: no allocation per
//! value), and the row digest ([`ArchivedChange::digest_into`]) is taken
//! from the tuples' own bytes, which are its encoding for every column but
//! the times and `changed_fields`.
//!
//! [`ArchivedChange::digest_into`]: crate::row::ArchivedChange::digest_into

use bytes::{Bytes, BytesMut};
use parquet::data_type::ByteArray;
use sha2::{Digest, Sha256};

use crate::parquet_file::Columns;

/// The query of [`Decoder`]'s tuples; `{partition}` is replaced by the
/// quoted partition name. The columns are those of
/// [`ArchivedChange`](crate::row::ArchivedChange) in order, as
/// `pgtrail.changes` shows them (the times as `timestamptz`, the integers
/// the digest reads as 64-bit as `bigint`).
pub(crate) const COPY_PARTITION: &str = "
COPY (SELECT c.id, c.txid, c.changed_at,
       t.table_schema::text, t.table_name::text,
       CASE c.op WHEN 'I' THEN 'INSERT' WHEN 'U' THEN 'UPDATE' WHEN 'D' THEN 'DELETE' ELSE 'TRUNCATE' END,
       c.pk::text, c.old_values::text, c.new_values::text,
       CASE WHEN c.op = 'U' THEN coalesce(c.changed_fields,
           ARRAY(SELECT k FROM jsonb_object_keys(c.new_values) AS k ORDER BY k)) END::text[],
       x.actor_id::text, x.actor_name::text, x.actor_type::text, x.reason::text, x.context::text,
       x.db_user::text, x.application_name::text, x.client_addr::text,
       x.started_at, c.ctx::bigint, c.table_id::bigint, c.old_pk::text, c.changed_fields::text,
       x.recorded_at, x.db_role::text, x.client_port::bigint, x.backend_pid::bigint
FROM pgtrail.{partition} AS c
JOIN pgtrail.audited_table AS t ON t.id = c.table_id
LEFT JOIN pgtrail.transaction AS x ON x.txid = c.txid AND x.ctx = c.ctx
ORDER BY c.id) TO STDOUT (FORMAT binary)";

/// Columns in a tuple of [`COPY_PARTITION`].
const FIELDS: usize = 27;

/// Microseconds from 1970-01-01 to 2000-01-01 (PostgreSQL's epoch).
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// The binary COPY header's fixed part: signature, flags, extension length.
const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Why the COPY data could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading the partition's COPY data: {0}")]
pub struct CopyError(pub String);

fn bad(what: impl Into<String>) -> CopyError {
    CopyError(what.into())
}

/// Decodes the COPY data of [`COPY_PARTITION`], chunk by chunk, into
/// [`Columns`], hashing each row.
pub(crate) struct Decoder {
    /// Bytes of a tuple not complete yet (or of the header).
    pending: BytesMut,
    header: bool,
    pub(crate) finished: bool,
    pub(crate) columns: Columns,
    pub(crate) hasher: Sha256,
    pub(crate) rows: i64,
    pub(crate) first: Option<(i64, i64)>,
    pub(crate) last: Option<(i64, i64)>,
    capacity: usize,
}

/// A field's place in the tuple: start of its bytes (after the length),
/// and its length (None for NULL).
#[derive(Clone, Copy, Default)]
struct Field {
    start: usize,
    len: Option<usize>,
}

impl Decoder {
    pub(crate) fn new(capacity: usize) -> Decoder {
        Decoder {
            pending: BytesMut::new(),
            header: false,
            finished: false,
            columns: Columns::with_capacity(capacity),
            hasher: Sha256::new(),
            rows: 0,
            first: None,
            last: None,
            capacity,
        }
    }

    /// Takes the rows decoded so far.
    pub(crate) fn take(&mut self) -> Columns {
        std::mem::replace(&mut self.columns, Columns::with_capacity(self.capacity))
    }

    /// Decodes every complete tuple of `chunk` (with what was left over
    /// from the chunks before).
    pub(crate) fn feed(&mut self, chunk: Bytes) -> Result<(), CopyError> {
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
            match self.tuple(&data, pos)? {
                Some(next) => pos = next,
                None => {
                    self.pending.extend_from_slice(&data[pos..]);
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Decodes the tuple at `pos`; returns where the next one starts, or
    /// None when the tuple is not complete in `data`.
    fn tuple(&mut self, data: &Bytes, pos: usize) -> Result<Option<usize>, CopyError> {
        if data.len() < pos + 2 {
            return Ok(None);
        }
        let count = i16::from_be_bytes([data[pos], data[pos + 1]]);
        if count == -1 {
            self.finished = true;
            return Ok(Some(pos + 2));
        }
        if count as usize != FIELDS {
            return Err(bad(format!("a row of {count} columns, {FIELDS} expected")));
        }
        let mut fields = [Field::default(); FIELDS];
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
        self.row(data, pos + 2, &fields)?;
        Ok(Some(at))
    }

    fn row(&mut self, data: &Bytes, start: usize, f: &[Field; FIELDS]) -> Result<(), CopyError> {
        let long = |i: usize| -> Result<Option<i64>, CopyError> {
            match f[i].len {
                None => Ok(None),
                Some(8) => {
                    let s = f[i].start;
                    let mut bytes = [0u8; 8];
                    bytes.copy_from_slice(&data[s..s + 8]);
                    Ok(Some(i64::from_be_bytes(bytes)))
                }
                Some(n) => Err(bad(format!("column {} has {n} bytes, 8 expected", i + 1))),
            }
        };
        let required = |i: usize, name: &str| -> Result<i64, CopyError> {
            long(i)?.ok_or_else(|| bad(format!("`{name}` is NULL")))
        };
        let time = |i: usize| -> Result<Option<i64>, CopyError> {
            long(i)?
                .map(|v| {
                    v.checked_add(POSTGRES_EPOCH_MICROS)
                        .ok_or_else(|| bad(format!("column {} is not a finite time", i + 1)))
                })
                .transpose()
        };
        let text = |i: usize| -> Option<ByteArray> {
            f[i].len
                .map(|n| ByteArray::from(data.slice(f[i].start..f[i].start + n)))
        };
        let small = |i: usize, name: &str| -> Result<Option<i32>, CopyError> {
            long(i)?
                .map(|v| i32::try_from(v).map_err(|_| bad(format!("`{name}` is out of range"))))
                .transpose()
        };
        let id = required(0, "id")?;
        let txid = required(1, "txid")?;
        let changed_at = time(2)?.ok_or_else(|| bad("`changed_at` is NULL"))?;
        let started_at = time(18)?;
        let ctx = required(19, "ctx")?;
        let ctx = i32::from(i16::try_from(ctx).map_err(|_| bad("`ctx` is out of range"))?);
        let table_id = small(20, "table_id")?.ok_or_else(|| bad("`table_id` is NULL"))?;
        let recorded_at = time(23)?;
        let client_port = small(25, "client_port")?;
        let backend_pid = small(26, "backend_pid")?;

        // The digest: the tuple's bytes (a length then the value, -1 for
        // NULL) are the digest's encoding, but for the times (here since
        // 2000, there since 1970) and the list (there its items joined).
        let raw = |from: usize, to: usize| &data[f[from].start - 4..f[to].start - 4];
        let h = &mut self.hasher;
        let micros = |h: &mut Sha256, v: Option<i64>| match v {
            Some(v) => {
                h.update(8u32.to_be_bytes());
                h.update(v.to_be_bytes());
            }
            None => h.update(u32::MAX.to_be_bytes()),
        };
        debug_assert_eq!(f[0].start - 4, start);
        h.update(raw(0, 2));
        micros(h, Some(changed_at));
        h.update(raw(3, 9));
        let items = list(data, f[9])?;
        match &items {
            Some(items) => {
                let len = items.iter().map(ByteArray::len).sum::<usize>() + items.len().saturating_sub(1);
                h.update((len as u32).to_be_bytes());
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        h.update([0x1f]);
                    }
                    h.update(item.data());
                }
            }
            None => h.update(u32::MAX.to_be_bytes()),
        }
        h.update(raw(10, 18));
        micros(h, started_at);
        h.update(raw(19, 23));
        micros(h, recorded_at);
        let end = f[26].start + f[26].len.unwrap_or(0);
        h.update(&data[f[24].start - 4..end]);

        let c = &mut self.columns;
        c.rows += 1;
        c.longs[0].push(id);
        c.longs[1].push(txid);
        c.longs[2].push(changed_at);
        for (column, i) in c.names.iter_mut().zip(3..6) {
            column.push(text(i).ok_or_else(|| bad(format!("column {} is NULL", i + 1)))?);
        }
        c.push_fields(items);
        for (column, i) in c
            .texts
            .iter_mut()
            .zip([6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17, 21, 22, 24])
        {
            column.push(text(i));
        }
        c.times[0].push(started_at);
        c.times[1].push(recorded_at);
        c.ints[0].push(ctx);
        c.ints[1].push(table_id);
        c.small[0].push(client_port);
        c.small[1].push(backend_pid);

        self.rows += 1;
        self.first.get_or_insert((id, changed_at));
        self.last = Some((id, changed_at));
        Ok(())
    }
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The items of a one-dimensional `text[]` in binary form (None for NULL;
/// a NULL item is refused: `changed_fields` never holds one).
fn list(data: &Bytes, field: Field) -> Result<Option<Vec<ByteArray>>, CopyError> {
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
        items.push(ByteArray::from(data.slice(s..s + n)));
        at += n;
    }
    if at != bytes.len() {
        return Err(shape());
    }
    Ok(Some(items))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row::ArchivedChange;

    /// The binary COPY tuple PostgreSQL sends for `c` (as [`COPY_PARTITION`]
    /// selects it).
    fn tuple(c: &ArchivedChange) -> Vec<u8> {
        let mut out = (FIELDS as i16).to_be_bytes().to_vec();
        let mut put = |v: Option<&[u8]>| match v {
            Some(b) => {
                out.extend((b.len() as i32).to_be_bytes());
                out.extend(b);
            }
            None => out.extend((-1i32).to_be_bytes()),
        };
        let long = |v: i64| v.to_be_bytes().to_vec();
        let time = |v: i64| (v - POSTGRES_EPOCH_MICROS).to_be_bytes().to_vec();
        let text = |v: &Option<String>| v.as_ref().map(|s| s.as_bytes().to_vec());
        let list = c.changed_fields.as_ref().map(|items| {
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
        let fields: Vec<Option<Vec<u8>>> = vec![
            Some(long(c.id)),
            Some(long(c.txid)),
            Some(time(c.changed_at)),
            Some(c.table_schema.as_bytes().to_vec()),
            Some(c.table_name.as_bytes().to_vec()),
            Some(c.op.as_bytes().to_vec()),
            text(&c.pk),
            text(&c.old_values),
            text(&c.new_values),
            list,
            text(&c.actor_id),
            text(&c.actor_name),
            text(&c.actor_type),
            text(&c.reason),
            text(&c.context),
            text(&c.db_user),
            text(&c.application_name),
            text(&c.client_addr),
            c.tx_started_at.map(time),
            Some(long(i64::from(c.ctx))),
            Some(long(i64::from(c.table_id))),
            text(&c.old_pk),
            text(&c.changed_fields_recorded),
            c.tx_recorded_at.map(time),
            text(&c.db_role),
            c.client_port.map(|v| long(i64::from(v))),
            c.backend_pid.map(|v| long(i64::from(v))),
        ];
        for field in &fields {
            put(field.as_deref());
        }
        out
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
        let empty = ArchivedChange {
            id: 9,
            changed_fields: Some(Vec::new()),
            ..full.clone()
        };
        vec![full, bare, empty]
    }

    fn stream() -> Vec<u8> {
        let mut data = SIGNATURE.to_vec();
        data.extend(0u32.to_be_bytes());
        data.extend(0u32.to_be_bytes());
        for c in changes() {
            data.extend(tuple(&c));
        }
        data.extend((-1i16).to_be_bytes());
        data
    }

    /// Whatever the chunks, the rows and the digest are those of the
    /// changes, and the digest is `ArchivedChange::digest_into`'s.
    #[test]
    fn tuples_decode_into_columns_and_the_row_digest() {
        let mut expected = Sha256::new();
        let mut columns = Columns::default();
        for c in changes() {
            c.digest_into(&mut expected);
            columns.push_change(c);
        }
        let expected = expected.finalize();
        let data = stream();
        for size in [1, 3, 17, 100, data.len()] {
            let mut decoder = Decoder::new(4);
            for chunk in data.chunks(size) {
                decoder.feed(Bytes::copy_from_slice(chunk)).expect("decodes");
            }
            assert!(decoder.finished, "chunks of {size}");
            assert_eq!(decoder.rows, 3);
            assert_eq!(decoder.first, Some((7, 1_700_000_000_123_456)));
            assert_eq!(decoder.last, Some((9, 1_700_000_000_123_456)));
            let got = decoder.take();
            assert_eq!(got.longs, columns.longs, "chunks of {size}");
            assert_eq!(got.names, columns.names);
            assert_eq!(got.fields, columns.fields);
            assert_eq!(got.field_defs, columns.field_defs);
            assert_eq!(got.field_reps, columns.field_reps);
            for (g, c) in got.texts.iter().zip(&columns.texts) {
                assert_eq!((&g.values, &g.defs), (&c.values, &c.defs));
            }
            assert_eq!(got.ints, columns.ints);
            assert_eq!(decoder.hasher.finalize(), expected, "chunks of {size}");
        }
    }

    #[test]
    fn a_truncated_or_foreign_stream_is_refused() {
        let data = stream();
        let mut decoder = Decoder::new(4);
        decoder
            .feed(Bytes::copy_from_slice(&data[..data.len() - 40]))
            .expect("a partial tuple waits");
        assert!(!decoder.finished);
        assert_eq!(decoder.rows, 2);
        assert!(
            Decoder::new(4)
                .feed(Bytes::from_static(b"id,txid,changed_at\n1,2,2026-01-01\n"))
                .is_err()
        );
    }
}
