//! The `pgtrail.transaction` rows of a batch, read here from the context
//! messages and written by binary COPY, as `pgtrail._follow_write_context`
//! (80_wal.sql) writes them from the messages as `jsonb`: the same row,
//! field by field. Parsing each message as `jsonb` in the server, reading
//! its fields with `->>` and casting the timestamps from text cost the
//! follower's backend about as much per transaction as the COPY of its
//! four trail rows; here the message is read once, and the server only
//! stores the row. A message this reading is not sure to read as the
//! server would (a field of an unexpected JSON type, a timestamp in
//! another form, a text with a NUL) sends its whole batch down the server's
//! path instead, so the trail is the same either way.

use std::borrow::Cow;
use std::error::Error;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use serde_json::Value as Json;
use tokio_postgres::types::{IsNull, ToSql, Type, accepts, to_sql_checked};

use crate::transaction::ContextMessage;

/// One `pgtrail.transaction` row, borrowing its texts from the message
/// it was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextRow<'a> {
    pub started_at: SystemTime,
    pub recorded_at: SystemTime,
    pub actor_id: Option<&'a str>,
    pub actor_name: Option<&'a str>,
    pub actor_type: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub context: Option<JsonStr<'a>>,
    pub db_user: &'a str,
    pub db_role: Option<&'a str>,
    pub application_name: Option<&'a str>,
    pub client_addr: Option<IpAddr>,
    pub client_port: Option<i32>,
    pub backend_pid: i32,
}

/// A JSON document as text, borrowed, sent to a `json` or `jsonb` COPY
/// column as it is (the server parses it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonStr<'a>(pub &'a str);

impl ToSql for JsonStr<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        if *ty == Type::JSONB {
            // jsonb's binary form: a version byte, then the text.
            out.extend_from_slice(&[1]);
        }
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    accepts!(JSON, JSONB);
    to_sql_checked!();
}

impl<'a> ContextRow<'a> {
    /// The row of a transaction committed at `at` whose context is
    /// `message` (`None`: none was emitted), as `_follow_write_context`
    /// makes it; `None` when the message holds something this reading does
    /// not handle exactly as the server's (then the server reads it).
    pub fn of(message: Option<&'a ContextMessage>, at: SystemTime) -> Option<ContextRow<'a>> {
        let Some(message) = message else {
            return Some(ContextRow {
                started_at: at,
                recorded_at: at,
                actor_id: None,
                actor_name: None,
                actor_type: None,
                reason: None,
                context: Some(JsonStr(r#"{"context": "not_recorded"}"#)),
                db_user: "(unknown)",
                db_role: None,
                application_name: None,
                client_addr: None,
                client_port: None,
                backend_pid: 0,
            });
        };
        let m = message.fields()?;
        Some(ContextRow {
            started_at: m.started_at.unwrap_or(at),
            recorded_at: m.recorded_at.unwrap_or(at),
            actor_id: m.actor_id.as_deref(),
            actor_name: m.actor_name.as_deref(),
            actor_type: m.actor_type.as_deref(),
            reason: m.reason.as_deref(),
            context: m.context.as_deref().map(JsonStr),
            db_user: m.db_user.as_deref().unwrap_or("(unknown)"),
            db_role: m.db_role.as_deref(),
            application_name: m.application_name.as_deref(),
            client_addr: m.client_addr,
            client_port: m.client_port,
            backend_pid: m.backend_pid.unwrap_or(0),
        })
    }
}

/// The fields of a context message `_follow_write_context` reads, read
/// once, when the message arrives ([`read`]); a timestamp `None` is the
/// transaction's commit time.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextFields {
    started_at: Option<SystemTime>,
    recorded_at: Option<SystemTime>,
    actor_id: Option<String>,
    actor_name: Option<String>,
    actor_type: Option<String>,
    reason: Option<String>,
    /// As JSON text.
    context: Option<String>,
    db_user: Option<String>,
    db_role: Option<String>,
    application_name: Option<String>,
    client_addr: Option<IpAddr>,
    client_port: Option<i32>,
    backend_pid: Option<i32>,
}

/// A context message's number (`ctx`, 0 when absent or null) and its
/// fields, in one pass; `None` when the message holds something this
/// reading does not handle exactly as the server's, or a `ctx` that is not
/// a plain integer (the caller then reads the number alone, and the
/// server reads the fields).
pub fn read(text: &str) -> Option<(i64, ContextFields)> {
    // Each field of the JSON type the server's path reads it as, or the
    // server's path: a field given twice (jsonb keeps the last), a text
    // field holding a number, a port that is not a plain integer.
    let m: Fields<'_> = serde_json::from_str(text).ok()?;
    let text = |value: Option<Cow<'_, str>>| -> Option<Option<String>> {
        match value {
            // A NUL is refused by the server's jsonb: the server's path
            // reports it.
            Some(s) if s.contains('\0') => None,
            value => Some(value.map(Cow::into_owned)),
        }
    };
    let time = |value: Option<Cow<'_, str>>| -> Option<Option<SystemTime>> {
        match value {
            None => Some(None),
            Some(t) => Some(Some(timestamptz(&t)?)),
        }
    };
    let client_addr = match m.client_addr {
        None => None,
        Some(addr) => Some(addr.parse::<IpAddr>().ok()?),
    };
    let fields = ContextFields {
        started_at: time(m.started_at)?,
        recorded_at: time(m.recorded_at)?,
        actor_id: text(m.actor_id)?,
        actor_name: text(m.actor_name)?,
        actor_type: text(m.actor_type)?,
        reason: text(m.reason)?,
        // NULLIF(m -> 'context', 'null'): the value as JSON text (numbers
        // keep their digits), parsed by the server's jsonb input.
        context: match m.context {
            None => None,
            Some(value) => Some(serde_json::to_string(&value).ok()?),
        },
        db_user: text(m.db_user)?,
        db_role: text(m.db_role)?,
        application_name: text(m.application_name)?,
        client_addr,
        client_port: m.client_port,
        backend_pid: m.backend_pid,
    };
    Some((m.ctx.unwrap_or(0), fields))
}

/// The fields of a context message `_follow_write_context` reads (JSON
/// null as absent) and its number; the others are skipped.
#[derive(serde::Deserialize)]
struct Fields<'a> {
    #[serde(default)]
    ctx: Option<i64>,
    #[serde(borrow, default)]
    started_at: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    recorded_at: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    actor_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    actor_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    actor_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reason: Option<Cow<'a, str>>,
    #[serde(default)]
    context: Option<Json>,
    #[serde(borrow, default)]
    db_user: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    db_role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    application_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    client_addr: Option<Cow<'a, str>>,
    #[serde(default)]
    client_port: Option<i32>,
    #[serde(default)]
    backend_pid: Option<i32>,
}

/// A `timestamptz` as `to_json` writes it (ISO 8601, the writing session's
/// offset: `2026-12-06T23:20:01.123456+01:00`, the fraction and the
/// offset's minutes and seconds as needed); `None` for any other form
/// (years before 1 or after 9999, infinities), which the server reads.
pub fn timestamptz(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(at(4, b'-') && at(7, b'-') && at(10, b'T') && at(13, b':') && at(16, b':')) {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if year < 1 || !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut i = 19;
    let mut micros = 0i64;
    if at(i, b'.') {
        let start = i + 1;
        let mut end = start;
        while b.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        if end == start || end - start > 6 {
            return None;
        }
        let fraction = number(start..end)?;
        micros = fraction * 10i64.pow(u32::try_from(6 - (end - start)).ok()?);
        i = end;
    }
    let sign = match b.get(i)? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let mut offset = number(i + 1..i + 3)? * 3600;
    i += 3;
    if at(i, b':') {
        offset += number(i + 1..i + 3)? * 60;
        i += 3;
        if at(i, b':') {
            offset += number(i + 1..i + 3)?;
            i += 3;
        }
    }
    if i != b.len() {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - sign * offset;
    let total = i128::from(seconds) * 1_000_000 + i128::from(micros);
    let span = Duration::from_micros(u64::try_from(total.unsigned_abs()).ok()?);
    if total >= 0 {
        UNIX_EPOCH.checked_add(span)
    } else {
        UNIX_EPOCH.checked_sub(span)
    }
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgtrail_testkit::TestDb;

    fn micros(t: SystemTime) -> i128 {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_micros() as i128,
            Err(e) => -(e.duration().as_micros() as i128),
        }
    }

    #[test]
    fn other_forms_are_left_to_the_server() {
        for text in [
            "infinity",
            "-infinity",
            "0001-01-01T00:00:00+00:00 BC",
            "12345-01-01T00:00:00+00:00",
            "10000-01-01T01:45:00+13:45",
            "2026-02-29T00:00:00+00:00",
            "2026-12-06 23:20:01+00:00",
            "2026-12-06T24:00:00+00:00",
            "2026-12-06T23:20:01.1234567+00:00",
            "2026-12-06T23:20:01+00:00 ",
            "2026-12-06T23:20:01",
        ] {
            assert_eq!(timestamptz(text), None, "{text}");
        }
    }

    /// Timestamps in several zones (whole hours, minutes, seconds of
    /// offset; fractions of every length), printed by the server's
    /// `to_json` as the context trigger prints them, read here: the same
    /// instant as the server's `->>` and cast.
    #[tokio::test]
    async fn timestamps_read_as_the_server_reads_them() {
        let db = TestDb::new().await;
        let zones = [
            "UTC",
            "Europe/Paris",
            "America/St_Johns",
            "Asia/Kathmandu",
            "Pacific/Chatham",
            "America/Caracas",
            "Europe/Amsterdam",
        ];
        let instants = [
            "2026-12-06 23:20:01.123456+00",
            "2026-06-30 12:00:00+00",
            "2000-01-01 00:00:00+00",
            "1999-12-31 23:59:59.999999+00",
            "1970-01-01 00:00:00.5+00",
            "1900-03-01 10:11:12.01+00",
            "1850-01-01 00:00:00+00",
            "0005-02-28 00:00:00.000001+00",
            "2400-02-29 23:59:59+00",
            "9999-12-30 12:00:00+00",
            "2024-02-29 00:00:00.1+00",
        ];
        for zone in zones {
            db.client
                .batch_execute(&format!("SET TimeZone = '{zone}'"))
                .await
                .expect("set the zone");
            for instant in instants {
                let row = db
                    .client
                    .query_one(
                        "SELECT json_build_object('t', $1::text::timestamptz)::jsonb ->> 't'",
                        &[&instant],
                    )
                    .await
                    .expect("print a timestamp");
                let printed: String = row.get(0);
                let here = timestamptz(&printed).unwrap_or_else(|| panic!("{zone} {printed} read here"));
                let server: i64 = db
                    .client
                    .query_one(
                        "SELECT (extract(epoch FROM $1::text::timestamptz) * 1000000)::bigint",
                        &[&printed],
                    )
                    .await
                    .expect("the server's reading")
                    .get(0);
                assert_eq!(micros(here), i128::from(server), "{zone} {printed}");
            }
        }
    }

    #[test]
    fn messages_read_field_by_field() {
        let at = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let none = ContextRow::of(None, at).expect("no message");
        assert_eq!(none.started_at, at);
        assert_eq!(none.db_user, "(unknown)");
        assert_eq!(none.backend_pid, 0);
        assert_eq!(none.context, Some(JsonStr(r#"{"context": "not_recorded"}"#)));

        let read = |text: &str| {
            let (_, message) = ContextMessage::read(text.as_bytes().to_vec()).expect("a message");
            ContextRow::of(Some(&message), at).map(|row| {
                // Owned, to outlive the message.
                (
                    row.recorded_at,
                    row.actor_id.map(str::to_string),
                    row.reason.map(str::to_string),
                    row.context.map(|c| c.0.to_string()),
                    row.client_addr,
                    row.client_port,
                    row.backend_pid,
                    row.db_user.to_string(),
                )
            })
        };
        let row = read(
            r#"{"ctx": 1, "started_at": "2026-12-06T23:20:01.5+01:00", "recorded_at": null,
                "actor_id": "a\"b", "actor_name": null, "actor_type": "user", "reason": "why\u00e9",
                "context": {"n": 1.50, "x": [1, "y"]}, "db_user": "app", "db_role": null,
                "application_name": "pgbench", "client_addr": "::1", "client_port": 5432,
                "backend_pid": 77}"#,
        )
        .expect("a message read here");
        let (recorded_at, actor_id, reason, context, client_addr, client_port, backend_pid, _) = row;
        assert_eq!(recorded_at, at);
        assert_eq!(actor_id.as_deref(), Some("a\"b"));
        assert_eq!(reason.as_deref(), Some("whyé"));
        assert_eq!(context.as_deref(), Some(r#"{"n":1.50,"x":[1,"y"]}"#));
        assert_eq!(client_addr, Some("::1".parse().expect("an address")));
        assert_eq!((client_port, backend_pid), (Some(5432), 77));
        let missing = read(r#"{"ctx": 0}"#).expect("every field missing");
        assert_eq!((missing.7.as_str(), missing.6, missing.3), ("(unknown)", 0, None));
        // What the server would read otherwise (or refuse) goes to the server.
        for odd in [
            r#"{"actor_id": 7}"#,
            r#"{"client_port": 5432.0}"#,
            r#"{"client_port": 99999999999}"#,
            r#"{"client_addr": "10.0.0.0/8"}"#,
            r#"{"started_at": "infinity"}"#,
            r#"{"reason": "a\u0000b"}"#,
            r#"{"db_user": true}"#,
            r#"{"actor_id": "a", "actor_id": "b"}"#,
            r#"{"backend_pid": "77"}"#,
        ] {
            assert_eq!(read(odd), None, "{odd}");
        }
    }

    /// The same messages written by the server (`_follow_write_context`,
    /// the messages as `jsonb`) and read here and copied (with
    /// `_follow_write_position`): the same `pgtrail.transaction` rows, column
    /// by column, and the same contexts listed as long.
    #[tokio::test]
    async fn rows_copied_are_the_rows_the_server_writes() {
        let db = TestDb::new().await;
        let mut client = db.connect().await;
        let config = pgtrail_config::Config::parse("", "pgtrail.toml").expect("a config");
        pgtrail_plan::apply(&mut client, &config)
            .await
            .expect("pgtrail installs");
        // Messages as the context trigger builds them, in a zone with an
        // offset in minutes; one begun two days before its commit.
        client
            .batch_execute("SET TimeZone = 'Asia/Kathmandu'")
            .await
            .expect("set the zone");
        let built: Vec<String> = client
            .query(
                "SELECT json_build_object(
                     'ctx', 1, 'started_at', transaction_timestamp() - make_interval(days => d),
                     'recorded_at', clock_timestamp(), 'actor_id', 'user \"7\"', 'actor_name', NULL,
                     'actor_type', 'user', 'reason', E'tab\\there é',
                     'context', CASE WHEN d = 0 THEN json_build_object('n', 1.50, 'l', json_build_array(1, 'x')) END,
                     'db_user', session_user, 'db_role', NULLIF(current_setting('role'), 'none'),
                     'application_name', 'app', 'client_addr', '192.0.2.1'::inet, 'client_port', 5432,
                     'backend_pid', pg_backend_pid())::text
                 FROM generate_series(0, 2, 2) AS d ORDER BY d",
                &[],
            )
            .await
            .expect("messages")
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut texts: Vec<Option<String>> = built.into_iter().map(Some).collect();
        texts.push(None);
        texts.push(Some(r#"{"ctx": 2}"#.to_string()));
        texts.push(Some(
            r#"{"ctx": 3, "started_at": "2026-12-06T23:20:01.000001-03:30", "client_addr": "2001:db8::1",
                "context": {"a": {"b": [null, true]}}, "db_user": "x", "backend_pid": -1}"#
                .to_string(),
        ));
        let messages: Vec<Option<ContextMessage>> = texts
            .iter()
            .map(|t| {
                t.as_ref()
                    .map(|t| ContextMessage::read(t.as_bytes().to_vec()).expect("a message").1)
            })
            .collect();
        let at = SystemTime::now() + Duration::from_secs(1);
        let n = i32::try_from(messages.len()).expect("few");
        let times: Vec<SystemTime> = vec![at; messages.len()];
        let ctx_tx: Vec<i32> = (1..=n).collect();
        let ctx_ctx: Vec<i16> = vec![1; messages.len()];
        let server_txids: Vec<i64> = (1..=i64::from(n)).collect();
        let copied_txids: Vec<i64> = server_txids.iter().map(|t| t + 100).collect();

        let tx = client.transaction().await.expect("a transaction");
        tx.execute(
            "SELECT pgtrail._follow_write_context('server', '0/10', $1, $2, $3, $4, $5)",
            &[&server_txids, &times, &ctx_tx, &ctx_ctx, &messages],
        )
        .await
        .expect("the server's path");
        let rows: Vec<ContextRow> = messages
            .iter()
            .map(|m| ContextRow::of(m.as_ref(), at).expect("read here"))
            .collect();
        crate::follower::copy_context_rows(&tx, &ctx_tx, &ctx_ctx, &rows, &copied_txids)
            .await
            .expect("copied");
        let started: Vec<SystemTime> = rows.iter().map(|r| r.started_at).collect();
        tx.execute(
            "SELECT pgtrail._follow_write_position('copied', '0/10', $1, $2, $3, $4, $5)",
            &[&copied_txids, &times, &ctx_tx, &ctx_ctx, &started],
        )
        .await
        .expect("the position");
        let side = |low: i64| {
            let tx = &tx;
            async move {
                let row = tx
                    .query_one(
                        "SELECT (SELECT json_agg(to_jsonb(t) - 'txid' ORDER BY t.txid)::text
                                 FROM pgtrail.transaction AS t WHERE t.txid BETWEEN $1 AND $1 + 99),
                                (SELECT array_agg(l.txid - $1 ORDER BY l.txid)
                                 FROM pgtrail.long_context AS l WHERE l.txid BETWEEN $1 AND $1 + 99)",
                        &[&low],
                    )
                    .await
                    .expect("the rows");
                (row.get::<_, String>(0), row.get::<_, Option<Vec<i64>>>(1))
            }
        };
        let (server, copied) = (side(0).await, side(100).await);
        assert_eq!(copied, server);
        assert!(
            server.1.as_ref().is_some_and(|long| long.contains(&2)),
            "the context begun two days before is long: {server:?}"
        );
        assert!(
            server.0.contains("not_recorded") && server.0.contains("192.0.2.1"),
            "{}",
            server.0
        );
    }
}
