//! Writes a synthetic access repository and a portal in sync with it (see bench/README).
//!
//! `cargo run --release --example gen_repo -- --clients 1000 --members-per-client 20 \
//!  --grants-per-member 3 --expiring-share 0.2 --agency-staff 50 --seed 42 --out DIR`

#[path = "../bench/synth.rs"]
mod synth;

use std::path::PathBuf;

use clap::Parser;
use jiff::Timestamp;

/// Synthetic repository generator (deterministic from --seed).
#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 1_000)]
    clients: usize,
    #[arg(long, default_value_t = 20)]
    members_per_client: usize,
    #[arg(long, default_value_t = 3)]
    grants_per_member: usize,
    #[arg(long, default_value_t = 0.2)]
    expiring_share: f64,
    #[arg(long, default_value_t = 50)]
    agency_staff: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The instant the portal is in sync at.
    #[arg(long, default_value = "2026-06-01T00:00:00Z")]
    now: Timestamp,
    /// `connection.path` of the portal System (relative paths resolve from the cwd of
    /// latchkey; the default suits running latchkey from DIR).
    #[arg(long, default_value = "portal.sqlite")]
    portal_path: String,
    #[arg(long)]
    out: PathBuf,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = Args::parse();
    let spec = synth::Spec {
        clients: a.clients,
        members_per_client: a.members_per_client,
        grants_per_member: a.grants_per_member,
        expiring_share: a.expiring_share,
        agency_staff: a.agency_staff,
        seed: a.seed,
        now: a.now,
        portal_path: a.portal_path,
    };
    let started = std::time::Instant::now();
    let g = synth::generate(&spec, &a.out)?;
    println!(
        "wrote {} ({} files, {} members, {} grants, commit {}) and {} in {:.2}s",
        g.repo.display(),
        g.files,
        g.members,
        g.grants,
        g.commit,
        g.portal.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
