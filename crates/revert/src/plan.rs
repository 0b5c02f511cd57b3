//! The plan of a revert, read from `pgtrail.revert_plan`: statements in the
//! order they run, each with its rows, and everything a reviewer must see
//! before saying yes.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Client;

use crate::{Request, RevertError};

/// What one line of a plan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Operation {
    /// A statement: rows the selection created, deleted.
    Delete,
    /// A statement: rows the selection changed, their columns put back.
    Update,
    /// A statement: rows whose key the selection changed, moved back.
    Move,
    /// A statement: rows the selection deleted, inserted whole.
    Insert,
    /// Values of a row that cannot be restored (redacted, erased, ...).
    Lost,
    /// Rows the selection created and deleted again: nothing to do.
    Nothing,
    /// A row left as it is (policy skip), with its conflicts.
    Skip,
    /// A later transaction reverted too (policy cascade), with why.
    Cascade,
    /// A conflict: the revert is refused.
    Conflict,
}

impl Operation {
    fn parse(text: &str) -> Result<Operation, RevertError> {
        Ok(match text {
            "DELETE" => Operation::Delete,
            "UPDATE" => Operation::Update,
            "MOVE" => Operation::Move,
            "INSERT" => Operation::Insert,
            "LOST" => Operation::Lost,
            "NOTHING" => Operation::Nothing,
            "SKIP" => Operation::Skip,
            "CASCADE" => Operation::Cascade,
            "CONFLICT" => Operation::Conflict,
            other => return Err(RevertError::Database(format!("unknown plan operation `{other}`"))),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Delete => "DELETE",
            Operation::Update => "UPDATE",
            Operation::Move => "MOVE",
            Operation::Insert => "INSERT",
            Operation::Lost => "LOST",
            Operation::Nothing => "NOTHING",
            Operation::Skip => "SKIP",
            Operation::Cascade => "CASCADE",
            Operation::Conflict => "CONFLICT",
        }
    }

    /// Whether this line is a statement that changes rows.
    pub fn is_statement(self) -> bool {
        matches!(
            self,
            Operation::Delete | Operation::Update | Operation::Move | Operation::Insert
        )
    }
}

/// What a statement of a plan does (the `kind` column of `pgtrail.revert_plan`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementKind {
    /// Deletes rows the selection created.
    Delete,
    /// Inserts rows the selection deleted.
    Insert,
    /// Puts back the columns the selection changed.
    Restore,
    /// Moves keys back to what they were.
    Move,
    /// Moves keys to a temporary value (rows that take each other's keys);
    /// the same rows are in a later `Unpark`.
    Park,
    /// Moves keys from their temporary value back to what they were.
    Unpark,
    /// Removes copies of rows of a table without key.
    DeleteCopies,
    /// Inserts copies of rows of a table without key.
    InsertCopies,
}

impl StatementKind {
    fn parse(text: &str) -> Result<StatementKind, RevertError> {
        Ok(match text {
            "delete" => StatementKind::Delete,
            "insert" => StatementKind::Insert,
            "restore" => StatementKind::Restore,
            "move" => StatementKind::Move,
            "park" => StatementKind::Park,
            "unpark" => StatementKind::Unpark,
            "delete_copies" => StatementKind::DeleteCopies,
            "insert_copies" => StatementKind::InsertCopies,
            other => {
                return Err(RevertError::Database(format!(
                    "unknown plan statement kind `{other}`"
                )));
            }
        })
    }

    /// Whether the statement's rows are counted as the rows the revert
    /// writes: not when it parks them, as they are counted again when they
    /// go back to their own key.
    pub fn counts_rows(self) -> bool {
        self != StatementKind::Park
    }
}

/// One row of `pgtrail.revert_plan`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanItem {
    /// The statement's place in the order (statements only).
    pub step: Option<i32>,
    /// The recorded changes this line is about (check them with `pgtrail history`).
    pub change_ids: Vec<i64>,
    pub table: Option<String>,
    pub operation: Operation,
    /// Statements: the array of the rows' keys; other lines: the row's key.
    /// (`pgtrail.revert` returns a statement it wrote straight from its
    /// working tables without it, and without `data`.)
    pub key: Option<Value>,
    /// The statement; its rows are bound as `$1` (see `data`).
    pub sql: Option<String>,
    /// The conflict (CONFLICT), the conflicts (SKIP), or why (CASCADE).
    pub conflict: Option<Value>,
    pub rows: Option<i64>,
    /// The columns written (UPDATE, MOVE, INSERT), lost (LOST) or in conflict.
    pub columns: Vec<String>,
    pub note: Option<String>,
    /// The statement's rows, as bound to `$1`.
    pub data: Option<Value>,
    /// What the statement does (statements only; `None` from an install
    /// older than 0.9.0, which has no such column).
    pub kind: Option<StatementKind>,
}

impl PlanItem {
    /// The rows this line adds to the plan's totals: a statement's rows,
    /// but none for a statement that parks rows on a temporary key.
    pub fn counted_rows(&self) -> i64 {
        if !self.operation.is_statement() || self.kind.is_some_and(|k| !k.counts_rows()) {
            return 0;
        }
        self.rows.unwrap_or(0)
    }
}

/// What identifies a statement of a plan: step, operation, table, rows, change ids.
pub type StatementPrint = (Option<i32>, Operation, Option<String>, Option<i64>, Vec<i64>);

/// A whole plan, in order: statements by step, then the other lines.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Plan {
    pub items: Vec<PlanItem>,
}

impl Plan {
    pub fn statements(&self) -> impl Iterator<Item = &PlanItem> {
        self.items.iter().filter(|i| i.operation.is_statement())
    }

    pub fn conflicts(&self) -> impl Iterator<Item = &PlanItem> {
        self.items.iter().filter(|i| i.operation == Operation::Conflict)
    }

    pub fn of(&self, operation: Operation) -> impl Iterator<Item = &PlanItem> {
        self.items.iter().filter(move |i| i.operation == operation)
    }

    /// Rows the revert writes, each once (a row parked on a temporary key
    /// is in two statements).
    pub fn rows(&self) -> i64 {
        self.statements().map(PlanItem::counted_rows).sum()
    }

    /// Rows written per table and operation, each once.
    pub fn per_table(&self) -> BTreeMap<String, BTreeMap<Operation, i64>> {
        let mut out: BTreeMap<String, BTreeMap<Operation, i64>> = BTreeMap::new();
        for statement in self.statements() {
            let table = statement.table.clone().unwrap_or_default();
            *out.entry(table)
                .or_default()
                .entry(statement.operation)
                .or_default() += statement.counted_rows();
        }
        out
    }

    /// Rows written per table, each once.
    pub fn rows_per_table(&self) -> BTreeMap<String, i64> {
        let mut out: BTreeMap<String, i64> = BTreeMap::new();
        for statement in self.statements() {
            *out.entry(statement.table.clone().unwrap_or_default())
                .or_default() += statement.counted_rows();
        }
        out
    }

    /// Every recorded change the statements undo, sorted.
    pub fn change_ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .items
            .iter()
            .filter(|i| {
                i.operation.is_statement() || matches!(i.operation, Operation::Lost | Operation::Nothing)
            })
            .flat_map(|i| i.change_ids.iter().copied())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// What the statements do, to compare a plan shown with the one applied:
    /// the same statements, rows and changes, in the same order.
    pub fn fingerprint(&self) -> Vec<StatementPrint> {
        self.statements()
            .map(|s| (s.step, s.operation, s.table.clone(), s.rows, s.change_ids.clone()))
            .collect()
    }
}

/// The columns both SQL functions return.
const COLUMNS: &str =
    "step, change_ids, table_name, operation, key, sql, conflict, rows, columns, note, data, kind";

/// The same from an install older than 0.9.0, whose functions have no `kind`.
const COLUMNS_BEFORE_KIND: &str = "step, change_ids, table_name, operation, key, sql, conflict, rows, columns, note, data, NULL::text AS kind";

/// The columns to select from `pgtrail.revert_plan` and `pgtrail.revert`
/// in this database (their `kind` is new in 0.9.0).
pub(crate) async fn columns(
    client: &impl tokio_postgres::GenericClient,
) -> Result<&'static str, RevertError> {
    let has_kind: bool = client
        .query_one(
            "SELECT coalesce((SELECT 'kind' = ANY (p.proargnames) FROM pg_catalog.pg_proc AS p \
             WHERE p.oid = pg_catalog.to_regprocedure('pgtrail.revert_plan(jsonb, text)')), true)",
            &[],
        )
        .await
        .map_err(RevertError::from_db)?
        .get(0);
    Ok(if has_kind { COLUMNS } else { COLUMNS_BEFORE_KIND })
}

pub(crate) fn items(rows: &[tokio_postgres::Row]) -> Result<Vec<PlanItem>, RevertError> {
    rows.iter()
        .map(|r| {
            let operation: String = r.try_get(3).map_err(RevertError::from_db)?;
            Ok(PlanItem {
                step: r.try_get(0).map_err(RevertError::from_db)?,
                change_ids: r
                    .try_get::<_, Option<Vec<i64>>>(1)
                    .map_err(RevertError::from_db)?
                    .unwrap_or_default(),
                table: r.try_get(2).map_err(RevertError::from_db)?,
                operation: Operation::parse(&operation)?,
                key: r.try_get(4).map_err(RevertError::from_db)?,
                sql: r.try_get(5).map_err(RevertError::from_db)?,
                conflict: r.try_get(6).map_err(RevertError::from_db)?,
                rows: r.try_get(7).map_err(RevertError::from_db)?,
                columns: r
                    .try_get::<_, Option<Vec<String>>>(8)
                    .map_err(RevertError::from_db)?
                    .unwrap_or_default(),
                note: r.try_get(9).map_err(RevertError::from_db)?,
                data: r.try_get(10).map_err(RevertError::from_db)?,
                kind: r
                    .try_get::<_, Option<String>>(11)
                    .map_err(RevertError::from_db)?
                    .as_deref()
                    .map(StatementKind::parse)
                    .transpose()?,
            })
        })
        .collect()
}

/// The plan of `request`; changes nothing. Conflicts are part of the plan
/// (lines with [`Operation::Conflict`]), not an error.
pub async fn plan(client: &Client, request: &Request) -> Result<Plan, RevertError> {
    let sql = format!(
        "SELECT {} FROM pgtrail.revert_plan($1::jsonb, $2::text)",
        columns(client).await?
    );
    let rows = client
        .query(&sql, &[&request.to_json(), &request.policy.as_str()])
        .await
        .map_err(RevertError::from_db)?;
    Ok(Plan { items: items(&rows)? })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(operation: Operation, kind: StatementKind, table: &str, rows: i64) -> PlanItem {
        PlanItem {
            step: Some(1),
            change_ids: vec![1],
            table: Some(table.into()),
            operation,
            key: None,
            sql: Some(String::new()),
            conflict: None,
            rows: Some(rows),
            columns: Vec::new(),
            note: None,
            data: None,
            kind: Some(kind),
        }
    }

    #[test]
    fn a_parked_row_is_counted_once() {
        let plan = Plan {
            items: vec![
                statement(Operation::Move, StatementKind::Park, "public.codes", 2),
                statement(Operation::Move, StatementKind::Move, "public.codes", 1),
                statement(Operation::Move, StatementKind::Unpark, "public.codes", 2),
                statement(Operation::Update, StatementKind::Restore, "public.users", 4),
            ],
        };
        assert_eq!(plan.rows(), 7);
        assert_eq!(plan.per_table()["public.codes"][&Operation::Move], 3);
        assert_eq!(plan.rows_per_table()["public.users"], 4);
        assert_eq!(StatementKind::parse("unpark").unwrap(), StatementKind::Unpark);
        assert!(StatementKind::parse("shuffle").is_err());
    }
}
