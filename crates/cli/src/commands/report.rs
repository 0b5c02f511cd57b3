//! `pgtrail report`: activity by actor, by table and kind of change, and
//! bursts (more than N changes by one actor within M minutes), for a period.

use std::process::ExitCode;

use anyhow::{Result, bail};
use pgtrail::query::{Param, TimeArg};
use serde_json::{Value, json};

use super::log::{actor_text, cell, check_window, db_error, require_installed, time, time_text};
use crate::cli::{Common, Format, OutputFormat, ReportArgs, ReportKind};
use crate::output;

/// The retention horizon when the period starts before it (or has no
/// start): the report then covers only what the database still holds.
async fn horizon_within(
    client: &tokio_postgres::Client,
    since: Option<&TimeArg>,
) -> Result<Option<super::Horizon>> {
    let Some(horizon) = super::Horizon::read(client).await? else {
        return Ok(None);
    };
    let Some(since) = since else {
        return Ok(Some(horizon));
    };
    let params: Vec<Param> = vec![Box::new(since.value()), Box::new(horizon.until)];
    let before: bool = client
        .query_one(
            &format!("SELECT {} < $2::timestamptz", since.sql(1)),
            &pgtrail::query::as_params(&params),
        )
        .await
        .map_err(super::log::db_error)?
        .get(0);
    Ok(before.then_some(horizon))
}

pub async fn run(common: &Common, args: &ReportArgs) -> Result<ExitCode> {
    if args.kind != ReportKind::Activity {
        if !args.show.is_empty() {
            bail!("--show is for the activity report\n  help: leave --show out, or drop --kind");
        }
        return super::compliance::run(common, args).await;
    }
    if common.output == OutputFormat::Csv {
        bail!(
            "the activity report prints no CSV\n  help: use --format json, or a compliance kind (--kind population|privileged|schema|subject|access)"
        );
    }
    if args.bundle.is_some() || args.table.is_some() || args.subject.is_some() {
        bail!(
            "--bundle, TABLE KEY and --subject are for the compliance reports\n  help: add --kind population|privileged|schema|subject|access"
        );
    }
    let (burst, window, show) = (args.burst, args.window, &args.show);
    let since = time(args.since.as_deref())?;
    let until = time(args.until.as_deref())?;
    let client = super::connect(common).await?;
    require_installed(&client).await?;
    check_window(&client, since.as_ref(), until.as_ref()).await?;
    let horizon = horizon_within(&client, since.as_ref()).await?;

    let pgtrail::query::Activity {
        by_actor,
        by_table,
        bursts,
    } = pgtrail::query::activity(
        &client,
        &pgtrail::query::ActivityRequest {
            since: since.as_ref(),
            until: until.as_ref(),
            show,
            burst,
            window_minutes: window,
        },
    )
    .await
    .map_err(db_error)?;

    match common.format {
        Format::Json => output::print_json(&json!({
            "since": since.as_ref().map(TimeArg::value),
            "until": until.as_ref().map(TimeArg::value),
            "burst": {"more_than": burst, "window_minutes": window},
            "by_actor": by_actor,
            "by_table": by_table,
            "bursts": bursts,
            "horizon": horizon.as_ref().map(super::Horizon::json),
        }))?,
        Format::Table => {
            if let Some(horizon) = &horizon {
                output::say(output::DIM, &horizon.note());
            }
            output::say(output::HEADER, "Activity by actor");
            if by_actor.is_empty() {
                output::say(output::DIM, "  no changes in this period");
            } else {
                let mut header: Vec<String> = ["ACTOR", "CHANGES", "TRANSACTIONS", "FIRST", "LAST"]
                    .map(String::from)
                    .to_vec();
                header.extend(show.iter().map(|k| k.to_uppercase()));
                let mut rows = vec![header];
                rows.extend(by_actor.iter().map(|a| {
                    let mut line = vec![
                        actor_text(a),
                        cell(&a["changes"]),
                        cell(&a["transactions"]),
                        time_text(&a["first_change"]),
                        time_text(&a["last_change"]),
                    ];
                    line.extend((0..show.len()).map(|i| cell(&a[format!("show_{i}").as_str()])));
                    line
                }));
                output::print_table(
                    &rows,
                    true,
                    |_, _| output::PLAIN,
                    output::width_limit(),
                    &[1, 2, 3, 4],
                );
            }
            println!();
            output::say(output::HEADER, "Changes by table and kind");
            if !by_table.is_empty() {
                let mut rows = vec![["TABLE", "OP", "CHANGES"].map(String::from)];
                rows.extend(by_table.iter().map(|t| {
                    [
                        format!("{}.{}", cell(&t["table_schema"]), cell(&t["table_name"])),
                        cell(&t["op"]),
                        cell(&t["changes"]),
                    ]
                }));
                output::print_styled(&rows, true, |column, text| {
                    super::log::op_style(column == 1, text)
                });
            }
            println!();
            output::say(
                output::HEADER,
                &format!("Bursts: more than {burst} changes by one actor within {window} min"),
            );
            if bursts.is_empty() {
                output::say(output::DIM, "  none");
            } else {
                let mut rows = vec![["ACTOR", "CHANGES", "FROM", "TO"].map(String::from)];
                rows.extend(bursts.iter().map(|b: &Value| {
                    [
                        actor_text(b),
                        cell(&b["changes"]),
                        time_text(&b["first_change"]),
                        time_text(&b["last_change"]),
                    ]
                }));
                output::print_styled(&rows, true, |column, _| {
                    if column == 1 { output::WARN } else { output::PLAIN }
                });
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
