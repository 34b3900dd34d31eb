//! `latchkey plan`

use clap::Args;

use super::{CliError, Exit, Format, RepoArgs};
use crate::audit::Trigger;
use crate::plan::{render, review};
use crate::reconcile::Options;
use crate::trust::boundary;

/// Show what apply would change: desired (git at --now) against actual (the systems).
///
/// Every change carries its reason: declared, started, expired, review-overdue (Policy
/// overdueReview: revoke), offboarded or undeclared.
/// With --base and --head, review a change instead, contacting no system (for PR review
/// without credentials): both revisions' effective access (per person, system,
/// entitlement and window, through every Role, System, Client and Policy) at the same
/// instant, the head as if merged then, so a `for:` grant it adds counts from the merge.
/// The head's validation errors and the client boundaries the change breaks (see
/// `latchkey check`) come first.
///
/// Runs every check apply runs (history rewrite, signatures, the ledger, the deletion
/// brake, the empty-client guard) and shows what apply would refuse or hold.
///
/// Exit codes: 0 no changes, 2 changes (or drift, with --fail-on-drift), 1 errors, an
/// unreadable system, an invalid head, boundary violations or a refusal apply would
/// make, 3 held by a guard.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  latchkey plan                                        # HEAD against the systems, now
  latchkey plan --rev main --now 2026-12-15T18:00:00Z  # what will have expired by then
  latchkey plan --base main --head my-branch --format markdown > comment.md
  latchkey plan --fail-on-drift                        # scheduled drift check in CI")]
pub struct PlanArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Output: text for a terminal, markdown for a pull-request comment, json for scripts.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Base revision of a change (e.g. main); requires --head.
    #[arg(long, requires = "head")]
    pub base: Option<String>,
    /// Head revision of a change (e.g. the PR branch); requires --base.
    #[arg(long, requires = "base")]
    pub head: Option<String>,
    /// Show the plan as if guards were overridden with this reason.
    #[arg(long, value_name = "REASON")]
    pub allow_mass_revoke: Option<String>,
    /// Exit 2 when there is drift (undeclared access left in place), even with no
    /// changes: for a scheduled CI check that the systems hold only what git declares.
    #[arg(long, conflicts_with = "base")]
    pub fail_on_drift: bool,
}

pub async fn run(args: PlanArgs) -> Result<Exit, CliError> {
    if let (Some(base), Some(head)) = (&args.base, &args.head) {
        return review_change(&args, base, head);
    }
    let mut rec = args.repo.reconciler()?;
    let opts = Options {
        rev: args.repo.rev().to_string(),
        branch: None,
        subpath: args.repo.subpath.clone(),
        now: args.repo.now(),
        dry_run: true,
        push: false,
        allow_mass_revoke: args.allow_mass_revoke.clone(),
        allow_rewind: None,
        allow_broken_ledger: None,
        trigger: Trigger::Manual,
    };
    let Some(planned) = super::plan_or_report(&mut rec, &opts, "fix them and plan again").await?
    else {
        return Ok(Exit::Errors);
    };
    let plan = &planned.plan;
    let out = match args.format {
        Format::Text => render::text(plan, super::output::stdout_color()),
        Format::Markdown => render::markdown(plan),
        Format::Json => render::json(plan),
    };
    super::output::print(&out)?;
    let exit = if plan.has_read_errors() || !plan.refusals.is_empty() {
        Exit::Errors
    } else if plan.is_held() {
        Exit::Held
    } else if !plan.changes.is_empty() || (args.fail_on_drift && !plan.drift.is_empty()) {
        Exit::Changes
    } else {
        Exit::Ok
    };
    super::release_at_exit(&mut rec, planned);
    Ok(exit)
}

fn review_change(args: &PlanArgs, base: &str, head: &str) -> Result<Exit, CliError> {
    let mut rec = args.repo.reconciler()?;
    let (report, r) = super::check::review_change(&mut rec, &args.repo, base, head)?;
    super::release_at_exit(&mut rec, ());
    let out = match args.format {
        Format::Text => {
            let mut out = String::new();
            if !report.is_clean() {
                out.push_str(&boundary::text(&report));
            }
            out + &review::text(&r)
        }
        Format::Markdown => {
            let see_all = format!(
                "latchkey plan {} --base {base} --head {head} --now {} --format json",
                args.repo.repo, r.now
            );
            review::markdown(&r, &boundary::markdown(&report), &see_all)
        }
        Format::Json => {
            serde_json::to_string_pretty(&serde_json::json!({"boundaries": report, "review": r}))
                .unwrap_or_default()
        }
    };
    super::output::print(&out)?;
    Ok(if !report.is_clean() || !r.head_errors.is_empty() {
        Exit::Errors
    } else if r.deltas.is_empty() {
        Exit::Ok
    } else {
        Exit::Changes
    })
}
