//! Custom setting (GUC) names such as `app.user_id`.
//!
//! PostgreSQL only accepts custom settings whose name has a prefix: one or
//! more dot-separated parts, each a letter or `_` followed by letters,
//! digits or `_`, with at least one dot.

/// Why a setting name is not a valid custom setting name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SettingProblem {
    /// No dot: PostgreSQL requires a prefix.
    NoPrefix,
    /// An empty part (leading, trailing or doubled dot).
    EmptyPart,
    /// A part starts with a digit.
    LeadingDigit,
    /// A character other than a letter, digit, `_` or `.`.
    BadChar(char),
}

/// Checks that `name` looks like `namespace.name`.
pub(crate) fn check_setting(name: &str) -> Result<(), SettingProblem> {
    if let Some(c) = name
        .chars()
        .find(|&c| !(c.is_alphanumeric() || c == '_' || c == '.'))
    {
        return Err(SettingProblem::BadChar(c));
    }
    if !name.contains('.') {
        return Err(SettingProblem::NoPrefix);
    }
    for part in name.split('.') {
        match part.chars().next() {
            None => return Err(SettingProblem::EmptyPart),
            Some(c) if c.is_numeric() => return Err(SettingProblem::LeadingDigit),
            Some(_) => {}
        }
    }
    Ok(())
}

impl SettingProblem {
    /// The end of a message "`x` is not a valid setting name: ...".
    pub(crate) fn explain(&self) -> String {
        match self {
            SettingProblem::NoPrefix => {
                "PostgreSQL requires custom settings to have a prefix followed by a dot".to_string()
            }
            SettingProblem::EmptyPart => "it has an empty part around a dot".to_string(),
            SettingProblem::LeadingDigit => "a part starts with a digit".to_string(),
            SettingProblem::BadChar(c) => format!(
                "`{}` is not allowed; use letters, digits and `_`, with parts separated by dots",
                c.escape_debug()
            ),
        }
    }

    /// A help line for `name`.
    pub(crate) fn help(&self, name: &str) -> String {
        match self {
            SettingProblem::NoPrefix => format!(
                "write it with a prefix, like `app.{name}`, and set it from the application with `SET app.{name} = ...`"
            ),
            _ => "setting names look like `app.user_id`".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_custom_setting_names() {
        for name in ["app.user_id", "myapp.current_user", "a.b.c", "_x._y1", "é.ü"] {
            assert_eq!(check_setting(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(check_setting("user_id"), Err(SettingProblem::NoPrefix));
        assert_eq!(check_setting(""), Err(SettingProblem::NoPrefix));
        assert_eq!(check_setting(".user_id"), Err(SettingProblem::EmptyPart));
        assert_eq!(check_setting("app."), Err(SettingProblem::EmptyPart));
        assert_eq!(check_setting("app..x"), Err(SettingProblem::EmptyPart));
        assert_eq!(check_setting("app.1x"), Err(SettingProblem::LeadingDigit));
        assert_eq!(check_setting("app.user-id"), Err(SettingProblem::BadChar('-')));
        assert_eq!(check_setting("app.user id"), Err(SettingProblem::BadChar(' ')));
    }

    #[test]
    fn explains_the_prefix_rule() {
        assert!(SettingProblem::NoPrefix.explain().contains("prefix"));
        assert!(SettingProblem::NoPrefix.help("user_id").contains("app.user_id"));
    }
}
