//! The ledger head, anchored where an edit of `audit/` cannot reach it: every audit
//! commit carries a `Latchkey-Ledger-Head: <hash>` trailer, and the local ref
//! `refs/latchkey/ledger/<branch>` points at the newest one. Deleting `audit/`, or
//! removing records from its end, leaves a ledger that no longer holds the anchored
//! record: `audit verify` reports it and `apply` refuses to build on it.

use git2::Oid;

use super::GENESIS;
use crate::source::{Revision, SourceError, SourceRepo};

/// The commit trailer naming the hash of the last record after an audit commit.
pub const TRAILER: &str = "Latchkey-Ledger-Head";

/// The trailer of an audit commit made on a ledger that did not verify (expiries keep
/// firing there): the problem is carried forward, so latchkey's own commit never makes a
/// tampered ledger look whole. Only `--allow-broken-ledger` ends it.
pub const BROKEN_TRAILER: &str = "Latchkey-Ledger-Broken";

/// How far down the first parents a fresh clone (without the local ref) looks for the
/// newest audit commit.
const MAX_WALK: usize = 5_000;

/// The ref pointing at the newest audit commit of `branch`.
pub fn anchor_ref(branch: &str) -> String {
    format!("refs/latchkey/ledger/{branch}")
}

/// The last record latchkey wrote, the audit commit that says so, and any commit since
/// that changed `audit/` without being one of latchkey's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchor {
    pub commit: Oid,
    pub head: String,
    /// Commits after the anchor that changed paths under the audit root, newest first:
    /// only latchkey writes there, so each is an edit by hand (a deletion, a garbled or
    /// forged state.yaml, a removed tail).
    pub edited_by: Vec<Oid>,
    /// The problem an earlier run found and carried forward in [`BROKEN_TRAILER`].
    pub broken: Option<String>,
}

impl Anchor {
    /// What is wrong, for a message; None when nothing is.
    pub fn problem(&self) -> Option<String> {
        let Some(first) = self.edited_by.last() else {
            return self.broken.clone();
        };
        Some(format!(
            "audit/ was changed after latchkey's last audit commit {} by commit {} (only \
             latchkey writes audit/: a deleted or edited ledger, state.yaml or report)",
            self.commit, first
        ))
    }
}

fn trailer(message: &str) -> Option<String> {
    trailer_of(message, TRAILER)
}

fn trailer_of(message: &str, name: &str) -> Option<String> {
    let prefix = format!("{name}: ");
    message
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|h| h.trim().to_string())
}

/// The anchor `rev` must continue from: the newest commit down `rev`'s first parents
/// with the trailer, noting every commit after it that changed `root`. The local ref
/// (which a force-push cannot move) is where the walk stops when it is reached.
/// None before latchkey's first audit commit.
pub fn find(repo: &SourceRepo, rev: &Revision, root: &str) -> Option<Anchor> {
    let git = repo.git();
    let local = rev
        .branch
        .as_deref()
        .and_then(|b| git.refname_to_id(&anchor_ref(b)).ok());
    let mut edited_by = Vec::new();
    let mut commit = git.find_commit(rev.oid).ok()?;
    for _ in 0..MAX_WALK {
        let message = commit.message().unwrap_or("");
        if let Some(head) = trailer(message)
            && (Some(commit.id()) == local || is_audit_only(repo, &commit, root))
        {
            return Some(Anchor {
                commit: commit.id(),
                head,
                edited_by,
                broken: trailer_of(message, BROKEN_TRAILER),
            });
        }
        if touches(repo, &commit, root) {
            edited_by.push(commit.id());
        }
        commit = commit.parent(0).ok()?;
    }
    None
}

/// The paths `commit` changed against its first parent.
fn changed(repo: &SourceRepo, commit: &git2::Commit<'_>) -> Vec<String> {
    let Ok(tree) = commit.tree() else {
        return Vec::new();
    };
    let parent = commit.parent(0).ok().and_then(|p| p.tree().ok());
    crate::source::diff_paths(repo.git(), parent.as_ref(), &tree).unwrap_or_default()
}

/// Whether `commit` changed anything under `root`: a diff limited to that path, so a
/// large commit elsewhere (thousands of member files) costs nothing here.
fn touches(repo: &SourceRepo, commit: &git2::Commit<'_>, root: &str) -> bool {
    let git = repo.git();
    let Ok(tree) = commit.tree() else {
        return false;
    };
    let parent = commit.parent(0).ok().and_then(|p| p.tree().ok());
    let mut opts = git2::DiffOptions::new();
    opts.pathspec(root.trim_end_matches('/'));
    git.diff_tree_to_tree(parent.as_ref(), Some(&tree), Some(&mut opts))
        .map(|d| d.deltas().len() > 0)
        .unwrap_or(false)
}

/// latchkey's audit commits change nothing but the audit root: a commit with the
/// trailer that also changes desired state is not one of them. (Only asked of commits
/// with the trailer, so the full diff is rare.)
fn is_audit_only(repo: &SourceRepo, commit: &git2::Commit<'_>, root: &str) -> bool {
    changed(repo, commit).iter().all(|p| p.starts_with(root))
}

/// Moves the anchor of `branch` to `commit`, an audit commit just made.
pub fn set(repo: &SourceRepo, branch: &str, commit: Oid) -> Result<(), SourceError> {
    Ok(repo.set_ref(&anchor_ref(branch), commit, "latchkey: ledger head")?)
}

/// True when the anchored head is the genesis (nothing anchored yet), a record of
/// `recent` or the tail itself.
pub fn holds<'a>(
    anchor: &Anchor,
    tail: &str,
    mut recent: impl Iterator<Item = &'a super::Record>,
) -> bool {
    anchor.head == GENESIS || anchor.head == tail || recent.any(|r| r.hash == anchor.head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trailer_is_read_from_the_message_end() {
        let m = "latchkey: apply\n\nLatchkey-Run: r\nLatchkey-Ledger-Head: abc\n";
        assert_eq!(trailer(m).as_deref(), Some("abc"));
        assert_eq!(trailer("fix typo\n"), None);
    }
}
