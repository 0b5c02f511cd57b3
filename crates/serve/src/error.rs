//! The server's errors: [`ServeError`] for starting it, [`ApiError`] for a
//! request (JSON `{"error": {"status", "message", "help"}}`, with the
//! messages the CLI gives).

use std::net::SocketAddr;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "no token is configured and anonymous reading is off: nobody could read anything\n  help: add a [serve.tokens.NAME] section with the token's sha256 (`pgtrail serve --new-token NAME` prints one), or set `anonymous_read = true` in [serve] on a trusted network"
    )]
    NoAccess,
    #[error(
        "cannot listen on {address}: {source}\n  help: choose another address with --listen or `listen` in [serve]"
    )]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Database(String),
    #[error("the server stopped: {0}")]
    Serve(std::io::Error),
    #[error(
        "TLS: {0}\n  help: --tls-cert and --tls-key (or `tls_cert` and `tls_key` in [serve]) name PEM files: the certificate chain and its private key"
    )]
    Tls(String),
}

/// A request's error: its status, the message and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub help: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            help: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn with_help(mut self, help: impl Into<String>) -> ApiError {
        self.help = Some(help.into());
        self
    }

    /// A message in the CLI's form (`message\n  help: …`) split in two.
    pub fn from_cli_text(status: StatusCode, text: &str) -> ApiError {
        match text.split_once("\n  help: ") {
            Some((message, help)) => ApiError::new(status, message).with_help(help),
            None => ApiError::new(status, text),
        }
    }

    /// A database error: pgtrail's own (SQLSTATE PGTRn, and bad input such
    /// as an invalid moment) are the user's, as 400 with their hint;
    /// anything else is the server's, 500.
    pub fn database(error: tokio_postgres::Error) -> ApiError {
        if let Some(db) = error.as_db_error() {
            let code = db.code().code();
            if code.starts_with("PGTR") || code.starts_with("22") {
                let mut out = ApiError::bad_request(db.message());
                out.help = db.hint().map(str::to_string);
                return out;
            }
            tracing::error!(code, message = db.message(), "database error");
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("database error: {}", db.message()),
            );
        }
        tracing::error!(%error, "database error");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("database unavailable: {error}"),
        )
    }

    pub fn json(&self) -> serde_json::Value {
        json!({"error": {"status": self.status.as_u16(), "message": self.message, "help": self.help}})
    }
}

impl From<pgtrail_query::QueryError> for ApiError {
    fn from(error: pgtrail_query::QueryError) -> ApiError {
        ApiError::from_cli_text(StatusCode::BAD_REQUEST, &error.to_string())
    }
}

impl From<pgtrail_query::KeyError> for ApiError {
    fn from(error: pgtrail_query::KeyError) -> ApiError {
        ApiError::from(error.error).with_help(error.help)
    }
}

impl From<pgtrail_query::ResolveError> for ApiError {
    fn from(error: pgtrail_query::ResolveError) -> ApiError {
        use pgtrail_query::ResolveError;
        match error {
            ResolveError::NotAudited { message, help } => ApiError::not_found(message).with_help(help),
            ResolveError::Ambiguous { message, help } => ApiError::bad_request(message).with_help(help),
            ResolveError::NotInstalled => {
                ApiError::from_cli_text(StatusCode::SERVICE_UNAVAILABLE, &error.to_string())
            }
            ResolveError::Database(error) => ApiError::database(error),
        }
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(error: tokio_postgres::Error) -> ApiError {
        ApiError::database(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.json())).into_response()
    }
}
