//! The Parquet layout of an archive file (one row per change, sorted by
//! change id, zstd) and its writer and reader, on the `parquet` crate's
//! column API (no Arrow).

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use parquet::basic::{Compression, Type as PhysicalType, ZstdLevel};
use parquet::column::reader::ColumnReaderImpl;
use parquet::data_type::{ByteArray, ByteArrayType, DataType, Int32Type, Int64Type};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::reader::{ChunkReader, FileReader, RowGroupReader, SerializedFileReader};
use parquet::file::writer::{SerializedFileWriter, SerializedRowGroupWriter};
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::ColumnPath;

use crate::digest::RowDigest;
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

/// The zstd level of the archive's pages.
const ZSTD_LEVEL: i32 = 1;

/// How an archive file is encoded (see the README's Parquet schema): zstd
/// at [`ZSTD_LEVEL`], dictionaries but for [`UNIQUE_COLUMNS`], statistics
/// for [`STATISTICS_COLUMNS`] only.
fn properties() -> parquet::errors::Result<WriterProperties> {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL)?))
        .set_created_by(format!("pgtrail {}", pgtrail_capture::VERSION))
        .set_statistics_enabled(EnabledStatistics::None);
    for column in UNIQUE_COLUMNS {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(column), false);
    }
    for column in STATISTICS_COLUMNS {
        builder = builder.set_column_statistics_enabled(ColumnPath::from(column), EnabledStatistics::Page);
    }
    Ok(builder.build())
}

/// Writes rows to a Parquet file, a row group at a time.
pub struct ParquetWriter {
    writer: SerializedFileWriter<File>,
    pending: Columns,
}

impl ParquetWriter {
    pub fn create(path: &Path) -> parquet::errors::Result<ParquetWriter> {
        let file = File::create(path)?;
        let schema = Arc::new(parse_message_type(SCHEMA)?);
        let props = properties()?;
        Ok(ParquetWriter {
            writer: SerializedFileWriter::new(file, schema, Arc::new(props))?,
            pending: Columns::default(),
        })
    }

    pub fn push(&mut self, row: ArchivedChange) -> parquet::errors::Result<()> {
        self.pending.push_change(row);
        if self.pending.rows >= ROW_GROUP {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes rows already taken apart into columns as one row group.
    pub fn write_columns(&mut self, columns: &Columns) -> parquet::errors::Result<()> {
        self.flush()?;
        if columns.rows == 0 {
            return Ok(());
        }
        let mut group = self.writer.next_row_group()?;
        write_group(&mut group, columns)?;
        group.close()?;
        Ok(())
    }

    fn flush(&mut self) -> parquet::errors::Result<()> {
        if self.pending.rows == 0 {
            return Ok(());
        }
        let columns = std::mem::take(&mut self.pending);
        let mut group = self.writer.next_row_group()?;
        write_group(&mut group, &columns)?;
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

/// One optional column being built: values and definition levels.
#[derive(Default)]
pub struct Optional<T> {
    pub values: Vec<T>,
    pub defs: Vec<i16>,
}

impl<T> Optional<T> {
    pub fn push(&mut self, value: Option<T>) {
        self.defs.push(i16::from(value.is_some()));
        self.values.extend(value);
    }
}

/// Rows taken apart into the columns of [`SCHEMA`] (strings as byte
/// arrays that may share the buffers they were received in), ready to be
/// written as a row group.
#[derive(Default)]
pub struct Columns {
    pub rows: usize,
    /// id, txid, changed_at.
    pub longs: [Vec<i64>; 3],
    /// table_schema, table_name, op.
    pub names: [Vec<ByteArray>; 3],
    /// pk, old_values, new_values, actor_id, actor_name, actor_type,
    /// reason, context, db_user, application_name, client_addr, old_pk,
    /// changed_fields_recorded, db_role.
    pub texts: [Optional<ByteArray>; 14],
    /// changed_fields: items, definition and repetition levels.
    pub fields: Vec<ByteArray>,
    pub field_defs: Vec<i16>,
    pub field_reps: Vec<i16>,
    /// tx_started_at, tx_recorded_at.
    pub times: [Optional<i64>; 2],
    /// ctx, table_id.
    pub ints: [Vec<i32>; 2],
    /// client_port, backend_pid.
    pub small: [Optional<i32>; 2],
}

impl Columns {
    pub fn with_capacity(n: usize) -> Columns {
        let mut c = Columns::default();
        for v in &mut c.longs {
            v.reserve(n);
        }
        for v in &mut c.names {
            v.reserve(n);
        }
        for v in &mut c.texts {
            v.values.reserve(n);
            v.defs.reserve(n);
        }
        for v in &mut c.ints {
            v.reserve(n);
        }
        c
    }

    /// Empties the columns, keeping their memory for the next row group
    /// (a row group's columns are tens of MiB: fresh ones are page faults).
    pub fn clear(&mut self) {
        self.rows = 0;
        self.longs.iter_mut().for_each(Vec::clear);
        self.names.iter_mut().for_each(Vec::clear);
        for v in &mut self.texts {
            v.values.clear();
            v.defs.clear();
        }
        self.fields.clear();
        self.field_defs.clear();
        self.field_reps.clear();
        for v in &mut self.times {
            v.values.clear();
            v.defs.clear();
        }
        self.ints.iter_mut().for_each(Vec::clear);
        for v in &mut self.small {
            v.values.clear();
            v.defs.clear();
        }
    }

    /// Appends `changed_fields`: NULL, an empty list, or its items.
    pub fn push_fields<I: IntoIterator<Item = ByteArray>>(&mut self, list: Option<I>) {
        let Some(list) = list else {
            self.field_defs.push(0);
            self.field_reps.push(0);
            return;
        };
        let mut any = false;
        for item in list {
            self.field_defs.push(3);
            self.field_reps.push(i16::from(any));
            self.fields.push(item);
            any = true;
        }
        if !any {
            self.field_defs.push(1);
            self.field_reps.push(0);
        }
    }

    /// Appends a row (its strings moved, not copied).
    pub fn push_change(&mut self, r: ArchivedChange) {
        self.rows += 1;
        self.longs[0].push(r.id);
        self.longs[1].push(r.txid);
        self.longs[2].push(r.changed_at);
        self.names[0].push(ByteArray::from(r.table_schema.into_bytes()));
        self.names[1].push(ByteArray::from(r.table_name.into_bytes()));
        self.names[2].push(ByteArray::from(r.op.into_bytes()));
        self.push_fields(
            r.changed_fields
                .map(|list| list.into_iter().map(|item| ByteArray::from(item.into_bytes()))),
        );
        for (column, value) in self.texts.iter_mut().zip([
            r.pk,
            r.old_values,
            r.new_values,
            r.actor_id,
            r.actor_name,
            r.actor_type,
            r.reason,
            r.context,
            r.db_user,
            r.application_name,
            r.client_addr,
            r.old_pk,
            r.changed_fields_recorded,
            r.db_role,
        ]) {
            column.push(value.map(|s| ByteArray::from(s.into_bytes())));
        }
        self.times[0].push(r.tx_started_at);
        self.times[1].push(r.tx_recorded_at);
        self.ints[0].push(i32::from(r.ctx));
        self.ints[1].push(r.table_id);
        self.small[0].push(r.client_port);
        self.small[1].push(r.backend_pid);
    }
}

/// Writes a row group, a column at a time.
fn write_group(group: &mut SerializedRowGroupWriter<'_, File>, c: &Columns) -> parquet::errors::Result<()> {
    // Schema column index → where its values are.
    let text_of = |index: usize| match index {
        6..=8 => index - 6,
        10..=17 => index - 7,
        21 | 22 => index - 10,
        _ => 13,
    };
    let mut index = 0;
    while let Some(mut column) = group.next_column()? {
        match index {
            0..=2 => {
                column
                    .typed::<Int64Type>()
                    .write_batch(&c.longs[index], None, None)?;
            }
            3..=5 => {
                column
                    .typed::<ByteArrayType>()
                    .write_batch(&c.names[index - 3], None, None)?;
            }
            9 => {
                column.typed::<ByteArrayType>().write_batch(
                    &c.fields,
                    Some(&c.field_defs),
                    Some(&c.field_reps),
                )?;
            }
            18 | 23 => {
                let t = &c.times[usize::from(index == 23)];
                column
                    .typed::<Int64Type>()
                    .write_batch(&t.values, Some(&t.defs), None)?;
            }
            19 | 20 => {
                column
                    .typed::<Int32Type>()
                    .write_batch(&c.ints[index - 19], None, None)?;
            }
            25 | 26 => {
                let t = &c.small[index - 25];
                column
                    .typed::<Int32Type>()
                    .write_batch(&t.values, Some(&t.defs), None)?;
            }
            _ => {
                let t = &c.texts[text_of(index)];
                column
                    .typed::<ByteArrayType>()
                    .write_batch(&t.values, Some(&t.defs), None)?;
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
    #[error("not an archive file: {0}")]
    Schema(String),
    #[error("row {row}: column `{column}` {problem}")]
    Shape {
        row: usize,
        column: &'static str,
        problem: &'static str,
    },
}

/// The columns of [`SCHEMA`] in order: name and physical type.
const COLUMNS: [(&str, PhysicalType); 27] = [
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
    reader: SerializedFileReader<R>,
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
        let reader = SerializedFileReader::new(source)?;
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
        Ok(ArchiveReader { reader, starts })
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

    /// Feeds the rows of row group `g` into `hasher` as
    /// [`ArchivedChange::digest_into`] does, straight from the columns
    /// (no row is built), and returns the group's change ids in file order.
    ///
    /// Every column is read [`DIGEST_BATCH`] rows at a time into buffers
    /// used again for the next rows (whole row groups' columns, tens of
    /// MiB, were mostly fresh memory and cache misses).
    pub fn digest_group(&self, g: usize, hasher: &mut impl RowDigest) -> Result<Vec<i64>, ReadError> {
        let group = self.reader.get_row_group(g)?;
        let group = group.as_ref();
        let n = self.starts[g + 1] - self.starts[g];
        let base = self.starts[g];
        let other_type = |i: usize| ReadError::Shape {
            row: base,
            column: COLUMNS[i].0,
            problem: "has another physical type",
        };
        let mut columns = Vec::with_capacity(COLUMNS.len());
        for (i, (_, physical)) in COLUMNS.iter().enumerate() {
            let reader = group.get_column_reader(i)?;
            columns.push(match physical {
                PhysicalType::INT64 => Batch::Long(
                    Int64Type::get_column_reader(reader).ok_or_else(|| other_type(i))?,
                    Vec::new(),
                ),
                PhysicalType::INT32 => Batch::Int(
                    Int32Type::get_column_reader(reader).ok_or_else(|| other_type(i))?,
                    Vec::new(),
                ),
                _ => Batch::Text(
                    ByteArrayType::get_column_reader(reader).ok_or_else(|| other_type(i))?,
                    Vec::new(),
                ),
            });
        }
        let mut defs: Vec<Vec<i16>> = vec![Vec::new(); COLUMNS.len()];
        let mut reps: Vec<i16> = Vec::new();
        let mut ids = Vec::with_capacity(n);
        // Each row is put together first and fed whole: a digest fed in
        // pieces of a few bytes spends more on each call than on the bytes.
        let mut b: Vec<u8> = Vec::with_capacity(1024);
        let mut done = 0;
        while done < n {
            let rows = DIGEST_BATCH.min(n - done);
            for (i, (column, defs)) in columns.iter_mut().zip(&mut defs).enumerate() {
                defs.clear();
                let reps = (i == 9).then_some(&mut reps);
                let records = match column {
                    Batch::Long(reader, values) => {
                        values.clear();
                        reader.read_records(rows, Some(defs), None, values)?.0
                    }
                    Batch::Int(reader, values) => {
                        values.clear();
                        reader.read_records(rows, Some(defs), None, values)?.0
                    }
                    Batch::Text(reader, values) => {
                        values.clear();
                        if let Some(reps) = reps {
                            reps.clear();
                            reader.read_records(rows, Some(defs), Some(reps), values)?.0
                        } else {
                            reader.read_records(rows, Some(defs), None, values)?.0
                        }
                    }
                };
                if records != rows {
                    return Err(ReadError::Shape {
                        row: base + done + records,
                        column: COLUMNS[i].0,
                        problem: "ends before the row group does",
                    });
                }
            }
            if defs[9].len() != reps.len() {
                return Err(list_shape(base + done));
            }
            for (i, defs) in defs.iter().enumerate() {
                if i != 9 && !defs.is_empty() && defs.len() != rows {
                    return Err(ReadError::Shape {
                        row: base + done,
                        column: COLUMNS[i].0,
                        problem: "has another number of levels than rows",
                    });
                }
            }
            // Where each column's next value is (values are stored without
            // their NULLs), and the list's next level.
            let mut next = [0usize; COLUMNS.len()];
            let mut level = 0;
            for r in 0..rows {
                let row = base + done + r;
                b.clear();
                for (i, column) in columns.iter().enumerate() {
                    if i == 9 {
                        // changed_fields: NULL, an empty list, or items,
                        // joined by U+001F.
                        let (defs, Batch::Text(_, values)) = (&defs[9], column) else {
                            return Err(list_shape(row));
                        };
                        if reps.get(level) != Some(&0) {
                            return Err(list_shape(row));
                        }
                        let first = level;
                        let mut end = level + 1;
                        while reps.get(end).is_some_and(|rep| *rep != 0) {
                            end += 1;
                        }
                        level = end;
                        match defs[first] {
                            0 if end == first + 1 => b.extend_from_slice(&u32::MAX.to_be_bytes()),
                            1 if end == first + 1 => b.extend_from_slice(&0u32.to_be_bytes()),
                            3 => {
                                let items = values
                                    .get(next[9]..next[9] + (end - first))
                                    .ok_or_else(|| list_shape(row))?;
                                if defs[first..end].iter().any(|d| *d != 3) {
                                    return Err(list_shape(row));
                                }
                                next[9] += end - first;
                                let len = items.iter().map(ByteArray::len).sum::<usize>() + items.len() - 1;
                                b.extend_from_slice(&(len as u32).to_be_bytes());
                                for (k, item) in items.iter().enumerate() {
                                    if k > 0 {
                                        b.push(0x1f);
                                    }
                                    b.extend_from_slice(item.data());
                                }
                            }
                            _ => return Err(list_shape(row)),
                        }
                        continue;
                    }
                    if defs[i].get(r).is_some_and(|d| *d == 0) {
                        b.extend_from_slice(&u32::MAX.to_be_bytes());
                        continue;
                    }
                    let at = next[i];
                    next[i] += 1;
                    let missing = || ReadError::Shape {
                        row,
                        column: COLUMNS[i].0,
                        problem: "has fewer values than rows",
                    };
                    match column {
                        Batch::Long(_, values) => {
                            let v = *values.get(at).ok_or_else(missing)?;
                            if i == 0 {
                                ids.push(v);
                            }
                            b.extend_from_slice(&8u32.to_be_bytes());
                            b.extend_from_slice(&v.to_be_bytes());
                        }
                        Batch::Int(_, values) => {
                            let v = i64::from(*values.get(at).ok_or_else(missing)?);
                            b.extend_from_slice(&8u32.to_be_bytes());
                            b.extend_from_slice(&v.to_be_bytes());
                        }
                        Batch::Text(_, values) => {
                            let v = values.get(at).ok_or_else(missing)?;
                            b.extend_from_slice(&(v.len() as u32).to_be_bytes());
                            b.extend_from_slice(v.data());
                        }
                    }
                }
                hasher.put(&b);
            }
            if level != reps.len() {
                return Err(list_shape(base + done + rows));
            }
            done += rows;
        }
        if ids.len() != n {
            return Err(ReadError::Shape {
                row: base + ids.len(),
                column: "id",
                problem: "is missing",
            });
        }
        Ok(ids)
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

/// Rows of a row group read at a time by [`ArchiveReader::digest_group`].
const DIGEST_BATCH: usize = 4096;

/// One column's reader in [`ArchiveReader::digest_group`] and its values
/// of the rows being read.
enum Batch {
    Long(ColumnReaderImpl<Int64Type>, Vec<i64>),
    Int(ColumnReaderImpl<Int32Type>, Vec<i32>),
    Text(ColumnReaderImpl<ByteArrayType>, Vec<ByteArray>),
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
        // The digests from the columns are the rows' own.
        let seed = crate::digest::seed();
        let mut expected = crate::digest::Both::new(seed);
        for row in &rows {
            row.digest_into(&mut expected);
        }
        let reader = ArchiveReader::open(&path).unwrap();
        assert_eq!(reader.groups(), 2);
        let mut hasher = crate::digest::Both::new(seed);
        let mut check = crate::digest::RowCheck::new(seed);
        let mut ids = Vec::new();
        for g in 0..reader.groups() {
            ids.extend(reader.digest_group(g, &mut hasher).unwrap());
            assert_eq!(reader.read_ids(g).unwrap(), ids[reader.group_start(g)..]);
            reader.digest_group(g, &mut check).unwrap();
        }
        assert_eq!(ids, rows.iter().map(|r| r.id).collect::<Vec<_>>());
        assert_eq!(check.value(), expected.check.value());
        assert_eq!(hasher.check.value(), expected.check.value());
        use sha2::Digest;
        assert_eq!(hasher.sha256.finalize(), expected.sha256.finalize());
    }
}
