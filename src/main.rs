//! The `latchkey` binary: parse arguments, set up logging, run, map to an exit code.

use clap::Parser;
use latchkey::cli::{Cli, Exit, run};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
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
