//! The file as deserialized by serde, before validation, with spans.
//!
//! Every struct denies unknown fields. Unknown keys are normally reported
//! earlier, with a better message, by [`crate::walk`]; the `KEYS` constants
//! here list the accepted keys for it and are checked against serde by tests.

use std::collections::BTreeMap;

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{MapAccess, Visitor, value::MapAccessDeserializer};
use serde_spanned::Spanned;

/// A list of strings, with the span of the list and of each item.
pub(crate) type List = Spanned<Vec<Spanned<String>>>;

/// A section: a `T` that may only be written as a TOML table.
///
/// Derived struct deserializers also accept arrays (as tuples), which would
/// give confusing errors for `capture = []`; this wrapper accepts tables only.
#[derive(Debug, Default)]
pub(crate) struct Table<T>(pub(crate) T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Table<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TableVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for TableVisitor<T> {
            type Value = Table<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Table<T>, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(Table)
            }
        }

        deserializer.deserialize_map(TableVisitor(PhantomData))
    }
}

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub(crate) capture: Table<RawCapture>,
    #[serde(default)]
    pub(crate) context: Table<RawContext>,
    #[serde(default)]
    pub(crate) tables: BTreeMap<Spanned<String>, Table<RawTable>>,
    #[serde(default)]
    pub(crate) install: Table<RawInstall>,
    #[serde(default)]
    pub(crate) retention: Table<RawRetention>,
    #[serde(default)]
    pub(crate) report: Table<RawReport>,
    #[serde(default)]
    pub(crate) serve: Table<RawServe>,
}

impl RawConfig {
    pub(crate) const KEYS: &[&str] = &[
        "capture",
        "context",
        "tables",
        "install",
        "retention",
        "report",
        "serve",
    ];
}

/// `[retention]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetention {
    pub(crate) partition: Option<Spanned<String>>,
    pub(crate) premake: Option<Spanned<i64>>,
    pub(crate) keep: Option<Spanned<String>>,
    pub(crate) archive_dir: Option<Spanned<String>>,
    pub(crate) tables: Option<std::collections::BTreeMap<String, RawTableKeep>>,
}

impl RawRetention {
    pub(crate) const KEYS: &[&str] = &["partition", "premake", "keep", "archive_dir", "tables"];
}

/// `[retention.tables."schema.table"]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTableKeep {
    pub(crate) keep: Spanned<String>,
}

/// `[report]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReport {
    pub(crate) application_roles: Option<List>,
    pub(crate) migration_roles: Option<List>,
    pub(crate) subject_columns: Option<List>,
}

impl RawReport {
    pub(crate) const KEYS: &[&str] = &["application_roles", "migration_roles", "subject_columns"];
}

/// `[serve]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServe {
    pub(crate) listen: Option<Spanned<String>>,
    pub(crate) anonymous_read: Option<bool>,
    pub(crate) tls_cert: Option<Spanned<String>>,
    pub(crate) tls_key: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) tokens: BTreeMap<Spanned<String>, Table<RawToken>>,
}

impl RawServe {
    pub(crate) const KEYS: &[&str] = &["listen", "anonymous_read", "tls_cert", "tls_key", "tokens"];
}

/// `[serve.tokens.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawToken {
    pub(crate) role: Option<Spanned<String>>,
    pub(crate) sha256: Option<Spanned<String>>,
}

impl RawToken {
    pub(crate) const KEYS: &[&str] = &["role", "sha256"];
}

/// `[install]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInstall {
    pub(crate) accept_installer_can_edit_trail: Option<bool>,
    pub(crate) accept_unseen_capture_gaps: Option<bool>,
}

impl RawInstall {
    pub(crate) const KEYS: &[&str] = &["accept_installer_can_edit_trail", "accept_unseen_capture_gaps"];
}

/// `[capture]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCapture {
    pub(crate) schemas: Option<List>,
    pub(crate) include: Option<List>,
    pub(crate) exclude: Option<List>,
    pub(crate) images: Option<Spanned<String>>,
    pub(crate) ignore_columns: Option<List>,
    pub(crate) redact_columns: Option<List>,
    pub(crate) auto_attach: Option<bool>,
    pub(crate) truncate: Option<Spanned<String>>,
    pub(crate) truncate_row_limit: Option<Spanned<i64>>,
    pub(crate) mode: Option<Spanned<String>>,
    pub(crate) wal_max_lag_bytes: Option<Spanned<i64>>,
}

impl RawCapture {
    pub(crate) const KEYS: &[&str] = &[
        "schemas",
        "include",
        "exclude",
        "images",
        "ignore_columns",
        "redact_columns",
        "auto_attach",
        "truncate",
        "truncate_row_limit",
        "mode",
        "wal_max_lag_bytes",
    ];
}

/// `[context]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawContext {
    pub(crate) actor_id: Option<List>,
    pub(crate) actor_name: Option<List>,
    pub(crate) actor_type: Option<List>,
    pub(crate) reason: Option<List>,
    pub(crate) migration: Option<List>,
    pub(crate) request_id: Option<List>,
    pub(crate) session_id: Option<List>,
    pub(crate) business_process: Option<List>,
    pub(crate) ip: Option<List>,
    pub(crate) user_agent: Option<List>,
    pub(crate) require_actor: Option<bool>,
    pub(crate) outside_transaction: Option<Spanned<String>>,
    pub(crate) extra: Option<BTreeMap<Spanned<String>, List>>,
}

impl RawContext {
    pub(crate) const KEYS: &[&str] = &[
        "actor_id",
        "actor_name",
        "actor_type",
        "reason",
        "migration",
        "request_id",
        "session_id",
        "business_process",
        "ip",
        "user_agent",
        "require_actor",
        "outside_transaction",
        "extra",
    ];
}

/// `[tables."..."]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTable {
    pub(crate) key: Option<List>,
    pub(crate) images: Option<Spanned<String>>,
    pub(crate) ignore_columns: Option<List>,
    pub(crate) redact_columns: Option<List>,
    pub(crate) truncate: Option<Spanned<String>>,
    pub(crate) truncate_row_limit: Option<Spanned<i64>>,
    pub(crate) mode: Option<Spanned<String>>,
}

impl RawTable {
    pub(crate) const KEYS: &[&str] = &[
        "key",
        "images",
        "ignore_columns",
        "redact_columns",
        "truncate",
        "truncate_row_limit",
        "mode",
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key listed in `KEYS` is accepted by serde, and serde's own list
    /// of expected fields (in its unknown-field message) is exactly `KEYS`.
    fn check<T: for<'de> Deserialize<'de>>(keys: &[&str], value: &str) {
        for key in keys {
            let text = format!("{key} = {value}");
            let result: Result<T, _> = toml::from_str(&text);
            if let Err(e) = result {
                assert!(!e.message().contains("unknown field"), "`{key}` rejected: {e}");
            }
        }
        let err = toml::from_str::<T>("zzz = 1").err().map(|e| e.to_string());
        let err = err.unwrap_or_default();
        // serde lists three or more fields as "expected one of `a`, `b`, `c`",
        // two as "expected `a` or `b`".
        let list = match err.split_once("expected one of ") {
            Some((_, rest)) => rest,
            None => err.split_once("expected `").map_or("", |(_, rest)| rest),
        };
        let expected: Vec<&str> = list
            .lines()
            .next()
            .unwrap_or_default()
            .split(", ")
            .flat_map(|k| k.split(" or "))
            .map(|k| k.trim_matches('`'))
            .collect();
        assert_eq!(expected, keys, "{err}");
    }

    #[test]
    fn keys_match_serde_fields() {
        check::<RawConfig>(RawConfig::KEYS, "{}");
        check::<RawCapture>(RawCapture::KEYS, "[]");
        check::<RawContext>(RawContext::KEYS, "[]");
        check::<RawTable>(RawTable::KEYS, "[]");
        check::<RawInstall>(RawInstall::KEYS, "[]");
        check::<RawRetention>(RawRetention::KEYS, "[]");
        check::<RawReport>(RawReport::KEYS, "[]");
        check::<RawServe>(RawServe::KEYS, "{}");
        check::<RawToken>(RawToken::KEYS, "[]");
    }
}
