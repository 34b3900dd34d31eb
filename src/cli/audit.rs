//! `latchkey audit verify`, `latchkey who`, `latchkey history`: the ledger alone, no
//! system contacted.

use std::fmt::Write;
use std::path::Path;

use clap::{Args, Subcommand};
use jiff::Timestamp;

use super::{CliError, Exit, Format, SourceArgs, SummaryFormat, output, parse_instant_or_date};
use crate::audit::offboarding::{Offboarding, offboarding};
use crate::audit::replay::{self, Access};
use crate::audit::report::short_revision;
use crate::audit::store::{LedgerError, LedgerSource};
use crate::audit::verify::verify_anchored;
use crate::audit::{Record, audit_root};
use crate::plan::render::{instant, md};
use crate::source::SourceRepo;

/// Check the audit ledger.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  latchkey audit verify --rev main")]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    Verify(VerifyArgs),
}

/// Walk the whole hash-chained ledger and report the first broken link.
///
/// Reads the ledger from git objects at --rev (or from a plain directory: a checkout
/// or an `audit/` directory), recomputes every record's hash and `prev` link, checks
/// each month checkpoint against a replay and `state.yaml`'s ledgerHead against the last
/// record. Exits 0 when intact, 1 at the first break (printed as file:line: what).
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  latchkey audit verify                 # the ledger at HEAD, with its anchor
  latchkey audit verify --rev main --format json
  latchkey audit verify ./audit         # a copy of audit/, outside git")]
pub struct VerifyArgs {
    #[command(flatten)]
    pub repo: SourceArgs,
    /// Output: text, or json.
    #[arg(long, value_enum, default_value = "text")]
    pub format: SummaryFormat,
}

/// List who had which entitlement at an instant, from the ledger alone.
///
/// Effective access is rebuilt by replaying applied changes from the month's checkpoint;
/// no system is contacted. Access lasts until the ledger records its revocation.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  latchkey who                                   # now
  latchkey who --client acme --at 2026-03-15     # at the start of that day, UTC
  latchkey who --system portal --at 2026-03-15T12:00:00Z --format markdown")]
pub struct WhoArgs {
    #[command(flatten)]
    pub repo: SourceArgs,
    /// The instant: RFC 3339 (2026-03-15T12:00:00Z), a date alone (2026-03-15, its start
    /// in UTC) or `now`.
    #[arg(long, value_name = "TIME", default_value = "now", value_parser = parse_instant_or_date)]
    pub at: Timestamp,
    /// Only this client's access (its staff's, and agency staff's grants for it).
    #[arg(long, value_name = "CLIENT")]
    pub client: Option<String>,
    /// Only access on this System.
    #[arg(long, value_name = "SYSTEM")]
    pub system: Option<String>,
    /// Only access granted through this Role.
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
    /// Output: text, markdown (a table to hand to a client) or json.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// List every grant, change and revocation of one person, with commits and reasons.
///
/// For a person latchkey offboarded, the offboarding record follows: each system and the
/// instant access ended there (the last applied revoke, disable or delete recorded with
/// reason offboarded), or what is still pending there and since when (a failed or skipped
/// offboarding change with no later success, or access the ledger still shows held).
/// JSON output is an object: `records`, and `offboarding` (null when there is none).
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  latchkey history erin@acme.example
  latchkey history erin@acme.example --rev main --format json")]
pub struct HistoryArgs {
    /// The person's email address.
    pub email: String,
    #[command(flatten)]
    pub repo: SourceArgs,
    /// Output: text, markdown or json.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// Opens the ledger: git objects at --rev, or a plain directory that is not a repository.
fn with_source<T>(
    args: &SourceArgs,
    f: impl FnOnce(&LedgerSource<'_>) -> Result<T, LedgerError>,
) -> Result<T, CliError> {
    let path = Path::new(&args.repo);
    if super::is_plain_directory(path) {
        let root = audit_root(&args.subpath);
        let dir = if path.join(&root).is_dir() {
            path.join(&root)
        } else {
            path.to_path_buf()
        };
        return Ok(f(&LedgerSource::Dir(dir))?);
    }
    let repo: SourceRepo = args.open()?;
    let rev = repo.resolve(args.rev())?;
    let src = LedgerSource::Git {
        repo: &repo,
        rev,
        root: audit_root(&args.subpath),
    };
    Ok(f(&src)?)
}

pub fn run_audit(args: AuditArgs) -> Result<Exit, CliError> {
    match args.command {
        AuditCommand::Verify(a) => run_verify(a),
    }
}

fn run_verify(args: VerifyArgs) -> Result<Exit, CliError> {
    let (v, what) = with_source(&args.repo, |src| {
        // From git, the chain must also hold the head anchored outside audit/.
        let anchor = match src {
            LedgerSource::Git { repo, rev, root } => crate::audit::anchor::find(repo, rev, root),
            LedgerSource::Dir(_) => None,
        };
        Ok((verify_anchored(src, anchor.as_ref())?, src.describe()))
    })?;
    match args.format {
        SummaryFormat::Json => {
            output::println(&serde_json::to_string_pretty(&v).unwrap_or_default())?
        }
        _ => match &v.broken {
            Some(b) => output::println(&b.to_string())?,
            None => output::println(&format!(
                "{what}: ledger intact: {} records in {} month files, {} checkpoints, head {}",
                v.records, v.months, v.checkpoints, v.head
            ))?,
        },
    }
    if let Some(b) = &v.broken {
        eprintln!(
            "error: the ledger is broken at {}:{}",
            b.file,
            b.line.map(|l| l.to_string()).unwrap_or_default()
        );
        return Ok(Exit::Errors);
    }
    Ok(Exit::Ok)
}

pub fn run_who(args: WhoArgs) -> Result<Exit, CliError> {
    let state = with_source(&args.repo, |src| replay::state_at(src, args.at))?;
    let rows: Vec<&Access> = state
        .entries()
        .filter(|a| args.client.is_none() || a.client == args.client)
        .filter(|a| args.system.as_ref().is_none_or(|s| &a.system == s))
        .filter(|a| args.role.is_none() || a.role == args.role)
        .collect();
    output::print(&render_who(&rows, args.at, args.format))?;
    Ok(Exit::Ok)
}

/// Renders `who --at` rows.
pub fn render_who(rows: &[&Access], at: Timestamp, format: Format) -> String {
    let mut s = String::new();
    match format {
        Format::Json => {
            s = serde_json::to_string_pretty(&serde_json::json!({ "at": at, "access": rows }))
                .unwrap_or_default();
            s.push('\n');
        }
        Format::Text => {
            let _ = writeln!(s, "Access at {} ({} entitlements)", instant(at), rows.len());
            for a in rows {
                let _ = writeln!(
                    s,
                    "{}  {}  {}  role {}  client {}  since {}  until {}  granted by {}",
                    a.identity,
                    a.system,
                    if a.entitlement.is_empty() {
                        "(account)"
                    } else {
                        &a.entitlement
                    },
                    a.role.as_deref().unwrap_or("–"),
                    a.client.as_deref().unwrap_or("–"),
                    instant(a.since),
                    a.expires.map(instant).unwrap_or_else(|| "no expiry".into()),
                    short_revision(&a.revision)
                );
            }
        }
        Format::Markdown => {
            let _ = writeln!(s, "## Access at {}\n", instant(at));
            if rows.is_empty() {
                let _ = writeln!(s, "Nobody.");
                return s;
            }
            let _ = writeln!(
                s,
                "| Person | System | Entitlement | Role | Client | Since | Until | Granted by |"
            );
            let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
            for a in rows {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} | `{}` |",
                    a.identity,
                    a.system,
                    a.entitlement,
                    a.role.as_deref().unwrap_or("–"),
                    a.client.as_deref().unwrap_or("–"),
                    instant(a.since),
                    a.expires.map(instant).unwrap_or_else(|| "no expiry".into()),
                    short_revision(&a.revision)
                );
            }
        }
    }
    s
}

pub fn run_history(args: HistoryArgs) -> Result<Exit, CliError> {
    let (records, offboarding) = with_source(&args.repo, |src| {
        let records = replay::history(src, &args.email)?;
        let (state, _) = replay::state_at_end(src)?;
        let held = state
            .entries()
            .filter(|a| a.identity.eq_ignore_ascii_case(&args.email));
        let offboarding = offboarding(&crate::model::identity(&args.email), &records, held);
        Ok((records, offboarding))
    })?;
    output::print(&render_history(
        &args.email,
        &records,
        offboarding.as_ref(),
        args.format,
    ))?;
    Ok(Exit::Ok)
}

/// Renders `history` records, then the offboarding record when there is one.
pub fn render_history(
    email: &str,
    records: &[Record],
    offboarding: Option<&Offboarding>,
    format: Format,
) -> String {
    let mut s = String::new();
    let what = |r: &Record| {
        let mut w = r.change.as_deref().unwrap_or("").replace('-', " ");
        if let Some(e) = &r.entitlement {
            let _ = write!(w, " {e}");
        }
        w
    };
    match format {
        Format::Json => {
            let body = serde_json::json!({
                "email": email,
                "records": records,
                "offboarding": offboarding,
            });
            s = serde_json::to_string_pretty(&body).unwrap_or_default();
            s.push('\n');
        }
        Format::Text => {
            let _ = writeln!(s, "History of {email} ({} records)", records.len());
            for r in records {
                let _ = writeln!(
                    s,
                    "{}  {}  on {}  ({})  {}{}  role {}  {}  run {}",
                    instant(r.time),
                    what(r),
                    r.system.as_deref().unwrap_or("–"),
                    r.reason.as_deref().unwrap_or("–"),
                    r.result.as_deref().unwrap_or("–"),
                    r.error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default(),
                    r.role.as_deref().unwrap_or("–"),
                    short_revision(&r.revision),
                    r.run
                );
            }
            if let Some(o) = offboarding {
                let _ = writeln!(s, "\n{}", o.summary());
                for sys in &o.systems {
                    let _ = writeln!(s, "  {}  {}", sys.system, sys.describe());
                }
            }
        }
        Format::Markdown => {
            let _ = writeln!(s, "## History of {email}\n");
            if records.is_empty() {
                let _ = writeln!(s, "No records.");
                return s;
            }
            if let Some(o) = offboarding {
                let _ = writeln!(s, "### Offboarding\n\n{}\n", md(&o.summary()));
                let _ = writeln!(s, "| System | Access |\n|---|---|");
                for sys in &o.systems {
                    let _ = writeln!(s, "| {} | {} |", md(&sys.system), md(&sys.describe()));
                }
                let _ = writeln!(s, "\n### Records\n");
            }
            let _ = writeln!(
                s,
                "| Time | Change | System | Role | Reason | Result | Commit |"
            );
            let _ = writeln!(s, "|---|---|---|---|---|---|---|");
            for r in records {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | `{}` |",
                    instant(r.time),
                    what(r),
                    r.system.as_deref().unwrap_or("–"),
                    r.role.as_deref().unwrap_or("–"),
                    r.reason.as_deref().unwrap_or("–"),
                    r.result.as_deref().unwrap_or("–"),
                    short_revision(&r.revision)
                );
            }
        }
    }
    s
}
