//! `pgtrail serve`: the JSON API and web UI (the pgtrail-serve crate) on
//! the database of the flags, with `[serve]` of pgtrail.toml; and its
//! token helpers (`--new-token NAME`, `--hash-token`).

use std::io::Read;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use pgtrail::config::Config;
use pgtrail::serve::{Connect, Options, ServeTls, Server};

use crate::cli::Common;
use crate::output;

pub async fn run(
    common: &Common,
    listen: Option<SocketAddr>,
    connections: u16,
    tls: Option<ServeTls>,
    new_token: Option<&str>,
    hash_token: bool,
    operator: bool,
) -> Result<ExitCode> {
    if let Some(name) = new_token {
        print_new_token(name, operator)?;
        return Ok(ExitCode::SUCCESS);
    }
    if hash_token {
        let mut token = String::new();
        std::io::stdin()
            .read_to_string(&mut token)
            .context("reading the token on stdin")?;
        let token = token.trim();
        if token.is_empty() {
            bail!("no token on stdin\n  help: echo -n \"$TOKEN\" | pgtrail serve --hash-token");
        }
        println!("sha256 = \"{}\"", pgtrail::serve::hash_token(token));
        return Ok(ExitCode::SUCCESS);
    }
    let config = if common.config.exists() {
        Config::from_path(&common.config)?
    } else {
        Config::default()
    };
    let mut options = Options::from_config(&config.serve);
    options.connections = usize::from(connections);
    if let Some(listen) = listen {
        options.listen = listen;
    }
    // --tls-cert and --tls-key (clap takes both or neither) replace the pair of [serve].
    if tls.is_some() {
        options.tls = tls;
    }
    let target = pgtrail::connect::Target::from_env(common.database_url.as_deref())?;
    serve(options, connector(target), None).await?;
    Ok(ExitCode::SUCCESS)
}

/// The connection factory of a target.
pub(super) fn connector(target: pgtrail::connect::Target) -> Connect {
    let target = Arc::new(target);
    Arc::new(move || {
        let target = target.clone();
        Box::pin(async move {
            pgtrail::connect::connect(&target)
                .await
                .map_err(|e| e.to_string())
        })
    })
}

/// Binds, says where, serves until SIGTERM or Ctrl-C. `token`: a token to
/// print beside the URL (the demo's).
pub(super) async fn serve(options: Options, connect: Connect, token: Option<&str>) -> Result<()> {
    let anonymous = options.anonymous_read;
    let tokens = options.tokens.len();
    let server = Server::bind(options, connect).await?;
    let scheme = if server.https() { "https" } else { "http" };
    let url = format!("{scheme}://{}/", server.local_addr());
    output::say(output::HEADER, &format!("pgtrail serve: {url}"));
    match token {
        Some(token) => println!(
            "  token: {token}\n  (paste it on the login page, or send Authorization: Bearer {token})"
        ),
        None => println!(
            "  {tokens} token(s){}; the API is described at {url}api/openapi.json",
            if anonymous { ", anonymous reading on" } else { "" }
        ),
    }
    output::step("Ctrl-C stops it");
    server.run(shutdown()).await?;
    output::step("pgtrail serve: stopped");
    Ok(())
}

fn print_new_token(name: &str, operator: bool) -> Result<()> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("invalid token name `{name}`: letters, digits, - and _ only\n  help: e.g. --new-token support");
    }
    let token = pgtrail::serve::new_token().context("drawing a random token")?;
    println!("token: {token}");
    println!("  (shown once: give it to its holder; pgtrail.toml keeps only its hash)\n");
    println!("[serve.tokens.{name}]");
    println!("role = \"{}\"", if operator { "operator" } else { "reader" });
    println!("sha256 = \"{}\"", pgtrail::serve::hash_token(&token));
    Ok(())
}

/// Resolves on SIGTERM or SIGINT; requests under way finish.
fn shutdown() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let signals = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
    async move {
        let (Ok(mut term), Ok(mut int)) = signals else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("pgtrail serve: SIGTERM, stopping"),
            _ = int.recv() => tracing::info!("pgtrail serve: SIGINT, stopping"),
        }
    }
}
