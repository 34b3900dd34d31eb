//! `latchkey completions`

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::{Cli, CliError, Exit, output};

/// Print a shell completion script for bash, zsh, fish, elvish or PowerShell.
///
/// Generated from the same definition as --help, so every subcommand, flag and value
/// (formats, shells) completes.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  latchkey completions bash > ~/.local/share/bash-completion/completions/latchkey
  latchkey completions zsh > \"${fpath[1]}/_latchkey\"
  latchkey completions fish > ~/.config/fish/completions/latchkey.fish")]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: Shell,
}

pub fn run(args: CompletionsArgs) -> Result<Exit, CliError> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "latchkey", &mut script);
    output::print(&String::from_utf8_lossy(&script))?;
    Ok(Exit::Ok)
}
