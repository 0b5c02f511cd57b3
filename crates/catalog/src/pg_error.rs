//! Turning a `tokio_postgres::Error` into one readable message: the server's
//! message with its SQLSTATE, detail and hint, or the connection problem.
//! (`tokio_postgres::Error`'s own Display says only "db error".)

/// The whole story of a database error, on one or more lines.
pub fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        if let Some(detail) = db.detail() {
            text.push_str(&format!("\n  detail: {detail}"));
        }
        if let Some(hint) = db.hint() {
            text.push_str(&format!("\n  hint: {hint}"));
        }
        if let Some(context) = db.where_() {
            text.push_str(&format!(
                "\n  where: {}",
                context.lines().next().unwrap_or(context)
            ));
        }
        return text;
    }
    match std::error::Error::source(error) {
        Some(source) => format!("{error}: {source}"),
        None => error.to_string(),
    }
}
