//! The pgoutput logical decoding protocol, version 1, as
//! `pg_logical_slot_peek_binary_changes` returns it (one message a row):
//! begin, commit, relation, insert, update, delete, truncate and logical
//! messages (`messages = true`); origin and type messages are read and
//! ignored. See PostgreSQL's "Logical Replication Message Formats".

use std::fmt;

/// One column value of a tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    /// An unchanged TOASTed value the message does not carry.
    Unchanged,
    /// The value in the type's text form.
    Text(String),
}

/// One column of a relation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Column {
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
    /// Part of the replica identity (flag 1).
    pub key: bool,
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Begin {
        final_lsn: u64,
        /// Microseconds since 2000-01-01 00:00 UTC.
        commit_time: i64,
        xid: u32,
    },
    Commit {
        commit_lsn: u64,
        end_lsn: u64,
        commit_time: i64,
    },
    Relation {
        id: u32,
        schema: String,
        name: String,
        replica_identity: u8,
        columns: Vec<Column>,
    },
    Insert {
        relation: u32,
        new: Vec<Value>,
    },
    Update {
        relation: u32,
        /// The old row ('O', REPLICA IDENTITY FULL) or its key ('K'), if sent.
        old: Option<Vec<Value>>,
        new: Vec<Value>,
    },
    Delete {
        relation: u32,
        old: Vec<Value>,
    },
    Truncate {
        relations: Vec<u32>,
        cascade: bool,
        restart_identity: bool,
    },
    Message {
        transactional: bool,
        lsn: u64,
        prefix: String,
        content: Vec<u8>,
    },
    /// Origin and type messages: not needed.
    Ignored(u8),
}

/// A message that does not follow the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct DecodeError {
    pub at: usize,
    pub what: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed pgoutput message at byte {}: {}", self.at, self.what)
    }
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn fail<T>(&self, what: impl Into<String>) -> Result<T, DecodeError> {
        Err(DecodeError {
            at: self.at,
            what: what.into(),
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        match self.data.get(self.at..self.at + n) {
            Some(bytes) => {
                self.at += n;
                Ok(bytes)
            }
            None => self.fail(format!("{n} more bytes expected, the message ends")),
        }
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn i16(&mut self) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let rest = &self.data[self.at.min(self.data.len())..];
        let Some(end) = rest.iter().position(|&b| b == 0) else {
            return self.fail("unterminated string");
        };
        let text = text(&rest[..end]);
        self.at += end + 1;
        Ok(text)
    }

    fn count(&mut self) -> Result<usize, DecodeError> {
        let n = self.i16()?;
        usize::try_from(n).or_else(|_| self.fail(format!("negative count {n}")))
    }

    fn tuple(&mut self) -> Result<Vec<Value>, DecodeError> {
        let n = self.count()?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(match self.u8()? {
                b'n' => Value::Null,
                b'u' => Value::Unchanged,
                b't' => {
                    let len = self.i32()?;
                    let len =
                        usize::try_from(len).or_else(|_| self.fail(format!("negative length {len}")))?;
                    Value::Text(text(self.take(len)?))
                }
                kind => return self.fail(format!("unknown tuple value kind {:?}", kind as char)),
            });
        }
        Ok(out)
    }

    fn end(&self) -> Result<(), DecodeError> {
        if self.at == self.data.len() {
            Ok(())
        } else {
            self.fail(format!("{} bytes left over", self.data.len() - self.at))
        }
    }
}

/// `bytes` as text, an invalid sequence replaced (as
/// `String::from_utf8_lossy` does), checked in one pass when it is valid.
fn text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Decodes one message.
pub fn decode(data: &[u8]) -> Result<Message, DecodeError> {
    let mut r = Reader { data, at: 0 };
    let message = match r.u8()? {
        b'B' => Message::Begin {
            final_lsn: r.u64()?,
            commit_time: r.i64()?,
            xid: r.u32()?,
        },
        b'C' => {
            let _flags = r.u8()?;
            Message::Commit {
                commit_lsn: r.u64()?,
                end_lsn: r.u64()?,
                commit_time: r.i64()?,
            }
        }
        b'R' => {
            let id = r.u32()?;
            let schema = r.string()?;
            let name = r.string()?;
            let replica_identity = r.u8()?;
            let n = r.count()?;
            let mut columns = Vec::with_capacity(n);
            for _ in 0..n {
                let flags = r.u8()?;
                columns.push(Column {
                    name: r.string()?,
                    type_oid: r.u32()?,
                    type_modifier: r.i32()?,
                    key: flags & 1 == 1,
                });
            }
            Message::Relation {
                id,
                schema,
                name,
                replica_identity,
                columns,
            }
        }
        b'I' => {
            let relation = r.u32()?;
            if r.u8()? != b'N' {
                return r.fail("insert without a new tuple");
            }
            Message::Insert {
                relation,
                new: r.tuple()?,
            }
        }
        b'U' => {
            let relation = r.u32()?;
            let (old, marker) = match r.u8()? {
                b'K' | b'O' => {
                    let old = r.tuple()?;
                    (Some(old), r.u8()?)
                }
                marker => (None, marker),
            };
            if marker != b'N' {
                return r.fail("update without a new tuple");
            }
            Message::Update {
                relation,
                old,
                new: r.tuple()?,
            }
        }
        b'D' => {
            let relation = r.u32()?;
            match r.u8()? {
                b'K' | b'O' => {}
                _ => return r.fail("delete without an old tuple"),
            }
            Message::Delete {
                relation,
                old: r.tuple()?,
            }
        }
        b'T' => {
            let n = r.i32()?;
            let options = r.u8()?;
            let n = usize::try_from(n).or_else(|_| r.fail(format!("negative count {n}")))?;
            let mut relations = Vec::with_capacity(n);
            for _ in 0..n {
                relations.push(r.u32()?);
            }
            Message::Truncate {
                relations,
                cascade: options & 1 == 1,
                restart_identity: options & 2 == 2,
            }
        }
        b'M' => {
            let flags = r.u8()?;
            let lsn = r.u64()?;
            let prefix = r.string()?;
            let len = r.i32()?;
            let len = usize::try_from(len).or_else(|_| r.fail(format!("negative length {len}")))?;
            Message::Message {
                transactional: flags & 1 == 1,
                lsn,
                prefix,
                content: r.take(len)?.to_vec(),
            }
        }
        kind @ (b'O' | b'Y') => return Ok(Message::Ignored(kind)),
        kind => return r.fail(format!("unknown message type {:?}", kind as char)),
    };
    r.end()?;
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(values: &[Option<&str>]) -> Vec<u8> {
        let mut out = (values.len() as i16).to_be_bytes().to_vec();
        for value in values {
            match value {
                None => out.push(b'n'),
                Some("\u{0}u") => out.push(b'u'),
                Some(text) => {
                    out.push(b't');
                    out.extend((text.len() as i32).to_be_bytes());
                    out.extend(text.as_bytes());
                }
            }
        }
        out
    }

    #[test]
    fn begin_and_commit() {
        let mut begin = vec![b'B'];
        begin.extend(0x0153_aea0u64.to_be_bytes());
        begin.extend(123_456i64.to_be_bytes());
        begin.extend(729u32.to_be_bytes());
        assert_eq!(
            decode(&begin),
            Ok(Message::Begin {
                final_lsn: 0x0153_aea0,
                commit_time: 123_456,
                xid: 729
            })
        );
        let mut commit = vec![b'C', 0];
        commit.extend(1u64.to_be_bytes());
        commit.extend(2u64.to_be_bytes());
        commit.extend(3i64.to_be_bytes());
        assert_eq!(
            decode(&commit),
            Ok(Message::Commit {
                commit_lsn: 1,
                end_lsn: 2,
                commit_time: 3
            })
        );
    }

    #[test]
    fn relation_with_columns() {
        let mut data = vec![b'R'];
        data.extend(16384u32.to_be_bytes());
        data.extend(b"public\0t\0f");
        data.extend(2i16.to_be_bytes());
        data.push(1);
        data.extend(b"id\0");
        data.extend(23u32.to_be_bytes());
        data.extend((-1i32).to_be_bytes());
        data.push(0);
        data.extend(b"a b\0");
        data.extend(1043u32.to_be_bytes());
        data.extend(14i32.to_be_bytes());
        let Ok(Message::Relation {
            id,
            schema,
            name,
            replica_identity,
            columns,
        }) = decode(&data)
        else {
            panic!("not a relation: {:?}", decode(&data));
        };
        assert_eq!(
            (id, schema.as_str(), name.as_str(), replica_identity),
            (16384, "public", "t", b'f')
        );
        assert_eq!(columns.len(), 2);
        assert!(columns[0].key && !columns[1].key);
        assert_eq!(
            (
                columns[1].name.as_str(),
                columns[1].type_oid,
                columns[1].type_modifier
            ),
            ("a b", 1043, 14)
        );
    }

    #[test]
    fn update_with_old_row_null_and_unchanged_toast() {
        let mut data = vec![b'U'];
        data.extend(7u32.to_be_bytes());
        data.push(b'O');
        data.extend(tuple(&[Some("1"), None, Some("big")]));
        data.push(b'N');
        data.extend(tuple(&[Some("1"), Some("é"), Some("\u{0}u")]));
        assert_eq!(
            decode(&data),
            Ok(Message::Update {
                relation: 7,
                old: Some(vec![
                    Value::Text("1".into()),
                    Value::Null,
                    Value::Text("big".into())
                ]),
                new: vec![Value::Text("1".into()), Value::Text("é".into()), Value::Unchanged],
            })
        );
        let mut bare = vec![b'U'];
        bare.extend(7u32.to_be_bytes());
        bare.push(b'N');
        bare.extend(tuple(&[Some("2")]));
        assert!(matches!(decode(&bare), Ok(Message::Update { old: None, .. })));
    }

    #[test]
    fn insert_delete_truncate_message() {
        let mut insert = vec![b'I'];
        insert.extend(7u32.to_be_bytes());
        insert.push(b'N');
        insert.extend(tuple(&[Some("")]));
        assert_eq!(
            decode(&insert),
            Ok(Message::Insert {
                relation: 7,
                new: vec![Value::Text(String::new())]
            })
        );
        // Text that is not UTF-8: each invalid sequence replaced, the rest kept.
        let mut invalid = vec![b'I'];
        invalid.extend(7u32.to_be_bytes());
        invalid.extend([b'N', 0, 1, b't', 0, 0, 0, 6, b'a', 0xff, b'b', 0xc3, 0xa9, 0xc3]);
        assert_eq!(
            decode(&invalid),
            Ok(Message::Insert {
                relation: 7,
                new: vec![Value::Text("a\u{fffd}bé\u{fffd}".to_string())]
            })
        );
        let mut delete = vec![b'D'];
        delete.extend(7u32.to_be_bytes());
        delete.push(b'K');
        delete.extend(tuple(&[Some("3")]));
        assert!(matches!(decode(&delete), Ok(Message::Delete { relation: 7, .. })));
        let mut truncate = vec![b'T'];
        truncate.extend(2i32.to_be_bytes());
        truncate.push(3);
        truncate.extend(7u32.to_be_bytes());
        truncate.extend(8u32.to_be_bytes());
        assert_eq!(
            decode(&truncate),
            Ok(Message::Truncate {
                relations: vec![7, 8],
                cascade: true,
                restart_identity: true
            })
        );
        let mut message = vec![b'M', 1];
        message.extend(9u64.to_be_bytes());
        message.extend(b"pgtrail\0");
        message.extend(7i32.to_be_bytes());
        message.extend(b"{\"x\":1}");
        assert_eq!(
            decode(&message),
            Ok(Message::Message {
                transactional: true,
                lsn: 9,
                prefix: "pgtrail".into(),
                content: b"{\"x\":1}".to_vec()
            })
        );
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        for data in [
            &b""[..],
            b"B\0\0",
            b"Z",
            b"I\0\0\0\x07X",
            b"I\0\0\0\x07N\0\x01t\0\0\0\x09ab",
            b"I\0\0\0\x07N\xff\xff",
            b"R\0\0\0\x01public",
        ] {
            assert!(decode(data).is_err(), "{data:?}");
        }
        let mut trailing = vec![b'C', 0];
        trailing.extend([0u8; 25]);
        assert!(decode(&trailing).is_err());
    }
}
