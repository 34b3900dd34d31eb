//! `latchkey schema`

use std::path::PathBuf;

use clap::Args;

use super::{CliError, Exit};
use crate::controller::generate;

/// Write JSON Schemas of the documents for editors (yaml-language-server).
///
/// One schema per kind (`system.json`, ...) and `all.json`, which accepts any kind. Put
/// `# yaml-language-server: $schema=<path>/all.json` at the top of a YAML file to get
/// completion and validation. Without --out, `all.json` is printed to stdout.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  latchkey schema --out schemas/
  latchkey schema > all.json")]
pub struct SchemaArgs {
    /// Directory to write the schemas into, e.g. `schemas/`.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: SchemaArgs) -> Result<Exit, CliError> {
    let files = generate::schemas()?;
    match args.out {
        Some(dir) => generate::write(&dir, &files)?,
        None => {
            if let Some(all) = files.iter().find(|f| f.name == "all.json") {
                super::output::print(&all.text)?;
            }
        }
    }
    Ok(Exit::Ok)
}
