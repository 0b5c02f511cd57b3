//! Applying a revert: `pgtrail.revert` in one transaction of its own, as
//! the actor given (else the connection's user), committed only when the
//! statements it ran are those of the plan the user saw.

use serde::Serialize;
use tokio_postgres::Client;

use crate::plan::{Plan, PlanItem, columns, items};
use crate::{Request, RevertError, progress};

/// How to apply.
#[derive(Debug, Clone)]
pub struct ApplyOptions<'a> {
    /// Why (required; kept with the revert's changes).
    pub reason: String,
    /// Who reverts (actor name); default: the context of the connection,
    /// else its database user.
    pub actor: Option<String>,
    /// The plan that was shown: the revert is rolled back if it would do
    /// anything else.
    pub expected: Option<&'a Plan>,
}

/// What a revert did.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    /// The transaction of the revert (its changes carry it; `pgtrail tx`).
    pub txid: i64,
    pub plan: Plan,
}

/// Applies `request` in a transaction of its own. Sends progress notices
/// (see [`progress`]) while it works. Nothing is changed on any error.
pub async fn apply(
    client: &mut Client,
    request: &Request,
    options: &ApplyOptions<'_>,
) -> Result<Applied, RevertError> {
    apply_if(client, request, options, |_| true).await
}

/// [`apply`], committed only when `accept` also takes the plan the revert
/// ran (else rolled back, [`RevertError::Changed`]): for a caller that
/// holds what identifies the plan shown rather than the plan itself (the
/// server's `plan_id`), so that the revert is planned once, by
/// `pgtrail.revert`, and not first again to compare. The statements
/// written straight from the plan's working tables then carry no rows
/// (unless `options.expected` gives them).
pub async fn apply_if(
    client: &mut Client,
    request: &Request,
    options: &ApplyOptions<'_>,
    accept: impl FnOnce(&Plan) -> bool,
) -> Result<Applied, RevertError> {
    if options.reason.trim().is_empty() {
        return Err(RevertError::Invalid {
            message: "a revert needs a reason".into(),
            hint: Some("say why, e.g. --reason 'ticket #4211: undo the batch script'".into()),
        });
    }
    let tx = client.transaction().await.map_err(RevertError::from_db)?;
    tx.execute("SELECT set_config($1, 'on', true)", &[&progress::SETTING])
        .await
        .map_err(RevertError::from_db)?;
    if let Some(actor) = &options.actor {
        tx.execute("SELECT pgtrail.set_context(actor_name => $1)", &[actor])
            .await
            .map_err(RevertError::from_db)?;
    }
    let sql = format!(
        "SELECT {} FROM pgtrail.revert($1::jsonb, $2::text, $3::text)",
        columns(&tx).await?
    );
    let rows = tx
        .query(
            &sql,
            &[&request.to_json(), &request.policy.as_str(), &options.reason],
        )
        .await
        .map_err(RevertError::from_db)?;
    let mut plan = Plan { items: items(&rows)? };
    if let Some(expected) = options.expected {
        if expected.fingerprint() != plan.fingerprint() {
            tx.rollback().await.map_err(RevertError::from_db)?;
            return Err(RevertError::Changed(
                "the trail changed since the plan was made: the revert would now do something else".into(),
            ));
        }
        with_rows_of(&mut plan, expected);
    }
    if !accept(&plan) {
        tx.rollback().await.map_err(RevertError::from_db)?;
        return Err(RevertError::Changed(
            "the trail changed since the plan was shown: the revert would now do something else".into(),
        ));
    }
    let txid: i64 = tx
        .query_one("SELECT txid_current()", &[])
        .await
        .map_err(RevertError::from_db)?
        .get(0);
    tx.commit().await.map_err(RevertError::from_db)?;
    Ok(Applied { txid, plan })
}

/// Gives the statements `pgtrail.revert` wrote straight from its working
/// tables (it returns them without their rows: no `data`, no keys) the rows
/// of the same statements of the plan shown, whose fingerprint is theirs.
fn with_rows_of(plan: &mut Plan, shown: &Plan) {
    let shown: Vec<&PlanItem> = shown.statements().collect();
    for (done, shown) in plan
        .items
        .iter_mut()
        .filter(|i| i.operation.is_statement())
        .zip(shown)
    {
        if done.data.is_none() {
            done.data.clone_from(&shown.data);
            done.key.clone_from(&shown.key);
        }
    }
}
