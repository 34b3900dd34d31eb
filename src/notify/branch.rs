//! Notifications for one branch a controller enforces: the one place `latchkey run` and
//! the operator hand a reconcile's results to, after it is committed.

use std::sync::Arc;
use std::time::Duration;

use git2::Oid;
use jiff::Timestamp;

use super::{Config, Metrics, Notifications};
use crate::load::Catalog;
use crate::reconcile::{Enforced, ReconcileError, Reconciler};

/// The notifications of one branch: started on the first reconcile (the sending task
/// needs the runtime), sent to the Notifiers of the last applied commit.
pub struct BranchNotifications {
    branch: String,
    subpath: String,
    metrics: Arc<Metrics>,
    /// How deliveries are made.
    pub config: Config,
    running: Option<Notifications>,
    /// The catalogue of the last applied commit, whose Notifiers are in force.
    in_force: Option<(Oid, Catalog)>,
}

impl BranchNotifications {
    /// Notifications for `branch` (documents under `subpath`), counted in `metrics`.
    pub fn new(branch: &str, subpath: &str, metrics: Arc<Metrics>) -> BranchNotifications {
        BranchNotifications {
            branch: branch.to_string(),
            subpath: subpath.to_string(),
            metrics,
            config: Config::default(),
            running: None,
            in_force: None,
        }
    }

    /// Offers what the reconcile just made produced (the records `rec` committed, the
    /// grants expiring or falling due for review soon at `now`). `read_all`: every system
    /// was read (see [`read_all`]). Never fails the reconcile: problems are logged.
    pub fn after_run(&mut self, rec: &mut Reconciler, now: Timestamp, read_all: bool) {
        let records = rec.take_committed();
        let secrets = rec.registry.secrets().clone();
        if self.running.is_none() {
            let path = super::outbox_path(rec.repo.git().path(), &self.branch);
            match Notifications::start(
                path,
                secrets.clone(),
                self.metrics.clone(),
                self.config,
                now,
            ) {
                Ok(n) => self.running = Some(n),
                Err(e) => {
                    tracing::warn!(error = %e, "notifications are off");
                    return;
                }
            }
        }
        let Some(catalog) = self.catalog_in_force(rec, now) else {
            return;
        };
        let Some(n) = self.running.as_mut() else {
            return;
        };
        n.set_secrets(secrets);
        n.set_notifiers(&catalog.notifiers);
        if catalog.notifiers.is_empty() {
            return;
        }
        let events = super::events_of_run(
            &records,
            &catalog,
            read_all,
            now,
            n.expiring_within(),
            n.review_within(),
        );
        n.offer(&events, now);
    }

    /// Waits, at most `timeout`, until every notification offered is delivered or has
    /// failed (`run --once` exits right after its reconcile). True when all were.
    pub async fn drain(&self, timeout: Duration) -> bool {
        match &self.running {
            Some(n) => n.drain(timeout).await,
            None => true,
        }
    }

    /// The catalogue of the last applied commit: its Notifiers are the ones in force. A
    /// revision that was refused, held or invalid never chooses where word goes.
    fn catalog_in_force(&mut self, rec: &mut Reconciler, now: Timestamp) -> Option<Catalog> {
        let oid = rec.last_applied_commit(&self.branch, &self.subpath)?;
        if let Some((seen, catalog)) = &self.in_force
            && *seen == oid
        {
            return Some(catalog.clone());
        }
        let rev = rec.repo.revision(oid, None).ok()?;
        match rec.load(&rev, &self.subpath, now) {
            Ok(loaded) => {
                self.in_force = Some((oid, loaded.catalog.clone()));
                Some(loaded.catalog)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the Notifiers in force");
                None
            }
        }
    }
}

/// Whether enforcing a branch read every system: only then may an offboarding be called
/// complete (something may remain on a system that was not read).
pub fn read_all(enforced: &Result<Enforced, ReconcileError>) -> bool {
    match enforced {
        Ok(Enforced::Newest(Ok(a)))
        | Ok(Enforced::KeptLastValid {
            fallback: Some(Ok(a)),
            ..
        }) => !a.planned.plan.has_read_errors(),
        _ => false,
    }
}
