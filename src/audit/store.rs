//! Where the ledger is read from: a revision's git objects (the primary source: no
//! working tree needed, any commit can be verified or queried) or a plain directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use git2::Oid;

use crate::source::{Revision, SourceError, SourceRepo};

/// What failed while reading, parsing or replaying the ledger.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}:{line}: not a ledger record: {source}")]
    Parse {
        file: String,
        line: usize,
        source: serde_json::Error,
    },
    #[error("{file}: not a ledger checkpoint: {source}")]
    Checkpoint {
        file: String,
        source: serde_json::Error,
    },
}

/// A ledger to read: month files are named relative to the audit root,
/// e.g. `ledger/2026/11.jsonl`.
pub enum LedgerSource<'a> {
    /// The audit root (`audit/` or `<sub>/audit/`) at a revision.
    Git {
        repo: &'a SourceRepo,
        rev: Revision,
        root: String,
    },
    /// An `audit/` directory on disk (a checkout).
    Dir(PathBuf),
}

impl LedgerSource<'_> {
    /// A name for messages: `main@sha1:…:audit/` or the directory.
    pub fn describe(&self) -> String {
        match self {
            LedgerSource::Git { rev, root, .. } => format!("{}:{root}", rev.display()),
            LedgerSource::Dir(d) => d.display().to_string(),
        }
    }

    /// Path of `rel` as shown to people (relative to the repository root for git).
    pub fn display_path(&self, rel: &str) -> String {
        match self {
            LedgerSource::Git { root, .. } => format!("{root}{rel}"),
            LedgerSource::Dir(d) => d.join(rel).display().to_string(),
        }
    }

    /// Every month file, oldest first (`ledger/YYYY/MM.jsonl`).
    pub fn months(&self) -> Result<Vec<String>, LedgerError> {
        let mut months = Vec::new();
        match self {
            LedgerSource::Git { .. } => {
                let ids = self.ledger_ids()?.unwrap_or_default();
                months.extend(
                    ids.into_keys()
                        .filter(|k| k.rsplit('/').next().is_some_and(is_month_file)),
                );
            }
            LedgerSource::Dir(dir) => {
                let ledger = dir.join("ledger");
                let Ok(years) = std::fs::read_dir(&ledger) else {
                    return Ok(months);
                };
                for year in years.flatten() {
                    let y = year.file_name().to_string_lossy().to_string();
                    let Ok(files) = std::fs::read_dir(year.path()) else {
                        continue;
                    };
                    for f in files.flatten() {
                        let m = f.file_name().to_string_lossy().to_string();
                        if is_month_file(&m) {
                            months.push(format!("ledger/{y}/{m}"));
                        }
                    }
                }
            }
        }
        months.sort();
        Ok(months)
    }

    /// The git object id of every entry of every year directory (`ledger/YYYY/<name>`:
    /// month files, checkpoints, index manifests and bucket directories), read from the
    /// trees alone. `None` for a directory source, which has no object ids.
    pub fn ledger_ids(&self) -> Result<Option<BTreeMap<String, Oid>>, LedgerError> {
        let LedgerSource::Git { repo, rev, root } = self else {
            return Ok(None);
        };
        let git = repo.git();
        let tree = git
            .find_commit(rev.oid)
            .and_then(|c| c.tree())
            .map_err(SourceError::Git)?;
        let mut ids = BTreeMap::new();
        if let Ok(entry) = tree.get_path(Path::new(&format!("{root}ledger"))) {
            let ledger = git.find_tree(entry.id()).map_err(SourceError::Git)?;
            for year in ledger.iter() {
                let (Ok(y), Ok(t)) = (year.name(), git.find_tree(year.id())) else {
                    continue;
                };
                for e in t.iter() {
                    if let Ok(name) = e.name() {
                        ids.insert(format!("ledger/{y}/{name}"), e.id());
                    }
                }
            }
        }
        Ok(Some(ids))
    }

    /// The files directly in directory `rel` (none when it does not exist), by name, with
    /// their git blob ids from a git source (`None` from a directory source).
    pub fn list(&self, rel: &str) -> Result<BTreeMap<String, Option<Oid>>, LedgerError> {
        let mut out = BTreeMap::new();
        match self {
            LedgerSource::Git { repo, rev, root } => {
                let git = repo.git();
                let tree = git
                    .find_commit(rev.oid)
                    .and_then(|c| c.tree())
                    .map_err(SourceError::Git)?;
                if let Ok(entry) = tree.get_path(Path::new(&format!("{root}{rel}")))
                    && let Ok(dir) = git.find_tree(entry.id())
                {
                    for e in dir.iter() {
                        if let Ok(name) = e.name() {
                            out.insert(name.to_string(), Some(e.id()));
                        }
                    }
                }
            }
            LedgerSource::Dir(dir) => {
                let Ok(files) = std::fs::read_dir(dir.join(rel)) else {
                    return Ok(out);
                };
                for f in files.flatten() {
                    out.insert(f.file_name().to_string_lossy().to_string(), None);
                }
            }
        }
        Ok(out)
    }

    /// Reads a file under the audit root, if it exists.
    pub fn read(&self, rel: &str) -> Result<Option<String>, LedgerError> {
        match self {
            LedgerSource::Git { repo, rev, root } => {
                Ok(repo.file_at(rev, &format!("{root}{rel}"))?)
            }
            LedgerSource::Dir(dir) => {
                let path = dir.join(rel);
                match std::fs::read_to_string(&path) {
                    Ok(t) => Ok(Some(t)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(source) => Err(LedgerError::Io { path, source }),
                }
            }
        }
    }
}

/// `11.jsonl`, two digits then `.jsonl`.
fn is_month_file(name: &str) -> bool {
    name.len() == 8 && name.ends_with(".jsonl") && name[..2].bytes().all(|b| b.is_ascii_digit())
}

/// The checkpoint written next to a month file: `ledger/2026/11.checkpoint.json`.
pub fn checkpoint_path(month: &str) -> String {
    format!("{}.checkpoint.json", month.trim_end_matches(".jsonl"))
}
