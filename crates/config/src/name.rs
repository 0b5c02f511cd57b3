//! Table names as written in `[tables."..."]` keys and in patterns.
//!
//! A name is one part (`table`) or two parts (`schema.table`) separated by a
//! dot. Each part is either
//!
//! * a *bare* run of characters without dots and double quotes, taken
//!   literally (spaces, case and Unicode are kept: `public.Order Items`), or
//! * a *quoted* identifier in SQL style, `"..."`, in which `""` stands for one
//!   double quote and dots have no special meaning.
//!
//! So `public.users` splits at the dot, and a schema or table whose name
//! contains a dot must be quoted: `"Weird.Schema"."Order.Items"` (in TOML,
//! `[tables."\"Weird.Schema\".\"Order.Items\""]`). Names with more than one
//! unquoted dot, such as `a.b.c`, are rejected.

use std::fmt;
use std::str::FromStr;

/// Why a table name (or pattern) could not be split into schema and table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("the name is empty")]
    Empty,
    /// A part between dots is empty, e.g. `public.` or `.users`.
    #[error("`{0}` has an empty part; write `table` or `schema.table`")]
    EmptyPart(String),
    /// More than one unquoted dot, e.g. `a.b.c`.
    #[error(
        "`{0}` has more than one dot; write `table` or `schema.table`, and quote names that contain dots, like `\"my.schema\".\"my.table\"`"
    )]
    TooManyParts(String),
    /// A quoted part is not closed.
    #[error("`{0}` has an unterminated quoted identifier; close it with `\"`")]
    UnterminatedQuote(String),
    /// A double quote in the middle of a bare part, e.g. `my"table`.
    #[error(
        "`{0}` has a `\"` inside an unquoted name; quote the whole part and double the quote, like `\"my\"\"table\"`"
    )]
    StrayQuote(String),
    /// Something other than a dot follows a quoted part, e.g. `"a"b`.
    #[error("`{0}` has text right after a quoted identifier; expected `.` or the end")]
    AfterQuote(String),
}

/// One dot-separated part of a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Part {
    /// The identifier, with quotes removed and `""` unescaped.
    pub(crate) text: String,
    /// Whether it was written as a quoted identifier.
    pub(crate) quoted: bool,
}

/// Splits `input` into one or two parts (see the module documentation).
pub(crate) fn split_parts(input: &str) -> Result<Vec<Part>, NameError> {
    if input.is_empty() {
        return Err(NameError::Empty);
    }
    let mut parts = Vec::new();
    let mut chars = input.chars().peekable();
    loop {
        let part = if chars.peek() == Some(&'"') {
            chars.next();
            let mut text = String::new();
            loop {
                match chars.next() {
                    None => return Err(NameError::UnterminatedQuote(input.to_string())),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        text.push('"');
                    }
                    Some('"') => break,
                    Some(c) => text.push(c),
                }
            }
            if !matches!(chars.peek(), None | Some('.')) {
                return Err(NameError::AfterQuote(input.to_string()));
            }
            Part { text, quoted: true }
        } else {
            let mut text = String::new();
            while let Some(&c) = chars.peek() {
                match c {
                    '.' => break,
                    '"' => return Err(NameError::StrayQuote(input.to_string())),
                    _ => text.push(c),
                }
                chars.next();
            }
            Part { text, quoted: false }
        };
        if part.text.is_empty() {
            return Err(NameError::EmptyPart(input.to_string()));
        }
        parts.push(part);
        match chars.next() {
            None => break,
            Some(_dot) => {
                if parts.len() == 2 {
                    return Err(NameError::TooManyParts(input.to_string()));
                }
                if chars.peek().is_none() {
                    return Err(NameError::EmptyPart(input.to_string()));
                }
            }
        }
    }
    Ok(parts)
}

/// Writes one identifier so that [`split_parts`] reads it back unchanged:
/// bare when it has no dot or quote, quoted otherwise.
pub(crate) fn write_part(f: &mut impl fmt::Write, text: &str) -> fmt::Result {
    if !text.is_empty() && !text.contains(['.', '"']) {
        f.write_str(text)
    } else {
        write!(f, "\"{}\"", text.replace('"', "\"\""))
    }
}

/// A table name as written in the file: `table` or `schema.table`.
///
/// Only what was written is stored; resolving a bare table name to a schema
/// happens against the database catalog elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QualifiedName {
    /// The schema, when the name was written `schema.table`.
    pub schema: Option<String>,
    /// The table.
    pub table: String,
}

impl QualifiedName {
    /// A name with an explicit schema.
    pub fn new(schema: impl Into<String>, table: impl Into<String>) -> Self {
        QualifiedName {
            schema: Some(schema.into()),
            table: table.into(),
        }
    }

    /// A name without a schema.
    pub fn bare(table: impl Into<String>) -> Self {
        QualifiedName {
            schema: None,
            table: table.into(),
        }
    }

    /// Parses `table`, `schema.table` or their quoted forms (see the module
    /// documentation).
    ///
    /// ```
    /// use pgtrail_config::QualifiedName;
    /// let name = QualifiedName::parse(r#""Weird.Schema"."Order.Items""#).unwrap();
    /// assert_eq!(name, QualifiedName::new("Weird.Schema", "Order.Items"));
    /// assert!(QualifiedName::parse("a.b.c").is_err());
    /// ```
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let mut parts = split_parts(input)?.into_iter().map(|p| p.text);
        match (parts.next(), parts.next()) {
            (Some(table), None) => Ok(QualifiedName::bare(table)),
            (Some(schema), Some(table)) => Ok(QualifiedName::new(schema, table)),
            (None, _) => Err(NameError::Empty),
        }
    }

    /// Whether this name designates `schema.table`. A name without a schema
    /// designates a table of that name in any schema.
    pub fn matches(&self, schema: &str, table: &str) -> bool {
        self.table == table && self.schema.as_deref().is_none_or(|s| s == schema)
    }
}

impl FromStr for QualifiedName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        QualifiedName::parse(s)
    }
}

/// Writes the name so that [`QualifiedName::parse`] reads it back: parts that
/// contain a dot or a quote are quoted, others are written bare.
impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(schema) = &self.schema {
            write_part(f, schema)?;
            f.write_str(".")?;
        }
        write_part(f, &self.table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(s: &str) -> Result<QualifiedName, NameError> {
        QualifiedName::parse(s)
    }

    #[test]
    fn bare_and_qualified() {
        assert_eq!(parse("users"), Ok(QualifiedName::bare("users")));
        assert_eq!(parse("public.users"), Ok(QualifiedName::new("public", "users")));
        assert_eq!(
            parse("public.Order Items"),
            Ok(QualifiedName::new("public", "Order Items"))
        );
        assert_eq!(
            parse("données.élèves"),
            Ok(QualifiedName::new("données", "élèves"))
        );
        assert_eq!(parse(" a . b "), Ok(QualifiedName::new(" a ", " b ")));
    }

    #[test]
    fn quoted_parts() {
        assert_eq!(
            parse(r#""Weird.Schema"."Order.Items""#),
            Ok(QualifiedName::new("Weird.Schema", "Order.Items"))
        );
        assert_eq!(parse(r#"public."a.b""#), Ok(QualifiedName::new("public", "a.b")));
        assert_eq!(
            parse(r#""say ""hi"" 🙂".t"#),
            Ok(QualifiedName::new("say \"hi\" 🙂", "t"))
        );
        assert_eq!(parse(r#""x.y""#), Ok(QualifiedName::bare("x.y")));
        assert_eq!(parse(r#""""""#), Ok(QualifiedName::bare("\"")));
    }

    #[test]
    fn malformed_names() {
        assert_eq!(parse(""), Err(NameError::Empty));
        assert!(matches!(parse("a.b.c"), Err(NameError::TooManyParts(_))));
        assert!(matches!(parse(r#""a"."b".c"#), Err(NameError::TooManyParts(_))));
        assert!(matches!(parse("public."), Err(NameError::EmptyPart(_))));
        assert!(matches!(parse(".users"), Err(NameError::EmptyPart(_))));
        assert!(matches!(parse("a..b"), Err(NameError::EmptyPart(_))));
        assert!(matches!(parse(r#""""#), Err(NameError::EmptyPart(_))));
        assert!(matches!(
            parse(r#""open.x"#),
            Err(NameError::UnterminatedQuote(_))
        ));
        assert!(matches!(parse(r#"my"table"#), Err(NameError::StrayQuote(_))));
        assert!(matches!(parse(r#""a"b"#), Err(NameError::AfterQuote(_))));
        let msg = parse("a.b.c").unwrap_err().to_string();
        assert!(msg.contains("more than one dot"), "{msg}");
    }

    #[test]
    fn display_quotes_only_when_needed() {
        assert_eq!(QualifiedName::new("public", "users").to_string(), "public.users");
        assert_eq!(QualifiedName::bare("users").to_string(), "users");
        assert_eq!(
            QualifiedName::new("a.b", "say \"x\"").to_string(),
            r#""a.b"."say ""x""""#
        );
    }

    #[test]
    fn bare_names_match_any_schema() {
        let bare = QualifiedName::bare("users");
        assert!(bare.matches("public", "users"));
        assert!(bare.matches("app", "users"));
        assert!(!bare.matches("public", "Users"));
        let qualified = QualifiedName::new("public", "users");
        assert!(qualified.matches("public", "users"));
        assert!(!qualified.matches("app", "users"));
    }

    fn quote(s: &str) -> String {
        format!("\"{}\"", s.replace('"', "\"\""))
    }

    proptest! {
        #[test]
        fn quoted_names_round_trip(schema in "(?s).{1,12}", table in "(?s).{1,12}") {
            let written = format!("{}.{}", quote(&schema), quote(&table));
            let name = QualifiedName::parse(&written).unwrap();
            prop_assert_eq!(&name, &QualifiedName::new(schema, table));
            prop_assert_eq!(QualifiedName::parse(&name.to_string()).unwrap(), name);
        }

        #[test]
        fn display_round_trips(schema in proptest::option::of("(?s).{1,12}"), table in "(?s).{1,12}") {
            let name = QualifiedName { schema, table };
            prop_assert_eq!(QualifiedName::parse(&name.to_string()).unwrap(), name);
        }
    }
}
