//! HTTPS served directly (`--tls-cert` and `--tls-key`, or `tls_cert` and
//! `tls_key` in [serve]): the PEM files
//! read into a rustls configuration (ring, TLS 1.2 and 1.3), and the loop
//! that accepts TCP connections, completes each handshake and serves HTTP/1.1
//! on it until shutdown, then lets the requests under way finish.

use std::future::Future;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use pgtrail_config::ServeTls;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

use crate::error::ServeError;

/// The error of one of the two files (`what`: "certificate" or "key").
fn tls_error(what: &str, path: &Path, message: impl std::fmt::Display) -> ServeError {
    ServeError::Tls(format!("the {what} file {}: {message}", path.display()))
}

/// The bytes of one of the two files: a missing file, a directory or a file
/// this user may not read are said as such.
fn read(what: &str, path: &Path) -> Result<Vec<u8>, ServeError> {
    std::fs::read(path).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "not found".to_string(),
            std::io::ErrorKind::PermissionDenied => {
                "not readable by this user (permission denied)".to_string()
            }
            std::io::ErrorKind::IsADirectory => "is a directory, not a file".to_string(),
            _ => format!("cannot be read: {e}"),
        };
        tls_error(what, path, why)
    })
}

/// The acceptor of a certificate and its key; a clear error for a missing
/// or unreadable file, a file without a certificate or key, or a key that
/// is not the certificate's.
pub(crate) fn acceptor(tls: &ServeTls) -> Result<TlsAcceptor, ServeError> {
    let cert_pem = read("certificate", &tls.cert)?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(cert_pem.as_slice()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            tls_error(
                "certificate",
                &tls.cert,
                format!("not a PEM certificate chain: {e}"),
            )
        })?;
    if certs.is_empty() {
        return Err(tls_error(
            "certificate",
            &tls.cert,
            "no certificate in it (PEM, BEGIN CERTIFICATE)",
        ));
    }
    let key_pem = read("key", &tls.key)?;
    let key = rustls_pemfile::private_key(&mut BufReader::new(key_pem.as_slice()))
        .map_err(|e| tls_error("key", &tls.key, format!("not a PEM private key: {e}")))?
        .ok_or_else(|| tls_error("key", &tls.key, "no private key in it (PEM, BEGIN PRIVATE KEY)"))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            let why = match e {
                tokio_rustls::rustls::Error::InconsistentKeys(_) => {
                    "the key is not the certificate's (its public key differs)".to_string()
                }
                other => other.to_string(),
            };
            ServeError::Tls(format!(
                "{} and {} do not make a usable certificate: {why}",
                tls.cert.display(),
                tls.key.display()
            ))
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `router` over TLS on `listener` until `shutdown` completes, then
/// waits for the connections under way to finish their requests.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let tcp = match accepted {
                    Ok((tcp, _)) => tcp,
                    Err(error) => {
                        // Out of file descriptors and the like: try again.
                        tracing::warn!(%error, "accepting a connection");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let service = TowerToHyperService::new(router.clone());
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let stream = match acceptor.accept(tcp).await {
                        Ok(stream) => stream,
                        Err(error) => {
                            tracing::debug!(%error, "TLS handshake failed");
                            return;
                        }
                    };
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    if let Err(error) = watcher.watch(connection).await {
                        tracing::debug!(%error, "connection ended");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
