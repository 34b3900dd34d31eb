//! The write-ahead journal: a run's intents are durable before any change is sent to a
//! system, so a crash at any point (mid-apply, during the audit commit, before the push)
//! never leaves a change on a system without a ledger record once the next run is done.
//!
//! Where it lives (docs/audit.md, "Write-ahead journal"):
//! - the intents: a commit holding `journal.jsonl` (one ledger record without a result
//!   per planned change) under the ref `refs/latchkey/journal/<branch>`, in the same
//!   repository as the audit, pushed with `--push` before the first change is sent, so
//!   it survives the operator's pod being replaced;
//! - the outcomes: `<git dir>/latchkey/journal/<branch>.outcomes.jsonl`, one line per
//!   change as it lands (exact time, result and error). A `kill -9` keeps what was
//!   written (the kernel holds it); a lost machine loses it, and then each intent is
//!   confirmed against the state the next run reads from the system anyway.
//!
//! The next run (under the writer lock) finishes an unfinished journal before it applies
//! anything: when the ledger already holds the run's records, the journal is dropped;
//! otherwise every intent is recorded with its original run, revision, author and
//! reason, as `applied` (outcome logged, or found in place) or `interrupted` (not in
//! place: never made), or with its logged failure.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::Record;
use crate::apply::{ChangeResult, Outcome};
use crate::connectors::{Completeness, Op, Snapshot};
use crate::source::{SourceError, SourceRepo};

/// The journal file inside the journal commit.
const FILE: &str = "journal.jsonl";

/// Set `LATCHKEY_JOURNAL=off` to apply without the journal: for the benchmark that
/// measures its cost only; nothing is then recovered after a crash.
pub fn enabled() -> bool {
    std::env::var("LATCHKEY_JOURNAL").map_or(true, |v| v != "off")
}

/// The ref holding the journal of `branch`.
pub fn journal_ref(branch: &str) -> String {
    format!("refs/latchkey/journal/{branch}")
}

/// A run's intents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Journal {
    pub run: String,
    /// One record per planned change, without a result.
    pub intents: Vec<Record>,
}

/// One change's outcome as it landed.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Logged {
    system: String,
    #[serde(flatten)]
    op: Op,
    #[serde(flatten)]
    result: ChangeResult,
    at: Timestamp,
}

fn outcomes_path(repo: &SourceRepo, branch: &str) -> PathBuf {
    repo.git()
        .path()
        .join("latchkey")
        .join("journal")
        .join(format!("{}.outcomes.jsonl", branch.replace('/', "%2F")))
}

/// Makes the intents of `run` durable under the journal ref (and on the remote when
/// `push`), and starts an empty outcome log. Fails closed: an error here means no
/// change may be sent.
pub fn write(
    repo: &SourceRepo,
    branch: &str,
    journal: &Journal,
    push: bool,
) -> Result<OutcomeLog, SourceError> {
    let git = repo.git();
    let mut text = String::new();
    for r in &journal.intents {
        text.push_str(&r.to_line());
        text.push('\n');
    }
    let blob = git.blob(text.as_bytes())?;
    let mut tree = git.treebuilder(None)?;
    tree.insert(FILE, blob, git2::FileMode::Blob.into())?;
    let tree = git.find_tree(tree.write()?)?;
    let sig = git2::Signature::now("latchkey", "latchkey@localhost")?;
    let message = format!("latchkey: journal of run {}\n", journal.run);
    let commit = git.commit(None, &sig, &sig, &message, &tree, &[])?;
    let path = outcomes_path(repo, branch);
    let log = OutcomeLog::create(path)?;
    repo.set_ref(&journal_ref(branch), commit, "latchkey: journal")?;
    if push {
        let r = journal_ref(branch);
        if let Err(e) = repo.push_refspec(&format!("+{r}:{r}")) {
            // Nothing will be sent: the journal must not outlive this run, or the next
            // one would record every intent as interrupted.
            clear(repo, branch, false)?;
            return Err(e);
        }
    }
    Ok(log)
}

/// The unfinished journal of `branch`, if any, with the outcomes logged for it.
pub fn read(
    repo: &SourceRepo,
    branch: &str,
) -> Result<Option<(Journal, Vec<Outcome0>)>, SourceError> {
    let git = repo.git();
    let Ok(oid) = git.refname_to_id(&journal_ref(branch)) else {
        return Ok(None);
    };
    let commit = git.find_commit(oid)?;
    let entry = commit.tree()?.get_name(FILE).map(|e| e.id());
    let Some(blob) = entry else {
        return Ok(None);
    };
    let blob = git.find_blob(blob)?;
    let text = String::from_utf8_lossy(blob.content());
    let mut intents = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let r: Record = serde_json::from_str(line).map_err(|e| {
            SourceError::Ledger(format!(
                "the write-ahead journal {} is unreadable: {e}",
                journal_ref(branch)
            ))
        })?;
        intents.push(r);
    }
    let run = intents.first().map(|r| r.run.clone()).unwrap_or_default();
    // A torn last line (the process died mid-write) is skipped: its change is then
    // confirmed against the system like any other without an outcome.
    let logged = std::fs::read_to_string(outcomes_path(repo, branch))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Logged>(l).ok())
        .map(|l| Outcome0 {
            system: l.system,
            op: l.op,
            result: l.result,
            at: l.at,
        })
        .collect();
    Ok(Some((Journal { run, intents }, logged)))
}

/// A logged outcome, as read back.
#[derive(Clone, Debug)]
pub struct Outcome0 {
    pub system: String,
    pub op: Op,
    pub result: ChangeResult,
    pub at: Timestamp,
}

/// Drops the journal of `branch` (its run's records are in the ledger); on the remote
/// too when `push`. A failed remote delete is harmless: the next run finds the run's
/// records in the ledger and drops the journal again.
pub fn clear(repo: &SourceRepo, branch: &str, push: bool) -> Result<(), SourceError> {
    let r = journal_ref(branch);
    if let Ok(mut reference) = repo.git().find_reference(&r) {
        reference.delete()?;
    }
    let _ = std::fs::remove_file(outcomes_path(repo, branch));
    if push && let Err(e) = repo.push_refspec(&format!(":{r}")) {
        tracing::warn!(error = %e, "the journal was not deleted on the remote; the next run drops it");
    }
    Ok(())
}

/// Appends each outcome as it lands.
pub struct OutcomeLog {
    file: Mutex<std::fs::File>,
}

impl OutcomeLog {
    fn create(path: PathBuf) -> Result<OutcomeLog, SourceError> {
        let io = |e: std::io::Error| {
            SourceError::Ledger(format!(
                "cannot write the journal's outcome log {}: {e}",
                path.display()
            ))
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(io)?;
        Ok(OutcomeLog {
            file: Mutex::new(file),
        })
    }

    /// Logs one outcome. A failed write is logged and otherwise ignored: the intent is
    /// durable, so recovery falls back to confirming the change on the system.
    pub fn log(&self, o: &Outcome) {
        let line = Logged {
            system: o.change.system.clone(),
            op: o.change.op.clone(),
            result: o.result.clone(),
            at: o.at,
        };
        let mut text = serde_json::to_string(&line).unwrap_or_default();
        text.push('\n');
        if let Ok(mut f) = self.file.lock()
            && let Err(e) = f.write_all(text.as_bytes())
        {
            tracing::warn!(error = %e, "cannot log an outcome in the journal");
        }
    }
}

/// What recovery made of a journal.
pub struct Recovery {
    /// Records to commit, in journal order.
    pub records: Vec<Record>,
    /// Intents on systems that could not be read completely: kept for the next run.
    pub unresolved: Vec<Record>,
}

/// Turns an unfinished journal into records: a logged outcome as it was; otherwise the
/// change confirmed against what `reads` show of its system now.
pub fn recover(
    journal: &Journal,
    logged: &[Outcome0],
    reads: &BTreeMap<String, Result<Snapshot, String>>,
    now: Timestamp,
) -> Recovery {
    let by_change: BTreeMap<(&str, &Op), &Outcome0> = logged
        .iter()
        .map(|o| ((o.system.as_str(), &o.op), o))
        .collect();
    let note = format!(
        "recovered from the write-ahead journal of run {}",
        journal.run
    );
    let mut out = Recovery {
        records: Vec::new(),
        unresolved: Vec::new(),
    };
    for intent in &journal.intents {
        let (Some(system), Some(op)) = (intent.system.as_deref(), op_of(intent)) else {
            continue;
        };
        let mut r = intent.clone();
        r.note = Some(note.clone());
        if let Some(o) = by_change.get(&(system, &op)) {
            r.time = o.at;
            super::set_result(&mut r, &o.result);
            out.records.push(r);
            continue;
        }
        let found = match reads.get(system) {
            Some(Ok(snapshot)) => in_place(&op, snapshot),
            _ => None,
        };
        match found {
            Some(true) => {
                r.time = now;
                r.result = Some("applied".into());
                r.note = Some(format!("{note}: found in place on the system"));
                out.records.push(r);
            }
            Some(false) => {
                r.time = now;
                r.result = Some("interrupted".into());
                r.note = Some(format!("{note}: not in place on the system; never made"));
                out.records.push(r);
            }
            None => out.unresolved.push(intent.clone()),
        }
    }
    out
}

/// The op a change record describes.
pub(crate) fn op_of(r: &Record) -> Option<Op> {
    let identity = r.identity.clone()?;
    let entitlement = || r.entitlement.clone();
    Some(match r.change.as_deref()? {
        "create-account" => Op::CreateAccount {
            identity,
            display_name: None,
        },
        "enable-account" => Op::EnableAccount { identity },
        "adopt-account" => Op::AdoptAccount { identity },
        "grant" => Op::AddEntitlement {
            identity,
            entitlement: entitlement()?,
        },
        "revoke" => Op::RemoveEntitlement {
            identity,
            entitlement: entitlement()?,
        },
        "disable-account" => Op::DisableAccount { identity },
        "delete-account" => Op::DeleteAccount { identity },
        "set-expiry" => Op::SetExpiry {
            identity,
            until: r.expires,
        },
        "clear-expiry" => Op::SetExpiry {
            identity,
            until: None,
        },
        _ => return None,
    })
}

/// Whether `op`'s effect shows in `snapshot`; `None` when the read cannot tell (an
/// account absent from a partial read may exist).
fn in_place(op: &Op, snapshot: &Snapshot) -> Option<bool> {
    let complete = snapshot.completeness == Completeness::Complete;
    let account = snapshot
        .managed
        .iter()
        .find(|a| a.identity == op.identity());
    let absent = || complete.then_some(false);
    let gone = || complete.then_some(true);
    match op {
        Op::CreateAccount { .. } | Op::AdoptAccount { .. } => account.map(|_| true).or_else(absent),
        Op::EnableAccount { .. } => account.map(|a| a.active).or_else(absent),
        Op::AddEntitlement { entitlement, .. } => account
            .map(|a| a.entitlements.contains(entitlement))
            .or_else(absent),
        Op::RemoveEntitlement { entitlement, .. } => account
            .map(|a| !a.entitlements.contains(entitlement))
            .or_else(gone),
        Op::DisableAccount { .. } => account.map(|a| !a.active).or_else(gone),
        Op::DeleteAccount { .. } => account.map(|_| false).or_else(gone),
        Op::SetExpiry { until, .. } => account.map(|a| a.valid_until == *until).or_else(absent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Event, Trigger};
    use crate::connectors::Account;

    fn intent(change: &str, entitlement: Option<&str>) -> Record {
        let t: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let mut r = Record::new(Event::Change, t, "run-1", "main@sha1:ab", Trigger::Merge);
        r.system = Some("portal".into());
        r.identity = Some("erin@acme.example".into());
        r.change = Some(change.into());
        r.entitlement = entitlement.map(str::to_string);
        r.author = Some("dana@acme.example".into());
        r
    }

    fn read(
        entitlements: &[&str],
        completeness: Completeness,
    ) -> BTreeMap<String, Result<Snapshot, String>> {
        let account = Account {
            identity: "erin@acme.example".into(),
            display_name: None,
            active: true,
            entitlements: entitlements.iter().map(|e| e.to_string()).collect(),
            valid_until: None,
        };
        BTreeMap::from([(
            "portal".to_string(),
            Ok(Snapshot {
                managed: vec![account],
                unmanaged: Default::default(),
                completeness,
                foreign_grants: Vec::new(),
                warnings: Vec::new(),
            }),
        )])
    }

    #[test]
    fn intents_are_confirmed_against_the_system_and_keep_their_provenance() {
        let journal = Journal {
            run: "run-1".into(),
            intents: vec![
                intent("grant", Some("acme:viewer")),
                intent("grant", Some("acme:admin")),
                intent("revoke", Some("acme:old")),
            ],
        };
        let now: Timestamp = "2026-11-23T11:00:00Z".parse().unwrap();
        let r = recover(
            &journal,
            &[],
            &read(&["acme:viewer"], Completeness::Complete),
            now,
        );
        let results: Vec<_> = r
            .records
            .iter()
            .map(|r| r.result.clone().unwrap())
            .collect();
        assert_eq!(results, ["applied", "interrupted", "applied"]);
        assert!(
            r.records
                .iter()
                .all(|r| r.author.as_deref() == Some("dana@acme.example")
                    && r.run == "run-1"
                    && r.revision == "main@sha1:ab")
        );
        assert!(r.unresolved.is_empty());
    }

    #[test]
    fn a_logged_outcome_wins_and_a_partial_read_leaves_absence_unresolved() {
        let journal = Journal {
            run: "run-1".into(),
            intents: vec![
                intent("grant", Some("acme:viewer")),
                intent("revoke", Some("acme:old")),
            ],
        };
        let at: Timestamp = "2026-11-23T10:00:05Z".parse().unwrap();
        let logged = vec![Outcome0 {
            system: "portal".into(),
            op: Op::AddEntitlement {
                identity: "erin@acme.example".into(),
                entitlement: "acme:viewer".into(),
            },
            result: ChangeResult::Failed {
                class: crate::connectors::ErrorClass::Permanent,
                error: "refused".into(),
            },
            at,
        }];
        let mut reads = read(&[], Completeness::Partial("page 2 failed".into()));
        if let Some(Ok(s)) = reads.get_mut("portal") {
            s.managed.clear();
        }
        let now: Timestamp = "2026-11-23T11:00:00Z".parse().unwrap();
        let r = recover(&journal, &logged, &reads, now);
        assert_eq!(r.records.len(), 1);
        assert_eq!(r.records[0].result.as_deref(), Some("failed"));
        assert_eq!(r.records[0].time, at);
        assert_eq!(r.unresolved.len(), 1);
    }
}
