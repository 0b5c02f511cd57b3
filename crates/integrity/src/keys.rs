//! Ed25519 signing and verifying keys in the C2SP signed-note text formats
//! (<https://c2sp.org/signed-note>), and the key files that hold them.
//!
//! ```text
//! verifier key:  <name>+<key id>+<base64(0x01 || 32-byte public key)>
//! signer key:    PRIVATE+KEY+<name>+<key id>+<base64(0x01 || 32-byte private seed)>
//! key id:        first 4 bytes of SHA-256(name || "\n" || 0x01 || public key),
//!                written as 8 lowercase hex digits
//! ```
//!
//! `0x01` is the signed-note signature type of Ed25519. A key name is
//! non-empty and has no whitespace, control character or `+`.
//!
//! [`write_key_pair`] writes the signer key to a new file readable only by
//! its owner and the verifier key beside it with `.pub` appended to the
//! name; [`read_signer`] and [`read_verifier`] read them back.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::Error;

/// The signed-note signature type byte of Ed25519.
const ED25519: u8 = 0x01;
/// What starts every signer key.
const PRIVATE_PREFIX: &str = "PRIVATE+KEY+";
/// The length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// Checks that `name` can be a key name in a signed note: non-empty, and
/// without whitespace, control characters or `+`.
pub fn check_key_name(name: &str) -> Result<(), Error> {
    let bad = |c: char| c.is_whitespace() || c.is_control() || c == '+';
    if name.is_empty() || name.chars().any(bad) {
        return Err(Error::InvalidKeyName {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// The key id of an Ed25519 key: the first 4 bytes, big-endian, of
/// `SHA-256(name || "\n" || 0x01 || public key)`.
fn key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    let digest = Sha256::new()
        .chain_update(name.as_bytes())
        .chain_update(b"\n")
        .chain_update([ED25519])
        .chain_update(public_key)
        .finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// The parts of `<name>+<key id>+<base64 key>` after checking the name and
/// the id's syntax; `kind` names the key in errors.
fn split_key<'a>(text: &'a str, kind: &'static str) -> Result<(&'a str, u32, Zeroizing<Vec<u8>>), Error> {
    let malformed = |reason: &str| Error::MalformedKey {
        kind,
        reason: reason.to_owned(),
    };
    // Base64 can contain `+`, so the key is everything after the second `+`.
    let mut parts = text.splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(malformed("expected three parts, `<name>+<key id>+<base64 key>`"));
    };
    check_key_name(name).map_err(|_| malformed(&format!("invalid key name {name:?}")))?;
    if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(malformed(&format!("key id {id:?} is not 8 hex digits")));
    }
    let id = u32::from_str_radix(id, 16).map_err(|_| malformed("key id is not hexadecimal"))?;
    let key = Zeroizing::new(
        BASE64
            .decode(key)
            .map_err(|_| malformed("the key is not valid base64"))?,
    );
    match key.split_first() {
        Some((&ED25519, rest)) if rest.len() == 32 => {}
        Some((&ED25519, _)) => return Err(malformed("an Ed25519 key must be 32 bytes long")),
        Some((other, _)) => {
            return Err(malformed(&format!(
                "unsupported key type {other:#04x} (only Ed25519, type 0x01, is supported)"
            )));
        }
        None => return Err(malformed("the key is empty")),
    }
    Ok((name, id, key))
}

/// The 32 key bytes after the type byte of a key checked by [`split_key`].
fn key_bytes(key: &[u8]) -> [u8; 32] {
    let mut bytes = [0; 32];
    bytes.copy_from_slice(&key[1..]);
    bytes
}

/// A private Ed25519 key with its name, able to sign notes.
///
/// Its [`Display`](fmt::Display) form is the secret signer key text; its
/// `Debug` form shows only the name and key id.
#[derive(Clone)]
pub struct SignerKey {
    name: String,
    key_id: u32,
    signing: SigningKey,
}

impl SignerKey {
    /// A new random key named `name`.
    pub fn generate(name: &str) -> Result<SignerKey, Error> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(Error::Random)?;
        SignerKey::from_seed(name, &seed)
    }

    /// The key named `name` with this 32-byte Ed25519 private seed.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<SignerKey, Error> {
        check_key_name(name)?;
        let signing = SigningKey::from_bytes(seed);
        let key_id = key_id(name, signing.verifying_key().as_bytes());
        Ok(SignerKey {
            name: name.to_owned(),
            key_id,
            signing,
        })
    }

    /// Parses `PRIVATE+KEY+<name>+<key id>+<base64(0x01 || seed)>`, checking
    /// that the key id matches the key.
    pub fn parse(text: &str) -> Result<SignerKey, Error> {
        let Some(rest) = text.strip_prefix(PRIVATE_PREFIX) else {
            return Err(Error::MalformedKey {
                kind: "signer",
                reason: format!("a signer key starts with `{PRIVATE_PREFIX}`"),
            });
        };
        let (name, id, key) = split_key(rest, "signer")?;
        let seed = Zeroizing::new(key_bytes(&key));
        let signer = SignerKey::from_seed(name, &seed)?;
        if signer.key_id != id {
            return Err(Error::MalformedKey {
                kind: "signer",
                reason: format!(
                    "key id {id:08x} does not match the key (whose id is {:08x})",
                    signer.key_id
                ),
            });
        }
        Ok(signer)
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key's id (see the module documentation).
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The matching public key.
    pub fn verifier(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            key_id: self.key_id,
            verifying: self.signing.verifying_key(),
        }
    }

    /// The Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.signing.sign(message).to_bytes()
    }
}

impl fmt::Display for SignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut key = Zeroizing::new([0u8; 33]);
        key[0] = ED25519;
        key[1..].copy_from_slice(self.signing.as_bytes());
        let encoded = Zeroizing::new(BASE64.encode(key.as_slice()));
        write!(
            f,
            "{PRIVATE_PREFIX}{}+{:08x}+{}",
            self.name,
            self.key_id,
            encoded.as_str()
        )
    }
}

impl fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignerKey")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

impl FromStr for SignerKey {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        SignerKey::parse(text)
    }
}

/// A public Ed25519 key with its name, able to verify notes.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    key_id: u32,
    verifying: VerifyingKey,
}

impl VerifierKey {
    /// Parses `<name>+<key id>+<base64(0x01 || public key)>`, checking that
    /// the key id matches the key.
    pub fn parse(text: &str) -> Result<VerifierKey, Error> {
        let malformed = |reason: String| Error::MalformedKey {
            kind: "verifier",
            reason,
        };
        if text.starts_with(PRIVATE_PREFIX) {
            return Err(malformed(
                "this is a private signer key, not a public verifier key".into(),
            ));
        }
        let (name, id, key) = split_key(text, "verifier")?;
        let bytes = key_bytes(&key);
        let verifying = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| malformed("the key is not a valid Ed25519 public key".into()))?;
        let actual = key_id(name, &bytes);
        if actual != id {
            return Err(malformed(format!(
                "key id {id:08x} does not match the key (whose id is {actual:08x})"
            )));
        }
        Ok(VerifierKey {
            name: name.to_owned(),
            key_id: id,
            verifying,
        })
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key's id (see the module documentation).
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// Whether `signature` is this key's valid Ed25519 signature of
    /// `message`. Uses strict verification, which refuses malleable
    /// signatures and weak keys.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match Signature::from_slice(signature) {
            Ok(signature) => self.verifying.verify_strict(message, &signature).is_ok(),
            Err(_) => false,
        }
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut key = [0u8; 33];
        key[0] = ED25519;
        key[1..].copy_from_slice(self.verifying.as_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.key_id, BASE64.encode(key))
    }
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

impl FromStr for VerifierKey {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        VerifierKey::parse(text)
    }
}

/// The path of the verifier key file written beside the signer key file
/// `path`: the same name with `.pub` appended.
pub fn public_key_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Creates a new file, failing if anything exists at `path`. `mode` is the
/// Unix permission bits (ignored elsewhere).
fn create_new(path: &Path, mode: u32) -> Result<File, Error> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    options.open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            Error::KeyExists {
                path: path.to_owned(),
            }
        } else {
            Error::Io {
                action: "create",
                path: path.to_owned(),
                cause: source,
            }
        }
    })
}

/// Writes `text` and a newline to `file`, flushed to disk.
fn write_line(mut file: File, path: &Path, text: &str) -> Result<(), Error> {
    let io = |cause| Error::Io {
        action: "write",
        path: path.to_owned(),
        cause,
    };
    file.write_all(text.as_bytes()).map_err(io)?;
    file.write_all(b"\n").map_err(io)?;
    file.sync_all().map_err(io)
}

/// Writes `key` to a new file `path` (mode 0600 on Unix) and its verifier
/// key to a new file `path.pub` (mode 0644), one line each.
///
/// Never overwrites: fails with [`Error::KeyExists`] if either file
/// exists, and then leaves no new file behind.
pub fn write_key_pair(path: &Path, key: &SignerKey) -> Result<(), Error> {
    let public_path = public_key_path(path);
    let private = create_new(path, 0o600)?;
    let public = match create_new(&public_path, 0o644) {
        Ok(file) => file,
        Err(err) => {
            drop(private);
            // The file was created just above and is still empty.
            let _ = std::fs::remove_file(path);
            return Err(err);
        }
    };
    let secret = Zeroizing::new(key.to_string());
    write_line(private, path, &secret)?;
    write_line(public, &public_path, &key.verifier().to_string())
}

/// Reads a key file's single line.
fn read_key_text(path: &Path) -> Result<String, Error> {
    let text = std::fs::read_to_string(path).map_err(|cause| Error::Io {
        action: "read",
        path: path.to_owned(),
        cause,
    })?;
    Ok(text.trim().to_owned())
}

/// Wraps a parse error with the file it came from.
fn in_file(path: &Path, source: Error) -> Error {
    Error::KeyFile {
        path: path.to_owned(),
        problem: Box::new(source),
    }
}

/// Reads a signer (private) key file written by [`write_key_pair`].
pub fn read_signer(path: &Path) -> Result<SignerKey, Error> {
    let text = Zeroizing::new(read_key_text(path)?);
    if !text.starts_with(PRIVATE_PREFIX) && VerifierKey::parse(&text).is_ok() {
        let hint = match path.to_str().and_then(|p| p.strip_suffix(".pub")) {
            Some(private) => format!(" (give {private} instead)"),
            None => " (give the file written without the .pub suffix)".to_owned(),
        };
        return Err(Error::WrongKeyKind {
            path: path.to_owned(),
            found: "public verifier",
            wanted: "private signer",
            hint,
        });
    }
    SignerKey::parse(&text).map_err(|err| in_file(path, err))
}

/// Reads a verifier (public) key file written by [`write_key_pair`].
pub fn read_verifier(path: &Path) -> Result<VerifierKey, Error> {
    let text = Zeroizing::new(read_key_text(path)?);
    if text.starts_with(PRIVATE_PREFIX) {
        return Err(Error::WrongKeyKind {
            path: path.to_owned(),
            found: "private signer",
            wanted: "public verifier",
            hint: format!(" (give {} instead)", public_key_path(path).display()),
        });
    }
    VerifierKey::parse(&text).map_err(|err| in_file(path, err))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example key of the C2SP signed-note specification and Go's
    /// `golang.org/x/mod/sumdb/note` documentation.
    const SPEC_SIGNER: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const SPEC_VERIFIER: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";

    #[test]
    fn spec_example_keys_parse_and_match() {
        let signer = SignerKey::parse(SPEC_SIGNER).unwrap();
        assert_eq!(signer.name(), "PeterNeumann");
        assert_eq!(signer.key_id(), 0xc74f20a3);
        assert_eq!(signer.to_string(), SPEC_SIGNER);
        assert_eq!(signer.verifier().to_string(), SPEC_VERIFIER);
        let verifier = VerifierKey::parse(SPEC_VERIFIER).unwrap();
        assert_eq!(verifier, signer.verifier());
    }

    #[test]
    fn generated_keys_round_trip() {
        let signer = SignerKey::generate("audit.example.com/pgtrail").unwrap();
        let text = signer.to_string();
        assert!(text.starts_with("PRIVATE+KEY+audit.example.com/pgtrail+"));
        let again: SignerKey = text.parse().unwrap();
        assert_eq!(again.to_string(), text);
        assert_eq!(again.key_id(), signer.key_id());
        let verifier = signer.verifier();
        let parsed: VerifierKey = verifier.to_string().parse().unwrap();
        assert_eq!(parsed, verifier);
        assert_eq!(parsed.key_id(), signer.key_id());
        assert_ne!(
            SignerKey::generate("x").unwrap().key_id(),
            SignerKey::generate("x").unwrap().key_id()
        );
    }

    #[test]
    fn key_id_depends_on_name_and_key() {
        let a = SignerKey::from_seed("a", &[1; 32]).unwrap();
        assert_ne!(a.key_id(), SignerKey::from_seed("b", &[1; 32]).unwrap().key_id());
        assert_ne!(a.key_id(), SignerKey::from_seed("a", &[2; 32]).unwrap().key_id());
    }

    #[test]
    fn signatures_verify_only_for_the_signed_message_and_key() {
        let signer = SignerKey::from_seed("k", &[3; 32]).unwrap();
        let signature = signer.sign(b"message");
        assert!(signer.verifier().verify(b"message", &signature));
        assert!(!signer.verifier().verify(b"messagf", &signature));
        assert!(!signer.verifier().verify(b"message", &signature[..63]));
        let other = SignerKey::from_seed("k", &[4; 32]).unwrap();
        assert!(!other.verifier().verify(b"message", &signature));
    }

    #[test]
    fn invalid_names_are_refused() {
        for name in ["", "a b", "a+b", "tab\there", "new\nline", "nul\0", "nbsp\u{a0}"] {
            assert!(
                matches!(
                    SignerKey::from_seed(name, &[0; 32]),
                    Err(Error::InvalidKeyName { .. })
                ),
                "{name:?}"
            );
        }
        assert!(SignerKey::from_seed("example.com/log-1", &[0; 32]).is_ok());
    }

    #[test]
    fn malformed_keys_are_refused() {
        let verifier = SPEC_VERIFIER;
        let bad_verifiers = [
            "",
            "PeterNeumann",
            "PeterNeumann+c74f20a3",
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW+x",
            "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumanm+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",
            "PeterNeumann+c74f20a3+Apc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWA",
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW\n",
            "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            SPEC_SIGNER,
        ];
        for text in bad_verifiers {
            assert!(VerifierKey::parse(text).is_err(), "{text:?}");
        }
        assert!(SignerKey::parse(verifier).is_err());
        let wrong_id = SPEC_SIGNER.replace("c74f20a3", "c74f20a4");
        let err = SignerKey::parse(&wrong_id).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
        let err = VerifierKey::parse(&SPEC_VERIFIER.replace("+AR", "+Ah")).unwrap_err();
        assert!(err.to_string().contains("unsupported key type"), "{err}");
    }

    #[test]
    fn key_pair_files_are_written_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.key");
        let key = SignerKey::from_seed("pgtrail-test", &[5; 32]).unwrap();
        write_key_pair(&path, &key).unwrap();

        let public_path = dir.path().join("checkpoint.key.pub");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{key}\n"));
        assert_eq!(
            std::fs::read_to_string(&public_path).unwrap(),
            format!("{}\n", key.verifier())
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(&public_path) & 0o600, 0o600);
            assert_eq!(mode(&public_path) & 0o022, 0);
        }
        assert_eq!(read_signer(&path).unwrap().to_string(), key.to_string());
        assert_eq!(read_verifier(&public_path).unwrap(), key.verifier());

        let other = SignerKey::from_seed("pgtrail-test", &[6; 32]).unwrap();
        let err = write_key_pair(&path, &other).unwrap_err();
        assert!(
            matches!(&err, Error::KeyExists { path: p } if *p == path),
            "{err}"
        );
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(read_signer(&path).unwrap().to_string(), key.to_string());
    }

    #[test]
    fn existing_public_file_is_not_overwritten_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(dir.path().join("k.pub"), "old\n").unwrap();
        let key = SignerKey::from_seed("n", &[5; 32]).unwrap();
        assert!(matches!(
            write_key_pair(&path, &key),
            Err(Error::KeyExists { .. })
        ));
        assert!(!path.exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("k.pub")).unwrap(),
            "old\n"
        );
    }

    #[test]
    fn reading_the_wrong_kind_of_key_file_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let key = SignerKey::from_seed("n", &[5; 32]).unwrap();
        write_key_pair(&path, &key).unwrap();
        let public_path = public_key_path(&path);

        let err = read_signer(&public_path).unwrap_err();
        assert!(matches!(err, Error::WrongKeyKind { .. }), "{err}");
        let message = err.to_string();
        assert!(
            message.contains("k.pub") && message.contains("public verifier"),
            "{message}"
        );
        assert!(message.contains(&format!("give {}", path.display())), "{message}");

        let err = read_verifier(&path).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("private signer") && message.contains("k.pub"),
            "{message}"
        );

        let garbage = dir.path().join("garbage");
        std::fs::write(&garbage, "not a key\n").unwrap();
        for err in [
            read_signer(&garbage).unwrap_err(),
            read_verifier(&garbage).unwrap_err(),
        ] {
            assert!(matches!(err, Error::KeyFile { .. }), "{err}");
            assert!(err.to_string().contains("garbage"), "{err}");
        }
        let missing = dir.path().join("missing");
        let err = read_signer(&missing).unwrap_err();
        assert!(matches!(err, Error::Io { action: "read", .. }), "{err}");
    }

    #[test]
    fn debug_does_not_show_the_private_key() {
        let key = SignerKey::parse(SPEC_SIGNER).unwrap();
        let debug = format!("{key:?}");
        assert!(
            debug.contains("PeterNeumann") && debug.contains("c74f20a3"),
            "{debug}"
        );
        assert!(!debug.contains("AYEKFALV"), "{debug}");
    }
}
