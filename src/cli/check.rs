//! `latchkey check`

use clap::Args;

use super::{CliError, Exit, Format, RepoArgs};
use crate::plan::proposed;
use crate::plan::review::Review;
use crate::reconcile::Reconciler;
use crate::trust::boundary::{self, BoundaryReport};

/// Check a change's client boundaries (for CI): exit 1 when it breaks any.
///
/// Each changed file belongs to a client (clients/<client>/**) or to the agency. The
/// change breaks a boundary when it grants a role outside the client's allowedRoles, a
/// grant for another client, a duration beyond maxGrantDuration, an environment the
/// Policy forbids for client members, changes a Client, Role, System or Policy document
/// inside a client's folder, or puts a client's Member outside its folder. Contacts no
/// system: no credentials needed. The change is compared from the merge base of --base
/// and --head, as the git host shows a pull request.
///
/// Exit codes: 0 no violations, 1 violations or errors.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  latchkey check --base origin/main --head HEAD
  latchkey check access --base main --head pr-42 --format markdown")]
pub struct CheckArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Base revision of the change (e.g. origin/main).
    #[arg(long)]
    pub base: String,
    /// Head revision of the change (defaults to --rev).
    #[arg(long)]
    pub head: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

pub fn run(args: CheckArgs) -> Result<Exit, CliError> {
    let mut rec = args.repo.reconciler()?;
    let head = args.head.as_deref().unwrap_or(args.repo.rev());
    let (report, _) = review_change(&mut rec, &args.repo, &args.base, head)?;
    super::release_at_exit(&mut rec, ());
    let out = match args.format {
        Format::Text => boundary::text(&report),
        Format::Markdown => boundary::markdown(&report),
        Format::Json => serde_json::to_string_pretty(&report).unwrap_or_default() + "\n",
    };
    super::output::print(&out)?;
    Ok(if report.is_clean() {
        Exit::Ok
    } else {
        Exit::Errors
    })
}

/// Loads both revisions, checks the boundaries and reviews the effective-access change
/// (see [`crate::plan::proposed::review_change`]), at `--now`.
pub(crate) fn review_change(
    rec: &mut Reconciler,
    repo: &RepoArgs,
    base: &str,
    head: &str,
) -> Result<(BoundaryReport, Review), CliError> {
    Ok(proposed::review_change(
        rec,
        &repo.subpath,
        base,
        head,
        repo.now(),
    )?)
}
