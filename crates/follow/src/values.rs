//! From pgoutput's text values to the JSON capture records (`to_jsonb` of
//! each column), so that both modes record a value the same way. Integers,
//! booleans, `text` and `varchar` (by the column's type OID, domains
//! excluded) are converted here, as `to_jsonb` prints them; for every other
//! type the server casts the text back to the column's type, as the
//! Relation message gave it, and turns it into JSON: one statement per
//! relation version and batch, none when every column is converted here.
//! Which audited table a relation is, once per version.

use std::collections::HashMap;

use serde_json::{Map, Value as Json};
use tokio_postgres::Client;

use crate::FollowError;
use crate::pgoutput::Value;
use crate::transaction::RelationVersion;

/// What is known of one relation version.
#[derive(Debug, Clone)]
pub struct Known {
    /// Its audited table's id, `None` when it is not audited.
    pub table_id: Option<i32>,
    /// How each column's value becomes JSON, in the relation's order.
    pub columns: Vec<(String, Convert)>,
    /// The statement turning rows (a JSON array of arrays of text, the
    /// [`Convert::Server`] columns only) into JSON objects, in order;
    /// `None` when no column needs the server.
    pub sql: Option<String>,
}

/// How one column's text value becomes JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convert {
    /// `int2`, `int4`, `int8`: a JSON number.
    Integer,
    /// `bool`: `t` or `f`.
    Boolean,
    /// `text`, `varchar`: a JSON string.
    Text,
    /// Any other type: the server's `to_jsonb` of the cast text.
    Server,
}

impl Convert {
    /// How a column of type `type_oid` is converted. Domains have their
    /// own OIDs and go to the server (their base type could differ).
    pub fn of(type_oid: u32) -> Convert {
        match type_oid {
            20 | 21 | 23 => Convert::Integer,
            16 => Convert::Boolean,
            25 | 1043 => Convert::Text,
            _ => Convert::Server,
        }
    }

    /// `text` as `to_jsonb` would give it for this conversion (not
    /// [`Convert::Server`]).
    pub fn json(self, text: &str) -> Result<Json, FollowError> {
        match self {
            Convert::Integer => text
                .parse::<i64>()
                .map(Json::from)
                .map_err(|_| FollowError::Protocol(format!("integer column sent {text:?}, not an integer"))),
            Convert::Boolean => match text {
                "t" => Ok(Json::Bool(true)),
                "f" => Ok(Json::Bool(false)),
                _ => Err(FollowError::Protocol(format!(
                    "boolean column sent {text:?}, not t or f"
                ))),
            },
            Convert::Text => Ok(Json::String(text.to_string())),
            Convert::Server => Err(FollowError::Protocol(format!(
                "value {text:?} needs the server to become JSON"
            ))),
        }
    }
}

/// Relation versions seen so far.
#[derive(Debug, Default)]
pub struct Relations {
    known: HashMap<RelationVersion, Known>,
    /// Every column through the server ([`FollowOptions::server_values`](crate::FollowOptions::server_values)).
    server_values: bool,
}

/// A literal for SQL text (standard_conforming_strings).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl Relations {
    /// No relation known yet; `server_values`: every column to the server.
    pub fn new(server_values: bool) -> Relations {
        Relations {
            known: HashMap::new(),
            server_values,
        }
    }

    /// What is known of `relation`, learnt from the database the first time.
    pub async fn learn(
        &mut self,
        client: &Client,
        relation: &RelationVersion,
    ) -> Result<&Known, FollowError> {
        if !self.known.contains_key(relation) {
            let known = Self::load(client, relation, self.server_values).await?;
            self.known.insert(relation.clone(), known);
        }
        self.known
            .get(relation)
            .ok_or_else(|| FollowError::Protocol(format!("relation {} not learnt", relation.oid)))
    }

    async fn load(
        client: &Client,
        relation: &RelationVersion,
        server_values: bool,
    ) -> Result<Known, FollowError> {
        let convert = |type_oid: u32| {
            if server_values {
                Convert::Server
            } else {
                Convert::of(type_oid)
            }
        };
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
        let columns: Vec<(String, Convert)> = relation
            .columns
            .iter()
            .map(|c| (c.name.clone(), convert(c.type_oid)))
            .collect();
        let server: Vec<&crate::pgoutput::Column> = relation
            .columns
            .iter()
            .filter(|c| convert(c.type_oid) == Convert::Server)
            .collect();
        if server.is_empty() {
            return Ok(Known {
                table_id,
                columns,
                sql: None,
            });
        }
        let oids: Vec<u32> = server.iter().map(|c| c.type_oid).collect();
        let modifiers: Vec<i32> = server.iter().map(|c| c.type_modifier).collect();
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
        let pairs: Vec<String> = server
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
            columns,
            sql: Some(format!(
                "SELECT {object} FROM pg_catalog.jsonb_array_elements($1::text::pg_catalog.jsonb) \
                 WITH ORDINALITY AS e(r, n) ORDER BY e.n"
            )),
        })
    }
}

/// The rows as JSON objects, in order: the columns converted here added
/// to what `known.sql` (run once for all, if any column needs it) returns.
pub async fn rows_to_json(
    client: &Client,
    known: &Known,
    rows: &[&[Value]],
) -> Result<Vec<Json>, FollowError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut objects: Vec<Map<String, Json>> = match &known.sql {
        Some(sql) => server_objects(client, known, sql, rows).await?,
        None => vec![Map::new(); rows.len()],
    };
    for (object, row) in objects.iter_mut().zip(rows) {
        native_into(object, &known.columns, row)?;
    }
    Ok(objects.into_iter().map(Json::Object).collect())
}

/// The columns of `row` converted here, added to `object`.
fn native_into(
    object: &mut Map<String, Json>,
    columns: &[(String, Convert)],
    row: &[Value],
) -> Result<(), FollowError> {
    for ((name, convert), value) in columns.iter().zip(row) {
        if *convert == Convert::Server {
            continue;
        }
        let json = match value {
            Value::Text(text) => convert.json(text)?,
            Value::Null | Value::Unchanged => Json::Null,
        };
        object.insert(name.clone(), json);
    }
    Ok(())
}

/// The [`Convert::Server`] columns of the rows as JSON objects, by `sql`.
async fn server_objects(
    client: &Client,
    known: &Known,
    sql: &str,
    rows: &[&[Value]],
) -> Result<Vec<Map<String, Json>>, FollowError> {
    let texts: Vec<Json> = rows
        .iter()
        .map(|row| {
            Json::Array(
                known
                    .columns
                    .iter()
                    .zip(row.iter())
                    .filter(|((_, convert), _)| *convert == Convert::Server)
                    .map(|(_, v)| match v {
                        Value::Text(text) => Json::String(text.clone()),
                        Value::Null | Value::Unchanged => Json::Null,
                    })
                    .collect(),
            )
        })
        .collect();
    let argument = Json::Array(texts).to_string();
    let out = client
        .query(sql, &[&argument])
        .await
        .map_err(FollowError::database("turning decoded values into JSON"))?;
    if out.len() != rows.len() {
        return Err(FollowError::Protocol(format!(
            "{} rows turned into {} JSON objects",
            rows.len(),
            out.len()
        )));
    }
    Ok(out
        .iter()
        .map(|r| match r.get::<_, Json>(0) {
            Json::Object(map) => map,
            _ => Map::new(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgtrail_testkit::TestDb;

    #[test]
    fn literals_double_quotes() {
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal(r"a\b"), r"'a\b'");
    }

    /// Each text converted here against the server's `to_jsonb` of it cast
    /// to `type_name` (`type_oid`): the same JSON, and the same jsonb text.
    async fn same_as_server(type_oid: u32, type_name: &str, texts: &[&str]) {
        let db = TestDb::new().await;
        let convert = Convert::of(type_oid);
        assert_ne!(convert, Convert::Server, "{type_name} is converted here");
        for text in texts {
            let here = convert.json(text).expect("a valid value");
            let row = db
                .client
                .query_one(
                    &format!("SELECT to_jsonb($1::text::{type_name}), to_jsonb($1::text::{type_name})::text"),
                    &[text],
                )
                .await
                .expect("to_jsonb");
            let (server, server_text): (Json, String) = (row.get(0), row.get(1));
            assert_eq!(here, server, "{type_name} {text:?}");
            assert_eq!(
                crate::rows::jsonb_text(&here),
                server_text,
                "{type_name} {text:?} printed"
            );
        }
    }

    #[tokio::test]
    async fn integers_are_numbers_as_to_jsonb_prints_them() {
        same_as_server(21, "int2", &["0", "-1", "32767", "-32768"]).await;
        same_as_server(23, "int4", &["0", "7", "-2147483648", "2147483647"]).await;
        same_as_server(
            20,
            "int8",
            &[
                "0",
                "-42",
                "9223372036854775807",
                "-9223372036854775808",
                "9007199254740993",
            ],
        )
        .await;
        assert_eq!(
            Convert::Integer
                .json("9223372036854775807")
                .ok()
                .map(|j| j.to_string()),
            Some("9223372036854775807".to_string())
        );
        assert!(Convert::Integer.json("1.5").is_err());
    }

    #[tokio::test]
    async fn booleans_are_true_and_false() {
        same_as_server(16, "bool", &["t", "f"]).await;
        assert_eq!(Convert::Boolean.json("t").ok(), Some(Json::Bool(true)));
        assert!(Convert::Boolean.json("true").is_err());
    }

    #[tokio::test]
    async fn text_is_a_string_whatever_it_holds() {
        let texts = [
            "",
            "plain",
            "it's \"quoted\"",
            r"back\slash \n not a newline",
            "naïve 日本語 🦀",
            "tab\tnew line\ncarriage\rbell\u{7}escape\u{1b}del\u{7f}",
            "\u{1}\u{1f}",
        ];
        same_as_server(25, "text", &texts).await;
        same_as_server(1043, "varchar", &texts).await;
        same_as_server(1043, "varchar(3)", &["abc", "é"]).await;
    }

    #[test]
    fn nulls_and_unchanged_values_are_null_and_other_types_go_to_the_server() {
        let columns = vec![
            ("i".to_string(), Convert::of(20)),
            ("b".to_string(), Convert::of(16)),
            ("t".to_string(), Convert::of(25)),
            ("n".to_string(), Convert::of(1700)),
        ];
        assert_eq!(columns[3].1, Convert::Server);
        let mut object = Map::new();
        native_into(
            &mut object,
            &columns,
            &[
                Value::Null,
                Value::Unchanged,
                Value::Null,
                Value::Text("1.50".into()),
            ],
        )
        .expect("converted");
        assert_eq!(
            Json::Object(object),
            serde_json::json!({"i": null, "b": null, "t": null})
        );
        // A domain over int4 has its own OID: the server's.
        assert_eq!(Convert::of(16_385), Convert::Server);
    }
}
