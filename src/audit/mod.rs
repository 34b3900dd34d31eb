//! The audit written back into git (docs/audit.md): ledger, reports and state, all under
//! `audit/`, committed by latchkey in one commit per run.

pub mod anchor;
pub mod index;
pub mod journal;
pub mod ledger;
pub mod offboarding;
pub mod replay;
pub mod report;
pub mod state;
pub mod store;
pub mod verify;

pub use ledger::{Event, GENESIS, Record, Trigger};
pub use state::{State, SystemState};

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

use crate::apply::{ChangeResult, Outcome};
use crate::load::Catalog;
use crate::source::{AuditCommit, SourceError, SourceRepo};

/// The audit directory under a repository sub-path (`""` → `audit/`).
pub fn audit_root(subpath: &str) -> String {
    let sub = subpath.trim_matches('/');
    if sub.is_empty() {
        "audit/".to_string()
    } else {
        format!("{sub}/audit/")
    }
}

/// The ledger record of one planned change, without a result: the journal's intent,
/// completed by [`change_records`] or by recovery.
pub fn change_record(
    c: &crate::plan::Change,
    at: Timestamp,
    run: &str,
    revision: &str,
    trigger: Trigger,
    author: &str,
) -> Record {
    // Taking over an account is its own event, so the ledger tells it from a change
    // of access; its result and pending-retry handling are a change's.
    let event = match c.op {
        crate::connectors::Op::AdoptAccount { .. } => Event::Adopted,
        _ => Event::Change,
    };
    let mut r = Record::new(event, at, run, revision, trigger);
    r.system = Some(c.system.clone());
    r.client = c.client.clone();
    r.identity = Some(c.op.identity().to_string());
    r.change = Some(c.verb().replace(' ', "-"));
    r.entitlement = c.entitlement().map(str::to_string);
    r.role = c.grant.as_ref().map(|g| g.role.to_string());
    // A native expiry change records the instant it wrote.
    r.expires = match c.expiry() {
        Some(until) => until,
        None => c.grant.as_ref().and_then(|g| g.expires),
    };
    r.reason = Some(c.reason.as_str().to_string());
    r.author = Some(author.to_string());
    r
}

/// Sets a record's result from an outcome.
pub fn set_result(r: &mut Record, result: &ChangeResult) {
    match result {
        ChangeResult::Applied => r.result = Some("applied".into()),
        ChangeResult::Failed { error, .. } => {
            r.result = Some("failed".into());
            r.error = Some(error.clone());
        }
        ChangeResult::Skipped { why } => {
            r.result = Some("skipped".into());
            r.error = Some(why.clone());
        }
    }
}

/// Ledger records for applied changes.
pub fn change_records(
    outcomes: &[Outcome],
    run: &str,
    revision: &str,
    trigger: Trigger,
    author: &str,
) -> Vec<Record> {
    outcomes
        .iter()
        .map(|o| {
            let mut r = change_record(&o.change, o.at, run, revision, trigger, author);
            set_result(&mut r, &o.result);
            r
        })
        .collect()
}

/// True when the ledger at the audit base of `branch` already holds a record of `run`
/// (its audit commit landed): a journal of that run is finished. A run's records are
/// in the newest two month files.
pub fn ledger_has_run(
    repo: &SourceRepo,
    branch: &str,
    root: &str,
    run: &str,
) -> Result<bool, SourceError> {
    let tail = read_ledger_tail(repo, branch, root, false)?;
    Ok(tail.records().any(|r| r.run == run))
}

/// Whether the ledger on `branch` still holds the anchored last record (see
/// [`anchor`]): `Err(anchor)` when it does not.
pub fn check_anchor(
    repo: &SourceRepo,
    branch: &str,
    root: &str,
) -> Result<Result<(), anchor::Anchor>, SourceError> {
    let base = repo.audit_base(branch)?;
    let rev = repo.revision(base, Some(branch.to_string()))?;
    let Some(a) = anchor::find(repo, &rev, root) else {
        return Ok(Ok(()));
    };
    let tail = read_ledger_tail(repo, branch, root, false)?;
    Ok(
        if a.problem().is_none() && anchor::holds(&a, &tail.hash, tail.records()) {
            Ok(())
        } else {
            Err(a)
        },
    )
}

/// Changes whose newest record in the last two month files on `branch` is a failure
/// (failed, skipped, interrupted): planned again with their reason until they succeed.
/// Lines are filtered by substring before any is parsed, so a ledger without failures
/// costs a scan, not a parse.
pub fn pending_failures(
    repo: &SourceRepo,
    branch: &str,
    root: &str,
) -> Result<crate::plan::Pending, SourceError> {
    let mut pending = crate::plan::Pending::new();
    let base = repo.audit_base(branch)?;
    let rev = repo.revision(base, Some(branch.to_string()))?;
    let src = store::LedgerSource::Git {
        repo,
        rev: rev.clone(),
        root: root.to_string(),
    };
    let months = src.months().map_err(ledger_error)?;
    let texts: Vec<String> = months
        .iter()
        .rev()
        .take(2)
        .rev()
        .filter_map(|m| src.read(m).ok().flatten())
        .collect();
    let failed = |l: &str| {
        l.contains("\"result\":\"failed\"")
            || l.contains("\"result\":\"skipped\"")
            || l.contains("\"result\":\"interrupted\"")
    };
    if !texts.iter().any(|t| t.lines().any(failed)) {
        return Ok(pending);
    }
    for line in texts.iter().flat_map(|t| t.lines()) {
        let applied = line.contains("\"result\":\"applied\"");
        if !applied && !failed(line) {
            continue;
        }
        let Ok(r) = serde_json::from_str::<Record>(line) else {
            continue;
        };
        let (Some(system), Some(op)) = (r.system.clone(), journal::op_of(&r)) else {
            continue;
        };
        if applied {
            pending.remove(&(system, op));
            continue;
        }
        let Some(reason) = r.reason.as_deref().and_then(crate::plan::Reason::parse) else {
            continue;
        };
        let error = r.error.clone().unwrap_or_else(|| "failed".into());
        pending.insert((system, op), crate::plan::PendingFailure { reason, error });
    }
    Ok(pending)
}

/// True when the newest refusal on `branch` carries `note` (record a refusal once).
pub fn last_refusal_is(
    repo: &SourceRepo,
    branch: &str,
    root: &str,
    note: &str,
) -> Result<bool, SourceError> {
    let tail = read_ledger_tail(repo, branch, root, false)?;
    Ok(tail
        .records()
        .rev()
        .find(|r| r.event == Event::Refusal)
        .is_some_and(|r| r.note.as_deref() == Some(note)))
}

/// Effective access after the last record on `branch` (for the baseline).
pub fn access_at_end(
    repo: &SourceRepo,
    branch: &str,
    root: &str,
) -> Result<replay::AccessState, SourceError> {
    let base = repo.audit_base(branch)?;
    let src = store::LedgerSource::Git {
        repo,
        rev: repo.revision(base, Some(branch.to_string()))?,
        root: root.to_string(),
    };
    Ok(replay::state_at_end(&src).map_err(ledger_error)?.0)
}

/// The ledger at the commit the audit goes on: the newest record's hash, the last two
/// month files with their records, and the effective access after the newest record.
/// Each audit commit builds on one; a controller keeps the one its own commit left
/// ([`build_commit_on`]), so its next commit (the next expiry's) neither reads nor
/// replays the month again.
#[derive(Clone, Debug)]
pub struct LedgerTail {
    hash: String,
    /// Month file path → current content.
    files: BTreeMap<String, String>,
    /// Month file path → its records (for "recently revoked").
    recent: BTreeMap<String, Vec<Record>>,
    access: replay::AccessState,
}

impl LedgerTail {
    /// Effective access after the newest record (read with `access`).
    pub fn access(&self) -> &replay::AccessState {
        &self.access
    }

    /// The records of the last two month files, oldest first.
    fn records(&self) -> impl DoubleEndedIterator<Item = &Record> {
        self.recent.values().flatten()
    }

    /// Keeps the last two month files, as [`read_ledger_tail`] reads them.
    fn keep_last_two(&mut self) {
        while self.files.len() > 2 {
            self.files.pop_first();
        }
        while self.recent.len() > 2 {
            self.recent.pop_first();
        }
    }
}

/// Reads the [`LedgerTail`] at `branch`'s audit base, parsing each line once. With
/// `access`, the last month's records replay onto the access before it (a line that does
/// not parse there is an error, as for any replay); otherwise, and for the month before,
/// the records are read only, and a line that does not parse is passed over (the
/// ledger's verification reports it).
fn read_ledger_tail(
    repo: &SourceRepo,
    branch: &str,
    root: &str,
    access: bool,
) -> Result<LedgerTail, SourceError> {
    let base = repo.audit_base(branch)?;
    let src = store::LedgerSource::Git {
        repo,
        rev: repo.revision(base, Some(branch.to_string()))?,
        root: root.to_string(),
    };
    let months = src.months().map_err(ledger_error)?;
    let mut tail = LedgerTail {
        hash: GENESIS.to_string(),
        files: BTreeMap::new(),
        recent: BTreeMap::new(),
        access: replay::AccessState::default(),
    };
    let Some(last) = months.last() else {
        return Ok(tail);
    };
    if access {
        tail.access = replay::state_before(&src, &months, last).map_err(ledger_error)?;
    }
    for month in &months[months.len().saturating_sub(2)..] {
        let replayed = access && month == last;
        let text = src.read(month).map_err(ledger_error)?.unwrap_or_default();
        let mut records = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Record>(line) {
                Ok(r) => {
                    tail.hash = r.hash.clone();
                    if replayed {
                        tail.access.apply(&r);
                    }
                    records.push(r);
                }
                Err(source) if replayed => {
                    return Err(ledger_error(store::LedgerError::Parse {
                        file: src.display_path(month),
                        line: i + 1,
                        source,
                    }));
                }
                Err(_) => {}
            }
        }
        tail.recent.insert(format!("{root}{month}"), records);
        tail.files.insert(format!("{root}{month}"), text);
    }
    Ok(tail)
}

/// The clients whose report a run's records can change: the client a record names, and
/// every client the person holds a grant for or belongs to.
fn touched_clients(cat: &Catalog, records: &[Record]) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for r in records {
        out.extend(r.client.clone());
        if let Some(m) = r.identity.as_deref().and_then(|i| cat.members.get(i)) {
            out.insert(m.spec.client.clone());
            out.extend(m.grants.iter().map(|g| g.client.to_string()));
        }
    }
    out
}

/// Ledger read failures surface as source errors on the apply path (fail closed: no
/// audit commit on a ledger that cannot be read).
pub(crate) fn ledger_error(e: store::LedgerError) -> SourceError {
    match e {
        store::LedgerError::Source(s) => s,
        other => SourceError::Ledger(other.to_string()),
    }
}

/// Reads `audit/state.yaml` at the audit base of `branch`.
pub fn read_state(
    repo: &SourceRepo,
    branch: &str,
    root: &str,
) -> Result<Option<State>, SourceError> {
    let base = repo.audit_base(branch)?;
    let rev = repo.revision(base, Some(branch.to_string()))?;
    Ok(repo
        .file_at(&rev, &format!("{root}state.yaml"))?
        .and_then(|t| State::parse(&t).ok()))
}

/// Everything one run writes.
#[derive(Clone)]
pub struct RunAudit<'a> {
    pub catalog: Option<&'a Catalog>,
    /// The documents changed since the last apply: every client's report is rebuilt.
    /// Otherwise only the reports of clients this run's records concern are, so an
    /// apply costs what its changes cost (an expiry rewrites one client's page).
    pub all_reports: bool,
    pub revision: String,
    pub now: Timestamp,
    pub records: Vec<Record>,
    /// The new state; `None` leaves state.yaml as it is.
    pub state: Option<State>,
    pub summary: String,
    pub run: String,
    /// The ledger this run appends to does not verify: carried in the commit's trailer.
    pub broken: Option<String>,
}

/// Seals the records onto the chain and builds the commit: ledger appends, state and
/// client reports. Returns `None` when there is nothing new to write.
pub fn build_commit(
    repo: &SourceRepo,
    branch: &str,
    root: &str,
    run: RunAudit<'_>,
) -> Result<Option<AuditCommit>, SourceError> {
    Ok(build_commit_on(repo, branch, root, run, None)?.map(|(commit, _)| commit))
}

/// [`build_commit`] on `known`, the tail at commit `known.0`, when that is still the
/// audit base (else the tail is read); also returns the tail the commit leaves, for the
/// next one.
pub fn build_commit_on(
    repo: &SourceRepo,
    branch: &str,
    root: &str,
    mut run: RunAudit<'_>,
    known: Option<(git2::Oid, &LedgerTail)>,
) -> Result<Option<(AuditCommit, LedgerTail)>, SourceError> {
    if run.records.is_empty() && run.state.is_none() {
        // Reports alone change with the clock: a no-op reads nothing and writes nothing.
        return Ok(None);
    }
    let base = repo.audit_base(branch)?;
    // The tail this commit builds on becomes the one it leaves: appended to in place.
    let tail = match known {
        Some((at, tail)) if at == base => tail.clone(),
        _ => read_ledger_tail(repo, branch, root, true)?,
    };
    let cutoff = run
        .now
        .checked_sub(SignedDuration::from_hours(24 * 30))
        .unwrap_or(run.now);
    // "Recently revoked" in the reports: the records before this run's, within 30 days.
    let earlier: Vec<Record> = match run.catalog {
        Some(_) => tail
            .records()
            .filter(|r| r.time >= cutoff)
            .cloned()
            .collect(),
        None => Vec::new(),
    };
    let LedgerTail {
        hash: mut prev,
        mut files,
        mut recent,
        // Effective access after the last committed record: the next checkpoint and
        // the reports' "since" and "granted by" come from it.
        mut access,
    } = tail;
    let mut appended = std::collections::BTreeSet::new();
    let mut last_path = files.keys().next_back().cloned();
    let mut checkpoints = Vec::new();
    for r in &mut run.records {
        r.seal(&prev);
        let mut path = ledger::month_path(root, r.time);
        // Times within a run are not strictly ordered; the chain never goes back a month.
        if let Some(lp) = &last_path
            && path < *lp
        {
            path = lp.clone();
        }
        if !files.contains_key(&path) {
            // The first record of a new month: checkpoint the access before it, and
            // index the month it closes (which never changes again).
            let rel = path.strip_prefix(root).unwrap_or(&path).to_string();
            let cp = access.checkpoint(&rel, &prev);
            checkpoints.push((
                format!("{root}{}", store::checkpoint_path(&rel)),
                cp.to_json(),
            ));
            if let Some(lp) = &last_path
                && let Some(content) = files.get(lp)
            {
                let closed = lp.strip_prefix(root).unwrap_or(lp);
                for (p, text) in index::build(closed, content).files() {
                    checkpoints.push((format!("{root}{p}"), text));
                }
            }
        }
        prev = r.hash.clone();
        access.apply(r);
        last_path = Some(path.clone());
        recent.entry(path.clone()).or_default().push(r.clone());
        let content = files.entry(path.clone()).or_default();
        content.push_str(&r.to_line());
        content.push('\n');
        appended.insert(path);
    }
    let mut out: Vec<(String, String)> = appended
        .iter()
        .filter_map(|p| Some((p.clone(), files.get(p)?.clone())))
        .collect();
    out.extend(checkpoints);
    // Records that change no state (holds, refusals, invalid revisions) still move the
    // ledger head, so state.yaml's ledgerHead always names the last record.
    let state = match run.state.take() {
        Some(s) => Some(s),
        None if !run.records.is_empty() => read_state(repo, branch, root)?,
        None => None,
    };
    if let Some(mut state) = state {
        state.ledger_head = prev.clone();
        out.push((format!("{root}state.yaml"), state.to_yaml()));
    }
    if let Some(cat) = run.catalog {
        let mut recent = earlier;
        recent.extend(run.records.iter().cloned());
        let touched = touched_clients(cat, &run.records);
        let scope = if run.all_reports {
            report::Scope::All
        } else {
            report::Scope::Only(&touched)
        };
        for (client, md) in
            report::client_reports(cat, run.now, &run.revision, &recent, &access, scope)
        {
            out.push((format!("{root}access/{client}.md"), md));
        }
    }
    if run.records.is_empty() && out.iter().all(|(p, _)| p.contains("/access/")) {
        // Reports alone change with the clock; without a record or a new state there
        // is nothing to commit.
        return Ok(None);
    }
    let mut message = format!(
        "latchkey: {}\n\nLatchkey-Run: {}\nLatchkey-Revision: {}\n{}: {prev}\n",
        run.summary,
        run.run,
        run.revision,
        anchor::TRAILER
    );
    if let Some(problem) = &run.broken {
        let one_line = problem.replace('\n', " ");
        message.push_str(&format!("{}: {one_line}\n", anchor::BROKEN_TRAILER));
    }
    let mut next = LedgerTail {
        hash: prev,
        files,
        recent,
        access,
    };
    next.keep_last_two();
    Ok(Some((
        AuditCommit {
            files: out,
            message,
        },
        next,
    )))
}
