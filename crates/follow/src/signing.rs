//! The signatures of WAL mode's context messages (migration 0016,
//! `80_wal.sql`): the keys the follower verifies them with, read from
//! `pgtrail.wal_message_key`, and the check of one message against the
//! transaction it was decoded in.
//!
//! A signed message is 64 lowercase hex digits, then the JSON object:
//! `sha256(k_out || sha256(k_in || T || ':' || json))`, T the transaction's
//! 64-bit id (`txid_current()`) in decimal. Bound to T, a signature copied
//! into another transaction (a replay) does not verify there; and no role
//! without the keys can make one. A message without a signature (it starts
//! with `{`) is accepted only before `signed_from`, the WAL position from
//! which pgtrail signs every message (pgtrail 0.8.0 wrote it before the
//! upgrade), and only on the cluster that recorded it (migration 0018: a
//! dump restored elsewhere accepts no unsigned message).
//!
//! Keys rotate (`pgtrail wal rotate-key`, [`rotate_key`]): a replaced key
//! stays valid for the messages below its `retired_at` position (those
//! still in the slot), and no further.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio_postgres::Client;

use crate::FollowError;

/// Hex digits of a signature, before the JSON.
pub const SIGNATURE_HEX: usize = 64;

/// How long after reading the keys a message that does not verify may make
/// the follower read them again (a forged message each statement must not
/// become a query each statement).
const RELOAD_AFTER: Duration = Duration::from_secs(1);

/// The two keys of `pgtrail.wal_message_key`.
#[derive(Clone, PartialEq, Eq)]
pub struct MessageKey {
    k_in: [u8; 32],
    k_out: [u8; 32],
}

impl std::fmt::Debug for MessageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MessageKey(..)")
    }
}

impl MessageKey {
    /// The key of two 32-byte halves; `None` when either is not 32 bytes.
    pub fn new(k_in: &[u8], k_out: &[u8]) -> Option<MessageKey> {
        Some(MessageKey {
            k_in: k_in.try_into().ok()?,
            k_out: k_out.try_into().ok()?,
        })
    }

    /// The signature of `json` in transaction `txid`.
    pub fn sign(&self, txid: u64, json: &[u8]) -> [u8; 32] {
        let mut inner = Sha256::new();
        inner.update(self.k_in);
        inner.update(txid.to_string().as_bytes());
        inner.update(b":");
        inner.update(json);
        let inner = inner.finalize();
        let mut outer = Sha256::new();
        outer.update(self.k_out);
        outer.update(inner);
        outer.finalize().into()
    }
}

/// Why a context message is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Unsigned, at or after the position from which every message is signed.
    Unsigned,
    /// A signature that is not this transaction's under any known key.
    BadSignature,
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Rejected::Unsigned => "not signed",
            Rejected::BadSignature => "not signed for its transaction",
        })
    }
}

/// A key the verifier holds, and where it verifies.
#[derive(Debug, Clone)]
struct Held {
    key: MessageKey,
    /// The position below which it verifies; `None`: everywhere (the
    /// current key, a retiring one, one read before during this run that is
    /// no longer in the database).
    below: Option<u64>,
    /// Replaced, and not yet retired when it was read: it may have been
    /// retired since ([`Verifier::retiring_only`]).
    retiring: bool,
}

/// What the follower checks context messages with: the keys it has read,
/// the position from which messages are signed, and the last transaction's
/// 64-bit id (pgoutput gives 32 bits; the next transaction's id is the one
/// nearest to it with those bits).
#[derive(Debug, Clone, Default)]
pub struct Verifier {
    keys: Vec<Held>,
    signed_from: u64,
    reference: u64,
    read_at: Option<Instant>,
    /// The last check's outcome (the JSON's offset in the content), for the
    /// same message checked again: [`crate::transaction::Assembler`] checks
    /// each message before deciding whether to read the keys again, then
    /// takes it; two SHA-256 of the message are saved. Cleared when the
    /// keys change.
    memo: std::cell::Cell<Option<Checked>>,
}

/// A message checked: its transaction, position and content (address and
/// length), and the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Checked {
    txid: u64,
    lsn: u64,
    content: (usize, usize),
    outcome: Result<usize, Rejected>,
}

impl Verifier {
    /// A verifier with `keys`, accepting unsigned messages before
    /// `signed_from`, and `reference` a recent 64-bit transaction id.
    pub fn new(keys: Vec<MessageKey>, signed_from: u64, reference: u64) -> Verifier {
        Verifier {
            keys: keys
                .into_iter()
                .map(|key| Held {
                    key,
                    below: None,
                    retiring: false,
                })
                .collect(),
            signed_from,
            reference,
            read_at: None,
            memo: std::cell::Cell::new(None),
        }
    }

    /// This verifier, taking also `key`, a retired one: valid only for
    /// messages below `below`.
    pub fn with_retired(mut self, key: MessageKey, below: u64) -> Verifier {
        self.memo.set(None);
        self.keys.push(Held {
            key,
            below: Some(below),
            retiring: false,
        });
        self
    }

    /// This verifier, taking also `key`, replaced and not yet retired.
    pub fn with_retiring(mut self, key: MessageKey) -> Verifier {
        self.memo.set(None);
        self.keys.push(Held {
            key,
            below: None,
            retiring: true,
        });
        self
    }

    /// Whether `content` verifies (in transaction `txid` at `lsn`) only
    /// with a key that was retiring when it was read: the rotation may have
    /// retired it since, so the keys are worth reading again before
    /// accepting it.
    pub fn retiring_only(&self, txid: u64, lsn: u64, content: &[u8]) -> bool {
        if !self.keys.iter().any(|held| held.retiring) {
            return false;
        }
        let settled = Verifier {
            keys: self.keys.iter().filter(|held| !held.retiring).cloned().collect(),
            memo: std::cell::Cell::new(None),
            ..self.clone()
        };
        self.check(txid, lsn, content).is_ok() && settled.check(txid, lsn, content).is_err()
    }

    /// Reads the keys from `pgtrail.wal_message_key`, and the reference
    /// from the server's next transaction id.
    pub async fn load(client: &Client) -> Result<Verifier, FollowError> {
        let mut verifier = Verifier::default();
        verifier.read(client, true).await?;
        Ok(verifier)
    }

    /// Reads the keys again (the key row was replaced, or pgtrail
    /// reinstalled) unless it read them less than a second ago; keys read
    /// before are kept.
    pub async fn reload(&mut self, client: &Client) -> Result<(), FollowError> {
        if self.may_reload() {
            self.read(client, false).await?;
        }
        Ok(())
    }

    /// Whether [`Verifier::reload`] would read the keys now.
    pub fn may_reload(&self) -> bool {
        self.read_at.is_none_or(|at| at.elapsed() >= RELOAD_AFTER)
    }

    async fn read(&mut self, client: &Client, reference: bool) -> Result<(), FollowError> {
        let installed: bool = client
            .query_one(
                "SELECT to_regprocedure('pgtrail._wal_message_keys()') IS NOT NULL",
                &[],
            )
            .await
            .map_err(FollowError::database("looking for the key of context messages"))?
            .get(0);
        if !installed {
            return Err(FollowError::NotInstalled);
        }
        if reference {
            let xmax: i64 = client
                .query_one("SELECT txid_snapshot_xmax(txid_current_snapshot())", &[])
                .await
                .map_err(FollowError::database("reading the next transaction id"))?
                .get(0);
            self.reference = u64::try_from(xmax).unwrap_or(0);
        }
        let rows = client
            .query(
                "SELECT kind, k_in, k_out, valid_below::text, signed_from::text FROM pgtrail._wal_message_keys()",
                &[],
            )
            .await
            .map_err(FollowError::database(
                "reading the keys of context messages (pgtrail.wal_message_key and wal_retired_key, readable by pgtrail's owner role)",
            ))?;
        self.read_at = Some(Instant::now());
        let mut keys: Vec<Held> = Vec::new();
        let mut current = false;
        for row in &rows {
            let kind: String = row.get(0);
            let (k_in, k_out): (Vec<u8>, Vec<u8>) = (row.get(1), row.get(2));
            let Some(key) = MessageKey::new(&k_in, &k_out) else {
                continue;
            };
            let below = match kind.as_str() {
                "retired" => Some(
                    row.get::<_, Option<String>>(3)
                        .and_then(|t| crate::follower::parse_lsn(&t))
                        .unwrap_or(0),
                ),
                _ => None,
            };
            if kind == "current" {
                current = true;
                self.signed_from = row
                    .get::<_, Option<String>>(4)
                    .and_then(|t| crate::follower::parse_lsn(&t))
                    .unwrap_or(0);
            }
            keys.push(Held {
                key,
                below,
                retiring: kind == "retiring",
            });
        }
        if !current {
            tracing::warn!(
                "pgtrail follow: pgtrail.wal_message_key has no key: context messages cannot be verified and are ignored"
            );
        }
        // A key read before and no longer in the database (replaced by
        // hand, or pgtrail reinstalled) stays as it was: messages still in
        // the slot may be signed with it.
        for held in std::mem::take(&mut self.keys) {
            if !keys.iter().any(|k| k.key == held.key) {
                keys.push(held);
            }
        }
        self.keys = keys;
        self.memo.set(None);
        Ok(())
    }

    /// Whether a transaction committed at `lsn` is one whose messages are
    /// all signed (so whose changes all follow a message that verifies).
    pub fn signs(&self, lsn: u64) -> bool {
        lsn >= self.signed_from
    }

    /// The 64-bit id of the transaction with 32-bit id `xid`, the one nearest
    /// to the last transaction's (transactions in the slot are far fewer
    /// than 2^31 apart); it becomes the reference for the next one.
    pub fn full_txid(&mut self, xid: u32) -> u64 {
        const HALF: u64 = 1 << 31;
        const EPOCH: u64 = 1 << 32;
        let reference = self.reference;
        let candidate = (reference & !0xffff_ffff) | u64::from(xid);
        let full = if candidate > reference && candidate - reference > HALF && candidate >= EPOCH {
            candidate - EPOCH
        } else if reference > candidate && reference - candidate > HALF {
            candidate + EPOCH
        } else {
            candidate
        };
        self.reference = full;
        full
    }

    /// The JSON of a context message `content` decoded at `lsn` in
    /// transaction `txid`, or why it is ignored.
    pub fn check<'a>(&self, txid: u64, lsn: u64, content: &'a [u8]) -> Result<&'a [u8], Rejected> {
        let at = (content.as_ptr() as usize, content.len());
        if let Some(memo) = self.memo.get()
            && (memo.txid, memo.lsn, memo.content) == (txid, lsn, at)
        {
            return memo.outcome.map(|offset| &content[offset..]);
        }
        let outcome = self.verify(txid, lsn, content);
        self.memo.set(Some(Checked {
            txid,
            lsn,
            content: at,
            outcome: outcome.map(|json| content.len() - json.len()),
        }));
        outcome
    }

    fn verify<'a>(&self, txid: u64, lsn: u64, content: &'a [u8]) -> Result<&'a [u8], Rejected> {
        if content.first() == Some(&b'{') {
            return if lsn < self.signed_from {
                Ok(content)
            } else {
                Err(Rejected::Unsigned)
            };
        }
        let (Some(hex), Some(json)) = (content.get(..SIGNATURE_HEX), content.get(SIGNATURE_HEX..)) else {
            return Err(Rejected::BadSignature);
        };
        let Some(signature) = from_hex(hex) else {
            return Err(Rejected::BadSignature);
        };
        // Constant time: how far a guess matched must not show.
        let mut good = subtle::Choice::from(0);
        for held in &self.keys {
            let in_force = subtle::Choice::from(u8::from(held.below.is_none_or(|below| lsn < below)));
            good |= held.key.sign(txid, json).ct_eq(&signature) & in_force;
        }
        if bool::from(good) {
            Ok(json)
        } else {
            Err(Rejected::BadSignature)
        }
    }
}

/// 64 lowercase hex digits as 32 bytes.
fn from_hex(hex: &[u8]) -> Option<[u8; 32]> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    if hex.len() != 2 * out.len() {
        return None;
    }
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

/// `signature` as the 64 hex digits a signed message starts with.
pub fn to_hex(signature: &[u8; 32]) -> String {
    signature.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(a: u8, b: u8) -> MessageKey {
        MessageKey::new(&[a; 32], &[b; 32]).unwrap_or_else(|| panic!("32 bytes"))
    }

    fn signed(key: &MessageKey, txid: u64, json: &str) -> Vec<u8> {
        let mut out = to_hex(&key.sign(txid, json.as_bytes())).into_bytes();
        out.extend_from_slice(json.as_bytes());
        out
    }

    #[test]
    fn the_signature_is_nmac_over_the_txid_and_the_json() {
        // sha256(k_out || sha256(k_in || "42:{}")), as 80_wal.sql computes it
        // (the stories check the follower against the server's).
        let k = key(2, 1);
        let mut inner = Sha256::new();
        inner.update([2u8; 32]);
        inner.update(b"42:{}");
        let mut outer = Sha256::new();
        outer.update([1u8; 32]);
        outer.update(inner.finalize());
        let expected: [u8; 32] = outer.finalize().into();
        assert_eq!(k.sign(42, b"{}"), expected);
        assert_eq!(to_hex(&expected).len(), SIGNATURE_HEX);
        assert_eq!(from_hex(to_hex(&expected).as_bytes()), Some(expected));
    }

    #[test]
    fn a_message_verifies_only_in_its_own_transaction_and_under_a_known_key() {
        let k = key(7, 9);
        let verifier = Verifier::new(vec![key(1, 1), k.clone()], 1_000, 0);
        let json = r#"{"ctx": 1, "db_user": "app"}"#;
        let message = signed(&k, 77, json);
        assert_eq!(verifier.check(77, 5_000, &message), Ok(json.as_bytes()));
        // Replayed in another transaction.
        assert_eq!(verifier.check(78, 5_000, &message), Err(Rejected::BadSignature));
        // Another key, or the JSON changed.
        assert_eq!(
            verifier.check(77, 5_000, &signed(&key(7, 8), 77, json)),
            Err(Rejected::BadSignature)
        );
        let mut edited = message.clone();
        let last = edited.len() - 3;
        edited[last] = b'X';
        assert_eq!(verifier.check(77, 5_000, &edited), Err(Rejected::BadSignature));
        // Uppercase hex, short, empty: not signatures.
        let upper = String::from_utf8(message.clone())
            .unwrap_or_default()
            .to_uppercase();
        assert_eq!(
            verifier.check(77, 5_000, upper.as_bytes()),
            Err(Rejected::BadSignature)
        );
        assert_eq!(verifier.check(77, 5_000, b"abc"), Err(Rejected::BadSignature));
        assert_eq!(verifier.check(77, 5_000, b""), Err(Rejected::BadSignature));
        // Unsigned: only before the position signing started at.
        assert_eq!(verifier.check(77, 999, json.as_bytes()), Ok(json.as_bytes()));
        assert_eq!(
            verifier.check(77, 1_000, json.as_bytes()),
            Err(Rejected::Unsigned)
        );
        // No keys: nothing signed verifies.
        assert_eq!(
            Verifier::default().check(77, 5_000, &message),
            Err(Rejected::BadSignature)
        );
    }

    #[test]
    fn a_retired_key_verifies_only_below_its_retirement() {
        let (old, new) = (key(3, 4), key(5, 6));
        let verifier = Verifier::new(vec![new.clone()], 0, 0).with_retired(old.clone(), 9_000);
        let json = r#"{"ctx": 0}"#;
        assert_eq!(
            verifier.check(8, 8_999, &signed(&old, 8, json)),
            Ok(json.as_bytes())
        );
        assert_eq!(
            verifier.check(8, 9_000, &signed(&old, 8, json)),
            Err(Rejected::BadSignature),
            "signed with the retired key after its retirement"
        );
        assert_eq!(
            verifier.check(8, 9_000, &signed(&new, 8, json)),
            Ok(json.as_bytes())
        );
        assert_eq!(verifier.check(8, 10, &signed(&new, 8, json)), Ok(json.as_bytes()));
        assert!(!verifier.retiring_only(8, 10, &signed(&old, 8, json)));
        // Retiring: valid everywhere, but worth reading the keys again for.
        let verifier = Verifier::new(vec![new.clone()], 0, 0).with_retiring(old.clone());
        assert_eq!(
            verifier.check(8, 99_999, &signed(&old, 8, json)),
            Ok(json.as_bytes())
        );
        assert!(verifier.retiring_only(8, 99_999, &signed(&old, 8, json)));
        assert!(!verifier.retiring_only(8, 99_999, &signed(&new, 8, json)));
    }

    #[test]
    fn full_txids_are_the_nearest_to_the_last_one() {
        let epoch = 1u64 << 32;
        let mut v = Verifier::new(Vec::new(), 0, 3 * epoch + 100);
        assert_eq!(v.full_txid(90), 3 * epoch + 90, "an older transaction");
        assert_eq!(v.full_txid(200), 3 * epoch + 200);
        // Across the wrap of the low 32 bits, forwards and back.
        let mut v = Verifier::new(Vec::new(), 0, 3 * epoch + 0xffff_fff0);
        assert_eq!(v.full_txid(5), 4 * epoch + 5);
        assert_eq!(v.full_txid(0xffff_fff8), 3 * epoch + 0xffff_fff8);
        // In the first epoch there is none before.
        let mut v = Verifier::new(Vec::new(), 0, 10);
        assert_eq!(v.full_txid(0xffff_fff0), 0xffff_fff0);
    }
}
