//! The `latchkey` binary: parse arguments, set up logging, run, map to an exit code.

use clap::Parser;
use latchkey::cli::{Cli, Exit, run};
use tracing_subscriber::EnvFilter;

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
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(cli).await {
        Ok(exit) => std::process::ExitCode::from(exit as u8),
        Err(e) => {
            let chain: Vec<String> = anyhow::Error::from(e)
                .chain()
                .map(|c| c.to_string())
                .collect();
            eprintln!("error: {}", chain.join(": "));
            std::process::ExitCode::from(Exit::Errors as u8)
        }
    }
}
