//! The Parquet layout of an archive file (one row per change, sorted by
//! change id, zstd) and its writer and reader, on the `parquet` crate's
//! column API (no Arrow).

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use parquet::basic::{Compression, ZstdLevel};
use parquet::data_type::{ByteArray, ByteArrayType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::{SerializedFileWriter, SerializedRowGroupWriter};
use parquet::record::{Field, List};
use parquet::schema::parser::parse_message_type;

use crate::row::ArchivedChange;

/// The schema of an archive file (documented in the README).
pub const SCHEMA: &str = "message pgtrail_change {
  required int64 id;
  required int64 txid;
  required int64 changed_at (TIMESTAMP(MICROS,true));
  required binary table_schema (STRING);
  required binary table_name (STRING);
  required binary op (STRING);
  optional binary pk (STRING);
  optional binary old_values (STRING);
  optional binary new_values (STRING);
  optional group changed_fields (LIST) {
    repeated group list {
      optional binary element (STRING);
    }
  }
  optional binary actor_id (STRING);
  optional binary actor_name (STRING);
  optional binary actor_type (STRING);
  optional binary reason (STRING);
  optional binary context (STRING);
  optional binary db_user (STRING);
  optional binary application_name (STRING);
  optional binary client_addr (STRING);
  optional int64 tx_started_at (TIMESTAMP(MICROS,true));
  required int32 ctx (INTEGER(16,true));
  required int32 table_id;
  optional binary old_pk (STRING);
  optional binary changed_fields_recorded (STRING);
  optional int64 tx_recorded_at (TIMESTAMP(MICROS,true));
  optional binary db_role (STRING);
  optional int32 client_port;
  optional int32 backend_pid;
}";

/// Rows per row group.
pub const ROW_GROUP: usize = 65_536;

/// Writes rows to a Parquet file, a row group at a time.
pub struct ParquetWriter {
    writer: SerializedFileWriter<File>,
    pending: Vec<ArchivedChange>,
}

impl ParquetWriter {
    pub fn create(path: &Path) -> parquet::errors::Result<ParquetWriter> {
        let file = File::create(path)?;
        let schema = Arc::new(parse_message_type(SCHEMA)?);
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
            .set_created_by(format!("pgtrail {}", pgtrail_capture::VERSION))
            .build();
        Ok(ParquetWriter {
            writer: SerializedFileWriter::new(file, schema, Arc::new(props))?,
            pending: Vec::new(),
        })
    }

    pub fn push(&mut self, row: ArchivedChange) -> parquet::errors::Result<()> {
        self.pending.push(row);
        if self.pending.len() >= ROW_GROUP {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> parquet::errors::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.pending);
        let mut group = self.writer.next_row_group()?;
        write_group(&mut group, &rows)?;
        group.close()?;
        Ok(())
    }

    /// Flushes, closes and syncs the file.
    pub fn finish(mut self) -> parquet::errors::Result<()> {
        self.flush()?;
        let file = self.writer.into_inner()?;
        file.sync_all()?;
        Ok(())
    }
}

fn bytes(value: &Option<String>) -> Option<ByteArray> {
    value.as_deref().map(|s| ByteArray::from(s.as_bytes().to_vec()))
}

fn write_group(
    group: &mut SerializedRowGroupWriter<'_, File>,
    rows: &[ArchivedChange],
) -> parquet::errors::Result<()> {
    let mut index = 0;
    while let Some(mut column) = group.next_column()? {
        match index {
            0..=2 => {
                let values: Vec<i64> = rows
                    .iter()
                    .map(|r| match index {
                        0 => r.id,
                        1 => r.txid,
                        _ => r.changed_at,
                    })
                    .collect();
                column.typed::<Int64Type>().write_batch(&values, None, None)?;
            }
            3..=5 => {
                let values: Vec<ByteArray> = rows
                    .iter()
                    .map(|r| {
                        ByteArray::from(
                            match index {
                                3 => &r.table_schema,
                                4 => &r.table_name,
                                _ => &r.op,
                            }
                            .as_bytes()
                            .to_vec(),
                        )
                    })
                    .collect();
                column.typed::<ByteArrayType>().write_batch(&values, None, None)?;
            }
            9 => {
                let mut values = Vec::new();
                let mut defs = Vec::new();
                let mut reps = Vec::new();
                for r in rows {
                    match &r.changed_fields {
                        None => {
                            defs.push(0);
                            reps.push(0);
                        }
                        Some(list) if list.is_empty() => {
                            defs.push(1);
                            reps.push(0);
                        }
                        Some(list) => {
                            for (i, item) in list.iter().enumerate() {
                                defs.push(3);
                                reps.push(if i == 0 { 0 } else { 1 });
                                values.push(ByteArray::from(item.as_bytes().to_vec()));
                            }
                        }
                    }
                }
                column
                    .typed::<ByteArrayType>()
                    .write_batch(&values, Some(&defs), Some(&reps))?;
            }
            18 | 23 => {
                let all: Vec<Option<i64>> = rows
                    .iter()
                    .map(|r| {
                        if index == 18 {
                            r.tx_started_at
                        } else {
                            r.tx_recorded_at
                        }
                    })
                    .collect();
                let defs: Vec<i16> = all.iter().map(|v| i16::from(v.is_some())).collect();
                let values: Vec<i64> = all.into_iter().flatten().collect();
                column
                    .typed::<Int64Type>()
                    .write_batch(&values, Some(&defs), None)?;
            }
            19 | 20 => {
                let values: Vec<i32> = rows
                    .iter()
                    .map(|r| if index == 19 { i32::from(r.ctx) } else { r.table_id })
                    .collect();
                column.typed::<Int32Type>().write_batch(&values, None, None)?;
            }
            25 | 26 => {
                let all: Vec<Option<i32>> = rows
                    .iter()
                    .map(|r| if index == 25 { r.client_port } else { r.backend_pid })
                    .collect();
                let defs: Vec<i16> = all.iter().map(|v| i16::from(v.is_some())).collect();
                let values: Vec<i32> = all.into_iter().flatten().collect();
                column
                    .typed::<Int32Type>()
                    .write_batch(&values, Some(&defs), None)?;
            }
            _ => {
                let all: Vec<Option<ByteArray>> = rows
                    .iter()
                    .map(|r| match index {
                        6 => bytes(&r.pk),
                        7 => bytes(&r.old_values),
                        8 => bytes(&r.new_values),
                        10 => bytes(&r.actor_id),
                        11 => bytes(&r.actor_name),
                        12 => bytes(&r.actor_type),
                        13 => bytes(&r.reason),
                        14 => bytes(&r.context),
                        15 => bytes(&r.db_user),
                        16 => bytes(&r.application_name),
                        17 => bytes(&r.client_addr),
                        21 => bytes(&r.old_pk),
                        22 => bytes(&r.changed_fields_recorded),
                        _ => bytes(&r.db_role),
                    })
                    .collect();
                let defs: Vec<i16> = all.iter().map(|v| i16::from(v.is_some())).collect();
                let values: Vec<ByteArray> = all.into_iter().flatten().collect();
                column
                    .typed::<ByteArrayType>()
                    .write_batch(&values, Some(&defs), None)?;
            }
        }
        column.close()?;
        index += 1;
    }
    Ok(())
}

/// Why a file could not be read as an archive.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("row {row}: column `{column}` {problem}")]
    Shape {
        row: usize,
        column: &'static str,
        problem: &'static str,
    },
}

/// Reads every row of an archive file, in file order.
pub fn read_rows(path: &Path) -> Result<Vec<ArchivedChange>, ReadError> {
    let reader = SerializedFileReader::new(File::open(path)?)?;
    let mut out =
        Vec::with_capacity(usize::try_from(reader.metadata().file_metadata().num_rows()).unwrap_or(0));
    for (n, row) in reader.get_row_iter(None)?.enumerate() {
        let row = row?;
        let fields: Vec<&Field> = row.get_column_iter().map(|(_, f)| f).collect();
        let shape = |column: &'static str, problem: &'static str| ReadError::Shape {
            row: n,
            column,
            problem,
        };
        let field = |i: usize| fields.get(i).copied().unwrap_or(&Field::Null);
        let long = |i: usize, name: &'static str| -> Result<Option<i64>, ReadError> {
            match field(i) {
                Field::Null => Ok(None),
                Field::Long(v) | Field::TimestampMicros(v) => Ok(Some(*v)),
                _ => Err(shape(name, "is not a 64-bit integer")),
            }
        };
        let int = |i: usize, name: &'static str| -> Result<Option<i32>, ReadError> {
            match field(i) {
                Field::Null => Ok(None),
                Field::Int(v) => Ok(Some(*v)),
                Field::Short(v) => Ok(Some(i32::from(*v))),
                _ => Err(shape(name, "is not a 32-bit integer")),
            }
        };
        let text = |i: usize, name: &'static str| -> Result<Option<String>, ReadError> {
            match field(i) {
                Field::Null => Ok(None),
                Field::Str(s) => Ok(Some(s.clone())),
                _ => Err(shape(name, "is not text")),
            }
        };
        let list = |i: usize| -> Result<Option<Vec<String>>, ReadError> {
            match field(i) {
                Field::Null => Ok(None),
                Field::ListInternal(list) => list_strings(list)
                    .map(Some)
                    .ok_or_else(|| shape("changed_fields", "is not a list of text")),
                _ => Err(shape("changed_fields", "is not a list")),
            }
        };
        let required = |v: Option<i64>, name: &'static str| v.ok_or_else(|| shape(name, "is missing"));
        let required_text =
            |v: Option<String>, name: &'static str| v.ok_or_else(|| shape(name, "is missing"));
        out.push(ArchivedChange {
            id: required(long(0, "id")?, "id")?,
            txid: required(long(1, "txid")?, "txid")?,
            changed_at: required(long(2, "changed_at")?, "changed_at")?,
            table_schema: required_text(text(3, "table_schema")?, "table_schema")?,
            table_name: required_text(text(4, "table_name")?, "table_name")?,
            op: required_text(text(5, "op")?, "op")?,
            pk: text(6, "pk")?,
            old_values: text(7, "old_values")?,
            new_values: text(8, "new_values")?,
            changed_fields: list(9)?,
            actor_id: text(10, "actor_id")?,
            actor_name: text(11, "actor_name")?,
            actor_type: text(12, "actor_type")?,
            reason: text(13, "reason")?,
            context: text(14, "context")?,
            db_user: text(15, "db_user")?,
            application_name: text(16, "application_name")?,
            client_addr: text(17, "client_addr")?,
            tx_started_at: long(18, "tx_started_at")?,
            ctx: int(19, "ctx")?
                .and_then(|v| i16::try_from(v).ok())
                .ok_or_else(|| shape("ctx", "is missing or out of range"))?,
            table_id: int(20, "table_id")?.ok_or_else(|| shape("table_id", "is missing"))?,
            old_pk: text(21, "old_pk")?,
            changed_fields_recorded: text(22, "changed_fields_recorded")?,
            tx_recorded_at: long(23, "tx_recorded_at")?,
            db_role: text(24, "db_role")?,
            client_port: int(25, "client_port")?,
            backend_pid: int(26, "backend_pid")?,
        });
    }
    Ok(out)
}

fn list_strings(list: &List) -> Option<Vec<String>> {
    list.elements()
        .iter()
        .map(|f| match f {
            Field::Str(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(id: i64) -> ArchivedChange {
        ArchivedChange {
            id,
            txid: 700 + id,
            changed_at: 1_700_000_000_000_000 + id,
            table_schema: "public".into(),
            table_name: "users".into(),
            op: "UPDATE".into(),
            pk: Some(r#"{"id": 1}"#.into()),
            old_values: Some(r#"{"email": "a@x"}"#.into()),
            new_values: Some(r#"{"email": "b@x"}"#.into()),
            changed_fields: Some(vec!["email".into(), "name".into()]),
            actor_id: Some("42".into()),
            context: Some(r#"{"request_id": "r1"}"#.into()),
            db_user: Some("app".into()),
            tx_started_at: Some(1_700_000_000_000_000),
            ctx: 1,
            table_id: 3,
            tx_recorded_at: Some(1_700_000_000_000_001),
            client_port: None,
            backend_pid: Some(1234),
            ..ArchivedChange::default()
        }
    }

    /// Every column comes back as written: NULLs, empty and full lists,
    /// row group boundaries.
    #[test]
    fn rows_survive_a_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.parquet");
        let mut rows: Vec<ArchivedChange> = (1..=ROW_GROUP as i64 + 10).map(sample).collect();
        rows[1].changed_fields = None;
        rows[2].changed_fields = Some(Vec::new());
        rows[3].pk = None;
        rows[3].backend_pid = None;
        rows[4].op = "TRUNCATE".into();
        let mut writer = ParquetWriter::create(&path).unwrap();
        for row in rows.clone() {
            writer.push(row).unwrap();
        }
        writer.finish().unwrap();
        assert_eq!(read_rows(&path).unwrap(), rows);
    }
}
