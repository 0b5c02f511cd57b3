//! Steps: the unit of work `apply` executes and `pgtrail sql` prints.

use pgtrail_capture::quote;

use crate::desired::{Desired, DesiredTable};
use crate::drift::{Problem, tables_to_attach};

/// A value passed to a step. `apply` binds it as a parameter; `render`
/// writes it as a properly quoted literal.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Text(String),
    TextArray(Vec<String>),
    Bool(bool),
    Json(serde_json::Value),
    /// A `bigint`, or NULL.
    BigInt(Option<i64>),
    /// A table, passed as `regclass` from its quoted qualified name.
    Table {
        schema: String,
        name: String,
    },
}

/// One step of an install.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Static SQL with no values in it (the install script).
    Script(String),
    /// A statement with `$1`, `$2`, ... placeholders and their values.
    Statement {
        sql: &'static str,
        args: Vec<Arg>,
        summary: String,
    },
}

const ATTACH: &str = "SELECT pgtrail.attach($1::text::regclass, $2::text::text[], $3::text, $4::text, $5::text::text[], $6::text::text[], $7::text, $8::bigint)";
const DETACH: &str = "SELECT pgtrail.detach($1::text::regclass)";
const CONFIGURE: &str =
    "SELECT pgtrail.configure_context($1::text::jsonb, $2::boolean), pgtrail.configure_set_context($3::text)";
const AUTO_ATTACH: &str = "SELECT pgtrail.configure_auto_attach($1::text::jsonb)";

/// Every step of a full install matching `desired`: what `pgtrail sql`
/// prints, to be applied to any database (a fresh one included).
pub fn steps(desired: &Desired) -> Vec<Step> {
    let mut out = vec![
        Step::Script(pgtrail_capture::install_script()),
        configure(desired),
        configure_auto_attach(desired),
    ];
    out.extend(desired.tables.iter().map(attach));
    out.extend(detach_all(desired));
    out
}

/// Only the steps that repair `problems`: what `pgtrail plan` prints and
/// `pgtrail apply` runs. Empty when there is nothing to do.
pub fn repair_steps(desired: &Desired, problems: &[Problem]) -> Vec<Step> {
    let mut out = Vec::new();
    let reinstall = problems
        .iter()
        .any(|p| matches!(p, Problem::NotInstalled | Problem::StaleInstall { .. }));
    if reinstall {
        out.push(Step::Script(pgtrail_capture::install_script()));
    }
    if reinstall
        || problems
            .iter()
            .any(|p| matches!(p, Problem::ContextDiffers { .. }))
    {
        out.push(configure(desired));
    }
    if problems
        .iter()
        .any(|p| matches!(p, Problem::AutoAttachDiffers { .. }))
        || (reinstall && !desired.auto_attach.is_null())
    {
        out.push(configure_auto_attach(desired));
    }
    let to_attach = tables_to_attach(problems);
    out.extend(
        desired
            .tables
            .iter()
            .filter(|t| to_attach.contains(&(t.schema.clone(), t.name.clone())))
            .map(attach),
    );
    out.extend(detach_all(desired));
    out
}

/// Detaching every table that carries capture but should not: the same in a
/// full install and in a repair.
fn detach_all(desired: &Desired) -> impl Iterator<Item = Step> + '_ {
    desired
        .detach
        .iter()
        .map(|((schema, name), _)| detach(schema, name))
}

fn configure(desired: &Desired) -> Step {
    Step::Statement {
        sql: CONFIGURE,
        args: vec![
            Arg::Json(desired.context_sources.clone()),
            Arg::Bool(desired.require_actor),
            Arg::Text(desired.outside_transaction.clone()),
        ],
        summary: "configure context settings".to_string(),
    }
}

fn configure_auto_attach(desired: &Desired) -> Step {
    Step::Statement {
        sql: AUTO_ATTACH,
        args: vec![Arg::Json(desired.auto_attach.clone())],
        summary: "configure auto_attach".to_string(),
    }
}

fn attach(table: &DesiredTable) -> Step {
    Step::Statement {
        sql: ATTACH,
        args: vec![
            Arg::Table {
                schema: table.schema.clone(),
                name: table.name.clone(),
            },
            Arg::TextArray(table.key_columns.clone()),
            Arg::Text(table.key_kind.to_string()),
            Arg::Text(table.images.to_string()),
            Arg::TextArray(table.ignore_columns.clone()),
            Arg::TextArray(table.redact_columns.clone()),
            Arg::Text(table.truncate.to_string()),
            Arg::BigInt(table.truncate_row_limit),
        ],
        summary: format!("attach {}", quote::qualified(&table.schema, &table.name)),
    }
}

fn detach(schema: &str, name: &str) -> Step {
    Step::Statement {
        sql: DETACH,
        args: vec![Arg::Table {
            schema: schema.to_string(),
            name: name.to_string(),
        }],
        summary: format!("detach {}", quote::qualified(schema, name)),
    }
}

impl Arg {
    /// The literal form, for the printed migration file.
    pub fn literal(&self) -> String {
        match self {
            Arg::Text(text) => quote::literal(text),
            Arg::TextArray(items) => quote::literal(&pg_array_text(items)),
            Arg::Bool(value) => value.to_string(),
            Arg::Json(value) => quote::literal(&value.to_string()),
            Arg::BigInt(Some(value)) => value.to_string(),
            Arg::BigInt(None) => "NULL".to_string(),
            Arg::Table { schema, name } => quote::literal(&quote::qualified(schema, name)),
        }
    }
}

/// The text form of a `text[]` value (`{"a","b\"c"}`), quoting every element.
pub(crate) fn pg_array_text(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|item| format!("\"{}\"", item.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", quoted.join(","))
}

/// Fills `$n` placeholders with literals. Placeholders are written by this
/// crate only, never by users, and are replaced from the highest number down
/// so `$1` never matches the start of `$10`.
fn fill(sql: &str, args: &[Arg]) -> String {
    let mut out = sql.to_string();
    for (index, arg) in args.iter().enumerate().rev() {
        out = out.replace(&format!("${}", index + 1), &arg.literal());
    }
    out
}

/// Who holds the transaction a migration file runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transaction {
    /// The caller: a migration tool that runs each migration in its own
    /// transaction (Drizzle, Flyway, sqlx, Rails, Django), or
    /// `psql --single-transaction`. The file has no BEGIN or COMMIT and
    /// refuses to run statement by statement in autocommit.
    #[default]
    Caller,
    /// The file itself: wrapped in BEGIN ... COMMIT, for `psql -f` and for
    /// tools that run a migration's statements without a transaction.
    Own,
}

/// The setting the file's first statement sets transaction-locally and its
/// second checks: gone by then when each statement commits on its own.
const GUARD_SETTING: &str = "pgtrail.migration_file";

/// All steps as one migration file, without transaction control of its own:
/// it runs inside the caller's transaction (see [`Transaction::Caller`]).
pub fn render(steps: &[Step]) -> String {
    render_with(steps, Transaction::Caller)
}

/// All steps as one migration file, all or nothing: in the caller's
/// transaction or, with [`Transaction::Own`], in BEGIN ... COMMIT.
pub fn render_with(steps: &[Step], transaction: Transaction) -> String {
    let mut out = format!("-- Generated by pgtrail {}.\n", pgtrail_capture::VERSION);
    match transaction {
        Transaction::Caller => out.push_str(&format!(
            "-- No BEGIN/COMMIT of its own: it runs inside the migration tool's transaction, or with\n\
             --   psql -v ON_ERROR_STOP=1 --single-transaction -f this-file.sql\n\
             -- Run statement by statement in autocommit, it stops at the check below before any change.\n\
             SELECT pg_catalog.set_config('{GUARD_SETTING}', pg_catalog.txid_current()::text, true);\n\
             DO $guard$ BEGIN\n\
             \x20   IF pg_catalog.current_setting('{GUARD_SETTING}', true) IS DISTINCT FROM pg_catalog.txid_current()::text THEN\n\
             \x20       RAISE EXCEPTION 'pgtrail: this migration must run in one transaction, and it runs statement by statement'\n\
             \x20           USING HINT = 'Apply it with psql -v ON_ERROR_STOP=1 --single-transaction -f FILE, from a migration tool that '\n\
             \x20                     'runs each migration in a transaction, or generate it with --transaction (BEGIN/COMMIT included).';\n\
             \x20   END IF;\n\
             END $guard$;\n\
             SELECT pg_catalog.set_config('client_min_messages', 'warning', true);\n",
        )),
        Transaction::Own => out.push_str(
            "-- Apply with: psql -v ON_ERROR_STOP=1 -f this-file.sql (it has its own BEGIN/COMMIT)\n\
             BEGIN;\nSET LOCAL client_min_messages = warning;\n",
        ),
    }
    out.push_str(&format!(
        "SELECT pg_advisory_xact_lock({});\n",
        crate::apply::ADVISORY_LOCK
    ));
    for step in steps {
        match step {
            Step::Script(sql) => {
                out.push('\n');
                out.push_str(sql);
            }
            Step::Statement { sql, args, summary } => {
                out.push_str(&format!("\n-- {summary}\n{};\n", fill(sql, args)));
            }
        }
    }
    if transaction == Transaction::Own {
        out.push_str("\nCOMMIT;\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_and_detach_take_the_install_lock() {
        // pgtrail.attach and pgtrail.detach (30_attach.sql) take the lock by number.
        assert!(pgtrail_capture::install_script().contains(&crate::apply::ADVISORY_LOCK.to_string()));
    }

    #[test]
    fn the_default_file_leaves_transaction_control_to_the_caller() {
        let file = render(&[]);
        let statements: Vec<&str> = file
            .lines()
            .map(str::trim)
            .filter(|line| !line.starts_with("--"))
            .collect();
        assert!(
            !statements
                .iter()
                .any(|line| line.starts_with("BEGIN;") || line.starts_with("COMMIT;"))
        );
        assert!(file.contains("--single-transaction"));
        let own = render_with(&[], Transaction::Own);
        assert!(own.contains("\nBEGIN;\n") && own.ends_with("\nCOMMIT;\n"));
    }

    #[test]
    fn array_text_escapes_quotes_and_backslashes() {
        assert_eq!(
            pg_array_text(&["a".into(), "b\"c".into(), r"d\e".into()]),
            r#"{"a","b\"c","d\\e"}"#
        );
        assert_eq!(pg_array_text(&[]), "{}");
    }

    #[test]
    fn fill_replaces_higher_numbers_first() {
        let args: Vec<Arg> = (1..=10).map(|n| Arg::Text(format!("v{n}"))).collect();
        assert_eq!(fill("$1 $10", &args), "'v1' 'v10'");
    }

    #[test]
    fn table_literal_quotes_both_levels() {
        let arg = Arg::Table {
            schema: "public".into(),
            name: "it's \"x\"".into(),
        };
        assert_eq!(arg.literal(), r#"'"public"."it''s ""x"""'"#);
    }
}
