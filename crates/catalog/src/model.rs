//! The shape of the catalog as pgtrail sees it.

use std::collections::BTreeMap;

/// Tables of the considered schemas, keyed by `(schema, name)`.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub tables: BTreeMap<(String, String), Table>,
    /// Every schema of the database (not only the considered ones), so a
    /// config that names an unknown schema gets a useful suggestion.
    pub schemas: Vec<String>,
    /// `pgtrail.version()` when pgtrail is installed.
    pub installed_version: Option<String>,
    /// The PostgreSQL server version number, e.g. 150020.
    pub server_version_num: i32,
}

impl Catalog {
    pub fn table(&self, schema: &str, name: &str) -> Option<&Table> {
        self.tables.get(&(schema.to_string(), name.to_string()))
    }

    /// Tables that are not partitions: the ones a config talks about.
    pub fn top_level_tables(&self) -> impl Iterator<Item = &Table> {
        self.tables.values().filter(|t| t.partition_of.is_none())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    Ordinary,
    Partitioned,
}

/// Where a table's row identity comes from when the config does not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    PrimaryKey(Vec<String>),
    /// `ALTER TABLE ... REPLICA IDENTITY USING INDEX`.
    ReplicaIdentity(Vec<String>),
    /// No key: the whole row identifies it.
    FullRow,
}

impl KeySource {
    pub fn columns(&self) -> &[String] {
        match self {
            KeySource::PrimaryKey(c) | KeySource::ReplicaIdentity(c) => c,
            KeySource::FullRow => &[],
        }
    }

    /// The name pgtrail records in `pgtrail.audited_table.key_kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            KeySource::PrimaryKey(_) => "primary_key",
            KeySource::ReplicaIdentity(_) => "replica_identity",
            KeySource::FullRow => "full_row",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Table {
    pub schema: String,
    pub name: String,
    pub kind: TableKind,
    pub columns: Vec<Column>,
    pub key: KeySource,
    /// `(schema, name)` of the partitioned table this is a partition of.
    pub partition_of: Option<(String, String)>,
    /// Leaf and intermediate partitions, for a partitioned table.
    pub partitions: Vec<(String, String)>,
    /// pgtrail's capture triggers on this table.
    pub triggers: Vec<Trigger>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn column_names(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|c| c.name.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    /// `format_type()` of the column, e.g. `numeric(12,2)`.
    pub type_name: String,
    pub not_null: bool,
    pub generated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerState {
    Enabled,
    Disabled,
    /// Fires only under `session_replication_role = replica`.
    Replica,
    /// Fires always, whatever the session replication role.
    Always,
}

#[derive(Debug, Clone)]
pub struct Trigger {
    pub name: String,
    pub state: TriggerState,
    /// `schema.function` the trigger calls.
    pub function: String,
    pub args: Vec<String>,
}
