//! `pgtrail maintain`: one run of everything retention needs, for cron:
//! make the partitions ahead, seal, archive and drop what is due. Runs
//! under a session advisory lock, so a second run at the same time does
//! nothing and says so; every step is idempotent, so a run that stopped
//! anywhere is finished by the next.

use pgtrail_config::Retention;
use serde::Serialize;
use tokio_postgres::Client;

use crate::archive::{ArchiveOptions, Outcome, archive};
use crate::partitions::{missing, premake};
use crate::priority::Priority;
use crate::{ArchiveError, Sealer};

/// The advisory lock key of maintain ("pgtrail-maint").
const MAINTAIN_LOCK: i64 = 0x7067_7472_6d61_696e;

/// What maintain did (or, with dry_run, would do).
#[derive(Debug, Clone, Serialize, Default)]
pub struct MaintainReport {
    pub dry_run: bool,
    /// Another maintain held the lock: nothing was done.
    pub busy: bool,
    pub partitions_made: Vec<String>,
    /// The seal made, as its report line, if any.
    pub sealed: Option<String>,
    pub archives: Vec<Outcome>,
}

/// Runs maintain; `priority` is the archive's (see [`Priority`]).
pub async fn maintain(
    client: &mut Client,
    retention: &Retention,
    archive_dir: Option<&std::path::Path>,
    sealer: Option<&dyn Sealer>,
    dry_run: bool,
    priority: Priority,
    progress: &mut dyn FnMut(&str),
) -> Result<MaintainReport, ArchiveError> {
    let mut report = MaintainReport {
        dry_run,
        ..MaintainReport::default()
    };
    let locked: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&MAINTAIN_LOCK])
        .await
        .map_err(ArchiveError::database("taking maintain's lock"))?
        .get(0);
    if !locked {
        report.busy = true;
        return Ok(report);
    }
    let result = steps(
        client,
        retention,
        archive_dir,
        sealer,
        priority,
        progress,
        &mut report,
    )
    .await;
    let unlocked = client
        .query_one("SELECT pg_advisory_unlock($1)", &[&MAINTAIN_LOCK])
        .await
        .map_err(ArchiveError::database("releasing maintain's lock"));
    result?;
    unlocked?;
    Ok(report)
}

async fn steps(
    client: &mut Client,
    retention: &Retention,
    archive_dir: Option<&std::path::Path>,
    sealer: Option<&dyn Sealer>,
    priority: Priority,
    progress: &mut dyn FnMut(&str),
    report: &mut MaintainReport,
) -> Result<(), ArchiveError> {
    let dry_run = report.dry_run;
    progress("making partitions ahead");
    report.partitions_made = if dry_run {
        missing(client, retention)
            .await?
            .into_iter()
            .map(|(from, until)| format!("{} .. {}", from.format("%Y-%m-%d"), until.format("%Y-%m-%d")))
            .collect()
    } else {
        premake(client, retention).await?
    };
    crate::failpoint("maintain:premade");
    if let Some(sealer) = sealer
        && !dry_run
    {
        progress("sealing");
        report.sealed = Some(sealer.seal(client, priority).await.map_err(ArchiveError::Seal)?);
        crate::failpoint("maintain:sealed");
    }
    let Some(dir) = archive_dir else {
        return Err(ArchiveError::Usage(
            "no archive directory: set `archive_dir` in [retention] or pass --archive-dir DIR".to_string(),
        ));
    };
    progress("archiving partitions past retention");
    let options = ArchiveOptions {
        dir: dir.to_path_buf(),
        keep: retention.keep,
        tables: retention.tables.clone(),
        dry_run,
        priority,
    };
    report.archives = archive(client, &options, sealer, progress).await?;
    Ok(())
}
