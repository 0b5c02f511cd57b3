//! One page of a transaction's changes, for `pgtrail tx` and the
//! transaction page of `pgtrail serve`: a transaction may hold hundreds of
//! thousands of changes, so they are read a page at a time, in id order
//! (the order it made them).

use serde_json::Value;
use tokio_postgres::Client;

/// A page of a transaction's changes (rows of `pgtrail.changes` as JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct TransactionPage {
    pub changes: Vec<Value>,
    /// The transaction's changes, in all.
    pub total: i64,
    /// Its changes before this page.
    pub before: i64,
    /// The id to continue after when there are more (the last one shown).
    pub next: Option<i64>,
}

/// The `limit` changes of transaction `txid` after change `after` (0: from
/// its first).
///
/// The page's ids are picked from `pgtrail.change` alone, within the
/// transaction's span of ids (bounds that keep a plan walking the id
/// index from straying outside the transaction), and only they are read
/// through `pgtrail.changes`: a page costs its own rows' joins, not the
/// whole transaction's.
pub async fn transaction_page(
    client: &Client,
    txid: i64,
    limit: i64,
    after: i64,
) -> Result<TransactionPage, tokio_postgres::Error> {
    let counted = client
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE c.id <= $2::bigint),
                    coalesce(min(c.id), 0), coalesce(max(c.id), 0)
             FROM pgtrail.change AS c WHERE c.txid = $1::bigint",
            &[&txid, &after],
        )
        .await?;
    let (total, before, first, last): (i64, i64, i64, i64) =
        (counted.get(0), counted.get(1), counted.get(2), counted.get(3));
    let limit = limit.max(0);
    let mut changes = client
        .query(
            "SELECT to_jsonb(v) FROM pgtrail.changes AS v
             WHERE v.id = ANY (ARRAY(SELECT c.id FROM pgtrail.change AS c
                                     WHERE c.txid = $1::bigint AND c.id >= $2::bigint AND c.id <= $3::bigint
                                     ORDER BY c.id LIMIT $4::bigint))
             ORDER BY v.id",
            &[
                &txid,
                &after.saturating_add(1).max(first),
                &last,
                // One more than the page, to know whether there is a next one.
                &limit.saturating_add(1),
            ],
        )
        .await?
        .iter()
        .map(|row| row.try_get::<_, Value>(0))
        .collect::<Result<Vec<Value>, _>>()?;
    let next = if changes.len() as i64 > limit {
        changes.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        changes.last().and_then(|c| c["id"].as_i64())
    } else {
        None
    };
    Ok(TransactionPage {
        changes,
        total,
        before,
        next,
    })
}
