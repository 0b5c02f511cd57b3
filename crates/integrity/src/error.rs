//! The one error type of this crate, [`Error`], with a message for every way
//! its functions can fail.

use std::path::PathBuf;

/// Everything that can go wrong in `pgtrail-integrity`.
///
/// Messages are written for the person running pgtrail: they say what was
/// wrong and, where it helps, what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// [`Tree::from_frontier`](crate::merkle::Tree::from_frontier) was given
    /// the wrong number of hashes for the tree size.
    #[error(
        "a Merkle tree of {size} leaves has a frontier of {expected} hashes (one per set bit of the size), \
         but {actual} were given"
    )]
    FrontierLength {
        /// The tree size given.
        size: u64,
        /// The number of hashes a frontier of that size has.
        expected: u32,
        /// The number of hashes given.
        actual: usize,
    },

    /// A leaf was appended to a tree that already holds `u64::MAX` leaves.
    #[error("the Merkle tree is full: it already holds {size} leaves")]
    TreeFull {
        /// The size of the full tree.
        size: u64,
    },

    /// An inclusion proof was asked for a leaf the tree does not have.
    #[error("leaf index {index} is out of range for a tree of {size} leaves")]
    IndexOutOfRange {
        /// The leaf index asked for.
        index: u64,
        /// The number of leaves in the tree.
        size: u64,
    },

    /// A consistency proof was asked from a tree larger than the current one.
    #[error("cannot prove that a tree of {old_size} leaves is a prefix of a smaller tree of {size} leaves")]
    OldSizeTooLarge {
        /// The older tree size asked for.
        old_size: u64,
        /// The number of leaves in the tree.
        size: u64,
    },

    /// The operating system's random number generator failed.
    #[error("cannot get random bytes from the operating system: {0}")]
    Random(#[source] getrandom::Error),

    /// A name or value is too long for its 32-bit length prefix.
    #[error("{what} is {len} bytes long; at most {max} bytes can be encoded")]
    TooLong {
        /// What was too long.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The longest length allowed.
        max: u64,
    },

    /// A leaf has more header values or erasable fields than its 32-bit
    /// count can hold.
    #[error("a leaf cannot hold more than {max} {what}")]
    TooMany {
        /// What there were too many of.
        what: &'static str,
        /// The largest count allowed.
        max: u32,
    },

    /// Erasable fields were not given in strictly increasing order of name.
    #[error(
        "erasable field `{name}` was given after `{previous}`: fields must be given sorted by name \
         (byte order), each name once"
    )]
    FieldOrder {
        /// The name of the field given before.
        previous: String,
        /// The name of the field given now.
        name: String,
    },

    /// A header value was given after an erasable field.
    #[error("a header value was given after an erasable field: give all header values first")]
    HeaderAfterField,

    /// A key name is empty or contains a character a signed note cannot carry.
    #[error(
        "invalid key name {name:?}: a key name must be non-empty and contain no whitespace, \
         control character or '+'"
    )]
    InvalidKeyName {
        /// The name given.
        name: String,
    },

    /// Text that should be a key in the C2SP signed-note format is not.
    #[error("malformed {kind} key: {reason}")]
    MalformedKey {
        /// `"signer"` (private) or `"verifier"` (public).
        kind: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// A key file exists where a new key was to be written.
    #[error("{} already exists; refusing to overwrite an existing key file", path.display())]
    KeyExists {
        /// The existing file.
        path: PathBuf,
    },

    /// A key file holds the other kind of key than the one asked for.
    #[error("{} holds a {found} key, but a {wanted} key is needed{hint}", path.display())]
    WrongKeyKind {
        /// The file read.
        path: PathBuf,
        /// The kind of key it holds (`"private signer"` or `"public verifier"`).
        found: &'static str,
        /// The kind of key needed.
        wanted: &'static str,
        /// A hint on which file to give instead (may be empty).
        hint: String,
    },

    /// A key file could not be parsed.
    #[error("key file {}: {problem}", path.display())]
    KeyFile {
        /// The file read.
        path: PathBuf,
        /// What is wrong with its contents (in the message, so not a
        /// `source` too: it would be printed twice).
        problem: Box<Error>,
    },

    /// Reading or writing a file failed.
    #[error("cannot {action} {}: {cause}", path.display())]
    Io {
        /// What was being done (`"read"`, `"create"`, `"write"`).
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying I/O error (in the message, so not a `source`).
        cause: std::io::Error,
    },

    /// Text that should be a C2SP signed note is not.
    #[error("malformed signed note: {reason}")]
    MalformedNote {
        /// What is wrong with it.
        reason: String,
    },

    /// A note body that should be a C2SP tlog checkpoint is not, or a
    /// checkpoint cannot be written as one.
    #[error("malformed checkpoint: {reason}")]
    MalformedCheckpoint {
        /// What is wrong with it.
        reason: String,
    },

    /// A note carries no signature by the key it was opened with.
    #[error("the note has no signature by key `{name}` (key id {key_id:08x}); it is signed by: {found}")]
    NoSignatureForKey {
        /// The name of the key looked for.
        name: String,
        /// The id of the key looked for.
        key_id: u32,
        /// The signers the note does name, as `name (key id)` joined by commas.
        found: String,
    },

    /// A note's signature by the given key does not verify.
    #[error(
        "the signature by key `{name}` (key id {key_id:08x}) does not verify: the note was altered \
         after signing, or signed with a different key"
    )]
    BadSignature {
        /// The name of the key.
        name: String,
        /// The id of the key.
        key_id: u32,
    },
}
