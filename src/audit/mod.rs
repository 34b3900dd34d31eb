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
    check_anchor_on(repo, branch, root, None)
}

/// [`check_anchor`] with `known`, the tail at `branch`'s audit base when the caller
/// holds it (a controller's own last commit): the anchor is still found from the
/// commits, but the ledger's last two months are not read again.
pub fn check_anchor_on(
    repo: &SourceRepo,
    branch: &str,
    root: &str,
    known: Option<&LedgerTail>,
) -> Result<Result<(), anchor::Anchor>, SourceError> {
    let base = repo.audit_base(branch)?;
    let rev = repo.revision(base, Some(branch.to_string()))?;
    let Some(a) = anchor::find(repo, &rev, root) else {
        return Ok(Ok(()));
    };
    let read;
    let tail = match known {
        Some(t) => t,
        None => {
            read = read_ledger_tail(repo, branch, root, false)?;
            &read
        }
    };
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
/// costs a scan, not a parse. A controller carries them in its [`LedgerTail`] instead
/// ([`LedgerTail::pending`]), so an expiry does not scan the month again.
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
        if !line.contains("\"result\":\"applied\"") && !failed(line) {
            continue;
        }
        if let Ok(r) = serde_json::from_str::<Record>(line) {
            fold_pending(&mut pending, &r);
        }
    }
    Ok(pending)
}

/// True when a record is a change that did not happen (failed, skipped, interrupted).
fn is_failure(r: &Record) -> bool {
    matches!(
        r.result.as_deref(),
        Some("failed" | "skipped" | "interrupted")
    )
}

/// Folds one record into `pending`: the newest record of a change decides whether it
/// is still pending (a failure) or not (applied). Records in ledger order.
fn fold_pending(pending: &mut crate::plan::Pending, r: &Record) {
    let applied = r.result.as_deref() == Some("applied");
    if !applied && !is_failure(r) {
        return;
    }
    let (Some(system), Some(op)) = (r.system.clone(), journal::op_of(r)) else {
        return;
    };
    if applied {
        pending.remove(&(system, op));
        return;
    }
    let Some(reason) = r.reason.as_deref().and_then(crate::plan::Reason::parse) else {
        return;
    };
    let error = r.error.clone().unwrap_or_else(|| "failed".into());
    pending.insert((system, op), crate::plan::PendingFailure { reason, error });
}

/// The pending failures of `records` (oldest first): none without a failure among
/// them, which costs a look at each result only.
fn pending_of<'a>(records: impl Iterator<Item = &'a Record> + Clone) -> crate::plan::Pending {
    let mut pending = crate::plan::Pending::new();
    if records.clone().any(is_failure) {
        for r in records {
            fold_pending(&mut pending, r);
        }
    }
    pending
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
    /// Shared with the controller's plans (which read it), copied only when a commit
    /// appends while a plan still holds it.
    access: std::sync::Arc<replay::AccessState>,
    /// The pending failures of the last two months ([`pending_failures`]), kept with
    /// the records they come from.
    pending: crate::plan::Pending,
    /// Month file path → its length before the commit that left this tail: what that
    /// commit appended is the rest ([`LedgerTail::appended`]).
    grown: BTreeMap<String, usize>,
}

impl LedgerTail {
    /// Effective access after the newest record (read with `access`).
    pub fn access(&self) -> &replay::AccessState {
        &self.access
    }

    /// [`LedgerTail::access`], shared.
    pub fn shared_access(&self) -> std::sync::Arc<replay::AccessState> {
        self.access.clone()
    }

    /// The hash of the newest record.
    pub fn head(&self) -> &str {
        &self.hash
    }

    /// The pending failures of the last two month files, as [`pending_failures`] gives
    /// them at the commit this tail is at.
    pub fn pending(&self) -> &crate::plan::Pending {
        &self.pending
    }

    /// What the commit that left this tail appended to each month file (path under the
    /// repository root → the appended lines): that file's blob is the blob before the
    /// commit followed by these bytes. Empty for a tail read from git.
    pub fn appended(&self) -> impl Iterator<Item = (&str, &str)> {
        self.grown.iter().filter_map(|(path, from)| {
            let text = self.files.get(path)?;
            Some((path.as_str(), text.get(*from..)?))
        })
    }

    /// The records of the last two month files, oldest first.
    fn records(&self) -> impl DoubleEndedIterator<Item = &Record> + Clone {
        self.recent.values().flatten()
    }

    /// Keeps the last two month files, as [`read_ledger_tail`] reads them (and the
    /// pending failures of what is left, when a month is dropped).
    fn keep_last_two(&mut self) {
        while self.files.len() > 2 {
            self.files.pop_first();
        }
        let mut dropped = false;
        while self.recent.len() > 2 {
            self.recent.pop_first();
            dropped = true;
        }
        if dropped {
            self.pending = pending_of(self.records());
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
        access: Default::default(),
        pending: crate::plan::Pending::new(),
        grown: BTreeMap::new(),
    };
    let Some(last) = months.last() else {
        return Ok(tail);
    };
    if access {
        tail.access = replay::state_before(&src, &months, last)
            .map_err(ledger_error)?
            .into();
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
                        std::sync::Arc::make_mut(&mut tail.access).apply(&r);
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
    tail.pending = pending_of(tail.records());
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
    run: RunAudit<'_>,
    known: Option<(git2::Oid, &LedgerTail)>,
) -> Result<Option<(AuditCommit, LedgerTail)>, SourceError> {
    let base = repo.audit_base(branch)?;
    let owned = known
        .filter(|(at, _)| *at == base)
        .map(|(at, tail)| (at, tail.clone()));
    build_commit_onto(repo, branch, root, run, owned)
}

/// [`build_commit_on`] taking the known tail by value: it is appended to in place, so
/// a controller's commit copies neither the month nor its records.
pub fn build_commit_onto(
    repo: &SourceRepo,
    branch: &str,
    root: &str,
    mut run: RunAudit<'_>,
    known: Option<(git2::Oid, LedgerTail)>,
) -> Result<Option<(AuditCommit, LedgerTail)>, SourceError> {
    if run.records.is_empty() && run.state.is_none() {
        // Reports alone change with the clock: a no-op reads nothing and writes nothing.
        return Ok(None);
    }
    let base = repo.audit_base(branch)?;
    // The tail this commit builds on becomes the one it leaves: appended to in place.
    let tail = match known {
        Some((at, tail)) if at == base => tail,
        _ => read_ledger_tail(repo, branch, root, true)?,
    };
    let cutoff = run
        .now
        .checked_sub(SignedDuration::from_hours(24 * 30))
        .unwrap_or(run.now);
    // The records before this run's: "recently revoked" in the reports is those within
    // 30 days, and this run's.
    let before = tail.records().count();
    let LedgerTail {
        hash: mut prev,
        mut files,
        mut recent,
        // Effective access after the last committed record: the next checkpoint and
        // the reports' "since" and "granted by" come from it.
        mut access,
        mut pending,
        grown: _,
    } = tail;
    let mut grown = BTreeMap::new();
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
        std::sync::Arc::make_mut(&mut access).apply(r);
        fold_pending(&mut pending, r);
        last_path = Some(path.clone());
        recent.entry(path.clone()).or_default().push(r.clone());
        grown
            .entry(path.clone())
            .or_insert_with(|| files.get(&path).map_or(0, String::len));
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
        let recent: Vec<&Record> = recent
            .values()
            .flatten()
            .enumerate()
            .filter(|(i, r)| *i >= before || r.time >= cutoff)
            .map(|(_, r)| r)
            .collect();
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
        pending,
        grown,
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
