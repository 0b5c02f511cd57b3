//! The binary COPY of a batch's trail rows into `pgtrail.change`, encoded
//! here field by field into large buffers: the same bytes
//! `tokio_postgres::binary_copy::BinaryCopyInWriter` writes for the same
//! values (each field's length, then its binary form: `int8`, `int2`,
//! `int4`, `"char"`, `timestamptz` as microseconds since 2000, `jsonb` as
//! its version byte and text, `text[]` as a one-dimensional array), without
//! a type check and a dynamic call per field, and sent to the server in
//! chunks of [`CHUNK`] bytes rather than 4 KiB (fewer messages between the
//! follower's tasks, fewer writes to the socket).

use bytes::{BufMut, BytesMut};
use futures_util::SinkExt;

use crate::rows::JsonText;

/// How many bytes of rows are sent to the server at a time.
pub const CHUNK: usize = 64 * 1024;

/// The binary COPY format's signature, flags and header extension length.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// `text`'s type OID, the element type of `changed_fields`.
const TEXT_OID: u32 = 25;

/// One trail row's fields, in the order of [`COLUMNS`] (`id` first when
/// the ids are taken beforehand).
pub struct TrailFields<'a> {
    pub id: Option<i64>,
    pub txid: i64,
    pub ctx: i16,
    pub table_id: i32,
    pub op: i8,
    /// Microseconds since 2000-01-01 00:00 UTC (pgoutput's commit time).
    pub changed_at: i64,
    pub pk: Option<&'a JsonText>,
    pub old_pk: Option<&'a JsonText>,
    pub old_values: Option<&'a JsonText>,
    pub new_values: Option<&'a JsonText>,
    pub changed_fields: Option<&'a [&'a str]>,
}

/// The columns written, after `id` when it is.
pub const COLUMNS: &str =
    "txid, ctx, table_id, op, changed_at, pk, old_pk, old_values, new_values, changed_fields";

/// The encoded rows of one COPY, sent in chunks.
pub struct CopyRows {
    buf: BytesMut,
    fields: i16,
}

impl CopyRows {
    /// An encoder of rows with (`with_ids`) or without their ids.
    pub fn new(with_ids: bool) -> CopyRows {
        let mut buf = BytesMut::with_capacity(CHUNK + 4096);
        buf.put_slice(HEADER);
        CopyRows {
            buf,
            fields: if with_ids { 11 } else { 10 },
        }
    }

    /// Appends one row (its id written only when the encoder takes ids).
    pub fn push(&mut self, row: &TrailFields<'_>) {
        let buf = &mut self.buf;
        buf.put_i16(self.fields);
        if self.fields == 11 {
            match row.id {
                Some(id) => {
                    buf.put_i32(8);
                    buf.put_i64(id);
                }
                None => buf.put_i32(-1),
            }
        }
        buf.put_i32(8);
        buf.put_i64(row.txid);
        buf.put_i32(2);
        buf.put_i16(row.ctx);
        buf.put_i32(4);
        buf.put_i32(row.table_id);
        buf.put_i32(1);
        buf.put_i8(row.op);
        buf.put_i32(8);
        buf.put_i64(row.changed_at);
        for json in [row.pk, row.old_pk, row.old_values, row.new_values] {
            match json {
                Some(JsonText(text)) => {
                    put_length(buf, text.len() + 1);
                    buf.put_u8(1);
                    buf.put_slice(text.as_bytes());
                }
                None => buf.put_i32(-1),
            }
        }
        match row.changed_fields {
            Some(names) => {
                let start = buf.len();
                buf.put_i32(0);
                buf.put_i32(1);
                buf.put_i32(0);
                buf.put_u32(TEXT_OID);
                put_length(buf, names.len());
                buf.put_i32(1);
                for name in names {
                    put_length(buf, name.len());
                    buf.put_slice(name.as_bytes());
                }
                let length = buf.len() - start - 4;
                let length = i32::try_from(length).unwrap_or(i32::MAX).to_be_bytes();
                buf[start..start + 4].copy_from_slice(&length);
            }
            None => buf.put_i32(-1),
        }
    }

    /// Whether a chunk's worth is waiting to be sent.
    pub fn full(&self) -> bool {
        self.buf.len() >= CHUNK
    }

    /// Sends what is encoded so far to `sink`.
    pub async fn send(
        &mut self,
        sink: &mut std::pin::Pin<&mut tokio_postgres::CopyInSink<bytes::Bytes>>,
    ) -> Result<(), tokio_postgres::Error> {
        if !self.buf.is_empty() {
            sink.send(self.buf.split().freeze()).await?;
        }
        Ok(())
    }

    /// Ends the COPY: the trailer, what is left, and the server's count.
    pub async fn finish(
        mut self,
        mut sink: std::pin::Pin<&mut tokio_postgres::CopyInSink<bytes::Bytes>>,
    ) -> Result<u64, tokio_postgres::Error> {
        self.buf.put_i16(-1);
        self.send(&mut sink).await?;
        sink.as_mut().finish().await
    }

    /// The bytes encoded and not yet sent (tests).
    #[cfg(test)]
    fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// A field's or an array's length (at most 1 GB in PostgreSQL, so it fits).
fn put_length(buf: &mut BytesMut, n: usize) {
    buf.put_i32(i32::try_from(n).unwrap_or(i32::MAX));
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_postgres::types::{ToSql, Type};

    /// The bytes `BinaryCopyInWriter::write` appends for one row.
    fn reference(values: &[&(dyn ToSql + Sync)], types: &[Type]) -> Vec<u8> {
        let mut buf = BytesMut::new();
        buf.put_i16(values.len() as i16);
        for (value, ty) in values.iter().zip(types) {
            let at = buf.len();
            buf.put_i32(0);
            let length = match value.to_sql_checked(ty, &mut buf) {
                Ok(tokio_postgres::types::IsNull::Yes) => -1,
                Ok(tokio_postgres::types::IsNull::No) => (buf.len() - at - 4) as i32,
                Err(error) => panic!("{error}"),
            };
            buf[at..at + 4].copy_from_slice(&length.to_be_bytes());
        }
        buf.to_vec()
    }

    #[test]
    fn the_header_is_the_binary_formats() {
        let mut expected = b"PGCOPY\n\xff\r\n\0".to_vec();
        expected.extend([0; 8]);
        assert_eq!(HEADER, &expected[..]);
    }

    #[test]
    fn rows_encode_as_the_binary_copy_writer_encodes_them() {
        let types = [
            Type::INT8,
            Type::INT8,
            Type::INT2,
            Type::INT4,
            Type::CHAR,
            Type::TIMESTAMPTZ,
            Type::JSONB,
            Type::JSONB,
            Type::JSONB,
            Type::JSONB,
            Type::TEXT_ARRAY,
        ];
        let pk = JsonText(r#"{"id":1}"#.into());
        let new = JsonText(r#"{"id":1,"v":"é \"q\""}"#.into());
        let empty = JsonText(String::new());
        let names = ["b", "é", ""];
        let at_micros = 818_035_920_123_456i64;
        let at = std::time::UNIX_EPOCH
            + std::time::Duration::from_secs(946_684_800)
            + std::time::Duration::from_micros(at_micros as u64);
        // (id, pk and old values, new values, changed fields)
        type Case<'a> = (
            Option<i64>,
            Option<&'a JsonText>,
            Option<&'a JsonText>,
            Option<&'a [&'a str]>,
        );
        let cases: [Case; 4] = [
            (Some(7), Some(&pk), Some(&new), Some(&names)),
            (None, None, Some(&empty), None),
            (Some(-1), Some(&pk), None, Some(&[])),
            (Some(i64::MAX), None, None, Some(&names[..1])),
        ];
        for with_ids in [false, true] {
            for (id, pk, new, fields) in cases {
                let mut rows = CopyRows::new(with_ids);
                rows.push(&TrailFields {
                    id,
                    txid: 1 << 40,
                    ctx: 3,
                    table_id: -2,
                    op: b'U' as i8,
                    changed_at: at_micros,
                    pk,
                    old_pk: None,
                    old_values: pk,
                    new_values: new,
                    changed_fields: fields,
                });
                let fields: Option<Vec<&str>> = fields.map(<[&str]>::to_vec);
                let values: [&(dyn ToSql + Sync); 11] = [
                    &id,
                    &(1i64 << 40),
                    &3i16,
                    &-2i32,
                    &(b'U' as i8),
                    &at,
                    &pk,
                    &None::<JsonText>,
                    &pk,
                    &new,
                    &fields,
                ];
                let (values, types) = match with_ids {
                    true => (&values[..], &types[..]),
                    false => (&values[1..], &types[1..]),
                };
                let mut expected = HEADER.to_vec();
                expected.extend(reference(values, types));
                assert_eq!(rows.bytes(), &expected[..], "ids {with_ids}, id {id:?}");
            }
        }
    }
}
