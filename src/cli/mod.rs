//! The command line: one file per subcommand. A command's doc comment is its `--help`.

mod apply;
mod audit;
mod check;
mod codeowners;
mod completions;
mod crds;
mod import;
mod man;
mod operator;
pub mod output;
mod plan;
mod review;
mod run;
mod schema;
mod serve;
mod validate;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use jiff::{SignedDuration, Timestamp};

use crate::connectors::{Registry, SecretSource};
use crate::reconcile::{ReconcileError, Reconciler};
use crate::source::{Location, SourceError, SourceRepo};

/// latchkey: access to client portals and staging systems, declared in git.
///
/// Declare Systems, Roles, Clients and Members as YAML in a git repository; latchkey
/// validates it, plans the difference against each system, applies it, revokes expired
/// grants and offboarded people, and commits a hash-chained audit trail back.
///
/// A typical change: `latchkey validate` while editing, `latchkey plan` to review what
/// would change (or `plan --base main --head <branch>` on a pull request), then
/// `latchkey apply`.
///
/// Colour follows NO_COLOR, CLICOLOR and CLICOLOR_FORCE, and is off when the output is not
/// a terminal (logs included).
#[derive(Parser, Debug)]
#[command(
    name = "latchkey",
    version,
    propagate_version = true,
    max_term_width = 100,
    after_help = "Examples:
  latchkey validate                                   # the working tree, while editing
  latchkey plan --now 2026-12-15T18:00:00Z            # what will have expired by then
  latchkey plan --base main --head my-branch --format markdown
  latchkey apply --rev main --push
  latchkey who --client acme --at 2026-03-15"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log filter (also RUST_LOG), e.g. `info` or `latchkey=debug`.
    #[arg(
        long,
        value_name = "FILTER",
        global = true,
        display_order = 1000,
        default_value = "warn",
        env = "LATCHKEY_LOG"
    )]
    pub log: String,
    /// Log lines as text, or as JSON objects (one a line) for a log collector.
    #[arg(
        long,
        value_enum,
        global = true,
        display_order = 1001,
        default_value = "text",
        env = "LATCHKEY_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
}

/// How log lines are written to stderr.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    Validate(validate::ValidateArgs),
    Plan(plan::PlanArgs),
    Apply(apply::ApplyArgs),
    Run(run::RunArgs),
    Check(check::CheckArgs),
    Codeowners(codeowners::CodeownersArgs),
    Crds(crds::CrdsArgs),
    Operator(operator::OperatorArgs),
    Schema(schema::SchemaArgs),
    Audit(audit::AuditArgs),
    Who(audit::WhoArgs),
    History(audit::HistoryArgs),
    Review(review::ReviewArgs),
    Serve(serve::ServeArgs),
    Completions(completions::CompletionsArgs),
    Man(man::ManArgs),
    Import(import::ImportArgs),
}

/// Where the access repository is and which revision to read.
#[derive(Args, Debug, Clone)]
pub struct SourceArgs {
    /// The access repository: a local path, or a URL (file://, git://, https://, ssh://).
    #[arg(default_value = ".")]
    pub repo: String,
    /// Branch, tag, commit or HEAD to read (default: HEAD; `validate`: the working tree).
    #[arg(long, value_name = "REV")]
    pub rev: Option<String>,
    /// Sub-path of the repository that holds the documents (default: its root).
    #[arg(
        long = "path",
        value_name = "DIR",
        default_value = "",
        hide_default_value = true
    )]
    pub subpath: String,
    /// Where remote repositories are mirrored (default: ~/.cache/latchkey).
    #[arg(long, value_name = "DIR", env = "LATCHKEY_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

impl SourceArgs {
    /// The revision to read: `--rev`, else `HEAD`.
    pub fn rev(&self) -> &str {
        self.rev.as_deref().unwrap_or("HEAD")
    }

    pub fn open(&self) -> Result<SourceRepo, SourceError> {
        let cache = self.cache_dir.clone().unwrap_or_else(default_cache_dir);
        SourceRepo::open(&Location::parse(&self.repo), &cache)
    }

    pub fn reconciler(&self) -> Result<Reconciler, SourceError> {
        Ok(self.reconciler_of(self.open()?))
    }

    /// A reconciler over an already opened repository.
    pub fn reconciler_of(&self, repo: SourceRepo) -> Reconciler {
        Reconciler::new(repo, Registry::builtin(SecretSource::default()))
    }
}

/// [`SourceArgs`] and the instant grants are evaluated at, for the commands where time
/// changes the answer (validate, plan, apply, run, check).
#[derive(Args, Debug, Clone)]
pub struct RepoArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Evaluate grants at this instant instead of the clock (RFC 3339, e.g.
    /// 2026-12-15T18:00:00Z): what will have expired by then? `apply` (without --dry-run)
    /// and `run` refuse an instant in the future.
    #[arg(long, value_name = "TIME", value_parser = parse_timestamp)]
    pub now: Option<Timestamp>,
}

/// `args.repo.rev()`, `args.repo.open()`: a RepoArgs is read like the SourceArgs it holds.
impl std::ops::Deref for RepoArgs {
    type Target = SourceArgs;
    fn deref(&self) -> &SourceArgs {
        &self.source
    }
}

impl RepoArgs {
    pub fn now(&self) -> Timestamp {
        self.now.unwrap_or_else(Timestamp::now)
    }

    /// For commands that change systems and write the ledger: a `--now` later than
    /// `clock` (beyond [`NOW_SKEW`]) would revoke grants before their time and record
    /// an instant that has not happened. Any past instant is accepted.
    pub fn refuse_future_now(&self, clock: Timestamp) -> Result<(), CliError> {
        match self.now {
            Some(now) if now.duration_since(clock) > NOW_SKEW => {
                Err(CliError::FutureNow { now, clock })
            }
            _ => Ok(()),
        }
    }
}

/// How far past the clock `apply` and `run` accept `--now`: enough for a clock that is
/// a little behind the one that computed the instant, too little to revoke anything early
/// in earnest.
pub const NOW_SKEW: SignedDuration = SignedDuration::from_secs(5);

fn default_cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("latchkey")
}

/// A duration such as `30s`, `5m` or `2h`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let d = crate::model::GrantDuration::parse(s).map_err(|e| e.to_string())?;
    Ok(std::time::Duration::from_secs(
        d.as_signed().as_secs() as u64
    ))
}

pub fn parse_timestamp(s: &str) -> Result<Timestamp, String> {
    crate::model::parse_instant(s).map_err(|e| match e {
        crate::model::ParseInstantError::Syntax(_) => {
            format!("{s:?} is not an RFC 3339 timestamp with offset, e.g. 2026-12-15T18:00:00Z")
        }
        too_late => too_late.to_string(),
    })
}

/// `--at`: an RFC 3339 instant, a date alone (its start, in UTC) or `now` (the clock).
pub fn parse_instant_or_date(s: &str) -> Result<Timestamp, String> {
    if s.eq_ignore_ascii_case("now") {
        return Ok(Timestamp::now());
    }
    let neither = || {
        format!(
            "{s:?} is neither a date (2026-03-15), an RFC 3339 instant (2026-03-15T12:00:00Z) nor `now`"
        )
    };
    match crate::model::parse_instant(s) {
        Ok(t) => Ok(t),
        Err(crate::model::ParseInstantError::Syntax(_)) => {
            let date: jiff::civil::Date = s.parse().map_err(|_| neither())?;
            let start = date
                .to_zoned(jiff::tz::TimeZone::UTC)
                .map_err(|_| neither())?
                .timestamp();
            // Through the instant parser, so a date past the end of time is refused alike.
            parse_timestamp(&start.to_string())
        }
        Err(too_late) => Err(too_late.to_string()),
    }
}

/// Output formats of reports.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Markdown,
    Json,
}

/// Output formats of commands whose result is a summary or findings, not a report.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SummaryFormat {
    Text,
    Json,
}

/// The process exit code, documented in the README.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Success; for `plan`: no changes.
    Ok = 0,
    /// Errors: invalid repository, unreadable system, failed change.
    Errors = 1,
    /// `plan`: there are changes.
    Changes = 2,
    /// `apply`: held by a guard (deletion brake, empty client).
    Held = 3,
}

impl From<crate::reconcile::RunOutcome> for Exit {
    fn from(o: crate::reconcile::RunOutcome) -> Exit {
        match o.exit_code() {
            0 => Exit::Ok,
            3 => Exit::Held,
            _ => Exit::Errors,
        }
    }
}

/// What a command failed with; printed once at the edge with its chain.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
    #[error(transparent)]
    Generate(#[from] crate::controller::generate::GenerateError),
    #[error(transparent)]
    Operator(#[from] crate::controller::operator::RunError),
    #[error(transparent)]
    Ledger(#[from] crate::audit::store::LedgerError),
    #[error("cannot write output")]
    Io(#[from] std::io::Error),
    /// Whoever read stdout stopped reading (`| head`): the command ends quietly.
    #[error("the output was closed")]
    ClosedPipe,
    #[error(
        "--now {now} is in the future (the clock says {clock}); apply and run act at the present, use plan or apply --dry-run to look ahead"
    )]
    FutureNow { now: Timestamp, clock: Timestamp },
}

/// Runs a parsed command.
pub async fn run(cli: Cli) -> Result<Exit, CliError> {
    // The wall clock is read here, at the edge, and only for this check.
    match &cli.command {
        Command::Apply(a) if !a.dry_run => a.repo.refuse_future_now(Timestamp::now())?,
        Command::Run(a) => a.repo.refuse_future_now(Timestamp::now())?,
        _ => {}
    }
    match cli.command {
        Command::Validate(a) => validate::run(a),
        Command::Plan(a) => plan::run(a).await,
        Command::Apply(a) => apply::run(a).await,
        Command::Run(a) => run::run(a).await,
        Command::Check(a) => check::run(a),
        Command::Codeowners(a) => codeowners::run(a),
        Command::Crds(a) => crds::run(a),
        Command::Operator(a) => operator::run(a).await,
        Command::Schema(a) => schema::run(a),
        Command::Audit(a) => audit::run_audit(a),
        Command::Who(a) => audit::run_who(a),
        Command::History(a) => audit::run_history(a),
        Command::Review(a) => review::run(a),
        Command::Serve(a) => serve::run(a).await,
        Command::Completions(a) => completions::run(a),
        Command::Man(a) => man::run(a),
        Command::Import(a) => import::run(a).await,
    }
}

/// A directory that is no repository (nor a bare one): `validate` and the ledger
/// commands read its files as they are. A repository git refuses to open (one owned by
/// another user) is not one: opening it reports why.
pub(crate) fn is_plain_directory(dir: &std::path::Path) -> bool {
    dir.is_dir()
        && matches!(git2::Repository::open(dir), Err(e) if e.code() == git2::ErrorCode::NotFound)
}

/// "1 error", "2 errors".
pub(crate) fn count(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// Plans, or prints an invalid revision's findings (with what to do next) and returns
/// `None`, so `plan` and `apply` report it the same way.
pub(crate) async fn plan_or_report(
    rec: &mut crate::reconcile::Reconciler,
    opts: &crate::reconcile::Options,
    then: &str,
) -> Result<Option<crate::reconcile::Planned>, CliError> {
    match rec.plan(opts).await {
        Ok(p) => {
            // Warnings (files not read, …) are shown by every command that loads.
            print_diagnostics(
                p.loaded
                    .diagnostics
                    .iter()
                    .filter(|d| d.severity == crate::load::Severity::Warning),
            );
            Ok(Some(p))
        }
        Err(ReconcileError::Invalid { revision, errors }) => {
            print_diagnostics(&errors);
            eprintln!(
                "error: revision {revision} is invalid ({}); {then}",
                count(errors.len(), "error")
            );
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Ends a one-shot command without freeing what it loaded (a plan, a load) and what the
/// reconciler keeps one by one: the process exit gives the memory back at once, where
/// dropping them took over a second of a 4 s `latchkey plan` at 600,000 grants. Only
/// data goes ([`Reconciler::forget_kept_data`]): the repository handle, the connectors
/// and any writer lock are dropped as usual (connections close, the lock's holder line
/// is cleared).
pub(crate) fn release_at_exit<T>(rec: &mut Reconciler, loaded: T) {
    std::mem::forget(loaded);
    rec.forget_kept_data();
}

/// Prints validation findings to stderr.
pub(crate) fn print_diagnostics<'a>(diags: impl IntoIterator<Item = &'a crate::load::Diagnostic>) {
    for d in diags {
        eprintln!("{d}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_args(now: Option<&str>) -> RepoArgs {
        RepoArgs {
            source: SourceArgs {
                repo: ".".into(),
                rev: None,
                subpath: String::new(),
                cache_dir: None,
            },
            now: now.map(|n| n.parse().unwrap()),
        }
    }

    #[test]
    fn now_past_the_bound_is_refused_for_what_it_is() {
        assert_eq!(
            parse_timestamp("9999-12-31T23:59:59Z").unwrap_err(),
            "timestamp \"9999-12-31T23:59:59Z\" is not before 9000-01-01T00:00:00Z, the latest instant latchkey accepts"
        );
        assert_eq!(
            parse_timestamp("tomorrow").unwrap_err(),
            "\"tomorrow\" is not an RFC 3339 timestamp with offset, e.g. 2026-12-15T18:00:00Z"
        );
    }

    #[test]
    fn a_future_now_is_refused_beyond_the_skew() {
        let clock: Timestamp = "2026-11-20T12:00:00Z".parse().unwrap();
        for ok in [
            None,
            Some("2001-01-01T00:00:00Z"),
            Some("2026-11-20T12:00:00Z"),
            Some("2026-11-20T12:00:05Z"),
        ] {
            assert!(repo_args(ok).refuse_future_now(clock).is_ok(), "{ok:?}");
        }
        let e = repo_args(Some("2026-11-20T12:00:05.001Z"))
            .refuse_future_now(clock)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "--now 2026-11-20T12:00:05.001Z is in the future (the clock says 2026-11-20T12:00:00Z); apply and run act at the present, use plan or apply --dry-run to look ahead"
        );
    }
}
