//! `pgtrail serve`: one process that answers "who changed what" over HTTP,
//! as a JSON API (described by the OpenAPI document it serves at
//! `/api/openapi.json`) and as server-rendered web pages, both read-only.
//!
//! It reads the trail through the database role `pgtrail_<db>_reader`
//! (every connection switches to it), so redacted and erased values can
//! never be shown, and nothing can be written. Requests carry a bearer
//! token (`Authorization: Bearer …`, or the cookie the login page sets);
//! the configuration holds only each token's SHA-256 and its role.
//!
//! ```no_run
//! # async fn example(client_factory: pgtrail_serve::Connect) -> Result<(), pgtrail_serve::ServeError> {
//! let options = pgtrail_serve::Options {
//!     listen: "127.0.0.1:8420".parse().unwrap(),
//!     ..pgtrail_serve::Options::default()
//! };
//! let server = pgtrail_serve::Server::bind(options, client_factory).await?;
//! println!("listening on http://{}", server.local_addr());
//! server.run(std::future::pending()).await?;
//! # Ok(()) }
//! ```

mod api;
mod auth;
mod error;
pub mod openapi;
mod pool;
mod revert;
mod tls;
mod ui;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;

pub use auth::{hash_token, new_token};
pub use error::{ApiError, ServeError};
pub use pgtrail_config::{ServeTls, ServeToken, TokenRole};

/// Opens one new database connection (the server switches it to the
/// reader role itself). The error is shown as is.
pub type Connect = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<tokio_postgres::Client, String>> + Send>> + Send + Sync,
>;

/// What the server listens on and whom it lets in.
#[derive(Debug, Clone)]
pub struct Options {
    pub listen: SocketAddr,
    /// Requests without a token may read (off by default).
    pub anonymous_read: bool,
    pub tokens: Vec<ServeToken>,
    /// Database connections at most (requests beyond wait for one).
    pub connections: usize,
    /// HTTPS with this certificate and key (else plain HTTP, for a TLS proxy).
    pub tls: Option<ServeTls>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            listen: SocketAddr::from(([127, 0, 0, 1], 8420)),
            anonymous_read: false,
            tokens: Vec::new(),
            connections: 8,
            tls: None,
        }
    }
}

impl Options {
    /// The options of a `[serve]` section (the address may be overridden after).
    pub fn from_config(serve: &pgtrail_config::Serve) -> Options {
        let mut options = Options {
            anonymous_read: serve.anonymous_read,
            tokens: serve.tokens.clone(),
            tls: serve.tls.clone(),
            ..Options::default()
        };
        if let Some(listen) = serve.listen {
            options.listen = listen;
        }
        options
    }
}

/// What every handler shares.
pub(crate) struct AppState {
    pub(crate) pool: pool::Pool,
    pub(crate) auth: auth::Auth,
    /// HTTPS served directly (the login cookie is then `Secure`).
    pub(crate) https: bool,
}

pub(crate) type Shared = Arc<AppState>;

/// A server bound to its address, not yet serving.
pub struct Server {
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Server {
    /// Checks the options and the database (one connection is opened and
    /// switched to the reader role, so a wrong setup fails here, not on the
    /// first request), then binds the address.
    pub async fn bind(options: Options, connect: Connect) -> Result<Server, ServeError> {
        if options.tokens.is_empty() && !options.anonymous_read {
            return Err(ServeError::NoAccess);
        }
        let tls = options.tls.as_ref().map(tls::acceptor).transpose()?;
        let pool = pool::Pool::new(connect, options.connections.max(1));
        pool.check().await?;
        let state = Arc::new(AppState {
            pool,
            auth: auth::Auth::new(options.tokens.clone(), options.anonymous_read),
            https: tls.is_some(),
        });
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|source| ServeError::Bind {
                address: options.listen,
                source,
            })?;
        Ok(Server {
            listener,
            router: router(state),
            tls,
        })
    }

    /// Whether it speaks HTTPS itself.
    pub fn https(&self) -> bool {
        self.tls.is_some()
    }

    /// The address bound (the port chosen when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Serves until `shutdown` completes, then finishes the requests under way.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServeError> {
        if let Some(acceptor) = self.tls {
            return tls::serve(self.listener, acceptor, self.router, shutdown).await;
        }
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(ServeError::Serve)
    }
}

/// Every route, with the access log and the security headers.
fn router(state: Shared) -> Router {
    Router::new()
        .merge(api::routes())
        .merge(revert::routes())
        .merge(ui::routes())
        .layer(middleware::from_fn_with_state(state.clone(), auth::require))
        .layer(middleware::from_fn(headers_and_log))
        .with_state(state)
}

/// The structured access log (one line per request: method, route, path,
/// status, duration, token name; never the token or the query string's
/// values) and the security headers of every response.
async fn headers_and_log(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let mut response = next.run(request).await;
    let who = response
        .extensions()
        .get::<auth::Who>()
        .map(|w| w.0.clone())
        .unwrap_or_else(|| "-".into());
    tracing::info!(
        target: "pgtrail::serve::access",
        method = %method,
        route = %route,
        path = %path,
        status = response.status().as_u16(),
        ms = started.elapsed().as_secs_f64() * 1000.0,
        token = %who,
        "request"
    );
    let headers = response.headers_mut();
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.entry(name).or_insert(HeaderValue::from_static(value));
    }
    response
}
