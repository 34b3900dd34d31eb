//! `latchkey audit verify`, `latchkey who`, `latchkey history`: the ledger alone, no
//! system contacted.

use std::fmt::Write;
use std::path::Path;

use clap::{Args, Subcommand};
use jiff::Timestamp;

use super::{CliError, Exit, Format, RepoArgs, parse_timestamp};
use crate::audit::replay::{self, Access};
use crate::audit::report::short_revision;
use crate::audit::store::{LedgerError, LedgerSource};
use crate::audit::verify::verify_anchored;
use crate::audit::{Record, audit_root};
use crate::plan::render::instant;
use crate::source::SourceRepo;

/// Check the audit ledger.
#[derive(Args, Debug)]
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
pub struct VerifyArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// List who had which entitlement at an instant, from the ledger alone.
///
/// Effective access is rebuilt by replaying applied changes from the month's checkpoint;
/// no system is contacted. Access lasts until the ledger records its revocation.
#[derive(Args, Debug)]
pub struct WhoArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// The instant (RFC 3339), e.g. 2026-03-15T12:00:00Z.
    #[arg(long, value_parser = parse_timestamp)]
    pub at: Timestamp,
    #[arg(long)]
    pub client: Option<String>,
    #[arg(long)]
    pub system: Option<String>,
    #[arg(long)]
    pub role: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// List every grant, change and revocation of one person, with commits and reasons.
#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// The person's email address.
    pub email: String,
    #[command(flatten)]
    pub repo: RepoArgs,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// Opens the ledger: git objects at --rev, or a plain directory that is not a repository.
fn with_source<T>(
    args: &RepoArgs,
    f: impl FnOnce(&LedgerSource<'_>) -> Result<T, LedgerError>,
) -> Result<T, CliError> {
    let path = Path::new(&args.repo);
    let is_dir = path.is_dir() && git2::Repository::open(path).is_err();
    if is_dir {
        let root = audit_root(&args.subpath);
        let dir = if path.join(&root).is_dir() {
            path.join(&root)
        } else {
            path.to_path_buf()
        };
        return Ok(f(&LedgerSource::Dir(dir))?);
    }
    let repo: SourceRepo = args.open()?;
    let rev = repo.resolve(&args.rev)?;
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
        Format::Json => println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default()),
        _ => match &v.broken {
            Some(b) => println!("{b}"),
            None => println!(
                "{what}: ledger intact: {} records in {} month files, {} checkpoints, head {}",
                v.records, v.months, v.checkpoints, v.head
            ),
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
    print!("{}", render_who(&rows, args.at, args.format));
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
    let records = with_source(&args.repo, |src| replay::history(src, &args.email))?;
    print!("{}", render_history(&args.email, &records, args.format));
    Ok(Exit::Ok)
}

/// Renders `history` records.
pub fn render_history(email: &str, records: &[Record], format: Format) -> String {
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
            s = serde_json::to_string_pretty(records).unwrap_or_default();
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
        }
        Format::Markdown => {
            let _ = writeln!(s, "## History of {email}\n");
            if records.is_empty() {
                let _ = writeln!(s, "No records.");
                return s;
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
