//! The rows of a row group taken apart into the columns of the archive's
//! Parquet schema, laid out as Arrow arrays are: each column's values one
//! after another in one buffer, where each ends, and which rows are NULL.
//! A value is copied in once; nothing is counted or allocated per value,
//! and the writer ([`crate::parquet_file::ParquetWriter`]) encodes the
//! arrays as they are.

use std::sync::Arc;

use arrow_array::{ArrayRef, Int32Array, Int64Array, LargeBinaryArray, ListArray, RecordBatch};
use arrow_buffer::{ArrowNativeType, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};

use crate::digest::{ColumnCheck, Stream};
use crate::row::ArchivedChange;

/// Which rows of a nullable column hold a value.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Valid {
    rows: Vec<bool>,
    nulls: usize,
}

impl Valid {
    fn push(&mut self, valid: bool) {
        self.rows.push(valid);
        self.nulls += usize::from(!valid);
    }

    fn clear(&mut self) {
        self.rows.clear();
        self.nulls = 0;
    }

    /// Feeds which rows hold a value into `check` as column `i`'s.
    fn check_into(&self, i: usize, check: &mut ColumnCheck) {
        if self.nulls == 0 {
            check.all_valid(i, self.rows.len());
        } else {
            check.valid(i, self.rows.iter().copied());
        }
    }

    /// The null buffer of the rows pushed (None when none is NULL); empties it.
    fn take(&mut self) -> Option<NullBuffer> {
        let rows = std::mem::take(&mut self.rows);
        let nulls = std::mem::take(&mut self.nulls);
        (nulls > 0).then(|| NullBuffer::from(rows))
    }
}

/// A column of byte strings (NULL or not): their bytes one after another
/// and where each ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Texts {
    values: Vec<u8>,
    /// 0, then the end of each value.
    offsets: Vec<i64>,
    valid: Valid,
}

impl Default for Texts {
    fn default() -> Texts {
        Texts {
            values: Vec::new(),
            offsets: vec![0],
            valid: Valid::default(),
        }
    }
}

impl Texts {
    /// Appends a value, or NULL.
    pub fn push(&mut self, value: Option<&[u8]>) {
        self.values.extend_from_slice(value.unwrap_or_default());
        self.offsets.push(self.values.len() as i64);
        self.valid.push(value.is_some());
    }

    fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    fn clear(&mut self) {
        self.values.clear();
        self.offsets.clear();
        self.offsets.push(0);
        self.valid.clear();
    }

    /// Feeds the column into `check` as column `i`: which rows hold a
    /// value, their lengths and their bytes.
    fn check_into(&self, i: usize, check: &mut ColumnCheck) {
        self.valid.check_into(i, check);
        let lengths = self.offsets.windows(2).map(|w| (w[1] - w[0]) as usize);
        check.sizes_where(i, Stream::Lengths, lengths, self.valid.rows.iter().copied());
        check.bytes(i, &self.values);
    }

    /// The column as an Arrow array; empties it.
    fn take(&mut self) -> Result<LargeBinaryArray, ArrowError> {
        let values = std::mem::take(&mut self.values);
        let offsets = std::mem::replace(&mut self.offsets, vec![0]);
        let nulls = self.valid.take();
        LargeBinaryArray::try_new(
            OffsetBuffer::new(ScalarBuffer::from(offsets)),
            values.into(),
            nulls,
        )
    }
}

/// A column of integers (NULL or not); a NULL row holds 0.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Numbers<T> {
    values: Vec<T>,
    valid: Valid,
}

impl<T: Default + Copy> Numbers<T> {
    pub fn push(&mut self, value: Option<T>) {
        self.values.push(value.unwrap_or_default());
        self.valid.push(value.is_some());
    }

    fn clear(&mut self) {
        self.values.clear();
        self.valid.clear();
    }
}

impl<T: ArrowNativeType> Numbers<T> {
    /// Feeds the column into `check` as column `i`.
    fn check_into(&self, i: usize, check: &mut ColumnCheck) {
        self.valid.check_into(i, check);
        if self.valid.nulls == 0 {
            check.numbers(i, &self.values);
        } else {
            let values: Vec<T> = self
                .values
                .iter()
                .zip(&self.valid.rows)
                .filter(|(_, v)| **v)
                .map(|(n, _)| *n)
                .collect();
            check.numbers(i, &values);
        }
    }
}

/// Feeds a column without NULLs into `check` as column `i`.
fn check_required<T: ArrowNativeType>(values: &[T], i: usize, check: &mut ColumnCheck) {
    check.all_valid(i, values.len());
    check.numbers(i, values);
}

/// `changed_fields`: per row NULL, an empty list or its items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lists {
    items: Texts,
    /// 0, then the end of each row's items.
    offsets: Vec<i32>,
    valid: Valid,
}

impl Default for Lists {
    fn default() -> Lists {
        Lists {
            items: Texts::default(),
            offsets: vec![0],
            valid: Valid::default(),
        }
    }
}

impl Lists {
    /// Appends a row's list (None for NULL).
    pub fn push<'a>(&mut self, list: Option<impl IntoIterator<Item = &'a [u8]>>) {
        let valid = list.is_some();
        for item in list.into_iter().flatten() {
            self.items.push(Some(item));
        }
        self.offsets.push(self.items.len() as i32);
        self.valid.push(valid);
    }

    fn clear(&mut self) {
        self.items.clear();
        self.offsets.clear();
        self.offsets.push(0);
        self.valid.clear();
    }

    /// Feeds the column into `check` as column `i`: which rows hold a
    /// list, how many items each, and the items' lengths and bytes.
    fn check_into(&self, i: usize, check: &mut ColumnCheck) {
        self.valid.check_into(i, check);
        let counts = self.offsets.windows(2).map(|w| (w[1] - w[0]) as usize);
        check.sizes_where(i, Stream::Counts, counts, self.valid.rows.iter().copied());
        let lengths = self.items.offsets.windows(2).map(|w| (w[1] - w[0]) as usize);
        check.sizes(i, Stream::Lengths, lengths);
        check.bytes(i, &self.items.values);
    }

    fn take(&mut self) -> Result<ListArray, ArrowError> {
        let items = self.items.take()?;
        let offsets = std::mem::replace(&mut self.offsets, vec![0]);
        ListArray::try_new(
            Arc::new(item_field()),
            OffsetBuffer::new(ScalarBuffer::from(offsets)),
            Arc::new(items),
            self.valid.take(),
        )
    }
}

/// Rows taken apart into the columns of [`crate::parquet_file::SCHEMA`],
/// ready to be written as a row group.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Columns {
    pub rows: usize,
    /// id, txid, changed_at.
    pub longs: [Vec<i64>; 3],
    /// table_schema, table_name, op (never NULL).
    pub names: [Texts; 3],
    /// pk, old_values, new_values, actor_id, actor_name, actor_type,
    /// reason, context, db_user, application_name, client_addr, old_pk,
    /// changed_fields_recorded, db_role.
    pub texts: [Texts; 14],
    /// changed_fields.
    pub fields: Lists,
    /// tx_started_at, tx_recorded_at.
    pub times: [Numbers<i64>; 2],
    /// ctx, table_id.
    pub ints: [Vec<i32>; 2],
    /// client_port, backend_pid.
    pub small: [Numbers<i32>; 2],
}

impl Columns {
    /// Empty columns with room for `rows` rows' numbers and offsets.
    pub fn with_capacity(rows: usize) -> Columns {
        let mut c = Columns::default();
        c.longs.iter_mut().for_each(|v| v.reserve(rows));
        c.ints.iter_mut().for_each(|v| v.reserve(rows));
        for v in c.names.iter_mut().chain(&mut c.texts) {
            v.offsets.reserve(rows);
            v.valid.rows.reserve(rows);
        }
        c.fields.offsets.reserve(rows);
        c.fields.valid.rows.reserve(rows);
        for v in &mut c.times {
            v.values.reserve(rows);
            v.valid.rows.reserve(rows);
        }
        for v in &mut c.small {
            v.values.reserve(rows);
            v.valid.rows.reserve(rows);
        }
        c
    }

    /// Empty columns with room for `rows` rows and, in each text column,
    /// for as many bytes as this one holds: the next row group is mostly
    /// like this one, and its values are then copied in without growing
    /// (and moving) their buffers.
    pub fn with_room_of(&self, rows: usize) -> Columns {
        let mut c = Columns::with_capacity(rows);
        let old = self.names.iter().chain(&self.texts).chain([&self.fields.items]);
        let new = c
            .names
            .iter_mut()
            .chain(&mut c.texts)
            .chain([&mut c.fields.items]);
        for (new, old) in new.zip(old) {
            new.values.reserve(old.values.len());
        }
        let items = &mut c.fields.items;
        items.offsets.reserve(self.fields.items.offsets.len());
        items.valid.rows.reserve(self.fields.items.valid.rows.len());
        c
    }

    /// Empties the columns.
    pub fn clear(&mut self) {
        self.rows = 0;
        self.longs.iter_mut().for_each(Vec::clear);
        self.names.iter_mut().for_each(Texts::clear);
        self.texts.iter_mut().for_each(Texts::clear);
        self.fields.clear();
        self.times.iter_mut().for_each(Numbers::clear);
        self.ints.iter_mut().for_each(Vec::clear);
        self.small.iter_mut().for_each(Numbers::clear);
    }

    /// Appends a row.
    pub fn push_change(&mut self, r: &ArchivedChange) {
        self.rows += 1;
        self.longs[0].push(r.id);
        self.longs[1].push(r.txid);
        self.longs[2].push(r.changed_at);
        for (column, value) in self.names.iter_mut().zip([&r.table_schema, &r.table_name, &r.op]) {
            column.push(Some(value.as_bytes()));
        }
        self.fields.push(
            r.changed_fields
                .as_ref()
                .map(|list| list.iter().map(String::as_bytes)),
        );
        for (column, value) in self.texts.iter_mut().zip([
            &r.pk,
            &r.old_values,
            &r.new_values,
            &r.actor_id,
            &r.actor_name,
            &r.actor_type,
            &r.reason,
            &r.context,
            &r.db_user,
            &r.application_name,
            &r.client_addr,
            &r.old_pk,
            &r.changed_fields_recorded,
            &r.db_role,
        ]) {
            column.push(value.as_deref().map(str::as_bytes));
        }
        self.times[0].push(r.tx_started_at);
        self.times[1].push(r.tx_recorded_at);
        self.ints[0].push(i32::from(r.ctx));
        self.ints[1].push(r.table_id);
        self.small[0].push(r.client_port);
        self.small[1].push(r.backend_pid);
    }

    /// Feeds the columns into `check`, each as its place in
    /// [`crate::parquet_file::SCHEMA`] (what
    /// [`crate::parquet_file::ArchiveReader::check_group`] feeds it from
    /// the file).
    pub fn check_into(&self, check: &mut ColumnCheck) {
        for (i, v) in self.longs.iter().enumerate() {
            check_required(v, i, check);
        }
        for (i, v) in self.names.iter().enumerate() {
            v.check_into(3 + i, check);
        }
        // pk, old_values, new_values; changed_fields; actor_id ..
        // client_addr; old_pk, changed_fields_recorded; db_role.
        let texts = [6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17, 21, 22, 24];
        for (v, i) in self.texts.iter().zip(texts) {
            v.check_into(i, check);
        }
        self.fields.check_into(9, check);
        self.times[0].check_into(18, check);
        check_required(&self.ints[0], 19, check);
        check_required(&self.ints[1], 20, check);
        self.times[1].check_into(23, check);
        self.small[0].check_into(25, check);
        self.small[1].check_into(26, check);
    }

    /// The rows as a record batch of [`arrow_schema`]; empties the columns.
    pub fn take_batch(&mut self) -> Result<RecordBatch, ArrowError> {
        fn longs(v: &mut Vec<i64>) -> ArrayRef {
            Arc::new(Int64Array::new(std::mem::take(v).into(), None))
        }
        fn ints(v: &mut Vec<i32>) -> ArrayRef {
            Arc::new(Int32Array::new(std::mem::take(v).into(), None))
        }
        fn time(v: &mut Numbers<i64>) -> ArrayRef {
            Arc::new(Int64Array::new(
                std::mem::take(&mut v.values).into(),
                v.valid.take(),
            ))
        }
        fn small(v: &mut Numbers<i32>) -> ArrayRef {
            Arc::new(Int32Array::new(
                std::mem::take(&mut v.values).into(),
                v.valid.take(),
            ))
        }
        let mut text = |i: usize| -> Result<ArrayRef, ArrowError> { Ok(Arc::new(self.texts[i].take()?)) };
        let columns: Vec<ArrayRef> = vec![
            longs(&mut self.longs[0]),
            longs(&mut self.longs[1]),
            longs(&mut self.longs[2]),
            Arc::new(self.names[0].take()?),
            Arc::new(self.names[1].take()?),
            Arc::new(self.names[2].take()?),
            text(0)?,
            text(1)?,
            text(2)?,
            Arc::new(self.fields.take()?),
            text(3)?,
            text(4)?,
            text(5)?,
            text(6)?,
            text(7)?,
            text(8)?,
            text(9)?,
            text(10)?,
            time(&mut self.times[0]),
            ints(&mut self.ints[0]),
            ints(&mut self.ints[1]),
            text(11)?,
            text(12)?,
            time(&mut self.times[1]),
            text(13)?,
            small(&mut self.small[0]),
            small(&mut self.small[1]),
        ];
        self.rows = 0;
        RecordBatch::try_new(arrow_schema(), columns)
    }
}

/// The item of the `changed_fields` list.
fn item_field() -> Field {
    Field::new("element", DataType::LargeBinary, true)
}

/// The Arrow schema of [`Columns::take_batch`]: the leaves of
/// [`crate::parquet_file::SCHEMA`] in order, text as bytes (the Parquet
/// schema, given to the writer as it is, says they are strings), times
/// and `ctx` as the integers the file stores.
pub fn arrow_schema() -> SchemaRef {
    let long = |name: &str, nullable: bool| Field::new(name, DataType::Int64, nullable);
    let int = |name: &str, nullable: bool| Field::new(name, DataType::Int32, nullable);
    let text = |name: &str, nullable: bool| Field::new(name, DataType::LargeBinary, nullable);
    Arc::new(Schema::new(vec![
        long("id", false),
        long("txid", false),
        long("changed_at", false),
        text("table_schema", false),
        text("table_name", false),
        text("op", false),
        text("pk", true),
        text("old_values", true),
        text("new_values", true),
        Field::new("changed_fields", DataType::List(Arc::new(item_field())), true),
        text("actor_id", true),
        text("actor_name", true),
        text("actor_type", true),
        text("reason", true),
        text("context", true),
        text("db_user", true),
        text("application_name", true),
        text("client_addr", true),
        long("tx_started_at", true),
        int("ctx", false),
        int("table_id", false),
        text("old_pk", true),
        text("changed_fields_recorded", true),
        long("tx_recorded_at", true),
        text("db_role", true),
        int("client_port", true),
        int("backend_pid", true),
    ]))
}
