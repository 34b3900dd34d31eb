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

/// How far down the first parents a fresh clone (without the local ref) looks for the
/// newest audit commit.
const MAX_WALK: usize = 5_000;

/// The ref pointing at the newest audit commit of `branch`.
pub fn anchor_ref(branch: &str) -> String {
    format!("refs/latchkey/ledger/{branch}")
}

/// The last record latchkey wrote, and the audit commit that says so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchor {
    pub commit: Oid,
    pub head: String,
}

fn trailer(message: &str) -> Option<String> {
    let prefix = format!("{TRAILER}: ");
    message
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|h| h.trim().to_string())
}

/// The anchor `rev` must continue from: the local ref when it is in `rev`'s history
/// (it survives a force-push and an edit of `audit/`), else the newest commit down
/// `rev`'s first parents with the trailer. None before latchkey's first audit commit.
pub fn find(repo: &SourceRepo, rev: &Revision) -> Option<Anchor> {
    let git = repo.git();
    let from_ref = rev
        .branch
        .as_deref()
        .and_then(|b| git.refname_to_id(&anchor_ref(b)).ok())
        .filter(|oid| repo.descends_from(rev.oid, *oid).unwrap_or(false))
        .and_then(|oid| {
            let c = git.find_commit(oid).ok()?;
            Some(Anchor {
                commit: oid,
                head: trailer(c.message().unwrap_or(""))?,
            })
        });
    if from_ref.is_some() {
        return from_ref;
    }
    let mut commit = git.find_commit(rev.oid).ok()?;
    for _ in 0..MAX_WALK {
        if let Some(head) = trailer(commit.message().unwrap_or("")) {
            return Some(Anchor {
                commit: commit.id(),
                head,
            });
        }
        commit = commit.parent(0).ok()?;
    }
    None
}

/// Moves the anchor of `branch` to `commit`, an audit commit just made.
pub fn set(repo: &SourceRepo, branch: &str, commit: Oid) -> Result<(), SourceError> {
    Ok(repo.set_ref(&anchor_ref(branch), commit, "latchkey: ledger head")?)
}

/// True when `head` is the genesis (nothing anchored yet) or a record of `recent` or
/// the tail itself.
pub fn holds(anchor: &Anchor, tail: &str, recent: &[super::Record]) -> bool {
    anchor.head == GENESIS || anchor.head == tail || recent.iter().any(|r| r.hash == anchor.head)
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
