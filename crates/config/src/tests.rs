//! End-to-end tests of [`Config::parse`] and [`Config::from_path`].

use super::*;
use proptest::prelude::*;

const EXAMPLE: &str = r#"[capture]
schemas = ["public"]              # schemas to consider (default ["public"])
include = ["*"]                   # glob patterns on "table" or "schema.table" (default ["*"])
exclude = ["sessions", "verification_tokens", "*_audit"]   # default []
images = "diff"                   # "diff" (changed fields on UPDATE) or "full"; default "diff"
ignore_columns = ["updated_at"]   # everywhere; default []
redact_columns = []               # everywhere; default []
auto_attach = false               # default false (used by a later feature; parse it)

[context]                          # settings the app already uses, mapped onto pgtrail's fields
actor_id = ["app.user_id"]
actor_name = ["app.actor_email", "app.current_user"]
actor_type = ["app.actor_type"]
reason = []
migration = ["app.current_migration"]
request_id = []
session_id = []
business_process = []
ip = []
user_agent = []
require_actor = false              # true: a change with no actor is refused
# [context.extra] any other context key -> list of settings, e.g. tenant = ["app.tenant_id"]

[tables."public.students"]
key = ["std_no"]                   # override the detected key
images = "full"                    # optional per-table override
[tables."public.users"]
ignore_columns = ["last_login_at"]
redact_columns = ["password_hash"]
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "pgtrail.toml")
}

/// Parses `text`, expecting an error; returns it with its kind and position.
fn error(text: &str) -> (ConfigError, ErrorKind, usize, usize) {
    match parse(text) {
        Ok(config) => panic!("expected an error, got {config:#?}"),
        Err(e) => {
            let kind = e.kind().unwrap_or(ErrorKind::Other);
            let (line, column) = (e.line().unwrap_or(0), e.column().unwrap_or(0));
            (e, kind, line, column)
        }
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn empty_file_gives_defaults() {
    for text in ["", "\n\n", "# only a comment\n"] {
        let config = parse(text).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.capture.schemas, ["public"]);
        assert_eq!(config.capture.include.len(), 1);
        assert_eq!(config.capture.include[0].as_str(), "*");
        assert!(config.capture.exclude.is_empty());
        assert_eq!(config.capture.images, Images::Diff);
        assert!(config.capture.ignore_columns.is_empty());
        assert!(config.capture.redact_columns.is_empty());
        assert!(!config.capture.auto_attach);
        assert_eq!(config.context, Context::default());
        assert!(config.tables.is_empty());
    }
    // Empty sections too.
    let config = parse("[capture]\n[context]\n[context.extra]\n[tables]\n").unwrap();
    assert_eq!(config, Config::default());
}

#[test]
fn origin_is_kept() {
    assert_eq!(Config::parse("", "conf/x.toml").unwrap().origin(), "conf/x.toml");
}

#[test]
fn full_example() {
    let config = parse(EXAMPLE).unwrap();
    let capture = &config.capture;
    assert_eq!(capture.schemas, ["public"]);
    let include: Vec<&str> = capture.include.iter().map(Pattern::as_str).collect();
    assert_eq!(include, ["*"]);
    let exclude: Vec<&str> = capture.exclude.iter().map(Pattern::as_str).collect();
    assert_eq!(exclude, ["sessions", "verification_tokens", "*_audit"]);
    assert_eq!(capture.images, Images::Diff);
    assert_eq!(capture.ignore_columns, ["updated_at"]);
    assert!(capture.redact_columns.is_empty());
    assert!(!capture.auto_attach);

    let context = &config.context;
    assert_eq!(context.actor_id, ["app.user_id"]);
    assert_eq!(context.actor_name, ["app.actor_email", "app.current_user"]);
    assert_eq!(context.actor_type, ["app.actor_type"]);
    assert!(context.reason.is_empty());
    assert_eq!(
        context.extra,
        [("migration".to_string(), strings(&["app.current_migration"]))].into()
    );
    assert!(!context.require_actor);

    assert_eq!(
        config.tables,
        [
            TableRule {
                name: QualifiedName::new("public", "students"),
                key: Some(strings(&["std_no"])),
                images: Some(Images::Full),
                ignore_columns: vec![],
                redact_columns: vec![],
                truncate: None,
                truncate_row_limit: None,
                mode: None,
                location: Location::new(24, 9),
                key_location: vec![Location::new(25, 8)],
            },
            TableRule {
                name: QualifiedName::new("public", "users"),
                key: None,
                images: None,
                ignore_columns: strings(&["last_login_at"]),
                redact_columns: strings(&["password_hash"]),
                truncate: None,
                truncate_row_limit: None,
                mode: None,
                location: Location::new(27, 9),
                key_location: vec![],
            },
        ]
    );

    assert_eq!(config.selects("public", "students"), Selection::Included);
    assert_eq!(
        config.selects("public", "users_audit"),
        Selection::Excluded {
            pattern: "*_audit".into()
        }
    );
    assert_eq!(config.selects("other", "students"), Selection::NotCovered);
    assert_eq!(
        config.columns_for("public", "users"),
        ColumnRules {
            ignore: strings(&["updated_at", "last_login_at"]),
            redact: strings(&["password_hash"]),
            images: Images::Diff,
            key: None,
            truncate: Truncate::Event,
            truncate_row_limit: None,
            mode: Mode::Trigger,
        }
    );
    assert_eq!(
        config.columns_for("public", "students"),
        ColumnRules {
            ignore: strings(&["updated_at"]),
            redact: vec![],
            images: Images::Full,
            key: Some(strings(&["std_no"])),
            truncate: Truncate::Event,
            truncate_row_limit: None,
            mode: Mode::Trigger,
        }
    );
}

#[test]
fn every_value_kind_parses() {
    let text = r#"
[capture]
schemas = ["public", "app"]
include = ["public.*", "orders"]
images = "full"
redact_columns = ["ssn"]
auto_attach = true

[context]
reason = ["app.reason"]
request_id = ["app.request_id"]
session_id = ["app.session_id"]
business_process = ["app.process"]
ip = ["app.ip"]
user_agent = ["app.ua"]
require_actor = true

[context.extra]
tenant = ["app.tenant_id", "app.org_id"]
empty = []

[tables.orders]
key = ["a", "b"]
"#;
    let config = parse(text).unwrap();
    assert_eq!(config.capture.schemas, ["public", "app"]);
    assert_eq!(config.capture.images, Images::Full);
    assert_eq!(config.capture.redact_columns, ["ssn"]);
    assert!(config.capture.auto_attach);
    assert!(config.context.require_actor);
    assert_eq!(config.context.reason, ["app.reason"]);
    let extra: Vec<(&str, usize)> = config
        .context
        .extra
        .iter()
        .map(|(k, v)| (k.as_str(), v.len()))
        .collect();
    assert_eq!(
        extra,
        [
            ("business_process", 1),
            ("ip", 1),
            ("request_id", 1),
            ("session_id", 1),
            ("tenant", 2),
            ("user_agent", 1),
        ]
    );
    let rule = &config.tables[0];
    assert_eq!(rule.name, QualifiedName::bare("orders"));
    assert_eq!(rule.key_location, [Location::new(23, 8), Location::new(23, 13)]);
    assert_eq!(rule.location, Location::new(22, 9));
}

#[test]
fn unknown_key_at_top_level() {
    let (e, kind, line, column) = error("[capture]\n\n[tabels.\"public.users\"]\nkey = [\"id\"]\n");
    assert_eq!(kind, ErrorKind::UnknownKey);
    assert_eq!((line, column), (3, 2));
    assert_eq!(
        e.to_string(),
        "pgtrail.toml:3:2: unknown key `tabels` at the top level\n  help: did you mean `tables`?"
    );

    let (e, _, line, column) = error("  images = \"full\"\n");
    assert_eq!((line, column), (1, 3));
    assert_eq!(e.help(), Some("`images` belongs in [capture]"));

    let (e, _, _, _) = error("colour = 1\n");
    let help = e.help().unwrap_or_default();
    assert!(help.starts_with("valid keys here are `capture`"), "{help}");
}

#[test]
fn unknown_key_in_capture() {
    let (e, kind, line, column) = error("[capture]\nschemas = [\"public\"]\n  inclde = [\"*\"]\n");
    assert_eq!(kind, ErrorKind::UnknownKey);
    assert_eq!((line, column), (3, 3));
    assert_eq!(
        e.to_string(),
        "pgtrail.toml:3:3: unknown key `inclde` in [capture]\n  help: did you mean `include`?"
    );
    // Dotted keys and inline tables are found as well.
    let (e, _, line, column) = error("capture.ignore_colums = []\n");
    assert_eq!((line, column), (1, 9));
    assert_eq!(e.message(), Some("unknown key `ignore_colums` in [capture]"));
    assert_eq!(e.help(), Some("did you mean `ignore_columns`?"));
    let (e, _, line, column) = error("capture = { schemas = [], exclud = [] }\n");
    assert_eq!((line, column), (1, 27));
    assert_eq!(e.help(), Some("did you mean `exclude`?"));
}

#[test]
fn unknown_key_in_context() {
    let text = "[capture]\n\n[context]\nactor_id = [\"app.user_id\"]\nactr_name = [\"app.email\"]\n";
    let (e, kind, line, column) = error(text);
    assert_eq!(kind, ErrorKind::UnknownKey);
    assert_eq!((line, column), (5, 1));
    assert_eq!(
        e.to_string(),
        "pgtrail.toml:5:1: unknown key `actr_name` in [context]\n  help: did you mean `actor_name`?"
    );
    let (e, _, _, _) = error("[context]\ntenant = [\"app.tenant_id\"]\n");
    let help = e.help().unwrap_or_default();
    assert!(
        help.ends_with("other context keys go in [context.extra]"),
        "{help}"
    );
}

#[test]
fn unknown_key_in_a_table_section() {
    let text = "[tables.\"public.users\"]\nkey = [\"id\"]\nredact_column = [\"password_hash\"]\n";
    let (e, kind, line, column) = error(text);
    assert_eq!(kind, ErrorKind::UnknownKey);
    assert_eq!((line, column), (3, 1));
    assert_eq!(
        e.to_string(),
        "pgtrail.toml:3:1: unknown key `redact_column` in [tables.\"public.users\"]\n  help: did you mean `redact_columns`?"
    );
    let (e, _, line, column) = error("[tables.users]\nschemas = [\"x\"]\n");
    assert_eq!((line, column), (2, 1));
    assert_eq!(e.message(), Some("unknown key `schemas` in [tables.users]"));
    assert_eq!(e.help(), Some("`schemas` belongs in [capture]"));
}

#[test]
fn first_unknown_key_in_file_order_is_reported() {
    let (e, _, line, _) = error("[tables.t]\nkee = []\n[capture]\nincl = []\n");
    assert_eq!(line, 2);
    assert_eq!(e.message(), Some("unknown key `kee` in [tables.t]"));
}

#[test]
fn bad_images_value() {
    let (e, kind, line, column) = error("[capture]\nimages = \"fulll\"\n");
    assert_eq!(kind, ErrorKind::InvalidValue);
    assert_eq!((line, column), (2, 10));
    assert_eq!(
        e.to_string(),
        "pgtrail.toml:2:10: unknown value `fulll` for `images` in [capture]; expected `diff` or `full`\n  help: did you mean `full`?"
    );
    let (e, _, line, column) = error("[tables.t]\nimages = \"Diff\"\n");
    assert_eq!((line, column), (2, 10));
    assert_eq!(e.help(), Some("did you mean `diff`?"));
    let (e, _, _, _) = error("[capture]\nimages = \"everything\"\n");
    assert_eq!(e.help(), Some("use `diff` or `full`"));
}

#[test]
fn wrong_types() {
    let (e, kind, line, column) = error("[capture]\ninclude = \"x\"\n");
    assert_eq!(kind, ErrorKind::WrongType);
    assert_eq!((line, column), (2, 11));
    assert_eq!(
        e.to_string(),
        "pgtrail.toml:2:11: wrong type for `include` in [capture]: expected an array, found string \"x\""
    );

    let (e, kind, line, column) = error("[capture]\nexclude = [\"a\", 5]\n");
    assert_eq!(kind, ErrorKind::WrongType);
    assert_eq!((line, column), (2, 17));
    assert_eq!(
        e.message(),
        Some("wrong type for `exclude` in [capture]: expected a string, found integer `5`")
    );

    let (e, _, line, column) = error("[context]\nrequire_actor = \"yes\"\n");
    assert_eq!((line, column), (2, 17));
    assert_eq!(
        e.message(),
        Some("wrong type for `require_actor` in [context]: expected a boolean, found string \"yes\"")
    );

    let (e, _, line, _) = error("[[tables]]\nkey = [\"id\"]\n");
    assert_eq!(line, 1);
    let message = e.message().unwrap_or_default();
    assert!(
        message.starts_with("wrong type for `tables` at the top level"),
        "{message}"
    );

    let (e, _, line, column) = error("capture = 5\n");
    assert_eq!((line, column), (1, 11));
    assert_eq!(
        e.message(),
        Some("wrong type for `capture` at the top level: expected a table, found integer `5`")
    );

    let (e, _, line, column) = error("[tables]\n\"public.users\" = [\"id\"]\n");
    assert_eq!((line, column), (2, 18));
    assert_eq!(
        e.message(),
        Some("wrong type for `public.users` in [tables]: expected a table, found an array")
    );

    let (e, _, line, column) = error("[context]\nextra = [\"app.x\"]\n");
    assert_eq!((line, column), (2, 9));
    assert_eq!(
        e.message(),
        Some("wrong type for `extra` in [context]: expected a table, found an array")
    );

    let (e, _, line, column) = error("\ncapture = []\n");
    assert_eq!((line, column), (2, 11));
    assert_eq!(
        e.message(),
        Some("wrong type for `capture` at the top level: expected a table, found an array")
    );
}

#[test]
fn dates_are_wrong_types() {
    let (e, kind, line, column) = error("[capture]\ninclude = 1979-05-27\n");
    assert_eq!((kind, line, column), (ErrorKind::WrongType, 2, 11));
    assert_eq!(
        e.message(),
        Some("wrong type for `include` in [capture]: dates and times are not allowed here")
    );
    // Where a section is expected, the first pass cannot handle dates; the
    // error is still located and explained.
    for (text, key) in [
        ("\ncapture = 1979-05-27\n", "`capture` at the top level"),
        ("\ntables.t = 1979-05-27T07:32:00Z\n", "`t` in [tables]"),
        ("\ncontext.extra = 07:32:00\n", "`extra` in [context]"),
        ("\ncontext.extra.t = 1979-05-27\n", "`t` in [context.extra]"),
    ] {
        let (e, kind, line, _) = error(text);
        assert_eq!((kind, line), (ErrorKind::WrongType, 2), "{e}");
        assert_eq!(
            e.message().unwrap_or_default(),
            format!("wrong type for {key}: dates and times are not allowed here"),
        );
    }
}

#[test]
fn syntax_errors_are_located() {
    let (e, kind, line, _) = error("[capture]\ninclude = [\"*\"\n\n[context]\n");
    assert_eq!(kind, ErrorKind::Syntax);
    assert!(line >= 2, "{e}");
    assert!(e.to_string().starts_with("pgtrail.toml:"), "{e}");

    let (e, kind, line, column) = error("[capture]\nimages = \"diff\"\nimages = \"full\"\n");
    assert_eq!(kind, ErrorKind::Syntax);
    assert_eq!((line, column), (3, 1), "{e}");
    assert!(!e.to_string().contains('\n'), "{e}");
}

#[test]
fn invalid_globs() {
    let (e, kind, line, column) = error("[capture]\nexclude = [\"ok\", \"[abc\"]\n");
    assert_eq!(kind, ErrorKind::InvalidValue);
    assert_eq!((line, column), (2, 18));
    let message = e.message().unwrap_or_default();
    assert!(
        message.starts_with("invalid pattern in `exclude` in [capture]: `[abc` is not a valid glob"),
        "{message}"
    );
    let (e, _, line, column) = error("[capture]\ninclude = [\"a.b.c\"]\n");
    assert_eq!((line, column), (2, 12));
    assert!(e.to_string().contains("more than one dot"), "{e}");
    let (_, kind, _, _) = error("[capture]\ninclude = [\"\"]\n");
    assert_eq!(kind, ErrorKind::InvalidValue);
}

#[test]
fn bad_setting_names() {
    let (e, kind, line, column) = error("[context]\nactor_id = [\"app.user_id\", \"user_id\"]\n");
    assert_eq!(kind, ErrorKind::InvalidValue);
    assert_eq!((line, column), (2, 28));
    assert_eq!(
        e.to_string(),
        "pgtrail.toml:2:28: `user_id` in `actor_id` in [context] is not a valid custom setting name: \
         PostgreSQL requires custom settings to have a prefix followed by a dot\n  \
         help: write it with a prefix, like `app.user_id`, and set it from the application with `SET app.user_id = ...`"
    );
    let (e, _, line, column) = error("[context.extra]\ntenant = [\"app.tenant-id\"]\n");
    assert_eq!((line, column), (2, 11));
    assert!(
        e.message().unwrap_or_default().contains("`-` is not allowed"),
        "{e}"
    );
    let (_, _, line, column) = error("[context]\nmigration = [\"app.\"]\n");
    assert_eq!((line, column), (2, 14));
}

#[test]
fn context_extra_keys() {
    let (e, _, line, column) = error("[context.extra]\nactor_id = [\"app.user_id\"]\n");
    assert_eq!((line, column), (2, 1));
    assert_eq!(e.help(), Some("write `actor_id = [...]` directly in [context]"));
    let (e, _, line, _) = error("[context.extra]\n\"my key\" = [\"app.x\"]\n");
    assert_eq!(line, 2);
    assert_eq!(
        e.message(),
        Some("invalid context key `my key` in [context.extra]")
    );
}

#[test]
fn table_names() {
    let text = r#"
[capture]
schemas = ["public", "Weird.Schema", "données"]

[tables.plain]
[tables."public.Order Items"]
[tables."\"Weird.Schema\".\"Order.Items\""]
[tables."données.\"élèves \"\"2024\"\"\""]
[tables.'"Weird.Schema".x']
"#;
    let config = parse(text).unwrap();
    let names: Vec<&QualifiedName> = config.tables.iter().map(|t| &t.name).collect();
    assert_eq!(
        names,
        [
            &QualifiedName::bare("plain"),
            &QualifiedName::new("public", "Order Items"),
            &QualifiedName::new("Weird.Schema", "Order.Items"),
            &QualifiedName::new("données", "élèves \"2024\""),
            &QualifiedName::new("Weird.Schema", "x"),
        ]
    );
    let lines: Vec<usize> = config.tables.iter().map(|t| t.location.line).collect();
    assert_eq!(lines, [5, 6, 7, 8, 9]);
}

#[test]
fn malformed_table_names() {
    let (e, kind, line, column) = error("\n[tables.\"a.b.c\"]\nkey = [\"id\"]\n");
    assert_eq!(kind, ErrorKind::InvalidValue);
    assert_eq!((line, column), (2, 9));
    assert!(
        e.message().unwrap_or_default().contains("more than one dot"),
        "{e}"
    );
    let (_, _, line, _) = error("[tables.'\"open.x']\n");
    assert_eq!(line, 1);
    let (_, _, _, _) = error("[tables.\"public.\"]\n");
}

#[test]
fn table_schema_must_be_considered() {
    let (e, kind, line, column) = error("[tables.\"pubilc.users\"]\n");
    assert_eq!(kind, ErrorKind::InvalidValue);
    assert_eq!((line, column), (1, 9));
    assert_eq!(
        e.to_string(),
        "pgtrail.toml:1:9: table `pubilc.users` is in schema `pubilc`, which is not in `schemas` in [capture]\n  help: did you mean `public`?"
    );
    let (e, _, _, _) = error("[tables.\"audit.log\"]\n");
    assert_eq!(e.help(), Some("add `audit` to `schemas` in [capture]"));
}

#[test]
fn empty_and_duplicate_entries() {
    let (e, kind, line, column) = error("[tables.t]\nkey = []\n");
    assert_eq!(kind, ErrorKind::InvalidValue);
    assert_eq!((line, column), (2, 7));
    assert_eq!(e.message(), Some("`key` in [tables.t] is empty"));

    let (e, kind, line, column) = error("[tables.t]\nkey = [\"a\", \"b\", \"a\"]\n");
    assert_eq!(kind, ErrorKind::Duplicate);
    assert_eq!((line, column), (2, 18));
    assert_eq!(
        e.to_string(),
        "pgtrail.toml:2:18: `a` is listed twice in `key` in [tables.t]\n  help: it is already listed at 2:8; remove one of them"
    );

    let (_, kind, line, column) = error("[capture]\nexclude = [\"x\", \"x\"]\n");
    assert_eq!((kind, line, column), (ErrorKind::Duplicate, 2, 17));
    let (_, kind, _, _) = error("[capture]\nschemas = [\"a\", \"a\"]\n");
    assert_eq!(kind, ErrorKind::Duplicate);
    let (_, kind, _, _) = error("[context]\nip = [\"app.ip\", \"app.ip\"]\n");
    assert_eq!(kind, ErrorKind::Duplicate);
    let (_, kind, _, _) = error("[tables.t]\nignore_columns = [\"c\", \"c\"]\n");
    assert_eq!(kind, ErrorKind::Duplicate);

    let (e, kind, line, _) = error("[capture]\nschemas = []\n");
    assert_eq!((kind, line), (ErrorKind::InvalidValue, 2));
    assert_eq!(e.message(), Some("`schemas` in [capture] is empty"));
    let (_, kind, _, _) = error("[capture]\nredact_columns = [\"\"]\n");
    assert_eq!(kind, ErrorKind::InvalidValue);
}

/// A table named by two sections, however differently, is an error at the
/// second that names the first: the file, the place and the section of each.
#[test]
fn a_table_named_twice_is_an_error_naming_both_sections() {
    // Quoted and plain identifiers: quotes are not part of the name.
    let (e, kind, line, column) = error("[tables.\"public.users\"]\n[tables.'\"public\".\"users\"']\n");
    assert_eq!((kind, line, column), (ErrorKind::Duplicate, 2, 9));
    assert_eq!(
        e.to_string(),
        "pgtrail.toml:2:9: table `public.users` is configured twice: by [tables.\"\\\"public\\\".\\\"users\\\"\"] here \
         and by [tables.\"public.users\"] at 1:9\n  help: both name the same table; keep one section and move the other's settings into it"
    );

    // With and without the schema, in either order: the name without a
    // schema means the table in the schema of `schemas`.
    let text = "[tables.\"public.accounts\"]\nkey = [\"id\"]\n\n[tables.accounts]\nimages = \"full\"\n";
    let (e, kind, line, column) = error(text);
    assert_eq!((kind, line, column), (ErrorKind::Duplicate, 4, 9));
    assert_eq!(
        e.message(),
        Some(
            "table `public.accounts` is configured twice: by [tables.accounts] here and by [tables.\"public.accounts\"] at 1:9"
        )
    );
    assert_eq!(
        e.help(),
        Some(
            "a name without a schema means the table of that name in the schema of `schemas` in [capture] (public); \
             keep one section and move the other's settings into it"
        )
    );
    let (e, _, line, _) = error("[tables.accounts]\n[tables.'\"public\".accounts']\n");
    assert_eq!(line, 2);
    assert!(
        e.message()
            .unwrap_or_default()
            .starts_with("table `public.accounts` is configured twice: by [tables."),
        "{e}"
    );
    assert!(
        e.message()
            .unwrap_or_default()
            .ends_with("and by [tables.accounts] at 1:9"),
        "{e}"
    );

    // A name without a schema applies in every schema of `schemas`, so it
    // and a qualified name of any of them name one table twice.
    let text = "[capture]\nschemas = [\"public\", \"app\"]\n[tables.accounts]\n[tables.\"app.accounts\"]\n";
    let (e, _, line, _) = error(text);
    assert_eq!(line, 4);
    assert!(
        e.message()
            .unwrap_or_default()
            .starts_with("table `app.accounts` is configured twice"),
        "{e}"
    );
    assert_eq!(
        e.help(),
        Some(
            "a name without a schema means the tables of that name in every schema of `schemas` in [capture] (public, app); \
             keep one section per table: write the schema in each name, or merge the two sections"
        )
    );

    // Different tables: other schemas, or names that differ in case (names
    // keep their case, as PostgreSQL stores quoted identifiers: `Accounts`
    // is not `accounts`; a name that matches no table is reported against
    // the database).
    let config = parse(
        "[capture]\nschemas = [\"public\", \"app\"]\n\
         [tables.\"public.accounts\"]\n[tables.\"app.accounts\"]\n[tables.Accounts]\n[tables.'\"public\".\"ACCOUNTS\"']\n",
    )
    .unwrap();
    assert_eq!(config.tables.len(), 4);
    assert_eq!(config.columns_for("app", "accounts").images, Images::Diff);
}

#[test]
fn include_may_be_empty() {
    let config = parse("[capture]\ninclude = []\n[tables.t]\n").unwrap();
    assert!(config.capture.include.is_empty());
    assert_eq!(config.selects("public", "t"), Selection::Included);
    assert_eq!(config.selects("public", "u"), Selection::NotCovered);
}

#[test]
fn columns_are_counted_in_characters() {
    let (_, _, line, column) = error("[capture]\n# élèves 🙂\nimages = 'x' # é\n");
    assert_eq!((line, column), (3, 10));
    let (_, _, line, column) = error("[capture]\nexclude = ['é', 'é']\n");
    assert_eq!((line, column), (2, 17));
}

#[test]
fn crlf_line_endings() {
    let (_, _, line, column) = error("[capture]\r\nschemas = []\r\n  inclde = []\r\n");
    assert_eq!((line, column), (3, 3));
}

#[test]
fn from_path_reads_files() {
    let dir = std::env::temp_dir().join(format!("pgtrail-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing.toml");
    let err = Config::from_path(&missing).unwrap_err();
    assert!(matches!(err, ConfigError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("pgtrail init"), "{err}");

    let path = dir.join("pgtrail.toml");
    std::fs::write(&path, "[capture]\nimages = \"full\"\n").unwrap();
    let config = Config::from_path(&path).unwrap();
    assert_eq!(config.capture.images, Images::Full);
    assert_eq!(config.origin(), path.display().to_string());

    std::fs::write(&path, "[capture]\nimages = \"ful\"\n").unwrap();
    let err = Config::from_path(&path).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!("{}:2:10: ", path.display())),
        "{err}"
    );

    let err = Config::from_path(&dir).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Writes `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\U{:08X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes an identifier as an SQL quoted identifier.
fn sql_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

proptest! {
    #[test]
    fn quoted_table_keys_round_trip(schema in "(?s).{1,12}", table in "(?s).{1,12}") {
        let key = format!("{}.{}", sql_quote(&schema), sql_quote(&table));
        let text = format!(
            "[capture]\nschemas = [{}]\n\n[tables.{}]\nkey = [\"id\"]\n",
            toml_string(&schema),
            toml_string(&key),
        );
        let config = parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(config.tables.len(), 1);
        prop_assert_eq!(&config.tables[0].name, &QualifiedName::new(schema.clone(), table.clone()));
        prop_assert_eq!(config.tables[0].location, Location::new(4, 9));
        prop_assert_eq!(config.selects(&schema, &table), Selection::Included);
    }
}

#[test]
fn install_accepts_what_an_install_without_full_rights_lacks() {
    let config = Config::parse("", "pgtrail.toml").expect("empty file");
    assert!(!config.install.accept_installer_can_edit_trail && !config.install.accept_unseen_capture_gaps);
    let config = Config::parse(
        "[install]\naccept_installer_can_edit_trail = true\naccept_unseen_capture_gaps = true\n",
        "pgtrail.toml",
    )
    .expect("both keys");
    assert!(config.install.accept_installer_can_edit_trail && config.install.accept_unseen_capture_gaps);
    let (e, kind, line, _) = error("[install]\naccept_unseen_capture_gap = true\n");
    assert_eq!((kind, line), (ErrorKind::UnknownKey, 2));
    assert_eq!(e.help(), Some("did you mean `accept_unseen_capture_gaps`?"));
    let (e, _, _, _) = error("[install]\naccept_unseen_capture_gaps = \"yes\"\n");
    assert!(e.to_string().contains("accept_unseen_capture_gaps"), "{e}");
}

/// `truncate` and `truncate_row_limit`, in [capture] and per table.
#[test]
fn truncate_settings() {
    let config = parse("").unwrap();
    assert_eq!(config.capture.truncate, Truncate::Event);
    assert_eq!(config.columns_for("public", "t").truncate_row_limit, None);

    let text = "[tables.logs]\ntruncate = \"capture\"\n[tables.events]\ntruncate = \"capture\"\ntruncate_row_limit = 50\n";
    let config = parse(text).unwrap();
    let logs = config.columns_for("public", "logs");
    assert_eq!(
        (logs.truncate, logs.truncate_row_limit),
        (Truncate::Capture, Some(DEFAULT_TRUNCATE_ROW_LIMIT))
    );
    assert_eq!(
        config.columns_for("public", "events").truncate_row_limit,
        Some(50)
    );
    assert_eq!(config.columns_for("public", "other").truncate, Truncate::Event);

    // [capture] gives the default; a table may go back to the event only.
    let text =
        "[capture]\ntruncate = \"capture\"\ntruncate_row_limit = 7\n[tables.big]\ntruncate = \"event\"\n";
    let config = parse(text).unwrap();
    assert_eq!(config.columns_for("public", "t").truncate_row_limit, Some(7));
    let big = config.columns_for("public", "big");
    assert_eq!((big.truncate, big.truncate_row_limit), (Truncate::Event, None));

    let (e, kind, line, column) = error("[tables.t]\ntruncate = \"rows\"\n");
    assert_eq!((kind, line, column), (ErrorKind::InvalidValue, 2, 12));
    assert_eq!(
        e.message(),
        Some("unknown value `rows` for `truncate` in [tables.t]; expected `event` or `capture`")
    );
    let (e, _, _, _) = error("[capture]\ntruncate = \"captur\"\n");
    assert_eq!(e.help(), Some("did you mean `capture`?"));

    let (e, kind, line, column) = error("[tables.t]\ntruncate = \"capture\"\ntruncate_row_limit = 0\n");
    assert_eq!((kind, line, column), (ErrorKind::InvalidValue, 3, 22));
    assert_eq!(
        e.message(),
        Some("`truncate_row_limit` in [tables.t] is 0; it must be at least 1")
    );
    let (_, kind, _, _) = error("[tables.t]\ntruncate = \"capture\"\ntruncate_row_limit = \"many\"\n");
    assert_eq!(kind, ErrorKind::WrongType);

    // A limit where nothing records rows is never silently ignored.
    let (e, kind, line, _) = error("[tables.t]\ntruncate_row_limit = 10\n");
    assert_eq!((kind, line), (ErrorKind::InvalidValue, 2));
    assert_eq!(
        e.to_string(),
        "pgtrail.toml:2:22: `truncate_row_limit` in [tables.t] has no effect: a TRUNCATE of this table records the event only\n  \
         help: add `truncate = \"capture\"` to [tables.t], or remove `truncate_row_limit`"
    );
    let (e, _, line, _) = error("[capture]\ntruncate_row_limit = 10\n[tables.t]\n");
    assert_eq!(line, 2);
    assert!(
        e.message()
            .unwrap_or_default()
            .contains("no table records the rows"),
        "{e}"
    );
    parse("[capture]\ntruncate_row_limit = 10\n[tables.t]\ntruncate = \"capture\"\n").unwrap();
}

#[test]
fn report_roles_and_subject_columns() {
    let config = parse(
        "[report]\napplication_roles = [\"app\"]\nmigration_roles = [\"migrator\", \"flyway\"]\nsubject_columns = [\"user_id\"]\n",
    )
    .expect("parses");
    assert_eq!(config.report.application_roles, strings(&["app"]));
    assert_eq!(config.report.migration_roles, strings(&["migrator", "flyway"]));
    assert_eq!(config.report.subject_columns, strings(&["user_id"]));
    assert_eq!(parse("").expect("empty").report, crate::Report::default());

    let (e, kind, line, column) = error("[report]\napplication_role = [\"app\"]\n");
    assert_eq!(kind, ErrorKind::UnknownKey);
    assert_eq!((line, column), (2, 1));
    assert!(e.to_string().contains("did you mean `application_roles`?"), "{e}");
    let (e, _, _, _) = error("[report]\nmigration_roles = [\"m\", \"m\"]\n");
    assert!(e.to_string().contains("listed twice"), "{e}");
}
