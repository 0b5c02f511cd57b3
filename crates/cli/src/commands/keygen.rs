//! `pgtrail keygen --key FILE`: a new Ed25519 signing key for checkpoints,
//! written as FILE (private, C2SP signed-note signer key, mode 0600) and
//! FILE.pub (the verifier key). Needs no database.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use pgtrail::integrity::crypto::keys::public_key_path;
use pgtrail::integrity::crypto::{SignerKey, write_key_pair};

use crate::cli::{Common, Format};
use crate::output;

pub fn run(common: &Common, key: &Path, name: &str) -> Result<ExitCode> {
    let signer = SignerKey::generate(name).with_context(|| format!("cannot make a key named `{name}`"))?;
    write_key_pair(key, &signer)?;
    let public = public_key_path(key);
    let verifier = signer.verifier().to_string();
    match common.format {
        Format::Json => output::print_json(&serde_json::json!({
            "key": key.display().to_string(),
            "public_key": public.display().to_string(),
            "verifier_key": verifier,
        }))?,
        Format::Table => {
            output::say(
                output::GOOD,
                &format!("wrote {} (private: keep it outside the database)", key.display()),
            );
            output::say(
                output::GOOD,
                &format!(
                    "wrote {} (public: for `pgtrail verify --public-key`)",
                    public.display()
                ),
            );
            output::say(output::DIM, &format!("verifier key: {verifier}"));
        }
    }
    Ok(ExitCode::SUCCESS)
}
