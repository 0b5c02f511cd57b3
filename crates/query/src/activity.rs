//! The activity report of a period (`pgtrail report`, and `pgtrail serve`'s
//! report page and API): changes per actor, per table and kind of change,
//! and bursts (more than `burst` changes by one actor within `window`
//! minutes), each row a JSON object as `pgtrail.changes` names its columns.

use serde_json::Value;
use tokio_postgres::Client;

use crate::{Param, TimeArg, as_params};

/// What to report on.
#[derive(Debug, Clone, Copy)]
pub struct ActivityRequest<'a> {
    pub since: Option<&'a TimeArg>,
    pub until: Option<&'a TimeArg>,
    /// Context keys shown per actor (as `show_0`, `show_1`, ... in `by_actor`).
    pub show: &'a [String],
    /// A burst is more than this many changes...
    pub burst: i64,
    /// ...by one actor within this many minutes.
    pub window_minutes: i32,
}

/// The report's three lists.
#[derive(Debug, Clone, Default)]
pub struct Activity {
    pub by_actor: Vec<Value>,
    pub by_table: Vec<Value>,
    pub bursts: Vec<Value>,
}

/// Reads the activity report of `request`'s period.
pub async fn activity(
    client: &Client,
    request: &ActivityRequest<'_>,
) -> Result<Activity, tokio_postgres::Error> {
    let (condition, mut params) = period(request.since, request.until);
    // The shown context keys, bound after the period's parameters.
    let mut shown_select = String::new();
    let mut shown_group = String::new();
    for (i, key) in request.show.iter().enumerate() {
        params.push(Box::new(key.clone()));
        let n = params.len();
        shown_select.push_str(&format!(", context->>${n}::text AS show_{i}"));
        shown_group.push_str(&format!(", context->>${n}::text"));
    }
    let by_actor = rows(
        client,
        &format!(
            "SELECT to_jsonb(a) FROM (
                 SELECT actor_id, actor_name, actor_type, context->>'migration' AS migration{shown_select},
                        count(*) AS changes, count(DISTINCT txid) AS transactions,
                        min(changed_at) AS first_change, max(changed_at) AS last_change
                 FROM pgtrail.changes WHERE {condition}
                 GROUP BY actor_id, actor_name, actor_type, context->>'migration'{shown_group}) AS a
             ORDER BY a.changes DESC, a.actor_name, a.actor_id"
        ),
        &params,
    )
    .await?;
    let (condition, params) = period(request.since, request.until);
    let by_table = rows(
        client,
        &format!(
            "SELECT to_jsonb(t) FROM (
                 SELECT table_schema, table_name, op, count(*) AS changes
                 FROM pgtrail.changes WHERE {condition}
                 GROUP BY table_schema, table_name, op) AS t
             ORDER BY t.table_schema, t.table_name, t.op"
        ),
        &params,
    )
    .await?;
    let (condition, mut params) = period(request.since, request.until);
    params.push(Box::new(request.window_minutes));
    let window_n = params.len();
    params.push(Box::new(request.burst));
    let burst_n = params.len();
    // For every change, the changes by the same actor in the window that it
    // opens; per actor, the busiest such window above the threshold.
    let bursts = rows(
        client,
        &format!(
            "SELECT to_jsonb(b) FROM (
                 SELECT DISTINCT ON (actor_id, actor_name, migration)
                        actor_id, actor_name, actor_type, migration, changes, first_change, last_change
                 FROM (
                     SELECT actor_id, actor_name, actor_type, context->>'migration' AS migration,
                            changed_at AS first_change,
                            count(*) OVER w AS changes, max(changed_at) OVER w AS last_change
                     FROM pgtrail.changes WHERE {condition}
                     WINDOW w AS (PARTITION BY actor_id, actor_name, context->>'migration' ORDER BY changed_at
                                  RANGE BETWEEN CURRENT ROW AND make_interval(mins => ${window_n}::int) FOLLOWING)
                 ) AS windows
                 WHERE changes > ${burst_n}::bigint
                 ORDER BY actor_id, actor_name, migration, changes DESC, first_change) AS b
             ORDER BY b.changes DESC, b.first_change"
        ),
        &params,
    )
    .await?;
    Ok(Activity {
        by_actor,
        by_table,
        bursts,
    })
}

/// The `WHERE` of the period and its parameters (`$1`.. in order).
fn period(since: Option<&TimeArg>, until: Option<&TimeArg>) -> (String, Vec<Param>) {
    let mut conditions = vec!["true".to_string()];
    let mut params: Vec<Param> = Vec::new();
    if let Some(since) = since {
        params.push(Box::new(since.value()));
        conditions.push(format!("changed_at >= {}", since.sql(params.len())));
    }
    if let Some(until) = until {
        params.push(Box::new(until.value()));
        conditions.push(format!("changed_at < {}", until.sql(params.len())));
    }
    (conditions.join(" AND "), params)
}

/// The rows of a query whose one column is a JSON object.
async fn rows(client: &Client, sql: &str, params: &[Param]) -> Result<Vec<Value>, tokio_postgres::Error> {
    client
        .query(sql, &as_params(params))
        .await?
        .iter()
        .map(|row| row.try_get::<_, Value>(0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_period_binds_its_ends_in_order() {
        let since = TimeArg::Ago("1 day".into());
        let until = TimeArg::Absolute("2026-03-01".into());
        let (condition, params) = period(Some(&since), Some(&until));
        assert_eq!(
            condition,
            "true AND changed_at >= (now() - $1::text::interval) AND changed_at < $2::text::timestamptz"
        );
        assert_eq!(params.len(), 2);
        assert_eq!(period(None, None).0, "true");
    }
}
