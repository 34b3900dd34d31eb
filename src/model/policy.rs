//! `Policy`: global guardrails and trust.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Environment;

/// Global guardrails. At most one per repository.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "latchkey.dev",
    version = "v1alpha1",
    kind = "Policy",
    namespaced
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    /// The agency's own client: only its members may hold grants for other clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agency_client: Option<String>,
    /// The longest grant per environment, e.g. `{staging: 30d}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub max_grant_duration: BTreeMap<Environment, String>,
    /// Environments no client member may reach (agency staff may).
    #[serde(default = "default_forbidden")]
    pub forbidden_for_clients: Vec<Environment>,
    /// How many removals in one run are held for an explicit override.
    #[serde(default)]
    pub deletion_brake: DeletionBrake,
    /// `validate` warns about grants expired for longer than this (default `7d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_grace: Option<String>,
    /// How often each grant must be reviewed, for clients that set no `reviewEvery`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_every: Option<String>,
    /// What an overdue review does: `warn` (default) or `revoke` (the due instant is
    /// the grant's expiry).
    #[serde(default, skip_serializing_if = "OverdueReview::is_warn")]
    pub overdue_review: OverdueReview,
    /// Signed-commit requirements (see trust in the README).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<Trust>,
}

/// What an overdue review does (Policy `overdueReview`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OverdueReview {
    /// A warning in `validate` and `plan`; access stays.
    #[default]
    Warn,
    /// The due instant ends the grant, like `expires` (ledger reason `review-overdue`).
    Revoke,
}

impl OverdueReview {
    fn is_warn(&self) -> bool {
        *self == OverdueReview::Warn
    }
}

fn default_forbidden() -> Vec<Environment> {
    vec![Environment::Production]
}

/// The deletion brake: removals on one system above max(minimum, percent % of its
/// managed accounts) hold the run.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeletionBrake {
    #[serde(default = "default_brake_minimum")]
    pub minimum: u32,
    #[serde(default = "default_brake_percent")]
    pub percent: u32,
}

fn default_brake_minimum() -> u32 {
    5
}
fn default_brake_percent() -> u32 {
    25
}

impl Default for DeletionBrake {
    fn default() -> Self {
        DeletionBrake {
            minimum: default_brake_minimum(),
            percent: default_brake_percent(),
        }
    }
}

/// Who may change what, verified on every applied commit.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Trust {
    /// Refuse commits that lack a valid signature by a signer allowed for their paths.
    #[serde(default)]
    pub require_signed_commits: bool,
    #[serde(default)]
    pub signers: Vec<Signer>,
}

/// A signer and the paths their key may change.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Signer {
    pub name: String,
    /// OpenSSH public keys (`ssh-ed25519 AAAA... comment`).
    #[serde(default)]
    pub ssh_keys: Vec<String>,
    /// OpenPGP keys: not supported yet (validation rejects them; see docs/trust.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pgp_keys: Vec<String>,
    /// Glob patterns of paths this signer may change, e.g. `clients/acme/**`; a pattern
    /// written `!pattern` excludes paths (e.g. `!clients/acme/client.yaml`).
    pub paths: Vec<String>,
    /// May sign merge commits made by the git host.
    #[serde(default)]
    pub merges: bool,
}
