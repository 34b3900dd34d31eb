//! `latchkey crds`

use std::path::PathBuf;

use clap::Args;

use super::{CliError, Exit};
use crate::controller::generate;

/// Write the CustomResourceDefinitions of every kind (AccessRepository, Policy, System,
/// Role, Client, Member), generated from the Rust types, one YAML file per kind.
///
/// Without --out the CRDs are printed to stdout as one multi-document stream
/// (`latchkey crds | kubectl apply -f -`).
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  latchkey crds | kubectl apply -f -
  latchkey crds --out crds/")]
pub struct CrdsArgs {
    /// Directory to write `<plural>.latchkey.dev.yaml` files into, e.g. `crds/`.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: CrdsArgs) -> Result<Exit, CliError> {
    let files = generate::crds()?;
    match args.out {
        Some(dir) => generate::write(&dir, &files)?,
        None => {
            for f in &files {
                super::output::print(&format!("---\n{}", f.text))?;
            }
        }
    }
    Ok(Exit::Ok)
}
