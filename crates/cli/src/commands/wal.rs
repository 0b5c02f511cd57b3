//! `pgtrail wal rotate-key|acknowledge`: operating WAL mode's signed
//! context messages.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use crate::cli::{Common, Format, WalAction};
use crate::output;

pub async fn run(common: &Common, action: &WalAction) -> Result<ExitCode> {
    let mut client = super::connect(common).await?;
    match action {
        WalAction::RotateKey { wait, .. } => {
            let rotation =
                pgtrail::follow::operations::rotate_key(&mut client, Duration::from_secs(*wait)).await?;
            match common.format {
                Format::Json => output::print_json(&serde_json::json!({
                    "rotated": true,
                    "retired_at": rotation.retired_at,
                    "still_open": rotation.still_open,
                    "dropped_keys": rotation.dropped,
                }))?,
                Format::Table => match &rotation.retired_at {
                    Some(at) => output::say(
                        output::GOOD,
                        &format!(
                            "ok: a new key signs context messages; the old one verifies only messages before {at}"
                        ),
                    ),
                    None => output::say(
                        output::WARN,
                        &format!(
                            "warning: a new key signs context messages, but {} transaction(s) open at the rotation \
                             had not ended after {wait} s: the old key still verifies messages at any position; \
                             run pgtrail wal rotate-key again once they have ended",
                            rotation.still_open
                        ),
                    ),
                },
            }
            Ok(if rotation.retired_at.is_some() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        WalAction::Acknowledge { .. } => {
            let acknowledged = pgtrail::follow::operations::acknowledge_rejected(&client).await?;
            match common.format {
                Format::Json => output::print_json(&serde_json::json!({ "acknowledged": acknowledged }))?,
                Format::Table => output::say(
                    output::GOOD,
                    &format!(
                        "ok: {acknowledged} ignored context message(s) acknowledged; pgtrail check reports only later ones"
                    ),
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
