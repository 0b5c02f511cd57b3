//! Who may ask: bearer tokens (the configuration holds their SHA-256, each
//! with a role), the login page's cookie (HttpOnly, SameSite=Strict), and
//! anonymous reading when the configuration allows it. Requests that
//! change state (the login form) must come from the server's own pages.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use pgtrail_config::{ServeToken, TokenRole};
use sha2::{Digest, Sha256};

use crate::Shared;
use crate::error::ApiError;

/// The cookie the login page sets.
pub(crate) const COOKIE: &str = "pgtrail_token";

/// Who is asking: the token's name (or `anonymous`) and its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Who(pub(crate) String, pub(crate) TokenRole);

pub(crate) struct Auth {
    tokens: Vec<ServeToken>,
    anonymous_read: bool,
}

/// The SHA-256 of a token in hex, as `[serve.tokens.NAME]` holds it.
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.trim().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random token (`pgt_` and 64 hex digits).
pub fn new_token() -> Result<String, std::io::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
    Ok(format!(
        "pgt_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

/// Equal in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    pub(crate) fn new(tokens: Vec<ServeToken>, anonymous_read: bool) -> Auth {
        Auth {
            tokens,
            anonymous_read,
        }
    }

    /// The token's holder, if it is one of the configured tokens.
    pub(crate) fn check(&self, token: &str) -> Option<Who> {
        let hash = hash_token(token);
        let mut found = None;
        for configured in &self.tokens {
            if same(&configured.sha256, &hash) && found.is_none() {
                found = Some(Who(configured.name.clone(), configured.role));
            }
        }
        found
    }
}

/// The paths anyone may reach: the health check, the login page and the style sheet.
fn public(path: &str) -> bool {
    matches!(path, "/healthz" | "/login" | "/assets/style.css")
}

fn bearer(request: &Request) -> Option<String> {
    let value = request.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

pub(crate) fn cookie_token(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then(|| value.to_string())
        })
}

/// A state-changing request must come from this server's pages: its
/// `Origin` (when the browser sends one) is the server's own, and
/// `Sec-Fetch-Site` (when sent) is not cross-site.
pub(crate) fn same_origin(headers: &axum::http::HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    match (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) {
        (Some(origin), Some(host)) => {
            origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                == Some(host)
        }
        (Some(_), None) => false,
        (None, _) => true,
    }
}

/// The middleware: lets public paths through, else finds who is asking
/// (bearer token, then cookie, then anonymous when allowed) and refuses
/// the rest: 401 with JSON for the API, the login page for the UI.
pub(crate) async fn require(State(state): State<Shared>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let is_api = path.starts_with("/api/");
    if request.method() != Method::GET && request.method() != Method::HEAD && !same_origin(request.headers())
    {
        return ApiError::new(StatusCode::FORBIDDEN, "cross-site request refused")
            .with_help("post from the server's own pages")
            .into_response();
    }
    if public(&path) {
        return next.run(request).await;
    }
    let presented = bearer(&request).or_else(|| cookie_token(request.headers()));
    let who = match presented {
        Some(token) => match state.auth.check(&token) {
            Some(who) => who,
            None => {
                return refuse(
                    is_api,
                    &path,
                    "the token is not one this server accepts",
                    Some("ask for a token; its SHA-256 goes into [serve.tokens.NAME] of pgtrail.toml"),
                );
            }
        },
        None if state.auth.anonymous_read => Who("anonymous".into(), TokenRole::Reader),
        None => {
            return refuse(
                is_api,
                &path,
                "a token is needed",
                Some("send `Authorization: Bearer TOKEN`, or log in at /login"),
            );
        }
    };
    request.extensions_mut().insert(who.clone());
    let mut response = next.run(request).await;
    response.extensions_mut().insert(who);
    response
}

fn refuse(is_api: bool, path: &str, message: &str, help: Option<&str>) -> Response {
    if is_api {
        let mut error = ApiError::new(StatusCode::UNAUTHORIZED, message);
        error.help = help.map(str::to_string);
        let mut response = error.into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer"),
        );
        return response;
    }
    let next: String = url_encode(path);
    Redirect::to(&format!("/login?next={next}")).into_response()
}

/// Percent-encodes everything but unreserved characters and `/`.
pub(crate) fn url_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_by_their_hash() {
        let auth = Auth::new(
            vec![ServeToken {
                name: "support".into(),
                role: TokenRole::Reader,
                sha256: hash_token("s3cret"),
            }],
            false,
        );
        assert_eq!(
            auth.check("s3cret"),
            Some(Who("support".into(), TokenRole::Reader))
        );
        assert_eq!(auth.check("s3cre"), None);
        assert_eq!(
            hash_token("test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        let token = new_token().unwrap();
        assert!(token.starts_with("pgt_") && token.len() == 68);
    }

    #[test]
    fn a_cross_site_post_is_refused() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(header::HOST, "127.0.0.1:8420".parse().unwrap());
        assert!(same_origin(&headers));
        headers.insert(header::ORIGIN, "http://127.0.0.1:8420".parse().unwrap());
        assert!(same_origin(&headers));
        headers.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(!same_origin(&headers));
        headers.insert(header::ORIGIN, "http://127.0.0.1:8420".parse().unwrap());
        headers.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(!same_origin(&headers));
    }
}
