//! Decoded messages grouped into committed transactions: each row change
//! with the context (the `pgtrail` logical message of the context trigger)
//! in force when it was made, and unchanged TOASTed values filled in from
//! the old row. [`assemble`] takes a batch read over SQL; [`Assembler`]
//! takes a stream, one message at a time. With a [`Verifier`], a context
//! message whose signature is not its transaction's is ignored, as if it
//! had not been emitted (the changes after it keep the context before it),
//! with a warning; and a change that comes before any message that verifies
//! in its transaction is counted ([`Transaction::unsigned`]): the context
//! trigger emits one before every transaction's first change, unless a role
//! set its mark to keep it quiet.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tracing::warn;

use crate::context_rows::ContextFields;
use crate::pgoutput::{Column, Message, Value};
use crate::signing::{Rejected, Verifier};

/// A relation as a Relation message described it. The same relation may be
/// described again, with other columns, after DDL: each description is a
/// version of its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RelationVersion {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub columns: Vec<Column>,
}

/// A row change of one relation, its tuples in the relation's column order.
#[derive(Debug, Clone, PartialEq)]
pub struct RowChange {
    /// The index of its relation's version in what [`assemble`] returns.
    pub relation: usize,
    /// `I`, `U`, `D` or `T` (one TRUNCATE change per relation).
    pub op: char,
    /// The context number (`ctx`) in force.
    pub ctx: i64,
    pub old: Option<Vec<Value>>,
    pub new: Option<Vec<Value>>,
}

/// One committed transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Transaction {
    pub xid: u32,
    /// Microseconds since 2000-01-01 00:00 UTC.
    pub commit_time: i64,
    pub end_lsn: u64,
    pub changes: Vec<RowChange>,
    /// The context messages, by ctx (shared with the batch that writes
    /// them, not copied).
    pub contexts: BTreeMap<i64, Arc<ContextMessage>>,
    /// Unchanged TOASTed values that could not be filled (no old row).
    pub unfilled: usize,
    /// Context messages ignored: not signed for this transaction.
    pub rejected: usize,
    /// Changes before any context message that verifies in this
    /// transaction, when it commits at or after the position from which
    /// every message is signed (0 without a verifier).
    pub unsigned: usize,
    /// The last of them: its position and why.
    pub last_rejected: Option<(u64, Rejected)>,
}

/// A context message of the context trigger: its JSON text, kept as it
/// came (written to the server as it is), once checked to be JSON, and
/// its fields as `pgtrail.transaction` records them, read in the same
/// pass (`None`: the server reads them, [`crate::context_rows`]).
#[derive(Debug, Clone)]
pub struct ContextMessage {
    text: String,
    fields: Option<ContextFields>,
}

impl PartialEq for ContextMessage {
    fn eq(&self, other: &Self) -> bool {
        // The fields are read from the text.
        self.text == other.text
    }
}

impl Eq for ContextMessage {}

/// The one field the follower reads of a context message whose fields
/// are left to the server; the others are checked as JSON and skipped,
/// not built.
#[derive(serde::Deserialize)]
struct ContextNumber {
    #[serde(default)]
    ctx: Option<serde_json::Value>,
}

impl ContextMessage {
    /// The message's context number (0 when it has none) and the message,
    /// `None` when `content` is not a JSON object.
    pub fn read(content: Vec<u8>) -> Option<(i64, ContextMessage)> {
        Self::read_text(String::from_utf8(content).ok()?)
    }

    fn read_text(text: String) -> Option<(i64, ContextMessage)> {
        // An object only (serde would read an array's items as the fields).
        if !text.trim_start().starts_with('{') {
            return None;
        }
        // One pass for the number and the fields; a second, for the
        // number alone, only when the fields are left to the server.
        if let Some((ctx, fields)) = crate::context_rows::read(&text) {
            return Some((
                ctx,
                ContextMessage {
                    text,
                    fields: Some(fields),
                },
            ));
        }
        let head: ContextNumber = serde_json::from_str(&text).ok()?;
        let ctx = head.ctx.as_ref().and_then(serde_json::Value::as_i64).unwrap_or(0);
        Some((ctx, ContextMessage { text, fields: None }))
    }

    /// The message as JSON text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Its fields, `None` when the server reads them.
    pub fn fields(&self) -> Option<&ContextFields> {
        self.fields.as_ref()
    }
}

impl tokio_postgres::types::ToSql for ContextMessage {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        // jsonb's binary form: its version (1), then the text.
        if *ty == tokio_postgres::types::Type::JSONB {
            out.extend_from_slice(&[1]);
        }
        out.extend_from_slice(self.text.as_bytes());
        Ok(tokio_postgres::types::IsNull::No)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        matches!(
            *ty,
            tokio_postgres::types::Type::JSONB | tokio_postgres::types::Type::JSON
        )
    }

    tokio_postgres::types::to_sql_checked!();
}

/// Groups messages into transactions, with the relation versions their
/// changes refer to. Non-transactional messages and messages of other
/// prefixes are skipped, and changes of relations never described; a
/// transaction without its commit at the end of `messages` is left out.
/// Context messages are not verified (see [`Assembler::verifying`]).
pub fn assemble(messages: Vec<Message>) -> (Vec<Transaction>, Vec<RelationVersion>) {
    let mut assembler = Assembler::default();
    let out = messages
        .into_iter()
        .filter_map(|message| assembler.push(message))
        .collect();
    (out, assembler.relations)
}

/// [`assemble`], one message at a time, for a stream: the relations
/// described (pgoutput describes each once per replication session, and
/// again after DDL) and the open transaction are kept between messages.
#[derive(Debug, Default)]
pub struct Assembler {
    relations: Vec<RelationVersion>,
    latest: HashMap<u32, usize>,
    current: Option<Transaction>,
    ctx: i64,
    /// Checks context messages; `None` (tests of decoding): all are taken.
    verifier: Option<Verifier>,
    /// The open transaction's 64-bit id, as the verifier reckons it.
    txid: u64,
    /// Whether the open transaction's changes must come after a verified
    /// context message (a verifier, and signed from before its commit),
    /// and whether one has come.
    signed: bool,
    verified: bool,
}

impl Assembler {
    /// An assembler that takes only the context messages `verifier` accepts.
    pub fn verifying(verifier: Verifier) -> Assembler {
        Assembler {
            verifier: Some(verifier),
            ..Assembler::default()
        }
    }

    /// The verifier, to read its keys again ([`Assembler::key_may_be_stale`]).
    pub fn verifier_mut(&mut self) -> Option<&mut Verifier> {
        self.verifier.as_mut()
    }

    /// The relation versions described and the verifier (with the last
    /// transaction's id): what the next batch's assembler starts from.
    pub fn finish(self) -> (Vec<RelationVersion>, Option<Verifier>) {
        (self.relations, self.verifier)
    }

    /// Whether `message` is a context message the verifier would ignore now
    /// (or accept only with a key that was being retired) while it may read
    /// its keys again: the key may have been replaced, or retired, since it
    /// read them. The caller reads it ([`Verifier::reload`]) before
    /// [`Assembler::push`].
    pub fn key_may_be_stale(&self, message: &Message) -> bool {
        let (Some(verifier), Some(_)) = (&self.verifier, &self.current) else {
            return false;
        };
        match message {
            Message::Message {
                transactional: true,
                prefix,
                content,
                lsn,
            } if prefix == "pgtrail" => {
                verifier.may_reload()
                    && (verifier.check(self.txid, *lsn, content).is_err()
                        || verifier.retiring_only(self.txid, *lsn, content))
            }
            _ => false,
        }
    }

    /// The relation versions described so far: a change's `relation` is an
    /// index into them, stable for the assembler's life.
    pub fn relations(&self) -> &[RelationVersion] {
        &self.relations
    }

    /// Whether a transaction has begun and not yet committed.
    pub fn in_transaction(&self) -> bool {
        self.current.is_some()
    }

    /// Takes one message; returns the transaction its commit completes.
    pub fn push(&mut self, message: Message) -> Option<Transaction> {
        match message {
            Message::Begin {
                xid,
                commit_time,
                final_lsn,
            } => {
                self.ctx = 0;
                self.verified = false;
                self.signed = false;
                if let Some(verifier) = self.verifier.as_mut() {
                    self.txid = verifier.full_txid(xid);
                    self.signed = verifier.signs(final_lsn);
                }
                self.current = Some(Transaction {
                    xid,
                    commit_time,
                    end_lsn: 0,
                    changes: Vec::new(),
                    contexts: BTreeMap::new(),
                    unfilled: 0,
                    rejected: 0,
                    unsigned: 0,
                    last_rejected: None,
                });
            }
            Message::Commit {
                end_lsn, commit_time, ..
            } => {
                if let Some(mut tx) = self.current.take() {
                    tx.end_lsn = end_lsn;
                    tx.commit_time = commit_time;
                    return Some(tx);
                }
            }
            Message::Relation {
                id,
                schema,
                name,
                columns,
                ..
            } => {
                let version = RelationVersion {
                    oid: id,
                    schema,
                    name,
                    columns,
                };
                // Described again as it was (a new session of the same
                // assembler): the same version.
                let same = self
                    .latest
                    .get(&id)
                    .is_some_and(|&i| self.relations.get(i) == Some(&version));
                if !same {
                    self.latest.insert(id, self.relations.len());
                    self.relations.push(version);
                }
            }
            Message::Message {
                transactional: true,
                prefix,
                content,
                lsn,
            } if prefix == "pgtrail" => {
                let tx = self.current.as_mut()?;
                let read = match &self.verifier {
                    None => ContextMessage::read(content),
                    Some(verifier) => match verifier.check(self.txid, lsn, &content) {
                        Ok(json) => std::str::from_utf8(json)
                            .ok()
                            .and_then(|json| ContextMessage::read_text(json.to_string())),
                        Err(why) => {
                            tx.rejected += 1;
                            tx.last_rejected = Some((lsn, why));
                            warn!(
                                xid = tx.xid,
                                txid = self.txid,
                                lsn = %crate::follower::lsn_text(lsn),
                                "pgtrail follow: ignored a context message {why} (emitted by hand, or copied from another transaction): \
                                 the transaction's changes are recorded without it"
                            );
                            None
                        }
                    },
                };
                if let Some((ctx, message)) = read {
                    self.verified = true;
                    self.ctx = ctx;
                    tx.contexts.insert(ctx, Arc::new(message));
                }
            }
            Message::Insert { relation, new } => {
                self.change(relation, 'I', None, Some(new));
            }
            Message::Update {
                relation,
                old,
                mut new,
            } => {
                if let Some(tx) = self.current.as_mut() {
                    tx.unfilled += fill_unchanged(&mut new, old.as_deref());
                }
                self.change(relation, 'U', old, Some(new));
            }
            Message::Delete { relation, old } => {
                self.change(relation, 'D', Some(old), None);
            }
            Message::Truncate {
                relations: truncated, ..
            } => {
                for oid in truncated {
                    self.change(oid, 'T', None, None);
                }
            }
            Message::Message { .. } | Message::Ignored(_) => {}
        }
        None
    }

    fn change(&mut self, oid: u32, op: char, old: Option<Vec<Value>>, new: Option<Vec<Value>>) {
        if let (Some(tx), Some(&relation)) = (self.current.as_mut(), self.latest.get(&oid)) {
            if self.signed && !self.verified {
                tx.unsigned += 1;
            }
            tx.changes.push(RowChange {
                relation,
                op,
                ctx: self.ctx,
                old,
                new,
            });
        }
    }
}

/// Replaces the unchanged TOASTed values of `new` by the old row's values
/// of the same columns (with REPLICA IDENTITY FULL the old row is whole).
/// Returns how many could not be filled; they become NULL.
fn fill_unchanged(new: &mut [Value], old: Option<&[Value]>) -> usize {
    let mut unfilled = 0;
    for (i, value) in new.iter_mut().enumerate() {
        if *value == Value::Unchanged {
            match old.and_then(|o| o.get(i)) {
                Some(v @ (Value::Text(_) | Value::Null)) => *value = v.clone(),
                _ => {
                    unfilled += 1;
                    *value = Value::Null;
                }
            }
        }
    }
    unfilled
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    fn begin(xid: u32) -> Message {
        Message::Begin {
            final_lsn: 0,
            commit_time: 5,
            xid,
        }
    }

    fn commit(end_lsn: u64) -> Message {
        Message::Commit {
            commit_lsn: 0,
            end_lsn,
            commit_time: 6,
        }
    }

    fn context(ctx: i64) -> Message {
        Message::Message {
            transactional: true,
            lsn: 0,
            prefix: "pgtrail".into(),
            content: format!("{{\"ctx\": {ctx}, \"actor_id\": \"a{ctx}\"}}").into_bytes(),
        }
    }

    fn relation(oid: u32) -> Message {
        Message::Relation {
            id: oid,
            schema: "public".into(),
            name: format!("t{oid}"),
            replica_identity: b'f',
            columns: Vec::new(),
        }
    }

    #[test]
    fn changes_take_the_context_in_force_and_toast_is_filled() {
        let messages = vec![
            relation(1),
            relation(2),
            begin(10),
            Message::Insert {
                relation: 1,
                new: vec![text("1")],
            },
            context(1),
            Message::Update {
                relation: 1,
                old: Some(vec![text("1"), text("big"), text("x")]),
                new: vec![text("1"), Value::Unchanged, text("y")],
            },
            Message::Message {
                transactional: true,
                lsn: 0,
                prefix: "other".into(),
                content: b"{\"ctx\": 9}".to_vec(),
            },
            context(2),
            Message::Truncate {
                relations: vec![1, 2],
                cascade: false,
                restart_identity: false,
            },
            commit(100),
            begin(11),
            Message::Delete {
                relation: 1,
                old: vec![text("1")],
            },
        ];
        let (txs, relations) = assemble(messages);
        assert_eq!(relations.len(), 2);
        assert_eq!(txs.len(), 1, "the transaction without its commit is left out");
        let tx = &txs[0];
        assert_eq!((tx.xid, tx.end_lsn, tx.commit_time, tx.unfilled), (10, 100, 6, 0));
        let ctxs: Vec<(char, i64)> = tx.changes.iter().map(|c| (c.op, c.ctx)).collect();
        assert_eq!(ctxs, vec![('I', 0), ('U', 1), ('T', 2), ('T', 2)]);
        assert_eq!(tx.changes[3].relation, 1, "relation versions by index");
        assert_eq!(tx.changes[1].new, Some(vec![text("1"), text("big"), text("y")]));
        assert_eq!(tx.contexts.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn a_stream_keeps_relations_and_the_open_transaction_between_messages() {
        let mut assembler = Assembler::default();
        assert_eq!(assembler.push(relation(1)), None);
        assert_eq!(assembler.push(begin(10)), None);
        assert!(assembler.in_transaction());
        assert_eq!(
            assembler.push(Message::Insert {
                relation: 1,
                new: vec![text("1")],
            }),
            None
        );
        let tx = assembler.push(commit(100)).expect("the commit completes it");
        assert!(!assembler.in_transaction());
        assert_eq!((tx.xid, tx.end_lsn, tx.changes.len()), (10, 100, 1));
        // Described once per session: a later transaction still knows it, and
        // the same description again is the same version.
        assembler.push(relation(1));
        assembler.push(begin(11));
        assembler.push(Message::Delete {
            relation: 1,
            old: vec![text("1")],
        });
        let tx = assembler.push(commit(200)).expect("committed");
        assert_eq!(tx.changes[0].relation, 0);
        assert_eq!(assembler.relations().len(), 1);
        // Described otherwise (DDL): a new version for the changes after it.
        assembler.push(Message::Relation {
            id: 1,
            schema: "public".into(),
            name: "renamed".into(),
            replica_identity: b'f',
            columns: Vec::new(),
        });
        assembler.push(begin(12));
        assembler.push(Message::Delete {
            relation: 1,
            old: vec![text("2")],
        });
        let tx = assembler.push(commit(300)).expect("committed");
        assert_eq!(tx.changes[0].relation, 1);
        assert_eq!(assembler.relations()[1].name, "renamed");
    }

    #[test]
    fn unchanged_values_without_an_old_row_are_counted() {
        let (txs, _) = assemble(vec![
            relation(1),
            begin(1),
            Message::Update {
                relation: 1,
                old: None,
                new: vec![text("1"), Value::Unchanged],
            },
            commit(2),
        ]);
        assert_eq!(txs[0].unfilled, 1);
        assert_eq!(txs[0].changes[0].new, Some(vec![text("1"), Value::Null]));
    }

    #[test]
    fn a_context_message_not_signed_for_its_transaction_is_ignored() {
        use crate::signing::{MessageKey, Verifier, to_hex};
        let key = MessageKey::new(&[3; 32], &[4; 32]).unwrap_or_else(|| panic!("32 bytes"));
        let signed = |txid: u64, json: &str| {
            let mut out = to_hex(&key.sign(txid, json.as_bytes())).into_bytes();
            out.extend_from_slice(json.as_bytes());
            out
        };
        let message = |content: Vec<u8>| Message::Message {
            transactional: true,
            lsn: 500,
            prefix: "pgtrail".into(),
            content,
        };
        let epoch = 5u64 << 32;
        let mut assembler = Assembler::verifying(Verifier::new(vec![key.clone()], 0, epoch + 10));
        let insert = || Message::Insert {
            relation: 1,
            new: vec![text("1")],
        };
        let genuine = r#"{"ctx": 0, "db_user": "app"}"#;
        let forged = r#"{"ctx": 0, "db_user": "root"}"#;
        for m in [
            relation(1),
            begin(12),
            message(signed(epoch + 12, genuine)),
            insert(),
            // Forged: unsigned, signed for the transaction before, numbered.
            message(forged.as_bytes().to_vec()),
            message(signed(epoch + 11, forged)),
            message(signed(epoch + 12, genuine).into_iter().chain(*b" ").collect()),
            insert(),
        ] {
            assert_eq!(assembler.push(m), None);
        }
        let tx = assembler.push(commit(600)).unwrap_or_else(|| panic!("committed"));
        assert_eq!(tx.rejected, 3);
        assert_eq!(tx.contexts.len(), 1);
        assert_eq!(tx.contexts.get(&0).map(|m| m.as_str()), Some(genuine));
        assert_eq!(tx.changes.iter().map(|c| c.ctx).collect::<Vec<_>>(), vec![0, 0]);
        // The next transaction: its own id (reckoned from the last one's).
        assembler.push(begin(13));
        assembler.push(message(signed(epoch + 13, genuine)));
        let tx = assembler.push(commit(700)).unwrap_or_else(|| panic!("committed"));
        assert_eq!((tx.rejected, tx.contexts.len()), (0, 1));
    }

    #[test]
    fn a_context_message_is_kept_as_its_text_and_read_for_its_number() {
        let text = r#"{"actor_id": "a\"b", "ctx": 3, "facts": {"x": [1.50]}}"#;
        let (ctx, message) = ContextMessage::read(text.as_bytes().to_vec()).unwrap_or_else(|| panic!("read"));
        assert_eq!((ctx, message.as_str()), (3, text));
        assert_eq!(
            ContextMessage::read(b"{\"actor_id\": \"a\"}".to_vec()).map(|r| r.0),
            Some(0)
        );
        // The number and the fields in one reading; a number that is not a
        // plain integer reads as 0 as before, the fields left to the server.
        let number_and_fields = |text: &str| {
            ContextMessage::read(text.as_bytes().to_vec()).map(|(ctx, m)| (ctx, m.fields().is_some()))
        };
        assert_eq!(
            number_and_fields(r#"{"ctx": 4, "actor_id": "a"}"#),
            Some((4, true))
        );
        assert_eq!(
            number_and_fields(r#"{"ctx": null, "actor_id": "a"}"#),
            Some((0, true))
        );
        assert_eq!(number_and_fields(r#"{"ctx": "2"}"#), Some((0, false)));
        assert_eq!(
            number_and_fields(r#"{"ctx": 2.0, "actor_id": "a"}"#),
            Some((0, false))
        );
        assert_eq!(
            number_and_fields(r#"{"ctx": 18446744073709551615}"#),
            Some((0, false))
        );
        assert_eq!(
            number_and_fields(r#"{"ctx": 5, "actor_id": 7}"#),
            Some((5, false))
        );
        assert_eq!(number_and_fields(r#"{"ctx": 5, "ctx": 6}"#), None);
        for broken in [&b"{\"ctx\": 1"[..], b"{\"ctx\": 1} x", b"[1]", b"\xff", b""] {
            assert_eq!(ContextMessage::read(broken.to_vec()), None, "{broken:?}");
        }
    }

    /// A change before any verified context message, in a transaction
    /// committed at or after the position from which messages are signed,
    /// is counted; one after a verified message, or in a transaction from
    /// before that position, is not; a rejected message does not count as
    /// one.
    #[test]
    fn changes_before_any_verified_message_are_counted_as_unsigned() {
        use crate::signing::{MessageKey, to_hex};
        let key = MessageKey::new(&[3; 32], &[4; 32]).unwrap_or_else(|| panic!("32 bytes"));
        // The reference 100: the first Begin's xid 100 is txid 100.
        let verifier = Verifier::new(vec![key.clone()], 1_000, 100);
        let signed = |txid: u64, json: &str| {
            let mut out = to_hex(&key.sign(txid, json.as_bytes())).into_bytes();
            out.extend_from_slice(json.as_bytes());
            Message::Message {
                transactional: true,
                lsn: 2_000,
                prefix: "pgtrail".into(),
                content: out,
            }
        };
        let insert = || Message::Insert {
            relation: 1,
            new: vec![text("1")],
        };
        let begin_at = |xid: u32, final_lsn: u64| Message::Begin {
            final_lsn,
            commit_time: 5,
            xid,
        };
        let mut assembler = Assembler::verifying(verifier);
        let mut txs = Vec::new();
        for message in [
            relation(1),
            // Suppressed: changes, then a genuine message (of ctx 1).
            begin_at(100, 5_000),
            insert(),
            insert(),
            signed(100, r#"{"ctx": 1}"#),
            insert(),
            commit(5_100),
            // The trigger's message first: nothing counted.
            begin_at(101, 6_000),
            signed(101, r#"{"ctx": 0}"#),
            insert(),
            commit(6_100),
            // A message signed for another transaction is no message.
            begin_at(102, 7_000),
            signed(101, r#"{"ctx": 0}"#),
            insert(),
            commit(7_100),
            // Committed before signed_from: not counted.
            begin_at(103, 900),
            insert(),
            commit(950),
        ] {
            txs.extend(assembler.push(message));
        }
        let counted: Vec<(u32, usize, usize)> = txs.iter().map(|t| (t.xid, t.unsigned, t.rejected)).collect();
        assert_eq!(counted, vec![(100, 2, 0), (101, 0, 0), (102, 1, 1), (103, 0, 0)]);
        // Without a verifier (decoding alone), nothing is counted.
        let (plain, _) = assemble(vec![relation(1), begin(10), insert(), commit(20)]);
        assert_eq!(plain[0].unsigned, 0);
    }
}
