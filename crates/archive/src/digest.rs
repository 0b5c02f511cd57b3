//! The digests of an archive's rows:
//!
//! - the SHA-256 of the manifest (`rows_sha256`), once, from the rows as
//!   the database gave them, each serialised the one way
//!   [`ArchivedChange::digest_into`] says (an erasure's rewrite compares
//!   it on both sides);
//! - a check, [`ColumnCheck`], on both sides: each column of the row
//!   groups as they go to the Parquet writer, and of the file read back,
//!   hashed in bulk (XXH3-128 keyed by a random seed). Equal checks say
//!   the file holds the values the writer was given, in the same rows (a
//!   bug, a torn write or a file replaced in between would have to match
//!   a key it never sees). It costs a small part of a second SHA-256 pass
//!   and puts no row together.
//!
//! [`ArchivedChange::digest_into`]: crate::row::ArchivedChange::digest_into

use std::hash::{BuildHasher, Hasher};

use arrow_buffer::{ArrowNativeType, ToByteSlice};
use sha2::{Digest, Sha256};
use twox_hash::XxHash3_128;

/// What a row's bytes are fed into.
pub trait RowDigest {
    fn put(&mut self, bytes: &[u8]);
}

impl RowDigest for Sha256 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

/// What of a column a stream of [`ColumnCheck`] holds.
#[derive(Clone, Copy)]
pub enum Stream {
    /// A byte a row: 1 for a value, 0 for NULL.
    Valid = 0,
    /// A list's items a row (u32, little-endian), rows with a list only.
    Counts = 1,
    /// Each value's length in bytes (u32, little-endian), NULLs left out.
    Lengths = 2,
    /// The values: text one after another, integers in their width and
    /// the machine's byte order; NULLs left out.
    Values = 3,
}

const STREAMS: usize = 4;

/// The check of an archive's rows taken column by column: each column's
/// [`Stream`]s fed, a row group or a batch of rows at a time, into an
/// XXH3-128 of their own keyed by the seed. Equal checks say every column
/// holds the same values, NULLs and lists in the same rows, however the
/// rows were cut into groups and batches; the values are hashed in bulk
/// (a buffer a column), not row by row.
pub struct ColumnCheck {
    seed: u64,
    streams: Vec<XxHash3_128>,
    scratch: Vec<u8>,
    /// A 1 a row, for columns whose rows all hold a value.
    ones: Vec<u8>,
}

impl ColumnCheck {
    /// A check of `columns` columns.
    pub fn new(seed: u64, columns: usize) -> ColumnCheck {
        ColumnCheck {
            seed,
            streams: (0..columns * STREAMS)
                .map(|_| XxHash3_128::with_seed(seed))
                .collect(),
            scratch: Vec::new(),
            ones: Vec::new(),
        }
    }

    /// Feeds `bytes` into `stream` of `column`.
    fn write(&mut self, column: usize, stream: Stream, bytes: &[u8]) {
        self.streams[column * STREAMS + stream as usize].write(bytes);
    }

    /// Feeds what was put in the scratch buffer into `stream` of `column`.
    fn write_scratch(&mut self, column: usize, stream: Stream) {
        self.streams[column * STREAMS + stream as usize].write(&self.scratch);
    }

    /// Which rows of `column` hold a value.
    pub fn valid(&mut self, column: usize, rows: impl Iterator<Item = bool>) {
        self.scratch.clear();
        self.scratch.extend(rows.map(u8::from));
        self.write_scratch(column, Stream::Valid);
    }

    /// Lengths or counts of `column` (a u32 each).
    pub fn sizes(&mut self, column: usize, stream: Stream, sizes: impl Iterator<Item = usize>) {
        self.scratch.clear();
        for size in sizes {
            self.scratch.extend_from_slice(&(size as u32).to_le_bytes());
        }
        self.write_scratch(column, stream);
    }

    /// The lengths or counts of `column`'s rows that hold a value (`valid`,
    /// row by row beside `sizes`).
    pub fn sizes_where(
        &mut self,
        column: usize,
        stream: Stream,
        sizes: impl Iterator<Item = usize>,
        valid: impl Iterator<Item = bool>,
    ) {
        self.sizes(
            column,
            stream,
            sizes.zip(valid).filter(|(_, v)| *v).map(|(n, _)| n),
        );
    }

    /// `rows` rows of `column`, every one holding a value.
    pub fn all_valid(&mut self, column: usize, rows: usize) {
        if self.ones.len() < rows {
            self.ones.resize(rows, 1);
        }
        self.streams[column * STREAMS + Stream::Valid as usize].write(&self.ones[..rows]);
    }

    /// Integer values of `column` (NULLs left out), hashed as they lie in
    /// memory: both sides of a check are taken in one process, and a
    /// column is read back as the integers it was written from (`i64` or
    /// `i32`).
    pub fn numbers<T: ArrowNativeType>(&mut self, column: usize, values: &[T]) {
        self.write(column, Stream::Values, values.to_byte_slice());
    }

    /// Text values of `column`, one after another (NULLs left out).
    pub fn bytes(&mut self, column: usize, bytes: &[u8]) {
        self.write(column, Stream::Values, bytes);
    }

    /// The check: an XXH3-128 keyed by the seed of every stream's.
    pub fn value(&self) -> u128 {
        let mut all = XxHash3_128::with_seed(self.seed);
        for stream in &self.streams {
            all.write(&stream.finish_128().to_le_bytes());
        }
        all.finish_128()
    }
}

/// A seed for one archive's check, random (the standard library's
/// randomly keyed hasher, which the operating system seeds).
pub fn seed() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0x7067_7472_6169_6c00);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Equal columns give equal checks however they are cut; other values,
    /// the same bytes in other values, or another seed do not.
    #[test]
    fn the_check_sees_the_columns_not_how_they_were_cut() {
        let seed = seed();
        let check = |seed: u64, cuts: &[(&[bool], &[usize], &[u8])]| {
            let mut check = ColumnCheck::new(seed, 2);
            for (valid, lengths, bytes) in cuts {
                check.valid(1, valid.iter().copied());
                check.sizes(1, Stream::Lengths, lengths.iter().copied());
                check.bytes(1, bytes);
                check.numbers(0, &lengths.iter().map(|n| *n as i64).collect::<Vec<_>>());
                check.all_valid(0, lengths.len());
            }
            check.value()
        };
        let whole = check(seed, &[(&[true, false, true], &[3, 2], b"abcde")]);
        let pieces = check(seed, &[(&[true], &[3], b"abc"), (&[false, true], &[2], b"de")]);
        assert_eq!(whole, pieces);
        assert_ne!(whole, check(seed, &[(&[true, false, true], &[3, 2], b"abcdf")]));
        assert_ne!(whole, check(seed, &[(&[true, false, true], &[2, 3], b"abcde")]));
        assert_ne!(whole, check(seed, &[(&[true, true, false], &[3, 2], b"abcde")]));
        assert_ne!(
            whole,
            check(seed ^ 1, &[(&[true, false, true], &[3, 2], b"abcde")])
        );
        assert_ne!(seed, super::seed());
    }
}
