//! `pgtrail revert`: undo recorded changes (transactions, one row, an
//! actor's or a context's changes in a window). Prints the plan first and
//! changes nothing until `--yes`, or a "y" on a terminal; exit 1 when later
//! changes conflict and the policy refuses. With `--yes` the revert is
//! planned once, by `pgtrail.revert` in its own transaction, and what it did
//! is printed after; the plan is asked for apart only to list conflicts.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use indicatif::{ProgressBar, ProgressStyle};
use pgtrail::revert::apply::{Applied, ApplyOptions, apply};
use pgtrail::revert::{Operation, Plan, PlanItem, Request, RevertError, RowTarget, Selector, StatementKind};
use serde_json::{Value, json};
use tokio_postgres::Client;

use super::log::{db_error, key_text, require_installed, resolve_table};
use crate::cli::{Common, Format, RevertArgs};
use crate::output;

pub async fn run(common: &Common, args: &RevertArgs) -> Result<ExitCode> {
    let kinds = [
        !args.tx.is_empty(),
        args.row.is_some(),
        args.actor.is_some(),
        !args.context.is_empty(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        bail!(
            "say what to revert with exactly one of --tx, --row, --actor or --context\n  \
             help: e.g. `pgtrail revert --tx 48211 --reason '...'` or `pgtrail revert --actor batch@system --since '2h ago' --reason '...'`"
        );
    }
    if args.reason.trim().is_empty() {
        bail!("--reason is empty\n  help: say why, e.g. --reason 'ticket #4211: undo the batch script'");
    }
    let bar = ProgressBar::new(0);
    let observed = bar.clone();
    let target = pgtrail::connect::Target::from_env(common.database_url.as_deref())?;
    let mut client = pgtrail::connect::connect_observed(&target, move |message| {
        if let Some((done, total)) = pgtrail::revert::progress::parse(message) {
            observed.set_length(total);
            observed.set_position(done);
        }
    })
    .await?;
    require_installed(&client).await?;

    let selector = selector(&client, args).await?;
    let mut request = Request::new(selector);
    request.tables = args.tables.clone();
    request.policy = args.on_conflict.into();
    request.max_rows = args.max_rows;
    request.batch_rows = args.batch_rows;
    request.lock_timeout = args.lock_timeout.clone();

    if args.yes {
        return apply_at_once(common, args, &mut client, &request, &bar).await;
    }
    let plan = pgtrail::revert::plan::plan(&client, &request)
        .await
        .map_err(revert_error)?;
    if common.format == Format::Table {
        print_plan(&request, &plan, Shown::Plan);
    }
    if let Some(code) = refused_or_empty(common, &request, &plan)? {
        return Ok(code);
    }
    let interactive =
        common.format == Format::Table && std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if !interactive {
        if common.format == Format::Json {
            output::print_json(&report(&request, &plan, None))?;
        } else {
            output::say(
                output::DIM,
                "\nthis is the plan; nothing was changed (add --yes to apply it)",
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let answer = output::ask(&format!("\nApply this revert ({} rows)? [y/N] ", plan.rows()))?;
    if !matches!(answer.as_str(), "y" | "Y" | "yes" | "YES" | "Yes") {
        eprintln!("not applied; nothing was changed");
        return Ok(ExitCode::SUCCESS);
    }

    bar.set_length(plan.rows().max(0) as u64);
    progress_style(&bar)?;
    let options = ApplyOptions {
        reason: args.reason.clone(),
        actor: args.as_actor.clone(),
        expected: Some(&plan),
    };
    let applied = apply(&mut client, &request, &options).await;
    bar.finish_and_clear();
    let applied = match applied {
        Ok(applied) => applied,
        Err(error) if error.is_conflict() => {
            output::print_error(&anyhow!(error));
            return Ok(ExitCode::from(1));
        }
        Err(error) => return Err(revert_error(error)),
    };
    print_applied(common, &request, &applied)?;
    Ok(ExitCode::SUCCESS)
}

const NOTHING_TO_REVERT: &str = "\nnothing to revert: the selected changes leave nothing to undo";

/// `--yes`: `pgtrail.revert` plans and applies in one transaction (the plan
/// is not made first apart and then again by the revert: for a large revert
/// that first plan costs about two thirds of the revert itself). What it did
/// is printed after. When it refuses conflicts, the plan is made to list
/// them all (the error names only the first 20).
async fn apply_at_once(
    common: &Common,
    args: &RevertArgs,
    client: &mut Client,
    request: &Request,
    bar: &ProgressBar,
) -> Result<ExitCode> {
    progress_style(bar)?;
    let options = ApplyOptions {
        reason: args.reason.clone(),
        actor: args.as_actor.clone(),
        expected: None,
    };
    let applied = apply(client, request, &options).await;
    bar.finish_and_clear();
    match applied {
        Ok(applied) => {
            if common.format == Format::Table {
                print_plan(request, &applied.plan, Shown::Applied);
            }
            if applied.plan.statements().next().is_none() {
                // (Its transaction wrote nothing.)
                if common.format == Format::Json {
                    output::print_json(&report(request, &applied.plan, None))?;
                } else {
                    output::say(output::GOOD, NOTHING_TO_REVERT);
                }
            } else {
                print_applied(common, request, &applied)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) if error.is_conflict() => {
            let plan = pgtrail::revert::plan::plan(client, request)
                .await
                .map_err(revert_error)?;
            if plan.conflicts().next().is_none() {
                // (Conflicts seen by the revert and gone by the time of
                // this plan: the revert's own message says what they were.)
                output::print_error(&anyhow!(error));
                return Ok(ExitCode::from(1));
            }
            if common.format == Format::Table {
                print_plan(request, &plan, Shown::Plan);
            }
            Ok(refused_or_empty(common, request, &plan)?.unwrap_or(ExitCode::from(1)))
        }
        Err(error) => Err(revert_error(error)),
    }
}

/// Exit 1 with the conflicts when the plan has any (policy refuse), or 0
/// when it leaves nothing to do; `None` when there is something to apply.
fn refused_or_empty(common: &Common, request: &Request, plan: &Plan) -> Result<Option<ExitCode>> {
    let conflicts = plan.conflicts().count();
    if conflicts > 0 {
        if common.format == Format::Json {
            output::print_json(&report(request, plan, None))?;
        }
        output::say(
            output::BAD,
            &format!(
                "\nrefused: {conflicts} conflict(s) with later changes; nothing was changed\n  \
                 help: --on-conflict skip leaves those rows as they are, --on-conflict cascade also reverts the later changes"
            ),
        );
        return Ok(Some(ExitCode::from(1)));
    }
    if plan.statements().next().is_none() {
        if common.format == Format::Json {
            output::print_json(&report(request, plan, None))?;
        } else {
            output::say(output::GOOD, NOTHING_TO_REVERT);
        }
        return Ok(Some(ExitCode::SUCCESS));
    }
    Ok(None)
}

fn progress_style(bar: &ProgressBar) -> Result<()> {
    bar.set_style(
        ProgressStyle::with_template("{spinner} reverting {pos}/{len} rows [{bar:30}] {eta}")
            .map_err(|e| anyhow!("progress bar: {e}"))?
            .progress_chars("=> "),
    );
    Ok(())
}

/// What an applied revert did: its report (JSON) or a line (table).
fn print_applied(common: &Common, request: &Request, applied: &Applied) -> Result<()> {
    match common.format {
        Format::Json => output::print_json(&report(request, &applied.plan, Some(applied.txid)))?,
        Format::Table => output::say(
            output::GOOD,
            &format!(
                "\nreverted: {} row(s) in {} statement(s), in transaction {}\n  (`pgtrail tx {}` shows it; it can itself be reverted)",
                applied.plan.rows(),
                applied.plan.statements().count(),
                applied.txid,
                applied.txid
            ),
        ),
    }
    Ok(())
}

/// The selector from the flags; times resolved to moments by the server.
async fn selector(client: &Client, args: &RevertArgs) -> Result<Selector> {
    if !args.tx.is_empty() {
        return Ok(Selector::Transactions(args.tx.clone()));
    }
    if let Some(row) = &args.row {
        let [table, key] = row.as_slice() else {
            bail!("--row takes TABLE KEY\n  help: e.g. --row users 42");
        };
        let audited = resolve_table(client, table).await?;
        let key = audited.key(key)?;
        let to = match (&args.to_time, args.to_change) {
            (Some(time), _) => RowTarget::Time(moment(client, time).await?),
            (None, Some(id)) => RowTarget::AfterChange(id),
            (None, None) => RowTarget::LastChange,
        };
        return Ok(Selector::Row {
            table: audited.display(),
            key,
            to,
        });
    }
    let since = match &args.since {
        Some(since) => moment(client, since).await?,
        None => bail!("--actor and --context need --since\n  help: e.g. --since '2h ago' --until '1h ago'"),
    };
    let until = match &args.until {
        Some(until) => Some(moment(client, until).await?),
        None => None,
    };
    if let Some(actor) = &args.actor {
        return Ok(Selector::Actor {
            actor: actor.clone(),
            since,
            until,
        });
    }
    let mut context = serde_json::Map::new();
    for pair in &args.context {
        let (key, value) = pgtrail::query::parse_context_filter(pair)?;
        context.insert(key, Value::String(value));
    }
    Ok(Selector::Context {
        context,
        since,
        until,
    })
}

/// A moment typed on the command line, as the server reads it (RFC 3339, UTC).
async fn moment(client: &Client, input: &str) -> Result<String> {
    let time = pgtrail::query::parse_time(input)?;
    let sql = format!(
        "SELECT to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
        time.sql(1)
    );
    Ok(client
        .query_one(&sql, &[&time.value()])
        .await
        .map_err(db_error)?
        .get(0))
}

fn revert_error(error: RevertError) -> anyhow::Error {
    anyhow!(error)
}

fn report(request: &Request, plan: &Plan, txid: Option<i64>) -> Value {
    json!({
        "selector": request.to_json(),
        "on_conflict": request.policy.as_str(),
        "applied": txid.is_some(),
        "txid": txid,
        "rows": plan.rows(),
        "rows_per_table": plan.rows_per_table(),
        "statements": plan.statements().count(),
        "change_ids": plan.change_ids(),
        "per_table": plan.per_table().iter().map(|(table, ops)| {
            (table.clone(), Value::Object(ops.iter().map(|(op, n)| (op.as_str().to_string(), json!(n))).collect()))
        }).collect::<serde_json::Map<_, _>>(),
        "conflicts": plan.conflicts().count(),
        "plan": plan.items,
    })
}

/// Whether [`print_plan`] shows a plan before it is applied or what a
/// revert applied with `--yes` did.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shown {
    Plan,
    Applied,
}

fn print_plan(request: &Request, plan: &Plan, shown: Shown) {
    let mut ids: Vec<i64> = plan
        .items
        .iter()
        .filter(|i| i.operation != Operation::Cascade)
        .flat_map(|i| i.change_ids.iter().copied())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let what = match &request.selector {
        Selector::Transactions(txids) => format!(
            "transaction{} {}",
            if txids.len() == 1 { "" } else { "s" },
            txids.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
        ),
        Selector::Row { table, key, .. } => format!("{table} {}", key_text(key)),
        Selector::Actor { actor, since, until } => {
            format!(
                "{actor}'s changes from {since}{}",
                until.as_ref().map(|u| format!(" to {u}")).unwrap_or_default()
            )
        }
        Selector::Context { context, since, .. } => {
            format!("changes of {} from {since}", Value::Object(context.clone()))
        }
    };
    output::say(
        output::HEADER,
        &format!(
            "Revert of {what}: {} change(s){}, {} row(s) in {} statement(s)",
            ids.len(),
            id_range(&ids),
            plan.rows(),
            plan.statements().count()
        ),
    );
    if plan.statements().next().is_some() {
        let mut table = vec![["step", "table", "operation", "rows", "changes", "keys"].map(String::from)];
        for s in plan.statements() {
            table.push([
                s.step.map(|n| n.to_string()).unwrap_or_default(),
                s.table.clone().unwrap_or_default(),
                operation_text(s),
                s.rows.unwrap_or(0).to_string(),
                short_ids(&s.change_ids),
                match (shown, &s.key) {
                    // (What a revert applied: the statements it wrote
                    // straight from its working tables come back without
                    // their keys; their changes name the rows.)
                    (Shown::Applied, None) => "-".to_string(),
                    (_, key) => sample_keys(key.as_ref()),
                },
            ]);
        }
        let style = |column: usize, cell: &str| match (column, cell.split(' ').next()) {
            (2, Some("INSERT")) => output::GOOD,
            (2, Some("UPDATE" | "MOVE")) => output::WARN,
            (2, Some("DELETE")) => output::BAD,
            (4, _) => output::DIM,
            _ => output::PLAIN,
        };
        output::print_styled(&table, true, style);
        output::say(
            output::HEADER,
            match shown {
                Shown::Plan => "\nStatements (their rows are bound as $1; --format json shows them):",
                // (The revert writes most statements' rows straight from
                // its working tables and returns them without those rows.)
                Shown::Applied => "\nStatements run (their rows were bound as $1):",
            },
        );
        let limit = output::width_limit();
        for s in plan.statements() {
            let line = format!("  {}. {}", s.step.unwrap_or(0), s.sql.as_deref().unwrap_or(""));
            // On a terminal, one line each (whole in --format json).
            println!(
                "{}",
                limit.map_or(line.clone(), |width| output::cut(&line, width))
            );
            if let Some(note) = &s.note {
                output::say(output::DIM, &format!("     {note}"));
            }
        }
        let per_table: Vec<String> = plan
            .per_table()
            .iter()
            .map(|(table, ops)| {
                let ops: Vec<String> = ops.iter().map(|(op, n)| format!("{} {n}", op.as_str())).collect();
                format!("{table}: {}", ops.join(", "))
            })
            .collect();
        output::say(output::HEADER, "\nPer table:");
        for line in per_table {
            println!("  {line}");
        }
    }
    section(
        plan,
        Operation::Lost,
        "Values that cannot be restored",
        output::WARN,
    );
    section(plan, Operation::Nothing, "Nothing to undo", output::DIM);
    section(
        plan,
        Operation::Skip,
        "Left as they are (--on-conflict skip)",
        output::WARN,
    );
    section(
        plan,
        Operation::Cascade,
        "Reverted too (--on-conflict cascade)",
        output::WARN,
    );
    let conflicts: Vec<&PlanItem> = plan.conflicts().collect();
    if !conflicts.is_empty() {
        output::say(output::BAD, &format!("\nConflicts ({}):", conflicts.len()));
        let mut table = vec![["table", "key", "later change", "when", "by", "why"].map(String::from)];
        for c in conflicts {
            let conflict = c.conflict.clone().unwrap_or(Value::Null);
            let text = |field: &str| {
                conflict
                    .get(field)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            table.push([
                c.table.clone().unwrap_or_default(),
                c.key.as_ref().map(key_text).unwrap_or_default(),
                conflict
                    .get("change_id")
                    .map(|id| format!("{id} {}", text("op")))
                    .unwrap_or_default(),
                text("changed_at"),
                text("actor"),
                text("message"),
            ]);
        }
        output::print_styled(&table, true, |column, _| match column {
            2 => output::BAD,
            3 => output::DIM,
            _ => output::PLAIN,
        });
    }
}

/// A statement's operation, and whether it parks rows on a temporary key
/// or moves them back from one (their rows are counted once, at the latter).
fn operation_text(statement: &PlanItem) -> String {
    match statement.kind {
        Some(StatementKind::Park) => format!("{} (to a temporary key)", statement.operation.as_str()),
        Some(StatementKind::Unpark) => format!("{} (from a temporary key)", statement.operation.as_str()),
        _ => statement.operation.as_str().to_string(),
    }
}

fn section(plan: &Plan, operation: Operation, title: &str, style: anstyle::Style) {
    let items: Vec<&PlanItem> = plan.of(operation).collect();
    if items.is_empty() {
        return;
    }
    output::say(style, &format!("\n{title} ({}):", items.len()));
    for item in items {
        let key = item.key.as_ref().map(key_text).unwrap_or_default();
        println!(
            "  {} {key}  {}  (changes {})",
            item.table.as_deref().unwrap_or(""),
            item.note.as_deref().unwrap_or(""),
            short_ids(&item.change_ids)
        );
    }
}

fn id_range(ids: &[i64]) -> String {
    match (ids.first(), ids.last()) {
        (Some(first), Some(last)) if first != last => format!(" (ids {first}..{last})"),
        (Some(first), _) => format!(" (id {first})"),
        _ => String::new(),
    }
}

fn short_ids(ids: &[i64]) -> String {
    let shown: Vec<String> = ids.iter().take(6).map(i64::to_string).collect();
    if ids.len() > 6 {
        format!("{} ... ({} in all)", shown.join(", "), ids.len())
    } else {
        shown.join(", ")
    }
}

fn sample_keys(keys: Option<&Value>) -> String {
    match keys {
        Some(Value::Array(keys)) => {
            let shown: Vec<String> = keys.iter().take(3).map(key_text).collect();
            if keys.len() > 3 {
                format!("{} ... ({} in all)", shown.join(" "), keys.len())
            } else {
                shown.join(" ")
            }
        }
        Some(key) => key_text(key),
        None => String::new(),
    }
}
