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
    /// Creates this database's logical replication slot when it is missing
    /// (WAL mode). A slot cannot be created in a transaction that has
    /// written: `apply` runs it before its transaction, `render` prints it
    /// before BEGIN.
    CreateSlot,
    /// A statement with `$1`, `$2`, ... placeholders and their values.
    Statement {
        sql: &'static str,
        args: Vec<Arg>,
        summary: String,
    },
}

const ATTACH: &str = "SELECT pgtrail.attach($1::text::regclass, $2::text::text[], $3::text, $4::text, $5::text::text[], $6::text::text[], $7::text, $8::bigint, $9::text)";
const DETACH: &str = "SELECT pgtrail.detach($1::text::regclass)";
const CONFIGURE: &str =
    "SELECT pgtrail.configure_context($1::text::jsonb, $2::boolean), pgtrail.configure_set_context($3::text)";
const AUTO_ATTACH: &str = "SELECT pgtrail.configure_auto_attach($1::text::jsonb)";
const MAKE_PARTITIONS: &str = "SELECT count(*) FROM pgtrail.make_partitions($1::text, $2::integer)";

/// Every step of a full install matching `desired`: what `pgtrail sql`
/// prints, to be applied to any database (a fresh one included).
pub fn steps(desired: &Desired) -> Vec<Step> {
    let mut out = Vec::new();
    if desired.wants_wal() {
        out.push(Step::CreateSlot);
    }
    out.extend([
        Step::Script(pgtrail_capture::install_script()),
        configure(desired),
        configure_auto_attach(desired),
    ]);
    out.extend(desired.tables.iter().map(attach));
    out.extend(detach_all(desired));
    // The trail's time partitions ahead ([retention]; `apply` makes them
    // in its own transaction, `pgtrail maintain` keeps making them).
    out.push(Step::Statement {
        sql: MAKE_PARTITIONS,
        args: vec![
            Arg::Text(desired.partition_grain.to_string()),
            Arg::BigInt(Some(desired.premake)),
        ],
        summary: "make the trail's partitions ahead".to_string(),
    });
    out
}

/// Only the steps that repair `problems`: what `pgtrail plan` prints and
/// `pgtrail apply` runs. Empty when there is nothing to do.
pub fn repair_steps(desired: &Desired, problems: &[Problem]) -> Vec<Step> {
    let mut out = Vec::new();
    if problems
        .iter()
        .any(|p| matches!(p, Problem::WalSlotMissing { .. }))
        || (desired.wants_wal() && problems.iter().any(|p| matches!(p, Problem::NotInstalled)))
    {
        out.push(Step::CreateSlot);
    }
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
            Arg::Text(table.mode.to_string()),
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

/// WAL mode in a file without transaction control: the publication and the
/// slot cannot be created inside the caller's transaction, so the file
/// lists them to run first and refuses to go on without them.
fn wal_prerequisites_check() -> String {
    let commented = |sql: &str| {
        sql.lines()
            .map(|line| format!("--   {line}\n"))
            .collect::<String>()
    };
    format!(
        "-- WAL mode needs the publication pgtrail and this database's logical replication slot before\n\
         -- this migration, each created once outside any transaction (a slot cannot be created in a\n\
         -- transaction that has written): run these two statements first, e.g. with psql -c.\n\
         {}--   ;\n{}--   ;\n\
         DO $wal$ BEGIN\n\
         \x20   IF NOT EXISTS (SELECT FROM pg_catalog.pg_publication WHERE pubname = 'pgtrail')\n\
         \x20      OR NOT EXISTS (SELECT FROM pg_catalog.pg_replication_slots AS s JOIN pg_catalog.pg_database AS d\n\
         \x20                     ON s.slot_name = 'pgtrail_' || d.oid::text WHERE d.datname = pg_catalog.current_database()) THEN\n\
         \x20       RAISE EXCEPTION 'pgtrail: WAL mode needs its publication and slot before this migration'\n\
         \x20           USING HINT = 'Run the two statements in the comment above once, outside any transaction, '\n\
         \x20                     'or generate the file with --transaction (it creates them before its BEGIN).';\n\
         \x20   END IF;\n\
         END $wal$;\n",
        commented(crate::wal::CREATE_PUBLICATION_SQL),
        commented(crate::wal::CREATE_SLOT_SQL)
    )
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
    let wal = steps.iter().any(|s| matches!(s, Step::CreateSlot));
    if wal && transaction == Transaction::Own {
        out.push_str(&format!(
            "\n-- WAL mode: the publication pgtrail and this database's logical replication slot, created\n\
             -- before the transaction (a slot cannot be created in a transaction that has written, and the\n\
             -- publication must be committed before it; needs wal_level = logical).\n\
             {};\n{};\n\n",
            crate::wal::CREATE_PUBLICATION_SQL,
            crate::wal::CREATE_SLOT_SQL
        ));
    }
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
    if wal && transaction == Transaction::Caller {
        out.push_str(&wal_prerequisites_check());
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
            Step::CreateSlot => {}
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
    fn wal_mode_files_create_or_require_the_slot_outside_the_transaction() {
        let steps = [Step::CreateSlot, Step::Script("SELECT 1;".into())];
        let own = render_with(&steps, Transaction::Own);
        let slot = own
            .find("pg_create_logical_replication_slot")
            .expect("slot created");
        assert!(own.find("CREATE PUBLICATION").is_some_and(|p| p < slot));
        assert!(own.find("BEGIN;").is_some_and(|b| slot < b), "before BEGIN");
        let caller = render(&steps);
        assert!(
            caller.contains("--   SELECT pg_create_logical_replication_slot"),
            "listed, not run"
        );
        assert!(caller.contains("needs its publication and slot before this migration"));
        assert!(!render(&[Step::Script("SELECT 1;".into())]).contains("replication_slot"));
    }

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
