//! When was a grant merged? `for: 14d` counts from the committer time of the first
//! commit (walking first parents back from the revision) that carries the grant
//! unchanged. Only grants with `for:` ask, so the walk is lazy and bounded.

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
    answers: RefCell<HashMap<(String, Grant), Option<Timestamp>>>,
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
        let key = (identity.to_string(), grant.clone());
        if let Some(a) = self.answers.borrow().get(&key) {
            return *a;
        }
        let answer = self.walk(identity, grant);
        self.answers.borrow_mut().insert(key, answer);
        answer
    }

    fn walk(&self, identity: &str, grant: &Grant) -> Option<Timestamp> {
        let git = self.repo.git();
        let mut commit = git.find_commit(self.rev.oid).ok()?;
        let mut introduced = None;
        for _ in 0..MAX_COMMITS {
            if !self.holds(&commit, identity, grant) {
                break;
            }
            introduced = Some(commit.committer().when().seconds());
            match commit.parent(0) {
                Ok(p) => commit = p,
                Err(_) => break,
            }
        }
        introduced.and_then(|s| Timestamp::from_second(s).ok())
    }

    /// Does `commit` declare the grant for the identity?
    fn holds(&self, commit: &git2::Commit<'_>, identity: &str, grant: &Grant) -> bool {
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
                return declares(file, identity, grant);
            }
            let grants = blobs.entry(*blob).or_insert_with(|| {
                self.repo
                    .blob_text(*blob, path, &rev)
                    .map(|text| member_grants(path, &text))
                    .unwrap_or_default()
            });
            grants.iter().any(|(id, g)| id == identity && g == grant)
        })
    }
}

/// Does a Member document of `file` hold `grant` for `identity`?
fn declares(file: &ParsedFile, identity: &str, grant: &Grant) -> bool {
    file.docs.iter().any(|(_, d)| match d {
        AnyDoc::Member(m) => {
            m.spec.grants.contains(grant) && crate::model::identity(&m.spec.email) == identity
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
            m.spec.grants.into_iter().map(move |g| (id.clone(), g))
        })
        .collect()
}
