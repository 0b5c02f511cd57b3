//! Tamper evidence for the pgtrail audit log: pure computation, no
//! database access.
//!
//! How the pieces fit:
//!
//! * **Leaf** — one audited change. [`commit`] turns it into canonical
//!   bytes: header values that stay forever, and erasable values that the
//!   leaf holds only as salted commitments, so a value can be erased later
//!   (keeping its commitment) without changing the leaf. The leaf hash is
//!   the RFC 6962 leaf hash of those bytes.
//! * **Log** — the leaves in seal order form an append-only RFC 6962
//!   Merkle tree ([`merkle`]). The sealer appends to a [`merkle::Tree`],
//!   which keeps only its frontier (at most 64 hashes) and can be stored
//!   and resumed. Inclusion proofs show a change is in the log; consistency
//!   proofs show a later log extends an earlier one without rewriting it.
//! * **Checkpoint** — a signed tree head ([`checkpoint`]): origin, size and
//!   root in the C2SP tlog-checkpoint format, in a C2SP signed note
//!   ([`note`]) signed with an Ed25519 key ([`keys`]). A checkpoint kept
//!   outside the database pins the log: any later change to a sealed leaf,
//!   or any removal or reordering, no longer matches it.
//!
//! Every byte format is documented in its module so that an auditor can
//! check a log with an independent implementation.

pub mod checkpoint;
pub mod commit;
mod error;
pub mod keys;
pub mod merkle;
pub mod note;

pub use checkpoint::{Checkpoint, open};
pub use commit::{LeafBuilder, LeafWriter, Salt, Seed, field_commitment, field_salt, random_seed};
pub use error::Error;
pub use keys::{SignerKey, VerifierKey, read_signer, read_verifier, write_key_pair};
pub use merkle::{Hash, Tree, leaf_hash, node_hash, root_of};
pub use note::{NoteSignature, SignedNote};
