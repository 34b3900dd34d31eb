//! `latchkey apply`

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::{CliError, Exit, Format, RepoArgs, output};
use crate::apply::ChangeResult;
use crate::audit::Trigger;
use crate::plan::render;
use crate::reconcile::{Options, RunOutcome};

/// Apply the plan to the systems, then commit the audit to the applied branch.
///
/// Failed changes do not stop the others; each gets a ledger record. The audit commit
/// touches only audit/ and is pushed with --push. Guards hold the run (exit 3) when too
/// many people would lose access at once; --allow-mass-revoke releases them and is
/// recorded. A revision that does not descend from the last applied one is refused
/// unless --allow-rewind.
///
/// Exit codes: 0 applied (or nothing to do), 1 errors or failed changes, 3 held.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  latchkey apply --dry-run                        # the plan, nothing changed
  latchkey apply --rev main --push                # apply main, push the audit commit
  latchkey apply --rev main --allow-mass-revoke \"offboarding client foo (ticket 12)\"")]
pub struct ApplyArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Print the plan and stop: no system and no git ref is changed.
    #[arg(long)]
    pub dry_run: bool,
    /// Push the audit commit to the remote.
    #[arg(long)]
    pub push: bool,
    /// Release the deletion brake and the empty-client guard, with a reason for the audit.
    #[arg(long, value_name = "REASON")]
    pub allow_mass_revoke: Option<String>,
    /// Accept a history rewrite, with a reason for the audit.
    #[arg(long, value_name = "REASON")]
    pub allow_rewind: Option<String>,
    /// Append to a ledger that no longer holds the last record latchkey wrote (audit/
    /// deleted, or records removed from its end), with a reason for the audit.
    #[arg(long, value_name = "REASON")]
    pub allow_broken_ledger: Option<String>,
    /// How long to wait for another latchkey applying to the same branch (it holds the
    /// writer lock from its plan to its audit commit) before giving up.
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = super::parse_duration)]
    pub lock_wait: std::time::Duration,
    /// How to print the plan and outcomes: text, or json for scripts.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

pub async fn run(args: ApplyArgs) -> Result<Exit, CliError> {
    let mut rec = args.repo.reconciler()?;
    let opts = Options {
        rev: args.repo.rev().to_string(),
        branch: None,
        subpath: args.repo.subpath.clone(),
        now: args.repo.now(),
        dry_run: args.dry_run,
        push: args.push,
        allow_mass_revoke: args.allow_mass_revoke.clone(),
        allow_rewind: args.allow_rewind.clone(),
        allow_broken_ledger: args.allow_broken_ledger.clone(),
        trigger: Trigger::Manual,
    };
    let _lock = rec.lock_writer(&opts, "latchkey apply", args.lock_wait)?;
    let Some(planned) = super::plan_or_report(&mut rec, &opts, "nothing was applied").await? else {
        return Ok(Exit::Errors);
    };
    let tty = output::stderr_is_terminal();
    if args.format == Format::Text {
        output::print(&render::text(&planned.plan, output::stdout_color()))?;
    }
    let bar = if tty && !args.dry_run && !planned.plan.changes.is_empty() {
        let bar = ProgressBar::new(planned.plan.changes.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} changes {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let on_done = |o: &crate::apply::Outcome| {
        bar.inc(1);
        if o.failed() {
            bar.println(format!(
                "failed: {} {} {}: {}",
                o.change.system,
                o.change.op.identity(),
                o.change.verb(),
                failure(&o.result)
            ));
        }
    };
    let applied = rec.apply(planned, &opts, &on_done).await?;
    bar.finish_and_clear();
    let exit = Exit::from(RunOutcome::of(&Ok(&applied)));
    if args.format == Format::Json {
        let doc = serde_json::json!({
            "plan": applied.planned.plan,
            "outcomes": applied.outcomes,
            "held": applied.held,
            "auditCommit": applied.commit.map(|c| c.to_string()),
        });
        output::println(&serde_json::to_string_pretty(&doc).unwrap_or_default())?;
    }
    if applied.held {
        eprintln!(
            "held: nothing was applied. Review the plan, then re-run with --allow-mass-revoke \"<reason>\" if it is intended."
        );
        return Ok(exit);
    }
    if args.dry_run {
        eprintln!("dry run: nothing was applied");
        return Ok(exit);
    }
    let failures = applied.failures();
    // On a terminal the progress bar printed each failure as it landed.
    if !tty {
        for o in applied.outcomes.iter().filter(|o| o.failed()) {
            eprintln!(
                "failed: {} {} {}: {}",
                o.change.system,
                o.change.op.identity(),
                o.change.verb(),
                failure(&o.result)
            );
        }
    }
    eprintln!(
        "applied {} of {} changes",
        applied.outcomes.len() - failures,
        applied.outcomes.len()
    );
    // The plan on stdout names unreadable systems too, but a user reading only stderr
    // (or --format json) must learn why the run failed.
    for s in &applied.planned.plan.systems {
        if let Some(e) = &s.error {
            eprintln!("error: system {}: {e}; nothing was applied to it", s.system);
        }
    }
    match applied.commit {
        Some(c) => eprintln!("audit committed: {c}"),
        None => eprintln!("no audit commit: nothing changed"),
    }
    super::release_at_exit(&mut rec, applied);
    Ok(exit)
}

fn failure(r: &ChangeResult) -> String {
    match r {
        ChangeResult::Failed { error, .. } => error.clone(),
        ChangeResult::Skipped { why } => format!("skipped: {why}"),
        ChangeResult::Applied => String::new(),
    }
}
