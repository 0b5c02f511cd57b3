//! The trail row of one decoded row change, computed in the follower as the
//! capture functions compute it in the database (12_keys_and_markers.sql,
//! the capture functions of kind 'rows' in 20_capture.sql): the row's key, the diff of an
//! UPDATE, whole rows with `images = "full"`, ignored columns left out and
//! redacted values replaced by their markers. The rows arrive as the JSON
//! text of each value as `to_jsonb` gives it, in `jsonb::text`'s form
//! (values.rs; numbers keep their text), so both modes record a value the
//! same way; the trail row's JSON is written from those texts directly
//! (no JSON tree) and sent as it is by the COPY, where the server's
//! `jsonb` input orders the keys. The follower then writes plain rows,
//! with no per-row PL/pgSQL.

use std::cmp::Ordering;
use std::error::Error;
use std::fmt::Write as _;

use bytes::BytesMut;
use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};
use tokio_postgres::types::{IsNull, ToSql, Type, accepts, to_sql_checked};

use crate::context_rows::JsonStr;

/// An audited table's capture settings (a row of `pgtrail.audited_table`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audited {
    pub id: i32,
    /// Empty: the whole row identifies it.
    pub key_columns: Vec<String>,
    pub ignore_columns: Vec<String>,
    pub redact_columns: Vec<String>,
    /// `images = "full"`.
    pub full_images: bool,
}

/// A JSON document as text, sent to a `json` or `jsonb` parameter or
/// COPY column as it is (the server parses it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonText(pub String);

impl JsonText {
    /// The document parsed (tests, and readers of a trail row).
    pub fn parse(&self) -> Option<Json> {
        serde_json::from_str(&self.0).ok()
    }
}

impl ToSql for JsonText {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        JsonStr(&self.0).to_sql(ty, out)
    }

    accepts!(JSON, JSONB);
    to_sql_checked!();
}

/// What the trail records for one row change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrailRow {
    pub pk: Option<JsonText>,
    pub old_pk: Option<JsonText>,
    pub old_values: Option<JsonText>,
    pub new_values: Option<JsonText>,
    /// With full images only: the changed fields (the database sorts them).
    pub changed_fields: Option<Vec<String>>,
}

/// One recorded column of a row: its name and its value's JSON text (in
/// `jsonb::text`'s form).
pub type Field<'a> = (&'a str, &'a str);

/// The recorded columns of a row: `names` (the relation's, in order) with
/// the value texts of `row`, the table's ignored columns left out.
pub fn fields<'a>(
    t: &Audited,
    names: impl Iterator<Item = &'a str>,
    row: &'a crate::values::JsonRow,
) -> Vec<Field<'a>> {
    names
        .enumerate()
        .filter(|(_, name)| !t.ignore_columns.iter().any(|c| c == name))
        .filter_map(|(i, name)| Some((name, row.get(i)?)))
        .collect()
}

/// The trail row of a change of `t`: `op` `I`, `U`, `D` or `T`, the old and
/// new rows' recorded columns ([`fields`]). `None` for an UPDATE that
/// changed no recorded column (capture writes no row for it).
pub fn trail_row(
    t: &Audited,
    op: char,
    old: Option<&[Field<'_>]>,
    new: Option<&[Field<'_>]>,
    secret: Option<&[u8]>,
) -> Option<TrailRow> {
    let keyed = !t.key_columns.is_empty();
    let identity = |row: &[Field<'_>]| match keyed {
        true => key(row, &t.key_columns),
        false => redact_whole(row, t, secret),
    };
    match op {
        'I' => {
            let new = new?;
            Some(TrailRow {
                pk: Some(identity(new)),
                new_values: Some(redact_whole(new, t, secret)),
                ..TrailRow::default()
            })
        }
        'D' => {
            let old = old?;
            Some(TrailRow {
                pk: Some(identity(old)),
                old_values: Some(redact_whole(old, t, secret)),
                ..TrailRow::default()
            })
        }
        'U' => {
            let (old, new) = (old.unwrap_or_default(), new?);
            let changed = diff(old, new)?;
            let same_key = match keyed {
                true => t
                    .key_columns
                    .iter()
                    .all(|c| value_equal(value(old, c).unwrap_or("null"), value(new, c).unwrap_or("null"))),
                false => rows_equal(old, new),
            };
            let mut row = TrailRow {
                pk: Some(identity(new)),
                old_pk: (!same_key).then(|| identity(old)),
                ..TrailRow::default()
            };
            if t.full_images {
                row.old_values = Some(redact_whole(old, t, secret));
                row.new_values = Some(redact_whole(new, t, secret));
                row.changed_fields = Some(changed.iter().map(|(name, _, _)| name.to_string()).collect());
            } else {
                let old_part = changed.iter().map(|&(name, o, _)| (name, o.unwrap_or("null")));
                let new_part = changed.iter().map(|&(name, _, n)| (name, n));
                row.old_values = Some(redact_part(old_part, old, t, secret));
                row.new_values = Some(redact_part(new_part, new, t, secret));
            }
            Some(row)
        }
        _ => Some(TrailRow::default()),
    }
}

/// The value text of column `name` of `row`.
fn value<'a>(row: &[Field<'a>], name: &str) -> Option<&'a str> {
    row.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// The value text of column `name` of `row`, looked for at `i` first (the
/// old and new rows of a change have the same columns).
fn value_at<'a>(row: &[Field<'a>], i: usize, name: &str) -> Option<&'a str> {
    match row.get(i) {
        Some((n, v)) if *n == name => Some(v),
        _ => value(row, name),
    }
}

/// `pgtrail._key` of a keyed table: its key columns (JSON null where
/// absent).
fn key(row: &[Field<'_>], columns: &[String]) -> JsonText {
    let mut out = String::with_capacity(32);
    write_object(
        &mut out,
        columns
            .iter()
            .map(|c| (c.as_str(), value(row, c).unwrap_or("null"))),
    );
    JsonText(out)
}

/// A changed column: its name, its old value (`None` when the old row
/// lacks it) and its new value.
type Changed<'a> = (&'a str, Option<&'a str>, &'a str);

/// The changed columns, their old and new values; `None` when nothing
/// changed. As the capture triggers judge it (`pgtrail._changed_sql`), a
/// column changed when its recorded JSON changed: 1.5 to 1.50 is a change,
/// at the top or inside a `jsonb` value (the texts are compared; each is
/// in `jsonb::text`'s form, so equal values have equal texts).
fn diff<'a>(old: &[Field<'a>], new: &[Field<'a>]) -> Option<Vec<Changed<'a>>> {
    let changed: Vec<Changed<'a>> = new
        .iter()
        .enumerate()
        .filter_map(|(i, &(name, v))| {
            let o = value_at(old, i, name);
            (o != Some(v)).then_some((name, o, v))
        })
        .collect();
    (!changed.is_empty()).then_some(changed)
}

/// A JSON object of `fields` (their texts as they are) appended to `out`.
fn write_object<'a>(out: &mut String, fields: impl Iterator<Item = (&'a str, &'a str)>) {
    out.push('{');
    for (i, (name, text)) in fields.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, name);
        out.push(':');
        out.push_str(text);
    }
    out.push('}');
}

/// `pgtrail._redact_row` of a whole row.
fn redact_whole(row: &[Field<'_>], t: &Audited, secret: Option<&[u8]>) -> JsonText {
    redact_part(row.iter().copied(), row, t, secret)
}

/// `pgtrail._redact_part`: values `part` of `row` with redacted values
/// replaced by their markers.
fn redact_part<'a>(
    part: impl Iterator<Item = Field<'a>> + Clone,
    row: &[Field<'_>],
    t: &Audited,
    secret: Option<&[u8]>,
) -> JsonText {
    let redacted = |name: &str| t.redact_columns.iter().any(|c| c == name);
    let mut out = String::with_capacity(64);
    if t.redact_columns.is_empty() || !part.clone().any(|(name, _)| redacted(name)) {
        write_object(&mut out, part);
        return JsonText(out);
    }
    let scope = marker_scope(t, row);
    let markers: Vec<(&str, String)> = part
        .map(|(name, text)| match redacted(name) {
            true => (name, marker(secret, &scope, name, text)),
            false => (name, text.to_string()),
        })
        .collect();
    write_object(
        &mut out,
        markers.iter().map(|(name, text)| (*name, text.as_str())),
    );
    JsonText(out)
}

/// `pgtrail._marker_scope`: the table id and the row's identity as JSON text.
fn marker_scope(t: &Audited, row: &[Field<'_>]) -> String {
    let mut out = format!("{}:", t.id);
    if t.key_columns.is_empty() {
        let kept = row
            .iter()
            .copied()
            .filter(|(name, _)| !t.redact_columns.iter().any(|c| c == name));
        write_jsonb_object(&mut out, kept);
    } else {
        let key = t
            .key_columns
            .iter()
            .map(|c| (c.as_str(), value(row, c).unwrap_or("null")));
        write_jsonb_object(&mut out, key);
    }
    out
}

/// An object of value texts as `jsonb::text` prints it: keys by length,
/// then bytes (no key twice); `": "` and `", "` between.
fn write_jsonb_object<'a>(out: &mut String, fields: impl Iterator<Item = Field<'a>>) {
    let mut fields: Vec<Field<'a>> = fields.collect();
    fields.sort_by(|a, b| jsonb_key_order(a.0, b.0));
    out.push('{');
    for (i, (name, text)) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_string(out, name);
        out.push_str(": ");
        out.push_str(text);
    }
    out.push('}');
}

/// `pgtrail._marker`: `{"redacted": "r:<20 hex digits>"}`, a digest keyed
/// by the trail's secret (`{"redacted": null}` without one, as in SQL), of
/// the value's `jsonb::text`.
fn marker(secret: Option<&[u8]>, scope: &str, column: &str, value: &str) -> String {
    let Some(secret) = secret else {
        return r#"{"redacted":null}"#.to_string();
    };
    let mut hash = Sha256::new();
    hash.update(secret);
    hash.update(scope.as_bytes());
    hash.update(b"/");
    hash.update(column.as_bytes());
    hash.update(b"=");
    hash.update(value.as_bytes());
    let mut out = String::with_capacity(36);
    out.push_str(r#"{"redacted":"r:"#);
    for byte in hash.finalize().iter().take(10) {
        let _ = write!(out, "{byte:02x}");
    }
    out.push_str(r#""}"#);
    out
}

/// Whether two rows' recorded columns are equal as jsonb compares them.
fn rows_equal(x: &[Field<'_>], y: &[Field<'_>]) -> bool {
    x.len() == y.len()
        && x.iter()
            .enumerate()
            .all(|(i, &(name, v))| value_at(y, i, name).is_some_and(|w| value_equal(v, w)))
}

/// Two values' JSON texts equal as jsonb compares them: numbers by value
/// (1.5 = 1.50), at the top or inside arrays and objects; the rest by
/// their text (each in `jsonb::text`'s form).
fn value_equal(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let number = |t: &str| t.starts_with(|c: char| c == '-' || c.is_ascii_digit());
    let nested = |t: &str| t.starts_with(['{', '[']);
    if number(a) && number(b) {
        return numbers_equal(a, b);
    }
    if nested(a) && nested(b) {
        if let (Ok(x), Ok(y)) = (serde_json::from_str::<Json>(a), serde_json::from_str::<Json>(b)) {
            return jsonb_equal(&x, &y);
        }
    }
    false
}

/// jsonb's text form (`jsonb::text`): keys by length, then bytes; `": "`
/// and `", "` between; strings escaped as PostgreSQL's escape_json does.
pub fn jsonb_text(value: &Json) -> String {
    let mut out = String::new();
    write_jsonb(&mut out, value);
    out
}

pub(crate) fn write_jsonb(out: &mut String, value: &Json) {
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => out.push_str(&n.to_string()),
        Json::String(s) => write_string(out, s),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_jsonb(out, item);
            }
            out.push(']');
        }
        Json::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| jsonb_key_order(a, b));
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_string(out, k);
                out.push_str(": ");
                write_jsonb(out, &map[k]);
            }
            out.push('}');
        }
    }
}

/// jsonb orders an object's keys by length, then byte by byte.
fn jsonb_key_order(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// A JSON string as PostgreSQL's escape_json writes it: the runs of
/// characters that need no escape copied whole (every byte of a multibyte
/// character is above 0x7f, so only ASCII bytes are looked at; eight
/// bytes at a time while none needs one).
pub(crate) fn write_string(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    let mut copied = 0;
    let mut at = 0;
    while at < bytes.len() {
        if let Some(word) = bytes.get(at..at + 8) {
            let mut eight = [0u8; 8];
            eight.copy_from_slice(word);
            if !any_to_escape(u64::from_le_bytes(eight)) {
                at += 8;
                continue;
            }
        }
        let byte = bytes[at];
        let short = match byte {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            0x08 => Some("\\b"),
            0x0c => Some("\\f"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x00..=0x1f => None,
            _ => {
                at += 1;
                continue;
            }
        };
        // `at` holds an ASCII byte: a character boundary.
        out.push_str(&s[copied..at]);
        match short {
            Some(escape) => out.push_str(escape),
            None => {
                let _ = write!(out, "\\u{byte:04x}");
            }
        }
        at += 1;
        copied = at;
    }
    out.push_str(&s[copied..]);
    out.push('"');
}

/// Whether one of the eight bytes of `word` is below 0x20, a `"` or a
/// backslash (the bytes escape_json escapes). A byte below n sets its high
/// bit in `(x - n) & !x` when no byte below it borrowed: the lowest
/// byte that matches always does, so the answer is exact.
fn any_to_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH;
    below(word, 0x20) | below(word ^ (ONES * u64::from(b'"')), 1) | below(word ^ (ONES * u64::from(b'\\')), 1)
        != 0
}

/// jsonb equality: numbers by value (1.5 = 1.50), the rest structurally.
fn jsonb_equal(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => numbers_equal(&x.to_string(), &y.to_string()),
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| jsonb_equal(a, b))
        }
        (Json::Object(x), Json::Object(y)) => objects_equal(x, y),
        _ => a == b,
    }
}

fn objects_equal(x: &Map<String, Json>, y: &Map<String, Json>) -> bool {
    x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| jsonb_equal(v, w)))
}

/// Two numbers in numeric's text form, by value: sign, integer digits
/// without leading zeros, fraction without trailing zeros. A form with an
/// exponent (numeric never prints one) compares by its text.
fn numbers_equal(a: &str, b: &str) -> bool {
    fn normal(n: &str) -> Option<(bool, &str, &str)> {
        if n.contains(['e', 'E']) {
            return None;
        }
        let (negative, digits) = match n.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, n),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let (int, frac) = (int.trim_start_matches('0'), frac.trim_end_matches('0'));
        Some((negative && !(int.is_empty() && frac.is_empty()), int, frac))
    }
    match (normal(a), normal(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::JsonRow;
    use serde_json::json;

    /// A decoded row: its column names and values' texts, from a JSON
    /// object (numbers keep their text).
    struct Row {
        names: Vec<String>,
        row: JsonRow,
    }

    fn row(object: &str) -> Row {
        let map: Map<String, Json> = serde_json::from_str(object).unwrap_or_default();
        let texts: Vec<String> = map.values().map(jsonb_text).collect();
        Row {
            names: map.keys().cloned().collect(),
            row: JsonRow::from_texts(texts.iter().map(String::as_str)),
        }
    }

    fn trail(
        t: &Audited,
        op: char,
        old: Option<&Row>,
        new: Option<&Row>,
        secret: Option<&[u8]>,
    ) -> Option<TrailRow> {
        fn side<'a>(t: &Audited, r: &'a Row) -> Vec<Field<'a>> {
            fields(t, r.names.iter().map(String::as_str), &r.row)
        }
        let (old, new) = (old.map(|r| side(t, r)), new.map(|r| side(t, r)));
        trail_row(t, op, old.as_deref(), new.as_deref(), secret)
    }

    fn parsed(v: &Option<JsonText>) -> Option<Json> {
        v.as_ref().and_then(JsonText::parse)
    }

    fn table(keys: &[&str], redact: &[&str]) -> Audited {
        Audited {
            id: 7,
            key_columns: keys.iter().map(|s| s.to_string()).collect(),
            ignore_columns: vec!["updated_at".into()],
            redact_columns: redact.iter().map(|s| s.to_string()).collect(),
            full_images: false,
        }
    }

    /// `r:` and the first 20 hex digits of sha256(`input`).
    fn digest(input: &[u8]) -> String {
        let mut hash = Sha256::new();
        hash.update(input);
        let hex: String = hash
            .finalize()
            .iter()
            .take(10)
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("r:{hex}")
    }

    #[test]
    fn jsonb_text_orders_keys_by_length_and_escapes_as_postgres() {
        let v: Json =
            serde_json::from_str(r#"{"bb": [1.50, "a\"\\\n\u0001é"], "a": {}, "c": null, "ab": true}"#)
                .unwrap_or(Json::Null);
        assert_eq!(
            jsonb_text(&v),
            r#"{"a": {}, "c": null, "ab": true, "bb": [1.50, "a\"\\\n\u0001é"]}"#
        );
    }

    #[test]
    fn keys_compare_numbers_by_value_and_diffs_by_text() {
        assert!(numbers_equal("1.50", "1.5"));
        assert!(numbers_equal("-0.0", "0"));
        assert!(numbers_equal("007", "7"));
        assert!(!numbers_equal("1.5", "15"));
        assert!(value_equal("[1.5, {\"a\": 2.0}]", "[1.50, {\"a\": 2}]"));
        assert!(!value_equal("\"1.5\"", "\"1.50\""));
        assert!(!value_equal("[1.5]", "[1.5, 1]"));
        let t = table(&["id"], &[]);
        let old = row(r#"{"id": 1.0, "n": 1.5, "a": [1.5], "updated_at": "x"}"#);
        let new = row(r#"{"id": 1, "n": 1.5, "a": [1.5], "updated_at": "y"}"#);
        let r = trail(&t, 'U', Some(&old), Some(&new), None).unwrap_or_default();
        assert_eq!(r.old_pk, None, "a key equal by value did not change");
        assert_eq!(
            r.new_values,
            Some(JsonText(r#"{"id":1}"#.into())),
            "its recorded text did"
        );
        assert_eq!(r.old_values, Some(JsonText(r#"{"id":1.0}"#.into())));
        let new = row(r#"{"id": 1.0, "n": 1.50, "a": [1.50]}"#);
        let r = trail(&t, 'U', Some(&old), Some(&new), None);
        assert_eq!(
            r.and_then(|r| r.new_values),
            Some(JsonText(r#"{"a":[1.50],"n":1.50}"#.into()))
        );
        assert_eq!(trail(&t, 'U', Some(&old), Some(&old), None), None);
        // Only an ignored column changed: no row.
        let touched = row(r#"{"id": 1.0, "n": 1.5, "a": [1.5], "updated_at": "z"}"#);
        assert_eq!(trail(&t, 'U', Some(&old), Some(&touched), None), None);
    }

    #[test]
    fn key_changes_and_keyless_rows_and_markers() {
        let t = table(&["id"], &["secret"]);
        let old = row(r#"{"id": 1, "secret": "s", "v": 1}"#);
        let new = row(r#"{"id": 2, "secret": "s", "v": 1}"#);
        let r = trail(&t, 'U', Some(&old), Some(&new), Some(b"k")).unwrap_or_default();
        assert_eq!(parsed(&r.pk), Some(json!({"id": 2})));
        assert_eq!(parsed(&r.old_pk), Some(json!({"id": 1})));
        assert_eq!(parsed(&r.new_values), Some(json!({"id": 2})));
        let inserted = trail(&t, 'I', None, Some(&new), Some(b"k")).unwrap_or_default();
        let marker =
            parsed(&inserted.new_values).and_then(|v| v["secret"]["redacted"].as_str().map(String::from));
        // sha256('k' || '7:{"id": 2}/secret="s"'), its first 20 hex digits.
        assert_eq!(marker, Some(digest(b"k7:{\"id\": 2}/secret=\"s\"")));
        assert_eq!(
            parsed(&inserted.new_values).map(|v| v["v"].clone()),
            Some(json!(1))
        );

        let keyless = table(&[], &["secret"]);
        let deleted = trail(&keyless, 'D', Some(&old), None, Some(b"k")).unwrap_or_default();
        assert_eq!(deleted.pk, deleted.old_values);
        // The keyless scope: the row without its redacted columns, as jsonb prints it.
        let marker = parsed(&deleted.pk).and_then(|v| v["secret"]["redacted"].as_str().map(String::from));
        assert_eq!(marker, Some(digest(b"k7:{\"v\": 1, \"id\": 1}/secret=\"s\"")));
        assert_eq!(trail(&keyless, 'T', None, None, None), Some(TrailRow::default()));
        // Without a secret: a null marker.
        let unkeyed = trail(&t, 'I', None, Some(&new), None).unwrap_or_default();
        assert_eq!(
            parsed(&unkeyed.new_values),
            Some(json!({"id": 2, "v": 1, "secret": {"redacted": null}}))
        );
        // A keyless UPDATE: the whole old row (redacted) is the old key.
        let r = trail(&keyless, 'U', Some(&old), Some(&new), Some(b"k")).unwrap_or_default();
        assert_eq!(parsed(&r.old_pk), parsed(&deleted.pk));
        assert_eq!(parsed(&r.old_values), Some(json!({"id": 1})));
    }

    #[test]
    fn strings_and_names_are_escaped_as_postgres_does() {
        let t = table(&["k\"ey"], &[]);
        let text = "q\"uote back\\slash \u{1}\u{1f} tab\t nl\n cr\r bs\u{8} ff\u{c} é 日本 🦀 \u{7f}";
        let mut value = String::new();
        write_string(&mut value, text);
        assert_eq!(
            value,
            "\"q\\\"uote back\\\\slash \\u0001\\u001f tab\\t nl\\n cr\\r bs\\b ff\\f é 日本 🦀 \u{7f}\""
        );
        let new = Row {
            names: vec!["k\"ey".into(), "na\\me\n".into()],
            row: JsonRow::from_texts(["1", value.as_str()]),
        };
        let r = trail(&t, 'I', None, Some(&new), None).unwrap_or_default();
        assert_eq!(parsed(&r.pk), Some(json!({"k\"ey": 1})));
        assert_eq!(parsed(&r.new_values), Some(json!({"k\"ey": 1, "na\\me\n": text})));
        assert_eq!(
            r.new_values,
            Some(JsonText(format!("{{\"k\\\"ey\":1,\"na\\\\me\\n\":{value}}}")))
        );
    }

    #[test]
    fn strings_escape_as_escape_json_does_character_by_character() {
        // PostgreSQL's escape_json, one character at a time.
        fn reference(s: &str) -> String {
            let mut out = String::from('"');
            for ch in s.chars() {
                match ch {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\u{8}' => out.push_str("\\b"),
                    '\u{c}' => out.push_str("\\f"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
        let pieces = [
            "", "a", " ", "é", "日本", "🦀", "\"", "\\", "\u{0}", "\u{1f}", "\n", "\u{7f}", "xyz",
        ];
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let text = format!("{a}{b}{c}");
                    let mut out = String::from("prefix");
                    write_string(&mut out, &text);
                    assert_eq!(out, format!("prefix{}", reference(&text)), "{text:?}");
                }
            }
        }
        // Every byte at every offset of a word and past it, among runs
        // looked at eight bytes at a time.
        for special in [
            "\"", "\\", "\u{0}", "\u{8}", "\u{1f}", " ", "!", "#", "[", "]", "\u{7f}", "é", "🦀",
        ] {
            for at in 0..20 {
                let text = format!("{}{special}{}", "a".repeat(at), "b".repeat(20 - at));
                let mut out = String::new();
                write_string(&mut out, &text);
                assert_eq!(out, reference(&text), "{text:?}");
            }
        }
        let every: String = (0u8..0x80)
            .map(char::from)
            .chain(['é', '\u{80}', '\u{ffff}'])
            .collect();
        let mut out = String::new();
        write_string(&mut out, &every);
        assert_eq!(out, reference(&every));
    }

    #[test]
    fn nulls_and_unchanged_toast_values_and_missing_old_rows() {
        let t = table(&["id"], &[]);
        // An unchanged TOASTed value without an old row is null (values.rs).
        let old = row(r#"{"id": 1, "big": null, "n": null}"#);
        let new = row(r#"{"id": 1, "big": null, "n": 2}"#);
        let r = trail(&t, 'U', Some(&old), Some(&new), None).unwrap_or_default();
        assert_eq!(parsed(&r.old_values), Some(json!({"n": null})));
        assert_eq!(parsed(&r.new_values), Some(json!({"n": 2})));
        // No old row at all (no replica identity sent): every column changed.
        let r = trail(&t, 'U', None, Some(&new), None).unwrap_or_default();
        assert_eq!(
            parsed(&r.old_values),
            Some(json!({"id": null, "big": null, "n": null}))
        );
        assert_eq!(parsed(&r.old_pk), Some(json!({"id": null})));
        assert_eq!(parsed(&r.pk), Some(json!({"id": 1})));
        // A key column that is null.
        let keyless_key = row(r#"{"id": null, "n": 1}"#);
        let r = trail(&t, 'I', None, Some(&keyless_key), None).unwrap_or_default();
        assert_eq!(r.pk, Some(JsonText(r#"{"id":null}"#.into())));
    }

    #[test]
    fn composite_keys_and_full_images_and_ignored_columns() {
        let mut t = table(&["b", "a"], &["s"]);
        let old = row(r#"{"a": 1, "b": "x", "s": "p", "v": [1], "updated_at": "t1"}"#);
        let new = row(r#"{"a": 1, "b": "y", "s": "p", "v": [1, 2], "updated_at": "t2"}"#);
        let r = trail(&t, 'U', Some(&old), Some(&new), Some(b"k")).unwrap_or_default();
        assert_eq!(
            r.pk,
            Some(JsonText(r#"{"b":"y","a":1}"#.into())),
            "the key's columns in its order"
        );
        assert_eq!(parsed(&r.old_pk), Some(json!({"a": 1, "b": "x"})));
        assert_eq!(parsed(&r.old_values), Some(json!({"b": "x", "v": [1]})));
        assert_eq!(parsed(&r.new_values), Some(json!({"b": "y", "v": [1, 2]})));
        assert_eq!(r.changed_fields, None);
        // A composite key equal by value: no old key.
        let same = row(r#"{"a": 1.0, "b": "x", "s": "q"}"#);
        let r = trail(&t, 'U', Some(&old), Some(&same), Some(b"k")).unwrap_or_default();
        assert_eq!(r.old_pk, None);
        // The redacted column changed: markers on both sides, scoped by the composite key.
        let scope = |key: &str, value: &str| digest(format!("k7:{key}/s={value}").as_bytes());
        assert_eq!(
            parsed(&r.old_values).map(|v| v["s"]["redacted"].clone()),
            Some(json!(scope(r#"{"a": 1, "b": "x"}"#, "\"p\"")))
        );
        assert_eq!(
            parsed(&r.new_values).map(|v| v["s"]["redacted"].clone()),
            Some(json!(scope(r#"{"a": 1.0, "b": "x"}"#, "\"q\"")))
        );

        t.full_images = true;
        let r = trail(&t, 'U', Some(&old), Some(&new), Some(b"k")).unwrap_or_default();
        let mut fields = r.changed_fields.clone().unwrap_or_default();
        fields.sort();
        assert_eq!(fields, ["b", "v"]);
        let old_values = parsed(&r.old_values).unwrap_or_default();
        assert_eq!(old_values["v"], json!([1]));
        assert_eq!(old_values.get("updated_at"), None, "ignored");
        assert!(old_values["s"]["redacted"].is_string());
    }
}
