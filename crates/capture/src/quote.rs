//! Quoting identifiers and literals for the SQL that cannot take bind
//! parameters: DDL, and the migration file `pgtrail sql` prints.
//!
//! These follow PostgreSQL's own `quote_ident` and `quote_literal` (with
//! `standard_conforming_strings = on`, the default since 9.1), with one
//! difference: identifiers are always quoted, so a name never depends on
//! which words are reserved in a given server version.

/// Quotes an identifier: `Order Items` → `"Order Items"`, `a"b` → `"a""b"`.
pub fn ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for ch in name.chars() {
        if ch == '"' {
            out.push('"');
        }
        out.push(ch);
    }
    out.push('"');
    out
}

/// Quotes a schema-qualified name: `"public"."users"`.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

/// Quotes a string literal: `it's` → `'it''s'`. Backslashes need no escape
/// because the literal is a standard string. NUL cannot appear in a
/// PostgreSQL text value, so callers never pass one; it is dropped if they do.
pub fn literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for ch in value.chars() {
        match ch {
            '\'' => out.push_str("''"),
            '\0' => {}
            _ => out.push(ch),
        }
    }
    out.push('\'');
    out
}

/// A `text[]` literal: `ARRAY['a', 'b']::text[]`.
pub fn text_array(values: &[String]) -> String {
    let items: Vec<String> = values.iter().map(|v| literal(v)).collect();
    format!("ARRAY[{}]::text[]", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quotes_identifiers() {
        assert_eq!(ident("users"), r#""users""#);
        assert_eq!(ident("Order Items"), r#""Order Items""#);
        assert_eq!(ident(r#"a"b"#), r#""a""b""#);
        assert_eq!(ident("select"), r#""select""#);
        assert_eq!(qualified("public", "Élève"), r#""public"."Élève""#);
    }

    #[test]
    fn quotes_literals() {
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal(r"C:\path"), r"'C:\path'");
        assert_eq!(
            text_array(&["a".into(), "b'c".into()]),
            "ARRAY['a', 'b''c']::text[]"
        );
    }

    /// Reads back a quoted identifier the way PostgreSQL's scanner does.
    fn unquote_ident(quoted: &str) -> Option<String> {
        let inner = quoted.strip_prefix('"')?.strip_suffix('"')?;
        let mut out = String::new();
        let mut chars = inner.chars().peekable();
        while let Some(ch) = chars.next() {
            if ch == '"' && chars.next() != Some('"') {
                return None;
            }
            out.push(ch);
        }
        Some(out)
    }

    proptest! {
        #[test]
        fn identifiers_round_trip(name in "\\PC*") {
            prop_assert_eq!(unquote_ident(&ident(&name)), Some(name));
        }

        #[test]
        fn literals_have_balanced_quotes(value in "[^\\x00]*") {
            let quoted = literal(&value);
            let inner = &quoted[1..quoted.len() - 1];
            prop_assert_eq!(inner.replace("''", ""), value.replace('\'', ""));
        }
    }
}
