//! The CPU priority of the archive's work: `Low` runs the threads that
//! decode the partition, encode the Parquet file and read it back at the
//! lowest scheduling priority (nice 19), so that on a busy machine the
//! application's backends get the CPU first; the server backend that
//! sends the partition is not lowered, but can send only as fast as they
//! read. Only threads made for that work are lowered
//! (an unprivileged process cannot raise its priority back): the caller's
//! thread, which holds the trail's lock to detach and drop a partition,
//! keeps its own. Sealing, which `maintain` does first, is given the
//! priority too ([`crate::Sealer`]): pgtrail's seal hashes on a thread of
//! its own at nice 19 and paces its reading with [`Pacer`].
//!
//! The backend is paced instead ([`Pacer`]): under `Low` the partition is
//! read in bursts, each followed by a pause, so the backend (which nice
//! cannot reach: it is the server's process) sends the partition only
//! part of the time and the application's backends have the cores
//! meanwhile. The pause grows while the machine's cores stay busy (up to
//! 8 times the burst) and shrinks back to the burst's length when they
//! are idle: on a busy machine the work takes many times as long, on an
//! idle one about twice. Nice alone is not enough: with autogroup
//! scheduling (Linux's default on many systems), nice orders threads only
//! within their session, and the server's backends are in its own.

use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::Serialize;

/// The scheduling priority of an archive's work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// The priority of the calling process.
    #[default]
    Normal,
    /// The lowest (nice 19): the archive takes the CPU that others leave.
    Low,
}

impl FromStr for Priority {
    type Err = String;

    fn from_str(s: &str) -> Result<Priority, String> {
        match s {
            "normal" => Ok(Priority::Normal),
            "low" => Ok(Priority::Low),
            other => Err(format!("priority `{other}`: expected `normal` or `low`")),
        }
    }
}

impl std::fmt::Display for Priority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Priority::Normal => "normal",
            Priority::Low => "low",
        })
    }
}

/// The nice value of [`Priority::Low`].
const LOWEST: i32 = 19;

impl Priority {
    /// Applies the priority to the calling thread, which must be a thread
    /// made for this work (it is never raised back). Best effort: a
    /// system that refuses leaves the thread as it was.
    pub fn enter(self) {
        if self == Priority::Low {
            lower_this_thread();
        }
    }

    /// Runs `work` on a thread of its own at this priority and returns
    /// what it returned (the caller waits).
    pub(crate) fn run<T: Send + 'static>(self, work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        std::thread::spawn(move || {
            self.enter();
            work()
        })
        .join()
        .ok()
    }
}

/// A burst of reading under [`Priority::Low`] before a pause.
const BURST: Duration = Duration::from_millis(20);

/// The longest pause under [`Priority::Low`], in bursts: the work then
/// runs at least a ninth of the time, so it always finishes.
const MOST_BURSTS: u32 = 8;

/// Paces reading the partition (or the changes to seal): under
/// [`Priority::Low`], after each burst of at least [`BURST`], a pause (a
/// COPY or query whose data is not read stops the backend once the
/// socket's buffers are full); under `Normal`, no pause.
///
/// The pause adapts to how busy the machine is: it starts as long as the
/// burst, and after each pause the machine's idle CPU during it is read
/// (Linux: `/proc/stat`, what the others left while this work and its
/// backend waited). Less than half a core idle: the next pause is twice
/// as long (up to [`MOST_BURSTS`] bursts); a core or more idle: half as
/// long (down to one burst). So on cores the application keeps busy the
/// work runs about a ninth of the time (and takes about nine times as
/// long), and on an idle
/// machine it runs half the time. The signal is the host pgtrail runs on:
/// the database's when `maintain` runs beside the server (cron there);
/// elsewhere the pause stays what that host's load makes it.
pub struct Pacer {
    on: bool,
    since: Instant,
    /// The next pause, in bursts.
    bursts: u32,
    cpu: Option<CpuTimes>,
    /// Time paused in all.
    pub paused: Duration,
    /// Pauses made.
    pub pauses: u32,
    /// The longest pause asked for, in bursts.
    pub most_bursts: u32,
}

impl Pacer {
    pub fn new(priority: Priority) -> Pacer {
        Pacer {
            on: priority == Priority::Low,
            since: Instant::now(),
            bursts: 1,
            cpu: None,
            paused: Duration::ZERO,
            pauses: 0,
            most_bursts: 0,
        }
    }

    /// Called between pieces of the reading: pauses when a burst is over.
    pub async fn pace(&mut self) {
        if let Some(pause) = self.due() {
            tokio::time::sleep(pause).await;
            self.paused_for(pause);
        }
    }

    /// [`Pacer::pace`] for a thread that may block (reading a file back).
    pub fn pace_blocking(&mut self) {
        if let Some(pause) = self.due() {
            std::thread::sleep(pause);
            self.paused_for(pause);
        }
    }

    /// The pause due now, if a burst is over; reads the CPU times the
    /// pause will be judged against.
    fn due(&mut self) -> Option<Duration> {
        if !self.on {
            return None;
        }
        let burst = self.since.elapsed();
        if burst < BURST {
            return None;
        }
        self.cpu = CpuTimes::read();
        self.most_bursts = self.most_bursts.max(self.bursts);
        Some(burst * self.bursts)
    }

    /// After a pause: the next one's length from the idle CPU during it.
    fn paused_for(&mut self, pause: Duration) {
        self.paused += pause;
        self.pauses += 1;
        if let (Some(before), Some(after)) = (self.cpu.take(), CpuTimes::read()) {
            self.bursts = next_bursts(self.bursts, after.idle_cores_since(&before));
        }
        self.since = Instant::now();
    }
}

/// The next pause, in bursts, after one during which `idle` cores were
/// idle on average.
fn next_bursts(bursts: u32, idle: f64) -> u32 {
    if idle < 0.5 {
        (bursts * 2).min(MOST_BURSTS)
    } else if idle >= 1.0 {
        (bursts / 2).max(1)
    } else {
        bursts
    }
}

/// The machine's CPU times (Linux `/proc/stat`, first line), in ticks.
#[derive(Debug, Clone, Copy)]
struct CpuTimes {
    /// Idle and waiting for I/O.
    idle: u64,
    /// All of them (user, nice, system, idle, iowait, irq, softirq, steal).
    total: u64,
    cores: u32,
}

impl CpuTimes {
    #[cfg(target_os = "linux")]
    fn read() -> Option<CpuTimes> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        CpuTimes::parse(&stat)
    }

    #[cfg(not(target_os = "linux"))]
    fn read() -> Option<CpuTimes> {
        None
    }

    fn parse(stat: &str) -> Option<CpuTimes> {
        let mut lines = stat.lines();
        let first = lines.next()?.strip_prefix("cpu ")?;
        let ticks: Vec<u64> = first
            .split_whitespace()
            .take(8)
            .map(|t| t.parse().ok())
            .collect::<Option<_>>()?;
        if ticks.len() < 5 {
            return None;
        }
        let cores = lines
            .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
            .count();
        Some(CpuTimes {
            idle: ticks[3] + ticks[4],
            total: ticks.iter().sum(),
            cores: u32::try_from(cores).ok().filter(|&c| c > 0)?,
        })
    }

    /// Cores idle on average since `before` (none when no tick passed:
    /// the pause was shorter than the clock's resolution, and says
    /// nothing).
    fn idle_cores_since(&self, before: &CpuTimes) -> f64 {
        let total = self.total.saturating_sub(before.total);
        if total == 0 {
            // No tick: keep the pause as it is.
            return 0.75;
        }
        let idle = self.idle.saturating_sub(before.idle);
        idle as f64 / total as f64 * f64::from(self.cores)
    }
}

/// Linux keeps a nice value per thread: `setpriority(PRIO_PROCESS, 0)`
/// sets the calling thread's alone.
#[cfg(target_os = "linux")]
fn lower_this_thread() {
    // SAFETY: setpriority takes plain integers and touches no memory.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, LOWEST);
    }
}

/// Elsewhere the call would lower the whole process, the caller's thread
/// included: nothing is done.
#[cfg(not(target_os = "linux"))]
fn lower_this_thread() {
    let _ = LOWEST;
}

/// This thread's nice value (Linux), for tests.
#[cfg(all(test, target_os = "linux"))]
fn this_thread_nice() -> i32 {
    // SAFETY: as above; getpriority returns the value (errno unused here:
    // the call on the calling thread cannot fail).
    unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print() {
        for p in [Priority::Normal, Priority::Low] {
            assert_eq!(p.to_string().parse::<Priority>(), Ok(p));
        }
        assert!("idle".parse::<Priority>().is_err());
    }

    /// Low pauses after each burst (at least as long as the burst);
    /// Normal never.
    #[tokio::test]
    async fn low_pauses_at_least_as_long_as_it_read() {
        let mut normal = Pacer::new(Priority::Normal);
        std::thread::sleep(BURST);
        normal.pace().await;
        assert_eq!(normal.paused, Duration::ZERO);
        let mut low = Pacer::new(Priority::Low);
        low.pace().await;
        assert_eq!(low.paused, Duration::ZERO, "no pause before a burst is over");
        std::thread::sleep(BURST);
        let started = Instant::now();
        low.pace().await;
        assert!(low.paused >= BURST);
        assert!(started.elapsed() >= low.paused);
        assert_eq!(low.pauses, 1);
        std::thread::sleep(BURST);
        low.pace_blocking();
        assert!(low.paused >= 2 * BURST);
        assert_eq!(low.pauses, 2);
    }

    /// Busy cores lengthen the pause (doubling, up to 8 bursts), idle
    /// ones shorten it (down to one burst).
    #[test]
    fn the_pause_follows_the_idle_cpu() {
        let mut bursts = 1;
        for expected in [2, 4, 8, 8] {
            bursts = next_bursts(bursts, 0.1);
            assert_eq!(bursts, expected);
        }
        assert_eq!(next_bursts(bursts, 0.7), 8, "between half a core and one: kept");
        for expected in [4, 2, 1, 1] {
            bursts = next_bursts(bursts, 1.5);
            assert_eq!(bursts, expected);
        }
    }

    /// The idle cores between two reads of `/proc/stat`.
    #[test]
    fn idle_cores_from_proc_stat() {
        let before = CpuTimes::parse(
            "cpu  100 0 50 1000 10 0 0 0 0 0\ncpu0 50 0 25 500 5 0 0 0 0 0\ncpu1 50 0 25 500 5 0 0 0 0 0\nintr 1\n",
        )
        .expect("parses");
        assert_eq!(before.cores, 2);
        // 100 ticks later over both cores: 25 idle, 5 waiting.
        let after = CpuTimes::parse(
            "cpu  160 0 60 1025 15 0 0 0 0 0\ncpu0 80 0 30 512 7 0 0 0 0 0\ncpu1 80 0 30 513 8 0 0 0 0 0\n",
        )
        .expect("parses");
        assert!((after.idle_cores_since(&before) - 0.6).abs() < 1e-9);
        assert!(CpuTimes::parse("intr 1\n").is_none());
    }

    /// Low lowers the work's own thread, never the caller's.
    #[cfg(target_os = "linux")]
    #[test]
    fn low_work_runs_at_nice_19_on_its_own_thread() {
        let before = this_thread_nice();
        assert_eq!(Priority::Low.run(this_thread_nice), Some(LOWEST));
        assert_eq!(Priority::Normal.run(this_thread_nice), Some(before));
        assert_eq!(this_thread_nice(), before);
    }
}
