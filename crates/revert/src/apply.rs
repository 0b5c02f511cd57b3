//! Applying a revert: `pgtrail.revert` in one transaction of its own, as
//! the actor given (else the connection's user), committed only when the
//! statements it ran are those of the plan the user saw.

use serde::Serialize;
use tokio_postgres::Client;

use crate::plan::{Plan, columns, items};
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
    let plan = Plan { items: items(&rows)? };
    if let Some(expected) = options.expected
        && expected.fingerprint() != plan.fingerprint()
    {
        tx.rollback().await.map_err(RevertError::from_db)?;
        return Err(RevertError::Changed(
            "the trail changed since the plan was made: the revert would now do something else".into(),
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
