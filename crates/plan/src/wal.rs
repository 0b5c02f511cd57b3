//! What WAL mode needs outside pgtrail's transaction: `wal_level = logical`
//! and this database's logical replication slot, which `apply` creates
//! before its transaction (a slot cannot be created in a transaction that
//! has written), and the state of both as `check` reports it.

use tokio_postgres::GenericClient;

use crate::PlanError;
use crate::drift::TableName;

/// The name of this database's slot, as `pgtrail.wal_slot()` gives it
/// (slots belong to the whole cluster: the name carries the database's OID).
pub const SLOT_NAME_SQL: &str =
    "SELECT 'pgtrail_' || oid::text FROM pg_database WHERE datname = current_database()";

/// Creates the publication pgtrail (empty) when it is missing. It must be
/// committed before the slot is created: pgoutput looks the publication up
/// as of each decoded change, and fails on changes made before it existed.
pub const CREATE_PUBLICATION_SQL: &str = "DO $pgtrail_publication$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_publication WHERE pubname = 'pgtrail') THEN
        CREATE PUBLICATION pgtrail WITH (publish = 'insert, update, delete, truncate', publish_via_partition_root = true);
    END IF;
EXCEPTION WHEN duplicate_object THEN
    NULL;  -- created at the same moment by another apply
END $pgtrail_publication$";

/// Creates the slot when it is missing; safe to run twice and from two
/// places at once. Printed by `pgtrail sql` before the transaction.
pub const CREATE_SLOT_SQL: &str = "SELECT pg_create_logical_replication_slot(s.name, 'pgoutput')
FROM (SELECT 'pgtrail_' || oid::text AS name FROM pg_database WHERE datname = current_database()) AS s
WHERE NOT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = s.name)";

/// The slot as `pgtrail.wal_status()` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotStatus {
    /// Whether a follower is reading it right now.
    pub active: bool,
    /// WAL written since the last transaction the follower wrote, in bytes.
    pub lag_bytes: i64,
    /// WAL the slot keeps from being recycled, in bytes.
    pub retained_bytes: i64,
    /// `reserved`, `extended`, `unreserved` or `lost` (pg_replication_slots).
    pub wal_status: Option<String>,
    /// Seconds since the last transaction the follower wrote committed,
    /// while the slot holds more (else 0).
    pub lag_seconds: f64,
}

/// Context messages `pgtrail follow` ignored because they were not signed
/// for their transaction (forged, or copied from another one), as
/// `pgtrail.wal_rejected` holds them for this database's slot.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedMessages {
    /// Ignored since the install.
    pub total: i64,
    /// Ignored since they were last acknowledged (`pgtrail wal acknowledge`).
    pub unacknowledged: i64,
    /// The last one's transaction (the trail's txid), WAL position, the
    /// commit time of its transaction, and why it was ignored.
    pub last_txid: Option<i64>,
    pub last_lsn: Option<String>,
    pub last_committed_at: Option<chrono::DateTime<chrono::Utc>>,
    pub last_reason: Option<String>,
    /// When they were last acknowledged.
    pub acknowledged_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// WAL mode's state in the server.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WalState {
    /// The server's `wal_level`.
    pub wal_level: String,
    /// This database's slot name.
    pub slot_name: String,
    /// The slot, `None` when it does not exist.
    pub slot: Option<SlotStatus>,
    /// WAL-mode tables that lack part of their setup (not in the
    /// publication, a partition without REPLICA IDENTITY FULL), with what.
    pub unready: Vec<(TableName, String)>,
    /// Context messages the follower ignored; `None` when it never did
    /// (or the install predates their record).
    pub rejected: Option<RejectedMessages>,
}

impl WalState {
    pub async fn load(client: &impl GenericClient) -> Result<WalState, PlanError> {
        let read = |context: &'static str| PlanError::database(context);
        let row = client
            .query_one(
                &format!("SELECT current_setting('wal_level'), ({SLOT_NAME_SQL}), to_regprocedure('pgtrail.wal_status()') IS NOT NULL"),
                &[],
            )
            .await
            .map_err(read("reading wal_level"))?;
        let mut state = WalState {
            wal_level: row.get(0),
            slot_name: row.get(1),
            ..WalState::default()
        };
        let has_status: bool = row.get(2);
        if has_status {
            state.slot = client
                .query_opt(
                    "SELECT active, coalesce(lag_bytes, 0), coalesce(retained_bytes, 0), wal_status, coalesce(lag_seconds, 0)
                     FROM pgtrail.wal_status() WHERE slot IS NOT NULL",
                    &[],
                )
                .await
                .map_err(read("reading the logical replication slot"))?
                .map(|r| SlotStatus {
                    active: r.get::<_, Option<bool>>(0).unwrap_or(false),
                    lag_bytes: r.get(1),
                    retained_bytes: r.get(2),
                    wal_status: r.get(3),
                    lag_seconds: r.get(4),
                });
            state.unready = client
                .query(
                    "SELECT a.table_schema, a.table_name,
                            CASE WHEN NOT pgtrail._wal_published(r.rel) THEN 'is not in the publication pgtrail'
                                 ELSE 'has a partition without REPLICA IDENTITY FULL' END
                     FROM pgtrail.audited_table AS a
                     CROSS JOIN LATERAL (SELECT pgtrail._audited_rel(a.id) AS rel) AS r
                     WHERE a.capture_mode = 'wal' AND a.detached_at IS NULL AND r.rel IS NOT NULL
                       AND (NOT pgtrail._wal_published(r.rel)
                            OR EXISTS (SELECT FROM pg_partition_tree(r.rel) AS p JOIN pg_class AS c ON c.oid = p.relid
                                       WHERE c.relkind = 'r' AND c.relreplident <> 'f')
                            OR (SELECT relreplident FROM pg_class WHERE oid = r.rel) NOT IN ('f', 'd')
                               AND (SELECT relkind FROM pg_class WHERE oid = r.rel) = 'r')
                     ORDER BY 1, 2",
                    &[],
                )
                .await
                .map_err(read("reading the WAL-mode tables"))?
                .iter()
                .map(|r| ((r.get(0), r.get(1)), r.get(2)))
                .collect();
            state.rejected = load_rejected(client).await?;
        }
        Ok(state)
    }
}

/// What `pgtrail.wal_rejected` holds for this database's slot.
async fn load_rejected(client: &impl GenericClient) -> Result<Option<RejectedMessages>, PlanError> {
    let read = || PlanError::database("reading the context messages pgtrail follow ignored");
    let recorded: bool = client
        .query_one("SELECT to_regclass('pgtrail.wal_rejected') IS NOT NULL", &[])
        .await
        .map_err(read())?
        .get(0);
    if !recorded {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "SELECT rejected, rejected - acknowledged, last_txid, last_lsn::text, last_committed_at, last_reason,
                    acknowledged_at
             FROM pgtrail.wal_rejected WHERE slot = pgtrail.wal_slot() AND rejected > 0",
            &[],
        )
        .await
        .map_err(read())?;
    Ok(row.map(|r| RejectedMessages {
        total: r.get(0),
        unacknowledged: r.get(1),
        last_txid: r.get(2),
        last_lsn: r.get(3),
        last_committed_at: r.get(4),
        last_reason: r.get(5),
        acknowledged_at: r.get(6),
    }))
}

/// Makes sure WAL mode can work before `apply` moves tables into it: the
/// server must run with `wal_level = logical`, and this database's slot is
/// created when missing (outside any transaction). Returns whether it
/// created the slot.
pub async fn ensure_slot(client: &impl GenericClient) -> Result<bool, PlanError> {
    let level: String = client
        .query_one("SELECT current_setting('wal_level')", &[])
        .await
        .map_err(PlanError::database("reading wal_level"))?
        .get(0);
    if level != "logical" {
        return Err(PlanError::WalLevel { level });
    }
    client
        .batch_execute(CREATE_PUBLICATION_SQL)
        .await
        .map_err(PlanError::database("creating the publication pgtrail"))?;
    let mut attempt = 1;
    loop {
        match client.query(CREATE_SLOT_SQL, &[]).await {
            Ok(created) => return Ok(!created.is_empty()),
            Err(error) if attempt < SLOT_ATTEMPTS && is_internal_error(&error) => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
            }
            Err(error) => return Err(PlanError::Slot { error }),
        }
    }
}

/// How many times [`ensure_slot`] tries to create the slot when the server
/// fails with an internal error.
const SLOT_ATTEMPTS: u64 = 3;

/// Whether the server failed with an internal error (SQLSTATE XX000), not a
/// refusal. PostgreSQL 14, creating a logical slot while other
/// transactions write, has been seen to fail once with "buffer 1 is not
/// owned by resource owner TopTransaction" and succeed when run again:
/// the failed attempt leaves no slot (an ephemeral slot is dropped on
/// error) and the statement creates the slot only when it is missing, so
/// trying again is safe.
fn is_internal_error(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&tokio_postgres::error::SqlState::INTERNAL_ERROR)
}
