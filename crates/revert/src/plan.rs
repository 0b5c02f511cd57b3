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

    /// Rows the statements write.
    pub fn rows(&self) -> i64 {
        self.statements().filter_map(|s| s.rows).sum()
    }

    /// Rows written per table and operation.
    pub fn per_table(&self) -> BTreeMap<String, BTreeMap<Operation, i64>> {
        let mut out: BTreeMap<String, BTreeMap<Operation, i64>> = BTreeMap::new();
        for statement in self.statements() {
            let table = statement.table.clone().unwrap_or_default();
            *out.entry(table)
                .or_default()
                .entry(statement.operation)
                .or_default() += statement.rows.unwrap_or(0);
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
pub(crate) const COLUMNS: &str =
    "step, change_ids, table_name, operation, key, sql, conflict, rows, columns, note, data";

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
            })
        })
        .collect()
}

/// The plan of `request`; changes nothing. Conflicts are part of the plan
/// (lines with [`Operation::Conflict`]), not an error.
pub async fn plan(client: &Client, request: &Request) -> Result<Plan, RevertError> {
    let sql = format!("SELECT {COLUMNS} FROM pgtrail.revert_plan($1::jsonb, $2::text)");
    let rows = client
        .query(&sql, &[&request.to_json(), &request.policy.as_str()])
        .await
        .map_err(RevertError::from_db)?;
    Ok(Plan { items: items(&rows)? })
}
