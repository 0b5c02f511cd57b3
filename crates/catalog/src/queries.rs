//! The catalog queries. Every value goes as a bind parameter.

use std::collections::BTreeMap;

use tokio_postgres::GenericClient;

use crate::CatalogError;
use crate::model::{Catalog, Column, KeySource, Table, TableKind, Trigger, TriggerState};

const TABLES: &str = "
SELECT c.oid::bigint AS oid, n.nspname AS schema, c.relname AS name, c.relkind::text AS kind,
       (SELECT ARRAY(SELECT a.attname::text
                     FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                     JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
                     ORDER BY k.ord)
        FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS primary_key,
       (SELECT ARRAY(SELECT a.attname::text
                     FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                     JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
                     ORDER BY k.ord)
        FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident) AS replica_identity,
       (SELECT ARRAY[pn.nspname::text, p.relname::text]
        FROM pg_inherits h JOIN pg_class p ON p.oid = h.inhparent
        JOIN pg_namespace pn ON pn.oid = p.relnamespace
        WHERE h.inhrelid = c.oid AND c.relispartition) AS partition_of
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY($1::text[])
ORDER BY n.nspname, c.relname";

const COLUMNS: &str = "
SELECT a.attrelid::bigint AS oid, a.attname::text AS name,
       format_type(a.atttypid, a.atttypmod) AS type_name,
       a.attnotnull AS not_null, a.attgenerated <> '' AS generated
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY($1::text[])
  AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum";

const TRIGGERS: &str = "
SELECT t.tgrelid::bigint AS oid, t.tgname::text AS name, t.tgenabled::text AS enabled,
       fn.nspname || '.' || p.proname AS function,
       -- tgargs holds each argument followed by a NUL byte, which the
       -- escape encoding writes as a backslash and three zeros.
       CASE WHEN t.tgnargs = 0 THEN ARRAY[]::text[]
            ELSE (string_to_array(encode(t.tgargs, 'escape'), '\\000'))[1:t.tgnargs]
       END AS args
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_proc p ON p.oid = t.tgfoid
JOIN pg_namespace fn ON fn.oid = p.pronamespace
WHERE NOT t.tgisinternal AND n.nspname = ANY($1::text[])
  AND (t.tgname LIKE 'pgtrail\\_%' OR fn.nspname = 'pgtrail')
ORDER BY t.tgrelid, t.tgname";

const PARTITIONS: &str = "
SELECT h.inhparent::bigint AS parent, n.nspname::text AS schema, c.relname::text AS name
FROM pg_inherits h
JOIN pg_class c ON c.oid = h.inhrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relispartition";

const HAS_VERSION_FUNCTION: &str = "SELECT to_regprocedure('pgtrail.version()') IS NOT NULL";

impl Catalog {
    /// Reads the tables of `schemas` (and the list of all schemas).
    pub async fn load(client: &impl GenericClient, schemas: &[String]) -> Result<Catalog, CatalogError> {
        let schemas_param: Vec<&str> = schemas.iter().map(String::as_str).collect();

        let mut by_oid: BTreeMap<i64, Table> = BTreeMap::new();
        for row in client.query(TABLES, &[&schemas_param]).await? {
            let kind = match row.try_get::<_, String>("kind")?.as_str() {
                "p" => TableKind::Partitioned,
                _ => TableKind::Ordinary,
            };
            let primary: Option<Vec<String>> = row.try_get("primary_key")?;
            let replica: Option<Vec<String>> = row.try_get("replica_identity")?;
            let key = match (primary, replica) {
                (Some(cols), _) if !cols.is_empty() => KeySource::PrimaryKey(cols),
                (_, Some(cols)) if !cols.is_empty() => KeySource::ReplicaIdentity(cols),
                _ => KeySource::FullRow,
            };
            let partition_of: Option<Vec<String>> = row.try_get("partition_of")?;
            let partition_of = match partition_of {
                Some(pair) if pair.len() == 2 => Some((pair[0].clone(), pair[1].clone())),
                Some(other) => {
                    return Err(CatalogError::Unexpected(format!("partition parent {other:?}")));
                }
                None => None,
            };
            by_oid.insert(
                row.try_get("oid")?,
                Table {
                    schema: row.try_get("schema")?,
                    name: row.try_get("name")?,
                    kind,
                    columns: Vec::new(),
                    key,
                    partition_of,
                    partitions: Vec::new(),
                    triggers: Vec::new(),
                },
            );
        }

        for row in client.query(COLUMNS, &[&schemas_param]).await? {
            let oid: i64 = row.try_get("oid")?;
            if let Some(table) = by_oid.get_mut(&oid) {
                table.columns.push(Column {
                    name: row.try_get("name")?,
                    type_name: row.try_get("type_name")?,
                    not_null: row.try_get("not_null")?,
                    generated: row.try_get("generated")?,
                });
            }
        }

        for row in client.query(TRIGGERS, &[&schemas_param]).await? {
            let oid: i64 = row.try_get("oid")?;
            if let Some(table) = by_oid.get_mut(&oid) {
                let enabled: String = row.try_get("enabled")?;
                table.triggers.push(Trigger {
                    name: row.try_get("name")?,
                    state: match enabled.as_str() {
                        "D" => TriggerState::Disabled,
                        "R" => TriggerState::Replica,
                        "A" => TriggerState::Always,
                        _ => TriggerState::Enabled,
                    },
                    function: row.try_get("function")?,
                    args: row.try_get("args")?,
                });
            }
        }

        for row in client.query(PARTITIONS, &[]).await? {
            let parent: i64 = row.try_get("parent")?;
            if let Some(table) = by_oid.get_mut(&parent) {
                table
                    .partitions
                    .push((row.try_get("schema")?, row.try_get("name")?));
            }
        }

        let all_schemas = client
            .query(
                "SELECT nspname::text FROM pg_namespace
                 WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' ORDER BY 1",
                &[],
            )
            .await?
            .iter()
            .map(|row| row.try_get::<_, String>(0))
            .collect::<Result<Vec<_>, _>>()?;

        let installed = client
            .query_one(HAS_VERSION_FUNCTION, &[])
            .await?
            .try_get::<_, bool>(0)?;
        let installed_version: Option<String> = match installed {
            true => Some(
                client
                    .query_one("SELECT pgtrail.version()", &[])
                    .await?
                    .try_get(0)?,
            ),
            false => None,
        };
        let server_version_num: i32 = client
            .query_one("SELECT current_setting('server_version_num')::integer", &[])
            .await?
            .try_get(0)?;

        let tables = by_oid
            .into_values()
            .map(|t| ((t.schema.clone(), t.name.clone()), t))
            .collect();
        Ok(Catalog {
            tables,
            schemas: all_schemas,
            installed_version,
            server_version_num,
        })
    }
}
