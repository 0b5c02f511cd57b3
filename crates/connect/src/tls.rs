//! TLS as libpq does it, with rustls (no OpenSSL): `sslmode` disable, allow,
//! prefer (the default), require, verify-ca and verify-full; the root
//! certificates of `sslrootcert` (a PEM file, or `system` for the operating
//! system's store; default `~/.postgresql/root.crt`); a client certificate
//! from `sslcert`/`sslkey` (default `~/.postgresql/postgresql.crt` and
//! `.key`, used when they exist).
//!
//! As in libpq: `require` with a root certificate file present verifies the
//! chain like `verify-ca`; `sslrootcert=system` makes `verify-full` the
//! default and refuses weaker modes; Unix sockets never use TLS.

use std::fmt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::ConnectError;
use super::settings::{Env, Origin, Settings};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub const NAMES: [&'static str; 6] = [
        "disable",
        "allow",
        "prefer",
        "require",
        "verify-ca",
        "verify-full",
    ];

    fn parse(value: &str) -> Option<SslMode> {
        Some(match value {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the server's certificate is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// Nothing is checked (disable, allow, prefer, require without a root file).
    None,
    /// The certificates of a PEM file.
    File(PathBuf),
    /// The operating system's trusted roots (`sslrootcert=system`).
    System,
}

/// How a connection uses TLS, resolved from the settings.
#[derive(Debug, Clone)]
pub struct TlsPolicy {
    pub mode: SslMode,
    /// Where `mode` came from, for messages.
    pub mode_origin: Origin,
    pub roots: Roots,
    /// Whether the certificate must name the host (verify-full).
    pub check_host: bool,
    /// Client certificate and key files.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl TlsPolicy {
    /// Reads sslmode, sslrootcert, sslcert and sslkey.
    pub(crate) fn resolve(settings: &mut Settings, env: &Env) -> Result<TlsPolicy, ConnectError> {
        let home_file = |name: &str| env.home_dir().map(|h| h.join(".postgresql").join(name));
        let rootcert = settings.get("sslrootcert").cloned();
        let system = rootcert.as_ref().is_some_and(|r| r.value == "system");
        if system
            && matches!(
                settings.get("sslmode").map(|s| &s.origin),
                Some(Origin::Default(_))
            )
        {
            settings.set(
                "sslmode",
                "verify-full",
                Origin::Default("verify-full, since sslrootcert=system"),
            );
        }
        let mode_setting = settings
            .get("sslmode")
            .cloned()
            .unwrap_or(super::settings::Setting {
                value: "prefer".to_string(),
                origin: Origin::Default("libpq's"),
            });
        let mode = SslMode::parse(&mode_setting.value).ok_or_else(|| ConnectError::Setting {
            message: format!(
                "sslmode `{}` ({}) is not one of {}",
                mode_setting.value,
                mode_setting.origin,
                SslMode::NAMES.join(", ")
            ),
        })?;
        if system && mode != SslMode::VerifyFull {
            return Err(ConnectError::Setting {
                message: format!(
                    "weak sslmode `{mode}` ({}) may not be used with sslrootcert=system ({})\n  help: use sslmode=verify-full",
                    mode_setting.origin,
                    rootcert
                        .as_ref()
                        .map(|r| r.origin.to_string())
                        .unwrap_or_default()
                ),
            });
        }
        let root_file = match &rootcert {
            Some(r) if r.value == "system" => None,
            Some(r) => Some((PathBuf::from(&r.value), r.origin.to_string())),
            None => home_file("root.crt").map(|f| (f, "default".to_string())),
        };
        let roots = match mode {
            SslMode::Disable | SslMode::Allow | SslMode::Prefer => Roots::None,
            _ if system => Roots::System,
            SslMode::Require => match root_file {
                // libpq: with a root certificate file, require checks the chain.
                Some((file, _)) if file.exists() => Roots::File(file),
                _ => Roots::None,
            },
            SslMode::VerifyCa | SslMode::VerifyFull => match root_file {
                Some((file, _)) if file.exists() => Roots::File(file),
                Some((file, origin)) => {
                    return Err(ConnectError::Setting {
                        message: format!(
                            "root certificate file {} ({origin}) does not exist, and sslmode={mode} ({}) needs one to check the server\n  help: provide the file, use the system's trusted roots with sslrootcert=system, or change sslmode to disable server certificate verification",
                            file.display(),
                            mode_setting.origin
                        ),
                    });
                }
                None => {
                    return Err(ConnectError::Setting {
                        message: format!(
                            "sslmode={mode} ({}) needs root certificates and no home directory is known for ~/.postgresql/root.crt\n  help: set sslrootcert (or PGSSLROOTCERT) to the CA's certificate file, or sslrootcert=system",
                            mode_setting.origin
                        ),
                    });
                }
            },
        };
        let client_cert = match (settings.get("sslcert"), settings.get("sslkey")) {
            (Some(cert), key) => {
                let key = key
                    .map(|k| PathBuf::from(&k.value))
                    .or_else(|| home_file("postgresql.key"))
                    .unwrap_or_else(|| PathBuf::from(&cert.value).with_extension("key"));
                Some((PathBuf::from(&cert.value), key))
            }
            (None, key) => match home_file("postgresql.crt") {
                Some(cert) if cert.exists() => {
                    let key = key
                        .map(|k| PathBuf::from(&k.value))
                        .or_else(|| home_file("postgresql.key"))
                        .unwrap_or_else(|| cert.with_extension("key"));
                    Some((cert, key))
                }
                _ => None,
            },
        };
        Ok(TlsPolicy {
            mode,
            mode_origin: mode_setting.origin,
            roots,
            check_host: mode == SslMode::VerifyFull,
            client_cert,
        })
    }

    /// What the policy checks, for messages: "sslmode=verify-full (from PGSSLMODE), roots from ca.pem".
    pub fn describe(&self) -> String {
        let roots = match &self.roots {
            Roots::None => String::new(),
            Roots::File(file) => format!(", root certificates from {}", file.display()),
            Roots::System => ", the system's root certificates".to_string(),
        };
        format!("sslmode={} ({}){roots}", self.mode, self.mode_origin)
    }

    /// The rustls connector for this policy.
    pub(crate) fn connector(&self) -> Result<MakeRustlsConnect, ConnectError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_setup(format!("cannot set up TLS: {e}")))?;
        let verifier: Arc<dyn ServerCertVerifier> = match &self.roots {
            Roots::None => Arc::new(AcceptAnyCertificate(provider.clone())),
            roots => {
                let store = self.root_store(roots)?;
                let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
                    .build()
                    .map_err(|e| tls_setup(format!("cannot use the root certificates: {e}")))?;
                if self.check_host {
                    webpki
                } else {
                    Arc::new(ChainOnly(webpki))
                }
            }
        };
        let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
        let config = match &self.client_cert {
            None => builder.with_no_client_auth(),
            Some((cert_file, key_file)) => {
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
                    .and_then(|iter| iter.collect::<Result<_, _>>())
                    .map_err(|e| {
                        tls_setup(format!(
                            "cannot read client certificate {}: {e}",
                            cert_file.display()
                        ))
                    })?;
                check_key_permissions(key_file)?;
                let key = PrivateKeyDer::from_pem_file(key_file)
                    .map_err(|e| tls_setup(format!("cannot read client key {}: {e}", key_file.display())))?;
                builder.with_client_auth_cert(certs, key).map_err(|e| {
                    tls_setup(format!(
                        "client certificate {} and key {} do not fit: {e}",
                        cert_file.display(),
                        key_file.display()
                    ))
                })?
            }
        };
        Ok(MakeRustlsConnect::new(config))
    }

    fn root_store(&self, roots: &Roots) -> Result<RootCertStore, ConnectError> {
        let mut store = RootCertStore::empty();
        match roots {
            Roots::None => {}
            Roots::File(file) => {
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(file)
                    .and_then(|iter| iter.collect::<Result<_, _>>())
                    .map_err(|e| {
                        tls_setup(format!("cannot read root certificates {}: {e}", file.display()))
                    })?;
                let (added, _) = store.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(tls_setup(format!(
                        "root certificate file {} holds no usable certificate",
                        file.display()
                    )));
                }
            }
            Roots::System => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = store.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(tls_setup(format!(
                        "sslrootcert=system: no trusted root certificate found in the system's store{}\n  help: install the ca-certificates package, or set sslrootcert to a CA file",
                        found
                            .errors
                            .first()
                            .map(|e| format!(" ({e})"))
                            .unwrap_or_default()
                    )));
                }
            }
        }
        Ok(store)
    }
}

fn tls_setup(message: String) -> ConnectError {
    ConnectError::Setting { message }
}

/// libpq refuses a key file others may read.
fn check_key_permissions(key_file: &Path) -> Result<(), ConnectError> {
    let metadata = std::fs::metadata(key_file)
        .map_err(|e| tls_setup(format!("cannot read client key {}: {e}", key_file.display())))?;
    let mode = metadata.permissions().mode();
    let too_open = if metadata.uid() == 0 {
        mode & 0o037
    } else {
        mode & 0o077
    };
    if too_open != 0 {
        return Err(tls_setup(format!(
            "private key file {} has group or world access\n  help: chmod 600 {} (or 640 when root owns it)",
            key_file.display(),
            key_file.display()
        )));
    }
    Ok(())
}

/// require and prefer without root certificates: encryption without
/// authentication of the server, as in libpq. The handshake's signatures
/// are still checked.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// verify-ca: the chain must lead to a trusted root; the name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A TLS failure in words: which check failed, for which host.
pub(crate) fn explain(
    error: &(dyn std::error::Error + 'static),
    host: &str,
    policy: &TlsPolicy,
) -> Option<String> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(rustls_error) = e.downcast_ref::<rustls::Error>() {
            return Some(match rustls_error {
                rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
                ) => format!(
                    "the server's certificate is not valid for the host name `{host}` ({})\n  help: connect with the name the certificate was issued for, or use sslmode=verify-ca to check only the chain",
                    policy.describe()
                ),
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
                    "the server's certificate is not signed by a trusted root ({})\n  help: set sslrootcert (or PGSSLROOTCERT) to the CA that signed the server's certificate",
                    policy.describe()
                ),
                rustls::Error::InvalidCertificate(
                    CertificateError::Expired | CertificateError::ExpiredContext { .. },
                ) => format!("the server's certificate has expired ({})", policy.describe()),
                other => format!("TLS handshake failed: {other} ({})", policy.describe()),
            });
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(rustls_error) = inner.downcast_ref::<rustls::Error>()
        {
            return explain(rustls_error, host, policy);
        }
        current = e.source();
    }
    None
}
