//! CPU time of a server backend, from `/proc/<pid>/stat` in clock ticks or
//! `/proc/<pid>/schedstat` in nanoseconds (we run on the same machine as the
//! throwaway cluster), and of the calling thread.

use std::process::Command;

use anyhow::{Context, Result};

/// User plus system CPU time of process `pid`, in clock ticks.
pub fn cpu_ticks(pid: i32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    parse_cpu_ticks(&text).with_context(|| format!("unexpected contents of {path}: {text}"))
}

/// User plus system CPU time of the calling thread, in clock ticks.
pub fn thread_cpu_ticks() -> Result<u64> {
    let path = "/proc/thread-self/stat";
    let text = std::fs::read_to_string(path).with_context(|| format!("read {path}"))?;
    parse_cpu_ticks(&text).with_context(|| format!("unexpected contents of {path}: {text}"))
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line. The command
/// name (field 2) is in parentheses and may contain spaces, so fields are
/// counted after its closing parenthesis.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace().skip(11); // field 3 is index 0
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time of process `pid` (its main thread: a backend has one), in
/// nanoseconds: the first field of `/proc/<pid>/schedstat`. Finer than
/// [`cpu_ticks`] (10 ms), for calls of a few milliseconds.
pub fn cpu_nanos(pid: i32) -> Result<u64> {
    let path = format!("/proc/{pid}/schedstat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    parse_schedstat(&text).with_context(|| format!("unexpected contents of {path}: {text}"))
}

/// The time on CPU (nanoseconds, the first of three fields) of a
/// `/proc/<pid>/schedstat` line.
pub fn parse_schedstat(schedstat: &str) -> Option<u64> {
    schedstat.split_whitespace().next()?.parse().ok()
}

/// Clock ticks per second (`getconf CLK_TCK`); 100 when it cannot be asked.
pub fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|&t: &u64| t > 0)
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_comm() {
        let stat = "4242 (postgres: x (y)) S 1 4242 4242 0 -1 4194560 900 0 0 0 123 45 0 0 20 0 1 0 99 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(168));
    }

    #[test]
    fn parses_schedstat() {
        assert_eq!(parse_schedstat("1234567 890 12\n"), Some(1_234_567));
        assert_eq!(parse_schedstat(""), None);
        assert_eq!(parse_schedstat("x 1 2"), None);
    }

    #[test]
    fn nanos_of_own_thread_grow_with_work() {
        // (A test runs on a thread of its own: the process's schedstat is
        // its main thread's, which waits.)
        let own = || {
            let text = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
            parse_schedstat(&text).expect("a number")
        };
        let before = own();
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(20) {
            std::hint::black_box(spin.elapsed());
        }
        assert!(own() > before);
        let pid = i32::try_from(std::process::id()).expect("pid fits");
        assert!(cpu_nanos(pid).is_ok());
    }

    #[test]
    fn reads_own_process() {
        let pid = i32::try_from(std::process::id()).expect("pid fits");
        assert!(cpu_ticks(pid).is_ok());
    }

    #[test]
    fn reads_own_thread_within_its_process() {
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(50) {
            std::hint::black_box(spin.elapsed());
        }
        let pid = i32::try_from(std::process::id()).expect("pid fits");
        let thread = thread_cpu_ticks().expect("thread ticks");
        assert!(thread <= cpu_ticks(pid).expect("process ticks"));
    }
}
