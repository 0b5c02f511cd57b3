//! Merkle tree hashing with SHA-256, as defined in RFC 6962 section 2.1
//! (and unchanged in RFC 9162 section 2.1).
//!
//! * A leaf is hashed as `SHA-256(0x00 || data)` ([`leaf_hash`]), an inner
//!   node as `SHA-256(0x01 || left || right)` ([`node_hash`]); the two
//!   prefixes keep leaves and nodes from ever being confused.
//! * The root of the empty tree is `SHA-256("")` ([`empty_root`]).
//! * The root of `n > 1` leaves splits them at `k`, the largest power of
//!   two smaller than `n`: `MTH(D[n]) = node_hash(MTH(D[0:k]), MTH(D[k:n]))`
//!   ([`root_of`]).
//!
//! [`Tree`] appends leaves one at a time keeping only its *frontier*, so a
//! log of any length is sealed in constant memory. The proof functions
//! take the whole list of leaf hashes; they are for auditing and tests,
//! where the leaves are at hand anyway.
//!
//! Note that a root does not commit to the tree size by itself: a proof
//! checked against a root is only as good as the size it is checked for.
//! Size and root are bound together by a signed
//! [checkpoint](crate::checkpoint).

use sha2::{Digest, Sha256};

use crate::Error;

/// A SHA-256 hash: a leaf hash, an inner node hash or a root.
pub type Hash = [u8; 32];

/// Hashes one leaf's data: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    Sha256::new()
        .chain_update([0x00])
        .chain_update(data)
        .finalize()
        .into()
}

/// Hashes an inner node from its children: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Sha256::new()
        .chain_update([0x01])
        .chain_update(left)
        .chain_update(right)
        .finalize()
        .into()
}

/// The root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two smaller than `n`; `n` must be at least 2.
fn split_point(n: usize) -> usize {
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The Merkle tree hash (RFC 6962 `MTH`) of a list of leaf hashes,
/// computed by the definition's recursion.
///
/// Takes O(n) time; [`Tree`] gives the same root incrementally.
pub fn root_of(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => empty_root(),
        [leaf] => *leaf,
        _ => {
            let k = split_point(leaves.len());
            node_hash(&root_of(&leaves[..k]), &root_of(&leaves[k..]))
        }
    }
}

/// An append-only Merkle tree kept as its compact frontier.
///
/// A tree of `size` leaves splits uniquely into perfect subtrees, one for
/// each set bit of `size`, largest (leftmost) first. The frontier is the
/// list of their roots: at most 64 hashes, however many leaves were
/// appended. Appending a leaf merges the equal-sized subtrees at the right
/// end, like a carry in binary addition.
///
/// Store [`size`](Tree::size) and [`frontier`](Tree::frontier) to continue
/// the tree later with [`Tree::from_frontier`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    size: u64,
    /// Roots of the perfect subtrees, largest (leftmost) first.
    frontier: Vec<Hash>,
}

impl Default for Tree {
    fn default() -> Self {
        Self::new()
    }
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Self {
        Tree {
            size: 0,
            frontier: Vec::with_capacity(64),
        }
    }

    /// Continues a tree from a stored size and frontier.
    ///
    /// Fails when `hashes` does not hold exactly one hash per set bit of
    /// `size`. The hashes themselves cannot be checked here; compare the
    /// resulting [`root`](Tree::root) with a signed checkpoint for that.
    pub fn from_frontier(size: u64, hashes: Vec<Hash>) -> Result<Tree, Error> {
        let expected = size.count_ones();
        if hashes.len() != expected as usize {
            return Err(Error::FrontierLength {
                size,
                expected,
                actual: hashes.len(),
            });
        }
        let mut frontier = hashes;
        frontier.reserve(64 - frontier.len());
        Ok(Tree { size, frontier })
    }

    /// Appends one leaf, given as its [`leaf_hash`].
    ///
    /// Fails only when the tree already holds `u64::MAX` leaves.
    pub fn push(&mut self, leaf: Hash) -> Result<(), Error> {
        let new_size = self
            .size
            .checked_add(1)
            .ok_or(Error::TreeFull { size: self.size })?;
        // Each trailing 1 bit of the old size is a perfect subtree as large
        // as the one being built: merge it in, smallest first.
        let mut hash = leaf;
        for _ in 0..self.size.trailing_ones() {
            if let Some(left) = self.frontier.pop() {
                hash = node_hash(&left, &hash);
            }
        }
        self.frontier.push(hash);
        self.size = new_size;
        Ok(())
    }

    /// The number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The RFC 6962 root of all leaves appended so far.
    ///
    /// Folding the frontier from the smallest subtree leftwards gives the
    /// same shape as RFC 6962's split at the largest power of two.
    pub fn root(&self) -> Hash {
        let mut subtrees = self.frontier.iter().rev();
        match subtrees.next() {
            None => empty_root(),
            Some(smallest) => subtrees.fold(*smallest, |right, left| node_hash(left, &right)),
        }
    }

    /// The roots of the tree's perfect subtrees, largest (leftmost) first:
    /// one per set bit of [`size`](Tree::size).
    pub fn frontier(&self) -> &[Hash] {
        &self.frontier
    }
}

/// Converts an index or size to `usize`, or `None` if it cannot be one.
fn to_usize(n: u64) -> Option<usize> {
    usize::try_from(n).ok()
}

/// The RFC 6962 inclusion proof (audit path) of leaf `index` in `leaves`:
/// the sibling hashes from the leaf up to the root.
///
/// Fails when `index` is not less than the number of leaves.
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Result<Vec<Hash>, Error> {
    let out_of_range = || Error::IndexOutOfRange {
        index,
        size: leaves.len() as u64,
    };
    let m = to_usize(index).ok_or_else(out_of_range)?;
    if m >= leaves.len() {
        return Err(out_of_range());
    }
    let mut proof = Vec::new();
    audit_path(leaves, m, &mut proof);
    Ok(proof)
}

/// RFC 6962 `PATH(m, D[n])`, appended to `proof`.
fn audit_path(leaves: &[Hash], m: usize, proof: &mut Vec<Hash>) {
    if leaves.len() <= 1 {
        return;
    }
    let k = split_point(leaves.len());
    if m < k {
        audit_path(&leaves[..k], m, proof);
        proof.push(root_of(&leaves[k..]));
    } else {
        audit_path(&leaves[k..], m - k, proof);
        proof.push(root_of(&leaves[..k]));
    }
}

/// Checks that `leaf` is leaf number `index` of the tree of `size` leaves
/// whose root is `root`, following RFC 9162 section 2.1.3.2.
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    // `node` walks up from the leaf, `last` from the tree's last leaf; a
    // sibling is on the left when `node` is a right child, or when `node`
    // is the last node of its level (then it has no right sibling and is
    // promoted up the levels where it is a left child).
    let (mut node, mut last) = (index, size - 1);
    let mut hash = *leaf;
    for sibling in proof {
        if last == 0 {
            return false;
        }
        if node & 1 == 1 || node == last {
            hash = node_hash(sibling, &hash);
            while node & 1 == 0 && node != 0 {
                node >>= 1;
                last >>= 1;
            }
        } else {
            hash = node_hash(&hash, sibling);
        }
        node >>= 1;
        last >>= 1;
    }
    last == 0 && hash == *root
}

/// The RFC 6962 consistency proof that the first `old_size` leaves form a
/// prefix of `leaves`.
///
/// The proof is empty when `old_size` is 0 or equals the number of leaves.
/// Fails when `old_size` is larger than the number of leaves.
pub fn consistency_proof(leaves: &[Hash], old_size: u64) -> Result<Vec<Hash>, Error> {
    let too_large = || Error::OldSizeTooLarge {
        old_size,
        size: leaves.len() as u64,
    };
    let m = to_usize(old_size).ok_or_else(too_large)?;
    if m > leaves.len() {
        return Err(too_large());
    }
    let mut proof = Vec::new();
    if m > 0 && m < leaves.len() {
        subproof(m, leaves, true, &mut proof);
    }
    Ok(proof)
}

/// RFC 6962 `SUBPROOF(m, D[n], b)`, appended to `proof`. `whole` is the
/// flag `b`: true while the subtree being described is the old tree's
/// root itself, whose hash the verifier already has.
fn subproof(m: usize, leaves: &[Hash], whole: bool, proof: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !whole {
            proof.push(root_of(leaves));
        }
        return;
    }
    let k = split_point(n);
    if m <= k {
        subproof(m, &leaves[..k], whole, proof);
        proof.push(root_of(&leaves[k..]));
    } else {
        subproof(m - k, &leaves[k..], false, proof);
        proof.push(root_of(&leaves[..k]));
    }
}

/// Checks that the tree of `old_size` leaves with root `old_root` is a
/// prefix of the tree of `new_size` leaves with root `new_root`, following
/// RFC 9162 section 2.1.4.2.
///
/// Equal sizes need equal roots and an empty proof; the empty tree (whose
/// root must be [`empty_root`]) is a prefix of every tree, with an empty
/// proof.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    if old_size == 0 {
        return proof.is_empty() && *old_root == empty_root();
    }
    // When the old tree is a perfect subtree, the proof leaves out its
    // root, which the verifier already has: start from it.
    let (start, rest) = if old_size.is_power_of_two() {
        (old_root, proof)
    } else {
        match proof.split_first() {
            Some(split) => split,
            None => return false,
        }
    };
    if proof.is_empty() {
        return false;
    }
    let (mut node, mut last) = (old_size - 1, new_size - 1);
    while node & 1 == 1 {
        node >>= 1;
        last >>= 1;
    }
    // `old_hash` rebuilds the old root, `new_hash` the new one.
    let (mut old_hash, mut new_hash) = (*start, *start);
    for sibling in rest {
        if last == 0 {
            return false;
        }
        if node & 1 == 1 || node == last {
            old_hash = node_hash(sibling, &old_hash);
            new_hash = node_hash(sibling, &new_hash);
            while node & 1 == 0 && node != 0 {
                node >>= 1;
                last >>= 1;
            }
        } else {
            new_hash = node_hash(&new_hash, sibling);
        }
        node >>= 1;
        last >>= 1;
    }
    last == 0 && old_hash == *old_root && new_hash == *new_root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(hash: &Hash) -> String {
        hash.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn unhex(s: &str) -> Hash {
        let bytes: Vec<u8> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect();
        bytes.try_into().unwrap()
    }

    /// The eight leaf inputs of the RFC 6962 test vectors used across
    /// certificate-transparency implementations.
    fn rfc_leaves() -> Vec<Hash> {
        let inputs: [&[u8]; 8] = [
            b"",
            &[0x00],
            &[0x10],
            &[0x20, 0x21],
            &[0x30, 0x31],
            &[0x40, 0x41, 0x42, 0x43],
            &[0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
            &[
                0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e,
                0x6f,
            ],
        ];
        inputs.iter().map(|data| leaf_hash(data)).collect()
    }

    /// Distinct leaf hashes for structural tests.
    fn leaves(n: usize) -> Vec<Hash> {
        (0..n as u64).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    fn flip(hash: &Hash, bit: usize) -> Hash {
        let mut out = *hash;
        out[bit / 8] ^= 1 << (bit % 8);
        out
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(
            hex(&empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(root_of(&[]), empty_root());
        assert_eq!(Tree::new().root(), empty_root());
    }

    #[test]
    fn rfc6962_roots() {
        let expected = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let leaves = rfc_leaves();
        let mut tree = Tree::new();
        for (size, want) in (1..=8).zip(expected) {
            assert_eq!(hex(&root_of(&leaves[..size])), want, "root_of size {size}");
            tree.push(leaves[size - 1]).unwrap();
            assert_eq!(hex(&tree.root()), want, "Tree size {size}");
        }
    }

    #[test]
    fn rfc6962_inclusion_proofs() {
        let leaves = rfc_leaves();
        let cases: [(u64, usize, &[&str]); 4] = [
            (0, 1, &[]),
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                1,
                2,
                &["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"],
            ),
        ];
        for (index, size, want) in cases {
            let proof = inclusion_proof(&leaves[..size], index).unwrap();
            let want: Vec<Hash> = want.iter().map(|h| unhex(h)).collect();
            assert_eq!(proof, want, "index {index} size {size}");
            let root = root_of(&leaves[..size]);
            assert!(verify_inclusion(
                index,
                size as u64,
                &leaves[index as usize],
                &proof,
                &root
            ));
        }
    }

    #[test]
    fn rfc6962_consistency_proofs() {
        let leaves = rfc_leaves();
        let cases: [(u64, usize, &[&str]); 3] = [
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (old, new, want) in cases {
            let proof = consistency_proof(&leaves[..new], old).unwrap();
            let want: Vec<Hash> = want.iter().map(|h| unhex(h)).collect();
            assert_eq!(proof, want, "old {old} new {new}");
            let old_root = root_of(&leaves[..old as usize]);
            let new_root = root_of(&leaves[..new]);
            assert!(verify_consistency(old, new as u64, &old_root, &new_root, &proof));
        }
    }

    #[test]
    fn split_point_is_largest_power_of_two_below() {
        for n in 2..2000usize {
            let k = split_point(n);
            assert!(k.is_power_of_two() && k < n && 2 * k >= n, "n {n} k {k}");
        }
    }

    #[test]
    fn tree_matches_root_of_for_every_size() {
        let all = leaves(300);
        let mut tree = Tree::new();
        assert_eq!(tree.root(), root_of(&[]));
        for size in 1..=300 {
            tree.push(all[size - 1]).unwrap();
            assert_eq!(tree.size(), size as u64);
            assert_eq!(tree.frontier().len(), size.count_ones() as usize);
            assert_eq!(tree.root(), root_of(&all[..size]), "size {size}");
        }
    }

    #[test]
    fn frontier_round_trip_continues_the_same_tree() {
        let all = leaves(70);
        for stop in 0..=all.len() {
            let mut first = Tree::new();
            for leaf in &all[..stop] {
                first.push(*leaf).unwrap();
            }
            let mut resumed = Tree::from_frontier(first.size(), first.frontier().to_vec()).unwrap();
            assert_eq!(resumed, first);
            for leaf in &all[stop..] {
                resumed.push(*leaf).unwrap();
            }
            assert_eq!(resumed.root(), root_of(&all), "stopped at {stop}");
        }
    }

    #[test]
    fn from_frontier_refuses_the_wrong_number_of_hashes() {
        let hash = leaf_hash(b"x");
        for (size, count) in [(0u64, 1usize), (1, 0), (1, 2), (6, 1), (6, 3), (u64::MAX, 63)] {
            let err = Tree::from_frontier(size, vec![hash; count]).unwrap_err();
            assert!(
                matches!(err, Error::FrontierLength { size: s, actual, .. } if s == size && actual == count),
                "{err}"
            );
        }
        assert!(Tree::from_frontier(6, vec![hash; 2]).is_ok());
    }

    #[test]
    fn push_refuses_to_overflow_the_size() {
        let mut tree = Tree::from_frontier(u64::MAX, vec![leaf_hash(b"x"); 64]).unwrap();
        let before = tree.clone();
        assert!(matches!(tree.push(leaf_hash(b"y")), Err(Error::TreeFull { .. })));
        assert_eq!(tree, before);
    }

    /// For each step of an inclusion proof from leaf `index` in a tree of
    /// `size` leaves: is the sibling on the left? Two (index, size) pairs
    /// with the same shape accept the same proofs.
    fn path_shape(index: usize, size: usize) -> Vec<bool> {
        if size <= 1 {
            return Vec::new();
        }
        let k = split_point(size);
        let (mut shape, left) = if index < k {
            (path_shape(index, k), false)
        } else {
            (path_shape(index - k, size - k), true)
        };
        shape.push(left);
        shape
    }

    #[test]
    fn inclusion_proofs_verify_and_detect_tampering() {
        let all = leaves(41);
        for size in 1..=all.len() {
            let tree = &all[..size];
            let root = root_of(tree);
            let n = size as u64;
            for index in 0..size {
                let i = index as u64;
                let leaf = &tree[index];
                let proof = inclusion_proof(tree, i).unwrap();
                assert!(
                    verify_inclusion(i, n, leaf, &proof, &root),
                    "index {index} size {size}"
                );

                for bit in [0, 77, 255] {
                    assert!(!verify_inclusion(i, n, &flip(leaf, bit), &proof, &root));
                    assert!(!verify_inclusion(i, n, leaf, &proof, &flip(&root, bit)));
                    for at in 0..proof.len() {
                        let mut bad = proof.clone();
                        bad[at] = flip(&bad[at], bit);
                        assert!(!verify_inclusion(i, n, leaf, &bad, &root));
                    }
                }
                if !proof.is_empty() {
                    assert!(!verify_inclusion(i, n, leaf, &proof[1..], &root));
                    assert!(!verify_inclusion(i, n, leaf, &proof[..proof.len() - 1], &root));
                }
                let mut longer = proof.clone();
                longer.push(root);
                assert!(!verify_inclusion(i, n, leaf, &longer, &root));
                if index > 0 {
                    assert!(!verify_inclusion(i - 1, n, leaf, &proof, &root));
                }
                assert!(!verify_inclusion(i + 1, n, leaf, &proof, &root));
                assert!(!verify_inclusion(i, i, leaf, &proof, &root));
                // A root does not bind the size: a different size is only
                // accepted when its audit path has exactly the same shape.
                for other in 1..=size + 2 {
                    if other > index && other != size {
                        let same_shape = path_shape(index, other) == path_shape(index, size);
                        assert_eq!(
                            verify_inclusion(i, other as u64, leaf, &proof, &root),
                            same_shape,
                            "index {index} size {size} claimed as {other}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn inclusion_proof_refuses_out_of_range_index() {
        let all = leaves(5);
        assert!(matches!(
            inclusion_proof(&all, 5),
            Err(Error::IndexOutOfRange { index: 5, size: 5 })
        ));
        assert!(inclusion_proof(&[], 0).is_err());
        assert!(!verify_inclusion(0, 0, &all[0], &[], &empty_root()));
    }

    #[test]
    fn consistency_proofs_verify_and_detect_tampering() {
        let all = leaves(41);
        let roots: Vec<Hash> = (0..=all.len()).map(|n| root_of(&all[..n])).collect();
        for new in 0..=all.len() {
            for old in 0..=new {
                let (m, n) = (old as u64, new as u64);
                let proof = consistency_proof(&all[..new], m).unwrap();
                let (old_root, new_root) = (&roots[old], &roots[new]);
                assert!(
                    verify_consistency(m, n, old_root, new_root, &proof),
                    "old {old} new {new}"
                );
                assert_eq!(proof.is_empty(), old == 0 || old == new);

                for bit in [0, 100, 255] {
                    assert!(!verify_consistency(m, n, &flip(old_root, bit), new_root, &proof));
                    // The empty tree is a prefix of every tree, whatever its root.
                    if old > 0 {
                        assert!(!verify_consistency(m, n, old_root, &flip(new_root, bit), &proof));
                    }
                    for at in 0..proof.len() {
                        let mut bad = proof.clone();
                        bad[at] = flip(&bad[at], bit);
                        assert!(
                            !verify_consistency(m, n, old_root, new_root, &bad),
                            "old {old} new {new}"
                        );
                    }
                }
                if !proof.is_empty() {
                    assert!(!verify_consistency(m, n, old_root, new_root, &proof[1..]));
                    assert!(!verify_consistency(
                        m,
                        n,
                        old_root,
                        new_root,
                        &proof[..proof.len() - 1]
                    ));
                }
                let mut longer = proof.clone();
                longer.push(*new_root);
                assert!(!verify_consistency(m, n, old_root, new_root, &longer));
                // The roots of other trees are refused.
                if old > 0 && old < new {
                    assert!(!verify_consistency(m, n, &roots[old - 1], new_root, &proof));
                    assert!(!verify_consistency(m, n, old_root, &roots[new - 1], &proof));
                }
                // A root does not bind the size; a claimed size whose proof
                // would have a different length is always refused.
                let mut claims = vec![(m + 1, n), (m, n + 1)];
                if old > 0 {
                    claims.push((m - 1, n));
                }
                if new > 0 {
                    claims.push((m, n - 1));
                }
                let bigger = leaves(new + 1);
                for (claimed_old, claimed_new) in claims {
                    if claimed_old > claimed_new || (claimed_old, claimed_new) == (m, n) {
                        continue;
                    }
                    let genuine = consistency_proof(&bigger[..claimed_new as usize], claimed_old).unwrap();
                    if genuine.len() != proof.len() {
                        assert!(
                            !verify_consistency(claimed_old, claimed_new, old_root, new_root, &proof),
                            "old {old} new {new} claimed as {claimed_old} {claimed_new}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn consistency_edge_cases() {
        let all = leaves(4);
        let root = root_of(&all);
        // Empty tree: only with its own root and an empty proof.
        assert!(verify_consistency(0, 4, &empty_root(), &root, &[]));
        assert!(!verify_consistency(0, 4, &root, &root, &[]));
        assert!(!verify_consistency(0, 4, &empty_root(), &root, &[root]));
        // Same size: same root, empty proof.
        assert!(verify_consistency(4, 4, &root, &root, &[]));
        assert!(!verify_consistency(4, 4, &root, &empty_root(), &[]));
        assert!(!verify_consistency(4, 4, &root, &root, &[root]));
        // Shrinking is never consistent.
        assert!(!verify_consistency(4, 3, &root, &root_of(&all[..3]), &[]));
        // A non-empty change needs a proof.
        assert!(!verify_consistency(2, 4, &root_of(&all[..2]), &root, &[]));
        assert!(matches!(
            consistency_proof(&all, 5),
            Err(Error::OldSizeTooLarge { old_size: 5, size: 4 })
        ));
    }
}
