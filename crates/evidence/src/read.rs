//! Builds a [`Report`] from the trail: one query per part, each bounded by
//! the period (`$1`, `$2`: RFC 3339 text or NULL).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_postgres::GenericClient;
use tokio_postgres::types::ToSql;

use crate::EvidenceError;
use crate::report::{Change, Completeness, Count, Ddl, Gap, Kind, Period, Report, Seal, Unrecorded};

/// The roles a privileged report judges by (`[report]` in pgtrail.toml).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Roles {
    pub application_roles: Vec<String>,
    pub migration_roles: Vec<String>,
}

impl Roles {
    fn expected(&self, role: &str) -> bool {
        self.application_roles
            .iter()
            .chain(&self.migration_roles)
            .any(|r| r == role)
    }
}

/// Whose changes a subject report lists.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    /// One row: its audited table and its key (`{"id": 42}`).
    Row {
        schema: String,
        table: String,
        pk: Value,
    },
    /// Every row that held `value` in one of `columns`, in any audited
    /// table (`[report] subject_columns`).
    Value { columns: Vec<String>, value: String },
}

impl Subject {
    fn describe(&self) -> String {
        match self {
            Subject::Row { schema, table, pk } => format!("{schema}.{table} {pk}"),
            Subject::Value { columns, value } => format!("{} = {value}", columns.join(" | ")),
        }
    }
}

/// The columns of a listed change, as [`Change`] reads them.
const CHANGE_COLUMNS: &str =
    "v.id, v.txid, v.changed_at, format('%s.%s', v.table_schema, v.table_name) AS \"table\",
        v.op, v.pk, v.old_values, v.new_values, v.actor_id, v.actor_name, v.actor_type, v.db_user,
        v.context ->> 'migration' AS migration, v.reason";

/// The period's condition on the column `column`.
fn in_period(column: &str) -> String {
    format!(
        "($1::text IS NULL OR {column} >= $1::text::timestamptz) AND ($2::text IS NULL OR {column} < $2::text::timestamptz)"
    )
}

/// Rows of `SELECT to_jsonb(x) FROM (...) AS x`, deserialized.
async fn rows<T: for<'de> Deserialize<'de>>(
    client: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    context: &'static str,
) -> Result<Vec<T>, EvidenceError> {
    let rows = client
        .query(sql, params)
        .await
        .map_err(EvidenceError::database(context))?;
    rows.iter()
        .map(|row| {
            let value: Value = row.get(0);
            serde_json::from_value(value).map_err(|e| EvidenceError::Encode {
                what: context,
                source: Box::new(e),
            })
        })
        .collect()
}

/// Builds the report of `kind` over `period`. A subject report needs
/// `subject`.
pub async fn build(
    client: &impl GenericClient,
    kind: Kind,
    period: &Period,
    roles: &Roles,
    subject: Option<&Subject>,
) -> Result<Report, EvidenceError> {
    require_installed(client).await?;
    let head = client
        .query_one(
            "SELECT to_jsonb(clock_timestamp())#>>'{}', current_database(),
                    (SELECT to_jsonb($1::text::timestamptz)#>>'{}'), (SELECT to_jsonb($2::text::timestamptz)#>>'{}')",
            &[&period.since, &period.until],
        )
        .await
        .map_err(EvidenceError::database("reading the period"))?;
    let period = Period {
        since: head.get(2),
        until: head.get(3),
    };
    let mut report = Report {
        kind,
        generated_at: head.get(0),
        period,
        database: head.get(1),
        subject: subject.map(Subject::describe),
        roles: None,
        changes: Vec::new(),
        ddl: Vec::new(),
        erasures: Vec::new(),
        by_table: Vec::new(),
        by_op: Vec::new(),
        by_actor_type: Vec::new(),
        completeness: None,
        access: None,
    };
    let p = [&report.period.since as &(dyn ToSql + Sync), &report.period.until];
    match kind {
        Kind::Population => {
            report.changes = changes(client, &p, "true", &[]).await?;
            report.by_table = count(&report.changes, |c| c.table.clone());
            report.by_op = count(&report.changes, |c| c.op.clone());
            report.by_actor_type = count(&report.changes, |c| {
                c.actor_type.clone().unwrap_or_else(|| "(none)".to_string())
            });
            report.completeness = Some(completeness(client, &p, &report.changes).await?);
        }
        Kind::Privileged => {
            report.roles = Some(roles.clone());
            let gaps = gaps(client, &p).await?;
            let mut listed = Vec::new();
            for mut change in changes(client, &p, "true", &[]).await? {
                change.findings = change_findings(&change, roles, &gaps);
                if !change.findings.is_empty() {
                    listed.push(change);
                }
            }
            report.changes = listed;
            for mut ddl in ddl(client, &p, DDL_ACTIONS).await? {
                if !ddl.db_user.is_empty() && !roles.expected(&ddl.db_user) {
                    ddl.findings.push(format!(
                        "DDL by `{}`, not an application or migration role",
                        ddl.db_user
                    ));
                }
                if ddl.capture.as_deref() == Some("off") {
                    ddl.findings.push("left capture off".to_string());
                }
                if !ddl.findings.is_empty() {
                    report.ddl.push(ddl);
                }
            }
        }
        Kind::Schema => {
            report.ddl = ddl(client, &p, DDL_ACTIONS).await?;
            for ddl in &mut report.ddl {
                if ddl.migration.is_none() {
                    ddl.findings
                        .push("unmatched: no migration in its transaction's context".to_string());
                }
            }
        }
        Kind::Access => {
            report.ddl = ddl(client, &p, "'access'").await?;
            report.access = Some(crate::access::snapshot_and_diff(client).await?);
        }
        Kind::Subject => {
            let Some(subject) = subject else {
                return Err(EvidenceError::Usage(
                    "a subject report needs a subject\n  help: `pgtrail report --kind subject TABLE KEY`, or `--subject VALUE` with `subject_columns` in [report]"
                        .to_string(),
                ));
            };
            report.changes = match subject {
                Subject::Row { schema, table, pk } => {
                    changes(
                        client,
                        &p,
                        "v.table_schema = $3 AND v.table_name = $4
                         AND (v.pk = $5::jsonb OR EXISTS (SELECT FROM pgtrail.change AS o WHERE o.id = v.id AND o.old_pk = $5::jsonb))",
                        &[schema, table, pk],
                    )
                    .await?
                }
                Subject::Value { columns, value } => {
                    if columns.is_empty() {
                        return Err(EvidenceError::Usage(
                            "no subject columns are configured\n  help: add `subject_columns = [\"user_id\", ...]` to [report] in pgtrail.toml, or name one row: `pgtrail report --kind subject TABLE KEY`"
                                .to_string(),
                        ));
                    }
                    // Every row that ever held the value, then all of its
                    // changes (also those after its values were erased).
                    changes(
                        client,
                        &p,
                        "(v.table_schema, v.table_name, v.pk) IN (
                             SELECT w.table_schema, w.table_name, w.pk FROM pgtrail.changes AS w
                             WHERE EXISTS (SELECT FROM unnest($3::text[]) AS col
                                           WHERE w.pk ->> col = $4 OR w.old_values ->> col = $4
                                              OR w.new_values ->> col = $4))",
                        &[columns, value],
                    )
                    .await?
                }
            };
            let ids: Vec<i64> = report.changes.iter().map(|c| c.id).collect();
            report.erasures = rows(
                client,
                "SELECT to_jsonb(x) FROM (
                     SELECT e.id, e.erased_at, e.db_user, format('%s.%s', a.table_schema, a.table_name) AS \"table\",
                            e.pk, e.columns, e.reason, e.change_ids
                     FROM pgtrail.erasure AS e JOIN pgtrail.audited_table AS a ON a.id = e.table_id
                     WHERE e.change_ids && $1::bigint[]) AS x
                 ORDER BY x.id",
                &[&ids],
                "reading the erasures",
            )
            .await?;
        }
    }
    Ok(report)
}

/// Fails with [`EvidenceError::NotInstalled`] unless the trail and its
/// seal tables exist.
async fn require_installed(client: &impl GenericClient) -> Result<(), EvidenceError> {
    let installed: bool = client
        .query_one(
            "SELECT to_regclass('pgtrail.seal') IS NOT NULL AND to_regclass('pgtrail.changes') IS NOT NULL",
            &[],
        )
        .await
        .map_err(EvidenceError::database("looking for pgtrail"))?
        .get(0);
    if installed {
        Ok(())
    } else {
        Err(EvidenceError::NotInstalled)
    }
}

/// The changes of the period that also meet `condition` (on `v`, the
/// `pgtrail.changes` view; its parameters from `$3`), in id order.
async fn changes(
    client: &impl GenericClient,
    period: &[&(dyn ToSql + Sync); 2],
    condition: &str,
    extra: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Change>, EvidenceError> {
    let sql = format!(
        "SELECT to_jsonb(x) FROM (SELECT {CHANGE_COLUMNS} FROM pgtrail.changes AS v WHERE {} AND {condition}) AS x
         ORDER BY x.id",
        in_period("v.changed_at")
    );
    let params: Vec<&(dyn ToSql + Sync)> = period.iter().chain(extra).copied().collect();
    rows(client, &sql, &params, "reading the changes").await
}

/// Counts of `changes` by `key`, most first.
fn count(changes: &[Change], key: impl Fn(&Change) -> String) -> Vec<Count> {
    let mut counts: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
    for change in changes {
        *counts.entry(key(change)).or_default() += 1;
    }
    let mut counts: Vec<Count> = counts
        .into_iter()
        .map(|(key, changes)| Count { key, changes })
        .collect();
    counts.sort_by(|a, b| b.changes.cmp(&a.changes).then_with(|| a.key.cmp(&b.key)));
    counts
}

/// Why a privileged report lists a change (empty: it does not).
fn change_findings(change: &Change, roles: &Roles, gaps: &[Gap]) -> Vec<String> {
    let mut findings = Vec::new();
    match change.db_user.as_deref() {
        Some(user) if !roles.expected(user) => {
            findings.push(format!("by `{user}`, not an application or migration role"))
        }
        None => findings.push("no transaction record (database user unknown)".to_string()),
        Some(_) => {}
    }
    if change.actor_id.is_none() && change.actor_name.is_none() && change.migration.is_none() {
        findings.push("no actor".to_string());
    }
    let at = moment(&change.changed_at);
    for gap in gaps {
        let after_start = at >= moment(&gap.off_from);
        let before_end = gap.off_until.as_deref().is_none_or(|until| at < moment(until));
        if after_start && before_end {
            findings.push(format!("during a capture gap of {}", gap.table));
        }
    }
    findings
}

/// A moment as PostgreSQL's JSON prints it (RFC 3339), for comparing.
fn moment(text: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(text).ok()
}

/// Capture gaps that overlap the period.
async fn gaps(
    client: &impl GenericClient,
    period: &[&(dyn ToSql + Sync); 2],
) -> Result<Vec<Gap>, EvidenceError> {
    rows(
        client,
        "SELECT to_jsonb(x) FROM (
             SELECT format('%s.%s', g.table_schema, g.table_name) AS \"table\", g.off_from, g.off_until,
                    g.turned_off_by, g.turned_off_with
             FROM pgtrail.capture_gaps AS g
             WHERE ($1::text IS NULL OR g.off_until IS NULL OR g.off_until > $1::text::timestamptz)
               AND ($2::text IS NULL OR g.off_from < $2::text::timestamptz)) AS x
         ORDER BY x.off_from",
        period,
        "reading the capture gaps",
    )
    .await
}

/// The `ddl_event` actions of schema changes.
const DDL_ACTIONS: &str = "'ddl', 'table_dropped', 'auto_attached'";

/// DDL on audited tables in the period (pgtrail's own attach and detach
/// left out), with the migration and actor of its transaction: from the
/// context the DDL watch recorded, else from a transaction record of the
/// same transaction (in any of the first 16 eras). `actions`: the
/// `ddl_event` actions listed, as SQL literals.
async fn ddl(
    client: &impl GenericClient,
    period: &[&(dyn ToSql + Sync); 2],
    actions: &str,
) -> Result<Vec<Ddl>, EvidenceError> {
    let sql = format!(
        "SELECT to_jsonb(x) FROM (
             SELECT e.id, e.at, e.db_user, e.command_tag, e.object_identity AS object,
                    (SELECT format('%s.%s', a.table_schema, a.table_name) FROM pgtrail.audited_table AS a
                     WHERE a.id = (e.detail ->> 'table_id')::integer) AS \"table\",
                    e.detail ->> 'command' AS command, e.detail ->> 'capture' AS capture,
                    coalesce(e.detail -> 'context' ->> 'migration', t.context ->> 'migration') AS migration,
                    coalesce(e.detail -> 'context' ->> 'actor_name', e.detail -> 'context' ->> 'actor_id',
                             t.actor_name, t.actor_id) AS actor
             FROM pgtrail.ddl_event AS e
             LEFT JOIN LATERAL (
                 SELECT x.context, x.actor_name, x.actor_id FROM pgtrail.transaction AS x
                 WHERE x.txid IN (SELECT e.txid + (n::bigint << 48) FROM generate_series(0, 15) AS n)
                 ORDER BY x.ctx DESC LIMIT 1) AS t ON true
             WHERE e.action IN ({actions}) AND (e.action = 'access' OR e.detail ? 'table_id')
               AND NOT coalesce((e.detail ->> 'by_pgtrail')::boolean, false)
               AND {}) AS x
         ORDER BY x.id",
        in_period("e.at")
    );
    rows(client, &sql, period, "reading the DDL").await
}

/// The completeness block of a population: seals, gaps, reconcile, and
/// where the trail begins.
async fn completeness(
    client: &impl GenericClient,
    period: &[&(dyn ToSql + Sync); 2],
    changes: &[Change],
) -> Result<Completeness, EvidenceError> {
    let ids: Vec<i64> = changes.iter().map(|c| c.id).collect();
    let seals: Vec<Seal> = rows(
        client,
        "SELECT to_jsonb(x) FROM (
             SELECT s.id, s.sealed_at, s.tree_size, encode(s.root, 'hex') AS root, count(*) AS changes
             FROM pgtrail.seal_leaves AS l JOIN pgtrail.seal AS s ON s.id = l.seal_id
             CROSS JOIN LATERAL unnest(l.change_ids) AS c(id)
             -- Only the leaves whose id span (migration 0012, indexed)
             -- meets the population's have their id arrays read.
             WHERE l.id_span OPERATOR(pg_catalog.&&)
                   int8range((SELECT min(p) FROM unnest($1::bigint[]) AS p),
                             (SELECT max(p) FROM unnest($1::bigint[]) AS p), '[]')
               AND c.id = ANY ($1::bigint[])
             GROUP BY s.id) AS x
         ORDER BY x.id",
        &[&ids],
        "reading the seals",
    )
    .await?;
    let latest_seal: Option<Seal> = rows(
        client,
        "SELECT to_jsonb(x) FROM (
             SELECT s.id, s.sealed_at, s.tree_size, encode(s.root, 'hex') AS root, 0 AS changes
             FROM pgtrail.seal AS s ORDER BY s.id DESC LIMIT 1) AS x",
        &[],
        "reading the latest seal",
    )
    .await?
    .pop();
    let sealed: i64 = seals.iter().map(|s| s.changes).sum();
    let tables = client
        .query(
            "SELECT format('%I.%I', table_schema, table_name), format('%s.%s', table_schema, table_name)
             FROM pgtrail.audited_table
             WHERE detached_at IS NULL AND to_regclass(format('%I.%I', table_schema, table_name)) IS NOT NULL
             ORDER BY 1",
            &[],
        )
        .await
        .map_err(EvidenceError::database("listing the audited tables"))?;
    let mut unrecorded = Vec::new();
    for table in &tables {
        let regclass: String = table.get(0);
        let display: String = table.get(1);
        let found = client
            .query(
                "SELECT pk, problem FROM pgtrail.reconcile($1::text::regclass) ORDER BY problem, pk::text",
                &[&regclass],
            )
            .await
            .map_err(EvidenceError::database("reconciling a table"))?;
        unrecorded.extend(found.iter().map(|r| Unrecorded {
            table: display.clone(),
            pk: r.get(0),
            problem: r.get(1),
        }));
    }
    let starts: Option<String> = client
        .query_one("SELECT to_jsonb(min(changed_at))#>>'{}' FROM pgtrail.change", &[])
        .await
        .map_err(EvidenceError::database("reading where the trail begins"))?
        .get(0);
    Ok(Completeness {
        seals,
        latest_seal,
        unsealed: ids.len() as i64 - sealed,
        gaps: gaps(client, period).await?,
        reconciled_tables: tables.len() as i64,
        unrecorded,
        trail_starts_at: starts,
    })
}
