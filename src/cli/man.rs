//! `latchkey man`

use std::path::PathBuf;

use clap::{Args, CommandFactory};

use super::{Cli, CliError, Exit, output};

/// Print the man page (roff), or write one page per command into a directory.
///
/// Generated from the same definition as --help: latchkey(1) and, with --out, also
/// latchkey-<command>(1) for every subcommand.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  latchkey man | man -l -
  latchkey man --out /usr/local/share/man/man1")]
pub struct ManArgs {
    /// Directory to write latchkey.1 and latchkey-<command>.1 into.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub fn run(args: ManArgs) -> Result<Exit, CliError> {
    let cmd = Cli::command();
    match args.out {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            clap_mangen::generate_to(cmd, &dir)?;
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut page)?;
            output::print(&String::from_utf8_lossy(&page))?;
        }
    }
    Ok(Exit::Ok)
}
