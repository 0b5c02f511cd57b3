//! From pgoutput's text values to the JSON capture records (`to_jsonb` of
//! each column): the server casts each text back to the column's type, as
//! the Relation message gave it, and turns it into JSON, so that both modes
//! record a value the same way. One statement per relation version and
//! batch; which audited table a relation is, once per version.

use std::collections::HashMap;

use serde_json::Value as Json;
use tokio_postgres::Client;

use crate::FollowError;
use crate::pgoutput::Value;
use crate::transaction::RelationVersion;

/// What is known of one relation version.
#[derive(Debug, Clone)]
pub struct Known {
    /// Its audited table's id, `None` when it is not audited.
    pub table_id: Option<i32>,
    /// The statement turning rows (a JSON array of arrays of text) into
    /// JSON objects, in order.
    pub sql: String,
}

/// Relation versions seen so far.
#[derive(Debug, Default)]
pub struct Relations {
    known: HashMap<RelationVersion, Known>,
}

/// A literal for SQL text (standard_conforming_strings).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl Relations {
    /// What is known of `relation`, learnt from the database the first time.
    pub async fn learn(
        &mut self,
        client: &Client,
        relation: &RelationVersion,
    ) -> Result<&Known, FollowError> {
        if !self.known.contains_key(relation) {
            let known = Self::load(client, relation).await?;
            self.known.insert(relation.clone(), known);
        }
        self.known
            .get(relation)
            .ok_or_else(|| FollowError::Protocol(format!("relation {} not learnt", relation.oid)))
    }

    async fn load(client: &Client, relation: &RelationVersion) -> Result<Known, FollowError> {
        let table_id: Option<i32> = client
            .query_one(
                "SELECT coalesce(pgtrail._audited_id_of($1::oid),
                                 (SELECT a.id FROM pgtrail.audited_table AS a
                                  WHERE a.table_schema = $2 AND a.table_name = $3
                                  ORDER BY a.detached_at IS NULL DESC LIMIT 1))",
                &[&relation.oid, &relation.schema, &relation.name],
            )
            .await
            .map_err(FollowError::database(
                "finding the audited table of a decoded relation",
            ))?
            .get(0);
        let oids: Vec<u32> = relation.columns.iter().map(|c| c.type_oid).collect();
        let modifiers: Vec<i32> = relation.columns.iter().map(|c| c.type_modifier).collect();
        let types: Vec<String> = client
            .query(
                "SELECT pg_catalog.format_type(u.t, u.m)
                 FROM unnest($1::oid[], $2::int4[]) WITH ORDINALITY AS u(t, m, n) ORDER BY u.n",
                &[&oids, &modifiers],
            )
            .await
            .map_err(FollowError::database("reading the types of a decoded relation"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        // jsonb_build_object takes at most 100 arguments: 50 columns each.
        let pairs: Vec<String> = relation
            .columns
            .iter()
            .zip(&types)
            .enumerate()
            .map(|(i, (column, type_name))| {
                format!(
                    "{}, pg_catalog.to_jsonb((e.r OPERATOR(pg_catalog.->>) {i})::{type_name})",
                    literal(&column.name)
                )
            })
            .collect();
        let object = if pairs.is_empty() {
            "'{}'::pg_catalog.jsonb".to_string()
        } else {
            pairs
                .chunks(50)
                .map(|chunk| format!("pg_catalog.jsonb_build_object({})", chunk.join(", ")))
                .collect::<Vec<_>>()
                .join(" OPERATOR(pg_catalog.||) ")
        };
        Ok(Known {
            table_id,
            sql: format!(
                "SELECT {object} FROM pg_catalog.jsonb_array_elements($1::text::pg_catalog.jsonb) \
                 WITH ORDINALITY AS e(r, n) ORDER BY e.n"
            ),
        })
    }
}

/// The rows as JSON objects, in order (`known.sql` run once for all).
pub async fn rows_to_json(
    client: &Client,
    known: &Known,
    rows: &[&[Value]],
) -> Result<Vec<Json>, FollowError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let texts: Vec<Json> = rows
        .iter()
        .map(|row| {
            Json::Array(
                row.iter()
                    .map(|v| match v {
                        Value::Text(text) => Json::String(text.clone()),
                        Value::Null | Value::Unchanged => Json::Null,
                    })
                    .collect(),
            )
        })
        .collect();
    let argument = Json::Array(texts).to_string();
    let out = client
        .query(&known.sql, &[&argument])
        .await
        .map_err(FollowError::database("turning decoded values into JSON"))?;
    Ok(out.iter().map(|r| r.get::<_, Json>(0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_double_quotes() {
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal(r"a\b"), r"'a\b'");
    }
}
