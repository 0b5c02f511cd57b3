//! A test certificate authority (made with rcgen, in memory) and a
//! throwaway cluster that serves TLS with a certificate it issued, for the
//! tests of `sslmode`, `sslrootcert` and client certificates.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};

use pgtrail_cluster::{Cluster, ClusterOptions, ServerTls};

/// A CA that signs server and client certificates.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    /// A new CA named `name`.
    ///
    /// # Panics
    ///
    /// If rcgen cannot make a key or a certificate.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    /// The CA's certificate, as PEM.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for the server names (or addresses) `names`, or for a
    /// client with the common name `common_name`.
    ///
    /// # Panics
    ///
    /// If rcgen cannot make a key or a certificate.
    pub fn issue(&self, names: &[&str], common_name: &str) -> Issued {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("certificate parameters");
        params.distinguished_name.push(DnType::CommonName, common_name);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("certificate");
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Writes the CA certificate to `dir/name`.
    ///
    /// # Panics
    ///
    /// If the file cannot be written.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        write_file(dir, name, &self.cert_pem())
    }
}

impl Issued {
    /// Writes the certificate and its key (mode 0600) to `dir/name.crt` and `dir/name.key`.
    ///
    /// # Panics
    ///
    /// If the files cannot be written.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = write_file(dir, &format!("{name}.crt"), &self.cert_pem);
        let key = write_file(dir, &format!("{name}.key"), &self.key_pem);
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).expect("chmod key");
        (cert, key)
    }
}

fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// A fast throwaway cluster serving TLS with a certificate for `localhost`
/// signed by `ca`, accepting client certificates of `ca`, with the extra
/// `pg_hba.conf` lines `hba` first.
///
/// # Panics
///
/// If the cluster cannot start.
pub fn tls_cluster(ca: &TestCa, hba: &[&str]) -> Cluster {
    let server = ca.issue(&["localhost"], "localhost");
    Cluster::start(ClusterOptions {
        fast: true,
        tls: Some(ServerTls {
            cert_pem: server.cert_pem,
            key_pem: server.key_pem,
            client_ca_pem: Some(ca.cert_pem()),
        }),
        hba: hba.iter().map(|line| line.to_string()).collect(),
        ..ClusterOptions::default()
    })
    .unwrap_or_else(|e| panic!("cannot start a TLS cluster: {e}"))
}
