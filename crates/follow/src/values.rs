//! From pgoutput's text values to the JSON capture records (`to_jsonb` of
//! each column), so that both modes record a value the same way. Each value
//! is written as JSON text (`jsonb::text`'s form) into one buffer per row,
//! with no JSON tree. Integers, booleans, `text`, `varchar`, `char(n)`,
//! `uuid`, `numeric`, floats, `bytea`, `interval`, `time`, `timetz`,
//! `jsonb`, `json` and arrays of these (by the column's type OID, domains
//! excluded) are converted here, as `to_jsonb` prints them; so are `date`,
//! `timestamp` and `timestamptz` when their text has the ISO form
//! (`DateStyle` ISO: the replication connection asks for it) of a year 1 to
//! 9999. For every other type, and for a
//! relation's batch holding a value of those not converted here, the server
//! casts the text back to the column's type, as the Relation message gave
//! it, and turns it into JSON: one statement per relation version and
//! batch, none when every value is converted here. Which audited table a
//! relation is, once per version.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::{Map, Value as Json};
use tokio_postgres::Client;

use crate::FollowError;
use crate::pgoutput::Value;
use crate::transaction::RelationVersion;

mod json;

/// What is known of one relation version.
#[derive(Debug, Clone)]
pub struct Known {
    /// Its audited table's id, `None` when it is not audited.
    pub table_id: Option<i32>,
    /// How each column's value becomes JSON, in the relation's order.
    pub columns: Vec<(String, Convert)>,
    /// The statement turning rows (a JSON array of arrays of text, the
    /// [`Convert::Server`] columns only) into JSON objects, in order;
    /// `None` when no column needs the server.
    pub sql: Option<String>,
    /// The same for the [`Convert::Server`] columns and those converted
    /// here only when their text allows it ([`Convert::conditional`]): for
    /// a batch with a value not converted here. `None` when there are no
    /// such columns.
    pub wide_sql: Option<String>,
}

/// How one column's text value becomes JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convert {
    /// `int2`, `int4`, `int8`: a JSON number.
    Integer,
    /// `bool`: `t` or `f`.
    Boolean,
    /// The type's output text as a JSON string, which is what `to_jsonb`
    /// writes for it: `text`, `varchar`, `char(n)` (padded, as its text
    /// is), `uuid`, and `bytea`, `interval`, `time`, `timetz` (whose text
    /// is the same in the replication session as in the follower's SQL
    /// session: `bytea_output`, `IntervalStyle` are the database's and
    /// role's in both; `DateStyle` does not change a time's text).
    Text,
    /// `numeric`: a JSON number of the same text; `NaN` and the
    /// infinities a string.
    Numeric,
    /// `float4`, `float8`: the number of the text as `numeric` prints it
    /// (`to_jsonb` reads the float's text as a `numeric`: `1e+100` is a
    /// 1 and 100 zeros, `-0` is `0`); `NaN` and the infinities a string.
    Float,
    /// `jsonb`: the value itself (its text is jsonb's normal form).
    Jsonb,
    /// `json`: its text read as `jsonb` reads it (keys ordered, the last
    /// of equal keys kept, numbers as `numeric` prints them, escapes
    /// decoded), unless it holds what `jsonb` refuses (`\u0000`, a lone
    /// surrogate) or is nested deeper than [`JSON_DEPTH`].
    Json,
    /// `date` in ISO form: the same string.
    Date,
    /// `timestamp` in ISO form: `T` between the date and the time.
    Timestamp,
    /// `timestamptz` in ISO form: `T` between the date and the time, the
    /// offset's minutes always written.
    Timestamptz,
    /// An array of one of the types above (not a domain's): nested JSON
    /// arrays by dimension (lower bounds are not written), SQL `NULL`s
    /// `null`, each element converted as its type is.
    Array(&'static Convert),
    /// Any other type: the server's `to_jsonb` of the cast text.
    Server,
}

/// How deep a `json` value converted here may nest (deeper ones go to the
/// server).
pub const JSON_DEPTH: usize = 200;

impl Convert {
    /// How a column of type `type_oid` is converted. Domains have their
    /// own OIDs and go to the server (their base type could differ).
    pub fn of(type_oid: u32) -> Convert {
        match type_oid {
            20 | 21 | 23 => Convert::Integer,
            16 => Convert::Boolean,
            25 | 1043 | 1042 | 2950 | 17 | 1186 | 1083 | 1266 => Convert::Text,
            // name, inet, cidr, macaddr, macaddr8, bit, varbit: to_jsonb writes
            // their text as a string.
            19 | 869 | 650 | 829 | 774 | 1560 | 1562 => Convert::Text,
            1700 => Convert::Numeric,
            700 | 701 => Convert::Float,
            3802 => Convert::Jsonb,
            114 => Convert::Json,
            1082 => Convert::Date,
            1114 => Convert::Timestamp,
            1184 => Convert::Timestamptz,
            1005 | 1007 | 1016 => Convert::Array(&Convert::Integer),
            1000 => Convert::Array(&Convert::Boolean),
            1009 | 1015 | 1014 | 2951 | 1001 | 1187 | 1183 | 1270 => Convert::Array(&Convert::Text),
            1003 | 1041 | 651 | 1040 | 775 | 1561 | 1563 => Convert::Array(&Convert::Text),
            1231 => Convert::Array(&Convert::Numeric),
            1021 | 1022 => Convert::Array(&Convert::Float),
            3807 => Convert::Array(&Convert::Jsonb),
            199 => Convert::Array(&Convert::Json),
            1182 => Convert::Array(&Convert::Date),
            1115 => Convert::Array(&Convert::Timestamp),
            1185 => Convert::Array(&Convert::Timestamptz),
            _ => Convert::Server,
        }
    }

    /// Converted here only when the value's text allows it.
    pub fn conditional(self) -> bool {
        matches!(
            self,
            Convert::Date
                | Convert::Timestamp
                | Convert::Timestamptz
                | Convert::Float
                | Convert::Json
                | Convert::Array(_)
        )
    }

    /// `text` as `to_jsonb` would give it for this conversion; `None`
    /// when the server must convert it (a [`Convert::conditional`] value
    /// in another form, or [`Convert::Server`]). [`Convert::write`] parsed.
    pub fn json(self, text: &str) -> Result<Option<Json>, FollowError> {
        let mut out = String::new();
        if !self.write(text, &mut out)? {
            return Ok(None);
        }
        serde_json::from_str(&out)
            .map(Some)
            .map_err(|error| FollowError::Protocol(format!("{text:?} became invalid JSON: {error}")))
    }

    /// `text` as `jsonb::text` prints `to_jsonb` of it, appended to `out`
    /// (the JSON text a trail row is made of); false, with nothing
    /// appended, when the server must convert it (a [`Convert::conditional`]
    /// value in another form, or [`Convert::Server`]).
    pub fn write(self, text: &str, out: &mut String) -> Result<bool, FollowError> {
        match self {
            Convert::Integer => {
                let digits = text.strip_prefix('-').unwrap_or(text);
                if digits.is_empty()
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                    || text.parse::<i64>().is_err()
                {
                    return Err(FollowError::Protocol(format!(
                        "integer column sent {text:?}, not an integer"
                    )));
                }
                match digits.len() > 1 && digits.starts_with('0') {
                    // Not the form integers print in: the number's.
                    true => {
                        let _ = write!(out, "{}", text.parse::<i64>().unwrap_or(0));
                    }
                    false => out.push_str(text),
                }
            }
            Convert::Boolean => match text {
                "t" => out.push_str("true"),
                "f" => out.push_str("false"),
                _ => {
                    return Err(FollowError::Protocol(format!(
                        "boolean column sent {text:?}, not t or f"
                    )));
                }
            },
            Convert::Text => crate::rows::write_string(out, text),
            Convert::Numeric => match is_numeric_text(text) {
                true => out.push_str(text),
                false => crate::rows::write_string(out, text),
            },
            Convert::Float => match text {
                "NaN" | "Infinity" | "-Infinity" => crate::rows::write_string(out, text),
                _ => return Ok(write_number(out, text)),
            },
            // jsonb's text form is already what `jsonb::text` prints.
            Convert::Jsonb => out.push_str(text),
            Convert::Json => return Ok(json::write(out, text)),
            Convert::Date => match iso_date(text) {
                true => crate::rows::write_string(out, text),
                false => return Ok(false),
            },
            Convert::Timestamp => match iso_timestamp(text) {
                Some("") => xsd_timestamp(out, text, ""),
                _ => return Ok(false),
            },
            Convert::Timestamptz => match iso_timestamp(text).and_then(iso_offset) {
                Some(minutes) => xsd_timestamp(out, text, if minutes { "" } else { ":00" }),
                None => return Ok(false),
            },
            Convert::Array(element) => {
                let start = out.len();
                let written = write_array(*element, text, out);
                if !matches!(written, Ok(true)) {
                    out.truncate(start);
                }
                return written;
            }
            Convert::Server => return Ok(false),
        }
        Ok(true)
    }
}

/// An array's text (`array_out`'s form: `{...}`, nested by dimension,
/// after `[lower:upper]...=` when a lower bound is not 1) as `to_jsonb`
/// writes it, appended to `out`: false when an element is not converted
/// here or the text is not of that form (`out` then holds a part).
fn write_array(element: Convert, text: &str, out: &mut String) -> Result<bool, FollowError> {
    if matches!(element, Convert::Array(_) | Convert::Server) {
        return Ok(false);
    }
    let mut rest = text;
    if rest.starts_with('[') {
        // The dimensions' bounds: `to_jsonb` writes none of them.
        while let Some(after) = rest.strip_prefix('[') {
            let Some(end) = after.find(']') else {
                return Ok(false);
            };
            if !after[..end]
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'-' || b == b':')
            {
                return Ok(false);
            }
            rest = &after[end + 1..];
        }
        let Some(after) = rest.strip_prefix('=') else {
            return Ok(false);
        };
        rest = after;
    }
    let bytes = rest.as_bytes();
    let mut at = 0;
    let mut element_text = String::new();
    // Open arrays' item counts, one per level.
    let mut items: Vec<usize> = Vec::new();
    loop {
        match bytes.get(at) {
            Some(b'{') => {
                if let Some(count) = items.last_mut() {
                    if *count > 0 {
                        out.push_str(", ");
                    }
                    *count += 1;
                }
                items.push(0);
                out.push('[');
                at += 1;
            }
            Some(b'}') if !items.is_empty() => {
                items.pop();
                out.push(']');
                at += 1;
                if items.is_empty() {
                    return Ok(at == bytes.len());
                }
                match bytes.get(at) {
                    Some(b',') => at += 1,
                    Some(b'}') => {}
                    _ => return Ok(false),
                }
            }
            Some(_) if !items.is_empty() => {
                let Some(count) = items.last_mut() else {
                    return Ok(false);
                };
                if *count > 0 {
                    out.push_str(", ");
                }
                *count += 1;
                element_text.clear();
                let quoted = bytes[at] == b'"';
                if quoted {
                    at += 1;
                    loop {
                        match bytes.get(at) {
                            Some(b'"') => break,
                            Some(b'\\') => {
                                let Some(&escaped) = bytes.get(at + 1) else {
                                    return Ok(false);
                                };
                                // A backslash is followed by one byte of an
                                // ASCII character, or of a character that
                                // the next bytes complete.
                                let start = at + 1;
                                let mut end = start + 1;
                                if !escaped.is_ascii() {
                                    while end < bytes.len() && (bytes[end] & 0xc0) == 0x80 {
                                        end += 1;
                                    }
                                }
                                let Some(part) = rest.get(start..end) else {
                                    return Ok(false);
                                };
                                element_text.push_str(part);
                                at = end;
                            }
                            Some(_) => {
                                let end = bytes[at..]
                                    .iter()
                                    .position(|&b| b == b'"' || b == b'\\')
                                    .map_or(bytes.len(), |n| at + n);
                                let Some(part) = rest.get(at..end) else {
                                    return Ok(false);
                                };
                                element_text.push_str(part);
                                at = end;
                            }
                            None => return Ok(false),
                        }
                    }
                    at += 1;
                } else {
                    let end = bytes[at..]
                        .iter()
                        .position(|&b| b == b',' || b == b'}')
                        .map_or(bytes.len(), |n| at + n);
                    let Some(part) = rest.get(at..end) else {
                        return Ok(false);
                    };
                    element_text.push_str(part);
                    at = end;
                }
                if !quoted && element_text.eq_ignore_ascii_case("NULL") {
                    out.push_str("null");
                } else if !element.write(&element_text, out)? {
                    return Ok(false);
                }
                match bytes.get(at) {
                    Some(b',') => at += 1,
                    Some(b'}') => {}
                    _ => return Ok(false),
                }
            }
            _ => return Ok(false),
        }
    }
}

/// A number's text (JSON's, a float's or numeric's: a sign, digits with
/// at most one point, an exponent) as `numeric` reads and then prints it,
/// appended to `out`: every digit kept, as many decimals as the text had
/// less the exponent, no exponent, a zero unsigned. False, with nothing
/// appended, when `text` is not such a number or is too large for this
/// (an exponent past ±1,000, more than 16,383 decimals).
fn write_number(out: &mut String, text: &str) -> bool {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => {
            let exponent = &unsigned[at + 1..];
            let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return false;
            }
            match exponent.parse::<i64>() {
                Ok(e) if (-1000..=1000).contains(&e) => (&unsigned[..at], e),
                _ => return false,
            }
        }
        None => (unsigned, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.len() + frac.len() == 0
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return false;
    }
    let scale = (frac.len() as i64 - exponent).max(0);
    if scale > 16_383 {
        return false;
    }
    // The digits, and where the point falls among them.
    let count = (int.len() + frac.len()) as i64;
    let digit = |i: i64| match i {
        i if i < 0 || i >= count => b'0',
        i if (i as usize) < int.len() => int.as_bytes()[i as usize],
        i => frac.as_bytes()[i as usize - int.len()],
    };
    let point = int.len() as i64 + exponent;
    let zero = int.bytes().chain(frac.bytes()).all(|b| b == b'0');
    if negative && !zero {
        out.push('-');
    }
    // The integer part: the digits before the point, zeros past the
    // digits, no leading zero.
    let first = (0..point.max(0).min(count)).find(|&i| digit(i) != b'0');
    match first {
        Some(first) => (first..point).for_each(|i| out.push(digit(i) as char)),
        None => out.push('0'),
    }
    if scale > 0 {
        out.push('.');
        (point..point + scale).for_each(|i| out.push(digit(i) as char));
    }
    true
}

/// Whether `text` is numeric's text of a finite number (what
/// `to_jsonb` writes as a JSON number): digits, at most one point, a sign.
fn is_numeric_text(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, "0"));
    !int.is_empty()
        && !frac.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
}

/// `YYYY-MM-DD` of a year 1 to 9999 (ISO and XSD print it alike).
fn iso_date(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && [0, 1, 2, 3, 5, 6, 8, 9].iter().all(|&i| b[i].is_ascii_digit())
        && &b[..4] != b"0000"
}

/// `YYYY-MM-DD HH:MM:SS` and up to six decimals: what follows them (the
/// offset of a `timestamptz`), `None` when `text` does not start so.
fn iso_timestamp(text: &str) -> Option<&str> {
    let b = text.as_bytes();
    if b.len() < 19 || !iso_date(text.get(..10)?) || b[10] != b' ' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if ![11, 12, 14, 15, 17, 18].iter().all(|&i| b[i].is_ascii_digit()) {
        return None;
    }
    let rest = text.get(19..)?;
    match rest.strip_prefix('.') {
        Some(fraction) => {
            let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
            (1..=6).contains(&digits).then(|| &fraction[digits..])
        }
        None => Some(rest),
    }
}

/// An ISO offset (`+HH`, `+HH:MM`, `+HH:MM:SS`, `-` alike): whether it
/// writes its minutes; `None` when `offset` is not one.
fn iso_offset(offset: &str) -> Option<bool> {
    let b = offset.as_bytes();
    let two = |i: usize| b.get(i..i + 2).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if !matches!(b.first(), Some(b'+' | b'-')) || !two(1) {
        return None;
    }
    match b.len() {
        3 => Some(false),
        6 if b[3] == b':' && two(4) => Some(true),
        9 if b[3] == b':' && two(4) && b[6] == b':' && two(7) => Some(true),
        _ => None,
    }
}

/// An ISO timestamp's text (checked) as XSD writes it, a JSON string
/// appended to `out`: `T` for the space, `minutes` appended (nothing in
/// it needs escaping).
fn xsd_timestamp(out: &mut String, text: &str, minutes: &str) {
    out.push('"');
    out.push_str(&text[..10]);
    out.push('T');
    out.push_str(&text[11..]);
    out.push_str(minutes);
    out.push('"');
}

/// Relation versions seen so far.
#[derive(Debug, Default)]
pub struct Relations {
    known: HashMap<RelationVersion, Known>,
    /// Which columns are converted here ([`FollowOptions::values`](crate::FollowOptions::values)).
    values: crate::Values,
}

/// A literal for SQL text (standard_conforming_strings).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl Relations {
    /// No relation known yet; `values`: which columns are converted here.
    pub fn new(values: crate::Values) -> Relations {
        Relations {
            known: HashMap::new(),
            values,
        }
    }

    /// What is known of `relation`, learnt from the database the first time.
    pub async fn learn(
        &mut self,
        client: &Client,
        relation: &RelationVersion,
    ) -> Result<&Known, FollowError> {
        if !self.known.contains_key(relation) {
            let known = Self::load(client, relation, self.values).await?;
            self.known.insert(relation.clone(), known);
        }
        self.known
            .get(relation)
            .ok_or_else(|| FollowError::Protocol(format!("relation {} not learnt", relation.oid)))
    }

    async fn load(
        client: &Client,
        relation: &RelationVersion,
        values: crate::Values,
    ) -> Result<Known, FollowError> {
        let convert = |type_oid: u32| match (values, Convert::of(type_oid)) {
            (crate::Values::Here, convert) => convert,
            (crate::Values::Scalar, Convert::Float | Convert::Json | Convert::Array(_)) => Convert::Server,
            (crate::Values::Scalar, _) if matches!(type_oid, 17 | 1186 | 1083 | 1266) => Convert::Server,
            (crate::Values::Scalar, convert) => convert,
            (crate::Values::Basic, Convert::Integer | Convert::Boolean) => Convert::of(type_oid),
            (crate::Values::Basic, Convert::Text) if matches!(type_oid, 25 | 1043) => Convert::Text,
            _ => Convert::Server,
        };
        let table_id: Option<i32> = client
            .query_one(
                "SELECT coalesce(pgtrail._audited_id_of($1::oid),
                                 (SELECT a.id FROM pgtrail.audited_table AS a
                                  WHERE a.table_schema = $2 AND a.table_name = $3
                                  ORDER BY a.detached_at IS NULL DESC LIMIT 1))",
                &[&relation.oid, &relation.schema, &relation.name],
            )
            .await
            .map_err(FollowError::database(
                "finding the audited table of a decoded relation",
            ))?
            .get(0);
        let columns: Vec<(String, Convert)> = relation
            .columns
            .iter()
            .map(|c| (c.name.clone(), convert(c.type_oid)))
            .collect();
        let server: Vec<&crate::pgoutput::Column> = relation
            .columns
            .iter()
            .filter(|c| convert(c.type_oid) == Convert::Server)
            .collect();
        let wide: Vec<&crate::pgoutput::Column> = relation
            .columns
            .iter()
            .filter(|c| {
                let convert = convert(c.type_oid);
                convert == Convert::Server || convert.conditional()
            })
            .collect();
        let sql = match server.is_empty() {
            true => None,
            false => Some(server_sql(client, &server).await?),
        };
        let wide_sql = match wide.len() == server.len() {
            true => None,
            false => Some(server_sql(client, &wide).await?),
        };
        Ok(Known {
            table_id,
            columns,
            sql,
            wide_sql,
        })
    }
}

/// The statement turning rows of `columns`' text values (a JSON array of
/// arrays) into JSON objects by the server, in order.
async fn server_sql(client: &Client, columns: &[&crate::pgoutput::Column]) -> Result<String, FollowError> {
    let oids: Vec<u32> = columns.iter().map(|c| c.type_oid).collect();
    let modifiers: Vec<i32> = columns.iter().map(|c| c.type_modifier).collect();
    let types: Vec<String> = client
        .query(
            "SELECT pg_catalog.format_type(u.t, u.m)
             FROM unnest($1::oid[], $2::int4[]) WITH ORDINALITY AS u(t, m, n) ORDER BY u.n",
            &[&oids, &modifiers],
        )
        .await
        .map_err(FollowError::database("reading the types of a decoded relation"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    // jsonb_build_object takes at most 100 arguments: 50 columns each.
    let pairs: Vec<String> = columns
        .iter()
        .zip(&types)
        .enumerate()
        .map(|(i, (column, type_name))| {
            format!(
                "{}, pg_catalog.to_jsonb((e.r OPERATOR(pg_catalog.->>) {i})::{type_name})",
                literal(&column.name)
            )
        })
        .collect();
    let object = if pairs.is_empty() {
        "'{}'::pg_catalog.jsonb".to_string()
    } else {
        pairs
            .chunks(50)
            .map(|chunk| format!("pg_catalog.jsonb_build_object({})", chunk.join(", ")))
            .collect::<Vec<_>>()
            .join(" OPERATOR(pg_catalog.||) ")
    };
    Ok(format!(
        "SELECT {object} FROM pg_catalog.jsonb_array_elements($1::text::pg_catalog.jsonb) \
         WITH ORDINALITY AS e(r, n) ORDER BY e.n"
    ))
}

/// One decoded row's values as JSON text, in the relation's column order:
/// value `i` is `text[spans[i].0..spans[i].1]`, each in `jsonb::text`'s
/// form (so that equal texts are equal values, and the text is what the
/// redaction markers hash).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonRow {
    text: String,
    spans: Vec<(u32, u32)>,
}

impl JsonRow {
    /// The JSON text of column `i`, `None` past the row's end.
    pub fn get(&self, i: usize) -> Option<&str> {
        let &(start, end) = self.spans.get(i)?;
        self.text.get(start as usize..end as usize)
    }

    /// The number of columns.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether the row has no columns.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Appends the next column's value, written by `write` into the text.
    fn push_with(&mut self, write: impl FnOnce(&mut String)) {
        let start = span_offset(self.text.len());
        write(&mut self.text);
        self.spans.push((start, span_offset(self.text.len())));
    }

    /// Sets column `i` to `json` (the server's value), appended to the text.
    fn set(&mut self, i: usize, json: &Json) {
        let start = span_offset(self.text.len());
        crate::rows::write_jsonb(&mut self.text, json);
        if let Some(span) = self.spans.get_mut(i) {
            *span = (start, span_offset(self.text.len()));
        }
    }

    /// A row of JSON texts (for tests and callers holding values already).
    pub fn from_texts<'a>(texts: impl IntoIterator<Item = &'a str>) -> JsonRow {
        let mut row = JsonRow::default();
        for t in texts {
            row.push_with(|out| out.push_str(t));
        }
        row
    }
}

/// An offset into a row's text (rows are far below 4 GiB: a value is at
/// most 1 GB and its JSON text is what the COPY sends).
fn span_offset(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The rows as JSON text, in order: the columns converted here added to
/// what `known.sql` (run once for all, if any column needs it) returns;
/// when a value of a [`Convert::conditional`] column is not converted
/// here, those columns too go to the server (`known.wide_sql`) for the
/// whole batch.
pub async fn rows_to_json(
    client: &Client,
    known: &Known,
    rows: &[&[Value]],
) -> Result<Vec<JsonRow>, FollowError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut objects: Vec<JsonRow> = Vec::with_capacity(rows.len());
    let mut wide = false;
    for row in rows {
        match native_row(&known.columns, row, true)? {
            Some(object) => objects.push(object),
            None => {
                wide = true;
                break;
            }
        }
    }
    if wide {
        objects.clear();
        for row in rows {
            objects.push(native_row(&known.columns, row, false)?.unwrap_or_default());
        }
    }
    let sql = match wide {
        true => known.wide_sql.as_deref().or(known.sql.as_deref()),
        false => known.sql.as_deref(),
    };
    if let Some(sql) = sql {
        let server = server_objects(client, &known.columns, sql, rows, wide).await?;
        for (object, mut from_server) in objects.iter_mut().zip(server) {
            for (i, (name, convert)) in known.columns.iter().enumerate() {
                if to_server(*convert, wide) {
                    let value = from_server.remove(name).unwrap_or(Json::Null);
                    object.set(i, &value);
                }
            }
        }
    }
    Ok(objects)
}

/// Whether a column goes to the server: always for [`Convert::Server`],
/// and the conditional ones in a `wide` batch.
fn to_server(convert: Convert, wide: bool) -> bool {
    convert == Convert::Server || (wide && convert.conditional())
}

/// The JSON text of the columns of `row` converted here (with
/// `conditional`, those of [`Convert::conditional`] columns too), the
/// others left empty for the server's values; `None` when one of those
/// needs the server.
fn native_row(
    columns: &[(String, Convert)],
    row: &[Value],
    conditional: bool,
) -> Result<Option<JsonRow>, FollowError> {
    // Room for every value quoted, so the text is not grown column by column.
    let room: usize = row
        .iter()
        .map(|value| match value {
            Value::Text(text) => text.len() + 2,
            Value::Null | Value::Unchanged => 4,
        })
        .sum();
    let mut object = JsonRow {
        text: String::with_capacity(room + 8),
        spans: Vec::with_capacity(columns.len()),
    };
    for ((_, convert), value) in columns.iter().zip(row) {
        if to_server(*convert, !conditional) {
            object.spans.push((0, 0));
            continue;
        }
        let mut converted = Ok(true);
        object.push_with(|out| match value {
            Value::Text(text) => converted = convert.write(text, out),
            Value::Null | Value::Unchanged => out.push_str("null"),
        });
        if !converted? {
            return Ok(None);
        }
    }
    Ok(Some(object))
}

/// The server's columns of the rows as JSON objects, by `sql`.
async fn server_objects(
    client: &Client,
    columns: &[(String, Convert)],
    sql: &str,
    rows: &[&[Value]],
    wide: bool,
) -> Result<Vec<Map<String, Json>>, FollowError> {
    let texts: Vec<Json> = rows
        .iter()
        .map(|row| {
            Json::Array(
                columns
                    .iter()
                    .zip(row.iter())
                    .filter(|((_, convert), _)| to_server(*convert, wide))
                    .map(|(_, v)| match v {
                        Value::Text(text) => Json::String(text.clone()),
                        Value::Null | Value::Unchanged => Json::Null,
                    })
                    .collect(),
            )
        })
        .collect();
    let argument = Json::Array(texts).to_string();
    let out = client
        .query(sql, &[&argument])
        .await
        .map_err(FollowError::database("turning decoded values into JSON"))?;
    if out.len() != rows.len() {
        return Err(FollowError::Protocol(format!(
            "{} rows turned into {} JSON objects",
            rows.len(),
            out.len()
        )));
    }
    Ok(out
        .iter()
        .map(|r| match r.get::<_, Json>(0) {
            Json::Object(map) => map,
            _ => Map::new(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgtrail_testkit::TestDb;

    #[test]
    fn literals_double_quotes() {
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal(r"a\b"), r"'a\b'");
    }

    /// Each text converted here against the server's `to_jsonb` of it cast
    /// to `type_name` (`type_oid`): the same JSON, and the same jsonb text.
    async fn same_as_server(type_oid: u32, type_name: &str, texts: &[&str]) {
        let db = TestDb::new().await;
        let convert = Convert::of(type_oid);
        assert_ne!(convert, Convert::Server, "{type_name} is converted here");
        for text in texts {
            let here = convert
                .json(text)
                .expect("a valid value")
                .unwrap_or_else(|| panic!("{type_name} {text:?} converted here"));
            let row = db
                .client
                .query_one(
                    &format!("SELECT to_jsonb($1::text::{type_name}), to_jsonb($1::text::{type_name})::text"),
                    &[text],
                )
                .await
                .expect("to_jsonb");
            let (server, server_text): (Json, String) = (row.get(0), row.get(1));
            assert_eq!(here, server, "{type_name} {text:?}");
            let mut written = String::new();
            assert!(convert.write(text, &mut written).expect("a valid value"));
            assert_eq!(written, server_text, "{type_name} {text:?} written");
            assert_eq!(
                crate::rows::jsonb_text(&here),
                server_text,
                "{type_name} {text:?} printed"
            );
        }
    }

    #[tokio::test]
    async fn integers_are_numbers_as_to_jsonb_prints_them() {
        same_as_server(21, "int2", &["0", "-1", "32767", "-32768"]).await;
        same_as_server(23, "int4", &["0", "7", "-2147483648", "2147483647"]).await;
        same_as_server(
            20,
            "int8",
            &[
                "0",
                "-42",
                "9223372036854775807",
                "-9223372036854775808",
                "9007199254740993",
            ],
        )
        .await;
        assert_eq!(
            Convert::Integer
                .json("9223372036854775807")
                .ok()
                .flatten()
                .map(|j| j.to_string()),
            Some("9223372036854775807".to_string())
        );
        assert!(Convert::Integer.json("1.5").is_err());
    }

    #[tokio::test]
    async fn booleans_are_true_and_false() {
        same_as_server(16, "bool", &["t", "f"]).await;
        assert_eq!(Convert::Boolean.json("t").ok().flatten(), Some(Json::Bool(true)));
        assert!(Convert::Boolean.json("true").is_err());
    }

    #[tokio::test]
    async fn text_is_a_string_whatever_it_holds() {
        let texts = [
            "",
            "plain",
            "it's \"quoted\"",
            r"back\slash \n not a newline",
            "naïve 日本語 🦀",
            "tab\tnew line\ncarriage\rbell\u{7}escape\u{1b}del\u{7f}",
            "\u{1}\u{1f}",
        ];
        same_as_server(25, "text", &texts).await;
        same_as_server(1043, "varchar", &texts).await;
        same_as_server(1043, "varchar(3)", &["abc", "é"]).await;
    }

    /// Each input as the server prints it (`DateStyle` ISO, after
    /// `setup`), converted here, against the server's `to_jsonb` of it:
    /// the same JSON and the same jsonb text; `fallback` inputs are left to
    /// the server.
    async fn printed_as_server(
        type_oid: u32,
        type_name: &str,
        setup: &str,
        inputs: &[&str],
        fallback: &[&str],
    ) {
        let db = TestDb::new().await;
        db.client
            .batch_execute(&format!("SET DateStyle = ISO; {setup}"))
            .await
            .expect("setup");
        let convert = Convert::of(type_oid);
        assert_ne!(convert, Convert::Server, "{type_name} is converted here");
        for (input, expect_here) in inputs
            .iter()
            .map(|i| (i, true))
            .chain(fallback.iter().map(|i| (i, false)))
        {
            let row = db
                .client
                .query_one(
                    &format!(
                        "SELECT format('%s', $1::text::{type_name}), to_jsonb($1::text::{type_name})::text"
                    ),
                    &[input],
                )
                .await
                .expect("to_jsonb");
            let (printed, server_text): (String, String) = (row.get(0), row.get(1));
            let mut written = String::new();
            let here = convert.write(&printed, &mut written).expect("a valid value");
            if !expect_here {
                assert!(!here, "{type_name} {printed:?} is left to the server");
                assert_eq!(written, "");
                continue;
            }
            assert!(here, "{type_name} {printed:?} converted here");
            // The text a trail row is made of: jsonb's own.
            assert_eq!(written, server_text, "{type_name} {printed:?} written ({setup})");
            let server = serde_json::from_str::<Json>(&server_text);
            if let Ok(server) = server {
                let here = convert.json(&printed).expect("a valid value");
                assert_eq!(here, Some(server), "{type_name} {printed:?} ({setup})");
            }
        }
    }

    #[tokio::test]
    async fn names_addresses_and_bit_strings_are_strings() {
        printed_as_server(
            19,
            "name",
            "",
            &["", "pg_class", "Order Items", "it's \"x\"", "é"],
            &[],
        )
        .await;
        let addresses = [
            "10.1.2.3",
            "10.1.2.3/24",
            "::1",
            "2001:db8::ff00:42:8329/64",
            "0.0.0.0/0",
        ];
        printed_as_server(869, "inet", "", &addresses, &[]).await;
        printed_as_server(
            650,
            "cidr",
            "",
            &["10.1.0.0/16", "2001:db8::/32", "192.168.1"],
            &[],
        )
        .await;
        printed_as_server(829, "macaddr", "", &["08:00:2b:01:02:03", "0800.2b01.0203"], &[]).await;
        printed_as_server(
            774,
            "macaddr8",
            "",
            &["08:00:2b:01:02:03:04:05", "08-00-2b-01-02-03"],
            &[],
        )
        .await;
        printed_as_server(1560, "bit(3)", "", &["101", "000"], &[]).await;
        printed_as_server(1562, "varbit", "", &["", "1", "1011001"], &[]).await;
        printed_as_server(
            1003,
            "name[]",
            "",
            &["{}", "{a,\"b c\",NULL}", "{\"it's \\\"x\\\"\"}"],
            &[],
        )
        .await;
        printed_as_server(
            1041,
            "inet[]",
            "",
            &["{10.1.2.3/24,::1,NULL}", "{{1.2.3.4},{5.6.7.8}}"],
            &[],
        )
        .await;
        printed_as_server(651, "cidr[]", "", &["{10.1.0.0/16}"], &[]).await;
        printed_as_server(1040, "macaddr[]", "", &["{08:00:2b:01:02:03,NULL}"], &[]).await;
        printed_as_server(775, "macaddr8[]", "", &["{08:00:2b:01:02:03:04:05}"], &[]).await;
        printed_as_server(1561, "bit(2)[]", "", &["{10,01}"], &[]).await;
        printed_as_server(1563, "varbit[]", "", &["{1,\"\",101}"], &[]).await;
    }

    #[tokio::test]
    async fn padded_characters_and_uuids_are_strings() {
        let texts = ["", "a", "ab", "é", "it's", "tab\t", "  lead"];
        printed_as_server(1042, "char(4)", "", &texts, &[]).await;
        printed_as_server(1042, "bpchar", "", &texts, &[]).await;
        printed_as_server(1042, "char", "", &["x", " "], &[]).await;
        printed_as_server(
            2950,
            "uuid",
            "",
            &[
                "00000000-0000-0000-0000-000000000000",
                "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
                "{a0eebc999c0b4ef8bb6d6bb9bd380a11}",
                "ffffffff-ffff-ffff-ffff-ffffffffffff",
            ],
            &[],
        )
        .await;
    }

    #[tokio::test]
    async fn numerics_keep_their_digits_and_nan_is_a_string() {
        printed_as_server(
            1700,
            "numeric",
            "",
            &[
                "0",
                "-0",
                "1.50",
                "-1.5",
                "0.000",
                "1e3",
                "-1.25e-5",
                "12345678901234567890123456789012345678901234567890.000000000000000000001",
                "NaN",
                "Infinity",
                "-Infinity",
            ],
            &[],
        )
        .await;
        printed_as_server(1700, "numeric(6,2)", "", &["1", "-9999.994", "0.005"], &[]).await;
    }

    #[tokio::test]
    async fn jsonb_values_are_themselves() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        printed_as_server(
            3802,
            "jsonb",
            "",
            &[
                "null",
                "true",
                "1.50",
                "-0",
                "1e400",
                "12345678901234567890",
                r#""a\"\\\n\u0001é 🦀""#,
                r#"{"b": [1, 2.0, {"c": null}], "a": "x", "bb": {}, "a": "last"}"#,
                "[]",
                r#"{"\u00e9": "\ud83e\udd80"}"#,
                // Deeper than serde reads: written as it is all the same.
                &deep,
            ],
            &[],
        )
        .await;
    }

    #[tokio::test]
    async fn dates_and_timestamps_in_iso_form_as_xsd_writes_them() {
        let dates = ["2026-12-06", "0001-01-01", "9999-12-31", "2000-02-29"];
        let beyond = ["infinity", "-infinity", "0044-03-15 BC", "10000-01-01"];
        printed_as_server(1082, "date", "", &dates, &beyond).await;
        let stamps = [
            "2026-12-06 13:21:27",
            "2026-12-06 13:21:27.5",
            "2026-12-06 13:21:27.123456",
            "2026-12-06 00:00:00.000001",
            "0001-01-01 00:00:00",
            "9999-12-31 23:59:59.999999",
        ];
        let beyond_stamps = [
            "infinity",
            "-infinity",
            "0044-03-15 12:00:00 BC",
            "10000-01-01 00:00:00",
        ];
        printed_as_server(1114, "timestamp", "", &stamps, &beyond_stamps).await;
        // 23:59:59.999999 rounds to the year 10,000.
        printed_as_server(1114, "timestamp(2)", "", &stamps[..5], &[stamps[5]]).await;
        for zone in [
            "UTC",
            "Asia/Kolkata",
            "America/St_Johns",
            "Europe/Amsterdam",
            "America/Los_Angeles",
            "Pacific/Chatham",
        ] {
            let stamps = [
                "2026-12-06 13:21:27+00",
                "2026-07-01 13:21:27.25-07",
                "1850-01-01 12:00:00",
                "1900-06-01 00:00:00.000001",
                "0002-01-01 00:00:00+00",
                "2026-03-29 01:30:00",
            ];
            printed_as_server(
                1184,
                "timestamptz",
                &format!("SET TimeZone = '{zone}'"),
                &stamps,
                &[
                    "infinity",
                    "-infinity",
                    "0044-03-15 12:00:00+00 BC",
                    "0001-01-01 00:00:00+14",
                ],
            )
            .await;
        }
    }

    #[tokio::test]
    async fn floats_are_numbers_as_numeric_prints_their_text() {
        let doubles = [
            "0",
            "-0",
            "1.5",
            "-1.5",
            "0.1",
            "0.30000000000000004",
            "1e15",
            "1e16",
            "123456789012345680000",
            "1e-4",
            "1e-5",
            "-1.25e-7",
            "1e100",
            "-1e-100",
            "1.7976931348623157e308",
            "-1.7976931348623157e308",
            "2.2250738585072014e-308",
            "5e-324",
            "4503599627370496.5",
            "9007199254740993",
            "NaN",
            "Infinity",
            "-Infinity",
        ];
        let reals = [
            "0",
            "-0",
            "1.1",
            "0.1",
            "1e6",
            "16777217",
            "123456.7",
            "3.4028235e38",
            "-3.4028235e38",
            "1.17549435e-38",
            "1e-45",
            "NaN",
            "-Infinity",
        ];
        for setup in ["", "SET extra_float_digits = 0", "SET extra_float_digits = 3"] {
            printed_as_server(701, "float8", setup, &doubles, &[]).await;
            printed_as_server(701, "double precision", setup, &doubles, &[]).await;
            printed_as_server(700, "float4", setup, &reals, &[]).await;
        }
        // Not a float's text: the server's.
        for text in ["", "-", "1e", "1e+", "e5", "1.2.3", "0x10", "1e1001", " 1", "inf"] {
            assert_eq!(Convert::Float.json(text).ok().flatten(), None, "{text:?}");
        }
    }

    #[test]
    fn numbers_are_written_as_numeric_prints_them() {
        let cases = [
            ("0", "0"),
            ("-0", "0"),
            ("-0.0e1", "0"),
            ("-0.00", "0.00"),
            ("007.50", "7.50"),
            ("1e3", "1000"),
            ("1E+3", "1000"),
            ("1.0e1", "10"),
            ("0.1e1", "1"),
            ("1.50e-2", "0.0150"),
            ("-12.5e-5", "-0.000125"),
            ("1.5e-05", "0.000015"),
            ("1.", "1"),
            (".5", "0.5"),
            ("123", "123"),
        ];
        for (text, printed) in cases {
            let mut out = String::new();
            assert!(write_number(&mut out, text), "{text:?}");
            assert_eq!(out, printed, "{text:?}");
        }
    }

    #[tokio::test]
    async fn bytea_intervals_and_times_are_their_text() {
        let bytes = [r"\x", r"\x00", r"\x00ff7f80", "abc", r"a\\b", "\u{1}é"];
        printed_as_server(17, "bytea", "", &bytes, &[]).await;
        printed_as_server(17, "bytea", "SET bytea_output = escape", &bytes, &[]).await;
        let intervals = [
            "0",
            "1 day",
            "-1 day 02:03:04.5",
            "1 year 2 months 3 days 04:05:06.789",
            "-178000000 years",
            "1.5 months",
            "PT36H",
            "-00:00:00.000001",
            "1 mon -1 days +1 hour",
        ];
        for style in ["postgres", "postgres_verbose", "sql_standard", "iso_8601"] {
            printed_as_server(
                1186,
                "interval",
                &format!("SET IntervalStyle = {style}"),
                &intervals,
                &[],
            )
            .await;
        }
        printed_as_server(1186, "interval(2)", "", &intervals, &[]).await;
        let times = [
            "00:00",
            "13:21:27",
            "13:21:27.123456",
            "23:59:59.9999999",
            "24:00:00",
        ];
        printed_as_server(1083, "time", "", &times, &[]).await;
        printed_as_server(1083, "time(1)", "", &times, &[]).await;
        for setup in ["", "SET DateStyle = German", "SET TimeZone = 'America/St_Johns'"] {
            printed_as_server(
                1266,
                "timetz",
                setup,
                &[
                    "13:21:27+00",
                    "13:21:27.5-03:30",
                    "00:00:00+14:59",
                    "23:59:59.999999-12:34:56",
                    "12:00:00",
                ],
                &[],
            )
            .await;
        }
    }

    #[tokio::test]
    async fn json_is_read_as_jsonb_reads_it() {
        let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        let deeper = format!("{}1{}", "[".repeat(300), "]".repeat(300));
        printed_as_server(
            114,
            "json",
            "",
            &[
                "null",
                "true",
                " false ",
                "0",
                "-0",
                "-0.0",
                "1.50",
                "1e400",
                "-1.5E-3",
                "12345678901234567890123456789",
                r#""""#,
                r#""a\"\\\/\b\f\n\r\t\u0001\u001f é 🦀""#,
                r#""\u00e9\u4E2D\ud83e\udd80""#,
                r#"{"b": 1, "a": 2, "aa": 3, "a": {"z": [], "y": {}}, "": null}"#,
                "{\n\t\"x\" :[ 1 ,2,\r\n 3 ] , \"é\":\"e\" , \"z\" : 1e2}",
                "[]",
                "{}",
                r#"[{"k": "v", "k": "w", "k": "last"}, [[], [[]]]]"#,
                &deep,
            ],
            &[&deeper],
        )
        .await;
        // What jsonb refuses: the server's (whose to_jsonb fails as well).
        for text in [
            r#""\u0000""#,
            r#"{"a": "\ud800"}"#,
            r#""\udc00x""#,
            r#""\ud800\u0041""#,
            r#"{"b\u0000x": 1}"#,
            "[1,]",
            "{\"a\" 1}",
            "nul",
            "[1] 2",
        ] {
            assert_eq!(Convert::Json.json(text).ok().flatten(), None, "{text:?}");
        }
    }

    #[tokio::test]
    async fn arrays_are_nested_json_arrays_of_their_converted_elements() {
        printed_as_server(
            1007,
            "int4[]",
            "",
            &[
                "{}",
                "{1}",
                "{1,NULL,-3}",
                "{{1,2},{3,4}}",
                "{{{1},{2}},{{NULL},{4}}}",
                "[0:1]={1,2}",
                "[-5:-4][2:3]={{1,2},{3,4}}",
                "{NULL}",
            ],
            &[],
        )
        .await;
        printed_as_server(1005, "int2[]", "", &["{-32768,32767}"], &[]).await;
        printed_as_server(1016, "int8[]", "", &["{9223372036854775807,NULL}"], &[]).await;
        printed_as_server(1000, "bool[]", "", &["{t,f,NULL}", "[2:2]={t}"], &[]).await;
        let texts = [
            "{}",
            r#"{"",NULL,"NULL","null",Null,"a b","x,y","z\"w","back\\slash","{}",é,🦀}"#,
            "{\"tab\tnew\nline\",\"\u{1}\"}",
            r#"{{a,b},{"c d",NULL}}"#,
            r#"[3:4]={" lead","trail "}"#,
        ];
        printed_as_server(1009, "text[]", "", &texts, &[]).await;
        printed_as_server(1015, "varchar[]", "", &texts, &[]).await;
        printed_as_server(1014, "char(3)[]", "", &["{a,NULL,abc,\"\"}"], &[]).await;
        printed_as_server(
            2951,
            "uuid[]",
            "",
            &["{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11,NULL}"],
            &[],
        )
        .await;
        printed_as_server(1001, "bytea[]", "", &[r#"{"\\x00ff",NULL,"\\x"}"#], &[]).await;
        printed_as_server(
            1187,
            "interval[]",
            "",
            &["{\"1 day\",NULL,\"-1 years -00:00:01\"}", "{{1 day},{2 days}}"],
            &[],
        )
        .await;
        printed_as_server(1183, "time[]", "", &["{13:21:27.5,NULL}"], &[]).await;
        printed_as_server(1270, "timetz[]", "", &["{13:21:27.5+05:30,00:00-00:00:01}"], &[]).await;
        printed_as_server(
            1231,
            "numeric[]",
            "",
            &[
                "{1.50,-0,NaN,Infinity,-Infinity,NULL,1e20,-1.25e-5}",
                "{{1},{2.0}}",
            ],
            &[],
        )
        .await;
        for setup in ["", "SET extra_float_digits = 0"] {
            printed_as_server(
                1022,
                "float8[]",
                setup,
                &["{0.1,-0,NaN,Infinity,-Infinity,NULL,1e300,5e-324}", "[0:0]={1.5}"],
                &[],
            )
            .await;
            printed_as_server(
                1021,
                "float4[]",
                setup,
                &["{1.1,1e6,NaN,NULL,-3.4028235e38}"],
                &[],
            )
            .await;
        }
        printed_as_server(
            3807,
            "jsonb[]",
            "",
            &[
                r#"{"{\"b\": [1, 2], \"a\": null}",null,NULL,"\"s\"",1.50,"[]"}"#,
                r#"{{"{}"},{"1e2"}}"#,
            ],
            &[],
        )
        .await;
        printed_as_server(
            199,
            "json[]",
            "",
            &[
                r#"{"{\"b\": [1, 2], \"a\": null, \"a\": 1}",null,NULL,"\"s\\u00e9\"",1.50,"[ ]"}"#,
                r#"[0:1]={" 1e2 ","-0"}"#,
            ],
            &[],
        )
        .await;
        printed_as_server(
            1182,
            "date[]",
            "",
            &["{2026-12-06,NULL,0001-01-01}"],
            &["{2026-12-06,infinity}", "{\"0044-03-15 BC\"}"],
        )
        .await;
        printed_as_server(
            1115,
            "timestamp[]",
            "",
            &["{\"2026-12-06 13:21:27.5\",NULL}"],
            &["{-infinity}"],
        )
        .await;
        printed_as_server(
            1185,
            "timestamptz[]",
            "SET TimeZone = 'America/St_Johns'",
            &["{\"2026-12-06 13:21:27.5+00\",\"1850-01-01 00:00:00+00\",NULL}"],
            &["{infinity}"],
        )
        .await;
        // Not an array's text, or elements the server converts: the server's.
        for text in [
            "",
            "{",
            "{1",
            "{1,}x",
            "[1:2]{1,2}",
            "[a]={1}",
            "{1}}",
            "{{1},2}x",
        ] {
            assert_eq!(Convert::of(1007).json(text).ok().flatten(), None, "{text:?}");
        }
        assert_eq!(Convert::of(791), Convert::Server, "money[]");
    }

    #[tokio::test]
    async fn other_date_styles_are_left_to_the_server() {
        let convert = Convert::of(1184);
        for printed in [
            "Sun Dec 06 13:21:27 2026 UTC",
            "12/06/2026 13:21:27 UTC",
            "06.12.2026 13:21:27 UTC",
            "2026-12-06T13:21:27+00:00",
            "2026-12-06 13:21:27.1234567+00",
            "2026-12-06 13:21:27+0",
        ] {
            assert_eq!(convert.json(printed).ok().flatten(), None, "{printed:?}");
        }
        assert_eq!(Convert::of(1082).json("12-06-2026").ok().flatten(), None);
        assert_eq!(
            Convert::of(1114).json("2026-12-06 13:21:27+00").ok().flatten(),
            None
        );
    }

    #[test]
    fn nulls_and_unchanged_values_are_null_and_other_types_go_to_the_server() {
        let columns = vec![
            ("i".to_string(), Convert::of(20)),
            ("b".to_string(), Convert::of(16)),
            ("t".to_string(), Convert::of(25)),
            // money (its text follows lc_monetary): the server's.
            ("n".to_string(), Convert::of(790)),
            ("s".to_string(), Convert::of(25)),
        ];
        assert_eq!(columns[3].1, Convert::Server);
        let row = native_row(
            &columns,
            &[
                Value::Null,
                Value::Unchanged,
                Value::Null,
                Value::Text("10.0.0.1/8".into()),
                Value::Text("a\"b\\c\u{1}é".into()),
            ],
            true,
        )
        .expect("converted")
        .expect("no value needs the server");
        let texts: Vec<Option<&str>> = (0..6).map(|i| row.get(i)).collect();
        assert_eq!(
            texts,
            [
                Some("null"),
                Some("null"),
                Some("null"),
                Some(""),
                Some(r#""a\"b\\c\u0001é""#),
                None
            ]
        );
        // The server's value set afterwards, as jsonb prints it.
        let mut row = row;
        row.set(
            3,
            &serde_json::from_str(r#"{"days": 1, "d": [1.50]}"#).unwrap_or_default(),
        );
        assert_eq!(row.get(3), Some(r#"{"d": [1.50], "days": 1}"#));
        assert_eq!(row.get(4), Some(r#""a\"b\\c\u0001é""#));
        // A domain over int4 has its own OID: the server's.
        assert_eq!(Convert::of(16_385), Convert::Server);
        // A timestamp in another DateStyle sends the row to the server.
        let stamps = vec![("at".to_string(), Convert::of(1114))];
        let other = [Value::Text("12/06/2026 13:21:27".into())];
        assert_eq!(native_row(&stamps, &other, true).ok().flatten(), None);
        let wide = native_row(&stamps, &other, false).ok().flatten();
        assert_eq!(wide.as_ref().and_then(|r| r.get(0)), Some(""));
        // Integers as they print; a malformed one is an error.
        let mut out = String::new();
        assert!(Convert::Integer.write("-42", &mut out).unwrap_or(false));
        assert!(Convert::Integer.write("007", &mut out).unwrap_or(false));
        assert_eq!(out, "-427");
        assert!(Convert::Integer.write("1.5", &mut out).is_err());
        assert!(Convert::Integer.write("-", &mut out).is_err());
    }
}
