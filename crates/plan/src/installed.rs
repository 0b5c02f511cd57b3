//! What pgtrail has installed: its version and build, the settings of every
//! audited table, and the context settings. Read from pgtrail's own tables.

use std::collections::BTreeMap;

use tokio_postgres::GenericClient;

use crate::PlanError;

/// The settings pgtrail recorded for one audited table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledTable {
    pub id: i32,
    pub key_columns: Vec<String>,
    pub key_kind: String,
    pub images: String,
    pub ignore_columns: Vec<String>,
    pub redact_columns: Vec<String>,
    /// `event` or `capture` (`event` for installs older than the setting).
    pub truncate: String,
    pub truncate_row_limit: Option<i64>,
    /// `trigger` or `wal` (`trigger` for installs older than WAL mode).
    pub mode: String,
    pub detached: bool,
    /// Whether its generated capture function is the one this version and
    /// the catalog call for (`None` when this install cannot tell: an older
    /// version, or a table that no longer exists).
    pub capture_current: Option<bool>,
}

/// Everything pgtrail installed, or nothing when it is not installed.
#[derive(Debug, Clone, Default)]
pub struct Installed {
    pub version: Option<String>,
    pub build: Option<String>,
    pub tables: BTreeMap<(String, String), InstalledTable>,
    pub context_sources: serde_json::Value,
    pub require_actor: bool,
    /// What set_context does outside a transaction block (`warn` for
    /// installs older than the setting).
    pub outside_transaction: String,
    /// The auto_attach rules, JSON null when off.
    pub auto_attach: serde_json::Value,
    /// Indexes an upgrade left to build concurrently (pgtrail.index_build).
    pub pending_indexes: Vec<String>,
    /// What WAL mode depends on: read whether pgtrail is installed or not.
    pub wal: crate::wal::WalState,
}

impl Installed {
    pub async fn load(client: &impl GenericClient) -> Result<Installed, PlanError> {
        let installed = client
            .query_one(
                "SELECT to_regprocedure('pgtrail.version()') IS NOT NULL,
                        to_regprocedure('pgtrail.build()') IS NOT NULL",
                &[],
            )
            .await
            .map_err(PlanError::database("reading pgtrail's version"))?;
        let (has_version, has_build): (bool, bool) = (installed.get(0), installed.get(1));
        if !has_version {
            return Ok(Installed::default());
        }
        let read = |context: &'static str| PlanError::database(context);
        let version: String = client
            .query_one("SELECT pgtrail.version()", &[])
            .await
            .map_err(read("reading pgtrail's version"))?
            .get(0);
        let build: Option<String> = match has_build {
            true => Some(
                client
                    .query_one("SELECT pgtrail.build()", &[])
                    .await
                    .map_err(read("reading pgtrail's build"))?
                    .get(0),
            ),
            false => None,
        };
        // The generated capture functions are judged by an install of this
        // very build only (another one is reinstalled, which regenerates them).
        let judge_capture = version == pgtrail_capture::VERSION
            && build.as_deref() == Some(pgtrail_capture::build_id().as_str());
        let mut tables = BTreeMap::new();
        // (truncate and truncate_row_limit through to_jsonb: an older install
        // has no such columns.)
        for row in client
            .query(
                if judge_capture {
                    "SELECT id, table_schema, table_name, key_columns, key_kind, images,
                            ignore_columns, redact_columns, detached_at IS NOT NULL,
                            CASE WHEN detached_at IS NULL AND to_regclass(format('%I.%I', table_schema, table_name)) IS NOT NULL
                                      AND coalesce(to_jsonb(a) ->> 'capture_mode', 'trigger') = 'trigger'
                                 THEN pgtrail._capture_is_current(id, format('%I.%I', table_schema, table_name)::regclass) END,
                            coalesce(to_jsonb(a) ->> 'truncate', 'event'), (to_jsonb(a) ->> 'truncate_row_limit')::bigint,
                            coalesce(to_jsonb(a) ->> 'capture_mode', 'trigger')
                     FROM pgtrail.audited_table AS a"
                } else {
                    "SELECT id, table_schema, table_name, key_columns, key_kind, images,
                            ignore_columns, redact_columns, detached_at IS NOT NULL, NULL::boolean,
                            coalesce(to_jsonb(a) ->> 'truncate', 'event'), (to_jsonb(a) ->> 'truncate_row_limit')::bigint,
                            coalesce(to_jsonb(a) ->> 'capture_mode', 'trigger')
                     FROM pgtrail.audited_table AS a"
                },
                &[],
            )
            .await
            .map_err(read("reading pgtrail.audited_table"))?
        {
            tables.insert(
                (row.get(1), row.get(2)),
                InstalledTable {
                    id: row.get(0),
                    key_columns: row.get(3),
                    key_kind: row.get(4),
                    images: row.get(5),
                    ignore_columns: row.get(6),
                    redact_columns: row.get(7),
                    truncate: row.get(10),
                    truncate_row_limit: row.get(11),
                    mode: row.get(12),
                    detached: row.get(8),
                    capture_current: row.get(9),
                },
            );
        }
        let context = client
            .query_one(
                "SELECT coalesce((SELECT jsonb_object_agg(field, settings) FROM (
                             SELECT field, jsonb_agg(setting ORDER BY position) AS settings
                             FROM pgtrail.context_source GROUP BY field) AS s), '{}'::jsonb),
                        coalesce((SELECT value = 'true' FROM pgtrail.setting WHERE name = 'require_actor'), false),
                        coalesce((SELECT value::jsonb FROM pgtrail.setting WHERE name = 'auto_attach'), 'null'::jsonb),
                        coalesce((SELECT value FROM pgtrail.setting WHERE name = 'outside_transaction'), 'warn')",
                &[],
            )
            .await
            .map_err(read("reading pgtrail's context settings"))?;
        let has_index_build: bool = client
            .query_one("SELECT to_regclass('pgtrail.index_build') IS NOT NULL", &[])
            .await
            .map_err(read("reading pgtrail.index_build"))?
            .get(0);
        let pending_indexes: Vec<String> = if has_index_build {
            client
                .query("SELECT name FROM pgtrail.index_build ORDER BY name", &[])
                .await
                .map_err(read("reading pgtrail.index_build"))?
                .iter()
                .map(|r| r.get(0))
                .collect()
        } else {
            Vec::new()
        };
        Ok(Installed {
            version: Some(version),
            build,
            tables,
            context_sources: context.get(0),
            require_actor: context.get(1),
            outside_transaction: context.get(3),
            auto_attach: context.get(2),
            pending_indexes,
            wal: crate::wal::WalState::load(client).await?,
        })
    }
}
