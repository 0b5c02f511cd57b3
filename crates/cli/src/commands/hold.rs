//! `pgtrail hold add|list|release`: legal holds that keep ranges of the
//! trail in the database (archive and maintain skip what they match).

use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};
use tokio_postgres::Client;

use super::log::resolve_table;
use crate::cli::{Common, Format, HoldAction};
use crate::output;

async fn moment(client: &Client, input: &str, flag: &str) -> Result<DateTime<Utc>> {
    let time = pgtrail::query::parse_time(input).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
    let row = client
        .query_one(&format!("SELECT {}", time.sql(1)), &[&time.value()])
        .await
        .map_err(|e| anyhow::anyhow!("{flag}: PostgreSQL cannot read `{input}` as a time: {e}"))?;
    Ok(row.get(0))
}

pub async fn run(common: &Common, action: &HoldAction) -> Result<ExitCode> {
    let client = super::connect(common).await?;
    match action {
        HoldAction::Add {
            table,
            key,
            from,
            until,
            reason,
            ..
        } => {
            let audited = match table {
                Some(table) => Some(resolve_table(&client, table).await?),
                None => None,
            };
            let pk = match (&audited, key) {
                (Some(audited), Some(key)) => Some(audited.key(key)?),
                (None, Some(_)) => anyhow::bail!(
                    "--key needs --table\n  help: pgtrail hold add --table TABLE --key KEY --reason TEXT"
                ),
                _ => None,
            };
            let hold = pgtrail::archive::holds::NewHold {
                table: audited.as_ref().map(|a| (a.schema.clone(), a.name.clone())),
                pk,
                from_at: match from {
                    Some(t) => Some(moment(&client, t, "--from").await?),
                    None => None,
                },
                until_at: match until {
                    Some(t) => Some(moment(&client, t, "--until").await?),
                    None => None,
                },
                reason: reason.clone(),
            };
            let id = pgtrail::archive::holds::add(&client, &hold).await?;
            match common.format {
                Format::Json => output::print_json(&serde_json::json!({ "hold": id }))?,
                Format::Table => output::say(
                    output::GOOD,
                    &format!(
                        "hold {id} added: archive and maintain keep what it matches until `pgtrail hold release {id}`"
                    ),
                ),
            }
        }
        HoldAction::List { all, .. } => {
            let holds = pgtrail::archive::holds::list(&client, *all).await?;
            match common.format {
                Format::Json => output::print_json(&serde_json::to_value(&holds)?)?,
                Format::Table if holds.is_empty() => output::say(output::DIM, "no active hold"),
                Format::Table => {
                    let mut rows = vec![[
                        "id".to_string(),
                        "table".to_string(),
                        "key".to_string(),
                        "from".to_string(),
                        "until".to_string(),
                        "reason".to_string(),
                        "status".to_string(),
                    ]];
                    for h in holds {
                        rows.push([
                            h.id.to_string(),
                            h.table.unwrap_or_else(|| "(every table)".to_string()),
                            h.pk.map(|k| k.to_string()).unwrap_or_else(|| "-".to_string()),
                            h.from_at
                                .map(|t| t.to_rfc3339())
                                .unwrap_or_else(|| "-".to_string()),
                            h.until_at
                                .map(|t| t.to_rfc3339())
                                .unwrap_or_else(|| "-".to_string()),
                            h.reason,
                            match h.released_at {
                                Some(at) => format!("released {}", at.to_rfc3339()),
                                None => format!("active since {}", h.created_at.to_rfc3339()),
                            },
                        ]);
                    }
                    output::print_styled(&rows, true, |_, _| output::PLAIN);
                }
            }
        }
        HoldAction::Release { id, reason, .. } => {
            pgtrail::archive::holds::release(&client, *id, reason).await?;
            match common.format {
                Format::Json => output::print_json(&serde_json::json!({ "released": id }))?,
                Format::Table => output::say(output::GOOD, &format!("hold {id} released")),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
