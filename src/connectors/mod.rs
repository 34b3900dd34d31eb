//! Connectors: read the managed accounts of a system, apply one change.
//!
//! Every connector passes one contract suite (tests/contract) against a real server.
//! latchkey only ever changes accounts that carry its marker (or that a System opts in
//! to adopt); others are reported as out of scope, never changed.

mod credentials;
mod entitlement_set;
pub mod exec;
pub mod kubernetes;
pub mod ldap;
mod pg_changes;
pub mod pg_session;
pub mod postgres;
mod registry;
pub mod retry;
pub mod scim;
pub mod sql;
pub mod tls;
pub mod wordpress;

pub use credentials::{Secret, SecretSource};
pub use entitlement_set::EntitlementSet;
pub use registry::{Registry, SystemContext};

use std::collections::BTreeMap;

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The identity key of an email or login a system returns: every connector builds
/// `Account::identity` with it, so it compares equal to the Member's.
pub use crate::model::identity;

/// The value connectors write to mark an account as latchkey's.
pub const MANAGED_MARKER: &str = "latchkey";

/// An account as the system holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The email as [`identity`] normalises it: the key across systems.
    pub identity: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    pub active: bool,
    pub entitlements: EntitlementSet,
    /// When the system itself stops the login (PostgreSQL `VALID UNTIL`); None when it
    /// never does or the connector has no native expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<Timestamp>,
}

/// Whether a read saw everything. A Partial read never prunes on that system.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "state", content = "reason", rename_all = "lowercase")]
pub enum Completeness {
    #[default]
    Complete,
    Partial(String),
}

/// What a read returns.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// Accounts carrying latchkey's marker.
    pub managed: Vec<Account>,
    /// Accounts without latchkey's marker, by identity, with what they hold: reported and
    /// never changed, except that a System with `adopt: true` takes over those git declares
    /// ([`Op::AdoptAccount`]); `latchkey import` turns them into Members.
    pub unmanaged: BTreeMap<String, Account>,
    pub completeness: Completeness,
    /// Entitlements managed accounts hold through a grant latchkey did not make
    /// (PostgreSQL 16+ records each grantor): reported, never revoked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub foreign_grants: Vec<ForeignGrant>,
    /// What the plan should say about how the system was reached (a session that
    /// crossed a network unencrypted); the read itself is complete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// An entitlement held through someone else's grant.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ForeignGrant {
    pub identity: String,
    pub entitlement: String,
    /// Who granted it, as the system names them.
    pub grantor: String,
}

/// One change a connector applies.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(tag = "op", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Op {
    CreateAccount {
        identity: String,
        display_name: Option<String>,
    },
    EnableAccount {
        identity: String,
    },
    AddEntitlement {
        identity: String,
        entitlement: String,
    },
    RemoveEntitlement {
        identity: String,
        entitlement: String,
    },
    DisableAccount {
        identity: String,
    },
    DeleteAccount {
        identity: String,
    },
    /// Puts latchkey's marker on an existing unmarked account (a System with `adopt:
    /// true`), changing nothing else. Fails when the account is gone, already someone
    /// else's by another marker, or one latchkey never takes over (a privileged role).
    AdoptAccount {
        identity: String,
    },
    /// Sets the expiry the system enforces itself (`until: null` clears it). Sent only to
    /// connectors whose capabilities declare `native_expiry`.
    SetExpiry {
        identity: String,
        until: Option<Timestamp>,
    },
}

impl Op {
    /// The identity the op changes.
    pub fn identity(&self) -> &str {
        match self {
            Op::CreateAccount { identity, .. }
            | Op::EnableAccount { identity }
            | Op::AddEntitlement { identity, .. }
            | Op::RemoveEntitlement { identity, .. }
            | Op::DisableAccount { identity }
            | Op::DeleteAccount { identity }
            | Op::AdoptAccount { identity }
            | Op::SetExpiry { identity, .. } => identity,
        }
    }
}

/// What a connector can do beyond the basics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// The system enforces expiry itself (e.g. PostgreSQL `VALID UNTIL`).
    pub native_expiry: bool,
    /// How many changes may run at once against this system.
    pub max_concurrency: usize,
}

/// How a failure should be handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorClass {
    /// Worth retrying (timeouts, 429, 5xx, dropped connections).
    Transient,
    /// Retrying will not help (rejected input, missing permission).
    Permanent,
    /// The System's configuration is wrong (bad URL, missing file, missing secret).
    Config,
}

/// A connector failure. Messages never contain credentials.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("{message}")]
pub struct ConnectorError {
    pub class: ErrorClass,
    pub message: String,
    /// How long the system asked to be left alone (HTTP `Retry-After`), for the retry layer.
    pub retry_after: Option<std::time::Duration>,
}

impl ConnectorError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        ConnectorError {
            class,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn transient(message: impl Into<String>) -> Self {
        ConnectorError::new(ErrorClass::Transient, message)
    }
    pub fn permanent(message: impl Into<String>) -> Self {
        ConnectorError::new(ErrorClass::Permanent, message)
    }
    pub fn config(message: impl Into<String>) -> Self {
        ConnectorError::new(ErrorClass::Config, message)
    }
    /// The same error, asking the retry layer to wait at least `wait`.
    pub fn with_retry_after(mut self, wait: Option<std::time::Duration>) -> Self {
        self.retry_after = wait;
        self
    }
    /// The same error with `note` appended in parentheses.
    pub fn note(mut self, note: impl std::fmt::Display) -> Self {
        self.message = format!("{} ({note})", self.message);
        self
    }
    /// The answer of a connector that cannot mark an existing account (`AdoptAccount`):
    /// the account stays unmanaged, and `validate` rejects `adopt: true` for it.
    pub fn no_adoption(connector: &str) -> Self {
        ConnectorError::permanent(format!(
            "the {connector} connector cannot adopt existing accounts (adoptAccount)"
        ))
    }
    /// The answer of a connector without native expiry to `SetExpiry`. The planner never
    /// sends it one; failing loudly keeps such a bug from passing as applied.
    pub fn no_native_expiry(connector: &str) -> Self {
        ConnectorError::permanent(format!(
            "the {connector} connector does not support native expiry (setExpiry)"
        ))
    }
}

/// A driver error and its sources, `: `-joined (a source its parent already quotes is
/// left out): the detail that follows a connector's own advice.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

/// A batch's results in plan order, from `(index, result)` pairs that came back per
/// identity chain; an index without one fails (never counted as applied).
pub(crate) fn in_plan_order(
    len: usize,
    done: impl IntoIterator<Item = (usize, Result<(), ConnectorError>)>,
) -> Vec<Result<(), ConnectorError>> {
    let mut out: Vec<Option<Result<(), ConnectorError>>> = vec![None; len];
    for (i, result) in done {
        if let Some(slot) = out.get_mut(i) {
            *slot = Some(result);
        }
    }
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err(ConnectorError::permanent("no result for the change"))))
        .collect()
}

/// A system latchkey manages.
#[async_trait]
pub trait Connector: Send + Sync {
    /// What the connector can do.
    fn capabilities(&self) -> Capabilities;
    /// Reads the managed accounts and their entitlements, and the unmanaged ones with
    /// theirs (never changed, but imported and, when a System opts in, adopted).
    async fn read(&self) -> Result<Snapshot, ConnectorError>;
    /// Applies one change. Must be idempotent: applying a change that is already in
    /// effect succeeds. Never retries itself: the apply engine retries transient errors
    /// (see [`retry`]).
    async fn apply(&self, op: &Op) -> Result<(), ConnectorError>;

    /// How many changes [`Connector::apply_batch`] takes at once; 1 (the default) applies
    /// them one by one.
    fn batch_size(&self) -> usize {
        1
    }

    /// Applies several changes in as few round trips as the system allows, returning one
    /// result per op, in order. The ops of one identity come in plan order. A failed op
    /// fails alone: the others' results stand (e.g. one savepoint per op in a
    /// transaction). An `Ok` means the change is durable in the system.
    async fn apply_batch(&self, ops: &[Op]) -> Vec<Result<(), ConnectorError>> {
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            out.push(self.apply(op).await);
        }
        out
    }

    /// The retry policy this System's settings ask for; None: the engine's default.
    fn retry(&self) -> Option<retry::Retry> {
        None
    }
}
