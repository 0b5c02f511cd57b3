//! Revert against an oracle. Random workloads run over a schema with
//! foreign keys (one a self-reference), a composite key that changes, an
//! identity column, a generated column and a table without key, several
//! changes of a row per transaction. A random set T of transactions is
//! reverted with each policy, and:
//!
//! - the conflicts the plan lists are exactly those a brute-force check of
//!   every (selected change, later change) pair finds (the cell rule of
//!   `70_revert.sql`: a later change outside the selection that touched a
//!   column, or the row, a selected change had touched before it);
//! - `cascade` adds exactly the transactions that check finds, repeatedly,
//!   and `skip` leaves out exactly the rows it finds;
//! - the tables after the revert equal a replay of the workload, on a
//!   fresh database, without the reverted changes (T; T and its
//!   dependents; T less the skipped rows). Where the replay had to drop a
//!   statement that needed a row only the reverted changes made (a parent
//!   of a foreign key, or in the table without key a content T created and
//!   a later change outside T changed before T deleted it again: a
//!   dependency the cell rule does not see), the tables
//!   are not compared, and the revert may instead fail on that foreign key,
//!   as a whole, changing nothing (checked); any other failure fails. The
//!   plan lists such a foreign key as a conflict (`referenced`,
//!   `parent_gone`) only where the replay without T had to drop a
//!   statement (checked); skip and cascade then act on it, so their sets
//!   are not the cell rule's and the tables are not compared.

use std::collections::{BTreeMap, BTreeSet};

use pgtrail::revert::plan::plan;
use pgtrail::revert::{Operation, Policy, Request, Selector};
use pgtrail_testkit::TestDb;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio_postgres::GenericClient;

use crate::support::{apply as apply_config, column};

const SCHEMA: &str = "
CREATE TABLE parent (id int PRIMARY KEY, name text, score int,
                     doubled int GENERATED ALWAYS AS (score * 2) STORED);
CREATE TABLE child (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    parent_id int REFERENCES parent, label text);
CREATE TABLE node (id int PRIMARY KEY, up int REFERENCES node, tag text);
CREATE TABLE pair (a int, b int, v text, PRIMARY KEY (a, b));
CREATE TABLE bag (x int, y text);
";
const TABLES: [&str; 5] = ["parent", "child", "node", "pair", "bag"];

/// One statement of the workload: one row change, with literal values.
#[derive(Debug, Clone)]
struct Op {
    tx: usize,
    table: &'static str,
    sql: String,
    /// The cells it touched: (key, column or "*" for the whole row).
    touches: Vec<(String, String)>,
    kind: char,
    /// Key before (U, D) and after (I, U) the change, as canonical JSON text.
    before: Option<String>,
    after: Option<String>,
}

#[derive(Debug, Default, Clone)]
struct Model {
    parent: BTreeMap<i64, (String, i64)>,
    child: BTreeMap<i64, (Option<i64>, String)>,
    node: BTreeMap<i64, (Option<i64>, String)>,
    pair: BTreeMap<(i64, i64), String>,
    bag: Vec<(i64, String)>,
    next_child: i64,
}

fn key(value: Value) -> String {
    value.to_string()
}

/// The SET list of an UPDATE: only the columns it changes, as the trail
/// records them (a column set to the value it has is no change, and the
/// replay must not write it either).
fn set_list(assignments: &[(bool, String)]) -> String {
    assignments
        .iter()
        .filter(|(changed, _)| *changed)
        .map(|(_, sql)| sql.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn word(rng: &mut StdRng) -> String {
    ["a", "b", "c", "d"][rng.random_range(0..4)].to_string()
}

impl Model {
    /// A random op that changes something and is valid now (keys free or
    /// present, foreign keys satisfied), applied to the model.
    fn op(&mut self, rng: &mut StdRng, tx: usize) -> Option<Op> {
        let table = TABLES[rng.random_range(0..TABLES.len())];
        let pick = rng.random_range(0..4);
        let op = |kind, sql: String, touches: Vec<(String, String)>, before, after| Op {
            tx,
            table,
            sql,
            touches,
            kind,
            before,
            after,
        };
        match table {
            "parent" => {
                let id = rng.random_range(1..5);
                let k = key(json!({"id": id}));
                match (self.parent.get(&id).cloned(), pick) {
                    (None, _) => {
                        let (name, score) = (word(rng), rng.random_range(0..3));
                        self.parent.insert(id, (name.clone(), score));
                        Some(op(
                            'I',
                            format!("INSERT INTO parent (id, name, score) VALUES ({id}, '{name}', {score})"),
                            vec![(k.clone(), "*".into())],
                            None,
                            Some(k),
                        ))
                    }
                    (Some(_), 0) if !self.child.values().any(|(p, _)| *p == Some(id)) => {
                        self.parent.remove(&id);
                        Some(op(
                            'D',
                            format!("DELETE FROM parent WHERE id = {id}"),
                            vec![(k.clone(), "*".into())],
                            Some(k),
                            None,
                        ))
                    }
                    (Some((name, score)), _) => {
                        let (new_name, new_score) = (word(rng), rng.random_range(0..3));
                        let mut cols = Vec::new();
                        if new_name != name {
                            cols.push("name");
                        }
                        if new_score != score {
                            cols.extend(["score", "doubled"]);
                        }
                        if cols.is_empty() {
                            return None;
                        }
                        self.parent.insert(id, (new_name.clone(), new_score));
                        Some(op(
                            'U',
                            format!(
                                "UPDATE parent SET {} WHERE id = {id}",
                                set_list(&[
                                    (new_name != name, format!("name = '{new_name}'")),
                                    (new_score != score, format!("score = {new_score}")),
                                ])
                            ),
                            cols.iter().map(|c| (k.clone(), c.to_string())).collect(),
                            Some(k.clone()),
                            Some(k),
                        ))
                    }
                }
            }
            "child" => {
                let existing: Vec<i64> = self.child.keys().copied().collect();
                let parent = if rng.random_bool(0.3) || self.parent.is_empty() {
                    None
                } else {
                    let parents: Vec<i64> = self.parent.keys().copied().collect();
                    Some(parents[rng.random_range(0..parents.len())])
                };
                let parent_sql = parent.map_or("NULL".to_string(), |p| p.to_string());
                if existing.is_empty() || pick == 0 {
                    self.next_child += 1;
                    let id = self.next_child;
                    let label = word(rng);
                    self.child.insert(id, (parent, label.clone()));
                    let k = key(json!({"id": id}));
                    return Some(op(
                        'I',
                        format!(
                            "INSERT INTO child (id, parent_id, label) OVERRIDING SYSTEM VALUE VALUES ({id}, {parent_sql}, '{label}')"
                        ),
                        vec![(k.clone(), "*".into())],
                        None,
                        Some(k),
                    ));
                }
                let id = existing[rng.random_range(0..existing.len())];
                let k = key(json!({"id": id}));
                if pick == 1 {
                    self.child.remove(&id);
                    return Some(op(
                        'D',
                        format!("DELETE FROM child WHERE id = {id}"),
                        vec![(k.clone(), "*".into())],
                        Some(k),
                        None,
                    ));
                }
                let (old_parent, old_label) = self.child[&id].clone();
                let label = word(rng);
                let mut cols = Vec::new();
                if parent != old_parent {
                    cols.push("parent_id");
                }
                if label != old_label {
                    cols.push("label");
                }
                if cols.is_empty() {
                    return None;
                }
                self.child.insert(id, (parent, label.clone()));
                Some(op(
                    'U',
                    format!(
                        "UPDATE child SET {} WHERE id = {id}",
                        set_list(&[
                            (parent != old_parent, format!("parent_id = {parent_sql}")),
                            (label != old_label, format!("label = '{label}'")),
                        ])
                    ),
                    cols.iter().map(|c| (k.clone(), c.to_string())).collect(),
                    Some(k.clone()),
                    Some(k),
                ))
            }
            "node" => {
                let id = rng.random_range(1..6);
                let k = key(json!({"id": id}));
                let ups: Vec<i64> = self.node.keys().copied().filter(|n| *n != id).collect();
                let up = if ups.is_empty() || rng.random_bool(0.3) {
                    None
                } else {
                    Some(ups[rng.random_range(0..ups.len())])
                };
                let up_sql = up.map_or("NULL".to_string(), |u| u.to_string());
                match (self.node.get(&id).cloned(), pick) {
                    (None, _) => {
                        let tag = word(rng);
                        self.node.insert(id, (up, tag.clone()));
                        Some(op(
                            'I',
                            format!("INSERT INTO node VALUES ({id}, {up_sql}, '{tag}')"),
                            vec![(k.clone(), "*".into())],
                            None,
                            Some(k),
                        ))
                    }
                    (Some(_), 0) if !self.node.values().any(|(u, _)| *u == Some(id)) => {
                        self.node.remove(&id);
                        Some(op(
                            'D',
                            format!("DELETE FROM node WHERE id = {id}"),
                            vec![(k.clone(), "*".into())],
                            Some(k),
                            None,
                        ))
                    }
                    (Some((old_up, old_tag)), _) => {
                        let tag = word(rng);
                        let mut cols = Vec::new();
                        if up != old_up {
                            cols.push("up");
                        }
                        if tag != old_tag {
                            cols.push("tag");
                        }
                        if cols.is_empty() {
                            return None;
                        }
                        self.node.insert(id, (up, tag.clone()));
                        Some(op(
                            'U',
                            format!(
                                "UPDATE node SET {} WHERE id = {id}",
                                set_list(&[
                                    (up != old_up, format!("up = {up_sql}")),
                                    (tag != old_tag, format!("tag = '{tag}'")),
                                ])
                            ),
                            cols.iter().map(|c| (k.clone(), c.to_string())).collect(),
                            Some(k.clone()),
                            Some(k),
                        ))
                    }
                }
            }
            "pair" => {
                let (a, b) = (rng.random_range(1..3), rng.random_range(1..3));
                let k = key(json!({"a": a, "b": b}));
                match (self.pair.get(&(a, b)).cloned(), pick) {
                    (None, _) => {
                        let v = word(rng);
                        self.pair.insert((a, b), v.clone());
                        Some(op(
                            'I',
                            format!("INSERT INTO pair VALUES ({a}, {b}, '{v}')"),
                            vec![(k.clone(), "*".into())],
                            None,
                            Some(k),
                        ))
                    }
                    (Some(_), 0) => {
                        self.pair.remove(&(a, b));
                        Some(op(
                            'D',
                            format!("DELETE FROM pair WHERE a = {a} AND b = {b}"),
                            vec![(k.clone(), "*".into())],
                            Some(k),
                            None,
                        ))
                    }
                    (Some(v), 1) => {
                        // A key change, to a free key.
                        let (na, nb) = (rng.random_range(1..4), rng.random_range(1..3));
                        if self.pair.contains_key(&(na, nb)) {
                            return None;
                        }
                        self.pair.remove(&(a, b));
                        self.pair.insert((na, nb), v);
                        let nk = key(json!({"a": na, "b": nb}));
                        Some(op(
                            'U',
                            format!("UPDATE pair SET a = {na}, b = {nb} WHERE a = {a} AND b = {b}"),
                            vec![(k.clone(), "*".into()), (nk.clone(), "*".into())],
                            Some(k),
                            Some(nk),
                        ))
                    }
                    (Some(old), _) => {
                        let v = word(rng);
                        if v == old {
                            return None;
                        }
                        self.pair.insert((a, b), v.clone());
                        Some(op(
                            'U',
                            format!("UPDATE pair SET v = '{v}' WHERE a = {a} AND b = {b}"),
                            vec![(k.clone(), "v".into())],
                            Some(k.clone()),
                            Some(k),
                        ))
                    }
                }
            }
            _ => {
                let row = (rng.random_range(1..3), word(rng));
                let content = |r: &(i64, String)| key(json!({"x": r.0, "y": r.1}));
                let find = |r: &(i64, String)| {
                    format!(
                        "(SELECT ctid FROM bag WHERE x = {} AND y = '{}' LIMIT 1)",
                        r.0, r.1
                    )
                };
                if self.bag.is_empty() || pick < 2 {
                    self.bag.push(row.clone());
                    let c = content(&row);
                    return Some(op(
                        'I',
                        format!("INSERT INTO bag VALUES ({}, '{}')", row.0, row.1),
                        vec![(c.clone(), "*".into())],
                        None,
                        Some(c),
                    ));
                }
                let at = rng.random_range(0..self.bag.len());
                let old = self.bag[at].clone();
                let c = content(&old);
                if pick == 2 {
                    self.bag.remove(at);
                    return Some(op(
                        'D',
                        format!("DELETE FROM bag WHERE ctid = {}", find(&old)),
                        vec![(c.clone(), "*".into())],
                        Some(c),
                        None,
                    ));
                }
                if row == old {
                    return None;
                }
                self.bag[at] = row.clone();
                let nc = content(&row);
                Some(op(
                    'U',
                    format!(
                        "UPDATE bag SET x = {}, y = '{}' WHERE ctid = {}",
                        row.0,
                        row.1,
                        find(&old)
                    ),
                    vec![(c.clone(), "*".into()), (nc.clone(), "*".into())],
                    Some(c),
                    Some(nc),
                ))
            }
        }
    }
}

/// A workload: transactions of one to five ops.
fn workload(seed: u64, transactions: usize) -> Vec<Op> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = Model::default();
    let mut ops = Vec::new();
    for tx in 0..transactions {
        let mut n = 0;
        for _ in 0..40 {
            if n >= rng.random_range(1..6) {
                break;
            }
            if let Some(op) = model.op(&mut rng, tx) {
                ops.push(op);
                n += 1;
            }
        }
    }
    ops
}

/// The rows of a selection, as `70_revert.sql` groups them: keyed rows by
/// key, followed through key changes; contents of a table without key.
/// Returns each chain's ops, whether it is active and, for a table without
/// key, the content it stands for.
fn chains(ops: &[Op], selected: &BTreeSet<usize>) -> Vec<(Vec<usize>, bool, Option<String>)> {
    let mut out: Vec<(Vec<usize>, bool, Option<String>)> = Vec::new();
    for table in TABLES {
        let s: Vec<usize> = selected
            .iter()
            .copied()
            .filter(|i| ops[*i].table == table)
            .collect();
        if table == "bag" {
            let mut contents: BTreeMap<String, (i64, Vec<usize>)> = BTreeMap::new();
            for &i in &s {
                if let Some(b) = &ops[i].before {
                    let e = contents.entry(b.clone()).or_default();
                    e.0 += 1;
                    e.1.push(i);
                }
                if let Some(a) = &ops[i].after {
                    let e = contents.entry(a.clone()).or_default();
                    e.0 -= 1;
                    e.1.push(i);
                }
            }
            out.extend(
                contents
                    .into_iter()
                    .map(|(content, (net, ids))| (ids, net != 0, Some(content))),
            );
            continue;
        }
        let moved: BTreeSet<String> = s
            .iter()
            .filter(|i| ops[**i].kind == 'U' && ops[**i].before != ops[**i].after)
            .flat_map(|i| [ops[*i].before.clone(), ops[*i].after.clone()])
            .flatten()
            .collect();
        let pk = |op: &Op| op.after.clone().or(op.before.clone()).unwrap_or_default();
        let mut by_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut rest = Vec::new();
        for &i in &s {
            let op = &ops[i];
            let involved = moved.contains(&pk(op))
                || op
                    .before
                    .as_ref()
                    .is_some_and(|b| moved.contains(b) && op.kind == 'U');
            if involved {
                rest.push(i);
            } else {
                by_key.entry(pk(op)).or_default().push(i);
            }
        }
        let mut map: BTreeMap<String, usize> = BTreeMap::new();
        let mut followed: Vec<Vec<usize>> = Vec::new();
        for i in rest {
            let op = &ops[i];
            let bkey = if op.kind == 'U' {
                op.before.clone()
            } else {
                Some(pk(op))
            }
            .unwrap_or_default();
            let chain = match map.get(&bkey) {
                Some(c) => *c,
                None => {
                    followed.push(Vec::new());
                    followed.len() - 1
                }
            };
            followed[chain].push(i);
            if op.kind == 'U' && op.before != op.after {
                map.remove(&bkey);
            }
            map.insert(pk(op), chain);
        }
        for ids in by_key.into_values().chain(followed) {
            let (first, last) = (&ops[ids[0]], &ops[ids[ids.len() - 1]]);
            out.push((ids.clone(), first.kind != 'I' || last.kind != 'D', None));
        }
    }
    out
}

/// Every (chain, later op) conflict: a later op outside the selection, of
/// the same table, that touched a cell a selected op of the chain had
/// touched before it.
fn conflicts(ops: &[Op], selected: &BTreeSet<usize>) -> BTreeSet<(Vec<usize>, usize)> {
    let mut out = BTreeSet::new();
    for (chain, active, content) in chains(ops, selected) {
        if !active {
            continue;
        }
        for x in 0..ops.len() {
            if selected.contains(&x) {
                continue;
            }
            let hit = chain.iter().any(|&s| {
                s < x
                    && ops[s].table == ops[x].table
                    && ops[s].touches.iter().any(|(sk, sc)| {
                        // For a keyless chain, only the touches of its content count.
                        content.as_ref().is_none_or(|c| c == sk)
                            && ops[x]
                                .touches
                                .iter()
                                .any(|(xk, xc)| sk == xk && (sc == "*" || xc == "*" || sc == xc))
                    })
            });
            if hit {
                out.insert((chain.clone(), x));
            }
        }
    }
    out
}

async fn table_rows(client: &impl GenericClient) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for table in TABLES {
        let rows = client
            .query(
                &format!("SELECT to_jsonb(t)::text FROM {table} AS t ORDER BY 1"),
                &[],
            )
            .await
            .expect("tables are readable");
        out.push(rows.iter().map(|r| r.get(0)).collect());
    }
    out
}

/// Replays the workload without `left_out` on a fresh database. A statement
/// that fails there or changes no row (it needed a row only the left-out
/// changes made, e.g. a parent for a foreign key) does not happen, as it
/// would not have without them; the tables where one did are returned.
async fn replay(ops: &[Op], left_out: &BTreeSet<usize>) -> (Vec<Vec<String>>, BTreeSet<&'static str>) {
    let db = TestDb::new().await;
    db.client.batch_execute(SCHEMA).await.expect("schema");
    let mut dropped = BTreeSet::new();
    db.client.batch_execute("BEGIN").await.expect("begin");
    for (i, op) in ops.iter().enumerate() {
        if left_out.contains(&i) {
            continue;
        }
        db.client.batch_execute("SAVEPOINT op").await.expect("savepoint");
        match db.client.execute(&op.sql, &[]).await {
            Ok(1) => {}
            // Each op changed one row in the workload; an UPDATE or DELETE
            // that finds none here needed a row only the left-out changes
            // made (in the table without key: a content they created that
            // a later op changed), a dependency like a foreign key's.
            Ok(n) => {
                if std::env::var_os("PGTRAIL_ORACLE_TRACE").is_some() {
                    eprintln!("replay: op {i} ({}) changed {n} rows", op.sql);
                }
                dropped.insert(op.table);
            }
            Err(error) => {
                if std::env::var_os("PGTRAIL_ORACLE_TRACE").is_some() {
                    eprintln!(
                        "replay skips op {i} ({}): {}",
                        op.sql,
                        error.as_db_error().map(|e| e.message()).unwrap_or("")
                    );
                }
                dropped.insert(op.table);
                db.client
                    .batch_execute("ROLLBACK TO SAVEPOINT op")
                    .await
                    .expect("rollback to savepoint");
            }
        }
    }
    db.client.batch_execute("COMMIT").await.expect("commit");
    (table_rows(&db.client).await, dropped)
}

async fn run_case(seed: u64, transactions: usize, pick: u64) {
    let ops = workload(seed, transactions);
    if std::env::var_os("PGTRAIL_ORACLE_TRACE").is_some() {
        for op in &ops {
            eprintln!("op tx {}: {}", op.tx, op.sql);
        }
    }
    let mut db = TestDb::new().await;
    db.client.batch_execute(SCHEMA).await.expect("schema");
    apply_config(&mut db.client, "").await;
    // Later changes of the reverted rows are found through the key indexes
    // for up to 10,000 rows, else by the other two ways: half the cases
    // take those.
    if pick % 2 == 1 {
        db.client
            .batch_execute("SET pgtrail.revert_key_lookup_rows = '0'")
            .await
            .expect("setting");
    }
    // Run the workload; each op's change id, in order.
    let mut txids = Vec::new();
    let mut change_of = Vec::new();
    for tx in 0..transactions {
        let mine: Vec<&Op> = ops.iter().filter(|o| o.tx == tx).collect();
        if mine.is_empty() {
            txids.push(None);
            continue;
        }
        let sql: Vec<String> = mine.iter().map(|o| o.sql.clone()).collect();
        db.client
            .batch_execute(&format!(
                "BEGIN; SELECT pgtrail.set_context(actor_name => 'w{tx}'); {};",
                sql.join("; ")
            ))
            .await
            .unwrap_or_else(|e| panic!("workload seed {seed}: {e:?}\n{sql:#?}"));
        let txid: i64 = db
            .client
            .query_one("SELECT txid_current()", &[])
            .await
            .unwrap()
            .get(0);
        db.client.batch_execute("COMMIT").await.unwrap();
        txids.push(Some(txid));
        let ids: Vec<i64> = column(
            &db.client,
            &format!("SELECT id FROM pgtrail.change WHERE txid = {txid} ORDER BY id"),
        )
        .await;
        assert_eq!(ids.len(), mine.len(), "one change per op (seed {seed})");
        change_of.extend(ids);
    }
    let ids_of = |chain: &[usize]| -> Vec<i64> {
        let mut ids: Vec<i64> = chain.iter().map(|i| change_of[*i]).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };

    // T: one to three transactions.
    let mut rng = StdRng::seed_from_u64(pick);
    let present: Vec<usize> = (0..transactions).filter(|t| txids[*t].is_some()).collect();
    let mut chosen: BTreeSet<usize> = BTreeSet::new();
    for _ in 0..rng.random_range(1..4) {
        chosen.insert(present[rng.random_range(0..present.len())]);
    }
    let selected: BTreeSet<usize> = (0..ops.len()).filter(|i| chosen.contains(&ops[*i].tx)).collect();
    let request = |policy| {
        let mut r = Request::new(Selector::Transactions(
            chosen.iter().filter_map(|t| txids[*t]).collect(),
        ));
        r.policy = policy;
        r
    };
    let before = table_rows(&db.client).await;

    // refuse: exactly the brute-force conflicts.
    let expected: BTreeSet<(Vec<i64>, i64)> = conflicts(&ops, &selected)
        .into_iter()
        .map(|(chain, x)| (ids_of(&chain), change_of[x]))
        .collect();
    let planned = plan(&db.client, &request(Policy::Refuse)).await.expect("plan");
    // Foreign keys the revert would break are conflicts too (kinds
    // `referenced`, `parent_gone`): a dependency the cell rule does not see,
    // so only where the replay without T had to drop a statement.
    let fk_refuse = has_fk_conflict(&planned);
    if fk_refuse {
        assert!(
            !replay(&ops, &selected).await.1.is_empty(),
            "seed {seed}, pick {pick}: a foreign key conflict where nothing depends on T"
        );
    }
    let listed: BTreeSet<(Vec<i64>, i64)> = planned
        .conflicts()
        .filter(|c| !c.conflict.as_ref().is_some_and(is_fk_conflict))
        .map(|c| {
            (
                c.change_ids.clone(),
                c.conflict
                    .as_ref()
                    .and_then(|j| j["change_id"].as_i64())
                    .unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(listed, expected, "seed {seed}, pick {pick}: conflicts");

    // cascade: T and the transactions that depend on it, repeatedly.
    let mut cascaded = selected.clone();
    loop {
        let found = conflicts(&ops, &cascaded);
        if found.is_empty() {
            break;
        }
        let txs: BTreeSet<usize> = found.iter().map(|(_, x)| ops[*x].tx).collect();
        cascaded.extend((0..ops.len()).filter(|i| txs.contains(&ops[*i].tx)));
    }
    // skip: T less the rows that conflict, repeatedly.
    let mut skipped_to = selected.clone();
    loop {
        let found = conflicts(&ops, &skipped_to);
        if found.is_empty() {
            break;
        }
        for (chain, _) in found {
            for i in chain {
                skipped_to.remove(&i);
            }
        }
    }
    let skip_plan = plan(&db.client, &request(Policy::Skip)).await.expect("plan skip");
    let fk_skip = has_fk_conflict(&skip_plan);
    if !fk_skip {
        let skipped_ids: BTreeSet<i64> = skip_plan
            .of(Operation::Skip)
            .flat_map(|s| s.change_ids.clone())
            .collect();
        let expected_skipped: BTreeSet<i64> =
            selected.difference(&skipped_to).map(|i| change_of[*i]).collect();
        assert_eq!(skipped_ids, expected_skipped, "seed {seed}, pick {pick}: skipped");
    }

    for (policy, reverted) in [
        (Policy::Refuse, &selected),
        (Policy::Skip, &skipped_to),
        (Policy::Cascade, &cascaded),
    ] {
        if policy == Policy::Refuse && (!expected.is_empty() || fk_refuse) {
            continue;
        }
        // Where a foreign key conflict changed what skip or cascade do, the
        // cell rule's sets (and so the replay) are not theirs.
        let mut fk = policy == Policy::Skip && fk_skip;
        if policy == Policy::Cascade {
            let planned = plan(&db.client, &request(Policy::Cascade))
                .await
                .expect("plan cascade");
            fk = has_fk_conflict(&planned);
            let reverted_ids: BTreeSet<i64> = planned.change_ids().into_iter().collect();
            let expected_ids: BTreeSet<i64> = cascaded.iter().map(|i| change_of[*i]).collect();
            // (Rows created and deleted within the set are listed as NOTHING, still counted.)
            if !fk {
                assert_eq!(
                    reverted_ids, expected_ids,
                    "seed {seed}, pick {pick}: cascaded changes"
                );
            }
        }
        let oracle = replay(&ops, reverted).await;
        if std::env::var_os("PGTRAIL_ORACLE_TRACE").is_some() {
            eprintln!(
                "seed {seed} tx {transactions} pick {pick} {policy}: {} ops, {} selected, {} conflicts, {} reverted, replay ok: {}",
                ops.len(),
                selected.len(),
                expected.len(),
                reverted.len(),
                oracle.1.is_empty()
            );
        }
        // pgtrail.revert in a transaction rolled back afterwards, so every
        // policy starts from the same database.
        let tx = db.client.transaction().await.expect("transaction");
        let result = tx
            .query(
                "SELECT operation FROM pgtrail.revert($1, $2, 'oracle')",
                &[&request(policy).to_json(), &policy.as_str()],
            )
            .await;
        let (rows, dropped) = oracle;
        let dependent = !dropped.is_empty();
        match result {
            Ok(_) => {
                // (Tables where the replay dropped a statement aside.)
                if !fk {
                    let kept = |rows: Vec<Vec<String>>| -> Vec<Vec<String>> {
                        TABLES
                            .iter()
                            .zip(rows)
                            .filter(|(table, _)| !dropped.contains(*table))
                            .map(|(_, rows)| rows)
                            .collect()
                    };
                    assert_eq!(
                        kept(table_rows(&tx).await),
                        kept(rows),
                        "seed {seed}, pick {pick}, {policy}: tables (all but {dropped:?})"
                    );
                }
                tx.rollback().await.expect("rollback");
            }
            // Only a foreign key the reverted changes made possible may stop it.
            Err(error) if dependent && error.as_db_error().is_some_and(|e| e.code().code() == "23503") => {
                tx.rollback().await.expect("rollback")
            }
            // A conflict a foreign key found (listed in the plan, refused).
            Err(error) if fk && error.as_db_error().is_some_and(|e| e.code().code() == "PGTR6") => {
                tx.rollback().await.expect("rollback")
            }
            Err(error) => panic!(
                "seed {seed}, pick {pick}, {policy}: {error:?}\nops: {:#?}",
                ops.iter().map(|o| (o.tx, &o.sql)).collect::<Vec<_>>()
            ),
        }
        assert_eq!(
            table_rows(&db.client).await,
            before,
            "seed {seed}, pick {pick}, {policy}: rolled back"
        );
    }
}

/// Whether a conflict (one, or a list of them) is a foreign key's.
fn is_fk_conflict(conflict: &Value) -> bool {
    match conflict {
        Value::Array(list) => list.iter().any(is_fk_conflict),
        Value::Object(fields) => matches!(
            fields.get("kind").and_then(Value::as_str),
            Some("referenced" | "parent_gone")
        ),
        _ => false,
    }
}

/// Whether a plan lists, skips or cascades for a foreign key conflict.
fn has_fk_conflict(planned: &pgtrail::revert::Plan) -> bool {
    planned
        .conflicts()
        .chain(planned.of(Operation::Skip))
        .chain(planned.of(Operation::Cascade))
        .any(|item| item.conflict.as_ref().is_some_and(is_fk_conflict))
}

/// A case the property found: T inserts a row into the table without key
/// and later deletes an equal one, and between them a change outside T
/// rewrites that content. By content the revert leaves it alone; the
/// replay without T finds nothing for the outside change to rewrite.
#[tokio::test]
async fn a_keyless_content_t_made_and_an_outside_change_rewrote() {
    run_case(9731755827174721865, 8, 6618807116129441673).await;
}

/// A case the property found: T moved a pair's key away and a later
/// transaction moved another pair into the key T freed; cascade has to
/// move that pair out of it before T's pair moves back (the revert failed
/// on the primary key, as a whole).
#[tokio::test]
async fn a_key_t_freed_and_a_later_transaction_took() {
    run_case(3968941538269729726, 5, 13244926929535384843).await;
}

/// A case again, from the trace: PGTRAIL_ORACLE_CASE="seed transactions pick".
#[tokio::test]
async fn a_traced_case_runs_again() {
    if let Some(case) = std::env::var_os("PGTRAIL_ORACLE_CASE") {
        let parts: Vec<u64> = case
            .to_string_lossy()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if let [seed, transactions, pick] = parts[..] {
            run_case(seed, transactions as usize, pick).await;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_revert_equals_the_workload_replayed_without_it(seed in any::<u64>(), transactions in 3usize..9, pick in any::<u64>()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(run_case(seed, transactions, pick));
    }
}
