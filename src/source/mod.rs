//! Git: read a revision's files straight from objects, and commit the audit back.
//!
//! A repository is either a local path (bare or with a working tree) or a remote URL
//! (`file://`, `git://`, `https://`, `ssh://`) mirrored into a cache directory. Desired
//! state never needs a working tree: any branch, tag, commit or PR head can be read.

pub mod history;
mod lock;
pub mod provenance;
mod repo;
mod snapshot;
mod write;

pub use lock::WriterLock;
pub use repo::{
    BlobReader, Documents, IGNORE_FILE, Location, NotRead, Revision, SourceFile, SourceRepo,
    diff_paths,
};
pub use write::{AuditCommit, GitCredentials};

use std::path::PathBuf;

/// What failed while reading or writing git.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot open repository {location}")]
    Open {
        location: String,
        source: git2::Error,
    },
    #[error("cannot fetch {url}")]
    Fetch { url: String, source: git2::Error },
    #[error("revision {rev:?} not found in {location} (use a branch, tag, commit or HEAD)")]
    Resolve {
        rev: String,
        location: String,
        source: git2::Error,
    },
    #[error("cannot read {path} at {revision}")]
    Read {
        path: String,
        revision: String,
        source: git2::Error,
    },
    #[error(
        "{path} at {revision} is not UTF-8 text: byte 0x{byte:02X} at line {line}, column {column}"
    )]
    NotText {
        path: String,
        revision: String,
        /// The first byte that is not UTF-8, and where it sits (1-based, the column
        /// counted in characters of the valid text before it).
        byte: u8,
        line: usize,
        column: usize,
    },
    #[error("{} line {line}: {message}", repo::IGNORE_FILE)]
    Ignore { line: usize, message: String },
    #[error("cannot commit the audit to branch {branch}")]
    Commit { branch: String, source: git2::Error },
    #[error(
        "cannot tell which branch to commit the audit to: {rev:?} is not a branch; \
         pass a branch name with --rev"
    )]
    NoBranch { rev: String },
    #[error("cannot push branch {branch} to {url}: {message}")]
    Push {
        branch: String,
        url: String,
        message: String,
    },
    #[error("cannot create cache directory {path}")]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "another latchkey is applying to branch {branch}: {holder}; waited {}s. \
         Let it finish and re-run (lock file {})", waited.as_secs(), path.display()
    )]
    Locked {
        branch: String,
        holder: String,
        waited: std::time::Duration,
        path: PathBuf,
    },
    #[error("cannot take the writer lock {}", path.display())]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {what} into memory")]
    Snapshot { what: String, source: git2::Error },
    #[error(
        "{location} has no working tree (a bare repository or a remote): \
         validate a commit with --rev"
    )]
    NoWorkTree { location: String },
    #[error(
        "the index of {location} has unresolved conflicts: resolve them and `git add` the \
         files, then validate again"
    )]
    Conflicts { location: String },
    #[error("cannot read {}", path.display())]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the audit ledger: {0}")]
    Ledger(String),
    #[error("git: {}", git_message(.0))]
    Git(#[from] git2::Error),
}

/// What a git error says, without libgit2's `; class=…; code=…` (which tells a user
/// nothing they can act on).
pub fn git_message(e: &git2::Error) -> String {
    e.message().trim_end_matches('.').to_string()
}

/// An error and its sources, `: `-joined, git errors by [`git_message`]: printed once, at
/// the edge or in the one finding that reports it.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    fn one(e: &(dyn std::error::Error + 'static)) -> String {
        match e.downcast_ref::<git2::Error>() {
            Some(g) => git_message(g),
            None => e.to_string(),
        }
    }
    let mut out = one(err);
    let mut source = err.source();
    while let Some(s) = source {
        // A message that already ends with its source's text (`git: {0}`) says it once.
        let next = one(s);
        if !out.ends_with(&next) {
            out.push_str(": ");
            out.push_str(&next);
        }
        source = s.source();
    }
    out
}
