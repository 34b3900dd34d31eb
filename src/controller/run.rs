//! `latchkey run`: fetch on an interval and on push, wake at the next `starts`/`expires`,
//! re-read systems for drift, and keep enforcing the last valid revision when the newest
//! one does not validate.
//!
//! Shutdown is only honoured between reconciles, so a reconcile in flight always
//! finishes and commits its audit records.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use git2::Oid;
use jiff::Timestamp;

use super::http::Shared;
use crate::audit::{self, Trigger};
use crate::reconcile::{Applied, Enforced, Options, ReconcileError, Reconciler, RunOutcome};

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub branch: String,
    pub subpath: String,
    /// Fetch the remote this often.
    pub interval: Duration,
    /// Re-read every system for drift this often.
    pub drift_interval: Duration,
    pub push: bool,
}

/// How long a tick waits for another writer of the branch before it tries again on the
/// next wake.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// What one reconcile did, for logs and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tick {
    /// Nothing new: no revision, no due expiry, no drift check.
    Idle,
    /// A revision was reconciled.
    Applied {
        revision: String,
        changes: usize,
        failed: usize,
    },
    /// A guard held the run.
    Held { revision: String },
    /// The newest revision is invalid and there is no valid one to fall back to.
    NoValidRevision,
    /// Something failed; retried on the next wake.
    Failed(String),
}

impl Tick {
    /// Logs what a reconcile did (nothing when idle), as fields a collector can query.
    pub fn log(&self, trigger: Trigger, next_change: Option<Timestamp>) {
        let next = next_change.map(|t| t.to_string());
        let next = next.as_deref().unwrap_or("none");
        match self {
            Tick::Idle => {}
            Tick::Applied {
                revision,
                changes,
                failed,
            } => tracing::info!(
                ?trigger,
                %revision,
                changes,
                failed,
                next_change = next,
                "reconciled"
            ),
            Tick::Held { revision } => {
                tracing::warn!(?trigger, %revision, next_change = next, "held by a guard")
            }
            Tick::NoValidRevision => tracing::warn!(
                ?trigger,
                next_change = next,
                "the newest revision is invalid and no valid one is known"
            ),
            Tick::Failed(error) => tracing::warn!(?trigger, %error, "reconcile failed"),
        }
    }
}

/// The controller's memory between wakes.
pub struct Controller {
    rec: Reconciler,
    cfg: RunConfig,
    shared: Arc<Shared>,
    /// The newest head reconciled (or skipped as audit-only). Never the head after our
    /// own audit commit: someone else's commit may have landed under it.
    last_seen: Option<Oid>,
    /// The newest revision that validated.
    last_valid: Option<Oid>,
    /// When desired state next changes with time.
    pub next_change: Option<Timestamp>,
    /// Word to the Notifiers of the last applied revision (docs/notifications.md).
    pub notifications: crate::notify::BranchNotifications,
}

impl Controller {
    pub fn new(rec: Reconciler, cfg: RunConfig, shared: Arc<Shared>) -> Controller {
        Controller {
            rec: rec.with_ledger_verification().keep_committed(),
            notifications: crate::notify::BranchNotifications::new(
                &cfg.branch,
                &cfg.subpath,
                shared.metrics.notify.clone(),
            ),
            cfg,
            shared,
            last_seen: None,
            last_valid: None,
            next_change: None,
        }
    }

    /// The pipeline the loop runs (for what it remembers between wakes).
    pub fn reconciler(&self) -> &Reconciler {
        &self.rec
    }

    /// What the endpoints share with the loop (metrics, readiness).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    fn options(&self, rev: String, trigger: Trigger, now: Timestamp) -> Options {
        Options {
            rev,
            branch: Some(self.cfg.branch.clone()),
            subpath: self.cfg.subpath.clone(),
            now,
            dry_run: false,
            push: self.cfg.push,
            allow_mass_revoke: None,
            allow_rewind: None,
            allow_broken_ledger: None,
            trigger,
        }
    }

    /// One wake: fetch, decide whether to reconcile, reconcile.
    pub async fn tick(&mut self, trigger: Trigger, now: Timestamp) -> Tick {
        if let Err(e) = self.rec.repo.fetch() {
            tracing::warn!(error = %e, "fetch failed; using what was fetched before");
        }
        let head = match self.rec.repo.resolve(&self.cfg.branch) {
            Ok(r) => r,
            Err(e) => return Tick::Failed(crate::source::error_chain(&e)),
        };
        let root = audit::audit_root(&self.cfg.subpath);
        let new_revision = match self.last_seen {
            None => true,
            Some(seen) if seen == head.oid => false,
            Some(seen) => match self.rec.repo.changed_paths(seen, head.oid) {
                // Our own audit commits (and anyone's audit-only commits) never reconcile.
                Ok(paths) => !paths.iter().all(|p| p.starts_with(&root)),
                Err(_) => true,
            },
        };
        self.last_seen = Some(head.oid);
        if !new_revision && trigger == Trigger::Merge {
            // Nothing to reconcile, but a grant may have come within a Notifier's window.
            self.notify(now, false);
            return Tick::Idle;
        }
        let started = std::time::Instant::now();
        let opts = self.options(self.cfg.branch.clone(), trigger, now);
        // One writer per branch (see Reconciler::lock_writer): a `latchkey apply` by hand
        // while the controller runs waits for it, and the other way round.
        let _lock = match self.rec.lock_writer(&opts, "latchkey run", LOCK_WAIT) {
            Ok(lock) => lock,
            Err(e) => return Tick::Failed(e.to_string()),
        };
        let shared = self.shared.clone();
        let observe = |o: &crate::apply::Outcome| shared.metrics.observe(o);
        let enforced = self.rec.enforce(&opts, self.last_valid, &observe).await;
        let kind = RunOutcome::of_enforced(&enforced);
        let read_all = crate::notify::read_all(&enforced);
        let result = match enforced {
            Ok(Enforced::Newest(applied)) => {
                self.last_valid = Some(head.oid);
                self.shared.metrics.invalid_revision.set(0);
                self.settle(applied, &opts)
            }
            Ok(Enforced::KeptLastValid { fallback, .. }) => {
                self.shared.metrics.invalid_revision.set(1);
                match fallback {
                    None => Tick::NoValidRevision,
                    Some(applied) => self.settle(applied, &opts),
                }
            }
            Err(e) => Tick::Failed(e.to_string()),
        };
        self.shared
            .metrics
            .reconcile_duration
            .observe(started.elapsed().as_secs_f64());
        // Classified once (RunOutcome), like the CLI's exit code and the operator's.
        let outcome = kind.label();
        let labels = vec![
            ("trigger".to_string(), format!("{trigger:?}").to_lowercase()),
            ("outcome".to_string(), outcome.to_string()),
        ];
        self.shared.metrics.reconciles.get_or_create(&labels).inc();
        if let Tick::Failed(e) = &result {
            tracing::error!(error = %e, "reconcile failed");
        }
        self.notify(now, read_all);
        result
    }

    /// Offers the notifications of the reconcile just made (and of the grants expiring
    /// or falling due for review soon).
    pub fn notify(&mut self, now: Timestamp, read_all: bool) {
        self.notifications.after_run(&mut self.rec, now, read_all);
    }

    /// Waits, at most `timeout`, until every notification offered is delivered or has
    /// failed (`run --once` exits right after its reconcile).
    pub async fn drain_notifications(&self, timeout: Duration) -> bool {
        self.notifications.drain(timeout).await
    }

    /// A tick's result from an apply's: metrics, readiness and the next wake.
    fn settle(&mut self, applied: Result<Applied, ReconcileError>, opts: &Options) -> Tick {
        let metrics = &self.shared.metrics;
        match applied {
            Ok(applied) => {
                let plan = &applied.planned.plan;
                metrics.drift.set(plan.drift.len() as i64);
                self.next_change = plan.next_change;
                let revision = plan.revision.clone();
                if applied.held {
                    metrics.brake_holds.inc();
                    return Tick::Held { revision };
                }
                metrics.last_applied.set(opts.now.as_second() as f64);
                self.shared.ready.store(true, Ordering::Relaxed);
                Tick::Applied {
                    revision,
                    changes: applied.outcomes.len(),
                    failed: applied.failures(),
                }
            }
            Err(e) => Tick::Failed(e.to_string()),
        }
    }

    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut poll = tokio::time::interval(self.cfg.interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut drift = tokio::time::interval(self.cfg.drift_interval);
        drift.reset();
        let shared = self.shared.clone();
        loop {
            let until_change = self.next_change.map(|t| {
                let wait = t.duration_since(Timestamp::now()).as_secs_f64().max(0.0);
                // A hair past the instant, so the grant is out of its window when we look.
                tokio::time::Instant::now()
                    + Duration::from_secs_f64(wait)
                    + Duration::from_millis(5)
            });
            let trigger = tokio::select! {
                _ = &mut shutdown => break,
                _ = poll.tick() => Trigger::Merge,
                _ = shared.push.notified() => Trigger::Merge,
                _ = drift.tick() => Trigger::Drift,
                _ = sleep_until(until_change) => Trigger::Expiry,
            };
            let tick = self.tick(trigger, Timestamp::now()).await;
            tick.log(trigger, self.next_change);
        }
        tracing::info!("shutting down; no reconcile in flight");
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
