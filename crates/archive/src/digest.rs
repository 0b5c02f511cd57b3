//! The digests of an archive's rows. Every row is serialised the one way
//! [`ArchivedChange::digest_into`] says, as the database gave it and as the
//! file read back gives it; what is taken of those bytes:
//!
//! - the SHA-256 of the manifest (`rows_sha256`), once, from the rows as
//!   the database gave them;
//! - a check, a 128-bit XXH3 keyed by a random seed, on both sides: equal
//!   checks say the file holds the bytes the database gave (a bug, a torn
//!   write or a file replaced in between would have to match a key it
//!   never sees). It costs a small part of a second SHA-256 pass.
//!
//! An erasure's rewrite still compares SHA-256 on both sides (it is rare
//! and small).
//!
//! [`ArchivedChange::digest_into`]: crate::row::ArchivedChange::digest_into

use std::hash::{BuildHasher, Hasher};

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

/// The check of the rows: XXH3-128 keyed by a seed.
pub struct RowCheck(XxHash3_128);

impl RowCheck {
    pub fn new(seed: u64) -> RowCheck {
        RowCheck(XxHash3_128::with_seed(seed))
    }

    pub fn value(&self) -> u128 {
        self.0.finish_128()
    }
}

impl RowDigest for RowCheck {
    fn put(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }
}

/// The digests of the rows as the database gave them: the manifest's
/// SHA-256 and the check.
pub struct Both {
    pub sha256: Sha256,
    pub check: RowCheck,
}

impl Both {
    pub fn new(seed: u64) -> Both {
        Both {
            sha256: Sha256::new(),
            check: RowCheck::new(seed),
        }
    }
}

impl RowDigest for Both {
    fn put(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        self.check.0.write(bytes);
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

    /// Equal bytes give equal checks however they are cut; other bytes or
    /// another seed do not.
    #[test]
    fn the_check_sees_the_bytes_not_how_they_were_fed() {
        let seed = seed();
        let mut whole = RowCheck::new(seed);
        whole.put(b"\x00\x00\x00\x03abc\xff\xff\xff\xff");
        let mut pieces = Both::new(seed);
        for piece in [&b"\x00\x00"[..], b"\x00\x03a", b"bc", b"\xff\xff\xff\xff"] {
            pieces.put(piece);
        }
        assert_eq!(whole.value(), pieces.check.value());
        let mut other = RowCheck::new(seed);
        other.put(b"\x00\x00\x00\x03abd\xff\xff\xff\xff");
        assert_ne!(whole.value(), other.value());
        let mut reseeded = RowCheck::new(seed ^ 1);
        reseeded.put(b"\x00\x00\x00\x03abc\xff\xff\xff\xff");
        assert_ne!(whole.value(), reseeded.value());
        assert_ne!(seed, super::seed());
    }
}
