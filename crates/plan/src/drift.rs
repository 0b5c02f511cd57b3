//! Drift: every way the database differs from the config. `pgtrail check`
//! lists these problems, `pgtrail plan` prints the SQL that repairs them and
//! `pgtrail apply` runs it.

use std::fmt;

use pgtrail_catalog::{Catalog, Table, TriggerState};

use crate::desired::{Desired, DesiredTable};
use crate::installed::Installed;
use crate::privileges::Shortfall;

/// `(schema, name)` of a table.
pub type TableName = (String, String);

/// One difference between the database and the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    NotInstalled,
    /// pgtrail's functions are of another version or build than this binary's.
    StaleInstall {
        installed: String,
        expected: String,
    },
    /// An audited table (or one of its partitions, `on`) lacks a capture trigger.
    MissingTrigger {
        table: TableName,
        on: TableName,
        trigger: String,
    },
    /// A capture trigger exists but does not fire in normal operation.
    DisabledTrigger {
        table: TableName,
        on: TableName,
        trigger: String,
        state: &'static str,
    },
    /// A capture trigger calls the wrong function or records under another table's id.
    WrongTrigger {
        table: TableName,
        on: TableName,
        trigger: String,
        detail: String,
    },
    /// A table the config excludes, or no longer covers, still has capture triggers.
    UnexpectedTrigger {
        table: TableName,
        reason: String,
    },
    /// No include or exclude rule covers this table (for example one created after the install).
    NotCovered {
        table: TableName,
    },
    /// The settings pgtrail recorded for a table differ from the config.
    SettingsDiffer {
        table: TableName,
        setting: &'static str,
        installed: String,
        desired: String,
    },
    /// The context settings ([context] in the config) differ from the installed ones.
    ContextDiffers {
        installed: String,
        desired: String,
    },
    /// The table was renamed: its capture still runs, but the trail records
    /// its changes under the old name until `apply` updates it.
    Renamed {
        table: TableName,
        recorded_as: TableName,
    },
    /// auto_attach is on in one and off in the other, or its rules differ.
    AutoAttachDiffers {
        installed: bool,
        desired: bool,
    },
    /// The table's generated capture function is not the one this version
    /// and the table's columns call for (for example after its columns
    /// changed while the DDL watch was off).
    StaleCapture {
        table: TableName,
    },
    /// An upgrade left an index to build concurrently; `apply` builds it.
    IndexPending {
        index: String,
    },
    /// The install lacks what only a superuser or a role with CREATEROLE
    /// can give (no owner role, no DDL watch), and `[install]` in the
    /// config does not accept it.
    Unprotected(Shortfall),
    /// A table is in WAL mode but the server does not decode logically.
    WalLevel {
        level: String,
    },
    /// A table is in WAL mode but this database's slot does not exist.
    WalSlotMissing {
        slot: String,
    },
    /// The slot holds more WAL not yet in the trail than
    /// `[capture] wal_max_lag_bytes`: is `pgtrail follow` running?
    WalSlotBehind {
        slot: String,
        lag_bytes: i64,
        lag_seconds: i64,
        limit: i64,
        active: bool,
    },
    /// The server removed WAL the slot still needed (max_slot_wal_keep_size):
    /// changes are lost from the trail.
    WalSlotLost {
        slot: String,
    },
    /// No table is in WAL mode, but the slot is still there, keeping WAL.
    WalSlotUnused {
        slot: String,
        lag_bytes: i64,
    },
    /// A WAL-mode table lacks part of its setup (publication, replica identity).
    WalSetup {
        table: TableName,
        detail: String,
    },
    /// `pgtrail follow` ignored context messages not signed for their
    /// transaction (forged, or copied from another one) since they were
    /// last acknowledged: `count` of them, the last in transaction
    /// `last_txid` at `last_lsn`.
    WalMessagesRejected {
        count: i64,
        last_txid: Option<i64>,
        last_lsn: Option<String>,
        last_reason: Option<String>,
    },
}

impl Problem {
    /// A stable name for scripts (`--format json`).
    pub fn kind(&self) -> &'static str {
        match self {
            Problem::NotInstalled => "not_installed",
            Problem::StaleInstall { .. } => "stale_install",
            Problem::MissingTrigger { .. } => "missing_trigger",
            Problem::DisabledTrigger { .. } => "disabled_trigger",
            Problem::WrongTrigger { .. } => "wrong_trigger",
            Problem::UnexpectedTrigger { .. } => "unexpected_trigger",
            Problem::NotCovered { .. } => "not_covered",
            Problem::SettingsDiffer { .. } => "settings_differ",
            Problem::ContextDiffers { .. } => "context_differs",
            Problem::AutoAttachDiffers { .. } => "auto_attach_differs",
            Problem::Renamed { .. } => "renamed",
            Problem::StaleCapture { .. } => "stale_capture",
            Problem::IndexPending { .. } => "index_pending",
            Problem::Unprotected(shortfall) => shortfall.kind(),
            Problem::WalLevel { .. } => "wal_level",
            Problem::WalSlotMissing { .. } => "wal_slot_missing",
            Problem::WalSlotBehind { .. } => "wal_slot_behind",
            Problem::WalSlotLost { .. } => "wal_slot_lost",
            Problem::WalSlotUnused { .. } => "wal_slot_unused",
            Problem::WalSetup { .. } => "wal_setup",
            Problem::WalMessagesRejected { .. } => "wal_messages_rejected",
        }
    }

    /// The table the problem is about, if any.
    pub fn table(&self) -> Option<&TableName> {
        match self {
            Problem::NotInstalled
            | Problem::StaleInstall { .. }
            | Problem::ContextDiffers { .. }
            | Problem::AutoAttachDiffers { .. }
            | Problem::IndexPending { .. }
            | Problem::Unprotected(_)
            | Problem::WalLevel { .. }
            | Problem::WalSlotMissing { .. }
            | Problem::WalSlotBehind { .. }
            | Problem::WalSlotLost { .. }
            | Problem::WalSlotUnused { .. }
            | Problem::WalMessagesRejected { .. } => None,
            Problem::WalSetup { table, .. } => Some(table),
            Problem::MissingTrigger { table, .. }
            | Problem::DisabledTrigger { table, .. }
            | Problem::WrongTrigger { table, .. }
            | Problem::UnexpectedTrigger { table, .. }
            | Problem::NotCovered { table }
            | Problem::Renamed { table, .. }
            | Problem::StaleCapture { table }
            | Problem::SettingsDiffer { table, .. } => Some(table),
        }
    }
}

fn name((schema, table): &TableName) -> String {
    format!("{schema}.{table}")
}

fn on_partition(table: &TableName, on: &TableName) -> String {
    if table == on {
        String::new()
    } else {
        format!(" (partition {})", name(on))
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NotInstalled => write!(f, "pgtrail is not installed in this database"),
            Problem::StaleInstall { installed, expected } => {
                write!(f, "pgtrail {installed} is installed; this pgtrail is {expected}")
            }
            Problem::MissingTrigger { table, on, trigger } => {
                write!(
                    f,
                    "{}: capture trigger {trigger} is missing{}",
                    name(table),
                    on_partition(table, on)
                )
            }
            Problem::DisabledTrigger {
                table,
                on,
                trigger,
                state,
            } => write!(
                f,
                "{}: capture trigger {trigger} is {state}{}",
                name(table),
                on_partition(table, on)
            ),
            Problem::WrongTrigger {
                table,
                on,
                trigger,
                detail,
            } => write!(
                f,
                "{}: capture trigger {trigger} {detail}{}",
                name(table),
                on_partition(table, on)
            ),
            Problem::UnexpectedTrigger { table, reason } => {
                write!(f, "{}: has capture triggers but {reason}", name(table))
            }
            Problem::NotCovered { table } => {
                write!(f, "{}: not covered by any include or exclude rule", name(table))
            }
            Problem::SettingsDiffer {
                table,
                setting,
                installed,
                desired,
            } => write!(
                f,
                "{}: {setting} is {installed} in the database but {desired} in the config",
                name(table)
            ),
            Problem::Renamed { table, recorded_as } => write!(
                f,
                "{}: renamed; the trail still records its changes as {}",
                name(table),
                name(recorded_as)
            ),
            Problem::AutoAttachDiffers { installed, desired } => match (installed, desired) {
                (false, true) => write!(f, "auto_attach is on in the config but not installed"),
                (true, false) => write!(f, "auto_attach is installed but off in the config"),
                _ => write!(
                    f,
                    "auto_attach rules differ from the config's include and exclude patterns"
                ),
            },
            Problem::ContextDiffers { installed, desired } => write!(
                f,
                "context settings are {installed} in the database but {desired} in the config"
            ),
            Problem::StaleCapture { table } => write!(
                f,
                "{}: its capture function does not match its columns and settings",
                name(table)
            ),
            Problem::IndexPending { index } => write!(
                f,
                "the upgrade's index pgtrail.{index} is not built yet (apply builds it without blocking writers)"
            ),
            Problem::Unprotected(shortfall) => match shortfall.accept_setting() {
                Some(setting) => write!(f, "{shortfall} (accept it with [install] {setting})"),
                None => write!(f, "{shortfall}"),
            },
            Problem::WalLevel { level } => write!(
                f,
                "WAL mode needs wal_level = logical, but the server runs with wal_level = {level} \
                 (ALTER SYSTEM SET wal_level = logical, then restart)"
            ),
            Problem::WalSlotMissing { slot } => write!(
                f,
                "the logical replication slot {slot} of WAL mode does not exist (apply creates it)"
            ),
            Problem::WalSlotBehind {
                slot,
                lag_bytes,
                lag_seconds,
                limit,
                active,
            } => write!(
                f,
                "the slot {slot} holds {lag_bytes} bytes of WAL not yet in the trail ({lag_seconds} s), more than \
                 wal_max_lag_bytes = {limit}; {}",
                if *active {
                    "pgtrail follow is reading it but falls behind"
                } else {
                    "no follower is reading it: start pgtrail follow"
                }
            ),
            Problem::WalSlotLost { slot } => write!(
                f,
                "the server removed WAL the slot {slot} still needed (max_slot_wal_keep_size): changes in it are \
                 lost from the trail; drop the slot and run apply to start again"
            ),
            Problem::WalSlotUnused { slot, lag_bytes } => write!(
                f,
                "no table is in WAL mode, but the slot {slot} still keeps WAL ({lag_bytes} bytes not yet in the \
                 trail): run pgtrail follow --once, then SELECT pg_drop_replication_slot('{slot}')"
            ),
            Problem::WalSetup { table, detail } => write!(f, "{}: in WAL mode but {detail}", name(table)),
            Problem::WalMessagesRejected {
                count,
                last_txid,
                last_lsn,
                last_reason,
            } => write!(
                f,
                "pgtrail follow ignored {count} context message{} {} (forged, or copied from another \
                 transaction; the last in transaction {} at {}): the changes are recorded without it; find who \
                 emitted it (pg_logical_emit_message with prefix 'pgtrail'), then run pgtrail wal acknowledge",
                if *count == 1 { "" } else { "s" },
                last_reason.as_deref().unwrap_or("not signed for its transaction"),
                last_txid.map_or_else(|| "?".to_string(), |t| t.to_string()),
                last_lsn.as_deref().unwrap_or("?"),
            ),
        }
    }
}

/// Every problem, in a stable order: installation first, then by table.
pub fn problems(desired: &Desired, catalog: &Catalog, installed: &Installed) -> Vec<Problem> {
    let mut out = Vec::new();
    match (&installed.version, &installed.build) {
        (None, _) => out.push(Problem::NotInstalled),
        (Some(version), build) => {
            let expected_build = pgtrail_capture::build_id();
            if version != pgtrail_capture::VERSION || build.as_deref() != Some(expected_build.as_str()) {
                out.push(Problem::StaleInstall {
                    installed: describe_install(version, build.as_deref()),
                    expected: describe_install(pgtrail_capture::VERSION, Some(&expected_build)),
                });
            }
        }
    }
    if installed.version.is_some()
        && (installed.context_sources != desired.context_sources
            || installed.require_actor != desired.require_actor
            || installed.outside_transaction != desired.outside_transaction)
    {
        out.push(Problem::ContextDiffers {
            installed: describe_context(
                &installed.context_sources,
                installed.require_actor,
                &installed.outside_transaction,
            ),
            desired: describe_context(
                &desired.context_sources,
                desired.require_actor,
                &desired.outside_transaction,
            ),
        });
    }
    if installed.version.is_some() && installed.auto_attach != desired.auto_attach {
        out.push(Problem::AutoAttachDiffers {
            installed: !installed.auto_attach.is_null(),
            desired: !desired.auto_attach.is_null(),
        });
    }
    for index in &installed.pending_indexes {
        out.push(Problem::IndexPending { index: index.clone() });
    }
    wal_problems(desired, installed, &mut out);
    for table in &desired.tables {
        table_problems(table, catalog, installed, &mut out);
    }
    for (table, reason) in &desired.detach {
        out.push(Problem::UnexpectedTrigger {
            table: table.clone(),
            reason: reason.clone(),
        });
    }
    for table in &desired.not_covered {
        out.push(Problem::NotCovered { table: table.clone() });
    }
    out
}

fn describe_install(version: &str, build: Option<&str>) -> String {
    match build {
        Some(build) => format!("{version} (build {build})"),
        None => version.to_string(),
    }
}

fn describe_context(sources: &serde_json::Value, require_actor: bool, outside_transaction: &str) -> String {
    format!("{sources} with require_actor = {require_actor}, outside_transaction = {outside_transaction}")
}

fn table_problems(table: &DesiredTable, catalog: &Catalog, installed: &Installed, out: &mut Vec<Problem>) {
    let key: TableName = (table.schema.clone(), table.name.clone());
    let recorded = installed.tables.get(&key).filter(|t| !t.detached);
    if let Some(recorded) = recorded {
        if recorded.capture_current == Some(false) {
            out.push(Problem::StaleCapture { table: key.clone() });
        }
        let lists = [
            (
                "key",
                recorded.key_columns.join(", "),
                table.key_columns.join(", "),
            ),
            ("images", recorded.images.clone(), table.images.to_string()),
            (
                "ignore_columns",
                recorded.ignore_columns.join(", "),
                table.ignore_columns.join(", "),
            ),
            (
                "redact_columns",
                recorded.redact_columns.join(", "),
                table.redact_columns.join(", "),
            ),
            ("truncate", recorded.truncate.clone(), table.truncate.to_string()),
            ("mode", recorded.mode.clone(), table.mode.to_string()),
            (
                "truncate_row_limit",
                limit_text(recorded.truncate_row_limit),
                limit_text(table.truncate_row_limit),
            ),
        ];
        for (setting, was, wanted) in lists {
            if was != wanted {
                out.push(Problem::SettingsDiffer {
                    table: key.clone(),
                    setting,
                    installed: shown(&was),
                    desired: shown(&wanted),
                });
            }
        }
    }
    let Some(catalog_table) = catalog.table(&table.schema, &table.name) else {
        return;
    };
    if recorded.is_none() {
        // No record under this name: a capture trigger that records under an
        // existing table id means the table was renamed since.
        let trigger_id = catalog_table
            .triggers
            .iter()
            .find(|t| {
                pgtrail_capture::TRIGGER_NAMES.contains(&t.name.as_str())
                    || t.name == pgtrail_capture::WAL_TRIGGER_NAME
            })
            .and_then(|t| t.args.first())
            .and_then(|arg| arg.parse::<i32>().ok());
        let recorded_as = installed
            .tables
            .iter()
            .find(|(_, t)| Some(t.id) == trigger_id && !t.detached)
            .map(|(name, _)| name.clone());
        if let Some(recorded_as) = recorded_as {
            out.push(Problem::Renamed {
                table: key.clone(),
                recorded_as,
            });
            return;
        }
    }
    let wal = table.mode == "wal";
    let (names, expected_function): (&[&str], Option<String>) = if wal {
        (
            &[pgtrail_capture::WAL_TRIGGER_NAME],
            Some(pgtrail_capture::WAL_CONTEXT_FUNCTION.to_string()),
        )
    } else {
        (
            &pgtrail_capture::TRIGGER_NAMES,
            recorded.map(|r| pgtrail_capture::capture_function(r.id)),
        )
    };
    for carrier in carriers(catalog_table, catalog) {
        let on: TableName = (carrier.schema.clone(), carrier.name.clone());
        // A table in one mode carries none of the other mode's triggers.
        let other: Vec<&str> = if wal {
            pgtrail_capture::TRIGGER_NAMES.to_vec()
        } else {
            vec![pgtrail_capture::WAL_TRIGGER_NAME]
        };
        for trigger in carrier
            .triggers
            .iter()
            .filter(|t| other.contains(&t.name.as_str()))
        {
            out.push(Problem::WrongTrigger {
                table: key.clone(),
                on: on.clone(),
                trigger: trigger.name.clone(),
                detail: format!("is there, but the table's mode is {}", table.mode),
            });
        }
        for &trigger_name in names {
            let Some(trigger) = carrier.triggers.iter().find(|t| t.name == trigger_name) else {
                out.push(Problem::MissingTrigger {
                    table: key.clone(),
                    on: on.clone(),
                    trigger: trigger_name.into(),
                });
                continue;
            };
            if let Some(expected) = expected_function.as_ref()
                && trigger.function != *expected
            {
                out.push(Problem::WrongTrigger {
                    table: key.clone(),
                    on: on.clone(),
                    trigger: trigger_name.into(),
                    detail: format!("calls {} instead of {expected}", trigger.function),
                });
            } else if let Some(recorded) = recorded
                && trigger.args.first().map(String::as_str) != Some(recorded.id.to_string().as_str())
            {
                out.push(Problem::WrongTrigger {
                    table: key.clone(),
                    on: on.clone(),
                    trigger: trigger_name.into(),
                    detail: format!(
                        "records under table id {:?}, not {}",
                        trigger.args.first(),
                        recorded.id
                    ),
                });
            }
            let state = match trigger.state {
                TriggerState::Disabled => Some("disabled"),
                TriggerState::Replica => Some("enabled only for replication sessions"),
                TriggerState::Enabled | TriggerState::Always => None,
            };
            if let Some(state) = state {
                out.push(Problem::DisabledTrigger {
                    table: key.clone(),
                    on: on.clone(),
                    trigger: trigger_name.into(),
                    state,
                });
            }
        }
    }
}

/// The server-wide part of WAL mode: wal_level, the slot and its lag, and
/// each WAL-mode table's publication and replica identity.
fn wal_problems(desired: &Desired, installed: &Installed, out: &mut Vec<Problem>) {
    let wal = &installed.wal;
    if installed.version.is_none() {
        return;
    }
    if let Some(rejected) = wal.rejected.as_ref().filter(|r| r.unacknowledged > 0) {
        out.push(Problem::WalMessagesRejected {
            count: rejected.unacknowledged,
            last_txid: rejected.last_txid,
            last_lsn: rejected.last_lsn.clone(),
            last_reason: rejected.last_reason.clone(),
        });
    }
    if !desired.wants_wal() {
        if let Some(slot) = &wal.slot {
            out.push(Problem::WalSlotUnused {
                slot: wal.slot_name.clone(),
                lag_bytes: slot.lag_bytes,
            });
        }
        return;
    }
    if wal.wal_level != "logical" {
        out.push(Problem::WalLevel {
            level: wal.wal_level.clone(),
        });
    }
    match &wal.slot {
        None => out.push(Problem::WalSlotMissing {
            slot: wal.slot_name.clone(),
        }),
        Some(slot) if slot.wal_status.as_deref() == Some("lost") => out.push(Problem::WalSlotLost {
            slot: wal.slot_name.clone(),
        }),
        Some(slot) if slot.lag_bytes > desired.wal_max_lag_bytes => out.push(Problem::WalSlotBehind {
            slot: wal.slot_name.clone(),
            lag_bytes: slot.lag_bytes,
            lag_seconds: slot.lag_seconds as i64,
            limit: desired.wal_max_lag_bytes,
            active: slot.active,
        }),
        Some(_) => {}
    }
    for (table, detail) in &wal.unready {
        if desired
            .tables
            .iter()
            .any(|t| t.mode == "wal" && (&t.schema, &t.name) == (&table.0, &table.1))
        {
            out.push(Problem::WalSetup {
                table: table.clone(),
                detail: detail.clone(),
            });
        }
    }
}

fn limit_text(limit: Option<i64>) -> String {
    limit.map(|l| l.to_string()).unwrap_or_default()
}

fn shown(list: &str) -> String {
    if list.is_empty() {
        "(none)".to_string()
    } else {
        format!("[{list}]")
    }
}

/// The table and all its partitions, at every level, that the catalog knows.
fn carriers<'a>(table: &'a Table, catalog: &'a Catalog) -> Vec<&'a Table> {
    let mut out = vec![table];
    let mut index = 0;
    while index < out.len() {
        let current = out[index];
        for (schema, name) in &current.partitions {
            if let Some(partition) = catalog.table(schema, name) {
                out.push(partition);
            }
        }
        index += 1;
    }
    out
}

/// Tables whose capture must be (re)attached to repair `problems`.
pub fn tables_to_attach(problems: &[Problem]) -> Vec<TableName> {
    let mut out: Vec<TableName> = problems
        .iter()
        .filter(|p| {
            matches!(
                p,
                Problem::MissingTrigger { .. }
                    | Problem::DisabledTrigger { .. }
                    | Problem::WrongTrigger { .. }
                    | Problem::SettingsDiffer { .. }
                    | Problem::Renamed { .. }
                    | Problem::StaleCapture { .. }
                    | Problem::WalSetup { .. }
            )
        })
        .filter_map(|p| p.table().cloned())
        .collect();
    out.sort();
    out.dedup();
    out
}
