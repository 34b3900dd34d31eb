//! What a run came to, classified once: the CLI's exit code, the controllers' metric
//! labels and the operator's condition reason all derive from [`RunOutcome`]
//! (docs/architecture.md).

use super::{Applied, Enforced, ReconcileError};

/// The kind of result a run had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    /// Applied (or nothing to do); every change went through and every system was read.
    Applied,
    /// Applied, but a change failed or a system could not be read.
    Partial,
    /// A guard held the run: nothing applied until a person releases it.
    Held,
    /// A check refused the run, or the revision is invalid: a person must fix git.
    Refused,
    /// Something failed that may pass on retry (fetch, push, a system).
    Failed,
}

impl RunOutcome {
    /// The outcome of an apply's result.
    pub fn of<A: std::borrow::Borrow<Applied>>(result: &Result<A, ReconcileError>) -> RunOutcome {
        match result.as_ref().map(|a| a.borrow()) {
            Ok(a) if a.held => RunOutcome::Held,
            Ok(a) if a.failures() > 0 || a.planned.plan.has_read_errors() => RunOutcome::Partial,
            Ok(_) => RunOutcome::Applied,
            Err(e) => RunOutcome::of_error(e),
        }
    }

    /// The outcome of a run that failed with `e`.
    pub fn of_error(e: &ReconcileError) -> RunOutcome {
        if e.is_user_error() {
            RunOutcome::Refused
        } else {
            RunOutcome::Failed
        }
    }

    /// The outcome of enforcing a branch: an invalid newest revision is refused, whatever
    /// enforcing the last valid one did.
    pub fn of_enforced(result: &Result<Enforced, ReconcileError>) -> RunOutcome {
        match result {
            Ok(Enforced::Newest(r)) => RunOutcome::of(r),
            Ok(Enforced::KeptLastValid { .. }) => RunOutcome::Refused,
            Err(e) => RunOutcome::of_error(e),
        }
    }

    /// The exit code of `apply` and `run --once`: 0 applied, 1 errors, 3 held.
    pub fn exit_code(self) -> i32 {
        match self {
            RunOutcome::Applied => 0,
            RunOutcome::Held => 3,
            RunOutcome::Partial | RunOutcome::Refused | RunOutcome::Failed => 1,
        }
    }

    /// The metric label: `applied`, `partial`, `held`, `refused`, `failed`.
    pub fn label(self) -> &'static str {
        match self {
            RunOutcome::Applied => "applied",
            RunOutcome::Partial => "partial",
            RunOutcome::Held => "held",
            RunOutcome::Refused => "refused",
            RunOutcome::Failed => "failed",
        }
    }

    /// Whether the run stalls until git changes (the operator's `Stalled` condition),
    /// rather than being retried with backoff.
    pub fn stalls(self) -> bool {
        self == RunOutcome::Refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_and_stalls_follow_the_kind() {
        let all = [
            RunOutcome::Applied,
            RunOutcome::Partial,
            RunOutcome::Held,
            RunOutcome::Refused,
            RunOutcome::Failed,
        ];
        let codes: Vec<i32> = all.iter().map(|o| o.exit_code()).collect();
        assert_eq!(codes, [0, 1, 3, 1, 1]);
        let stalls: Vec<bool> = all.iter().map(|o| o.stalls()).collect();
        assert_eq!(stalls, [false, false, false, true, false]);
        let invalid = ReconcileError::Invalid {
            revision: "main@sha1:ab".into(),
            errors: Vec::new(),
        };
        assert_eq!(RunOutcome::of_error(&invalid), RunOutcome::Refused);
        assert_eq!(invalid.reason(), "InvalidRevision");
    }
}
