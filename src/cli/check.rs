//! `latchkey check`

use std::cell::RefCell;

use clap::Args;
use jiff::Timestamp;

use super::{CliError, Exit, Format, RepoArgs};
use crate::load::{self, Context, Loaded};
use crate::model::Grant;
use crate::plan::Desired;
use crate::plan::review::{self, Review};
use crate::reconcile::Reconciler;
use crate::source::Revision;
use crate::source::history::MergeTimes;
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
    // The process ends here: its caches need not be freed one by one.
    std::mem::forget(rec);
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

/// Loads both revisions, checks the boundaries and reviews the effective-access change.
///
/// Both are loaded and evaluated as apply would, at the same instant `now`. The base
/// counts `for:` grants from the commits that added them, as apply does today; the head
/// is loaded as if merged at `now` (it is the revision apply would see after the merge):
/// its revision time is `now`, a grant the base already holds keeps the base's merge
/// time, and a grant the change adds counts from `now`, whenever the PR's commit was made.
pub(crate) fn review_change(
    rec: &mut Reconciler,
    repo: &RepoArgs,
    base: &str,
    head: &str,
) -> Result<(BoundaryReport, Review), CliError> {
    let now = repo.now();
    let mut base_rev = rec.repo.resolve(base)?;
    let head_rev = rec.repo.resolve(head)?;
    // A PR's change is what its head adds to the merge base, as the host shows it:
    // changes that landed on the base branch since are not the PR's.
    if let Ok(fork) = rec.repo.git().merge_base(base_rev.oid, head_rev.oid)
        && fork != base_rev.oid
    {
        base_rev = rec.repo.revision(fork, None)?;
    }
    let base_loaded = rec.load(&base_rev, &repo.subpath, now)?;
    let (head_loaded, from_merge) = load_as_merged(rec, &base_rev, &head_rev, &repo.subpath, now)?;
    let report = boundary::check(&rec.repo, &repo.subpath, &base_loaded, &head_loaded)?;
    let base_desired = Desired::at_cached(&base_loaded.catalog, now, &mut rec.desired_cache);
    let head_desired = Desired::at_cached(&head_loaded.catalog, now, &mut rec.desired_cache);
    let r = review::review(&review::Inputs {
        base: review::Side {
            revision: &base_rev.display(),
            catalog: &base_loaded.catalog,
            desired: &base_desired,
        },
        head: review::Side {
            revision: &head_rev.display(),
            catalog: &head_loaded.catalog,
            desired: &head_desired,
        },
        now,
        head_errors: head_loaded.errors().map(ToString::to_string).collect(),
        from_merge: &from_merge,
    });
    // The process ends after a review: freeing two catalogues and their desired state
    // (60,000 grants each) would only delay the exit.
    std::mem::forget((base_loaded, head_loaded, base_desired, head_desired));
    Ok((report, r))
}

/// Loads `head` as apply would load it once merged into `base` at `now`; also returns
/// the `for:` grants that count from that merge (those `base` does not hold).
fn load_as_merged(
    rec: &mut Reconciler,
    base: &Revision,
    head: &Revision,
    subpath: &str,
    now: Timestamp,
) -> Result<(Loaded, Vec<(String, Grant)>), CliError> {
    let staged = load::stage(&rec.repo, head, subpath, &mut rec.cache)?;
    // The base was just loaded: its first commit is looked up in the files parsed then.
    let base_blobs = rec.repo.yaml_blobs(base, subpath).unwrap_or_default();
    let in_base =
        MergeTimes::new(&rec.repo, base, subpath).with_parsed(rec.cache.parsed(&base_blobs));
    let from_merge = RefCell::new(Vec::new());
    let merged_at = |identity: &str, grant: &Grant| {
        in_base.merged_at(identity, grant).or_else(|| {
            from_merge
                .borrow_mut()
                .push((identity.to_string(), grant.clone()));
            Some(now)
        })
    };
    let ctx = Context {
        revision_time: now,
        now,
        merged_at: &merged_at,
    };
    let loaded = load::finish(&rec.repo, staged, &ctx, &mut rec.cache);
    Ok((loaded, from_merge.into_inner()))
}
