//! Errors reported while reading, parsing and validating `pgtrail.toml`.
//!
//! Every problem found in the file carries the file name (the *origin*), a
//! 1-based line and column, a message and an optional help line, and
//! displays as
//!
//! ```text
//! pgtrail.toml:3:1: unknown key `inclde` in [capture]
//!   help: did you mean `include`?
//! ```
//!
//! Columns count Unicode characters (not bytes) from the start of the line.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// A 1-based position in the configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Location {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, counted in Unicode characters.
    pub column: usize,
}

impl Location {
    /// Creates a location from a 1-based line and column.
    pub fn new(line: usize, column: usize) -> Self {
        Location { line, column }
    }

    /// Converts a byte offset into `text` to a line and column.
    ///
    /// Offsets past the end are clamped to the end; an offset inside a
    /// multi-byte character points at that character.
    pub fn from_offset(text: &str, offset: usize) -> Self {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Location {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// What kind of problem a [`ConfigError`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The file is not valid TOML.
    Syntax,
    /// A key that pgtrail does not know.
    UnknownKey,
    /// A value of the wrong TOML type (e.g. a string where a list is expected).
    WrongType,
    /// A value of the right type that is not acceptable (bad enum value,
    /// invalid glob, bad setting name, empty list, ...).
    InvalidValue,
    /// The same entry appears twice.
    Duplicate,
    /// A problem found later, e.g. against the database catalog
    /// (see [`ConfigError::at`]).
    Other,
}

/// Everything that can go wrong with a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file does not exist.
    #[error(
        "configuration file `{}` not found\n  help: run `pgtrail init` to create one, or pass `--config <path>`",
        path.display()
    )]
    NotFound {
        /// The path that was looked up.
        path: PathBuf,
    },
    /// The configuration file exists but could not be read.
    #[error("cannot read configuration file `{}`: {source}", path.display())]
    Read {
        /// The path that was read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A problem at a known place in the file.
    #[error("{origin}:{location}: {message}{}", HelpLine(help.as_deref()))]
    Located {
        /// What kind of problem this is.
        kind: ErrorKind,
        /// The file name used in messages.
        origin: String,
        /// Where the problem is.
        location: Location,
        /// What is wrong.
        message: String,
        /// How to fix it, if we know.
        help: Option<String>,
    },
    /// A problem in the file whose position is unknown.
    #[error("{origin}: {message}{}", HelpLine(help.as_deref()))]
    Unlocated {
        /// What kind of problem this is.
        kind: ErrorKind,
        /// The file name used in messages.
        origin: String,
        /// What is wrong.
        message: String,
        /// How to fix it, if we know.
        help: Option<String>,
    },
}

/// Displays `\n  help: ...` when there is a help text, nothing otherwise.
struct HelpLine<'a>(Option<&'a str>);

impl fmt::Display for HelpLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(help) => write!(f, "\n  help: {help}"),
            None => Ok(()),
        }
    }
}

impl ConfigError {
    /// A problem at `location` in the file `origin`, found outside this crate
    /// (for instance a configured table that does not exist in the database).
    ///
    /// ```
    /// use pgtrail_config::{ConfigError, Location};
    /// let err = ConfigError::at(
    ///     "pgtrail.toml",
    ///     Location::new(7, 9),
    ///     "table `public.studnets` does not exist",
    ///     Some("did you mean `public.students`?".to_string()),
    /// );
    /// assert_eq!(
    ///     err.to_string(),
    ///     "pgtrail.toml:7:9: table `public.studnets` does not exist\n  help: did you mean `public.students`?"
    /// );
    /// ```
    pub fn at(
        origin: impl Into<String>,
        location: Location,
        message: impl Into<String>,
        help: Option<String>,
    ) -> Self {
        ConfigError::Located {
            kind: ErrorKind::Other,
            origin: origin.into(),
            location,
            message: message.into(),
            help,
        }
    }

    /// The kind of problem, for problems inside the file.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            ConfigError::Located { kind, .. } | ConfigError::Unlocated { kind, .. } => Some(*kind),
            ConfigError::NotFound { .. } | ConfigError::Read { .. } => None,
        }
    }

    /// The file name used in messages, for problems inside the file.
    pub fn origin(&self) -> Option<&str> {
        match self {
            ConfigError::Located { origin, .. } | ConfigError::Unlocated { origin, .. } => Some(origin),
            ConfigError::NotFound { .. } | ConfigError::Read { .. } => None,
        }
    }

    /// Where the problem is, when known.
    pub fn location(&self) -> Option<Location> {
        match self {
            ConfigError::Located { location, .. } => Some(*location),
            _ => None,
        }
    }

    /// The 1-based line of the problem, when known.
    pub fn line(&self) -> Option<usize> {
        self.location().map(|l| l.line)
    }

    /// The 1-based column (in characters) of the problem, when known.
    pub fn column(&self) -> Option<usize> {
        self.location().map(|l| l.column)
    }

    /// The message without origin, position or help, for problems inside the file.
    pub fn message(&self) -> Option<&str> {
        match self {
            ConfigError::Located { message, .. } | ConfigError::Unlocated { message, .. } => Some(message),
            ConfigError::NotFound { .. } | ConfigError::Read { .. } => None,
        }
    }

    /// The help text, if any.
    pub fn help(&self) -> Option<&str> {
        match self {
            ConfigError::Located { help, .. } | ConfigError::Unlocated { help, .. } => help.as_deref(),
            ConfigError::NotFound { .. } | ConfigError::Read { .. } => None,
        }
    }
}

/// The text being parsed and its name, to turn byte spans into errors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a> {
    pub(crate) text: &'a str,
    pub(crate) origin: &'a str,
}

impl Source<'_> {
    /// The location of the start of `span`.
    pub(crate) fn location(&self, span: &Range<usize>) -> Location {
        Location::from_offset(self.text, span.start)
    }

    /// An error at the start of `span`.
    pub(crate) fn error(
        &self,
        kind: ErrorKind,
        span: &Range<usize>,
        message: impl Into<String>,
        help: Option<String>,
    ) -> ConfigError {
        ConfigError::Located {
            kind,
            origin: self.origin.to_string(),
            location: self.location(span),
            message: message.into(),
            help,
        }
    }

    /// An error whose position is unknown.
    pub(crate) fn unlocated(
        &self,
        kind: ErrorKind,
        message: impl Into<String>,
        help: Option<String>,
    ) -> ConfigError {
        ConfigError::Unlocated {
            kind,
            origin: self.origin.to_string(),
            message: message.into(),
            help,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let text = "ab\ncd\n\nxé\u{1F600}z";
        assert_eq!(Location::from_offset(text, 0), Location::new(1, 1));
        assert_eq!(Location::from_offset(text, 1), Location::new(1, 2));
        assert_eq!(Location::from_offset(text, 3), Location::new(2, 1));
        assert_eq!(Location::from_offset(text, 6), Location::new(3, 1));
        assert_eq!(Location::from_offset(text, 7), Location::new(4, 1));
        // `é` is two bytes, the emoji four: columns count characters.
        let z = text.find('z').unwrap();
        assert_eq!(Location::from_offset(text, z), Location::new(4, 4));
        // Inside a multi-byte character: points at that character.
        assert_eq!(Location::from_offset(text, 9), Location::new(4, 2));
        // Past the end: clamped.
        assert_eq!(Location::from_offset(text, 1000), Location::new(4, 5));
    }

    #[test]
    fn located_error_display_and_accessors() {
        let err = ConfigError::at("pgtrail.toml", Location::new(3, 11), "boom", None);
        assert_eq!(err.to_string(), "pgtrail.toml:3:11: boom");
        assert_eq!(err.line(), Some(3));
        assert_eq!(err.column(), Some(11));
        assert_eq!(err.kind(), Some(ErrorKind::Other));
        assert_eq!(err.origin(), Some("pgtrail.toml"));
        assert_eq!(err.message(), Some("boom"));
        assert_eq!(err.help(), None);

        let err = ConfigError::at("x.toml", Location::new(1, 2), "bad", Some("fix it".into()));
        assert_eq!(err.to_string(), "x.toml:1:2: bad\n  help: fix it");
        assert_eq!(err.help(), Some("fix it"));
    }

    #[test]
    fn not_found_mentions_init_and_config() {
        let err = ConfigError::NotFound {
            path: PathBuf::from("pgtrail.toml"),
        };
        let text = err.to_string();
        assert!(text.contains("`pgtrail.toml` not found"), "{text}");
        assert!(text.contains("pgtrail init"), "{text}");
        assert!(text.contains("--config"), "{text}");
        assert_eq!(err.line(), None);
        assert_eq!(err.kind(), None);
    }
}
