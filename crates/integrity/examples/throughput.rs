//! Measures sealing throughput on one core: builds the leaves of 1,000,000
//! synthetic changes (8 short header values and 3 erasable values each,
//! with their salts and commitments) and appends them to a Merkle tree.
//!
//! Also times `random_seed` alone, the extra cost per change when seeds are
//! drawn while sealing.
//!
//! Run with `cargo run --release -p pgtrail-integrity --example throughput`.
//! The target is 300,000 changes per second.

use std::time::Instant;

use pgtrail_integrity::{Error, LeafBuilder, Seed, Tree, field_commitment, field_salt, random_seed};

const CHANGES: u64 = 1_000_000;

/// Erasable field names, sorted as the leaf requires.
const FIELDS: [&str; 3] = ["new.email", "new.name", "old.name"];

fn main() -> Result<(), Error> {
    let mut builder = LeafBuilder::new();
    let mut tree = Tree::new();
    let mut text = String::with_capacity(64);

    let start = Instant::now();
    for id in 0..CHANGES {
        // A per-change seed; a sealer would use `random_seed`, drawn at
        // capture time rather than here.
        let mut seed = Seed::default();
        seed[..8].copy_from_slice(&id.to_le_bytes());

        let mut commitments = [[0u8; 32]; FIELDS.len()];
        for (commitment, name) in commitments.iter_mut().zip(FIELDS) {
            use std::fmt::Write;
            text.clear();
            let _ = write!(text, "{name} value of change {id}");
            *commitment = field_commitment(&field_salt(&seed, name), name, Some(text.as_bytes()))?;
        }

        let mut leaf = builder.begin(i64::try_from(id).unwrap_or(i64::MAX));
        leaf.header(Some(b"public"))?;
        leaf.header(Some(b"students"))?;
        leaf.header(Some(b"UPDATE"))?;
        leaf.header(Some(&(id / 7).to_be_bytes()))?;
        leaf.header(Some(b"2024-05-01 12:34:56.789012+00"))?;
        leaf.header(Some(b"app_user"))?;
        leaf.header(None)?;
        leaf.header(Some(&id.to_be_bytes()))?;
        for (name, commitment) in FIELDS.iter().zip(&commitments) {
            leaf.field(name, commitment)?;
        }
        tree.push(leaf.finish())?;
    }
    let elapsed = start.elapsed();

    let root: String = tree.root().iter().map(|b| format!("{b:02x}")).collect();
    println!("changes:  {}", tree.size());
    println!("root:     {root}");
    println!("elapsed:  {:.3} s", elapsed.as_secs_f64());
    println!(
        "rate:     {:.0} changes/s",
        CHANGES as f64 / elapsed.as_secs_f64()
    );

    let start = Instant::now();
    let mut mix = 0u8;
    for _ in 0..CHANGES {
        mix ^= random_seed()?[0];
    }
    let elapsed = start.elapsed();
    println!(
        "random_seed: {:.0} seeds/s (checksum {mix})",
        CHANGES as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}
