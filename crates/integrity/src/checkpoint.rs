//! Checkpoints: signed tree heads in the C2SP tlog-checkpoint format
//! (<https://c2sp.org/tlog-checkpoint>), carried in a signed
//! [note](crate::note).
//!
//! ```text
//! <origin>\n                    the log's name, e.g. "example.com/pgtrail/prod"
//! <size>\n                      number of leaves, decimal, no leading zeros
//! <base64 root hash>\n          the RFC 6962 root of those leaves
//! [<extension line>\n]...       optional, opaque here
//! \n
//! — <key name> <base64(key id || signature)>\n   (one or more)
//! ```
//!
//! A signature is Ed25519 over the body, the lines before the blank line.
//! The body is parsed strictly (no leading zeros, canonical base64), so a
//! checkpoint has exactly one text: a note is rebuilt byte for byte from
//! its stored parts with [`Checkpoint::note_from_parts`].

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::Error;
use crate::keys::{SignerKey, VerifierKey};
use crate::merkle::Hash;
use crate::note::{NoteSignature, SignedNote};

fn malformed(reason: impl Into<String>) -> Error {
    Error::MalformedCheckpoint {
        reason: reason.into(),
    }
}

/// A tree head: the log's origin, its size and root, and extension lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's unique name: a non-empty line, by convention a URL
    /// without scheme.
    pub origin: String,
    /// The number of leaves in the tree.
    pub size: u64,
    /// The RFC 6962 root of the tree.
    pub root: Hash,
    /// Extra non-empty lines after the root, in order.
    pub extensions: Vec<String>,
}

/// Checks that `line` can be one line of a checkpoint body.
fn check_line(what: &str, line: &str) -> Result<(), Error> {
    if line.is_empty() {
        return Err(malformed(format!("the {what} must not be empty")));
    }
    if let Some(c) = line.chars().find(|c| c.is_control()) {
        return Err(malformed(format!(
            "the {what} must be one line without control characters, but contains {c:?}"
        )));
    }
    Ok(())
}

/// Parses a tree size written in decimal without leading zeros.
fn parse_size(line: &str) -> Result<u64, Error> {
    let canonical = !line.is_empty()
        && line.bytes().all(|b| b.is_ascii_digit())
        && (line == "0" || !line.starts_with('0'));
    if !canonical {
        return Err(malformed(format!(
            "the tree size {line:?} is not a decimal number without leading zeros"
        )));
    }
    line.parse()
        .map_err(|_| malformed(format!("the tree size {line} is too large")))
}

/// Parses a base64 (standard alphabet, padded) SHA-256 hash.
fn parse_root(line: &str) -> Result<Hash, Error> {
    let bytes = BASE64
        .decode(line)
        .map_err(|_| malformed(format!("the root hash {line:?} is not valid base64")))?;
    Hash::try_from(bytes.as_slice())
        .map_err(|_| malformed(format!("the root hash is {} bytes long, not 32", bytes.len())))
}

impl Checkpoint {
    /// Checks that the checkpoint can be written: the origin and every
    /// extension are non-empty lines without control characters.
    pub fn check(&self) -> Result<(), Error> {
        check_line("origin", &self.origin)?;
        for extension in &self.extensions {
            check_line("extension line", extension)?;
        }
        Ok(())
    }

    /// The note body: origin, size, root and extension lines, each ending
    /// in a newline. Only meaningful if [`check`](Checkpoint::check) passes.
    pub fn body(&self) -> String {
        let mut body = format!("{}\n{}\n{}\n", self.origin, self.size, BASE64.encode(self.root));
        for extension in &self.extensions {
            body.push_str(extension);
            body.push('\n');
        }
        body
    }

    /// Parses a note body, strictly: `parse_body(b)?.body() == b`.
    pub fn parse_body(body: &str) -> Result<Checkpoint, Error> {
        let lines = body
            .strip_suffix('\n')
            .ok_or_else(|| malformed("the body does not end with a newline"))?;
        let mut lines = lines.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next()) else {
            return Err(malformed("the body needs an origin, a size and a root line"));
        };
        let checkpoint = Checkpoint {
            origin: origin.to_owned(),
            size: parse_size(size)?,
            root: parse_root(root)?,
            extensions: lines.map(str::to_owned).collect(),
        };
        checkpoint.check()?;
        Ok(checkpoint)
    }

    /// The signature of this checkpoint by `key`, in the parts to store.
    pub fn signature(&self, key: &SignerKey) -> Result<NoteSignature, Error> {
        self.check()?;
        Ok(NoteSignature::new(&self.body(), key))
    }

    /// The signed note of this checkpoint, signed by `key`.
    pub fn sign(&self, key: &SignerKey) -> Result<String, Error> {
        let signature = self.signature(key)?;
        self.note_from_parts(&[signature])
    }

    /// The signed note of this checkpoint with the given signatures, in
    /// that order: rebuilds a stored note exactly.
    pub fn note_from_parts(&self, signatures: &[NoteSignature]) -> Result<String, Error> {
        self.check()?;
        Ok(SignedNote::new(self.body(), signatures.to_vec())?.to_string())
    }

    /// Reads the checkpoint of a signed note without verifying any
    /// signature: for showing a size or root when no key is at hand.
    pub fn parse_unverified(note: &str) -> Result<Checkpoint, Error> {
        Checkpoint::parse_body(SignedNote::parse(note)?.text())
    }
}

/// Opens a signed checkpoint note: parses it and verifies its signature by
/// `verifier` (signatures by other keys are ignored).
///
/// The caller still has to check that the origin is the log it expects.
pub fn open(note: &str, verifier: &VerifierKey) -> Result<Checkpoint, Error> {
    let note = SignedNote::parse(note)?;
    note.verify(verifier)?;
    Checkpoint::parse_body(note.text())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{Tree, leaf_hash};

    fn signer(name: &str, seed: u8) -> SignerKey {
        SignerKey::from_seed(name, &[seed; 32]).unwrap()
    }

    fn sample() -> Checkpoint {
        let mut tree = Tree::new();
        for i in 0u32..5 {
            tree.push(leaf_hash(&i.to_be_bytes())).unwrap();
        }
        Checkpoint {
            origin: "example.com/pgtrail/test".to_owned(),
            size: tree.size(),
            root: tree.root(),
            extensions: vec!["timestamp 1700000000".to_owned()],
        }
    }

    #[test]
    fn body_has_the_tlog_checkpoint_layout() {
        let checkpoint = Checkpoint {
            origin: "o".to_owned(),
            size: 10,
            root: [0; 32],
            extensions: Vec::new(),
        };
        assert_eq!(
            checkpoint.body(),
            "o\n10\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
        );
        let checkpoint = sample();
        assert_eq!(Checkpoint::parse_body(&checkpoint.body()).unwrap(), checkpoint);
    }

    #[test]
    fn sign_and_open_round_trip() {
        let key = signer("pgtrail-test", 1);
        let checkpoint = sample();
        let note = checkpoint.sign(&key).unwrap();
        assert!(note.starts_with(&checkpoint.body()));
        assert!(note.contains("\n\n\u{2014} pgtrail-test "));
        assert_eq!(open(&note, &key.verifier()).unwrap(), checkpoint);
        assert_eq!(Checkpoint::parse_unverified(&note).unwrap(), checkpoint);
    }

    #[test]
    fn any_altered_bit_of_the_note_is_refused() {
        let key = signer("pgtrail-test", 1);
        let verifier = key.verifier();
        let note = sample().sign(&key).unwrap();
        // Flip one bit of every byte in turn: no variant opens, and those
        // that still parse are reported as bad signatures.
        let bytes = note.as_bytes();
        for at in 0..bytes.len() {
            for bit in [0x01, 0x04, 0x20] {
                let mut altered = bytes.to_vec();
                altered[at] ^= bit;
                let Ok(altered) = String::from_utf8(altered) else {
                    continue;
                };
                assert!(
                    open(&altered, &verifier).is_err(),
                    "byte {at} bit {bit:#x}: {altered:?}"
                );
            }
        }
    }

    #[test]
    fn altered_fields_fail_with_a_bad_signature() {
        let key = signer("pgtrail-test", 1);
        let verifier = key.verifier();
        let checkpoint = sample();
        let signature = checkpoint.signature(&key).unwrap();
        let mut variants = Vec::new();
        let mut c = checkpoint.clone();
        c.size += 1;
        variants.push(c);
        let mut c = checkpoint.clone();
        c.root[31] ^= 1;
        variants.push(c);
        let mut c = checkpoint.clone();
        c.origin.push('x');
        variants.push(c);
        let mut c = checkpoint.clone();
        c.extensions[0].push('1');
        variants.push(c);
        let mut c = checkpoint.clone();
        c.extensions.clear();
        variants.push(c);
        for variant in variants {
            let note = variant.note_from_parts(std::slice::from_ref(&signature)).unwrap();
            let err = open(&note, &verifier).unwrap_err();
            assert!(matches!(err, Error::BadSignature { .. }), "{variant:?}: {err}");
        }
        let mut bad_signature = signature.clone();
        bad_signature.signature[0] ^= 0x80;
        let note = checkpoint.note_from_parts(&[bad_signature]).unwrap();
        assert!(matches!(open(&note, &verifier), Err(Error::BadSignature { .. })));
    }

    #[test]
    fn a_note_by_another_key_is_refused_clearly() {
        let ours = signer("pgtrail-prod", 1);
        let theirs = signer("someone-else", 2);
        let note = sample().sign(&theirs).unwrap();
        let err = open(&note, &ours.verifier()).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, Error::NoSignatureForKey { .. }), "{message}");
        assert!(message.contains("pgtrail-prod"), "{message}");
        assert!(message.contains(&format!("{:08x}", ours.key_id())), "{message}");
        assert!(message.contains("someone-else"), "{message}");
    }

    #[test]
    fn cosigned_note_opens_with_either_key() {
        let (a, b) = (signer("a", 1), signer("b", 2));
        let checkpoint = sample();
        let parts = [
            checkpoint.signature(&a).unwrap(),
            checkpoint.signature(&b).unwrap(),
        ];
        let note = checkpoint.note_from_parts(&parts).unwrap();
        assert_eq!(open(&note, &a.verifier()).unwrap(), checkpoint);
        assert_eq!(open(&note, &b.verifier()).unwrap(), checkpoint);
    }

    #[test]
    fn note_rebuilt_from_stored_parts_is_identical() {
        let key = signer("pgtrail-test", 7);
        let checkpoint = sample();
        let note = checkpoint.sign(&key).unwrap();

        // What a database keeps: the checkpoint fields and the signature parts.
        let parsed = SignedNote::parse(&note).unwrap();
        let stored = &parsed.signatures()[0];
        assert_eq!(stored.key_name, "pgtrail-test");
        assert_eq!(stored.key_id, key.key_id());
        assert_eq!(stored.signature.len(), 64);
        let stored_checkpoint = Checkpoint {
            origin: checkpoint.origin.clone(),
            size: checkpoint.size,
            root: checkpoint.root,
            extensions: checkpoint.extensions.clone(),
        };
        let signature = NoteSignature {
            key_name: stored.key_name.clone(),
            key_id: stored.key_id,
            signature: stored.signature.clone(),
        };
        assert_eq!(stored_checkpoint.note_from_parts(&[signature]).unwrap(), note);
        assert_eq!(
            checkpoint
                .note_from_parts(&[checkpoint.signature(&key).unwrap()])
                .unwrap(),
            note
        );
    }

    #[test]
    fn invalid_checkpoints_cannot_be_signed() {
        let key = signer("k", 1);
        let cases = [
            ("", vec![]),
            ("two\nlines", vec![]),
            ("tab\there", vec![]),
            ("ok", vec![String::new()]),
            ("ok", vec!["a\nb".to_owned()]),
        ];
        for (origin, extensions) in cases {
            let checkpoint = Checkpoint {
                origin: origin.to_owned(),
                extensions,
                ..sample()
            };
            assert!(
                matches!(checkpoint.sign(&key), Err(Error::MalformedCheckpoint { .. })),
                "{checkpoint:?}"
            );
            assert!(checkpoint.note_from_parts(&[]).is_err());
        }
        assert!(sample().note_from_parts(&[]).is_err());
    }

    #[test]
    fn bodies_are_parsed_strictly() {
        let root = BASE64.encode([7u8; 32]);
        assert!(Checkpoint::parse_body(&format!("o\n0\n{root}\n")).is_ok());
        assert_eq!(
            Checkpoint::parse_body(&format!("o\n18446744073709551615\n{root}\n"))
                .unwrap()
                .size,
            u64::MAX
        );
        let mut non_canonical_root = root.clone();
        non_canonical_root.replace_range(42..43, "d"); // sets bits the padding drops
        let bad = [
            format!("o\n1\n{root}"),
            "o\n1\n".to_owned(),
            format!("o\n01\n{root}\n"),
            format!("o\n+1\n{root}\n"),
            format!("o\n-1\n{root}\n"),
            format!("o\n1 \n{root}\n"),
            format!("o\n\n{root}\n"),
            format!("o\n18446744073709551616\n{root}\n"),
            format!("o\n1\n{}\n", &root[..40]),
            format!("o\n1\n{}\n", BASE64.encode([7u8; 31])),
            format!("o\n1\n{non_canonical_root}\n"),
            format!("\n1\n{root}\n"),
            format!("o\n1\n{root}\n\n"),
            format!("o\n1\n{root}\next\r\n"),
        ];
        for body in &bad {
            assert!(Checkpoint::parse_body(body).is_err(), "{body:?}");
        }
    }
}
