//! Assembles the install script from the `.sql` files.

use crate::quote;

/// The version of pgtrail this crate installs.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The capture triggers pgtrail puts on every audited table (and on every
/// partition of an audited partitioned table). All five call the table's
/// own capture function, [`capture_function`]: after INSERT, UPDATE, DELETE
/// and TRUNCATE, and before TRUNCATE (which reads the rows a TRUNCATE
/// removes, for tables with `truncate = "capture"`).
pub const TRIGGER_NAMES: [&str; 5] = [
    "pgtrail_capture_insert",
    "pgtrail_capture_update",
    "pgtrail_capture_delete",
    "pgtrail_capture_truncate",
    "pgtrail_capture_before_truncate",
];

/// The trigger a table in WAL mode carries instead of [`TRIGGER_NAMES`] (on
/// itself and on every partition): before each statement, it emits the
/// transaction's context as one logical message, once per transaction and
/// context (`80_wal.sql`).
pub const WAL_TRIGGER_NAME: &str = "pgtrail_wal_context";

/// The function the WAL-mode trigger calls.
pub const WAL_CONTEXT_FUNCTION: &str = "pgtrail._wal_context";

/// The capture function generated for the audited table with id `table_id`
/// (`pgtrail._capture_function` in the SQL), as `schema.name`.
pub fn capture_function(table_id: i32) -> String {
    format!("pgtrail._capture_{table_id}")
}

/// One `.sql` file of the install.
#[derive(Debug, Clone, Copy)]
pub struct SqlFile {
    pub name: &'static str,
    pub sql: &'static str,
}

/// A migration: run once, in order, recorded in `pgtrail.migration`.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub number: u32,
    pub file: SqlFile,
}

macro_rules! sql_file {
    ($dir:literal, $name:literal) => {
        SqlFile {
            name: $name,
            sql: include_str!(concat!("../sql/", $dir, "/", $name)),
        }
    };
}

/// Every migration, in the order they run.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        number: 1,
        file: sql_file!("migrations", "0001_trail.sql"),
    },
    Migration {
        number: 2,
        file: sql_file!("migrations", "0002_integrity.sql"),
    },
    Migration {
        number: 3,
        file: sql_file!("migrations", "0003_actor_window.sql"),
    },
    Migration {
        number: 4,
        file: sql_file!("migrations", "0004_capture_indexes.sql"),
    },
    Migration {
        number: 5,
        file: sql_file!("migrations", "0005_eras.sql"),
    },
    Migration {
        number: 6,
        file: sql_file!("migrations", "0006_lineage.sql"),
    },
    Migration {
        number: 7,
        file: sql_file!("migrations", "0007_truncate.sql"),
    },
    Migration {
        number: 8,
        file: sql_file!("migrations", "0008_never_fail.sql"),
    },
    Migration {
        number: 9,
        file: sql_file!("migrations", "0009_context_check.sql"),
    },
    Migration {
        number: 10,
        file: sql_file!("migrations", "0010_wal_mode.sql"),
    },
    Migration {
        number: 11,
        file: sql_file!("migrations", "0011_partitioned_trail.sql"),
    },
    Migration {
        number: 12,
        file: sql_file!("migrations", "0012_seal_lookup.sql"),
    },
    Migration {
        number: 13,
        file: sql_file!("migrations", "0013_follow_writes_rows.sql"),
    },
    Migration {
        number: 14,
        file: sql_file!("migrations", "0014_open_brin_range.sql"),
    },
    Migration {
        number: 15,
        file: sql_file!("migrations", "0015_revert_plan_kind.sql"),
    },
    Migration {
        number: 16,
        file: sql_file!("migrations", "0016_wal_message_key.sql"),
    },
    Migration {
        number: 17,
        file: sql_file!("migrations", "0017_wal_unsigned.sql"),
    },
    Migration {
        number: 18,
        file: sql_file!("migrations", "0018_wal_operations.sql"),
    },
];

/// Functions, views, guards and privileges, re-created on every install.
pub const FUNCTIONS: &[SqlFile] = &[
    sql_file!("functions", "10_context.sql"),
    sql_file!("functions", "11_era.sql"),
    sql_file!("functions", "12_keys_and_markers.sql"),
    sql_file!("functions", "15_context_record.sql"),
    sql_file!("functions", "20_capture.sql"),
    sql_file!("functions", "25_truncate.sql"),
    sql_file!("functions", "30_attach.sql"),
    sql_file!("functions", "35_auto_attach.sql"),
    sql_file!("functions", "37_ddl_watch.sql"),
    sql_file!("functions", "38_lineage.sql"),
    sql_file!("functions", "40_append_only.sql"),
    sql_file!("functions", "45_partitions.sql"),
    sql_file!("functions", "50_changes_view.sql"),
    sql_file!("functions", "60_queries.sql"),
    sql_file!("functions", "65_reconcile.sql"),
    sql_file!("functions", "70_revert.sql"),
    sql_file!("functions", "80_wal.sql"),
    sql_file!("functions", "90_privileges.sql"),
    sql_file!("functions", "95_compile.sql"),
];

/// The whole install as one script: safe to run on an empty database, on an
/// older pgtrail (it upgrades) and on the same version (it changes nothing
/// that matters). It does not attach any table; see `pgtrail.attach`.
///
/// The script does not open a transaction itself, so callers decide: `pgtrail
/// apply` wraps it in one, and `pgtrail sql` prints it between BEGIN and COMMIT.
pub fn install_script() -> String {
    let mut out = String::new();
    out.push_str("-- pgtrail ");
    out.push_str(VERSION);
    out.push_str(": schema, migrations, capture functions.\n");
    // The install's own GRANTs are not access changes (37_ddl_watch.sql).
    out.push_str("DO $installing$ BEGIN PERFORM pg_catalog.set_config('pgtrail.installing', 'on', true); END $installing$;\n");
    out.push_str(BOOTSTRAP);
    for migration in MIGRATIONS {
        out.push_str(&guarded_migration(migration));
    }
    for file in FUNCTIONS {
        out.push_str(&format!("\n-- {}\n", file.name));
        out.push_str(file.sql);
    }
    out.push_str(&version_function());
    let build = build_id_of(&out);
    out.push_str(&build_function(&build));
    out
}

/// A fingerprint of everything [`install_script`] installs. Stored in the
/// database as `pgtrail.build()`, so a changed install is noticed even when
/// the version number did not move.
pub fn build_id() -> String {
    let script = install_script();
    let body = script.split("\n-- build\n").next().unwrap_or(&script);
    build_id_of(body)
}

/// FNV-1a, 64 bits: change detection, not security.
fn build_id_of(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

fn build_function(build: &str) -> String {
    format!(
        "\n-- build\n\
         CREATE OR REPLACE FUNCTION pgtrail.build() RETURNS text\n\
         LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp\n\
         AS $fn$ SELECT {} $fn$;\n\
         GRANT EXECUTE ON FUNCTION pgtrail.build() TO PUBLIC;\n\
         -- version() and build() come last; they belong to the owner role too (90_privileges.sql).\n\
         DO $owner$ DECLARE v_owner name := pgtrail.role_name('owner'); BEGIN\n\
         IF EXISTS (SELECT FROM pg_roles WHERE rolname = v_owner) AND pg_has_role(current_user, v_owner, CASE WHEN current_setting('server_version_num')::int >= 160000 THEN 'SET' ELSE 'MEMBER' END) THEN\n\
         EXECUTE format('ALTER FUNCTION pgtrail.version() OWNER TO %I', v_owner);\n\
         EXECUTE format('ALTER FUNCTION pgtrail.build() OWNER TO %I', v_owner);\n\
         END IF;\n\
         END $owner$;\n",
        quote::literal(build)
    )
}

/// What must exist before migrations can be counted.
const BOOTSTRAP: &str = "
CREATE SCHEMA IF NOT EXISTS pgtrail;
COMMENT ON SCHEMA pgtrail IS 'pgtrail: the audit trail (who changed what, when, how and why).';
CREATE TABLE IF NOT EXISTS pgtrail.migration (
    number          integer     PRIMARY KEY,
    name            text        NOT NULL,
    applied_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    pgtrail_version text        NOT NULL
);
";

/// A migration that runs only if it has not run before. The body goes through
/// EXECUTE in a dollar-quoted string whose tag never occurs in the body.
fn guarded_migration(migration: &Migration) -> String {
    let tag = dollar_tag(migration.file.sql, &format!("pgtrail_m{:04}", migration.number));
    format!(
        "\n-- migration {number}: {name}\n\
         DO ${tag}$\nBEGIN\n\
         IF NOT EXISTS (SELECT FROM pgtrail.migration WHERE number = {number}) THEN\n\
         EXECUTE ${tag}_body$\n{body}\n${tag}_body$;\n\
         INSERT INTO pgtrail.migration (number, name, pgtrail_version) VALUES ({number}, {name_lit}, {version_lit});\n\
         END IF;\nEND\n${tag}$;\n",
        number = migration.number,
        name = migration.file.name,
        name_lit = quote::literal(migration.file.name),
        version_lit = quote::literal(VERSION),
        tag = tag,
        body = migration.file.sql.trim_end(),
    )
}

/// A dollar-quote tag based on `base` that does not occur in `body`.
fn dollar_tag(body: &str, base: &str) -> String {
    let mut tag = base.to_string();
    while body.contains(&format!("${tag}")) {
        tag.push('x');
    }
    tag
}

fn version_function() -> String {
    format!(
        "\n-- version\n\
         CREATE OR REPLACE FUNCTION pgtrail.version() RETURNS text\n\
         LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp\n\
         AS $fn$ SELECT {} $fn$;\n\
         GRANT EXECUTE ON FUNCTION pgtrail.version() TO PUBLIC;\n",
        quote::literal(VERSION)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_without_gaps() {
        let mut previous = 0;
        for migration in MIGRATIONS {
            assert_eq!(
                migration.number,
                previous + 1,
                "{} after {previous}",
                migration.number
            );
            previous = migration.number;
            assert!(
                migration
                    .file
                    .name
                    .starts_with(&format!("{:04}_", migration.number))
            );
        }
    }

    #[test]
    fn script_contains_every_file_once() {
        let script = install_script();
        for file in FUNCTIONS {
            assert_eq!(script.matches(&format!("-- {}\n", file.name)).count(), 1);
        }
        assert!(script.contains("CREATE OR REPLACE FUNCTION pgtrail.version()"));
    }

    #[test]
    fn the_build_id_is_the_one_the_script_installs() {
        let script = install_script();
        assert!(script.contains(&format!("SELECT '{}' $fn$", build_id())));
        assert_eq!(build_id().len(), 16);
    }

    /// `sql/released/<version>.sql` is what that version installed, frozen
    /// for the upgrade tests: changing the SQL of a released version means a
    /// new version number (and a new frozen file when it is released).
    #[test]
    fn the_released_script_of_this_version_is_what_it_installs() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("sql/released")
            .join(format!("{VERSION}.sql"));
        if let Ok(frozen) = std::fs::read_to_string(&path) {
            assert!(
                frozen == install_script(),
                "the SQL changed after {VERSION} was released ({}): bump the workspace version",
                path.display()
            );
        }
    }

    #[test]
    fn dollar_tags_avoid_the_body() {
        assert_eq!(dollar_tag("SELECT 1", "t"), "t");
        assert_eq!(dollar_tag("SELECT $t$x$t$", "t"), "tx");
    }

    #[test]
    fn trigger_names_match_the_sql() {
        let attach = FUNCTIONS
            .iter()
            .find(|f| f.name == "30_attach.sql")
            .map(|f| f.sql);
        for name in TRIGGER_NAMES {
            assert!(
                attach.is_some_and(|sql| sql.contains(name)),
                "{name} missing from attach.sql"
            );
        }
    }
}
