//! Saying, on standard error, what an install by a role that is not a
//! superuser lacks: what could not be done, what it means, how to fix it
//! (or how to accept it in `pgtrail.toml`). Used by apply, plan, sql and check.

use std::io::Write;

use pgtrail::config::Install;
use pgtrail::plan::{Privileges, Shortfall};

use crate::output::{DIM, WARN};

/// Prints each shortfall with its meaning and fix; accepted ones as one note.
/// `predicted`: said before the install (plan, sql) rather than after.
pub fn print(shortfalls: &[Shortfall], privileges: &Privileges, install: &Install, predicted: bool) {
    let mut err = anstream::stderr().lock();
    for shortfall in shortfalls {
        if shortfall.accepted(install) {
            let setting = shortfall.accept_setting().unwrap_or_default();
            let _ = writeln!(
                err,
                "{DIM}note: accepted in the config ([install] {setting}): {shortfall}{DIM:#}"
            );
            continue;
        }
        let head = match predicted {
            true => format!("warning: installed by {}, {shortfall}", privileges.installer),
            false => format!("warning: {shortfall}"),
        };
        let _ = writeln!(err, "{WARN}{head}{WARN:#}");
        let _ = writeln!(err, "  what it means: {}", shortfall.meaning());
        let _ = writeln!(err, "  to fix: {}", shortfall.fix(&privileges.installer));
        if let Some(setting) = shortfall.accept_setting() {
            let _ = writeln!(
                err,
                "  or accept it: add `{setting}` under [install] in the config, and `pgtrail check` stops reporting it"
            );
        }
    }
}

/// The shortfalls as JSON, for `--format json`.
pub fn to_json(shortfalls: &[Shortfall], install: &Install) -> serde_json::Value {
    shortfalls
        .iter()
        .map(|s| {
            serde_json::json!({
                "kind": s.kind(),
                "message": s.to_string(),
                "accepted": s.accepted(install),
            })
        })
        .collect()
}
