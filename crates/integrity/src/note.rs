//! C2SP signed notes (<https://c2sp.org/signed-note>): a text followed by a
//! blank line and one or more signature lines.
//!
//! ```text
//! <text, one or more lines, each ending in "\n">
//! "\n"
//! "— " <key name> " " base64(u32 key id || signature) "\n"     (one or more)
//! ```
//!
//! The dash is U+2014 EM DASH. The text must not contain control
//! characters other than newline. An Ed25519 signature is over the text
//! bytes exactly (including its final newline) and is 64 bytes long.
//!
//! This module knows nothing of what the text means; see
//! [`checkpoint`](crate::checkpoint) for the text pgtrail signs.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::Error;
use crate::keys::{SignerKey, VerifierKey, check_key_name};

/// What starts a signature line: an em dash and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

fn malformed(reason: impl Into<String>) -> Error {
    Error::MalformedNote {
        reason: reason.into(),
    }
}

/// Checks that `text` can be the text of a signed note: non-empty, ending
/// in a newline, without control characters other than newline.
pub fn check_text(text: &str) -> Result<(), Error> {
    if !text.ends_with('\n') {
        return Err(malformed("the text must be non-empty and end with a newline"));
    }
    if let Some(c) = text.chars().find(|&c| c.is_control() && c != '\n') {
        return Err(malformed(format!(
            "the text contains the control character {c:?}"
        )));
    }
    Ok(())
}

/// One signature line of a signed note, in the parts a database stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// The signing key's name.
    pub key_name: String,
    /// The signing key's id.
    pub key_id: u32,
    /// The raw signature (64 bytes for Ed25519; other signature types
    /// found in notes may differ).
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// Signs `text` with `key`. The text should have passed [`check_text`].
    pub fn new(text: &str, key: &SignerKey) -> NoteSignature {
        NoteSignature {
            key_name: key.name().to_owned(),
            key_id: key.key_id(),
            signature: key.sign(text.as_bytes()).to_vec(),
        }
    }

    /// Checks the parts can be written as a signature line.
    fn check(&self) -> Result<(), Error> {
        check_key_name(&self.key_name)?;
        if self.signature.is_empty() {
            return Err(malformed("a signature must not be empty"));
        }
        Ok(())
    }

    /// Parses one signature line, without its final newline.
    fn parse_line(line: &str) -> Result<NoteSignature, Error> {
        let rest = line
            .strip_prefix(SIGNATURE_PREFIX)
            .ok_or_else(|| malformed(format!("signature line {line:?} does not start with \"— \"")))?;
        let (name, encoded) = rest
            .split_once(' ')
            .ok_or_else(|| malformed(format!("signature line {line:?} has no space after the key name")))?;
        check_key_name(name)
            .map_err(|_| malformed(format!("invalid key name {name:?} in a signature line")))?;
        let bytes = BASE64
            .decode(encoded)
            .map_err(|_| malformed(format!("the signature by {name} is not valid base64")))?;
        match bytes.split_first_chunk::<4>() {
            Some((id, signature)) if !signature.is_empty() => Ok(NoteSignature {
                key_name: name.to_owned(),
                key_id: u32::from_be_bytes(*id),
                signature: signature.to_vec(),
            }),
            _ => Err(malformed(format!("the signature by {name} is too short"))),
        }
    }
}

impl fmt::Display for NoteSignature {
    /// The signature line, with its final newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = Vec::with_capacity(4 + self.signature.len());
        bytes.extend_from_slice(&self.key_id.to_be_bytes());
        bytes.extend_from_slice(&self.signature);
        writeln!(f, "{SIGNATURE_PREFIX}{} {}", self.key_name, BASE64.encode(bytes))
    }
}

/// A signed note: its text and signatures, checked to be well formed.
/// [`Display`](fmt::Display) writes the note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNote {
    text: String,
    signatures: Vec<NoteSignature>,
}

impl SignedNote {
    /// A note from its parts, in the order given; fails if the text or a
    /// signature cannot be written, or there is no signature.
    pub fn new(text: String, signatures: Vec<NoteSignature>) -> Result<SignedNote, Error> {
        check_text(&text)?;
        if signatures.is_empty() {
            return Err(malformed("a signed note needs at least one signature"));
        }
        for signature in &signatures {
            signature.check()?;
        }
        Ok(SignedNote { text, signatures })
    }

    /// `text` signed by `key`.
    pub fn sign(text: String, key: &SignerKey) -> Result<SignedNote, Error> {
        check_text(&text)?;
        let signature = NoteSignature::new(&text, key);
        SignedNote::new(text, vec![signature])
    }

    /// Splits a note into its text and signature lines, verifying nothing.
    pub fn parse(note: &str) -> Result<SignedNote, Error> {
        // Signature lines are never empty, so the last blank line is the
        // one that ends the text.
        let split = note
            .rfind("\n\n")
            .ok_or_else(|| malformed("no blank line separates the text from the signatures"))?;
        let (text, signatures) = (&note[..split + 1], &note[split + 2..]);
        if signatures.is_empty() {
            return Err(malformed("the note has no signature lines"));
        }
        let signatures = signatures
            .strip_suffix('\n')
            .ok_or_else(|| malformed("the last signature line does not end with a newline"))?;
        let signatures = signatures
            .split('\n')
            .map(NoteSignature::parse_line)
            .collect::<Result<Vec<_>, _>>()?;
        SignedNote::new(text.to_owned(), signatures)
    }

    /// The signed text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The signatures, in note order.
    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// Verifies the note's signature(s) by `verifier`, identified by key
    /// name and key id, and returns the (first) one found. Signatures by
    /// other keys are ignored.
    ///
    /// Fails when there is no signature by this key, or when one does not
    /// verify.
    pub fn verify(&self, verifier: &VerifierKey) -> Result<&NoteSignature, Error> {
        let mut verified = None;
        for signature in &self.signatures {
            if signature.key_name != verifier.name() || signature.key_id != verifier.key_id() {
                continue;
            }
            if !verifier.verify(self.text.as_bytes(), &signature.signature) {
                return Err(Error::BadSignature {
                    name: verifier.name().to_owned(),
                    key_id: verifier.key_id(),
                });
            }
            verified.get_or_insert(signature);
        }
        verified.ok_or_else(|| Error::NoSignatureForKey {
            name: verifier.name().to_owned(),
            key_id: verifier.key_id(),
            found: self
                .signatures
                .iter()
                .map(|s| format!("`{}` ({:08x})", s.key_name, s.key_id))
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

impl fmt::Display for SignedNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)?;
        f.write_str("\n")?;
        for signature in &self.signatures {
            signature.fmt(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the C2SP signed-note specification and Go's
    /// `golang.org/x/mod/sumdb/note` documentation.
    const SPEC_SIGNER: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const SPEC_NOTE: &str = "If you think cryptography is the answer to your problem,\n\
        then you don't know what your problem is.\n\
        \n\
        \u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    fn key(name: &str, seed: u8) -> SignerKey {
        SignerKey::from_seed(name, &[seed; 32]).unwrap()
    }

    #[test]
    fn spec_example_note_verifies_and_is_reproduced() {
        let signer = SignerKey::parse(SPEC_SIGNER).unwrap();
        let note = SignedNote::parse(SPEC_NOTE).unwrap();
        assert_eq!(note.signatures().len(), 1);
        assert_eq!(note.signatures()[0].key_id, 0xc74f20a3);
        assert_eq!(note.signatures()[0].signature.len(), 64);
        note.verify(&signer.verifier()).unwrap();
        assert_eq!(note.to_string(), SPEC_NOTE);
        let signed = SignedNote::sign(note.text().to_owned(), &signer).unwrap();
        assert_eq!(signed.to_string(), SPEC_NOTE);
    }

    #[test]
    fn other_signatures_are_kept_and_ignored() {
        let (a, b) = (key("a", 1), key("b", 2));
        let text = "hello\n".to_owned();
        let note = SignedNote::new(
            text.clone(),
            vec![NoteSignature::new(&text, &b), NoteSignature::new(&text, &a)],
        )
        .unwrap();
        let parsed = SignedNote::parse(&note.to_string()).unwrap();
        assert_eq!(parsed, note);
        assert_eq!(parsed.verify(&a.verifier()).unwrap().key_name, "a");
        assert_eq!(parsed.verify(&b.verifier()).unwrap().key_name, "b");
        let err = parsed.verify(&key("c", 3).verifier()).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, Error::NoSignatureForKey { .. }), "{message}");
        assert!(
            message.contains("`c`") && message.contains("`a`") && message.contains("`b`"),
            "{message}"
        );
    }

    #[test]
    fn same_name_other_key_is_not_a_match() {
        let text = "hello\n".to_owned();
        let note = SignedNote::sign(text, &key("log", 1)).unwrap();
        let err = note.verify(&key("log", 2).verifier()).unwrap_err();
        assert!(matches!(err, Error::NoSignatureForKey { .. }), "{err}");
    }

    #[test]
    fn a_bad_signature_by_the_key_is_an_error() {
        let signer = key("log", 1);
        let note = SignedNote::sign("hello\n".to_owned(), &signer).unwrap();
        let mut signature = note.signatures()[0].clone();
        signature.signature[10] ^= 0x20;
        let forged = SignedNote::new("hello\n".to_owned(), vec![signature]).unwrap();
        let err = forged.verify(&signer.verifier()).unwrap_err();
        assert!(matches!(err, Error::BadSignature { .. }), "{err}");
        let altered = SignedNote::new("hellp\n".to_owned(), note.signatures().to_vec()).unwrap();
        assert!(matches!(
            altered.verify(&signer.verifier()),
            Err(Error::BadSignature { .. })
        ));
        // A good signature does not excuse a bad one by the same key.
        let good = note.signatures()[0].clone();
        let mixed =
            SignedNote::new("hello\n".to_owned(), vec![good, forged.signatures()[0].clone()]).unwrap();
        assert!(matches!(
            mixed.verify(&signer.verifier()),
            Err(Error::BadSignature { .. })
        ));
    }

    #[test]
    fn malformed_notes_are_refused() {
        let good = SignedNote::sign("a\nb\n".to_owned(), &key("k", 1))
            .unwrap()
            .to_string();
        assert!(SignedNote::parse(&good).is_ok());
        let line = good.split("\n\n").nth(1).unwrap().to_owned();
        let bad = [
            String::new(),
            "a\nb\n".to_owned(),
            "a\nb\n\n".to_owned(),
            good.trim_end().to_owned(),
            format!("a\nb\n\n{line}\n"),
            format!("a\r\nb\n\n{line}"),
            format!("a\tb\n\n{line}"),
            format!("a\nb\n\n{}", line.replacen('\u{2014}', "-", 1)),
            format!("a\nb\n\n{}", line.replacen(' ', "  ", 1)),
            format!("a\nb\n\n{}", line.replacen(' ', "", 1)),
            format!("a\nb\n\n{}", line.replacen("k ", "k+ ", 1)),
            format!("a\nb\n\n{}", line.replacen('=', "", 1)),
            "a\nb\n\n\u{2014} k AAAAAA==\n".to_owned(),
            "\n\u{2014} k AAAAAAA=\n".to_owned(),
        ];
        for note in &bad {
            assert!(
                matches!(
                    SignedNote::parse(note),
                    Err(Error::MalformedNote { .. } | Error::InvalidKeyName { .. })
                ),
                "{note:?}"
            );
        }
    }

    #[test]
    fn text_checks() {
        assert!(check_text("x\n").is_ok());
        assert!(check_text("").is_err());
        assert!(check_text("x").is_err());
        assert!(check_text("x\u{7}\n").is_err());
        assert!(SignedNote::new("x\n".to_owned(), Vec::new()).is_err());
    }
}
