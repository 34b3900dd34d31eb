//! What a plan holds: changes with reasons, drift, holds.

use jiff::Timestamp;
use serde::Serialize;

use super::desired::Source;
use crate::connectors::{Completeness, Op};

/// Why a change is in the plan.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// Git declares it (or stopped declaring it).
    Declared,
    /// A grant's `starts` has passed.
    Started,
    /// A grant's `expires` has passed.
    Expired,
    /// A grant's review was overdue under Policy `overdueReview: revoke`.
    #[serde(rename = "review-overdue")]
    ReviewOverdue,
    /// The person was removed from git or marked `offboarded: true`.
    Offboarded,
    /// Managed access that git does not declare (drift), revoked under `prune: true`.
    Undeclared,
}

impl Reason {
    /// The reason a ledger record names.
    pub fn parse(s: &str) -> Option<Reason> {
        [
            Reason::Declared,
            Reason::Started,
            Reason::Expired,
            Reason::ReviewOverdue,
            Reason::Offboarded,
            Reason::Undeclared,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }

    /// The name ledger records and plans use.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Declared => "declared",
            Reason::Started => "started",
            Reason::Expired => "expired",
            Reason::ReviewOverdue => "review-overdue",
            Reason::Offboarded => "offboarded",
            Reason::Undeclared => "undeclared",
        }
    }
}

impl Reason {
    /// Time ended the grant (its expiry or its review deadline): such removals pass the
    /// deletion brake and keep firing when only expiries may run.
    pub fn is_time_up(self) -> bool {
        matches!(self, Reason::Expired | Reason::ReviewOverdue)
    }
}

/// One change to one system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    pub system: String,
    /// The client the access belongs to, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(flatten)]
    pub op: Op,
    pub reason: Reason,
    /// The grant behind an add, or the expired grant behind a revocation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant: Option<Source>,
    /// The last error of this change, which failed before and is retried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<String>,
}

impl Change {
    /// True for changes that take access away.
    pub fn is_removal(&self) -> bool {
        matches!(
            self.op,
            Op::RemoveEntitlement { .. } | Op::DisableAccount { .. } | Op::DeleteAccount { .. }
        )
    }

    /// The entitlement, for entitlement changes.
    pub fn entitlement(&self) -> Option<&str> {
        match &self.op {
            Op::AddEntitlement { entitlement, .. } | Op::RemoveEntitlement { entitlement, .. } => {
                Some(entitlement)
            }
            _ => None,
        }
    }

    /// A short verb for the change.
    pub fn verb(&self) -> &'static str {
        match self.op {
            Op::CreateAccount { .. } => "create account",
            Op::AdoptAccount { .. } => "adopt account",
            Op::EnableAccount { .. } => "enable account",
            Op::AddEntitlement { .. } => "grant",
            Op::RemoveEntitlement { .. } => "revoke",
            Op::DisableAccount { .. } => "disable account",
            Op::DeleteAccount { .. } => "delete account",
            Op::SetExpiry { until: Some(_), .. } => "set expiry",
            Op::SetExpiry { until: None, .. } => "clear expiry",
        }
    }

    /// The expiry a `SetExpiry` change writes: `Some(None)` clears it.
    pub fn expiry(&self) -> Option<Option<Timestamp>> {
        match &self.op {
            Op::SetExpiry { until, .. } => Some(*until),
            _ => None,
        }
    }

    /// Order of operations within an identity: accounts exist (created, or adopted:
    /// marked as latchkey's) before anything else changes on them, and entitlements are
    /// added; entitlements go before the account is disabled or deleted. The native expiry
    /// is set as soon as the account exists, before it is enabled or gains anything, so
    /// access never runs without its second lock.
    pub(super) fn phase(&self) -> u8 {
        match self.op {
            Op::CreateAccount { .. } | Op::AdoptAccount { .. } => 0,
            Op::SetExpiry { .. } => 1,
            Op::EnableAccount { .. } => 2,
            Op::AddEntitlement { .. } => 3,
            Op::RemoveEntitlement { .. } => 4,
            Op::DisableAccount { .. } => 5,
            Op::DeleteAccount { .. } => 6,
        }
    }
}

/// An account that exists on a system but is not latchkey's: reported, never changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutOfScope {
    pub system: String,
    pub identity: String,
    pub note: String,
}

/// How each system's read went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemStatus {
    pub system: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completeness: Option<Completeness>,
    pub managed_accounts: usize,
    /// The read failed: nothing is planned for this system.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How the system was reached that people should know (an unencrypted session).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Why a run is held back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hold {
    pub guard: Guard,
    pub message: String,
}

/// A check that would refuse the run (see [`Plan::refusals`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Refusal {
    pub check: String,
    pub message: String,
    /// The flag that releases it (empty when nothing does: sign the commits).
    pub release: String,
    /// Only expiries would be applied (the rest is refused).
    pub expiries_only: bool,
}

/// The guards (docs/architecture.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Guard {
    DeletionBrake,
    EmptyClient,
}

/// The ordered changes that bring actual state to desired state.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub revision: String,
    pub now: Timestamp,
    pub changes: Vec<Change>,
    /// Undeclared access left in place (prune off, or a partial read).
    pub drift: Vec<Change>,
    pub out_of_scope: Vec<OutOfScope>,
    pub systems: Vec<SystemStatus>,
    /// When non-empty and not overridden, nothing is applied.
    pub holds: Vec<Hold>,
    /// What apply would refuse (a history rewrite, unsigned commits, a ledger that does
    /// not verify), from the same checks apply enforces (src/checks.rs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refusals: Vec<Refusal>,
    /// The override that released the holds, recorded in the audit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub override_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_change: Option<Timestamp>,
}

impl Plan {
    /// Held and not overridden: apply must not run.
    pub fn is_held(&self) -> bool {
        !self.holds.is_empty() && self.override_reason.is_none()
    }

    /// Some system could not be read.
    pub fn has_read_errors(&self) -> bool {
        self.systems.iter().any(|s| s.error.is_some())
    }
}
