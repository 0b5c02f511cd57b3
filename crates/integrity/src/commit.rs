//! The canonical content of one audited change: the bytes of its Merkle
//! leaf, and the salted commitments that let single values be erased
//! later without changing the leaf.
//!
//! A change has *header* values that stay forever (change id, table,
//! operation, transaction, time, ...) and *erasable* fields (column
//! values, actor details, ...) that a data-protection request may later
//! remove. The leaf commits to an erasable field only through its salted
//! hash, its *commitment*. Store the commitment beside the value; when the
//! value is erased, the commitment still rebuilds the same leaf, and the
//! salt makes it infeasible to guess the erased value from it.
//!
//! # Byte formats
//!
//! All integers are big-endian; strings are UTF-8; `||` is concatenation.
//!
//! Per-change seed and per-field salt ([`random_seed`], [`field_salt`]):
//!
//! ```text
//! seed = 16 random bytes, one per change
//! salt = first 16 bytes of SHA-256("pgtrail salt v1" || 0x00 || seed || name)
//! ```
//!
//! Field commitment ([`field_commitment`]):
//!
//! ```text
//! SHA-256("pgtrail field v1" || 0x00 || salt (16 bytes)
//!         || u32(len(name)) || name
//!         || 0x00                      -- the value is SQL NULL
//!          | 0x01 || value bytes)      -- the value is present (may be empty)
//! ```
//!
//! Leaf data ([`LeafBuilder`]), hashed into the tree as
//! `leaf_hash(data) = SHA-256(0x00 || data)`:
//!
//! ```text
//! "pgtrail leaf v1" || 0x00            16 bytes: format and version
//! i64(change_id)                        8 bytes, two's complement
//! u32(H)                                number of header values
//! H times, in the caller's order:
//!     u32(len(value)) || value          value present (len < 0xFFFFFFFF)
//!   | 0xFFFFFFFF                        SQL NULL, no bytes follow
//! u32(F)                                number of erasable fields
//! F times, sorted by name (byte order, each name once):
//!     u32(len(name)) || name || commitment (32 bytes)
//! ```
//!
//! Every part is either of fixed length or length-prefixed, and both lists
//! are counted, so different inputs never give the same bytes.

use std::ops::Range;

use sha2::{Digest, Sha256};

use crate::Error;
use crate::merkle::{Hash, leaf_hash};

/// Sixteen random bytes chosen once per change, from which every field's
/// salt is derived.
pub type Seed = [u8; 16];

/// Sixteen bytes that make a field's commitment unguessable.
pub type Salt = [u8; 16];

/// Version prefix of [`field_salt`]'s input.
const SALT_PREFIX: &[u8] = b"pgtrail salt v1\0";
/// Version prefix of [`field_commitment`]'s input.
const FIELD_PREFIX: &[u8] = b"pgtrail field v1\0";
/// Version prefix of the leaf data.
const LEAF_PREFIX: &[u8] = b"pgtrail leaf v1\0";
/// Length written for a NULL header value.
const NULL_LENGTH: u32 = u32::MAX;

/// A fresh random seed from the operating system.
pub fn random_seed() -> Result<Seed, Error> {
    let mut seed = Seed::default();
    getrandom::fill(&mut seed).map_err(Error::Random)?;
    Ok(seed)
}

/// The salt of field `name` of the change with this `seed`:
/// the first 16 bytes of `SHA-256("pgtrail salt v1" || 0x00 || seed || name)`.
///
/// Storing the seed instead of one salt per field is enough to recompute
/// every salt; once the seed is gone, so are the salts of erased fields.
pub fn field_salt(seed: &Seed, name: &str) -> Salt {
    let digest = Sha256::new()
        .chain_update(SALT_PREFIX)
        .chain_update(seed)
        .chain_update(name.as_bytes())
        .finalize();
    let mut salt = Salt::default();
    salt.copy_from_slice(&digest[..16]);
    salt
}

/// The commitment to one erasable field: see the module documentation for
/// the exact bytes. `None` stands for SQL NULL, which differs from an
/// empty value.
///
/// Fails only when `name` is 4 GiB or longer.
pub fn field_commitment(salt: &Salt, name: &str, value: Option<&[u8]>) -> Result<Hash, Error> {
    let name_len = length_prefix("a field name", name.len(), u32::MAX)?;
    let hasher = Sha256::new()
        .chain_update(FIELD_PREFIX)
        .chain_update(salt)
        .chain_update(name_len)
        .chain_update(name.as_bytes());
    let hasher = match value {
        None => hasher.chain_update([0x00]),
        Some(bytes) => hasher.chain_update([0x01]).chain_update(bytes),
    };
    Ok(hasher.finalize().into())
}

/// Encodes `len` as a big-endian `u32`, failing when it is above `max`.
fn length_prefix(what: &'static str, len: usize, max: u32) -> Result<[u8; 4], Error> {
    match u32::try_from(len) {
        Ok(len) if len <= max => Ok(len.to_be_bytes()),
        _ => Err(Error::TooLong {
            what,
            len,
            max: u64::from(max),
        }),
    }
}

/// Builds leaf data into one reusable buffer, so that sealing or checking
/// a stream of changes does not allocate per change.
///
/// ```
/// use pgtrail_integrity::commit::{LeafBuilder, field_commitment, field_salt};
///
/// # fn main() -> Result<(), pgtrail_integrity::Error> {
/// let seed = [7u8; 16];
/// let mut builder = LeafBuilder::new();
/// let mut leaf = builder.begin(42);
/// leaf.header(Some(b"public.students"))?;
/// leaf.header(Some(b"UPDATE"))?;
/// leaf.header(None)?;
/// let name = field_commitment(&field_salt(&seed, "new.name"), "new.name", Some(b"Ada"))?;
/// let note = field_commitment(&field_salt(&seed, "new.note"), "new.note", None)?;
/// leaf.field("new.name", &name)?;
/// leaf.field("new.note", &note)?;
/// let hash = leaf.finish();
/// # let _ = hash;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default)]
pub struct LeafBuilder {
    buf: Vec<u8>,
}

impl LeafBuilder {
    /// A builder with an empty buffer; it grows to the largest leaf built.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the leaf of change `change_id`, discarding any unfinished one.
    pub fn begin(&mut self, change_id: i64) -> LeafWriter<'_> {
        self.buf.clear();
        self.buf.extend_from_slice(LEAF_PREFIX);
        self.buf.extend_from_slice(&change_id.to_be_bytes());
        let header_count_at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        LeafWriter {
            buf: &mut self.buf,
            header_count_at,
            headers: 0,
            field_count_at: None,
            fields: 0,
            last_name: None,
        }
    }

    /// The data of the leaf last finished (or being built): the bytes
    /// whose [`leaf_hash`] is the leaf hash. For debugging and for checking
    /// other implementations of the format.
    pub fn data(&self) -> &[u8] {
        &self.buf
    }
}

/// One leaf being written, from [`LeafBuilder::begin`] to
/// [`finish`](LeafWriter::finish): first all header values, then the
/// erasable fields sorted by name.
#[derive(Debug)]
pub struct LeafWriter<'a> {
    buf: &'a mut Vec<u8>,
    /// Where the header count goes.
    header_count_at: usize,
    headers: u32,
    /// Where the field count goes, once the first field (or `finish`)
    /// has closed the header list.
    field_count_at: Option<usize>,
    fields: u32,
    /// Where in `buf` the previous field's name is, to check the order.
    last_name: Option<Range<usize>>,
}

impl LeafWriter<'_> {
    /// Appends one header value; `None` is SQL NULL.
    ///
    /// Fails when a field was already given, when the value is 4 GiB - 1
    /// or longer, or after `u32::MAX` header values.
    pub fn header(&mut self, value: Option<&[u8]>) -> Result<(), Error> {
        if self.field_count_at.is_some() {
            return Err(Error::HeaderAfterField);
        }
        let headers = self.headers.checked_add(1).ok_or(Error::TooMany {
            what: "header values",
            max: u32::MAX,
        })?;
        match value {
            None => self.buf.extend_from_slice(&NULL_LENGTH.to_be_bytes()),
            Some(bytes) => {
                let len = length_prefix("a header value", bytes.len(), NULL_LENGTH - 1)?;
                self.buf.extend_from_slice(&len);
                self.buf.extend_from_slice(bytes);
            }
        }
        self.headers = headers;
        Ok(())
    }

    /// Appends one erasable field by its [`field_commitment`], which may
    /// be computed from the value or read back from storage after the
    /// value was erased: both give the same leaf.
    ///
    /// Fails unless `name` sorts strictly after the previous field's name
    /// (byte order), when `name` is 4 GiB or longer, or after `u32::MAX`
    /// fields.
    pub fn field(&mut self, name: &str, commitment: &Hash) -> Result<(), Error> {
        if let Some(previous) = &self.last_name {
            let previous = &self.buf[previous.clone()];
            if name.as_bytes() <= previous {
                return Err(Error::FieldOrder {
                    previous: String::from_utf8_lossy(previous).into_owned(),
                    name: name.to_owned(),
                });
            }
        }
        let name_len = length_prefix("a field name", name.len(), u32::MAX)?;
        let fields = self.fields.checked_add(1).ok_or(Error::TooMany {
            what: "erasable fields",
            max: u32::MAX,
        })?;
        self.close_headers();
        self.buf.extend_from_slice(&name_len);
        let start = self.buf.len();
        self.buf.extend_from_slice(name.as_bytes());
        self.last_name = Some(start..self.buf.len());
        self.buf.extend_from_slice(commitment);
        self.fields = fields;
        Ok(())
    }

    /// Completes the leaf and returns its leaf hash.
    #[must_use]
    pub fn finish(mut self) -> Hash {
        self.close_headers();
        let header_count = self.headers.to_be_bytes();
        self.buf[self.header_count_at..self.header_count_at + 4].copy_from_slice(&header_count);
        if let Some(at) = self.field_count_at {
            let field_count = self.fields.to_be_bytes();
            self.buf[at..at + 4].copy_from_slice(&field_count);
        }
        leaf_hash(self.buf)
    }

    /// Ends the header list by reserving the field count, once.
    fn close_headers(&mut self) {
        if self.field_count_at.is_none() {
            self.field_count_at = Some(self.buf.len());
            self.buf.extend_from_slice(&[0; 4]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One change in a plain form, hashed the way a sealer would.
    #[derive(Clone)]
    struct Change {
        id: i64,
        seed: Seed,
        headers: Vec<Option<Vec<u8>>>,
        fields: Vec<(String, Option<Vec<u8>>)>,
    }

    impl Change {
        fn sample() -> Change {
            Change {
                id: 1001,
                seed: [9; 16],
                headers: vec![Some(b"public.students".to_vec()), Some(b"U".to_vec()), None],
                fields: vec![
                    ("new.email".into(), Some(b"ada@example.org".to_vec())),
                    ("new.name".into(), Some(b"Ada".to_vec())),
                    ("old.name".into(), None),
                ],
            }
        }

        fn commitments(&self) -> Vec<Hash> {
            self.fields
                .iter()
                .map(|(name, value)| {
                    field_commitment(&field_salt(&self.seed, name), name, value.as_deref()).unwrap()
                })
                .collect()
        }

        fn leaf(&self, builder: &mut LeafBuilder) -> Hash {
            let commitments = self.commitments();
            let mut leaf = builder.begin(self.id);
            for value in &self.headers {
                leaf.header(value.as_deref()).unwrap();
            }
            for ((name, _), commitment) in self.fields.iter().zip(&commitments) {
                leaf.field(name, commitment).unwrap();
            }
            leaf.finish()
        }
    }

    #[test]
    fn leaf_bytes_follow_the_documented_layout() {
        let mut builder = LeafBuilder::new();
        let commitment = [0xAB; 32];
        let mut leaf = builder.begin(-2);
        leaf.header(Some(b"ab")).unwrap();
        leaf.header(None).unwrap();
        leaf.header(Some(b"")).unwrap();
        leaf.field("x", &commitment).unwrap();
        let hash = leaf.finish();

        let mut want = b"pgtrail leaf v1\0".to_vec();
        want.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE]);
        want.extend_from_slice(&[0, 0, 0, 3]);
        want.extend_from_slice(&[0, 0, 0, 2, b'a', b'b']);
        want.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
        want.extend_from_slice(&[0, 0, 0, 0]);
        want.extend_from_slice(&[0, 0, 0, 1]);
        want.extend_from_slice(&[0, 0, 0, 1, b'x']);
        want.extend_from_slice(&commitment);
        assert_eq!(builder.data(), want.as_slice());
        assert_eq!(hash, leaf_hash(&want));
    }

    #[test]
    fn empty_leaf_has_both_counts() {
        let mut builder = LeafBuilder::new();
        let hash = builder.begin(0).finish();
        let mut want = b"pgtrail leaf v1\0".to_vec();
        want.extend_from_slice(&[0; 8 + 4 + 4]);
        assert_eq!(builder.data(), want.as_slice());
        assert_eq!(hash, leaf_hash(&want));
    }

    #[test]
    fn commitment_and_salt_follow_the_documented_bytes() {
        let seed: Seed = *b"0123456789abcdef";
        let mut salt_input = b"pgtrail salt v1\0".to_vec();
        salt_input.extend_from_slice(&seed);
        salt_input.extend_from_slice(b"col");
        let salt = field_salt(&seed, "col");
        assert_eq!(salt.as_slice(), &Sha256::digest(&salt_input)[..16]);

        let mut input = b"pgtrail field v1\0".to_vec();
        input.extend_from_slice(&salt);
        input.extend_from_slice(&[0, 0, 0, 3]);
        input.extend_from_slice(b"col");
        let mut null = input.clone();
        null.push(0x00);
        input.push(0x01);
        input.extend_from_slice(b"value");
        let want: Hash = Sha256::digest(&input).into();
        assert_eq!(field_commitment(&salt, "col", Some(b"value")).unwrap(), want);
        let want_null: Hash = Sha256::digest(&null).into();
        assert_eq!(field_commitment(&salt, "col", None).unwrap(), want_null);
    }

    #[test]
    fn builder_reuse_gives_the_same_leaf() {
        let mut builder = LeafBuilder::new();
        let first = Change::sample().leaf(&mut builder);
        // An unfinished leaf in between is discarded by `begin`.
        builder.begin(5).header(Some(b"junk")).unwrap();
        let mut other = Change::sample();
        other.headers.push(Some(vec![0; 1000]));
        other.leaf(&mut builder);
        assert_eq!(Change::sample().leaf(&mut builder), first);
        assert_eq!(Change::sample().leaf(&mut LeafBuilder::new()), first);
    }

    #[test]
    fn every_change_of_content_changes_the_leaf() {
        let mut builder = LeafBuilder::new();
        let base = Change::sample();
        let original = base.leaf(&mut builder);
        let mut variants: Vec<(&str, Change)> = Vec::new();

        let mut c = base.clone();
        c.id = 1002;
        variants.push(("change id", c));
        let mut c = base.clone();
        c.seed[0] ^= 1;
        variants.push(("seed", c));
        for i in 0..base.headers.len() {
            let mut c = base.clone();
            c.headers[i] = match &c.headers[i] {
                Some(v) if v.is_empty() => None,
                Some(v) => Some(v[1..].to_vec()),
                None => Some(Vec::new()),
            };
            variants.push(("header value", c));
        }
        let mut c = base.clone();
        c.headers[2] = Some(Vec::new());
        variants.push(("header NULL vs empty", c));
        let mut c = base.clone();
        c.headers.swap(0, 1);
        variants.push(("header order", c));
        let mut c = base.clone();
        c.headers.pop();
        variants.push(("header count", c));
        for i in 0..base.fields.len() {
            let mut c = base.clone();
            c.fields[i].1 = match &c.fields[i].1 {
                Some(v) => Some([v.as_slice(), b"!"].concat()),
                None => Some(b"x".to_vec()),
            };
            variants.push(("field value", c));
        }
        let mut c = base.clone();
        c.fields[2].1 = Some(Vec::new());
        variants.push(("field NULL vs empty", c));
        let mut c = base.clone();
        c.fields[1].0 = "new.namf".into();
        variants.push(("field name", c));
        let mut c = base.clone();
        c.fields.pop();
        variants.push(("field count", c));
        // A header value moved into the field list.
        let mut c = base.clone();
        c.headers.pop();
        c.fields.insert(0, ("a".into(), None));
        variants.push(("header moved to a field", c));

        for (what, change) in variants {
            assert_ne!(
                change.leaf(&mut builder),
                original,
                "changing the {what} kept the leaf"
            );
        }
    }

    #[test]
    fn same_value_different_salt_or_name_gives_different_commitment() {
        let value = Some(&b"secret"[..]);
        let a = field_commitment(&[1; 16], "name", value).unwrap();
        assert_ne!(a, field_commitment(&[2; 16], "name", value).unwrap());
        assert_ne!(a, field_commitment(&[1; 16], "nam", value).unwrap());
        assert_ne!(
            field_commitment(&[1; 16], "name", Some(b"")).unwrap(),
            field_commitment(&[1; 16], "name", None).unwrap()
        );
        assert_ne!(field_salt(&[1; 16], "a"), field_salt(&[1; 16], "b"));
        assert_ne!(field_salt(&[1; 16], "a"), field_salt(&[2; 16], "a"));
    }

    #[test]
    fn erased_value_rebuilds_the_same_leaf_from_its_commitment() {
        let mut builder = LeafBuilder::new();
        let change = Change::sample();
        let original = change.leaf(&mut builder);
        let stored = change.commitments();

        // The e-mail value (field 0) is erased: the seed is gone too, only
        // the stored commitment is left for it.
        let name = field_commitment(&field_salt(&change.seed, "new.name"), "new.name", Some(b"Ada")).unwrap();
        let old_name = field_commitment(&field_salt(&change.seed, "old.name"), "old.name", None).unwrap();
        let mut leaf = builder.begin(change.id);
        for value in &change.headers {
            leaf.header(value.as_deref()).unwrap();
        }
        leaf.field("new.email", &stored[0]).unwrap();
        leaf.field("new.name", &name).unwrap();
        leaf.field("old.name", &old_name).unwrap();
        assert_eq!(leaf.finish(), original);
    }

    #[test]
    fn fields_must_be_strictly_increasing() {
        let mut builder = LeafBuilder::new();
        let c = [0; 32];
        let mut leaf = builder.begin(1);
        leaf.field("b", &c).unwrap();
        let err = leaf.field("a", &c).unwrap_err();
        assert!(
            matches!(&err, Error::FieldOrder { previous, name } if previous == "b" && name == "a"),
            "{err}"
        );
        assert!(matches!(leaf.field("b", &c), Err(Error::FieldOrder { .. })));
        // Byte order: "B" < "a" and a prefix sorts first.
        leaf.field("ba", &c).unwrap();
        let mut leaf = builder.begin(1);
        leaf.field("B", &c).unwrap();
        leaf.field("a", &c).unwrap();
        leaf.field("ab", &c).unwrap();
        // A refused field leaves the leaf as if it had not been given.
        let mut builder = LeafBuilder::new();
        let mut leaf = builder.begin(1);
        leaf.field("x", &c).unwrap();
        assert!(leaf.field("w", &c).is_err());
        let with_refusal = leaf.finish();
        let mut leaf = builder.begin(1);
        leaf.field("x", &c).unwrap();
        assert_eq!(leaf.finish(), with_refusal);
    }

    #[test]
    fn headers_must_come_before_fields() {
        let mut builder = LeafBuilder::new();
        let mut leaf = builder.begin(1);
        leaf.header(Some(b"h")).unwrap();
        leaf.field("f", &[0; 32]).unwrap();
        assert!(matches!(leaf.header(Some(b"late")), Err(Error::HeaderAfterField)));
        assert!(matches!(leaf.header(None), Err(Error::HeaderAfterField)));
    }

    #[test]
    fn random_seeds_differ() {
        let a = random_seed().unwrap();
        let b = random_seed().unwrap();
        assert_ne!(a, b);
    }
}
