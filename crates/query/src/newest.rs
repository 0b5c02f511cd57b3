//! The newest changes of a filter without reading the whole trail: for
//! `pgtrail log` and the timeline of `pgtrail serve` when nothing bounds
//! what the filter reads. The trail has no B-tree on `changed_at` (a BRIN:
//! capture writes one index fewer), so "the newest 50 changes" without a
//! window sorts every change, seconds on a trail of millions. A window is
//! read through the BRIN.

use std::future::Future;

use tokio_postgres::Client;

use crate::{LogFilter, Param, TimeArg, as_params};

/// How far back from the newest change a page looks first, then further,
/// when no filter bounds what it reads (see [`newest`]).
pub const NEWEST_WINDOWS: [&str; 5] = ["15 minutes", "2 hours", "16 hours", "5 days", "40 days"];

impl LogFilter {
    /// Whether an index bounds what the filter's query reads (a key, a
    /// transaction, an actor's contexts) or it has a `since`.
    pub fn bounded(&self) -> bool {
        self.since.is_some()
            || self.key.is_some()
            || self.txid.is_some()
            || (self.actor.is_some() && self.by_actor_index)
    }
}

/// The newest changes of `filter` (its `limit` of them), as `run` reads a
/// filter's page: `filter` as is when it is [bounded](LogFilter::bounded)
/// or has no limit; otherwise first for windows going back from the newest
/// change it can show ([`NEWEST_WINDOWS`], as a `since`), until one holds
/// the whole limit, and only then for the whole trail. The answer is the
/// same: when a window holds `limit` changes, every change outside it is
/// older than each of them.
pub async fn newest<T, E, F, Fut>(client: &Client, filter: &LogFilter, mut run: F) -> Result<Vec<T>, E>
where
    F: FnMut(LogFilter) -> Fut,
    Fut: Future<Output = Result<Vec<T>, E>>,
    E: From<tokio_postgres::Error>,
{
    if let (false, Some(limit)) = (filter.bounded(), filter.limit) {
        for since in window_starts(client, filter).await? {
            let windowed = LogFilter {
                since: Some(TimeArg::Absolute(since)),
                ..filter.clone()
            };
            let changes = run(windowed).await?;
            if changes.len() as i64 >= limit {
                return Ok(changes);
            }
        }
    }
    run(filter.clone()).await
}

/// The starts of [`NEWEST_WINDOWS`] before the newest moment the page can
/// show: the newest change's time (read through the primary key), or
/// `until`, or the cursor's, whichever is earliest. Only windows shorter
/// than a quarter of the time back from there to the oldest changes (by
/// id): a filter that matches too little for any window then costs at most
/// about 30% more than the whole-trail query alone (the windows grow 8x).
/// None on an empty trail.
async fn window_starts(client: &Client, filter: &LogFilter) -> Result<Vec<String>, tokio_postgres::Error> {
    let mut params: Vec<Param> = vec![Box::new(NEWEST_WINDOWS.map(str::to_string).to_vec())];
    let mut ends =
        vec!["(SELECT max(n.changed_at) FROM (SELECT changed_at FROM pgtrail.changes ORDER BY id DESC LIMIT 100) AS n)".to_string()];
    if let Some(until) = &filter.until {
        params.push(Box::new(until.value()));
        ends.push(until.sql(params.len()));
    }
    if let Some(cursor) = &filter.before {
        params.push(Box::new(cursor.micros));
        ends.push(format!(
            "'epoch'::timestamptz + ${}::bigint * interval '1 microsecond'",
            params.len()
        ));
    }
    let sql = format!(
        "SELECT to_char((e.newest - w.span) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')
         FROM (SELECT least({ends}) AS newest,
                      (SELECT min(o.changed_at)
                       FROM (SELECT changed_at FROM pgtrail.changes ORDER BY id LIMIT 100) AS o) AS oldest) AS e,
              unnest($1::text[]::interval[]) WITH ORDINALITY AS w(span, i)
         WHERE e.newest IS NOT NULL AND w.span * 4 < e.newest - e.oldest ORDER BY w.i",
        ends = ends.join(", ")
    );
    let rows = client.query(&sql, &as_params(&params)).await?;
    rows.iter().map(|row| row.try_get::<_, String>(0)).collect()
}
