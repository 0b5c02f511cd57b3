//! Support code for the pgtrail capture benchmark (`src/bin/capture.rs`):
//! running pgbench, reading a backend's CPU time, medians and ratios, and the
//! summary table. See `bench/README.md` for what is measured and why.

pub mod autoexplain;
pub mod pgbench;
pub mod procstat;
pub mod stats;
