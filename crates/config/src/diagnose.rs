//! Turns unknown keys and TOML/serde errors into [`ConfigError`]s that name
//! the key and section involved.

use crate::error::{ConfigError, ErrorKind, Source};
use crate::raw::{RawCapture, RawContext, RawTable};
use crate::suggest::suggest;
use crate::walk::{KeyInfo, key_for};

/// The error for an unknown key, with a suggestion when one fits.
pub(crate) fn unknown_key(src: Source<'_>, key: &KeyInfo, expected: &'static [&'static str]) -> ConfigError {
    let name = key.key();
    let section = key.section();
    let home = [
        ("[capture]", RawCapture::KEYS),
        ("[context]", RawContext::KEYS),
        ("a [tables.\"schema.table\"] section", RawTable::KEYS),
    ]
    .into_iter()
    .find(|(_, keys)| keys.contains(&name) && *keys != expected);
    let help = if let Some((home, _)) = home {
        format!("`{name}` belongs in {home}")
    } else if let Some(s) = suggest(name, expected.iter().copied()) {
        format!("did you mean `{s}`?")
    } else {
        let keys: Vec<String> = expected.iter().map(|k| format!("`{k}`")).collect();
        let mut help = format!("valid keys here are {}", keys.join(", "));
        if expected == RawContext::KEYS {
            help.push_str("; other context keys go in [context.extra]");
        }
        help
    };
    src.error(
        ErrorKind::UnknownKey,
        &key.span,
        format!("unknown key `{name}` {section}"),
        Some(help),
    )
}

/// Converts an error from the TOML parser or serde. `keys` are the keys the
/// walk found (empty if it failed), used to name the key a value belongs to.
pub(crate) fn toml_error(
    src: Source<'_>,
    error: &toml::de::Error,
    keys: &[KeyInfo],
    kind: ErrorKind,
) -> ConfigError {
    let message = error
        .message()
        .trim()
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ");
    let Some(span) = error.span() else {
        return src.unlocated(kind, message, None);
    };
    let key = key_for(keys, &span);
    if let Some(key) = key.filter(|k| k.span.start == span.start) {
        if let Some(expected) = key.unknown {
            return unknown_key(src, key, expected);
        }
    }
    // toml hands dates and times to serde as a map with a private key.
    let is_date = message.contains("$__toml_private_datetime")
        || (message.starts_with("invalid type: map")
            && src
                .text
                .get(span.start..)
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit())));
    if is_date {
        let about = key.map_or(String::new(), |k| format!(" for `{}` {}", k.key(), k.section()));
        return src.error(
            ErrorKind::WrongType,
            &span,
            format!("wrong type{about}: dates and times are not allowed here"),
            None,
        );
    }
    match (message.strip_prefix("invalid type: "), key) {
        (Some(rest), Some(key)) => src.error(
            ErrorKind::WrongType,
            &span,
            format!(
                "wrong type for `{}` {}: {}",
                key.key(),
                key.section(),
                describe_type_error(rest)
            ),
            None,
        ),
        (Some(rest), None) => src.error(
            ErrorKind::WrongType,
            &span,
            format!("wrong type: {}", describe_type_error(rest)),
            None,
        ),
        (None, _) => src.error(kind, &span, message, None),
    }
}

/// Rewrites serde's "string \"x\", expected a sequence" as
/// "expected an array, found string \"x\"", in TOML words.
fn describe_type_error(rest: &str) -> String {
    let Some((found, expected)) = rest.rsplit_once(", expected ") else {
        return rest.to_string();
    };
    let expected = match expected {
        "a sequence" => "an array",
        e if e == "a map" || e.starts_with("struct ") => "a table",
        e => e,
    };
    let found = match found {
        "sequence" => "an array",
        "map" => "a table",
        f => f,
    };
    format!("expected {expected}, found {found}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::RawConfig;

    const TOP_KEYS: &[&str] = RawConfig::KEYS;

    #[test]
    fn type_errors_in_toml_words() {
        assert_eq!(
            describe_type_error("string \"x\", expected a sequence"),
            "expected an array, found string \"x\""
        );
        assert_eq!(
            describe_type_error("sequence, expected struct RawTable"),
            "expected a table, found an array"
        );
        assert_eq!(
            describe_type_error("integer `5`, expected a string"),
            "expected a string, found integer `5`"
        );
        assert_eq!(describe_type_error("odd"), "odd");
    }

    #[test]
    fn unknown_key_help() {
        let src = Source {
            text: "include = []",
            origin: "p.toml",
        };
        let key = KeyInfo {
            path: vec!["include".into()],
            span: 0..7,
            unknown: Some(TOP_KEYS),
        };
        let err = unknown_key(src, &key, TOP_KEYS);
        assert_eq!(
            err.to_string(),
            "p.toml:1:1: unknown key `include` at the top level\n  help: `include` belongs in [capture]"
        );
    }
}
