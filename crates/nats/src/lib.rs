//! WAL mode's NATS JetStream sink (`pgtrail follow --sink nats://HOST:PORT[/PREFIX]`):
//! each change the follower decodes becomes one JSON message on the subject
//! `PREFIX.DATABASE.SCHEMA.TABLE` (PREFIX `pgtrail` unless the URL's path
//! names another) of a JetStream stream (`PGTRAIL` unless `--stream` names
//! another) that it creates when missing, capturing `PREFIX.>`.
//!
//! Exactly once across follower restarts: a batch is published, and every
//! message's acknowledgement awaited, before the trail's transaction commits
//! and before the slot moves on. A follower stopped in between publishes
//! the batch again: each message carries its position (`LSN:SEQ`, the end
//! LSN of its transaction and its order in it) in the header
//! `Pgtrail-Position` and as `Nats-Msg-Id`, so JetStream drops a message it
//! already holds (within the stream's duplicate window), and the sink, which
//! reads the last position of its database's subjects when it starts,
//! skips every change at or before it (whatever the window).

use std::collections::VecDeque;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage, stream::LastRawMessageErrorKind};
use pgtrail_follow::follower::{lsn_text, parse_lsn};
use pgtrail_follow::sink::{Publish, Sink, SinkChange, SinkError};
use serde_json::{Value as Json, json};

/// The stream's name unless `--stream` gives another.
pub const DEFAULT_STREAM: &str = "PGTRAIL";
/// The subjects' first token unless the URL's path gives another.
pub const DEFAULT_PREFIX: &str = "pgtrail";
/// The header holding a message's position.
pub const POSITION_HEADER: &str = "Pgtrail-Position";

/// Acknowledgements awaited at most at once.
const IN_FLIGHT: usize = 1024;

/// What went wrong with the NATS sink.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error(
        "{url:?} is not a NATS URL\n  help: give nats://HOST:PORT, optionally with a subject prefix: nats://HOST:PORT/PREFIX ({reason})"
    )]
    Url { url: String, reason: String },
    #[error(
        "cannot connect to NATS at {server}: {error}\n  help: start nats-server with JetStream (nats-server -js) or fix --sink; nothing was read from the slot"
    )]
    Connect { server: String, error: String },
    #[error(
        "NATS at {server} did not give the JetStream stream {stream}: {error}\n  help: the server needs JetStream enabled (nats-server -js), and the stream, if it exists, must capture {prefix}.>"
    )]
    Stream {
        server: String,
        stream: String,
        prefix: String,
        error: String,
    },
}

/// Where the sink publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port`.
    pub server: String,
    pub prefix: String,
    pub stream: String,
}

impl Target {
    /// Reads `nats://HOST[:PORT][/PREFIX]` (port 4222 by default).
    pub fn parse(url: &str, stream: Option<&str>) -> Result<Target, NatsError> {
        let bad = |reason: &str| NatsError::Url {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let rest = url
            .strip_prefix("nats://")
            .ok_or_else(|| bad("it must start with nats://"))?;
        let (server, prefix) = match rest.split_once('/') {
            Some((server, prefix)) => (server, prefix.trim_end_matches('/')),
            None => (rest, ""),
        };
        if server.is_empty() {
            return Err(bad("no host"));
        }
        let server = if server.contains(':') {
            let port = server.rsplit_once(':').map(|(_, p)| p).unwrap_or("");
            if port.parse::<u16>().is_err() {
                return Err(bad("the port is not a number"));
            }
            server.to_string()
        } else {
            format!("{server}:4222")
        };
        let prefix = if prefix.is_empty() { DEFAULT_PREFIX } else { prefix };
        if prefix
            .split('.')
            .any(|t| t.is_empty() || t.chars().any(|c| c.is_whitespace() || c == '*' || c == '>'))
        {
            return Err(bad(
                "the prefix must be subject tokens separated by dots, without wildcards",
            ));
        }
        let stream = stream.unwrap_or(DEFAULT_STREAM);
        if stream.is_empty()
            || stream
                .chars()
                .any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
        {
            return Err(bad("a stream name has no spaces, dots, wildcards or slashes"));
        }
        Ok(Target {
            server,
            prefix: prefix.to_string(),
            stream: stream.to_string(),
        })
    }

    /// The subject of a change of `schema.table` in `database`.
    pub fn subject(&self, database: &str, schema: &str, table: &str) -> String {
        format!(
            "{}.{}.{}.{}",
            self.prefix,
            token(database),
            token(schema),
            token(table)
        )
    }
}

/// A name as one subject token: bytes other than ASCII letters, digits,
/// `_` and `-` as `%XX` (so `.`, spaces and wildcards cannot split or widen
/// a subject; `%` itself is escaped).
pub fn token(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `LSN:SEQ` back to its parts.
fn parse_position(text: &str) -> Option<(u64, u32)> {
    let (lsn, seq) = text.rsplit_once(':')?;
    Some((parse_lsn(lsn)?, seq.parse().ok()?))
}

/// The NATS JetStream sink.
pub struct NatsSink {
    target: Target,
    context: jetstream::Context,
    stream: jetstream::stream::Stream,
    /// The last position held by the stream for the database, once read.
    last: Option<(String, Option<(u64, u32)>)>,
}

impl NatsSink {
    /// Connects, and creates the stream when it does not exist.
    pub async fn connect(target: Target) -> Result<NatsSink, NatsError> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .name("pgtrail follow")
            .connect(target.server.as_str())
            .await
            .map_err(|e| NatsError::Connect {
                server: target.server.clone(),
                error: e.to_string(),
            })?;
        let context = jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(10))
            .ack_timeout(Duration::from_secs(10))
            .build(client);
        let stream = context
            .get_or_create_stream(jetstream::stream::Config {
                name: target.stream.clone(),
                subjects: vec![format!("{}.>", target.prefix)],
                description: Some("pgtrail: row changes decoded by pgtrail follow".into()),
                ..Default::default()
            })
            .await
            .map_err(|e| NatsError::Stream {
                server: target.server.clone(),
                stream: target.stream.clone(),
                prefix: target.prefix.clone(),
                error: e.to_string(),
            })?;
        Ok(NatsSink {
            target,
            context,
            stream,
            last: None,
        })
    }

    /// The last position the stream holds for `database`.
    pub async fn last_position(&self, database: &str) -> Result<Option<(u64, u32)>, SinkError> {
        let subject = format!("{}.{}.>", self.target.prefix, token(database));
        match self.stream.get_last_raw_message_by_subject(&subject).await {
            Ok(message) => {
                let position = message
                    .headers
                    .get(POSITION_HEADER)
                    .map(|v| v.as_str().to_string())
                    .unwrap_or_default();
                parse_position(&position).map(Some).ok_or_else(|| {
                    SinkError(format!(
                        "the last message on {subject} (sequence {}) has no {POSITION_HEADER} header: is another program publishing there?",
                        message.sequence
                    ))
                })
            }
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(SinkError(format!("reading the last message on {subject}: {e}"))),
        }
    }

    async fn publish_all(&mut self, database: &str, changes: &[SinkChange]) -> Result<u64, SinkError> {
        let last = match &self.last {
            Some((db, last)) if db == database => *last,
            _ => {
                let last = self.last_position(database).await?;
                self.last = Some((database.to_string(), last));
                last
            }
        };
        let mut pending = VecDeque::new();
        let mut published = 0;
        let mut newest = last;
        for change in changes {
            let position = (change.end_lsn, change.seq);
            if last.is_some_and(|l| position <= l) {
                continue;
            }
            let mut payload = match &change.row {
                Json::Object(row) => row.clone(),
                _ => serde_json::Map::new(),
            };
            payload.insert("database".into(), json!(database));
            payload.insert("position".into(), json!(change.position()));
            payload.insert("lsn".into(), json!(lsn_text(change.end_lsn)));
            payload.insert("seq".into(), json!(change.seq));
            let body = serde_json::to_vec(&Json::Object(payload))
                .map_err(|e| SinkError(format!("encoding a message: {e}")))?;
            let subject = self
                .target
                .subject(database, &change.table_schema, &change.table_name);
            let message = PublishMessage::build()
                .payload(body.into())
                .message_id(format!("{}:{}", token(database), change.position()))
                .header(POSITION_HEADER, change.position().as_str());
            let ack = self
                .context
                .send_publish(subject, message)
                .await
                .map_err(|e| SinkError(format!("publishing: {e}")))?;
            pending.push_back(ack);
            if pending.len() >= IN_FLIGHT {
                if let Some(ack) = pending.pop_front() {
                    published += acknowledged(ack).await?;
                }
            }
            newest = Some(position);
        }
        while let Some(ack) = pending.pop_front() {
            published += acknowledged(ack).await?;
        }
        self.last = Some((database.to_string(), newest));
        Ok(published)
    }
}

/// Waits for one acknowledgement: 1 when the stream stored the message, 0
/// when it held it already (a duplicate within its window).
async fn acknowledged(ack: jetstream::context::PublishAckFuture) -> Result<u64, SinkError> {
    let ack = ack
        .await
        .map_err(|e| SinkError(format!("no acknowledgement from JetStream: {e}")))?;
    Ok(u64::from(!ack.duplicate))
}

impl Sink for NatsSink {
    fn publish<'a>(&'a mut self, database: &'a str, changes: &'a [SinkChange]) -> Publish<'a> {
        Box::pin(async move {
            let result = self.publish_all(database, changes).await;
            if result.is_err() {
                // What the stream holds is read again before the next batch.
                self.last = None;
            }
            result
        })
    }

    fn describe(&self) -> String {
        format!(
            "NATS JetStream at {} (stream {})",
            self.target.server, self.target.stream
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Target::parse("nats://localhost:4333", None).unwrap();
        assert_eq!(
            (t.server.as_str(), t.prefix.as_str(), t.stream.as_str()),
            ("localhost:4333", "pgtrail", "PGTRAIL")
        );
        let t = Target::parse("nats://nats.internal/audit.eu", Some("AUDIT")).unwrap();
        assert_eq!(
            (t.server.as_str(), t.prefix.as_str(), t.stream.as_str()),
            ("nats.internal:4222", "audit.eu", "AUDIT")
        );
        for bad in [
            "http://x:1",
            "nats://",
            "nats://h:port",
            "nats://h:1/a..b",
            "nats://h:1/a.*",
        ] {
            assert!(Target::parse(bad, None).is_err(), "{bad}");
        }
        assert!(Target::parse("nats://h:1", Some("a.b")).is_err());
    }

    #[test]
    fn subjects_escape_what_would_split_them() {
        let t = Target::parse("nats://h:1", None).unwrap();
        assert_eq!(t.subject("app", "public", "orders"), "pgtrail.app.public.orders");
        assert_eq!(
            t.subject("my db", "a.b", "x*>%"),
            "pgtrail.my%20db.a%2Eb.x%2A%3E%25"
        );
        assert_eq!(token("été"), "%C3%A9t%C3%A9");
    }

    #[test]
    fn positions_round_trip() {
        assert_eq!(parse_position("1/5A:3"), Some((0x1_0000_005A, 3)));
        assert_eq!(parse_position("1/5A"), None);
    }
}
