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
//! read in bursts, each followed by a pause as long as it lasted, so the
//! backend (which nice cannot reach: it is the server's process) sends the
//! partition at most half the time and the application's backends have
//! the cores meanwhile; the archive takes about twice as long.

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

/// Paces reading the partition: under [`Priority::Low`], after each burst
/// of at least [`BURST`], a pause as long as the burst (a COPY whose data
/// is not read stops the backend once the socket's buffers are full);
/// under `Normal`, no pause.
pub struct Pacer {
    on: bool,
    since: Instant,
    /// Time paused in all.
    pub paused: Duration,
}

impl Pacer {
    pub fn new(priority: Priority) -> Pacer {
        Pacer {
            on: priority == Priority::Low,
            since: Instant::now(),
            paused: Duration::ZERO,
        }
    }

    /// Called between pieces of the reading: pauses when a burst is over.
    pub async fn pace(&mut self) {
        if !self.on {
            return;
        }
        let burst = self.since.elapsed();
        if burst >= BURST {
            tokio::time::sleep(burst).await;
            self.paused += burst;
            self.since = Instant::now();
        }
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

    /// Low pauses after each burst as long as the burst; Normal never.
    #[tokio::test]
    async fn low_pauses_as_long_as_it_read() {
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
