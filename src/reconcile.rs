//! The one pipeline shared by `plan`, `apply`, `run` and the operator (docs/architecture.md):
//! load a revision, read the systems, diff, guard, apply, audit, commit, push.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;

use crate::apply::{self, Outcome, Retry};
use crate::audit::{self, Event, Record, State, SystemState, Trigger, journal};
use crate::checks;
use crate::connectors::{Connector, Registry, Snapshot};
use crate::load::{self, Context, Diagnostic, Loaded, ParseCache, Staged};
use crate::model::SystemSpec;
use crate::plan::{self, Desired, DesiredCache, Plan};
mod enforce;
mod outcome;
pub use enforce::Enforced;
pub use outcome::RunOutcome;

use crate::source::provenance::Provenance;
use crate::source::{Revision, SourceError, SourceRepo, WriterLock};

/// What the caller asks for.
#[derive(Clone, Debug)]
pub struct Options {
    /// Branch, tag, commit or `HEAD`.
    pub rev: String,
    /// The branch the audit is committed to when `rev` is a bare commit (the controller
    /// falls back to the last valid commit of its branch).
    pub branch: Option<String>,
    /// Sub-path of the repository holding the documents.
    pub subpath: String,
    pub now: Timestamp,
    pub dry_run: bool,
    pub push: bool,
    /// Releases guard holds; the reason is recorded in the audit.
    pub allow_mass_revoke: Option<String>,
    /// Accepts a revision that does not descend from the last applied one.
    pub allow_rewind: Option<String>,
    /// Appends to a ledger that no longer holds the anchored last record (audit/ deleted
    /// or its tail removed), with a reason recorded in the audit.
    pub allow_broken_ledger: Option<String>,
    pub trigger: Trigger,
}

/// Why a reconcile stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("revision {revision} is invalid ({} errors); nothing was applied", errors.len())]
    Invalid {
        revision: String,
        errors: Vec<Diagnostic>,
    },
    #[error(
        "revision {revision} does not descend from the last applied revision {last_applied} \
         (history was rewritten); nothing was applied. Pass --allow-rewind \"<reason>\" to accept it"
    )]
    Rewind {
        revision: String,
        last_applied: String,
    },
    #[error(
        "revision {revision} is not trusted; nothing was applied:\n  {}",
        refusals.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  ")
    )]
    Untrusted {
        revision: String,
        refusals: Vec<crate::trust::Refusal>,
    },
    #[error("the Policy's trust section is unusable; nothing was applied")]
    Trust(#[from] crate::trust::TrustError),
    #[error(
        "the ledger on {branch} cannot be built on: {problem}; nothing was applied. Restore \
         audit/ as latchkey's last audit commit left it (git checkout {commit} -- audit, then \
         commit), or pass --allow-broken-ledger \"<reason>\" to continue from what is there \
         (recorded)"
    )]
    BrokenLedger {
        branch: String,
        problem: String,
        commit: String,
    },
    #[error("cannot read the audit state: {0}")]
    State(String),
}

impl ReconcileError {
    /// User errors need a person to fix git; the rest may pass on retry.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            ReconcileError::Invalid { .. }
                | ReconcileError::Rewind { .. }
                | ReconcileError::BrokenLedger { .. }
                | ReconcileError::Untrusted { .. }
                | ReconcileError::Trust(_)
        )
    }

    /// The reason of the operator's condition and Event (CamelCase).
    pub fn reason(&self) -> &'static str {
        match self {
            ReconcileError::Invalid { .. } => "InvalidRevision",
            ReconcileError::Rewind { .. } => "HistoryRewrite",
            ReconcileError::Source(_) => "SourceFailed",
            ReconcileError::State(_) => "AuditStateUnreadable",
            ReconcileError::Untrusted { .. } => "UntrustedCommit",
            ReconcileError::Trust(_) => "TrustMisconfigured",
            ReconcileError::BrokenLedger { .. } => "LedgerBroken",
        }
    }

    /// A short label for metrics and conditions.
    pub fn label(&self) -> &'static str {
        match self {
            ReconcileError::Source(_) => "source",
            ReconcileError::Invalid { .. } => "invalid",
            ReconcileError::Rewind { .. } => "rewind",
            ReconcileError::State(_) => "state",
            ReconcileError::BrokenLedger { .. } => "broken-ledger",
            ReconcileError::Untrusted { .. } => "untrusted",
            ReconcileError::Trust(_) => "trust",
        }
    }
}

/// A computed plan and everything needed to apply it.
pub struct Planned {
    pub loaded: Loaded,
    pub plan: Plan,
    pub desired: Desired,
    pub state: Option<State>,
    /// The last applied commit, if any.
    pub last_applied: Option<git2::Oid>,
    /// Desired state is the same as the last applied revision's (only `audit/` moved).
    pub same_as_applied: bool,
    connectors: BTreeMap<String, Arc<dyn Connector>>,
    /// What each system's read returned: recovery confirms journalled changes against it
    /// and the baseline records what it found in place.
    actual: Reads,
    /// What the checks found (src/checks.rs): apply enforces exactly these.
    pub findings: Vec<checks::Finding>,
    /// The verified signer of each commit, when the Policy requires signatures.
    pub signers: checks::Signers,
}

/// What an apply did.
pub struct Applied {
    pub planned: Planned,
    pub outcomes: Vec<Outcome>,
    /// The audit commit, when one was made.
    pub commit: Option<git2::Oid>,
    pub held: bool,
}

impl Applied {
    pub fn failures(&self) -> usize {
        self.outcomes.iter().filter(|o| o.failed()).count()
    }
}

/// The pipeline over one repository.
pub struct Reconciler {
    pub repo: SourceRepo,
    pub registry: Registry,
    pub cache: ParseCache,
    /// Members' parts of desired state, reused while their documents are unchanged.
    pub desired_cache: DesiredCache,
    pub retry: Retry,
    /// The last applied revision as the last plan saw it.
    previous: Option<Arc<Previous>>,
    /// Set while an apply appends to a ledger that does not verify (only expiries are
    /// applied then): every audit commit of that run carries the problem forward.
    ledger_broken: Option<String>,
    /// The invalid content already recorded (see [`Reconciler::record_invalid`]).
    reported_invalid: Option<git2::Oid>,
    /// What was read from the ledger at a branch's audit base, kept while that base is the
    /// same commit: a controller plans and applies the same tip many times, and the walk
    /// to the anchor, the scan for failures and the replay need not repeat.
    anchor_memo: Option<AtBase<Result<(), audit::anchor::Anchor>>>,
    pending_memo: Option<AtBase<Arc<plan::Pending>>>,
    access_memo: Option<AtBase<Arc<audit::replay::AccessState>>>,
    /// The ledger's tail as this reconciler's last audit commit left it: while the
    /// branch stays at that commit, the next plan's anchor check, pending failures and
    /// access, and the next commit, come from it instead of the month files.
    tail_memo: Option<AtBase<audit::LedgerTail>>,
    /// The controller's ledger verification, resumed where the last intact one ended
    /// (set by [`Reconciler::with_ledger_verification`]); off for a one-shot apply.
    ledger_verifier: Option<audit::verify::Incremental>,
    /// Ledger lines the last verification walked (see [`Reconciler::ledger_lines_walked`]).
    walked: Option<u64>,
    /// The content revision last found (see [`Reconciler::content_revision`]): the
    /// commit asked about, the audit root, and its content revision.
    content_memo: Option<(git2::Oid, String, Revision)>,
    /// The records committed since the last [`Reconciler::take_committed`], when kept
    /// (the controllers derive notifications from them).
    committed: Option<Vec<Record>>,
}

/// A value read from the ledger at an audit base (under an audit root).
struct AtBase<T> {
    base: git2::Oid,
    root: String,
    value: T,
}

/// The value in `slot` when it was read at `base` under `root`, else `read()`'s, kept.
fn at_base<T: Clone>(
    slot: &mut Option<AtBase<T>>,
    base: git2::Oid,
    root: &str,
    read: impl FnOnce() -> Result<T, SourceError>,
) -> Result<T, SourceError> {
    if let Some(m) = slot
        && m.base == base
        && m.root == root
    {
        return Ok(m.value.clone());
    }
    let value = read()?;
    *slot = Some(AtBase {
        base,
        root: root.to_string(),
        value: value.clone(),
    });
    Ok(value)
}

/// The tail in `memo` when it is the ledger at `base` under `root`.
fn tail_at<'a>(
    memo: &'a Option<AtBase<audit::LedgerTail>>,
    base: git2::Oid,
    root: &str,
) -> Option<&'a audit::LedgerTail> {
    memo.as_ref()
        .filter(|m| m.base == base && m.root == root)
        .map(|m| &m.value)
}

/// The last applied revision: its catalogue and its desired state at some `now`.
struct Previous {
    oid: git2::Oid,
    subpath: String,
    catalog: load::Catalog,
    desired: Desired,
}

impl Reconciler {
    pub fn new(repo: SourceRepo, registry: Registry) -> Reconciler {
        Reconciler {
            repo,
            registry,
            cache: ParseCache::default(),
            desired_cache: DesiredCache::default(),
            retry: Retry::default(),
            previous: None,
            ledger_broken: None,
            reported_invalid: None,
            anchor_memo: None,
            pending_memo: None,
            access_memo: None,
            tail_memo: None,
            ledger_verifier: None,
            content_memo: None,
            walked: None,
            committed: None,
        }
    }

    /// Keeps every record this reconciler commits, for [`Reconciler::take_committed`].
    pub fn keep_committed(mut self) -> Reconciler {
        self.committed = Some(Vec::new());
        self
    }

    /// Leaks what this reconciler keeps between plans (the parse and desired-state
    /// caches, the last applied revision, what it read from the ledger) instead of freeing
    /// it piece by piece: for a process about to exit, which gives the memory back at
    /// once. Only data: the repository handle and the connectors stay and drop as usual.
    pub fn forget_kept_data(&mut self) {
        std::mem::forget(std::mem::take(&mut self.cache));
        std::mem::forget(std::mem::take(&mut self.desired_cache));
        std::mem::forget(self.previous.take());
        std::mem::forget(self.pending_memo.take());
        std::mem::forget(self.access_memo.take());
        std::mem::forget(self.tail_memo.take());
    }

    /// The records committed since the last call (none unless kept).
    pub fn take_committed(&mut self) -> Vec<Record> {
        self.committed
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Verifies the whole ledger before each apply (the controller, which applies many
    /// times): the first verification from genesis, later ones from the last verified
    /// month on (audit::verify::Incremental), and a break anywhere refuses all but
    /// expiries like a broken anchor.
    pub fn with_ledger_verification(mut self) -> Reconciler {
        self.ledger_verifier = Some(audit::verify::Incremental::default());
        self
    }

    /// The first break in the ledger on `branch` when verification is on, with latchkey's
    /// last audit commit (what to restore `audit/` from).
    pub(crate) fn verify_ledger(
        &mut self,
        branch: &str,
        root: &str,
    ) -> Result<Option<(audit::verify::Broken, String)>, SourceError> {
        if self.ledger_verifier.is_none() {
            return Ok(None);
        }
        let base = self.repo.audit_base(branch)?;
        let rev = self.repo.revision(base, Some(branch.to_string()))?;
        let commit = audit::anchor::find(&self.repo, &rev, root)
            .map_or(base, |a| a.commit)
            .to_string();
        let src = audit::store::LedgerSource::Git {
            repo: &self.repo,
            rev,
            root: root.to_string(),
        };
        let verifier = self.ledger_verifier.as_mut().expect("checked above");
        // The anchor is the Ledger check's own (check_anchor); this is the chain.
        let v = verifier.verify(&src, None).map_err(audit::ledger_error)?;
        self.walked = Some(v.walked);
        Ok(v.broken.map(|b| (b, commit)))
    }

    /// How many ledger lines the verification that gave the last result walked (the
    /// rest it resumed after): a controller's verification after its own audit commit
    /// walks that commit's lines only. `None` before any, or without verification.
    pub fn ledger_lines_walked(&self) -> Option<u64> {
        self.walked
    }

    /// Tells the ledger verification which month blobs audit commit `oid` wrote by
    /// appending to its parent's (so the next verification walks only the appended
    /// lines). Nothing is noted when a blob cannot be found: that month is walked.
    fn note_appended(&mut self, oid: git2::Oid, tail: &audit::LedgerTail) {
        let Some(verifier) = self.ledger_verifier.as_mut() else {
            return;
        };
        let git = self.repo.git();
        let Ok(commit) = git.find_commit(oid) else {
            return;
        };
        let (Ok(tree), Ok(parent)) = (commit.tree(), commit.parent(0).and_then(|p| p.tree()))
        else {
            return;
        };
        let Ok(odb) = git.odb() else {
            return;
        };
        let size = |id| odb.read_header(id).map(|(size, _)| size).ok();
        for (path, lines) in tail.appended() {
            let path = std::path::Path::new(path);
            let (Ok(from), Ok(to)) = (parent.get_path(path), tree.get_path(path)) else {
                continue;
            };
            // The blob written is the parent's and the lines, byte for byte: a tail
            // read at another commit than the parent (the branch moved between the
            // two reads) would not add up, and is not noted.
            if let (Some(f), Some(t)) = (size(from.id()), size(to.id()))
                && f + lines.len() == t
            {
                verifier.appended(from.id(), to.id(), lines);
            }
        }
    }

    /// Takes the writer lock of the branch `opts` applies to (none for a dry run, which
    /// writes nothing). Held from before the plan to after the audit commit, so a second
    /// writer plans against what the first one applied and records nothing twice.
    pub fn lock_writer(
        &self,
        opts: &Options,
        what: &str,
        wait: std::time::Duration,
    ) -> Result<Option<WriterLock>, ReconcileError> {
        if opts.dry_run {
            return Ok(None);
        }
        let branch = match self.repo.resolve(&opts.rev)?.branch {
            Some(b) => b,
            None => match &opts.branch {
                Some(b) => b.clone(),
                None => return Ok(None),
            },
        };
        Ok(Some(self.repo.lock_writer(&branch, what, wait)?))
    }

    /// Whether the ledger on `branch` continues from its anchor (audit::check_anchor).
    pub(crate) fn check_anchor(
        &mut self,
        branch: &str,
        root: &str,
    ) -> Result<Result<(), audit::anchor::Anchor>, SourceError> {
        let base = self.repo.audit_base(branch)?;
        let repo = &self.repo;
        let known = tail_at(&self.tail_memo, base, root);
        at_base(&mut self.anchor_memo, base, root, || {
            audit::check_anchor_on(repo, branch, root, known)
        })
    }

    /// The ledger's pending failures on `branch` (audit::pending_failures).
    fn pending_failures(
        &mut self,
        branch: &str,
        root: &str,
    ) -> Result<Arc<plan::Pending>, SourceError> {
        let base = self.repo.audit_base(branch)?;
        let repo = &self.repo;
        let known = tail_at(&self.tail_memo, base, root);
        at_base(&mut self.pending_memo, base, root, || match known {
            Some(tail) => Ok(Arc::new(tail.pending().clone())),
            None => audit::pending_failures(repo, branch, root).map(Arc::new),
        })
    }

    /// Effective access after the last record on `branch` (audit::access_at_end).
    fn access_at_end(
        &mut self,
        branch: &str,
        root: &str,
    ) -> Result<Arc<audit::replay::AccessState>, SourceError> {
        let base = self.repo.audit_base(branch)?;
        if let Some(tail) = tail_at(&self.tail_memo, base, root) {
            return Ok(tail.shared_access());
        }
        let repo = &self.repo;
        at_base(&mut self.access_memo, base, root, || {
            audit::access_at_end(repo, branch, root).map(Arc::new)
        })
    }

    /// Loads and validates a revision.
    pub fn load(
        &mut self,
        rev: &Revision,
        subpath: &str,
        now: Timestamp,
    ) -> Result<Loaded, SourceError> {
        let staged = load::stage(&self.repo, rev, subpath, &mut self.cache)?;
        Ok(self.finish(staged, subpath, now))
    }

    /// Checks the members of a staged revision.
    fn finish(&mut self, staged: Staged, subpath: &str, now: Timestamp) -> Loaded {
        let rev = staged.revision().clone();
        let merged = crate::source::history::MergeTimes::new(&self.repo, &rev, subpath);
        let merged_at =
            |identity: &str, grant: &crate::model::Grant| merged.merged_at(identity, grant);
        let ctx = Context {
            revision_time: rev.time,
            now,
            merged_at: &merged_at,
        };
        load::finish(&self.repo, staged, &ctx, &mut self.cache)
    }

    /// Loads `opts.rev`, reads every system and computes the guarded plan.
    pub async fn plan(&mut self, opts: &Options) -> Result<Planned, ReconcileError> {
        let mut rev = self.repo.resolve(&opts.rev)?;
        if rev.branch.is_none() {
            rev.branch = opts.branch.clone();
        }
        let staged = load::stage(&self.repo, &rev, &opts.subpath, &mut self.cache)?;
        // Start every read (a query on the blocking pool, a request on the wire) as soon
        // as the Systems are known, so that reading the systems overlaps with checking
        // the members, loading the last applied revision and evaluating desired state on
        // this thread. A revision already known to be invalid connects to nothing.
        let (connectors, mut actual) = if staged.valid_so_far() {
            self.connect_systems(staged.systems())
        } else {
            Default::default()
        };
        let reading = read_systems(connectors.clone());
        let mut reading = std::pin::pin!(reading);
        let early = futures::poll!(reading.as_mut());
        let loaded = self.finish(staged, &opts.subpath, opts.now);
        if !loaded.is_valid() {
            return Err(ReconcileError::Invalid {
                revision: rev.display(),
                errors: loaded.errors().cloned().collect(),
            });
        }
        let root = audit::audit_root(&opts.subpath);
        let state = match &rev.branch {
            Some(b) => audit::read_state(&self.repo, b, &root)?,
            None => None,
        };
        let last_applied = rev
            .branch
            .as_deref()
            .and_then(|b| self.last_applied(b, state.as_ref()));
        let previous = self.previous(last_applied, &opts.subpath, opts.now)?;
        let same_as_applied = match last_applied {
            Some(last) => self.only_audit_changed(last, &rev, &root)?,
            None => false,
        };
        let desired = Desired::at_cached(&loaded.catalog, opts.now, &mut self.desired_cache);
        actual.extend(match early {
            std::task::Poll::Ready(read) => read,
            std::task::Poll::Pending => reading.await,
        });
        let pending = match &rev.branch {
            Some(b) => self.pending_failures(b, &root)?,
            None => Arc::new(plan::Pending::new()),
        };
        let inputs = plan::Inputs {
            pending: &pending,
            catalog: &loaded.catalog,
            desired: &desired,
            actual: &actual,
            previous: previous.as_ref().map(|p| &p.desired),
            revision: rev.display(),
            native_expiry: connectors
                .iter()
                .filter(|(_, c)| c.capabilities().native_expiry)
                .map(|(name, _)| name.clone())
                .collect(),
        };
        let mut plan = plan::diff(&inputs);
        plan::guard(
            &mut plan,
            &loaded.catalog,
            previous.as_ref().map(|p| &p.catalog),
            opts.allow_mass_revoke.as_deref(),
        );
        let mut planned = Planned {
            loaded,
            plan,
            desired,
            state,
            last_applied,
            same_as_applied,
            connectors,
            actual,
            findings: Vec::new(),
            signers: checks::Signers::new(),
        };
        // The same checks apply enforces, so the plan shows what apply would refuse.
        planned.findings = checks::run_all(self, &mut planned, opts)?;
        planned.plan.refusals = planned
            .findings
            .iter()
            .filter(|f| f.enforced() && f.effect != checks::Effect::Hold)
            .map(|f| plan::Refusal {
                check: f.check.to_string(),
                message: f.message.clone(),
                release: f.release.to_string(),
                expiries_only: f.effect == checks::Effect::ExpiriesOnly,
            })
            .collect();
        Ok(planned)
    }

    /// The last applied commit of `branch`, from the local ref or `audit/state.yaml`.
    pub fn last_applied_commit(&self, branch: &str, subpath: &str) -> Option<git2::Oid> {
        let state = audit::read_state(&self.repo, branch, &audit::audit_root(subpath))
            .ok()
            .flatten();
        self.last_applied(branch, state.as_ref())
    }

    /// The last applied commit: the local `refs/latchkey/applied/<branch>` (which survives
    /// a force-push that rewrites `audit/state.yaml` away), else state.yaml's.
    fn last_applied(&self, branch: &str, state: Option<&State>) -> Option<git2::Oid> {
        let git = self.repo.git();
        let from_ref = git.refname_to_id(&applied_ref(branch)).ok();
        let from_state = state.and_then(|s| git2::Oid::from_str(&s.last_applied_commit).ok());
        from_ref
            .or(from_state)
            .filter(|oid| git.find_commit(*oid).is_ok())
    }

    /// The last applied revision's catalogue and desired state (to tell removals in git
    /// from drift), from the last plan's when it is the same commit and no grant window
    /// has opened or closed since: the controller plans against one applied commit many
    /// times between applies.
    fn previous(
        &mut self,
        last_applied: Option<git2::Oid>,
        subpath: &str,
        now: Timestamp,
    ) -> Result<Option<Arc<Previous>>, ReconcileError> {
        let Some(oid) = last_applied else {
            return Ok(None);
        };
        // A revision's catalogue does not depend on `now` (only its warnings do), so it
        // is kept as long as the commit is the same; its desired state while it holds.
        // Nor does it depend on audit/: the applied commit moving past latchkey's own
        // audit commits (each apply records the head it planned, an audit commit after
        // an expiry) keeps the catalogue, so an expiry does not load the repository again.
        let catalog = match self.previous.take() {
            Some(p) if p.subpath == subpath && self.same_documents(p.oid, oid, subpath) => {
                if p.oid == oid && p.desired.holds_at(now) {
                    self.previous = Some(p.clone());
                    return Ok(Some(p));
                }
                p.catalog.clone()
            }
            _ => {
                let Ok(rev) = self.repo.revision(oid, None) else {
                    return Ok(None);
                };
                self.load(&rev, subpath, now)?.catalog
            }
        };
        let desired = Desired::at_cached(&catalog, now, &mut self.desired_cache);
        let previous = Arc::new(Previous {
            oid,
            subpath: subpath.to_string(),
            catalog,
            desired,
        });
        self.previous = Some(previous.clone());
        Ok(Some(previous))
    }

    /// The commit whose content `rev` holds (SourceRepo::content_revision), walking
    /// down to the commit asked about last time at most.
    fn content_revision(&mut self, rev: &Revision, root: &str) -> Result<Revision, SourceError> {
        let known = self
            .content_memo
            .as_ref()
            .filter(|(_, r, _)| r == root)
            .map(|(at, _, content)| (*at, content));
        let content = self.repo.content_revision_after(rev, root, known)?;
        self.content_memo = Some((rev.oid, root.to_string(), content.clone()));
        Ok(content)
    }

    /// True when commits `a` and `b` hold the same documents (they differ at most under
    /// the audit root of `subpath`).
    fn same_documents(&self, a: git2::Oid, b: git2::Oid, subpath: &str) -> bool {
        let root = audit::audit_root(subpath);
        a == b
            || self
                .repo
                .changed_paths(a, b)
                .is_ok_and(|paths| paths.iter().all(|p| p.starts_with(&root)))
    }

    /// True when `rev` differs from the last applied commit only under `audit/`.
    fn only_audit_changed(
        &self,
        last: git2::Oid,
        rev: &Revision,
        root: &str,
    ) -> Result<bool, SourceError> {
        Ok(self
            .repo
            .changed_paths(last, rev.oid)?
            .iter()
            .all(|p| p.starts_with(root)))
    }

    /// Connects to every system. A system that cannot be connected gets an error entry
    /// in the second map: nothing is planned for it.
    fn connect_systems(
        &self,
        systems: &BTreeMap<String, load::Item<SystemSpec>>,
    ) -> (Connectors, Reads) {
        let mut connectors = Connectors::new();
        let mut failed = Reads::new();
        for (name, system) in systems {
            match self.registry.connect(name, &system.spec) {
                Ok(c) => {
                    connectors.insert(name.clone(), Arc::from(c));
                }
                Err(e) => {
                    failed.insert(name.clone(), Err(e.message));
                }
            }
        }
        (connectors, failed)
    }

    /// Checks ancestry, applies the plan, writes and commits the audit.
    pub async fn apply(
        &mut self,
        mut planned: Planned,
        opts: &Options,
        on_done: &(dyn Fn(&Outcome) + Sync),
    ) -> Result<Applied, ReconcileError> {
        let rev = planned.loaded.revision.clone();
        let branch = rev.branch.clone().ok_or_else(|| SourceError::NoBranch {
            rev: opts.rev.clone(),
        })?;
        let root = audit::audit_root(&opts.subpath);
        let run = run_id(opts.now, &rev);
        // Records name the commit whose content is applied and its author, never an
        // audit commit of latchkey's on top of it.
        let cause = self.content_revision(&rev, &root)?;
        let author = cause.author.clone();
        let mut records: Vec<Record> = Vec::new();
        let mut broken = None;
        self.ledger_broken = None;
        if !opts.dry_run {
            // A crashed run's changes are recorded before anything else is decided.
            self.finish_journal(&branch, &root, &planned, opts)?;
            records.extend(self.baseline(&branch, &root, &planned, &run, &cause, opts)?);
        }
        // Enforce what the checks found when the plan was made (under the writer lock).
        let findings = std::mem::take(&mut planned.findings);
        let mut held = false;
        for f in &findings {
            let mut r = Record::new(
                Event::Refusal,
                opts.now,
                &run,
                &cause.display(),
                opts.trigger,
            );
            if let Some(reason) = &f.overridden {
                r.event = Event::Override;
                r.note = Some(format!("{} (overridden: {reason})", f.note()));
                records.push(r);
                continue;
            }
            match f.effect {
                checks::Effect::Refuse => {
                    r.note = Some(f.note());
                    records.push(r);
                    let summary = f.summary();
                    self.commit_records(&branch, &root, records, opts, &run, &rev, &summary)?;
                    return Err(f.error().expect("a refusal has an error"));
                }
                checks::Effect::ExpiriesOnly => {
                    // Recorded once per problem; expiries keep firing meanwhile.
                    let note = f.note();
                    if !audit::last_refusal_is(&self.repo, &branch, &root, &note)? {
                        r.note = Some(note);
                        records.push(r);
                    }
                    planned
                        .plan
                        .changes
                        .retain(|c| c.reason.is_time_up() && c.is_removal());
                    self.ledger_broken = Some(f.message.clone());
                    broken = f.error();
                }
                checks::Effect::Hold => {
                    r.event = Event::Hold;
                    r.note = Some(f.message.clone());
                    records.push(r);
                    held = true;
                }
            }
        }
        if broken.is_some() {
            // Expiries are never held; nothing else is left to hold.
            held = false;
            records.retain(|r| r.event != Event::Hold);
        }
        let signers = std::mem::take(&mut planned.signers);
        if held {
            let commit =
                self.commit_records(&branch, &root, records, opts, &run, &rev, "held by a guard")?;
            return Ok(Applied {
                planned,
                outcomes: Vec::new(),
                commit,
                held: true,
            });
        }
        if opts.dry_run {
            if let Some(e) = broken {
                return Err(e);
            }
            return Ok(Applied {
                planned,
                outcomes: Vec::new(),
                commit: None,
                held: false,
            });
        }
        let clock = || Timestamp::now().max(opts.now);
        // Each change names the commit that caused it (see source::provenance).
        let causes: Vec<Revision> = {
            let mut prov = Provenance::new(
                &self.repo,
                &cause,
                planned.last_applied,
                &opts.subpath,
                &root,
            );
            planned
                .plan
                .changes
                .iter()
                .map(|c| cause_of(&mut prov, c))
                .collect()
        };
        let journalled = journal::enabled() && !planned.plan.changes.is_empty();
        let log = if journalled {
            let intents = planned
                .plan
                .changes
                .iter()
                .zip(&causes)
                .map(|(c, by)| {
                    audit::change_record(c, opts.now, &run, &by.display(), opts.trigger, &by.author)
                })
                .collect();
            let j = journal::Journal {
                run: run.clone(),
                intents,
            };
            Some(journal::write(&self.repo, &branch, &j, opts.push)?)
        } else {
            None
        };
        let logged = |o: &Outcome| {
            if let Some(log) = &log {
                log.log(o);
            }
            on_done(o);
        };
        let outcomes = apply::apply(
            &planned.plan,
            &planned.connectors,
            self.retry,
            &clock,
            &logged,
        )
        .await;
        let mut changed =
            audit::change_records(&outcomes, &run, &cause.display(), opts.trigger, &author);
        for (r, by) in changed.iter_mut().zip(&causes) {
            r.revision = by.display();
            r.author = Some(by.author.clone());
        }
        records.extend(changed);
        if let Some(name) = signers.get(&rev.oid) {
            for r in records.iter_mut().filter(|r| r.signer.is_none()) {
                r.signer = Some(name.clone());
            }
        }
        let state = (!planned.same_as_applied || !records.is_empty()).then(|| State {
            version: 1,
            last_applied_revision: rev.display(),
            last_applied_commit: rev.oid.to_string(),
            applied_at: Some(opts.now),
            run: run.clone(),
            ledger_head: String::new(),
            systems: system_states(&planned),
            last_invalid_revision: None,
        });
        let failed = outcomes.iter().filter(|o| o.failed()).count();
        let summary = format!(
            "apply {} ({} applied, {failed} failed)",
            rev.display(),
            outcomes.len() - failed
        );
        let catalog = planned.loaded.catalog.clone();
        let commit = self.commit(
            &branch,
            &root,
            records,
            state,
            Some(&catalog),
            !planned.same_as_applied,
            opts,
            &run,
            &rev,
            &summary,
        )?;
        self.repo
            .set_ref(&applied_ref(&branch), rev.oid, "latchkey: applied")
            .map_err(SourceError::from)?;
        if journalled {
            // The run's records are committed (and pushed): its journal is finished.
            drop(log);
            journal::clear(&self.repo, &branch, opts.push)?;
        }
        if let Some(e) = broken {
            return Err(e);
        }
        Ok(Applied {
            planned,
            outcomes,
            commit,
            held: false,
        })
    }

    /// Finishes the journal a crashed run left: drops it when its records are in the
    /// ledger, else records each intent as it turned out (see audit::journal) in an
    /// audit commit of its own, before this run decides anything.
    fn finish_journal(
        &mut self,
        branch: &str,
        root: &str,
        planned: &Planned,
        opts: &Options,
    ) -> Result<(), ReconcileError> {
        let Some((j, logged)) = journal::read(&self.repo, branch)? else {
            return Ok(());
        };
        if audit::ledger_has_run(&self.repo, branch, root, &j.run)? {
            journal::clear(&self.repo, branch, opts.push)?;
            return Ok(());
        }
        let recovery =
            journal::recover(&j, &logged, &planned.actual, Timestamp::now().max(opts.now));
        tracing::warn!(
            run = %j.run,
            recovered = recovery.records.len(),
            unresolved = recovery.unresolved.len(),
            "finishing the write-ahead journal of an interrupted run"
        );
        let summary = format!(
            "recorded {} changes of interrupted run {}",
            recovery.records.len(),
            j.run
        );
        let rev = planned.loaded.revision.clone();
        self.commit(
            branch,
            root,
            recovery.records,
            None,
            None,
            false,
            opts,
            &j.run,
            &rev,
            &summary,
        )?;
        if recovery.unresolved.is_empty() {
            journal::clear(&self.repo, branch, opts.push)?;
        } else {
            // Systems that could not be read in full keep their intents for a later run.
            let rest = journal::Journal {
                run: j.run.clone(),
                intents: recovery.unresolved,
            };
            journal::write(&self.repo, branch, &rest, opts.push)?;
        }
        Ok(())
    }

    /// `observed` records for access found in place on managed, active accounts that the
    /// ledger does not hold yet: the first apply, or an account newly in scope.
    fn baseline(
        &mut self,
        branch: &str,
        root: &str,
        planned: &Planned,
        run: &str,
        cause: &Revision,
        opts: &Options,
    ) -> Result<Vec<Record>, ReconcileError> {
        let access = self.access_at_end(branch, root)?;
        // Stamped like change records: never before the run's wall-clock time.
        let seen = Timestamp::now().max(opts.now);
        let mut out = Vec::new();
        for (system, read) in &planned.actual {
            let Ok(snapshot) = read else { continue };
            let wanted = planned.desired.systems.get(system);
            // An account this run adopts is newly in scope: what it holds is observed.
            let adopted = planned.plan.changes.iter().filter_map(|c| match &c.op {
                crate::connectors::Op::AdoptAccount { identity } if &c.system == system => {
                    snapshot.unmanaged.get(identity)
                }
                _ => None,
            });
            let accounts = snapshot.managed.iter().chain(adopted);
            for account in accounts.filter(|a| a.active) {
                for e in &account.entitlements {
                    if access.holds(&account.identity, system, e) {
                        continue;
                    }
                    let source = wanted
                        .and_then(|w| w.get(account.identity.as_str()))
                        .and_then(|a| a.entitlements.get(e))
                        .and_then(|s| s.first());
                    let mut r =
                        Record::new(Event::Observed, seen, run, &cause.display(), opts.trigger);
                    r.system = Some(system.clone());
                    r.identity = Some(account.identity.clone());
                    r.change = Some("grant".into());
                    r.entitlement = Some(e.to_string());
                    r.client = source.map(|s| s.client.to_string());
                    r.role = source.map(|s| s.role.to_string());
                    r.note = Some("found in place when latchkey first read this account".into());
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    /// When the authoritative Policy requires signed commits, verifies every commit
    /// since the last applied revision; returns each commit's signer.
    ///
    /// The last applied revision's trust section is authoritative when there is one, so
    /// a commit cannot switch off or widen its own check; the new revision's applies
    /// only to the first apply.
    pub(crate) fn verify_signatures(
        &mut self,
        planned: &Planned,
        subpath: &str,
        now: Timestamp,
    ) -> Result<BTreeMap<git2::Oid, String>, ReconcileError> {
        // The local applied ref comes first: a forged audit/state.yaml cannot move it.
        let last = planned.last_applied;
        let trust = match last {
            // The plan already loaded the last applied revision: every plan runs this
            // check, so it must not load it a second time.
            Some(oid) => match &self.previous {
                Some(p) if p.oid == oid && p.subpath == subpath => p.catalog.policy.trust.clone(),
                _ => {
                    let rev = self.repo.revision(oid, None)?;
                    self.load(&rev, subpath, now)?.catalog.policy.trust
                }
            },
            None => planned.loaded.catalog.policy.trust.clone(),
        };
        let Some(trust) = trust.filter(|t| t.require_signed_commits) else {
            return Ok(BTreeMap::new());
        };
        let signers = crate::trust::Signers::compile(&trust)?;
        let root = audit::audit_root(subpath);
        signers
            .verify_range(self.repo.git(), last, planned.loaded.revision.oid, &root)
            .map_err(|refusals| ReconcileError::Untrusted {
                revision: planned.loaded.revision.display(),
                refusals,
            })
    }

    /// Records that a newest revision did not validate (the controller keeps enforcing
    /// the last valid one).
    pub fn record_invalid(
        &mut self,
        rev: &Revision,
        errors: &[Diagnostic],
        opts: &Options,
    ) -> Result<Option<git2::Oid>, ReconcileError> {
        let branch = rev.branch.clone().ok_or_else(|| SourceError::NoBranch {
            rev: opts.rev.clone(),
        })?;
        let root = audit::audit_root(&opts.subpath);
        // The invalid content, not an audit commit of ours that landed on top of it; and
        // once: state.yaml remembers the invalid revision last recorded, across restarts,
        // and this reconciler remembers it where there is no state.yaml yet.
        let rev = &self.content_revision(rev, &root)?;
        if self.reported_invalid == Some(rev.oid) {
            return Ok(None);
        }
        let state = audit::read_state(&self.repo, &branch, &root)?;
        if state
            .as_ref()
            .and_then(|s| s.last_invalid_revision.as_deref())
            == Some(rev.display().as_str())
        {
            self.reported_invalid = Some(rev.oid);
            return Ok(None);
        }
        let state = state.map(|mut s| {
            s.last_invalid_revision = Some(rev.display());
            s
        });
        let run = run_id(opts.now, rev);
        let mut r = Record::new(
            Event::InvalidRevision,
            opts.now,
            &run,
            &rev.display(),
            opts.trigger,
        );
        r.author = Some(rev.author.clone());
        let first = errors
            .first()
            .map(|d| d.to_string().lines().next().unwrap_or("").to_string())
            .unwrap_or_default();
        r.note = Some(format!("{} errors; first: {first}", errors.len()));
        let commit = self.commit(
            &branch,
            &root,
            vec![r],
            state,
            None,
            false,
            opts,
            &run,
            rev,
            "recorded an invalid revision",
        )?;
        self.reported_invalid = Some(rev.oid);
        Ok(commit)
    }

    /// Commits audit records that change no state (a refusal, a hold); a dry run
    /// commits nothing.
    #[allow(clippy::too_many_arguments)]
    fn commit_records(
        &mut self,
        branch: &str,
        root: &str,
        records: Vec<Record>,
        opts: &Options,
        run: &str,
        rev: &Revision,
        summary: &str,
    ) -> Result<Option<git2::Oid>, ReconcileError> {
        if opts.dry_run {
            return Ok(None);
        }
        self.commit(
            branch, root, records, None, None, false, opts, run, rev, summary,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn commit(
        &mut self,
        branch: &str,
        root: &str,
        records: Vec<Record>,
        state: Option<State>,
        catalog: Option<&crate::load::Catalog>,
        all_reports: bool,
        opts: &Options,
        run: &str,
        rev: &Revision,
        summary: &str,
    ) -> Result<Option<git2::Oid>, ReconcileError> {
        let applied_by = applier();
        let mut records = records;
        for r in &mut records {
            r.applied_by = Some(applied_by.clone());
        }
        let kept = self.committed.is_some().then(|| records.clone());
        let audit = audit::RunAudit {
            catalog,
            all_reports,
            revision: rev.display(),
            now: opts.now,
            records,
            state,
            summary: summary.to_string(),
            run: run.to_string(),
            broken: self.ledger_broken.clone(),
        };
        let repo = &self.repo;
        // The tail is appended to in place (not copied); a commit that does not land
        // leaves none, and the next one reads the ledger.
        let mut known = self
            .tail_memo
            .take()
            .filter(|m| m.root == root)
            .map(|m| (m.base, m.value));
        let mut left = None;
        let oid = repo.commit_audit_with(branch, || {
            Ok(
                match audit::build_commit_onto(repo, branch, root, audit.clone(), known.take())? {
                    Some((commit, tail)) => {
                        left = Some(tail);
                        Some(commit)
                    }
                    None => None,
                },
            )
        })?;
        // The ledger as this commit leaves it is what the next commit (and the next
        // plan's anchor check, pending failures and access) builds on while the branch
        // stays here.
        match (oid, left) {
            (Some(oid), Some(tail)) => {
                self.note_appended(oid, &tail);
                self.access_memo = None;
                self.tail_memo = Some(AtBase {
                    base: oid,
                    root: root.to_string(),
                    value: tail,
                });
            }
            _ => self.tail_memo = None,
        }
        if let Some(oid) = oid {
            audit::anchor::set(&self.repo, branch, oid)?;
        }
        if let (Some(committed), Some(kept)) = (self.committed.as_mut(), kept) {
            committed.extend(kept);
        }
        if opts.push && oid.is_some() {
            self.repo.push(branch, 3)?;
        }
        Ok(oid)
    }
}

/// Where the last applied commit of a branch is remembered locally.
/// The connector of each system, by name.
type Connectors = BTreeMap<String, Arc<dyn Connector>>;

/// What reading each system returned, or why it failed, by name.
type Reads = BTreeMap<String, Result<Snapshot, String>>;

/// Reads every system concurrently; a failed read is an error entry: nothing is planned
/// for that system.
async fn read_systems(connectors: Connectors) -> Reads {
    let reads = connectors
        .into_iter()
        .map(|(name, c)| async move { (name, c.read().await.map_err(|e| e.message)) });
    futures::future::join_all(reads).await.into_iter().collect()
}

/// The commit that caused `c`: the newest since the last apply that touched the
/// person, the Role, the Client, the System or the Policy; for a change caused by time
/// (an expiry, a start), the commit that set the grant.
fn cause_of(prov: &mut Provenance<'_>, c: &plan::Change) -> Revision {
    use crate::source::provenance::{POLICY_KEY, client_key, member_key, role_key, system_key};
    let mut keys = vec![member_key(c.op.identity())];
    if let Some(g) = &c.grant {
        keys.push(role_key(&g.role));
        keys.push(client_key(&g.client));
    } else if let Some(client) = &c.client {
        keys.push(client_key(client));
    }
    if c.reason.is_time_up() || c.reason == plan::Reason::Started {
        return prov.cause(&keys[..1], true);
    }
    keys.push(system_key(&c.system));
    keys.push(POLICY_KEY.to_string());
    prov.cause(&keys, false)
}

/// What is wrong with a ledger that does not continue from its anchor.
pub(crate) fn ledger_problem(anchor: &audit::anchor::Anchor) -> String {
    anchor.problem().unwrap_or_else(|| {
        format!(
            "it does not hold the last record latchkey wrote ({}, in audit commit {}): audit/ \
             was deleted or records were removed from its end",
            anchor.head.get(..12).unwrap_or(&anchor.head),
            anchor.commit
        )
    })
}

/// Who applies: `LATCHKEY_APPLIED_BY` (the operator sets its pod), else this host's name.
fn applier() -> String {
    std::env::var("LATCHKEY_APPLIED_BY")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned())
}

fn applied_ref(branch: &str) -> String {
    format!("refs/latchkey/applied/{branch}")
}

/// `20261123T153500Z-1a2b3c4d`: when and what.
pub fn run_id(now: Timestamp, rev: &Revision) -> String {
    format!(
        "{}-{}",
        now.strftime("%Y%m%dT%H%M%SZ"),
        &rev.oid.to_string()[..8]
    )
}

/// What each system should look like after the apply: counts and a digest of desired
/// accounts, so a later reader can tell whether a system drifted.
fn system_states(planned: &Planned) -> BTreeMap<String, SystemState> {
    use sha2::{Digest, Sha256};
    let mut out = BTreeMap::new();
    for name in planned.loaded.catalog.systems.keys() {
        let accounts = planned.desired.systems.get(name);
        let mut h = Sha256::new();
        for (id, acct) in accounts.into_iter().flatten() {
            h.update(id.as_bytes());
            for e in acct.entitlements.keys() {
                h.update(b"\0");
                h.update(e.as_bytes());
            }
            h.update(b"\n");
        }
        out.insert(
            name.clone(),
            SystemState {
                managed_accounts: accounts.map_or(0, |a| a.len()),
                digest: hex::encode(h.finalize()),
            },
        );
    }
    out
}
