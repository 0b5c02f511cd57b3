//! The `[serve]` section: where `pgtrail serve` listens (and with which TLS
//! certificate, if any), whether anonymous requests may read, and the bearer
//! tokens it accepts (only their SHA-256, never the tokens themselves), each
//! with a role.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde_spanned::Spanned;

use crate::error::{ConfigError, ErrorKind, Source};
use crate::raw::{RawServe, Table};
use crate::suggest::suggest;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenRole {
    /// Reads the trail: every query, report and revert plan.
    #[default]
    Reader,
    /// What a reader may, and applying reverts.
    Operator,
}

impl TokenRole {
    pub const NAMES: [&'static str; 2] = ["reader", "operator"];

    pub fn name(self) -> &'static str {
        match self {
            TokenRole::Reader => "reader",
            TokenRole::Operator => "operator",
        }
    }
}

/// One `[serve.tokens.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeToken {
    /// The token's name (in the access log; never the token).
    pub name: String,
    pub role: TokenRole,
    /// The SHA-256 of the token, 64 lowercase hex digits.
    pub sha256: String,
}

/// `tls_cert` and `tls_key`: the server speaks HTTPS itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeTls {
    /// The certificate chain, PEM (the server's certificate first).
    pub cert: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The `[serve]` section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Serve {
    /// `listen = "127.0.0.1:8420"`; `None` when not written.
    pub listen: Option<SocketAddr>,
    /// HTTPS with this certificate; `None`: plain HTTP (behind a TLS proxy).
    pub tls: Option<ServeTls>,
    /// Requests without a token may read (a trusted network only).
    pub anonymous_read: bool,
    pub tokens: Vec<ServeToken>,
}

pub(crate) fn serve(src: Source<'_>, raw: RawServe) -> Result<Serve, ConfigError> {
    let mut out = Serve {
        anonymous_read: raw.anonymous_read.unwrap_or(false),
        ..Serve::default()
    };
    if let Some(value) = &raw.listen {
        out.listen = Some(value.get_ref().trim().parse().map_err(|_| {
            src.error(
                ErrorKind::InvalidValue,
                &value.span(),
                format!(
                    "`listen` in [serve] must be an address and a port, not `{}`",
                    value.get_ref()
                ),
                Some("e.g. `listen = \"127.0.0.1:8420\"` (or \"0.0.0.0:8420\" behind a proxy)".to_string()),
            )
        })?);
    }
    match (&raw.tls_cert, &raw.tls_key) {
        (Some(cert), Some(key)) => {
            out.tls = Some(ServeTls {
                cert: PathBuf::from(cert.get_ref().trim()),
                key: PathBuf::from(key.get_ref().trim()),
            });
        }
        (Some(one), None) | (None, Some(one)) => {
            return Err(src.error(
                ErrorKind::InvalidValue,
                &one.span(),
                "[serve] needs both `tls_cert` and `tls_key`, or neither".to_string(),
                Some(
                    "e.g. `tls_cert = \"/etc/pgtrail/cert.pem\"` and `tls_key = \"/etc/pgtrail/key.pem\"`"
                        .to_string(),
                ),
            ));
        }
        (None, None) => {}
    }
    for (name, Table(token)) in raw.tokens {
        out.tokens.push(token_of(src, &name, token)?);
    }
    Ok(out)
}

fn token_of(
    src: Source<'_>,
    name: &Spanned<String>,
    raw: crate::raw::RawToken,
) -> Result<ServeToken, ConfigError> {
    let what = format!("[serve.tokens.{}]", name.get_ref());
    let role = match &raw.role {
        None => TokenRole::Reader,
        Some(value) => match value.get_ref().as_str() {
            "reader" => TokenRole::Reader,
            "operator" => TokenRole::Operator,
            other => {
                let mut message = format!("`role` in {what} must be reader or operator, not `{other}`");
                if let Some(near) = suggest(other, TokenRole::NAMES) {
                    message.push_str(&format!("; did you mean `{near}`?"));
                }
                return Err(src.error(
                    ErrorKind::InvalidValue,
                    &value.span(),
                    message,
                    Some("reader reads the trail; operator may also change things".to_string()),
                ));
            }
        },
    };
    let help =
        Some("`pgtrail serve --hash-token` reads a token on stdin and prints the line to write".to_string());
    let Some(sha256) = &raw.sha256 else {
        return Err(src.error(
            ErrorKind::InvalidValue,
            &name.span(),
            format!("{what} has no `sha256`: the SHA-256 of the token, in hex"),
            help,
        ));
    };
    let hex = sha256.get_ref().trim().to_ascii_lowercase();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(src.error(
            ErrorKind::InvalidValue,
            &sha256.span(),
            format!(
                "`sha256` in {what} must be 64 hex digits (the SHA-256 of the token), not `{}`",
                sha256.get_ref()
            ),
            help,
        ));
    }
    Ok(ServeToken {
        name: name.get_ref().clone(),
        role,
        sha256: hex,
    })
}

#[cfg(test)]
mod tests {
    use crate::Config;

    #[test]
    fn tls_needs_a_certificate_and_its_key() {
        let config = Config::parse(
            "[serve]\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n",
            "pgtrail.toml",
        )
        .unwrap();
        let tls = config.serve.tls.unwrap();
        assert_eq!(tls.cert, std::path::PathBuf::from("cert.pem"));
        assert_eq!(tls.key, std::path::PathBuf::from("key.pem"));
        let error = Config::parse("[serve]\ntls_cert = \"cert.pem\"\n", "pgtrail.toml").unwrap_err();
        assert!(
            error.to_string().contains("both `tls_cert` and `tls_key`"),
            "{error}"
        );
        assert!(
            Config::parse("[serve]\n", "pgtrail.toml")
                .unwrap()
                .serve
                .tls
                .is_none()
        );
    }
}
