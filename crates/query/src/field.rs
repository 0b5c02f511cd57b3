//! A field a filter names (`pgtrail log --field`, `?field=` of `pgtrail
//! serve`), checked against the columns of the audited tables, now or in the
//! trail's record: a typo is an error with a suggestion, not an empty answer.

use tokio_postgres::Client;

/// Why a field cannot be filtered on. Displayed in the CLI's form:
/// `message\n  help: …`.
#[derive(Debug, thiserror::Error)]
pub enum FieldError {
    #[error("{message}\n  help: {help}")]
    Unknown { message: String, help: String },
    #[error(transparent)]
    Database(#[from] tokio_postgres::Error),
}

/// Checks that `field` names a column of the table `(schema, name)` given
/// (else of some audited table), live or recorded by its latest changes.
pub async fn check_field(
    client: &Client,
    table: Option<(&str, &str)>,
    field: &str,
) -> Result<(), FieldError> {
    let (schema, name) = match table {
        Some((schema, name)) => (Some(schema), Some(name)),
        None => (None, None),
    };
    let columns: Vec<String> = client
        .query(
            "SELECT DISTINCT a.attname::text
             FROM pgtrail.audited_table AS t
             JOIN pg_attribute AS a ON a.attrelid = to_regclass(format('%I.%I', t.table_schema, t.table_name))
             WHERE a.attnum > 0 AND NOT a.attisdropped
               AND ($1::text IS NULL OR (t.table_schema = $1 AND t.table_name = $2))
             UNION
             SELECT DISTINCT k.key
             FROM pgtrail.audited_table AS t
             CROSS JOIN LATERAL (SELECT c.new_values, c.old_values FROM pgtrail.change AS c
                                 WHERE c.table_id = t.id AND c.op = 'U' ORDER BY c.id DESC LIMIT 1000) AS c
             CROSS JOIN LATERAL jsonb_object_keys(coalesce(c.old_values, c.new_values)) AS k(key)
             WHERE ($1::text IS NULL OR (t.table_schema = $1 AND t.table_name = $2))",
            &[&schema, &name],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if columns.iter().any(|c| c == field) {
        return Ok(());
    }
    Err(unknown(table, field, &columns))
}

/// The error for `field`, which none of `columns` is.
fn unknown(table: Option<(&str, &str)>, field: &str, columns: &[String]) -> FieldError {
    let message = match table {
        Some((schema, name)) => format!("{schema}.{name} has no column `{field}`"),
        None => format!("no audited table has a column `{field}`"),
    };
    let help = match pgtrail_config::suggest(field, columns.iter().map(String::as_str)) {
        Some(near) => format!("did you mean `{near}`?"),
        None if columns.is_empty() => "no column is known yet".to_string(),
        None => {
            let mut list: Vec<&str> = columns.iter().map(String::as_str).take(12).collect();
            list.sort_unstable();
            format!(
                "the columns are {}{}",
                list.join(", "),
                if columns.len() > 12 { ", ..." } else { "" }
            )
        }
    };
    FieldError::Unknown { message, help }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_gets_the_nearest_column() {
        let columns = vec!["email".to_string(), "status".to_string()];
        let FieldError::Unknown { message, help } = unknown(Some(("public", "users")), "emial", &columns)
        else {
            panic!("an unknown field");
        };
        assert_eq!(message, "public.users has no column `emial`");
        assert_eq!(help, "did you mean `email`?");
    }

    #[test]
    fn nothing_near_lists_the_columns() {
        let columns = vec!["status".to_string(), "email".to_string()];
        let FieldError::Unknown { help, .. } = unknown(None, "zzzzzzzz", &columns) else {
            panic!("an unknown field");
        };
        assert_eq!(help, "the columns are email, status");
        let FieldError::Unknown { help, .. } = unknown(None, "x", &[]) else {
            panic!("an unknown field");
        };
        assert_eq!(help, "no column is known yet");
    }
}
