//! The `pgtrail` command: install, check and query pgtrail from a shell or CI.
//!
//! Exit codes: 0 ok; 1 a check found problems; 2 usage, config or connection error.

mod cli;
mod commands;
mod output;

use std::process::ExitCode;

fn main() -> ExitCode {
    restore_default_sigpipe();
    let cli = <cli::Cli as clap::Parser>::parse();
    // `pgtrail follow` runs for long: its progress is logged by default.
    let default_level = match cli.command {
        // (The NATS client's connection events only when asked for.)
        cli::Command::Follow { .. } => "info,async_nats=warn",
        // The server's access log is on by default.
        cli::Command::Serve { .. } | cli::Command::Demo { serve: true, .. } => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PGTRAIL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .init();

    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: could not start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let code = match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(error) => {
            output::print_error(&error);
            ExitCode::from(2)
        }
    };
    // (The command's connections closed properly, not cut off at exit.)
    runtime.block_on(pgtrail::connect::closed(std::time::Duration::from_millis(250)));
    code
}

/// `pgtrail log | head` should stop quietly when `head` has read enough, as
/// other command-line tools do, instead of panicking on a closed pipe. Rust
/// ignores SIGPIPE by default; this puts back the default action.
fn restore_default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any thread exists; setting
    // the default disposition of SIGPIPE has no other effect on the program.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
