//! The `pgtrail` command: install, check and query pgtrail from a shell or CI.
//!
//! Exit codes: 0 ok; 1 a check found problems; 2 usage, config or connection error.

mod cli;
mod commands;
mod output;

use std::process::ExitCode;

use clap::FromArgMatches;

fn main() -> ExitCode {
    restore_default_sigpipe();
    let matches = <cli::Cli as clap::CommandFactory>::command().get_matches();
    if let Some((command, flag)) = cli::ignored_option(&matches) {
        let help = match flag.as_str() {
            "--database-url" => "it connects to no database of yours: leave --database-url out",
            _ => "it prints for people only: leave --format out",
        };
        eprintln!("error: `pgtrail {command}` does not use {flag}\n  help: {help}");
        return ExitCode::from(2);
    }
    let cli = match cli::Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PGTRAIL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
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
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(error) => {
            output::print_error(&error);
            ExitCode::from(2)
        }
    }
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
