//! Errors of a revert: what was wrong and how to fix it.

/// Why a revert was not planned or not applied. Nothing was changed in any case.
#[derive(Debug, thiserror::Error)]
pub enum RevertError {
    /// The selector or an option was wrong (SQLSTATE 22023, 54000: the cap).
    #[error("{message}{}", hint_line(.hint))]
    Invalid { message: String, hint: Option<String> },
    /// Later changes conflict and the policy refuses (SQLSTATE PGTR6).
    #[error("{message}{}{}", detail_lines(.detail), hint_line(.hint))]
    Conflicts {
        message: String,
        detail: Option<String>,
        hint: Option<String>,
    },
    /// The trail or the rows changed between the plan shown and the revert.
    #[error("{0}\n  help: nothing was changed; plan the revert again and review it")]
    Changed(String),
    /// pgtrail's SQL has no revert yet (an install older than 0.4.0).
    #[error(
        "this database's pgtrail has no revert (pgtrail.revert_plan is missing)\n  help: `pgtrail apply` upgrades it"
    )]
    NotInstalled,
    /// Anything else the database said.
    #[error("{0}")]
    Database(String),
}

fn hint_line(hint: &Option<String>) -> String {
    hint.as_ref()
        .map(|h| format!("\n  help: {h}"))
        .unwrap_or_default()
}

fn detail_lines(detail: &Option<String>) -> String {
    detail
        .as_ref()
        .map(|d| d.lines().map(|l| format!("\n  {l}")).collect())
        .unwrap_or_default()
}

impl RevertError {
    /// Whether the user's input was at fault (exit code 2), rather than a
    /// refusal because of conflicts (exit code 1).
    pub fn is_conflict(&self) -> bool {
        matches!(self, RevertError::Conflicts { .. })
    }

    pub(crate) fn from_db(error: tokio_postgres::Error) -> RevertError {
        let Some(db) = error.as_db_error() else {
            return RevertError::Database(error.to_string());
        };
        let message = db.message().to_string();
        let hint = db.hint().map(str::to_string);
        match db.code().code() {
            "22023" | "54000" | "22P02" | "22007" | "22008" => RevertError::Invalid { message, hint },
            "PGTR6" => RevertError::Conflicts {
                message,
                detail: db.detail().map(str::to_string),
                hint,
            },
            "40001" => RevertError::Changed(message),
            "42883" if message.contains("revert") => RevertError::NotInstalled,
            _ => RevertError::Database(match (db.detail(), hint) {
                (Some(detail), Some(hint)) => format!("{message}\n  {detail}\n  help: {hint}"),
                (Some(detail), None) => format!("{message}\n  {detail}"),
                (None, Some(hint)) => format!("{message}\n  help: {hint}"),
                (None, None) => message,
            }),
        }
    }
}
