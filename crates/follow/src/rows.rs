//! The trail row of one decoded row change, computed in the follower as the
//! capture functions compute it in the database (12_keys_and_markers.sql,
//! the capture functions of kind 'rows' in 20_capture.sql): the row's key, the diff of an
//! UPDATE, whole rows with `images = "full"`, ignored columns left out and
//! redacted values replaced by their markers. The rows arrive as the server's
//! `to_jsonb` gave them (numbers keep their text), so both modes record a
//! value the same way; the follower then writes plain rows, with no
//! per-row PL/pgSQL.

use std::cmp::Ordering;
use std::fmt::Write as _;

use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};

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

/// What the trail records for one row change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrailRow {
    pub pk: Option<Json>,
    pub old_pk: Option<Json>,
    pub old_values: Option<Json>,
    pub new_values: Option<Json>,
    /// With full images only: the changed fields (the database sorts them).
    pub changed_fields: Option<Vec<String>>,
}

/// The trail row of a change of `t`: `op` `I`, `U`, `D` or `T`, the old and
/// new rows whole (as `to_jsonb` gives them; taken, so that values move
/// into the row rather than being copied). `None` for an UPDATE that
/// changed no recorded column (capture writes no row for it).
pub fn trail_row(
    t: &Audited,
    op: char,
    old: Option<Map<String, Json>>,
    new: Option<Map<String, Json>>,
    secret: Option<&[u8]>,
) -> Option<TrailRow> {
    let strip = |row: Option<Map<String, Json>>| {
        row.map(|mut r| {
            for c in &t.ignore_columns {
                r.remove(c);
            }
            r
        })
    };
    let keyed = !t.key_columns.is_empty();
    let identity = |row: &Map<String, Json>| {
        if keyed {
            Json::Object(key(row, &t.key_columns))
        } else {
            redact_row(row, t, secret)
        }
    };
    match op {
        'I' => {
            let new = strip(new)?;
            Some(TrailRow {
                pk: Some(identity(&new)),
                new_values: Some(redact_whole(new, t, secret)),
                ..TrailRow::default()
            })
        }
        'D' => {
            let old = strip(old)?;
            Some(TrailRow {
                pk: Some(identity(&old)),
                old_values: Some(redact_whole(old, t, secret)),
                ..TrailRow::default()
            })
        }
        'U' => {
            let (old, new) = (strip(old).unwrap_or_default(), strip(new)?);
            let (fields, old_part, new_part) = diff(&old, &new)?;
            let (ok, nk) = (key(&old, &t.key_columns), key(&new, &t.key_columns));
            let old_pk = (!objects_equal(&ok, &nk)).then(|| {
                if keyed {
                    Json::Object(ok)
                } else {
                    redact_row(&old, t, secret)
                }
            });
            let mut row = TrailRow {
                pk: Some(if keyed { Json::Object(nk) } else { identity(&new) }),
                old_pk,
                ..TrailRow::default()
            };
            if t.full_images {
                row.old_values = Some(redact_whole(old, t, secret));
                row.new_values = Some(redact_whole(new, t, secret));
                row.changed_fields = Some(fields);
            } else {
                row.old_values = Some(redact_part(old_part, &old, t, secret));
                row.new_values = Some(redact_part(new_part, &new, t, secret));
            }
            Some(row)
        }
        _ => Some(TrailRow::default()),
    }
}

/// `pgtrail._key`: the key columns of a row (JSON null where absent), or
/// the whole row when there are none.
fn key(row: &Map<String, Json>, columns: &[String]) -> Map<String, Json> {
    if columns.is_empty() {
        return row.clone();
    }
    columns
        .iter()
        .map(|c| (c.clone(), row.get(c).cloned().unwrap_or(Json::Null)))
        .collect()
}

/// The changed fields (in no particular order), their old and new values.
type Diff = (Vec<String>, Map<String, Json>, Map<String, Json>);

/// The changed fields, their old and new values; `None` when nothing
/// changed. As the capture triggers judge it (`pgtrail._changed_sql`), a
/// column changed when its recorded JSON changed: 1.5 to 1.50 is a change,
/// at the top or inside a `jsonb` value (serde_json compares numbers by
/// their text here).
fn diff(old: &Map<String, Json>, new: &Map<String, Json>) -> Option<Diff> {
    let mut fields = Vec::new();
    let (mut old_part, mut new_part) = (Map::new(), Map::new());
    for (k, v) in new {
        let changed = old.get(k) != Some(v);
        if changed {
            fields.push(k.clone());
            // `p_old -> key` of a missing key is SQL NULL, dropped from
            // jsonb_object_agg's object only as a JSON null.
            old_part.insert(k.clone(), old.get(k).cloned().unwrap_or(Json::Null));
            new_part.insert(k.clone(), v.clone());
        }
    }
    (!fields.is_empty()).then_some((fields, old_part, new_part))
}

/// `pgtrail._redact_row`.
fn redact_row(row: &Map<String, Json>, t: &Audited, secret: Option<&[u8]>) -> Json {
    redact_whole(row.clone(), t, secret)
}

/// [`redact_row`] of a row taken: copied only when it has a value to redact.
fn redact_whole(row: Map<String, Json>, t: &Audited, secret: Option<&[u8]>) -> Json {
    if t.redact_columns.iter().any(|c| row.contains_key(c)) {
        let whole = row.clone();
        redact_part(row, &whole, t, secret)
    } else {
        Json::Object(row)
    }
}

/// `pgtrail._redact_part`: values `part` of `row` with redacted values
/// replaced by their markers.
fn redact_part(
    mut part: Map<String, Json>,
    row: &Map<String, Json>,
    t: &Audited,
    secret: Option<&[u8]>,
) -> Json {
    if t.redact_columns.iter().any(|c| part.contains_key(c)) {
        let scope = marker_scope(t, row);
        for c in &t.redact_columns {
            if let Some(value) = part.get(c) {
                let m = marker(secret, &scope, c, value);
                part.insert(c.clone(), m);
            }
        }
    }
    Json::Object(part)
}

/// `pgtrail._marker_scope`: the table id and the row's identity as JSON text.
fn marker_scope(t: &Audited, row: &Map<String, Json>) -> String {
    let identity = if t.key_columns.is_empty() {
        let mut r = row.clone();
        for c in &t.redact_columns {
            r.remove(c);
        }
        r
    } else {
        key(row, &t.key_columns)
    };
    format!("{}:{}", t.id, jsonb_text(&Json::Object(identity)))
}

/// `pgtrail._marker`: `{"redacted": "r:<20 hex digits>"}`, a digest keyed
/// by the trail's secret (`{"redacted": null}` without one, as in SQL).
fn marker(secret: Option<&[u8]>, scope: &str, column: &str, value: &Json) -> Json {
    let Some(secret) = secret else {
        return serde_json::json!({ "redacted": null });
    };
    let mut hash = Sha256::new();
    hash.update(secret);
    hash.update(format!("{scope}/{column}={}", jsonb_text(value)).as_bytes());
    let mut hex = String::with_capacity(22);
    hex.push_str("r:");
    for byte in hash.finalize().iter().take(10) {
        let _ = write!(hex, "{byte:02x}");
    }
    serde_json::json!({ "redacted": hex })
}

/// jsonb's text form (`jsonb::text`): keys by length, then bytes; `": "`
/// and `", "` between; strings escaped as PostgreSQL's escape_json does.
pub fn jsonb_text(value: &Json) -> String {
    let mut out = String::new();
    write_jsonb(&mut out, value);
    out
}

fn write_jsonb(out: &mut String, value: &Json) {
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

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
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
    use serde_json::json;

    fn obj(v: Json) -> Map<String, Json> {
        match v {
            Json::Object(m) => m,
            _ => Map::new(),
        }
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
        let t = table(&["id"], &[]);
        let old: Map<String, Json> =
            serde_json::from_str(r#"{"id": 1.0, "n": 1.5, "a": [1.5], "updated_at": "x"}"#)
                .unwrap_or_default();
        let new = obj(json!({"id": 1, "n": 1.5, "a": [1.5], "updated_at": "y"}));
        let row = trail_row(&t, 'U', Some(old.clone()), Some(new), None).unwrap_or_default();
        assert_eq!(row.old_pk, None, "a key equal by value did not change");
        assert_eq!(row.new_values, Some(json!({"id": 1})), "its recorded text did");
        let new: Map<String, Json> =
            serde_json::from_str(r#"{"id": 1.0, "n": 1.50, "a": [1.50]}"#).unwrap_or_default();
        let row = trail_row(&t, 'U', Some(old.clone()), Some(new), None);
        assert_eq!(
            row.and_then(|r| r.new_values).map(|v| v.to_string()),
            Some(r#"{"a":[1.50],"n":1.50}"#.to_string())
        );
        let same = old.clone();
        assert_eq!(trail_row(&t, 'U', Some(old), Some(same), None), None);
    }

    #[test]
    fn key_changes_and_keyless_rows_and_markers() {
        let t = table(&["id"], &["secret"]);
        let old = obj(json!({"id": 1, "secret": "s", "v": 1}));
        let new = obj(json!({"id": 2, "secret": "s", "v": 1}));
        let row = trail_row(&t, 'U', Some(old.clone()), Some(new.clone()), Some(b"k")).unwrap_or_default();
        assert_eq!(row.pk, Some(json!({"id": 2})));
        assert_eq!(row.old_pk, Some(json!({"id": 1})));
        assert_eq!(row.new_values, Some(json!({"id": 2})));
        let inserted = trail_row(&t, 'I', None, Some(new), Some(b"k")).unwrap_or_default();
        let marker = inserted
            .new_values
            .as_ref()
            .and_then(|v| v["secret"]["redacted"].as_str().map(String::from));
        // sha256('k' || '7:{"id": 2}/secret="s"'), its first 20 hex digits.
        let mut hash = Sha256::new();
        hash.update(b"k7:{\"id\": 2}/secret=\"s\"");
        let hex: String = hash
            .finalize()
            .iter()
            .take(10)
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(marker, Some(format!("r:{hex}")));

        let keyless = table(&[], &["secret"]);
        let deleted = trail_row(&keyless, 'D', Some(old), None, Some(b"k")).unwrap_or_default();
        assert_eq!(deleted.pk, deleted.old_values);
        assert_eq!(
            trail_row(&keyless, 'T', None, None, None),
            Some(TrailRow::default())
        );
    }
}
