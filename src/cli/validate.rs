//! `latchkey validate`

use clap::Args;

use super::{CliError, Exit, RepoArgs, print_diagnostics};
use crate::load::Severity;

/// Check a revision of the access repository and report every problem at once.
///
/// Each finding names the file, line and column, what is wrong and what to do. Exits 0
/// when there are no errors (warnings allowed), 1 otherwise. No system is contacted.
#[derive(Args, Debug)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Print findings as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ValidateArgs) -> Result<Exit, CliError> {
    let mut rec = args.repo.reconciler()?;
    let rev = rec.repo.resolve(&args.repo.rev)?;
    let loaded = rec.load(&rev, &args.repo.subpath, args.repo.now())?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&loaded.diagnostics).unwrap_or_default()
        );
    } else {
        print_diagnostics(&loaded.diagnostics);
    }
    let errors = loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = loaded.diagnostics.len() - errors;
    let c = &loaded.catalog;
    if errors > 0 {
        eprintln!(
            "{}: {errors} error{}, {warnings} warning{}",
            rev.display(),
            plural(errors),
            plural(warnings)
        );
        return Ok(Exit::Errors);
    }
    eprintln!(
        "{}: valid ({} systems, {} roles, {} clients, {} members, {} grants; {warnings} warning{})",
        rev.display(),
        c.systems.len(),
        c.roles.len(),
        c.clients.len(),
        c.members.len(),
        c.grants().count(),
        plural(warnings)
    );
    Ok(Exit::Ok)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
