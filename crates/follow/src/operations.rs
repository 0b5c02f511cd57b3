//! WAL mode's operations on the signing of context messages:
//! `pgtrail wal rotate-key` ([`rotate_key`]) and `pgtrail wal acknowledge`
//! ([`acknowledge_rejected`]).

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::FollowError;
use crate::follower::parse_lsn;

/// What [`rotate_key`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// The WAL position below which the replaced key (and any key still
    /// retiring from an earlier rotation) verifies; `None` when
    /// transactions open at the rotation had not all ended within the wait:
    /// the replaced key then verifies at any position until a later
    /// rotation retires it.
    pub retired_at: Option<String>,
    /// Transactions open at the rotation still running when the wait ended.
    pub still_open: usize,
    /// Retired keys dropped: the follower had passed their position.
    pub dropped: i32,
}

/// How often [`rotate_key`] looks whether the transactions it waits for
/// have ended.
const POLL: Duration = Duration::from_millis(100);

/// Replaces the key that signs context messages, keeping the old one valid
/// for the messages already signed with it.
///
/// 1. In its own transaction (`pgtrail.wal_rotate_key()`): the current key
///    becomes a retiring one (valid at any position) and a new key signs
///    from the commit on.
/// 2. A transaction open at that commit may have read the old key (a
///    READ COMMITTED statement before the commit, a REPEATABLE READ
///    snapshot) and may still emit a message signed with it: waits, up to
///    `wait`, until every transaction of this database open then has ended
///    (their virtual transaction ids, as `CREATE INDEX CONCURRENTLY`
///    waits).
/// 3. Then no message signed with a retiring key can come after the WAL
///    position now: `pgtrail.wal_retire_keys()` makes them valid only
///    below it. The follower, wherever it is in the slot, verifies what was
///    signed before; a message signed with a retired key later does not
///    verify.
pub async fn rotate_key(client: &mut Client, wait: Duration) -> Result<Rotation, FollowError> {
    let db = client
        .transaction()
        .await
        .map_err(FollowError::database("starting the key's rotation"))?;
    let dropped: i32 = db
        .query_one("SELECT pgtrail.wal_rotate_key()", &[])
        .await
        .map_err(FollowError::database("rotating the key of context messages"))?
        .get(0);
    db.commit().await.map_err(FollowError::database(
        "committing the new key of context messages",
    ))?;
    let open: Vec<String> = client
        .query(
            "SELECT l.virtualxid FROM pg_locks AS l
             JOIN pg_stat_activity AS a ON a.pid = l.pid
             WHERE l.locktype = 'virtualxid' AND l.granted AND l.pid <> pg_backend_pid()
               AND a.datname = current_database() AND l.virtualxid IS NOT NULL",
            &[],
        )
        .await
        .map_err(FollowError::database(
            "listing the transactions open at the rotation",
        ))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let started = Instant::now();
    let mut still_open = open.len();
    while still_open > 0 {
        still_open = usize::try_from(
            client
                .query_one(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'virtualxid' AND granted AND virtualxid = ANY($1)",
                    &[&open],
                )
                .await
                .map_err(FollowError::database("waiting for the transactions open at the rotation"))?
                .get::<_, i64>(0),
        )
        .unwrap_or(usize::MAX);
        if still_open == 0 || started.elapsed() >= wait {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let retired_at = if still_open == 0 {
        client
            .query_one("SELECT pgtrail.wal_retire_keys()::text", &[])
            .await
            .map_err(FollowError::database("retiring the replaced key"))?
            .get::<_, Option<String>>(0)
            .filter(|t| parse_lsn(t).is_some())
    } else {
        None
    };
    Ok(Rotation {
        retired_at,
        still_open,
        dropped,
    })
}

/// Marks the context messages the follower ignored so far as looked into
/// (`pgtrail check` then reports only later ones). Returns how many were
/// newly acknowledged.
pub async fn acknowledge_rejected(client: &Client) -> Result<i64, FollowError> {
    let installed: bool = client
        .query_one(
            "SELECT to_regprocedure('pgtrail.wal_acknowledge_rejected()') IS NOT NULL",
            &[],
        )
        .await
        .map_err(FollowError::database("looking for pgtrail"))?
        .get(0);
    if !installed {
        return Err(FollowError::NotInstalled);
    }
    Ok(client
        .query_one("SELECT pgtrail.wal_acknowledge_rejected()", &[])
        .await
        .map_err(FollowError::database(
            "acknowledging the context messages ignored",
        ))?
        .get(0))
}
