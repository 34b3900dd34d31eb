//! Which commit caused a change: the newest commit since the last applied one that
//! touched a document the change depends on (the person's Member, the Role, the
//! System, the Client, the Policy). A change caused by time (an expiry, a start) names
//! the commit that set the grant, further back. Ledger records name that commit and its
//! author (docs/audit.md: nothing misattributed).

use std::collections::{BTreeMap, HashSet};

use git2::Oid;

use super::{Revision, SourceRepo};
use crate::load::{AnyDoc, parse_file};

/// How far back a walk goes; older causes are named by the newest commit seen.
const MAX_COMMITS: usize = 2_000;

/// The key of a document for "what changed": `member:<email>`, `role:<name>`, …
pub fn member_key(identity: &str) -> String {
    format!("member:{}", identity.trim().to_lowercase())
}

/// The key of the Role `name`.
pub fn role_key(name: &str) -> String {
    format!("role:{name}")
}

/// The key of the System `name`.
pub fn system_key(name: &str) -> String {
    format!("system:{name}")
}

/// The key of the Client `name`.
pub fn client_key(name: &str) -> String {
    format!("client:{name}")
}

/// The Policy's key.
pub const POLICY_KEY: &str = "policy";

/// Answers "which commit caused it" for the changes of one apply, walking first parents
/// from the content commit, lazily and at most once per commit.
pub struct Provenance<'a> {
    repo: &'a SourceRepo,
    subpath: String,
    audit_root: String,
    /// The last applied commit: the range of this apply ends there.
    stop: Option<Oid>,
    content: Revision,
    /// The commits walked, newest first.
    walked: Vec<Revision>,
    /// Key → index in `walked` of the newest commit that touched it.
    first_touch: std::collections::HashMap<String, usize>,
    /// Index in `walked` of the first commit at or before `stop` (outside the range).
    range_end: Option<usize>,
    next: Option<Oid>,
}

impl<'a> Provenance<'a> {
    pub fn new(
        repo: &'a SourceRepo,
        content: &Revision,
        last_applied: Option<Oid>,
        subpath: &str,
        audit_root: &str,
    ) -> Provenance<'a> {
        Provenance {
            repo,
            subpath: subpath.trim_matches('/').to_string(),
            audit_root: audit_root.to_string(),
            stop: last_applied,
            content: content.clone(),
            walked: Vec::new(),
            first_touch: std::collections::HashMap::new(),
            range_end: None,
            next: Some(content.oid),
        }
    }

    /// The newest commit since the last applied one that touched any of `keys`; with
    /// `before_range`, also older commits (a grant set long ago now expiring). Falls
    /// back to the content commit.
    pub fn cause(&mut self, keys: &[String], before_range: bool) -> Revision {
        loop {
            // The newest touch of any key among the commits walked so far: a key not in
            // the index is not touched by any of them, so walking on can only find
            // older commits.
            let found = keys
                .iter()
                .filter_map(|k| self.first_touch.get(k))
                .min()
                .copied();
            let allowed = |i: usize, end: Option<usize>| before_range || end.is_none_or(|e| i < e);
            if let Some(i) = found {
                return if allowed(i, self.range_end) {
                    self.walked[i].clone()
                } else {
                    self.content.clone()
                };
            }
            if !before_range && self.range_end.is_some() {
                return self.content.clone();
            }
            if !self.step() {
                return self.content.clone();
            }
        }
    }

    /// Walks one more commit; false at the end of history or of the bound.
    fn step(&mut self) -> bool {
        if self.walked.len() >= MAX_COMMITS {
            return false;
        }
        let Some(oid) = self.next else { return false };
        let git = self.repo.git();
        let Ok(commit) = git.find_commit(oid) else {
            return false;
        };
        if Some(oid) == self.stop {
            self.range_end.get_or_insert(self.walked.len());
        }
        let parent = commit.parent(0).ok();
        self.next = parent.as_ref().map(|p| p.id());
        let keys = self.touched(&commit, parent.as_ref());
        let rev = self
            .repo
            .revision(oid, self.content.branch.clone())
            .unwrap_or_else(|_| self.content.clone());
        let index = self.walked.len();
        for k in &keys {
            self.first_touch.entry(k.clone()).or_insert(index);
        }
        self.walked.push(rev);
        true
    }

    /// The documents `commit` changed against `parent`.
    fn touched(
        &self,
        commit: &git2::Commit<'_>,
        parent: Option<&git2::Commit<'_>>,
    ) -> HashSet<String> {
        let git = self.repo.git();
        let (Ok(new), old) = (commit.tree(), parent.and_then(|p| p.tree().ok())) else {
            return HashSet::new();
        };
        let paths = super::diff_paths(git, old.as_ref(), &new).unwrap_or_default();
        let wanted = |p: &str| {
            let lower = p.to_ascii_lowercase();
            (lower.ends_with(".yaml") || lower.ends_with(".yml"))
                && (self.subpath.is_empty() || p.starts_with(&format!("{}/", self.subpath)))
                && !p.starts_with(&self.audit_root)
        };
        let mut before = BTreeMap::new();
        let mut after = BTreeMap::new();
        for path in paths.iter().filter(|p| wanted(p)) {
            if let Some(t) = &old {
                fingerprints(git, t, path, &mut before);
            }
            fingerprints(git, &new, path, &mut after);
        }
        let mut keys = HashSet::new();
        for (k, v) in &after {
            if before.get(k) != Some(v) {
                keys.insert(k.clone());
            }
        }
        for k in before.keys() {
            if !after.contains_key(k) {
                keys.insert(k.clone());
            }
        }
        keys
    }
}

/// Adds each document of `path` in `tree` as key → its spec's JSON.
fn fingerprints(
    git: &git2::Repository,
    tree: &git2::Tree<'_>,
    path: &str,
    out: &mut BTreeMap<String, String>,
) {
    let Ok(entry) = tree.get_path(std::path::Path::new(path)) else {
        return;
    };
    let Ok(blob) = git.find_blob(entry.id()) else {
        return;
    };
    let Ok(text) = std::str::from_utf8(blob.content()) else {
        return;
    };
    for (_, doc) in parse_file(path, text).docs {
        let (key, content) = match &doc {
            AnyDoc::Member(m) => (member_key(&m.spec.email), print(&m.spec)),
            AnyDoc::Role(r) => (role_key(&r.metadata.name), print(&r.spec)),
            AnyDoc::System(s) => (system_key(&s.metadata.name), print(&s.spec)),
            AnyDoc::Client(c) => (client_key(&c.metadata.name), print(&c.spec)),
            AnyDoc::Policy(p) => (POLICY_KEY.to_string(), print(&p.spec)),
            // A Notifier changes who hears about access, never access: no change names it.
            AnyDoc::Notifier(n) => (format!("notifier:{}", n.metadata.name), print(&n.spec)),
        };
        out.insert(key, content);
    }
}

/// A document spec's content as JSON, to tell whether a commit changed it.
fn print<T: serde::Serialize>(spec: &T) -> String {
    serde_json::to_string(spec).unwrap_or_default()
}
