//! The Parquet layout of an archive file (one row per change, sorted by
//! change id, zstd) and its writer and reader, on the `parquet` crate's
//! Arrow writer and its column API reader.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ListArray, StringArray};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::arrow_writer::{ArrowWriter, ArrowWriterOptions};
use parquet::basic::{Compression, Encoding, Type as PhysicalType, ZstdLevel};
use parquet::column::reader::ColumnReaderImpl;
use parquet::data_type::{ByteArray, ByteArrayType, DataType, Int32Type, Int64Type};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::reader::{ChunkReader, FileReader, Length, RowGroupReader, SerializedFileReader};
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::{ColumnPath, SchemaDescriptor};

pub use crate::columns::Columns;
use crate::columns::arrow_schema;
use crate::digest::{ColumnCheck, RowDigest, Stream};
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

/// The columns whose values are (nearly) all different: the `jsonb`
/// documents. A dictionary of them would be hashed value by value and
/// abandoned at its size limit; they are written plain (zstd still
/// compresses them).
const UNIQUE_COLUMNS: [&str; 4] = ["pk", "old_values", "new_values", "old_pk"];

/// The columns with statistics (min and max per page and per row group,
/// which readers such as DuckDB use to skip row groups): the change's id,
/// transaction and time. Statistics of the text columns (min and max of
/// each JSON document compared byte by byte) cost more than they serve.
const STATISTICS_COLUMNS: [&str; 3] = ["id", "txid", "changed_at"];

/// The integer and time columns: delta-encoded, without a dictionary
/// (ids and times rise, the rest repeat: their deltas pack into a few
/// bits or none, where a dictionary hashed every value).
const DELTA_COLUMNS: [&str; 9] = [
    "id",
    "txid",
    "changed_at",
    "tx_started_at",
    "ctx",
    "table_id",
    "tx_recorded_at",
    "client_port",
    "backend_pid",
];

/// The zstd level of the archive's pages.
const ZSTD_LEVEL: i32 = 1;

/// The largest data page, uncompressed: a row group's column is one page
/// (the `jsonb` documents of [`ROW_GROUP`] rows take a few MiB) rather
/// than one per 20,000 rows or per MiB, the `parquet` crate's defaults.
/// Each page is compressed and decompressed with a zstd context of its
/// own, whose setting up cost more than compressing most pages.
const PAGE_BYTES: usize = 16 << 20;

/// How an archive file is encoded (see the README's Parquet schema): zstd
/// at [`ZSTD_LEVEL`], pages of a row group's column each (up to
/// [`PAGE_BYTES`]), the [`DELTA_COLUMNS`] delta-encoded, dictionaries
/// for the other columns but [`UNIQUE_COLUMNS`], statistics for
/// [`STATISTICS_COLUMNS`] only.
fn properties() -> parquet::errors::Result<WriterProperties> {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL)?))
        .set_data_page_row_count_limit(ROW_GROUP)
        .set_data_page_size_limit(PAGE_BYTES)
        .set_created_by(format!("pgtrail {}", pgtrail_capture::VERSION))
        .set_statistics_enabled(EnabledStatistics::None);
    for column in UNIQUE_COLUMNS {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(column), false);
    }
    for column in DELTA_COLUMNS {
        builder = builder
            .set_column_dictionary_enabled(ColumnPath::from(column), false)
            .set_column_encoding(ColumnPath::from(column), Encoding::DELTA_BINARY_PACKED);
    }
    for column in STATISTICS_COLUMNS {
        builder = builder.set_column_statistics_enabled(ColumnPath::from(column), EnabledStatistics::Page);
    }
    Ok(builder.build())
}

/// Writes rows to a Parquet file, a row group at a time, through the
/// `parquet` crate's Arrow writer (each column's values encoded from one
/// buffer; the file's schema is [`SCHEMA`] as it is, without an Arrow
/// schema of its own in the file's metadata).
pub struct ParquetWriter {
    writer: ArrowWriter<File>,
    pending: Columns,
}

impl ParquetWriter {
    pub fn create(path: &Path) -> parquet::errors::Result<ParquetWriter> {
        let file = File::create(path)?;
        let schema = SchemaDescriptor::new(Arc::new(parse_message_type(SCHEMA)?));
        let options = ArrowWriterOptions::new()
            .with_properties(properties()?)
            .with_parquet_schema(schema)
            .with_skip_arrow_metadata(true);
        Ok(ParquetWriter {
            writer: ArrowWriter::try_new_with_options(file, arrow_schema(), options)?,
            pending: Columns::default(),
        })
    }

    pub fn push(&mut self, row: ArchivedChange) -> parquet::errors::Result<()> {
        self.pending.push_change(&row);
        if self.pending.rows >= ROW_GROUP {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes rows already taken apart into columns as one row group,
    /// emptying them.
    pub fn write_columns(&mut self, columns: &mut Columns) -> parquet::errors::Result<()> {
        self.flush()?;
        if columns.rows == 0 {
            return Ok(());
        }
        self.writer.write(&columns.take_batch()?)?;
        self.writer.flush()
    }

    fn flush(&mut self) -> parquet::errors::Result<()> {
        if self.pending.rows == 0 {
            return Ok(());
        }
        self.writer.write(&self.pending.take_batch()?)?;
        self.writer.flush()
    }

    /// Flushes, closes and syncs the file.
    pub fn finish(mut self) -> parquet::errors::Result<()> {
        self.flush()?;
        let file = self.writer.into_inner()?;
        file.sync_all()?;
        Ok(())
    }
}

/// Why a file could not be read as an archive.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("not an archive file: {0}")]
    Schema(String),
    #[error("row {row}: column `{column}` {problem}")]
    Shape {
        row: usize,
        column: &'static str,
        problem: &'static str,
    },
}

/// The leaf columns of [`SCHEMA`].
pub const COLUMN_COUNT: usize = 27;

/// The columns of [`SCHEMA`] in order: name and physical type.
const COLUMNS: [(&str, PhysicalType); COLUMN_COUNT] = [
    ("id", PhysicalType::INT64),
    ("txid", PhysicalType::INT64),
    ("changed_at", PhysicalType::INT64),
    ("table_schema", PhysicalType::BYTE_ARRAY),
    ("table_name", PhysicalType::BYTE_ARRAY),
    ("op", PhysicalType::BYTE_ARRAY),
    ("pk", PhysicalType::BYTE_ARRAY),
    ("old_values", PhysicalType::BYTE_ARRAY),
    ("new_values", PhysicalType::BYTE_ARRAY),
    ("changed_fields.list.element", PhysicalType::BYTE_ARRAY),
    ("actor_id", PhysicalType::BYTE_ARRAY),
    ("actor_name", PhysicalType::BYTE_ARRAY),
    ("actor_type", PhysicalType::BYTE_ARRAY),
    ("reason", PhysicalType::BYTE_ARRAY),
    ("context", PhysicalType::BYTE_ARRAY),
    ("db_user", PhysicalType::BYTE_ARRAY),
    ("application_name", PhysicalType::BYTE_ARRAY),
    ("client_addr", PhysicalType::BYTE_ARRAY),
    ("tx_started_at", PhysicalType::INT64),
    ("ctx", PhysicalType::INT32),
    ("table_id", PhysicalType::INT32),
    ("old_pk", PhysicalType::BYTE_ARRAY),
    ("changed_fields_recorded", PhysicalType::BYTE_ARRAY),
    ("tx_recorded_at", PhysicalType::INT64),
    ("db_role", PhysicalType::BYTE_ARRAY),
    ("client_port", PhysicalType::INT32),
    ("backend_pid", PhysicalType::INT32),
];

/// Reads every row of an archive file, in file order (the whole file in
/// memory: for tests and small files; [`ArchiveReader`] reads a row group
/// at a time).
pub fn read_rows(path: &Path) -> Result<Vec<ArchivedChange>, ReadError> {
    let reader = ArchiveReader::open(path)?;
    let mut out = Vec::with_capacity(reader.rows());
    for g in 0..reader.groups() {
        out.extend(reader.read_group(g)?);
    }
    Ok(out)
}

/// An archive file opened for reading a row group at a time, a column at a
/// time (the `parquet` crate's row iterator is an order of magnitude
/// slower); only the row group asked for is in memory.
pub struct ArchiveReader<R: ChunkReader + 'static> {
    reader: SerializedFileReader<Shared<R>>,
    /// The file again, and its metadata, for the Arrow reader.
    source: Shared<R>,
    arrow: ArrowReaderMetadata,
    /// The first row of each row group, then the number of rows.
    starts: Vec<usize>,
}

impl ArchiveReader<File> {
    pub fn open(path: &Path) -> Result<ArchiveReader<File>, ReadError> {
        ArchiveReader::new(File::open(path)?)
    }
}

impl<R: ChunkReader + 'static> ArchiveReader<R> {
    /// Opens the file and checks that its schema is an archive's.
    pub fn new(source: R) -> Result<ArchiveReader<R>, ReadError> {
        let source = Shared(Arc::new(source));
        let reader = SerializedFileReader::new(source.clone())?;
        let schema = reader.metadata().file_metadata().schema_descr();
        if schema.num_columns() != COLUMNS.len() {
            return Err(ReadError::Schema(format!(
                "{} columns, an archive has {}",
                schema.num_columns(),
                COLUMNS.len()
            )));
        }
        for (i, (name, physical)) in COLUMNS.iter().enumerate() {
            let column = schema.column(i);
            if column.path().string() != *name || column.physical_type() != *physical {
                return Err(ReadError::Schema(format!(
                    "column {} is `{}` ({}), an archive has `{name}` ({physical})",
                    i + 1,
                    column.path().string(),
                    column.physical_type()
                )));
            }
        }
        let mut starts = vec![0];
        for group in reader.metadata().row_groups() {
            let n = usize::try_from(group.num_rows()).map_err(|_| ReadError::Shape {
                row: starts.last().copied().unwrap_or(0),
                column: "id",
                problem: "has a row group of a negative size",
            })?;
            starts.push(starts.last().copied().unwrap_or(0) + n);
        }
        let arrow = ArrowReaderMetadata::try_new(
            Arc::new(reader.metadata().clone()),
            ArrowReaderOptions::new().with_skip_arrow_metadata(true),
        )?;
        Ok(ArchiveReader {
            reader,
            source,
            arrow,
            starts,
        })
    }

    /// Rows in the file.
    pub fn rows(&self) -> usize {
        self.starts.last().copied().unwrap_or(0)
    }

    /// Row groups in the file.
    pub fn groups(&self) -> usize {
        self.starts.len() - 1
    }

    /// The position in the file of row group `g`'s first row.
    pub fn group_start(&self, g: usize) -> usize {
        self.starts[g]
    }

    /// The change ids of row group `g`, in file order.
    pub fn read_ids(&self, g: usize) -> Result<Vec<i64>, ReadError> {
        let group = self.reader.get_row_group(g)?;
        let n = self.starts[g + 1] - self.starts[g];
        read_column::<Int64Type>(group.as_ref(), 0, n)?
            .into_iter()
            .enumerate()
            .map(|(r, v)| {
                v.ok_or(ReadError::Shape {
                    row: self.starts[g] + r,
                    column: "id",
                    problem: "is missing",
                })
            })
            .collect()
    }

    /// Reads row group `g` [`DIGEST_BATCH`] rows at a time and hands each
    /// batch to `each`: the text columns through the `parquet` crate's
    /// Arrow reader (each column's values in one buffer, checked to be
    /// UTF-8; no counted value per row), the integer columns through its
    /// column readers (their values as stored). Every column is checked to
    /// hold as many rows as the row group.
    fn batches(
        &self,
        g: usize,
        mut each: impl FnMut(&Batch<'_>) -> Result<(), ReadError>,
    ) -> Result<(), ReadError> {
        let group = self.reader.get_row_group(g)?;
        let group = group.as_ref();
        let n = self.starts[g + 1] - self.starts[g];
        let base = self.starts[g];
        let other_type = |i: usize| ReadError::Shape {
            row: base,
            column: COLUMNS[i].0,
            problem: "has another physical type",
        };
        // The integer columns: (index, reader, values, definition levels).
        let mut numbers = Vec::new();
        for (i, (_, physical)) in COLUMNS.iter().enumerate() {
            let number = match physical {
                PhysicalType::INT64 => Number::Long(
                    Int64Type::get_column_reader(group.get_column_reader(i)?).ok_or_else(|| other_type(i))?,
                    Vec::new(),
                ),
                PhysicalType::INT32 => Number::Int(
                    Int32Type::get_column_reader(group.get_column_reader(i)?).ok_or_else(|| other_type(i))?,
                    Vec::new(),
                ),
                _ => continue,
            };
            numbers.push((i, number, Vec::<i16>::new()));
        }
        let texts =
            ParquetRecordBatchReaderBuilder::new_with_metadata(self.source.clone(), self.arrow.clone())
                .with_row_groups(vec![g])
                .with_projection(ProjectionMask::leaves(
                    self.arrow.parquet_schema(),
                    COLUMNS
                        .iter()
                        .enumerate()
                        .filter(|(_, (_, physical))| *physical == PhysicalType::BYTE_ARRAY)
                        .map(|(i, _)| i),
                ))
                .with_batch_size(DIGEST_BATCH)
                .build()?;
        let mut done = 0;
        for batch in texts {
            let batch = batch?;
            let rows = batch.num_rows();
            if done + rows > n {
                return Err(ReadError::Shape {
                    row: base + n,
                    column: "id",
                    problem: "has more values than the row group has rows",
                });
            }
            for (i, number, defs) in &mut numbers {
                defs.clear();
                let records = match number {
                    Number::Long(reader, values) => {
                        values.clear();
                        reader.read_records(rows, Some(defs), None, values)?.0
                    }
                    Number::Int(reader, values) => {
                        values.clear();
                        reader.read_records(rows, Some(defs), None, values)?.0
                    }
                };
                if records != rows {
                    return Err(ReadError::Shape {
                        row: base + done + records,
                        column: COLUMNS[*i].0,
                        problem: "ends before the row group does",
                    });
                }
                if !defs.is_empty() && defs.len() != rows {
                    return Err(ReadError::Shape {
                        row: base + done,
                        column: COLUMNS[*i].0,
                        problem: "has another number of levels than rows",
                    });
                }
            }
            // Each column of the schema: an integer column's place in
            // `numbers`, or a text column of the batch.
            let mut columns = Vec::with_capacity(COLUMNS.len());
            let (mut number, mut text) = (0, 0);
            for (i, (name, physical)) in COLUMNS.iter().enumerate() {
                let not_text = || ReadError::Shape {
                    row: base + done,
                    column: name,
                    problem: "is not text",
                };
                columns.push(match physical {
                    PhysicalType::BYTE_ARRAY => {
                        let array = batch.column(text);
                        text += 1;
                        if i == 9 {
                            let list = array
                                .as_list_opt::<i32>()
                                .ok_or_else(|| list_shape(base + done))?;
                            let items = list
                                .values()
                                .as_string_opt::<i32>()
                                .ok_or_else(|| list_shape(base + done))?;
                            Column::List(list, items)
                        } else {
                            Column::Text(array.as_string_opt::<i32>().ok_or_else(not_text)?)
                        }
                    }
                    _ => {
                        number += 1;
                        Column::Number(number - 1)
                    }
                });
            }
            each(&Batch {
                first: base + done,
                rows,
                columns: &columns,
                numbers: &numbers,
            })?;
            done += rows;
        }
        if done != n {
            return Err(ReadError::Shape {
                row: base + done,
                column: "id",
                problem: "is missing",
            });
        }
        Ok(())
    }

    /// Feeds the rows of row group `g` into `hasher` as
    /// [`ArchivedChange::digest_into`] does, straight from the columns
    /// (no row is built), and returns the group's change ids in file order.
    pub fn digest_group(&self, g: usize, hasher: &mut impl RowDigest) -> Result<Vec<i64>, ReadError> {
        let n = self.starts[g + 1] - self.starts[g];
        let mut ids = Vec::with_capacity(n);
        // Each row is put together first and fed whole: a digest fed in
        // pieces of a few bytes spends more on each call than on the bytes.
        let mut b: Vec<u8> = Vec::with_capacity(1024);
        self.batches(g, |batch| {
            let (columns, numbers) = (batch.columns, batch.numbers);
            // Where each integer column's next value is (values are stored
            // without their NULLs).
            let mut next = vec![0usize; numbers.len()];
            for r in 0..batch.rows {
                let row = batch.first + r;
                b.clear();
                for (i, column) in columns.iter().enumerate() {
                    match column {
                        Column::Text(values) => {
                            if values.is_null(r) {
                                b.extend_from_slice(&u32::MAX.to_be_bytes());
                            } else {
                                let v = values.value(r).as_bytes();
                                b.extend_from_slice(&(v.len() as u32).to_be_bytes());
                                b.extend_from_slice(v);
                            }
                        }
                        Column::List(list, items) => {
                            // changed_fields: NULL, an empty list, or items
                            // joined by U+001F (none of them NULL).
                            if list.is_null(r) {
                                b.extend_from_slice(&u32::MAX.to_be_bytes());
                                continue;
                            }
                            let offsets = list.value_offsets();
                            let (first, end) = (offsets[r] as usize, offsets[r + 1] as usize);
                            if (first..end).any(|k| items.is_null(k)) {
                                return Err(list_shape(row));
                            }
                            let len = (first..end).map(|k| items.value(k).len()).sum::<usize>()
                                + (end - first).saturating_sub(1);
                            b.extend_from_slice(&(len as u32).to_be_bytes());
                            for k in first..end {
                                if k > first {
                                    b.push(0x1f);
                                }
                                b.extend_from_slice(items.value(k).as_bytes());
                            }
                        }
                        Column::Number(k) => {
                            let (_, values, defs) = &numbers[*k];
                            let values: &Number = values;
                            if defs.get(r).is_some_and(|d| *d == 0) {
                                b.extend_from_slice(&u32::MAX.to_be_bytes());
                                continue;
                            }
                            let at = next[*k];
                            next[*k] += 1;
                            let v = values.get(at).ok_or(ReadError::Shape {
                                row,
                                column: COLUMNS[i].0,
                                problem: "has fewer values than rows",
                            })?;
                            if i == 0 {
                                ids.push(v);
                            }
                            b.extend_from_slice(&8u32.to_be_bytes());
                            b.extend_from_slice(&v.to_be_bytes());
                        }
                    }
                }
                hasher.put(&b);
            }
            Ok(())
        })?;
        self.every_id(g, ids)
    }

    /// `ids`, the change ids read from row group `g`, if it holds one for
    /// each of the group's rows.
    fn every_id(&self, g: usize, ids: Vec<i64>) -> Result<Vec<i64>, ReadError> {
        let n = self.starts[g + 1] - self.starts[g];
        if ids.len() != n {
            return Err(ReadError::Shape {
                row: self.starts[g] + ids.len(),
                column: "id",
                problem: "is missing",
            });
        }
        Ok(ids)
    }

    /// Feeds the columns of row group `g` into `check` as
    /// [`Columns::check_into`] does, each column's values in bulk (no row
    /// is put together), and returns the group's change ids in file order.
    pub fn check_group(&self, g: usize, check: &mut ColumnCheck) -> Result<Vec<i64>, ReadError> {
        let n = self.starts[g + 1] - self.starts[g];
        let mut ids = Vec::with_capacity(n);
        self.batches(g, |batch| {
            for (i, column) in batch.columns.iter().enumerate() {
                match column {
                    Column::Text(values) => check_text(i, values, check),
                    Column::List(list, items) => check_list(i, list, items, batch, check)?,
                    Column::Number(k) => {
                        let (_, values, defs) = &batch.numbers[*k];
                        let valid = if defs.is_empty() {
                            check.all_valid(i, batch.rows);
                            batch.rows
                        } else {
                            check.valid(i, defs.iter().map(|d| *d > 0));
                            defs.iter().filter(|d| **d > 0).count()
                        };
                        if values.len() != valid {
                            return Err(ReadError::Shape {
                                row: batch.first,
                                column: COLUMNS[i].0,
                                problem: "has another number of values than rows with one",
                            });
                        }
                        match values {
                            Number::Long(_, v) => {
                                check.numbers(i, v);
                                if i == 0 {
                                    ids.extend_from_slice(v);
                                }
                            }
                            Number::Int(_, v) => check.numbers(i, v),
                        }
                    }
                }
            }
            Ok(())
        })?;
        self.every_id(g, ids)
    }

    /// The rows of row group `g`, in file order.
    pub fn read_group(&self, g: usize) -> Result<Vec<ArchivedChange>, ReadError> {
        let group = self.reader.get_row_group(g)?;
        let group = group.as_ref();
        let n = self.starts[g + 1] - self.starts[g];
        let base = self.starts[g];
        let mut out = Vec::with_capacity(n);
        let longs = |i: usize| read_column::<Int64Type>(group, i, n);
        let ints = |i: usize| read_column::<Int32Type>(group, i, n);
        let texts = |i: usize| -> Result<Vec<Option<String>>, ReadError> {
            read_column::<ByteArrayType>(group, i, n)?
                .into_iter()
                .enumerate()
                .map(|(r, v)| v.map(|b| text(b, base + r, COLUMNS[i].0)).transpose())
                .collect()
        };
        let required = |v: Option<i64>, r: usize, column: &'static str| {
            v.ok_or(ReadError::Shape {
                row: base + r,
                column,
                problem: "is missing",
            })
        };
        let id = longs(0)?;
        let txid = longs(1)?;
        let changed_at = longs(2)?;
        let table_schema = texts(3)?;
        let table_name = texts(4)?;
        let op = texts(5)?;
        let mut pk = texts(6)?.into_iter();
        let mut old_values = texts(7)?.into_iter();
        let mut new_values = texts(8)?.into_iter();
        let mut changed_fields =
            read_list(group, 9, n, base, |v, row| text(v, row, "changed_fields"))?.into_iter();
        let mut actor_id = texts(10)?.into_iter();
        let mut actor_name = texts(11)?.into_iter();
        let mut actor_type = texts(12)?.into_iter();
        let mut reason = texts(13)?.into_iter();
        let mut context = texts(14)?.into_iter();
        let mut db_user = texts(15)?.into_iter();
        let mut application_name = texts(16)?.into_iter();
        let mut client_addr = texts(17)?.into_iter();
        let tx_started_at = longs(18)?;
        let ctx = ints(19)?;
        let table_id = ints(20)?;
        let mut old_pk = texts(21)?.into_iter();
        let mut changed_fields_recorded = texts(22)?.into_iter();
        let tx_recorded_at = longs(23)?;
        let mut db_role = texts(24)?.into_iter();
        let client_port = ints(25)?;
        let backend_pid = ints(26)?;
        let (mut table_schema, mut table_name, mut op) =
            (table_schema.into_iter(), table_name.into_iter(), op.into_iter());
        let missing = |r: usize, column: &'static str| ReadError::Shape {
            row: base + r,
            column,
            problem: "is missing",
        };
        for r in 0..n {
            // Every column holds exactly n records (read_column checks it).
            let next = |v: Option<Option<String>>| v.flatten();
            out.push(ArchivedChange {
                id: required(id[r], r, "id")?,
                txid: required(txid[r], r, "txid")?,
                changed_at: required(changed_at[r], r, "changed_at")?,
                table_schema: next(table_schema.next()).ok_or_else(|| missing(r, "table_schema"))?,
                table_name: next(table_name.next()).ok_or_else(|| missing(r, "table_name"))?,
                op: next(op.next()).ok_or_else(|| missing(r, "op"))?,
                pk: next(pk.next()),
                old_values: next(old_values.next()),
                new_values: next(new_values.next()),
                changed_fields: changed_fields.next().flatten(),
                actor_id: next(actor_id.next()),
                actor_name: next(actor_name.next()),
                actor_type: next(actor_type.next()),
                reason: next(reason.next()),
                context: next(context.next()),
                db_user: next(db_user.next()),
                application_name: next(application_name.next()),
                client_addr: next(client_addr.next()),
                tx_started_at: tx_started_at[r],
                ctx: ctx[r]
                    .and_then(|v| i16::try_from(v).ok())
                    .ok_or(ReadError::Shape {
                        row: base + r,
                        column: "ctx",
                        problem: "is missing or out of range",
                    })?,
                table_id: table_id[r].ok_or_else(|| missing(r, "table_id"))?,
                old_pk: next(old_pk.next()),
                changed_fields_recorded: next(changed_fields_recorded.next()),
                tx_recorded_at: tx_recorded_at[r],
                db_role: next(db_role.next()),
                client_port: client_port[r],
                backend_pid: backend_pid[r],
            });
        }
        Ok(out)
    }
}

/// A reader of the file shared by the readers of its columns.
struct Shared<R>(Arc<R>);

impl<R> Clone for Shared<R> {
    fn clone(&self) -> Shared<R> {
        Shared(Arc::clone(&self.0))
    }
}

impl<R: Length> Length for Shared<R> {
    fn len(&self) -> u64 {
        self.0.len()
    }
}

impl<R: ChunkReader> ChunkReader for Shared<R> {
    type T = R::T;

    fn get_read(&self, start: u64) -> parquet::errors::Result<R::T> {
        self.0.get_read(start)
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        self.0.get_bytes(start, length)
    }
}

/// Rows of a row group read at a time by [`ArchiveReader::batches`].
const DIGEST_BATCH: usize = 4096;

/// An integer column's reader in [`ArchiveReader::batches`] and its
/// values of the rows being read.
enum Number {
    Long(ColumnReaderImpl<Int64Type>, Vec<i64>),
    Int(ColumnReaderImpl<Int32Type>, Vec<i32>),
}

impl Number {
    /// Values read.
    fn len(&self) -> usize {
        match self {
            Number::Long(_, values) => values.len(),
            Number::Int(_, values) => values.len(),
        }
    }

    /// The `at`th value read (None past the end).
    fn get(&self, at: usize) -> Option<i64> {
        match self {
            Number::Long(_, values) => values.get(at).copied(),
            Number::Int(_, values) => values.get(at).map(|v| i64::from(*v)),
        }
    }
}

/// A batch of a row group's rows as [`ArchiveReader::batches`] reads them.
struct Batch<'a> {
    /// The place of its first row in the file.
    first: usize,
    rows: usize,
    /// Each column of the schema.
    columns: &'a [Column<'a>],
    /// The integer columns: index in the schema, values (NULLs left out)
    /// and definition levels (none for a required column).
    numbers: &'a [(usize, Number, Vec<i16>)],
}

/// Feeds a text column of a batch into `check` as column `i`.
fn check_text(i: usize, values: &StringArray, check: &mut ColumnCheck) {
    let rows = values.len();
    match values.null_count() {
        0 => check.all_valid(i, rows),
        _ => check.valid(i, (0..rows).map(|r| values.is_valid(r))),
    }
    let offsets = values.value_offsets();
    let lengths = offsets.windows(2).map(|w| (w[1] - w[0]) as usize);
    let (start, end) = (offsets[0] as usize, offsets[rows] as usize);
    match values.nulls() {
        None => {
            check.sizes(i, Stream::Lengths, lengths);
            check.bytes(i, &values.value_data()[start..end]);
        }
        Some(nulls) => {
            check.sizes_where(i, Stream::Lengths, lengths, nulls.iter());
            // The reader's NULLs take no bytes; were one to, value by value.
            if (0..rows).all(|r| values.is_valid(r) || offsets[r + 1] == offsets[r]) {
                check.bytes(i, &values.value_data()[start..end]);
            } else {
                for r in (0..rows).filter(|r| values.is_valid(*r)) {
                    check.bytes(i, values.value(r).as_bytes());
                }
            }
        }
    }
}

/// Feeds `changed_fields` of a batch into `check` as column `i`: which
/// rows hold a list, how many items each (none of them NULL), the items'
/// lengths and bytes.
fn check_list(
    i: usize,
    list: &ListArray,
    items: &StringArray,
    batch: &Batch<'_>,
    check: &mut ColumnCheck,
) -> Result<(), ReadError> {
    let rows = batch.rows;
    let offsets = list.value_offsets();
    let (first, end) = (offsets[0] as usize, offsets[rows] as usize);
    if items.null_count() > 0 || end > items.len() || first > end {
        return Err(list_shape(batch.first));
    }
    match list.null_count() {
        0 => check.all_valid(i, rows),
        _ => check.valid(i, (0..rows).map(|r| list.is_valid(r))),
    }
    let counts = offsets.windows(2).map(|w| (w[1] - w[0]) as usize);
    match list.nulls() {
        None => check.sizes(i, Stream::Counts, counts),
        Some(nulls) => check.sizes_where(i, Stream::Counts, counts, nulls.iter()),
    }
    let item_offsets = &items.value_offsets()[first..=end];
    check.sizes(
        i,
        Stream::Lengths,
        item_offsets.windows(2).map(|w| (w[1] - w[0]) as usize),
    );
    let (from, to) = (item_offsets[0] as usize, item_offsets[end - first] as usize);
    check.bytes(i, &items.value_data()[from..to]);
    Ok(())
}

/// A column of a batch in [`ArchiveReader::batches`].
enum Column<'a> {
    /// The integer column at this place among the integer columns.
    Number(usize),
    Text(&'a StringArray),
    List(&'a ListArray, &'a StringArray),
}

fn list_shape(row: usize) -> ReadError {
    ReadError::Shape {
        row,
        column: "changed_fields",
        problem: "is not a list of text",
    }
}

fn text(value: ByteArray, row: usize, column: &'static str) -> Result<String, ReadError> {
    String::from_utf8(value.data().to_vec()).map_err(|_| ReadError::Shape {
        row,
        column,
        problem: "is not UTF-8 text",
    })
}

/// The `n` records of a flat column (required or optional), None for NULL.
fn read_column<T: DataType>(
    group: &dyn RowGroupReader,
    i: usize,
    n: usize,
) -> Result<Vec<Option<T::T>>, ReadError>
where
    T::T: Clone,
{
    let name = COLUMNS[i].0;
    let mut reader = T::get_column_reader(group.get_column_reader(i)?).ok_or(ReadError::Shape {
        row: 0,
        column: name,
        problem: "has another physical type",
    })?;
    let mut defs = Vec::with_capacity(n);
    let mut values = Vec::with_capacity(n);
    let (records, _, _) = reader.read_records(n, Some(&mut defs), None, &mut values)?;
    if records != n {
        return Err(ReadError::Shape {
            row: records,
            column: name,
            problem: "ends before the row group does",
        });
    }
    if defs.is_empty() {
        return Ok(values.into_iter().map(Some).collect());
    }
    let mut values = values.into_iter();
    Ok(defs
        .iter()
        .map(|d| if *d > 0 { values.next() } else { None })
        .collect())
}

/// The `n` records of `changed_fields`: NULL, an empty list, or text items.
fn read_list<T>(
    group: &dyn RowGroupReader,
    i: usize,
    n: usize,
    base: usize,
    item: impl Fn(ByteArray, usize) -> Result<T, ReadError>,
) -> Result<Vec<Option<Vec<T>>>, ReadError> {
    let shape = |row: usize| ReadError::Shape {
        row: base + row,
        column: "changed_fields",
        problem: "is not a list of text",
    };
    let mut reader = ByteArrayType::get_column_reader(group.get_column_reader(i)?).ok_or_else(|| shape(0))?;
    let (mut defs, mut reps, mut values) = (Vec::new(), Vec::new(), Vec::new());
    let (records, _, _) = reader.read_records(n, Some(&mut defs), Some(&mut reps), &mut values)?;
    if records != n || defs.len() != reps.len() {
        return Err(shape(records));
    }
    let mut out: Vec<Option<Vec<T>>> = Vec::with_capacity(n);
    let mut values = values.into_iter();
    for (def, rep) in defs.iter().zip(&reps) {
        let row = out.len();
        if *rep == 0 {
            out.push(match def {
                0 => None,
                _ => Some(Vec::new()),
            });
        }
        if *def == 3 {
            let value = values.next().ok_or_else(|| shape(row))?;
            let item = item(value, base + out.len().saturating_sub(1))?;
            match out.last_mut() {
                Some(Some(list)) => list.push(item),
                _ => return Err(shape(row)),
            }
        } else if *def == 2 || (*rep != 0) {
            // A NULL item, or an item continuing a list that has none.
            return Err(shape(row));
        }
    }
    if out.len() != n {
        return Err(shape(out.len()));
    }
    Ok(out)
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
        // The digest from the columns is the rows' own.
        use sha2::{Digest, Sha256};
        let seed = crate::digest::seed();
        let mut expected = Sha256::new();
        for row in &rows {
            row.digest_into(&mut expected);
        }
        let reader = ArchiveReader::open(&path).unwrap();
        assert_eq!(reader.groups(), 2);
        let mut hasher = Sha256::new();
        let mut ids = Vec::new();
        for g in 0..reader.groups() {
            ids.extend(reader.digest_group(g, &mut hasher).unwrap());
            assert_eq!(reader.read_ids(g).unwrap(), ids[reader.group_start(g)..]);
        }
        assert_eq!(ids, rows.iter().map(|r| r.id).collect::<Vec<_>>());
        assert_eq!(hasher.finalize(), expected.finalize());
        // The columns' check from the file is that of the columns written,
        // whatever the row groups and batches.
        let mut written = ColumnCheck::new(seed, COLUMN_COUNT);
        for chunk in rows.chunks(1000) {
            let mut columns = Columns::default();
            chunk.iter().for_each(|row| columns.push_change(row));
            columns.check_into(&mut written);
        }
        let mut read = ColumnCheck::new(seed, COLUMN_COUNT);
        let mut other = ColumnCheck::new(seed ^ 1, COLUMN_COUNT);
        let mut checked = Vec::new();
        for g in 0..reader.groups() {
            checked.extend(reader.check_group(g, &mut read).unwrap());
            reader.check_group(g, &mut other).unwrap();
        }
        assert_eq!(checked, ids);
        assert_eq!(read.value(), written.value());
        assert_ne!(other.value(), written.value());
        // The same bytes cut into other values, or other lists, or a
        // value in another row, change it.
        let check_of = |rows: &[ArchivedChange]| {
            let mut columns = Columns::default();
            rows.iter().for_each(|row| columns.push_change(row));
            let mut check = ColumnCheck::new(seed, COLUMN_COUNT);
            columns.check_into(&mut check);
            check.value()
        };
        let mut recut = rows.clone();
        recut[5].old_values = Some(r#"{"email": "a@x"}{"email""#.into());
        recut[6].old_values = Some(r#": "a@x"}"#.into());
        let mut relisted = rows.clone();
        relisted[7].changed_fields = Some(vec!["email".into()]);
        relisted[8].changed_fields = Some(vec!["name".into(), "email".into(), "name".into()]);
        let mut moved = rows.clone();
        moved[3].pk = moved[4].pk.take();
        assert_eq!(check_of(&rows), written.value());
        for other in [recut, relisted, moved] {
            assert_ne!(check_of(&other), written.value());
        }
    }
}
