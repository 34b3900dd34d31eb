//! `latchkey codeowners`

use clap::Args;

use super::{CliError, Exit, SourceArgs, print_diagnostics};

/// Print a CODEOWNERS file from the Client admins and the agency admins.
///
/// The agency's admins (the admins of the Policy's agencyClient) own everything; each
/// client's admins own clients/<client>/, except files there that hold Client, Role,
/// System or Policy documents, which stay with the agency. Commit the output as
/// .github/CODEOWNERS (or CODEOWNERS for GitLab) so the host's review rules match the
/// boundaries `latchkey check` enforces.
///
/// Exit codes: 0 printed, 1 the revision is invalid.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  latchkey codeowners --rev main > .github/CODEOWNERS")]
pub struct CodeownersArgs {
    #[command(flatten)]
    pub repo: SourceArgs,
}

pub fn run(args: CodeownersArgs) -> Result<Exit, CliError> {
    let mut rec = args.repo.reconciler()?;
    let rev = rec.repo.resolve(args.repo.rev())?;
    // Who owns what does not depend on time; the clock only dates the load's warnings.
    let loaded = rec.load(&rev, &args.repo.subpath, jiff::Timestamp::now())?;
    if !loaded.is_valid() {
        print_diagnostics(loaded.errors());
        eprintln!("error: revision {} is invalid", rev.display());
        return Ok(Exit::Errors);
    }
    super::output::print(&crate::trust::codeowners::codeowners(
        &loaded.catalog,
        &args.repo.subpath,
    ))?;
    Ok(Exit::Ok)
}
