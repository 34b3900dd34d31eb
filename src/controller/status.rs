//! The pure half of the operator: from what a reconcile did to the resource's status.
//! No I/O, no clock: `now` is a parameter, so every condition is unit-tested.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::AccessRepositoryStatus;

/// Condition types, as in Flux.
pub const READY: &str = "Ready";
/// A reconcile is in progress (set True while working, False when done).
pub const RECONCILING: &str = "Reconciling";
/// A person must fix git before anything more is applied.
pub const STALLED: &str = "Stalled";
/// A guard (deletion brake, empty client) held the run.
pub const HELD: &str = "Held";

/// What one reconcile did, reduced to what the status shows.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The plan was applied (possibly with failed changes) or there was nothing to do.
    Applied {
        revision: String,
        managed_accounts: usize,
        /// Changes that failed or were skipped.
        pending: usize,
        applied: usize,
        next_change: Option<Timestamp>,
        /// Systems that could not be connected or read (`name: error`): nothing was
        /// planned for them, so the resource is not Ready.
        unreadable: Vec<String>,
    },
    /// A guard held the run: nothing was applied.
    Held {
        revision: String,
        managed_accounts: usize,
        pending: usize,
        message: String,
        next_change: Option<Timestamp>,
    },
    /// The run failed. `user_error` failures stall until git changes.
    Failed {
        /// The revision that was tried, when it was resolved.
        revision: Option<String>,
        /// A CamelCase reason, e.g. `InvalidRevision`.
        reason: String,
        message: String,
        user_error: bool,
    },
}

/// The next status, given the previous one (to keep `lastAppliedRevision` and the
/// transition times of conditions that did not change).
pub fn compute(
    previous: Option<&AccessRepositoryStatus>,
    outcome: &Outcome,
    generation: Option<i64>,
    now: Timestamp,
) -> AccessRepositoryStatus {
    let prev = previous.cloned().unwrap_or_default();
    let mut s = AccessRepositoryStatus {
        conditions: Vec::new(),
        observed_generation: generation,
        last_applied_revision: prev.last_applied_revision.clone(),
        last_attempted_revision: prev.last_attempted_revision.clone(),
        next_expiry: prev.next_expiry.clone(),
        managed_accounts: prev.managed_accounts,
        pending_changes: prev.pending_changes,
    };
    let mut cond = |ty: &str, status: bool, reason: &str, message: String| {
        s.conditions.push(condition(
            &prev.conditions,
            ty,
            status,
            reason,
            message,
            generation,
            now,
        ));
    };
    let mut counts = None;
    match outcome {
        Outcome::Applied {
            revision,
            managed_accounts,
            pending,
            applied,
            next_change,
            unreadable,
        } => {
            let (ready, reason, message) = if !unreadable.is_empty() {
                (
                    false,
                    "SystemUnreadable",
                    format!(
                        "Applied revision: {revision}; not reconciled: {}",
                        unreadable.join("; ")
                    ),
                )
            } else if *pending == 0 {
                (
                    true,
                    "ReconciliationSucceeded",
                    format!("Applied revision: {revision} ({applied} changes)"),
                )
            } else {
                (
                    false,
                    "ChangesFailed",
                    format!(
                        "Applied revision: {revision}; {pending} of {} changes failed",
                        pending + applied
                    ),
                )
            };
            cond(READY, ready, reason, message);
            cond(RECONCILING, false, "ReconciliationSucceeded", String::new());
            cond(STALLED, false, "ReconciliationSucceeded", String::new());
            cond(HELD, false, "NotHeld", String::new());
            counts = Some((revision, *managed_accounts, *pending, *next_change, true));
        }
        Outcome::Held {
            revision,
            managed_accounts,
            pending,
            message,
            next_change,
        } => {
            cond(READY, false, "Held", message.clone());
            cond(RECONCILING, false, "Held", String::new());
            cond(STALLED, false, "Held", String::new());
            cond(HELD, true, "DeletionBrake", message.clone());
            counts = Some((revision, *managed_accounts, *pending, *next_change, false));
        }
        Outcome::Failed {
            revision,
            reason,
            message,
            user_error,
        } => {
            cond(READY, false, reason, message.clone());
            if *user_error {
                cond(RECONCILING, false, reason, String::new());
                cond(STALLED, true, reason, message.clone());
            } else {
                cond(RECONCILING, true, "ProgressingWithRetry", message.clone());
                cond(STALLED, false, reason, String::new());
            }
            cond(HELD, false, "NotHeld", String::new());
            if let Some(r) = revision {
                s.last_attempted_revision = Some(r.clone());
            }
        }
    }
    if let Some((revision, managed, pending, next, applied)) = counts {
        s.last_attempted_revision = Some(revision.clone());
        if applied {
            s.last_applied_revision = Some(revision.clone());
        }
        s.managed_accounts = managed as i64;
        s.pending_changes = pending as i64;
        s.next_expiry = next.map(|t| t.to_string());
    }
    s
}

/// A condition; its `lastTransitionTime` moves only when its status changes.
fn condition(
    previous: &[Condition],
    ty: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    let since = previous
        .iter()
        .find(|c| c.type_ == ty && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: ty.to_string(),
        status,
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn get<'a>(s: &'a AccessRepositoryStatus, ty: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == ty).unwrap()
    }

    fn applied(rev: &str, pending: usize) -> Outcome {
        Outcome::Applied {
            revision: rev.into(),
            managed_accounts: 7,
            pending,
            applied: 3,
            next_change: Some(at("2026-12-01T00:00:00Z")),
            unreadable: Vec::new(),
        }
    }

    #[test]
    fn an_unreadable_system_is_not_ready() {
        let outcome = Outcome::Applied {
            revision: "main@sha1:aa".into(),
            managed_accounts: 0,
            pending: 0,
            applied: 0,
            next_change: None,
            unreadable: vec!["portal: connection refused".into()],
        };
        let s = compute(None, &outcome, Some(1), at("2026-11-23T10:00:00Z"));
        assert_eq!(get(&s, READY).status, "False");
        assert_eq!(get(&s, READY).reason, "SystemUnreadable");
        assert_eq!(
            get(&s, READY).message,
            "Applied revision: main@sha1:aa; not reconciled: portal: connection refused"
        );
    }

    #[test]
    fn applied_is_ready_and_records_revision_and_counts() {
        let s = compute(
            None,
            &applied("main@sha1:aa", 0),
            Some(2),
            at("2026-11-23T10:00:00Z"),
        );
        assert_eq!(get(&s, READY).status, "True");
        assert_eq!(get(&s, READY).reason, "ReconciliationSucceeded");
        assert_eq!(get(&s, STALLED).status, "False");
        assert_eq!(get(&s, HELD).status, "False");
        assert_eq!(s.last_applied_revision.as_deref(), Some("main@sha1:aa"));
        assert_eq!(s.last_attempted_revision.as_deref(), Some("main@sha1:aa"));
        assert_eq!(s.observed_generation, Some(2));
        assert_eq!(s.managed_accounts, 7);
        assert_eq!(s.next_expiry.as_deref(), Some("2026-12-01T00:00:00Z"));
    }

    #[test]
    fn failed_changes_are_pending_and_not_ready() {
        let s = compute(
            None,
            &applied("main@sha1:aa", 2),
            Some(1),
            at("2026-11-23T10:00:00Z"),
        );
        assert_eq!(get(&s, READY).status, "False");
        assert_eq!(get(&s, READY).reason, "ChangesFailed");
        assert_eq!(s.pending_changes, 2);
    }

    #[test]
    fn held_keeps_last_applied_and_sets_held() {
        let first = compute(
            None,
            &applied("main@sha1:aa", 0),
            Some(1),
            at("2026-11-23T10:00:00Z"),
        );
        let held = Outcome::Held {
            revision: "main@sha1:bb".into(),
            managed_accounts: 7,
            pending: 6,
            message: "deletion brake".into(),
            next_change: None,
        };
        let s = compute(Some(&first), &held, Some(1), at("2026-11-23T11:00:00Z"));
        assert_eq!(get(&s, HELD).status, "True");
        assert_eq!(get(&s, HELD).message, "deletion brake");
        assert_eq!(get(&s, READY).status, "False");
        assert_eq!(s.last_applied_revision.as_deref(), Some("main@sha1:aa"));
        assert_eq!(s.last_attempted_revision.as_deref(), Some("main@sha1:bb"));
        assert_eq!(s.pending_changes, 6);
    }

    #[test]
    fn user_error_stalls_and_transient_keeps_reconciling() {
        let first = compute(
            None,
            &applied("main@sha1:aa", 0),
            Some(1),
            at("2026-11-23T10:00:00Z"),
        );
        let invalid = Outcome::Failed {
            revision: Some("main@sha1:cc".into()),
            reason: "InvalidRevision".into(),
            message: "revision is invalid".into(),
            user_error: true,
        };
        let s = compute(Some(&first), &invalid, Some(1), at("2026-11-23T11:00:00Z"));
        assert_eq!(get(&s, STALLED).status, "True");
        assert_eq!(get(&s, STALLED).reason, "InvalidRevision");
        assert_eq!(s.last_applied_revision.as_deref(), Some("main@sha1:aa"));
        assert_eq!(s.last_attempted_revision.as_deref(), Some("main@sha1:cc"));
        let transient = Outcome::Failed {
            revision: None,
            reason: "SourceFailed".into(),
            message: "fetch failed".into(),
            user_error: false,
        };
        let s = compute(
            Some(&first),
            &transient,
            Some(1),
            at("2026-11-23T11:00:00Z"),
        );
        assert_eq!(get(&s, STALLED).status, "False");
        assert_eq!(get(&s, RECONCILING).status, "True");
    }

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let t0 = at("2026-11-23T10:00:00Z");
        let t1 = at("2026-11-23T10:05:00Z");
        let first = compute(None, &applied("main@sha1:aa", 0), Some(1), t0);
        let again = compute(Some(&first), &applied("main@sha1:ab", 0), Some(1), t1);
        assert_eq!(get(&again, READY).last_transition_time, Time(t0));
        let failed = compute(Some(&again), &applied("main@sha1:ac", 1), Some(1), t1);
        assert_eq!(get(&failed, READY).last_transition_time, Time(t1));
    }
}
