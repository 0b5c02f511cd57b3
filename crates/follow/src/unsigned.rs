//! WAL-mode transactions whose changes came without a signed context
//! message (migration 0017): the context trigger emits one before each
//! transaction's first change unless its transaction-local mark says it
//! has, and any role can set that mark. The follower records each such
//! transaction in `pgtrail.wal_unsigned` as it writes its changes
//! ([`crate::follower`]); `pgtrail check` shows them ([`summary`]).

use tokio_postgres::Client;

use crate::FollowError;

/// What `pgtrail.wal_unsigned` holds: how many transactions, and the latest.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UnsignedSummary {
    pub transactions: i64,
    pub changes: i64,
    /// The trail's txid and the commit time (RFC 3339) of the latest.
    pub latest: Option<(i64, String)>,
}

/// The transactions recorded without a signed context message; `None`
/// when the installation has no `pgtrail.wal_unsigned` (before 0.10.0).
pub async fn summary(client: &Client) -> Result<Option<UnsignedSummary>, FollowError> {
    let row = client
        .query_one("SELECT to_regclass('pgtrail.wal_unsigned') IS NOT NULL", &[])
        .await
        .map_err(FollowError::database("looking for pgtrail.wal_unsigned"))?;
    if !row.get::<_, bool>(0) {
        return Ok(None);
    }
    let row = client
        .query_one(
            "SELECT count(*), coalesce(sum(changes), 0)::bigint,
                    (array_agg(txid ORDER BY committed_at DESC, txid DESC))[1],
                    to_char(max(committed_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
             FROM pgtrail.wal_unsigned",
            &[],
        )
        .await
        .map_err(FollowError::database(
            "reading pgtrail.wal_unsigned (readable by pgtrail's owner role)",
        ))?;
    let latest = row.get::<_, Option<i64>>(2).zip(row.get::<_, Option<String>>(3));
    Ok(Some(UnsignedSummary {
        transactions: row.get(0),
        changes: row.get(1),
        latest,
    }))
}
