//! auto_explain in one session, and reading its entries back from the server
//! log: the plans of the statements a PL/pgSQL or SQL function runs inside
//! (`log_nested_statements`), which a plain EXPLAIN of the call cannot show.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use tokio_postgres::Client;

/// Loads auto_explain in `client`'s session: every statement taking at least
/// `min_duration` (e.g. `"0"`, `"10ms"`), nested ones included, logged with
/// ANALYZE and BUFFERS.
pub async fn load(client: &Client, min_duration: &str) -> Result<()> {
    client
        .batch_execute(&format!(
            "LOAD 'auto_explain';
             SET auto_explain.log_min_duration = '{min_duration}';
             SET auto_explain.log_analyze = on;
             SET auto_explain.log_buffers = on;
             SET auto_explain.log_timing = on;
             SET auto_explain.log_nested_statements = on;"
        ))
        .await
        .context("load auto_explain")
}

/// Turns auto_explain off again in `client`'s session.
pub async fn unload(client: &Client) -> Result<()> {
    client
        .batch_execute("SET auto_explain.log_min_duration = -1")
        .await
        .context("switch auto_explain off")
}

/// The current length of the server log (where new entries will start).
pub fn log_offset(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |m| m.len())
}

/// One auto_explain entry of the server log.
#[derive(Debug, Clone)]
pub struct Explained {
    /// Its `duration:` in milliseconds.
    pub duration_ms: f64,
    /// The entry's lines (Query Text, then the plan), tabs removed.
    pub lines: Vec<String>,
}

impl Explained {
    /// The statement's text, whitespace collapsed, cut to `n` characters.
    pub fn query(&self, n: usize) -> String {
        // A SQL function's body starts on the line after "Query Text:".
        let at = self.lines.iter().position(|l| l.starts_with("Query Text: "));
        let text = at.map_or("?", |i| {
            let first = self.lines[i].trim_start_matches("Query Text: ").trim();
            if first.is_empty() {
                self.lines[i + 1..]
                    .iter()
                    .map(|l| l.trim())
                    .find(|l| !l.is_empty())
                    .unwrap_or("?")
            } else {
                first
            }
        });
        clip(&text.split_whitespace().collect::<Vec<_>>().join(" "), n)
    }
}

/// auto_explain's entries written to the server log since `offset`, in the
/// order they finished (nested statements before the statement around them).
pub fn entries_since(path: &Path, offset: u64) -> Vec<Explained> {
    let Ok(log) = fs::read(path) else {
        return Vec::new();
    };
    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(log.len());
    let text = String::from_utf8_lossy(&log[start..]);
    let mut entries: Vec<Explained> = Vec::new();
    let mut current: Option<Explained> = None;
    for line in text.lines() {
        if line.starts_with('\t') || line.starts_with(' ') {
            if let Some(entry) = current.as_mut() {
                entry.lines.push(line.trim_start_matches('\t').to_owned());
            }
            continue;
        }
        entries.extend(current.take());
        if let Some(rest) = line.split("LOG:  duration: ").nth(1) {
            if rest.contains("plan:") {
                let duration_ms = rest
                    .split_whitespace()
                    .next()
                    .and_then(|d| d.parse().ok())
                    .unwrap_or(0.0);
                current = Some(Explained {
                    duration_ms,
                    lines: Vec::new(),
                });
            }
        }
    }
    entries.extend(current);
    entries
}

/// Every scan node of the plans (e.g. `Index Scan using change_row_idx on
/// change x`), with how many plans have it, most frequent first.
pub fn scan_nodes(entries: &[Explained]) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for entry in entries {
        let mut seen: Vec<String> = Vec::new();
        for line in &entry.lines {
            let node = line.trim_start().trim_start_matches("->").trim_start();
            if !node.contains("Scan") || node.starts_with("Query Text") {
                continue;
            }
            let node = node.split("  (").next().unwrap_or(node).trim().to_owned();
            if !seen.contains(&node) {
                seen.push(node);
            }
        }
        for node in seen {
            *counts.entry(node).or_default() += 1;
        }
    }
    let mut counts: Vec<(String, usize)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts
}

/// Prints the statements (at most `list` of them, in order, each with its
/// duration), the scan nodes found in all their plans, and the full plans
/// of the `full_plans` slowest.
pub fn print(entries: &[Explained], list: usize, full_plans: usize) {
    if entries.is_empty() {
        println!("      (no auto_explain entries in the server log)");
        return;
    }
    let total: f64 = entries.iter().map(|e| e.duration_ms).sum();
    println!(
        "      auto_explain: {} statements logged (nested ones first; durations overlap, sum {total:.1} ms)",
        entries.len()
    );
    for e in entries.iter().take(list) {
        println!("      {:>10.3} ms  {}", e.duration_ms, e.query(120));
    }
    if entries.len() > list {
        println!("      ... {} more", entries.len() - list);
    }
    println!("      scan nodes (number of logged plans containing each):");
    for (node, n) in scan_nodes(entries) {
        println!("      {n:>7} x  {}", clip(&node, 140));
    }
    let mut slowest: Vec<&Explained> = entries.iter().collect();
    slowest.sort_by(|a, b| b.duration_ms.total_cmp(&a.duration_ms));
    // The slowest statement reading the trail, unless it is printed below anyway.
    if let Some(e) = slowest
        .iter()
        .skip(full_plans)
        .find(|e| e.lines.iter().any(|l| l.contains("on change ")))
    {
        println!(
            "      plan of the slowest statement reading pgtrail.change ({:.3} ms) {}:",
            e.duration_ms,
            e.query(110)
        );
        print_plan(e);
    }
    for e in slowest.into_iter().take(full_plans) {
        println!(
            "      plan of the {:.3} ms statement {}:",
            e.duration_ms,
            e.query(110)
        );
        print_plan(e);
    }
}

/// Prints one entry's plan (without its query text).
pub fn print_plan(e: &Explained) {
    for line in e.lines.iter().filter(|l| !l.starts_with("Query Text: ")) {
        println!("        | {}", clip(line, 200));
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() > n {
        format!("{}...", s.chars().take(n).collect::<String>())
    } else {
        s.to_owned()
    }
}
