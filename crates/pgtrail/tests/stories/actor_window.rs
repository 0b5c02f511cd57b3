//! "Everything this person or this batch script did between 14:00 and
//! 15:00" (seeds 001 and 002): `pgtrail.actor_changes` answers it from the
//! actor's own contexts, and must list exactly what a filter on
//! `pgtrail.changes` lists, whatever the transactions look like: several
//! contexts in one transaction, actors named by id or by name, a transaction
//! that goes on longer than the span contexts are found by, and a baseline
//! stamped before its own transaction.

use std::collections::BTreeSet;

use tokio_postgres::Client;

use crate::support::{audited_db, count, now};

const SHOP: &str = "
    CREATE TABLE accounts (id integer PRIMARY KEY, email text, balance numeric(12,2));
    CREATE TABLE orders (id integer PRIMARY KEY, account integer, total numeric(12,2));
";
const CONFIG: &str = "[capture]\ninclude = [\"accounts\", \"orders\"]\n";

/// The span after which a context's changes count as long, shortened from an
/// hour so that a test can outlast it; actor_changes reads it, and the
/// capture functions have it compiled in (so they are generated again).
const SHORT_SPAN: &str = "CREATE OR REPLACE FUNCTION pgtrail._context_span() RETURNS interval
     LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$ SELECT interval '150 milliseconds' $fn$;
     SELECT pgtrail._compile_all();";

async fn ids(client: &Client, sql: &str, actor: &str, since: &str, until: &str) -> BTreeSet<i64> {
    client
        .query(sql, &[&actor, &since, &until])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn by_function(client: &Client, actor: &str, since: &str, until: &str) -> BTreeSet<i64> {
    ids(
        client,
        "SELECT id FROM pgtrail.actor_changes($1, $2::text::timestamptz, $3::text::timestamptz)",
        actor,
        since,
        until,
    )
    .await
}

async fn by_view(client: &Client, actor: &str, since: &str, until: &str) -> BTreeSet<i64> {
    ids(
        client,
        "SELECT id FROM pgtrail.changes WHERE (actor_id = $1 OR actor_name = $1)
           AND changed_at >= $2::text::timestamptz AND changed_at < $3::text::timestamptz",
        actor,
        since,
        until,
    )
    .await
}

#[tokio::test]
async fn an_actors_window_lists_exactly_what_the_view_lists() {
    let db = audited_db(SHOP, CONFIG).await;
    let c = &db.client;
    c.batch_execute(SHORT_SPAN).await.unwrap();
    let mut moments = vec![now(c).await];
    let steps = [
        // Ann works in small transactions; the second one hands over to a
        // job halfway (two contexts in one transaction).
        "BEGIN;
         SELECT pgtrail.set_context('u-1', 'ann', 'user', 'ticket 1');
         INSERT INTO accounts VALUES (1, 'a@x', 10), (2, 'b@x', 20);
         COMMIT;",
        "BEGIN;
         SELECT pgtrail.set_context('u-1', 'ann', 'user', 'ticket 2');
         UPDATE accounts SET balance = 11 WHERE id = 1;
         SELECT pgtrail.set_context('job-7', 'nightly', 'system', 'totals');
         INSERT INTO orders VALUES (1, 1, 5);
         COMMIT;",
        // Bob's transaction outlasts the span: its last changes are found
        // only through pgtrail.long_context.
        "BEGIN;
         SELECT pgtrail.set_context('u-2', 'bob', 'user', 'long import');
         INSERT INTO orders VALUES (2, 2, 7);
         SELECT pg_sleep(0.2);
         UPDATE accounts SET email = 'bob@x' WHERE id = 2;",
        "SELECT pg_sleep(0.2);
         DELETE FROM orders WHERE id = 2;
         COMMIT;",
        // Ann again, named by name only this time.
        "BEGIN;
         SELECT pgtrail.set_context(actor_name => 'ann');
         UPDATE orders SET total = 6 WHERE id = 1;
         COMMIT;",
    ];
    for sql in steps {
        c.batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        moments.push(now(c).await);
    }

    // Bob's context went on past the span (others may too on a slow
    // machine: that costs actor_changes a little work, never a row).
    let bob_listed = count(
        c,
        "SELECT count(*) FROM pgtrail.long_context AS l
         JOIN pgtrail.transaction AS x ON x.txid = l.txid AND x.ctx = l.ctx WHERE x.actor_id = 'u-2'",
    )
    .await;
    assert_eq!(bob_listed, 1);
    assert_eq!(unlisted_outliers(c).await, 0);
    let late: i64 = c
        .query_one(
            "SELECT count(*) FROM pgtrail.actor_changes('bob', $1::text::timestamptz, 'infinity')",
            &[&moments[3]],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(late, 1, "the DELETE Bob made after the span is in his window");

    let mut bounds = vec!["-infinity".to_string()];
    bounds.extend(moments.iter().cloned());
    bounds.push("infinity".to_string());
    let mut compared = 0;
    for actor in ["u-1", "ann", "job-7", "nightly", "u-2", "bob", "nobody"] {
        for (i, since) in bounds.iter().enumerate() {
            for until in &bounds[i..] {
                let expected = by_view(c, actor, since, until).await;
                assert_eq!(
                    by_function(c, actor, since, until).await,
                    expected,
                    "{actor} from {since} to {until}"
                );
                compared += usize::from(!expected.is_empty());
            }
        }
    }
    assert!(compared > 40, "the windows hold changes: {compared}");
    assert_eq!(by_function(c, "ann", "-infinity", "infinity").await.len(), 4);
}

/// Changes outside their context's span whose context is not listed in
/// pgtrail.long_context: the invariant actor_changes relies on says none.
async fn unlisted_outliers(c: &Client) -> i64 {
    count(
        c,
        "SELECT count(*) FROM pgtrail.change AS c
         JOIN pgtrail.transaction AS x ON x.txid = c.txid AND x.ctx = c.ctx
         WHERE (c.changed_at < x.started_at OR c.changed_at > x.started_at + pgtrail._context_span())
           AND NOT EXISTS (SELECT FROM pgtrail.long_context AS l WHERE l.txid = c.txid AND l.ctx = c.ctx)",
    )
    .await
}

#[tokio::test]
async fn a_baseline_stamped_before_its_transaction_is_listed_as_long() {
    let db = audited_db(
        &format!("{SHOP} INSERT INTO accounts VALUES (1, 'a@x', 1), (2, 'b@x', 2);"),
        CONFIG,
    )
    .await;
    let c = &db.client;
    c.batch_execute("SELECT pg_sleep(0.2)").await.unwrap();
    c.batch_execute(SHORT_SPAN).await.unwrap();
    c.batch_execute("SELECT pgtrail.baseline('accounts')")
        .await
        .unwrap();
    let stamped_before: i64 = count(
        c,
        "SELECT count(*) FROM pgtrail.change AS c JOIN pgtrail.transaction AS x USING (txid, ctx)
         WHERE c.changed_at < x.started_at",
    )
    .await;
    assert_eq!(stamped_before, 2, "the baseline carries the attach time");
    assert_eq!(count(c, "SELECT count(*) FROM pgtrail.long_context").await, 1);
    assert_eq!(unlisted_outliers(c).await, 0);
}
