//! `latchkey validate`

use clap::Args;

use super::{CliError, Exit, RepoArgs, SummaryFormat, output, print_diagnostics};
use crate::load::Severity;
use crate::source::{Location, Revision, SourceRepo};

/// Check the access repository and report every problem at once.
///
/// Each finding names the file, line and column, what is wrong and what to do. No system
/// is contacted.
///
/// What is read (said on the first line when it is not a commit): in a work tree, the
/// files as they are, uncommitted changes included, as `git add --all` would stage them
/// (untracked files too, ignored ones not). With --staged, the index: what `git commit`
/// would commit, for a pre-commit hook. With --rev, or in a bare repository or a remote:
/// that commit. In a plain directory that is not a repository: its files. Nothing is
/// written to the repository.
///
/// Exit codes: 0 no errors (warnings allowed), 1 errors.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  latchkey validate                   # the working tree of the repository here
  latchkey validate --staged          # what `git commit` would commit
  latchkey validate access --rev main # a commit
  latchkey validate --format json     # findings as JSON on stdout")]
pub struct ValidateArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Read the index (staged changes) instead of the working tree.
    #[arg(long, conflicts_with = "rev")]
    pub staged: bool,
    /// Output: text, or json (the findings on stdout; the summary stays on stderr).
    #[arg(long, value_enum, default_value = "text")]
    pub format: SummaryFormat,
    /// Same as --format json.
    #[arg(long)]
    pub json: bool,
}

/// What `validate` reads.
enum Read {
    Commit,
    WorkTree,
    Index,
    Directory,
}

pub fn run(args: ValidateArgs) -> Result<Exit, CliError> {
    let now = args.repo.now();
    let (repo, rev, read) = open(&args, now)?;
    let label = match read {
        Read::Commit => rev.display(),
        Read::WorkTree => {
            eprintln!(
                "validate: the working tree of {} (uncommitted changes included; --staged for the index, --rev HEAD for the last commit)",
                args.repo.repo
            );
            "working tree".to_string()
        }
        Read::Index => {
            eprintln!(
                "validate: the index of {} (staged changes, as `git commit` would commit them)",
                args.repo.repo
            );
            "index".to_string()
        }
        Read::Directory => {
            eprintln!(
                "validate: the directory {} (not a git repository: its files as they are)",
                args.repo.repo
            );
            "directory".to_string()
        }
    };
    let mut rec = args.repo.reconciler_of(repo);
    let loaded = rec.load(&rev, &args.repo.subpath, now)?;
    if args.json || args.format == SummaryFormat::Json {
        output::println(&serde_json::to_string_pretty(&loaded.diagnostics).unwrap_or_default())?;
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
            "{label}: {errors} error{}, {warnings} warning{}",
            plural(errors),
            plural(warnings)
        );
        return Ok(Exit::Errors);
    }
    // Notifiers are named only when there are some: most repositories have none.
    let notifiers = match c.notifiers.len() {
        0 => String::new(),
        n => format!(", {n} notifier{}", plural(n)),
    };
    eprintln!(
        "{label}: valid ({} systems, {} roles, {} clients, {} members, {} grants{notifiers}; {warnings} warning{})",
        c.systems.len(),
        c.roles.len(),
        c.clients.len(),
        c.members.len(),
        c.grants().count(),
        plural(warnings)
    );
    super::release_at_exit(&mut rec, loaded);
    Ok(Exit::Ok)
}

/// Opens what `validate` reads (see the command's doc) and the revision that holds it.
fn open(
    args: &ValidateArgs,
    now: jiff::Timestamp,
) -> Result<(SourceRepo, Revision, Read), CliError> {
    let location = Location::parse(&args.repo.repo);
    if let Location::Path(dir) = &location
        && super::is_plain_directory(dir)
    {
        if args.staged || args.repo.rev.is_some() {
            return Err(crate::source::SourceError::NoWorkTree {
                location: location.to_string(),
            }
            .into());
        }
        let (repo, rev) = SourceRepo::from_directory(dir, now)?;
        return Ok((repo, rev, Read::Directory));
    }
    let repo = args.repo.open()?;
    if args.staged {
        let rev = repo.snapshot_index(now)?;
        return Ok((repo, rev, Read::Index));
    }
    if args.repo.rev.is_none() && repo.has_work_tree() {
        let rev = repo.snapshot_work_tree(now)?;
        return Ok((repo, rev, Read::WorkTree));
    }
    let rev = repo.resolve(args.repo.rev())?;
    Ok((repo, rev, Read::Commit))
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
