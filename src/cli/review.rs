//! `latchkey review`: access reviews due and overdue (docs/reviews.md).

use std::fmt::Write;

use clap::Args;

use super::{CliError, Exit, Format, RepoArgs, output, print_diagnostics};
use crate::model::GrantDuration;
use crate::plan::render::{instant, md, relative};
use crate::recertify::{ClientReview, DueGrant, ReviewList, due_within};
use crate::source::history::MergeTimes;

/// List the grants whose access review is due or overdue, per client and person.
///
/// A Client's `reviewEvery` (default: the Policy's) sets how often each grant is reviewed;
/// the next review falls due that long after the grant's `reviewed.at`, or after the
/// commit that introduced it when it was never reviewed. A review is recorded in git by
/// setting `reviewed: {at, by}` on the grant, so it is itself a reviewed change. Each
/// grant listed shows its role, due instant, last review (or "never"), and who granted it
/// and when (the author and time of the commit that introduced it). No system is
/// contacted.
///
/// The markdown output is meant for a scheduled CI job that opens a review pull request
/// for each client's admins (named at the top of each client's section).
///
/// Exit codes: 0 nothing due, 2 something due or overdue listed (like `plan` with
/// changes: something to act on), 1 errors (an invalid revision).
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  latchkey review                                   # HEAD, now, what falls due in 14 days
  latchkey review --client acme --format markdown > review.md
  latchkey review --rev main --within 30d --format json
  latchkey review --now 2027-01-01T00:00:00Z        # what will be overdue by then")]
pub struct ReviewArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Only this client's grants.
    #[arg(long, value_name = "CLIENT")]
    pub client: Option<String>,
    /// List grants falling due up to this long after --now (overdue ones always).
    #[arg(long, value_name = "DURATION", default_value = "14d", value_parser = parse_within)]
    pub within: GrantDuration,
    /// Output: text, markdown (a review pull request's body) or json.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

fn parse_within(s: &str) -> Result<GrantDuration, String> {
    GrantDuration::parse(s).map_err(|e| e.to_string())
}

pub fn run(args: ReviewArgs) -> Result<Exit, CliError> {
    let now = args.repo.now();
    let mut rec = args.repo.reconciler()?;
    let rev = rec.repo.resolve(args.repo.rev())?;
    let loaded = rec.load(&rev, &args.repo.subpath, now)?;
    if !loaded.is_valid() {
        print_diagnostics(loaded.errors());
        eprintln!("error: revision {} is invalid", rev.display());
        return Ok(Exit::Errors);
    }
    if let Some(c) = &args.client
        && !loaded.catalog.clients.contains_key(c)
    {
        eprintln!("error: no Client {c:?} in revision {}", rev.display());
        return Ok(Exit::Errors);
    }
    let history = MergeTimes::new(&rec.repo, &rev, &args.repo.subpath);
    let introduced =
        |identity: &str, grant: &crate::model::Grant| history.introduced(identity, grant);
    let list = due_within(
        &loaded.catalog,
        now,
        args.within,
        args.client.as_deref(),
        &introduced,
    );
    output::print(&render(&list, args.format))?;
    Ok(if list.is_empty() {
        Exit::Ok
    } else {
        Exit::Changes
    })
}

/// Renders a review list.
pub fn render(list: &ReviewList, format: Format) -> String {
    let mut s = String::new();
    match format {
        Format::Json => {
            s = serde_json::to_string_pretty(list).unwrap_or_default();
            s.push('\n');
        }
        Format::Text => {
            let _ = writeln!(
                s,
                "Reviews due by {} (within {} of {}): {}",
                instant(list.now.checked_add(within(list)).unwrap_or(list.now)),
                list.within,
                instant(list.now),
                super::count(list.len(), "grant")
            );
            for c in &list.clients {
                let _ = writeln!(s, "\n{} (admins: {})", title(c), admins(c, false));
                for g in &c.grants {
                    let _ = writeln!(
                        s,
                        "  {}  {}  {}  last reviewed {}  granted {}  {}",
                        g.identity,
                        g.role,
                        status(g, list),
                        last_review(g),
                        granted(g),
                        g.file
                    );
                }
            }
        }
        Format::Markdown => {
            if list.is_empty() {
                let _ = writeln!(
                    s,
                    "No access review falls due by {} (within {}).",
                    instant(list.now.checked_add(within(list)).unwrap_or(list.now)),
                    list.within
                );
            }
            for c in &list.clients {
                let _ = writeln!(s, "## Access review: {}\n", md(&title(c)));
                let _ = writeln!(
                    s,
                    "For the client's admins: {}. Each grant below is due for review \
                     (every {}) as of {}. For each one, confirm it is still needed and \
                     set `reviewed: {{at: <now>, by: <your email>}}` on the grant in its \
                     file, or remove the grant; then approve this pull request.\n",
                    admins(c, true),
                    reviews_every(c),
                    instant(list.now)
                );
                let _ = writeln!(
                    s,
                    "| Person | Role | Due | Last reviewed | Granted by | File |"
                );
                let _ = writeln!(s, "|---|---|---|---|---|---|");
                for g in &c.grants {
                    let _ = writeln!(
                        s,
                        "| {} | {} | {} | {} | {} | {} (grant {}) |",
                        md(&g.identity),
                        md(&g.role),
                        status(g, list),
                        md(&last_review(g)),
                        md(&granted(g)),
                        md(&g.file),
                        g.index
                    );
                }
                s.push('\n');
            }
        }
    }
    s
}

fn within(list: &ReviewList) -> jiff::SignedDuration {
    GrantDuration::parse(&list.within).map_or(jiff::SignedDuration::ZERO, |d| d.as_signed())
}

fn title(c: &ClientReview) -> String {
    match &c.display_name {
        Some(d) => format!("{d} ({})", c.client),
        None => c.client.clone(),
    }
}

fn admins(c: &ClientReview, markdown: bool) -> String {
    if c.admins.is_empty() {
        return "none listed (the agency reviews)".into();
    }
    let quote = |a: &String| if markdown { md(a) } else { a.clone() };
    c.admins.iter().map(quote).collect::<Vec<_>>().join(", ")
}

fn reviews_every(c: &ClientReview) -> String {
    let mut every: Vec<&str> = c.grants.iter().map(|g| g.review_every.as_str()).collect();
    every.sort_unstable();
    every.dedup();
    every.join(", ")
}

/// "overdue since 2026-10-31T00:00:00Z (20d ago)" / "due 2026-12-10T00:00:00Z (in 20d)".
fn status(g: &DueGrant, list: &ReviewList) -> String {
    let when = format!("{} ({})", instant(g.due), relative(g.due, list.now));
    match (g.overdue, g.ends_at_review) {
        (true, true) => format!("overdue since {when}, revoked"),
        (true, false) => format!("overdue since {when}"),
        (false, true) => format!("due {when}, revoked then"),
        (false, false) => format!("due {when}"),
    }
}

fn last_review(g: &DueGrant) -> String {
    match &g.reviewed {
        Some(r) => format!("{} by {}", r.at, r.by),
        None => "never".into(),
    }
}

fn granted(g: &DueGrant) -> String {
    match (&g.granted_by, g.granted_at) {
        (Some(by), Some(at)) => format!("by {by} at {}", instant(at)),
        _ => "(not in the history read)".into(),
    }
}
