//! Writes an evidence bundle: a directory an auditor can check offline
//! with the public key ([`crate::verify`]).
//!
//! | file | what |
//! |---|---|
//! | `report.json` | the report ([`crate::Report`]) |
//! | `report.csv`, `report.txt`, `report.html` | the same for spreadsheets and people |
//! | `proofs.json` | per listed change: its leaf evidence and inclusion proof ([`crate::collect::Proofs`]) |
//! | `checkpoint` | the signed checkpoint (C2SP signed note) the proofs are against |
//! | `manifest` | a signed note (same key): `pgtrail evidence bundle v1`, `kind K`, then `SHA256  FILE` per file |

use std::path::Path;

use sha2::{Digest, Sha256};
use tokio_postgres::GenericClient;

use pgtrail_integrity::{SignedNote, SignerKey};

use crate::evidence::hex;
use crate::{EvidenceError, Report, collect, html, render};

/// The first line of a bundle's manifest.
pub const MANIFEST_HEADER: &str = "pgtrail evidence bundle v1";

/// The files a bundle holds besides its manifest, in manifest order.
pub const FILES: [&str; 6] = [
    "report.json",
    "report.csv",
    "report.txt",
    "report.html",
    "proofs.json",
    "checkpoint",
];

/// What a bundle holds.
#[derive(Debug, Clone)]
pub struct BundleSummary {
    pub changes: usize,
    pub seal_id: i64,
    pub tree_size: u64,
    pub root: String,
}

/// Writes the bundle of `report` into `dir` (created if missing; it must
/// be empty), proving every listed change against the latest checkpoint
/// and signing the manifest with `key`, the key that signs the seals.
pub async fn write_bundle(
    client: &impl GenericClient,
    report: &Report,
    dir: &Path,
    key: &SignerKey,
) -> Result<BundleSummary, EvidenceError> {
    if dir.exists() {
        let mut entries =
            std::fs::read_dir(dir).map_err(EvidenceError::io("cannot read the bundle directory", dir))?;
        if entries.next().is_some() {
            return Err(EvidenceError::Usage(format!(
                "the bundle directory {} is not empty\n  help: name a new or empty directory",
                dir.display()
            )));
        }
    }
    let ids: Vec<i64> = report.changes.iter().map(|c| c.id).collect();
    let (checkpoint, proofs) = collect::collect(client, &ids).await?;
    // The checkpoint must be this key's: an auditor checks both with one public key.
    pgtrail_integrity::open(&checkpoint, &key.verifier()).map_err(|_| {
        EvidenceError::Usage(
            "the latest checkpoint was not signed by this key\n  help: pass the key that signs the seals (`pgtrail seal --key FILE`)"
                .to_string(),
        )
    })?;
    let json = |what: &'static str, value: &dyn erased::Json| value.to_pretty(what);
    let contents: [(&str, String); 6] = [
        ("report.json", json("report.json", report)?),
        ("report.csv", render::csv(report)?),
        ("report.txt", render::text(report)),
        ("report.html", html::render(report)),
        ("proofs.json", json("proofs.json", &proofs)?),
        ("checkpoint", checkpoint),
    ];
    std::fs::create_dir_all(dir).map_err(EvidenceError::io("cannot create the bundle directory", dir))?;
    let mut manifest = format!("{MANIFEST_HEADER}\nkind {}\n", report.kind.name());
    for (name, content) in &contents {
        let path = dir.join(name);
        std::fs::write(&path, content).map_err(EvidenceError::io("cannot write", &path))?;
        manifest.push_str(&format!("{}  {name}\n", sha256_hex(content.as_bytes())));
    }
    let note = SignedNote::sign(manifest, key)?;
    let path = dir.join("manifest");
    std::fs::write(&path, note.to_string()).map_err(EvidenceError::io("cannot write", &path))?;
    Ok(BundleSummary {
        changes: ids.len(),
        seal_id: proofs.seal_id,
        tree_size: proofs.tree_size,
        root: proofs.root,
    })
}

/// Fails unless `dir` is missing or an empty directory (a bundle never
/// mixes with other files).
pub fn check_target(dir: &Path) -> Result<(), EvidenceError> {
    if dir.exists() {
        let mut entries =
            std::fs::read_dir(dir).map_err(EvidenceError::io("cannot read the bundle directory", dir))?;
        if entries.next().is_some() {
            return Err(EvidenceError::Usage(format!(
                "the bundle directory {} is not empty\n  help: name a new or empty directory",
                dir.display()
            )));
        }
    }
    Ok(())
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Pretty JSON of anything serializable, behind one object-safe trait.
mod erased {
    use crate::EvidenceError;

    pub trait Json {
        fn to_pretty(&self, what: &'static str) -> Result<String, EvidenceError>;
    }

    impl<T: serde::Serialize> Json for T {
        fn to_pretty(&self, what: &'static str) -> Result<String, EvidenceError> {
            serde_json::to_string_pretty(self)
                .map(|mut s| {
                    s.push('\n');
                    s
                })
                .map_err(|e| EvidenceError::Encode {
                    what,
                    source: Box::new(e),
                })
        }
    }
}
