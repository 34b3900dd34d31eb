//! The `latchkey` binary: parse arguments, set up logging, run, map to an exit code.

use clap::Parser;
use latchkey::cli::{Cli, CliError, Exit, LogFormat, output, run};
use tracing_subscriber::EnvFilter;

/// The status of a process that stopped because its reader went away, as a shell shows
/// one killed by SIGPIPE (128 + 13): `set -o pipefail` scripts still see it.
const CLOSED_PIPE: u8 = 141;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // clap exits 2 on a usage error, but 2 means "there are changes" for `plan`.
            let code = if e.use_stderr() {
                Exit::Errors as u8
            } else {
                0
            };
            return std::process::ExitCode::from(code);
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cli.log));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        // A collector reads JSON; colour codes would be part of its strings.
        LogFormat::Json => logs.json().with_ansi(false).init(),
        LogFormat::Text => logs.with_ansi(output::stderr_color()).init(),
    }
    match run(cli).await {
        Ok(exit) => std::process::ExitCode::from(exit as u8),
        Err(CliError::ClosedPipe) => std::process::ExitCode::from(CLOSED_PIPE),
        Err(e) => {
            eprintln!("error: {}", latchkey::source::error_chain(&e));
            std::process::ExitCode::from(Exit::Errors as u8)
        }
    }
}
