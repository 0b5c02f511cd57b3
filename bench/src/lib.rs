//! Support code for pgtrail's benchmarks (`src/bin/capture.rs`,
//! `src/bin/queries.rs`, `src/bin/integrity.rs`): the throwaway server,
//! running pgbench, reading a backend's CPU time, medians and ratios, and the
//! summary table. See `bench/README.md` for what is measured and why.

pub mod autoexplain;
pub mod pgbench;
pub mod procstat;
pub mod server;
pub mod stats;
