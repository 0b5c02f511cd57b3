//! A first pass over the document that records every key with its path and
//! span, and flags keys pgtrail does not know.
//!
//! The pass is guided by the key lists of [`crate::raw`]: it descends only
//! into sections (`[capture]`, `[context]`, `[context.extra]`, `[tables]` and
//! each `[tables."..."]`) and skips values without looking at their types, so
//! that type errors are left to serde, which reports them at the value. The
//! recorded keys also let us say *which* key a serde error is about.

use std::fmt;
use std::ops::Range;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_spanned::Spanned;

use crate::raw::{
    RawCapture, RawConfig, RawContext, RawInstall, RawReport, RawRetention, RawServe, RawTable, RawToken,
};

/// One key of the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyInfo {
    /// The path of the key, ending with the key itself.
    pub(crate) path: Vec<String>,
    /// Where the key is written (for a table header, inside the header).
    pub(crate) span: Range<usize>,
    /// For an unknown key, the keys that would have been accepted.
    pub(crate) unknown: Option<&'static [&'static str]>,
}

impl KeyInfo {
    /// The key itself.
    pub(crate) fn key(&self) -> &str {
        self.path.last().map_or("", String::as_str)
    }

    /// The section the key belongs to.
    pub(crate) fn section(&self) -> Section<'_> {
        Section(&self.path[..self.path.len().saturating_sub(1)])
    }
}

/// A section path, displayed as "at the top level" or `in [tables."a.b"]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Section<'a>(pub(crate) &'a [String]);

impl fmt::Display for Section<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("at the top level");
        }
        f.write_str("in [")?;
        for (i, key) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write_toml_key(f, key)?;
        }
        f.write_str("]")
    }
}

/// Writes `key` as TOML writes keys: bare when possible, quoted otherwise.
pub(crate) fn write_toml_key(f: &mut impl fmt::Write, key: &str) -> fmt::Result {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        return f.write_str(key);
    }
    f.write_str("\"")?;
    for c in key.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            c if c.is_control() => write!(f, "\\u{:04X}", u32::from(c))?,
            c => f.write_char(c)?,
        }
    }
    f.write_str("\"")
}

/// What a key is, given the path of its section.
enum Child {
    /// A section to descend into.
    Section,
    /// A value to skip.
    Value,
    /// A key that is not accepted here.
    Unknown(&'static [&'static str]),
}

fn classify(section: &[String], key: &str) -> Child {
    let known = |keys: &'static [&'static str]| {
        if keys.contains(&key) {
            Child::Value
        } else {
            Child::Unknown(keys)
        }
    };
    let section: Vec<&str> = section.iter().map(String::as_str).collect();
    match (section.as_slice(), key) {
        ([], _) if RawConfig::KEYS.contains(&key) => Child::Section,
        ([], _) => Child::Unknown(RawConfig::KEYS),
        (["capture"], _) => known(RawCapture::KEYS),
        (["context"], "extra") => Child::Section,
        (["context"], _) => known(RawContext::KEYS),
        (["tables"], _) => Child::Section,
        (["tables", _], _) => known(RawTable::KEYS),
        (["install"], _) => known(RawInstall::KEYS),
        (["retention"], _) => known(RawRetention::KEYS),
        (["report"], _) => known(RawReport::KEYS),
        (["serve"], "tokens") => Child::Section,
        (["serve"], _) => known(RawServe::KEYS),
        (["serve", "tokens"], _) => Child::Section,
        (["serve", "tokens", _], _) => known(RawToken::KEYS),
        _ => Child::Value,
    }
}

/// Walks `text` and returns every key it contains, in no particular order,
/// and the error that stopped the walk, if any (the keys found before it are
/// still returned).
pub(crate) fn walk(text: &str) -> (Vec<KeyInfo>, Option<toml::de::Error>) {
    let mut keys = Vec::new();
    let result = WalkSeed {
        path: Vec::new(),
        keys: &mut keys,
    }
    .deserialize(toml::Deserializer::new(text));
    (keys, result.err())
}

/// The key a value written at `span` belongs to: the first key written
/// inside `span` (for an array of tables, whose span starts at `[[`), or else
/// the last key written before it.
pub(crate) fn key_for<'k>(keys: &'k [KeyInfo], span: &Range<usize>) -> Option<&'k KeyInfo> {
    keys.iter()
        .filter(|k| span.contains(&k.span.start))
        .min_by_key(|k| k.span.start)
        .or_else(|| {
            keys.iter()
                .filter(|k| k.span.start <= span.start)
                .max_by_key(|k| k.span.start)
        })
}

struct WalkSeed<'a> {
    path: Vec<String>,
    keys: &'a mut Vec<KeyInfo>,
}

impl<'de> DeserializeSeed<'de> for WalkSeed<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for WalkSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let span = key.span();
            let key = key.into_inner();
            let child = classify(&self.path, &key);
            let mut path = self.path.clone();
            path.push(key);
            self.keys.push(KeyInfo {
                path: path.clone(),
                span,
                unknown: match child {
                    Child::Unknown(expected) => Some(expected),
                    Child::Section | Child::Value => None,
                },
            });
            match child {
                Child::Section => map.next_value_seed(WalkSeed {
                    path,
                    keys: &mut *self.keys,
                })?,
                Child::Value | Child::Unknown(_) => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(text: &str) -> Vec<(String, bool)> {
        let (mut keys, error) = walk(text);
        assert!(error.is_none(), "{error:?}");
        keys.sort_by_key(|k| k.span.start);
        keys.iter()
            .map(|k| (k.path.join("/"), k.unknown.is_some()))
            .collect()
    }

    #[test]
    fn records_keys_and_flags_unknown_ones() {
        let text = r#"
top = 1
[capture]
include = ["*"]
inclde = { a = 1 }
[context]
actor_id = ["app.user_id"]
[context.extra]
anything = ["app.x"]
[tables."public.users"]
key = ["id"]
kee = ["id"]
"#;
        assert_eq!(
            paths(text),
            [
                ("top".to_string(), true),
                ("capture".into(), false),
                ("capture/include".into(), false),
                ("capture/inclde".into(), true),
                ("context".into(), false),
                ("context/actor_id".into(), false),
                ("context/extra".into(), false),
                ("context/extra/anything".into(), false),
                ("tables".into(), false),
                ("tables/public.users".into(), false),
                ("tables/public.users/key".into(), false),
                ("tables/public.users/kee".into(), true),
            ]
        );
    }

    #[test]
    fn tolerates_wrong_types_in_sections() {
        assert_eq!(
            paths("capture = 5\ntables = [1, 2]"),
            [("capture".to_string(), false), ("tables".into(), false)]
        );
    }

    #[test]
    fn dotted_and_inline_keys() {
        let text = "capture.incl = []\ntables = { users = { key = [], x = 1 } }";
        let keys = paths(text);
        assert!(keys.contains(&("capture/incl".into(), true)));
        assert!(keys.contains(&("tables/users/x".into(), true)));
    }

    #[test]
    fn sections_display_as_headers() {
        let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(Section(&[]).to_string(), "at the top level");
        assert_eq!(Section(&path(&["capture"])).to_string(), "in [capture]");
        assert_eq!(
            Section(&path(&["tables", "public.users"])).to_string(),
            "in [tables.\"public.users\"]"
        );
        assert_eq!(
            Section(&path(&["tables", "\"a\".b\\"])).to_string(),
            r#"in [tables."\"a\".b\\"]"#
        );
    }
}
