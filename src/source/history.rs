//! When was a grant merged? `for: 14d` counts from the committer time of the first
//! commit (walking first parents back from the revision) that carries the grant
//! unchanged, and so does a grant's first review. "Unchanged" compares the grant's
//! terms ([`Grant::terms`]): recording a review does not make it a new grant. Only grants
//! with `for:` or a review to compute ask, so the walk is lazy and bounded.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use git2::Oid;
use jiff::Timestamp;

use super::{Revision, SourceRepo};
use crate::load::{AnyDoc, ParsedFile, parse_file};
use crate::model::Grant;

/// How far back the walk goes; older grants count from the oldest commit seen.
const MAX_COMMITS: usize = 2_000;

/// Lazily answers "when was this grant merged" for one revision.
pub struct MergeTimes<'a> {
    repo: &'a SourceRepo,
    rev: Revision,
    subpath: String,
    /// Blob id → the (identity, grant) pairs its Member documents hold.
    blobs: RefCell<HashMap<Oid, Vec<(String, Grant)>>>,
    answers: RefCell<HashMap<(String, Grant), Option<Introduced>>>,
    /// Blobs already parsed by a load, by blob id: looked in rather than read again.
    parsed: HashMap<Oid, Arc<ParsedFile>>,
}

impl<'a> MergeTimes<'a> {
    pub fn new(repo: &'a SourceRepo, rev: &Revision, subpath: &str) -> MergeTimes<'a> {
        MergeTimes {
            repo,
            rev: rev.clone(),
            subpath: subpath.to_string(),
            blobs: RefCell::default(),
            answers: RefCell::default(),
            parsed: HashMap::new(),
        }
    }

    /// Uses `parsed` (blob id → the file a load parsed from it) for those blobs instead
    /// of reading and parsing them again: the first commit of a walk is the revision
    /// itself, usually just loaded.
    pub fn with_parsed(mut self, parsed: HashMap<Oid, Arc<ParsedFile>>) -> MergeTimes<'a> {
        self.parsed = parsed;
        self
    }

    /// The committer time of the commit that introduced `grant` for `identity`.
    pub fn merged_at(&self, identity: &str, grant: &Grant) -> Option<Timestamp> {
        self.introduced(identity, grant).map(|i| i.time)
    }

    /// The commit that introduced `grant`'s terms for `identity`: the oldest of the
    /// unbroken run of first-parent commits, back from the revision, that carry them.
    pub fn introduced(&self, identity: &str, grant: &Grant) -> Option<Introduced> {
        let key = (identity.to_string(), grant.terms());
        if let Some(a) = self.answers.borrow().get(&key) {
            return a.clone();
        }
        let answer = self.walk(identity, &key.1);
        self.answers.borrow_mut().insert(key, answer.clone());
        answer
    }

    fn walk(&self, identity: &str, terms: &Grant) -> Option<Introduced> {
        let git = self.repo.git();
        let mut commit = git.find_commit(self.rev.oid).ok()?;
        let mut introduced = None;
        for _ in 0..MAX_COMMITS {
            if !self.holds(&commit, identity, terms) {
                break;
            }
            introduced = Some((
                commit.id(),
                commit.committer().when().seconds(),
                commit.author().email().unwrap_or("unknown").to_string(),
            ));
            match commit.parent(0) {
                Ok(p) => commit = p,
                Err(_) => break,
            }
        }
        let (commit, secs, author) = introduced?;
        Some(Introduced {
            commit,
            time: Timestamp::from_second(secs).ok()?,
            author,
        })
    }

    /// Does `commit` declare the grant for the identity?
    fn holds(&self, commit: &git2::Commit<'_>, identity: &str, terms: &Grant) -> bool {
        let Ok(rev) = self.repo.revision(commit.id(), None) else {
            return false;
        };
        let Ok(files) = self.repo.yaml_blobs(&rev, &self.subpath) else {
            return false;
        };
        // Only blobs not seen in a newer commit are read: a walk over a large repository
        // reads what changed between commits, not every file of every commit.
        let mut blobs = self.blobs.borrow_mut();
        files.iter().any(|(path, blob)| {
            if !blobs.contains_key(blob)
                && let Some(file) = self.parsed.get(blob)
            {
                return declares(file, identity, terms);
            }
            let grants = blobs.entry(*blob).or_insert_with(|| {
                self.repo
                    .blob_text(*blob, path, &rev)
                    .map(|text| member_grants(path, &text))
                    .unwrap_or_default()
            });
            grants.iter().any(|(id, g)| id == identity && g == terms)
        })
    }
}

/// The commit that introduced a grant, as [`MergeTimes::introduced`] finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Introduced {
    pub commit: Oid,
    /// Its committer time: when the grant was merged.
    pub time: Timestamp,
    /// Its author's email: who granted it.
    pub author: String,
}

/// Does a Member document of `file` hold grant terms `terms` for `identity`?
fn declares(file: &ParsedFile, identity: &str, terms: &Grant) -> bool {
    file.docs.iter().any(|(_, d)| match d {
        AnyDoc::Member(m) => {
            m.spec.grants.iter().any(|g| g.terms() == *terms)
                && crate::model::identity(&m.spec.email) == identity
        }
        _ => false,
    })
}

fn member_grants(path: &str, text: &str) -> Vec<(String, Grant)> {
    if !text.contains("Member") {
        return Vec::new();
    }
    parse_file(path, text)
        .docs
        .into_iter()
        .filter_map(|(_, d)| match d {
            AnyDoc::Member(m) => Some(m),
            _ => None,
        })
        .flat_map(|m| {
            let id = crate::model::identity(&m.spec.email);
            let grants: Vec<Grant> = m.spec.grants.iter().map(Grant::terms).collect();
            grants.into_iter().map(move |g| (id.clone(), g))
        })
        .collect()
}
